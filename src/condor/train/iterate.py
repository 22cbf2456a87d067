"""``condor iterate``: self-iteration. The best model so far writes data, a new model is trained on it,
and the new model is kept only if the judge prefers it on held-out questions.

Iteration ``i`` (the policy is the best model so far, M_0 at first):

1. ``iter-i/data``: :func:`condor.api.arun_pipeline` with the policy as every role but the judge (the
   transformers backend on the policy's directory, or a server that serves it), seed ``seed + i - 1``
   so each iteration samples other leaves.
2. Iteration 1 only: held-out questions from leaves of that data (:mod:`.heldout`), never trained on.
3. ``iter-i/train.jsonl``: SFT rows (``condor export --format messages``) or DPO pairs (``condor judge`` on
   the run with the fixed judge, then ``--format dpo``: the policy's own original answer rejected, the
   refinement the judge preferred in both orders chosen), minus held-out leaves and questions.
4. ``iter-i/model``: :func:`condor.train.trainer.train_model` from the policy.
5. ``iter-i/eval``: :func:`condor.api.ajudge_runs` comparing the policy's and the new model's answers to
   the held-out questions, both orders, with the fixed judge (the config's ``judge`` role; default the
   embedded SmolLM2 GGUF): a judge that changed with the policy would grade its own homework.
6. The gate (:func:`.ledger.decide`) promotes the new model or not; the next iteration starts from the
   best model so far. ``iterate.json`` and ``iterations.md`` get the iteration's row.

Every part resumes on its own (runs, training checkpoints, judge steps), so a killed loop rerun with
the same command picks up in the middle of the iteration it was in. Leaves out: starting or restarting
inference servers (with a served generator, run one iteration at a time and restart the server on the
new best model in between; see docs/training.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from condor.config import PipelineConfig, RunConfig
from condor.llm.settings import EmbeddedSettings
from condor.run.lock import RunLock
from condor.run.store import atomic_write_lines, dumps
from condor.train.heldout import answer_heldout, choose_heldout, read_heldout, without_heldout, write_heldout
from condor.train.ledger import BASE, IterateError, Ledger, decide, load_ledger, render_table, save_ledger, settings_key
from condor.train.settings import IterateSettings

#: Plan sizes when the run config gives none: a CPU-sized iteration, as `condor run` does on the embedded model.
SMALL_PLAN = {"leaves": 2, "tasks": ["domain_qa", "daily_chat", "creation"]}


@dataclass
class IterateResult:
    """The iterate directory, its finished iterations, and the best model."""

    root: Path
    ledger: Ledger
    notes: list[str]

    @property
    def best_model(self) -> str | None:
        return model_path(self.root, self.ledger.best, self.ledger.base_model)

    def table(self) -> str:
        return render_table(self.ledger.rows)


def model_path(root: Path, name: str, base_model: str | None) -> str | None:
    """The directory (or GGUF file) of a model by its ledger name; None is the embedded default."""
    return base_model if name == BASE else str(root / name / "model")


def fixed_judge(config: RunConfig) -> RunConfig:
    """A config whose every role is the judge: the config's ``judge`` role, else the embedded model."""
    judge = config.roles.get("judge") or EmbeddedSettings()
    return RunConfig(llm=judge, cache=None)


def policy_backend(settings: IterateSettings, policy: str | None) -> Any:
    """The generator settings pointed at ``policy``."""
    generator = settings.generator
    if generator.backend == "transformers":
        return generator.model_copy(update={"model": policy})
    if "{policy}" in generator.model:
        if policy is None:
            raise IterateError("a served generator with model '{policy}' needs --base-model, the directory the "
                               "server serves as the starting model")
        return generator.model_copy(update={"model": generator.model.replace("{policy}", policy)})
    return generator


def sized(config: RunConfig) -> tuple[RunConfig, list[str]]:
    """``config`` with small plan sizes where it gives none (an iteration on CPU takes minutes, not hours)."""
    update = {name: value for name, value in SMALL_PLAN.items() if not config.given(f"pipeline.{name}")}
    if not update:
        return config, []
    pipeline = PipelineConfig.model_validate({**config.pipeline.model_dump(exclude_unset=True), **update})
    note = ", ".join(f"{k} {v if not isinstance(v, list) else ','.join(v)}" for k, v in update.items())
    return config.model_copy(update={"pipeline": pipeline}), [f"small plan per iteration ({note}); set them in the "
                                                               "config or with --leaves/--tasks"]


def data_config(config: RunConfig, settings: IterateSettings, policy: str | None, iteration: int) -> RunConfig:
    pipeline = config.pipeline.model_copy(update={"seed": config.pipeline.seed + iteration - 1})
    roles = {**config.roles, "judge": fixed_judge(config).llm}
    return config.model_copy(update={"llm": policy_backend(settings, policy), "roles": roles, "pipeline": pipeline,
                                     "cache": None})


def answers_config(settings: IterateSettings, policy: str | None) -> RunConfig:
    # The pipeline's plan is not used by an answers run (its questions come from heldout.jsonl): keep it tiny.
    pipeline = PipelineConfig(relevance="off", leaves=1, tasks=["domain_qa"])
    return RunConfig(llm=policy_backend(settings, policy), pipeline=pipeline)


async def _training_rows(settings: IterateSettings, config: RunConfig, data: Path, work: Path,
                         heldout: dict[str, Any], quiet: bool) -> tuple[list[dict], int]:
    from condor.api import ajudge_runs
    from condor.export.build import export_dataset
    from condor.judge.sources import question_key

    if settings.method == "dpo":
        # The fixed judge decides which refinements really beat the policy's own answers, in both orders.
        await ajudge_runs(fixed_judge(config), run=data, grade=False, pairwise=True, quiet=quiet)
    exported = export_dataset(data, "messages" if settings.method == "sft" else "dpo", work / "export")
    lines = exported.files["train"].read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    questions = {question_key(q["question"]) for q in read_heldout(work.parent)}
    return without_heldout(rows, set(heldout["leaves"]), questions)


async def _iteration(root: Path, i: int, settings: IterateSettings, config: RunConfig, ledger: Ledger,
                     quiet: bool, say: Callable[[str], None]) -> dict[str, Any]:
    from condor.api import ajudge_runs
    from condor.run.records import RunReader
    from condor.train.trainer import train_model

    policy = ledger.best
    policy_dir = model_path(root, policy, ledger.base_model)
    work = root / f"iter-{i}"
    say(f"iteration {i}/{settings.iterations}: {policy} writes and refines data")
    await _run_data(root, work, i, settings, config, policy_dir, quiet)
    if ledger.heldout is None:
        records = RunReader(work / "data").final_records()
        questions, leaves = choose_heldout(records, settings.eval_share, settings.eval_questions, settings.seed)
        if not questions:
            raise IterateError(f"iteration 1 kept {len(records)} rows from too few leaves to hold any out for "
                               "evaluation; raise --leaves (or max_tokens), then rerun the same command")
        write_heldout(root, questions)
        ledger.heldout = {"questions": len(questions), "leaves": leaves}
        save_ledger(root, ledger)
    rows, dropped = await _training_rows(settings, config, work / "data", work, ledger.heldout, quiet)
    atomic_write_lines(work / "train.jsonl", (dumps(r) for r in rows))
    row: dict[str, Any] = {"iteration": i, "trained_from": policy, "method": settings.method,
                           "data": {"train_rows": len(rows), "heldout_dropped": dropped}}
    if not rows:
        row.update(promoted=False, best_after=policy, reason="no training rows this iteration; the policy stays")
        return row
    say(f"iteration {i}: training {settings.method} on {len(rows)} rows from {policy}")
    trained = train_model(settings.method, work / "train.jsonl", work / "model",
                          settings.train.model_copy(update={"base_model": policy_dir}), quiet=quiet)
    row["train"] = {k: v for k, v in trained.as_dict().items() if k in ("steps", "first_loss", "final_loss", "seconds")}
    candidate = f"iter-{i}"
    say(f"iteration {i}: {policy} and {candidate} answer {ledger.heldout['questions']} held-out questions")
    questions = read_heldout(root)
    old = await answer_heldout(questions, answers_config(settings, policy_dir), root / "answers" / policy, quiet=quiet)
    new = await answer_heldout(questions, answers_config(settings, str(work / "model")), root / "answers" / candidate,
                               quiet=quiet)
    say(f"iteration {i}: the judge compares {candidate} with {policy}, both orders")
    judged = await ajudge_runs(fixed_judge(config), a=str(old), b=str(new), out=work / "eval", quiet=quiet)
    stats = judged.pairwise
    win_rate = stats.b_win_rate_with_ties.as_dict() if stats is not None and stats.pairs else None
    if stats is not None:
        row["eval"] = {"pairs": stats.pairs, "wins": stats.b_wins, "ties": stats.ties, "losses": stats.a_wins,
                       "win_rate": win_rate, "consistency": stats.position_consistency.as_dict(),
                       "judge": judged.summary.get("judge_model")}
    promoted, reason = decide(settings, win_rate)
    row.update(promoted=promoted, best_after=candidate if promoted else policy, reason=reason)
    return row


async def _run_data(root: Path, work: Path, i: int, settings: IterateSettings, config: RunConfig,
                    policy_dir: str | None, quiet: bool) -> None:
    from condor.api import arun_pipeline

    await arun_pipeline(data_config(config, settings, policy_dir, i), work / "data", quiet=quiet)


async def aiterate(out: str | Path, settings: IterateSettings | None = None, config: RunConfig | None = None, *,
                   quiet: bool = True, say: Callable[[str], None] | None = None) -> IterateResult:
    """Run (or resume) ``settings.iterations`` iterations in the directory ``out``; see the module docstring."""
    settings = settings or IterateSettings()
    config, notes = sized(config or RunConfig())
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise IterateError(f"{root} is a file; --output names the iterate directory")
    root.mkdir(parents=True, exist_ok=True)
    say = say or (lambda message: None)
    lock = RunLock(root / ".lock").acquire()
    try:
        key = settings_key(settings, config.model_dump(mode="json"))
        ledger = load_ledger(root, key, settings.base_model)
        for i in range(len(ledger.rows) + 1, settings.iterations + 1):
            ledger.rows.append(await _iteration(root, i, settings, config, ledger, quiet, say))
            save_ledger(root, ledger)
            last = ledger.rows[-1]
            say(f"iteration {i}: {'promoted' if last['promoted'] else 'not promoted'} ({last['reason']})")
        save_ledger(root, ledger)
    finally:
        lock.release()
    return IterateResult(root, ledger, notes)


def iterate(out: str | Path, settings: IterateSettings | None = None, config: RunConfig | str | Path | None = None,
            **options: Any) -> IterateResult:
    """``condor iterate`` as a function: run or resume the iterations in ``out``.

    ``config`` is the run configuration (a :class:`~condor.config.RunConfig` or a YAML file); options:
    ``quiet``, ``say`` (a function that receives one line per phase).
    """
    import asyncio

    from condor.config import load_config

    cfg = config if isinstance(config, RunConfig) or config is None else load_config(config)
    return asyncio.run(aiterate(out, settings, cfg, **options))
