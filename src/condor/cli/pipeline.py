"""``condor void``, ``condor refine`` and ``condor run``: the paper's two stages and the whole pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from condor.cli.options import (
    ApiKeyEnvOpt,
    BackendOpt,
    BaseUrlOpt,
    CacheOpt,
    ConcurrencyOpt,
    ConfigOpt,
    MaxTokensOpt,
    ModelOpt,
    QuietOpt,
    RetryOpt,
    TemperatureOpt,
    backend_overrides,
    resolve_config,
)

OutputOpt = Annotated[Path, typer.Option("--output", "-o", help="Run directory (resumable; rerun the same command to continue).")]
TreeOpt = Annotated[Optional[str], typer.Option("--tree", help="Knowledge tree: en, zh (shipped) or a tree file.")]
LeavesOpt = Annotated[Optional[int], typer.Option("--leaves", help="Leaf tags to sample per language.", min=1)]
TasksOpt = Annotated[Optional[str], typer.Option("--tasks", help="Comma-separated task types (default: all seven).")]
RoundsOpt = Annotated[Optional[int], typer.Option("--rounds", help="Critique-and-refine rounds (default 1).", min=0, max=10)]
SelectOpt = Annotated[Optional[str], typer.Option("--select", help="last (the paper's default) or best (judge scores).")]
LangOpt = Annotated[Optional[str], typer.Option("--lang", help="Question language: en, zh or both.")]
SeedOpt = Annotated[Optional[int], typer.Option("--seed", help="Seed for tag sampling.")]


def _config(config, backend, base_url, model, api_key_env, concurrency, max_tokens, temperature, cache,
            tree=None, leaves=None, tasks=None, rounds=None, select=None, lang=None, seed=None):
    overrides = backend_overrides(backend, base_url, model, api_key_env, concurrency, max_tokens, temperature)
    overrides.update(
        {
            "cache": str(cache) if cache else None,
            "pipeline.tree": tree,
            "pipeline.leaves": leaves,
            "pipeline.tasks": [t.strip() for t in tasks.split(",") if t.strip()] if tasks else None,
            "pipeline.rounds": rounds,
            "pipeline.select": select,
            "pipeline.lang": lang,
            "pipeline.seed": seed,
        }
    )
    cfg = resolve_config(config, overrides)
    explicit = {name for name, value in (("leaves", leaves), ("tasks", tasks), ("max_tokens", max_tokens)) if value is not None}
    if config is not None:
        # Values written in the config file count as explicit too.
        import yaml

        data = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
        pipeline = data.get("pipeline") or {}
        explicit |= {name for name in ("leaves", "tasks") if name in pipeline}
        if "max_tokens" in (data.get("llm") or {}):
            explicit.add("max_tokens")
    return cfg, explicit


def _execute(cfg, explicit, output: Path, quiet: bool, retry_failed: bool, steps: str, refine_input: Path | None = None):
    from condor.cli.runtime import run_job
    from condor.run.progress import ProgressBoard
    from condor.run.roles import close_role_backends, open_role_backends

    def prepare():
        from condor.run.settings import effective_settings

        return effective_settings(cfg, explicit)

    settings = run_job_sync(prepare)
    for note in settings.notes:
        typer.secho(note, err=True, fg=typer.colors.YELLOW)
    cache_path = Path(cfg.cache) if cfg.cache else output / "cache.sqlite"

    async def job():
        from condor.run.pipeline import Pipeline

        backends = await open_role_backends(cfg, cache_path)
        try:
            with ProgressBoard(quiet=quiet) as board:
                pipeline = Pipeline(cfg, settings, output, backends, board=board, retry_failed=retry_failed)
                if steps in ("void", "run"):
                    await pipeline.void()
                if refine_input is not None:
                    pipeline.import_dataset(refine_input)
                if steps in ("refine", "run"):
                    base = "imported" if refine_input is not None else "answer_filter"
                    await pipeline.refine(base)
                    return pipeline.export(base=base)
                return pipeline.export(final="answer_filter", sft_name="void.jsonl")
        finally:
            await close_role_backends(backends)

    summary = run_job(job)
    typer.echo(f"dataset: {summary.paths['sft']} ({summary.sft} rows)")
    if "preference" in summary.paths:
        typer.echo(f"preference pairs: {summary.paths['preference']} ({summary.preference} rows)")
    typer.echo(f"rejected: {summary.paths['rejected']} ({summary.rejected} rows, each with its reason)")
    typer.echo(f"manifest: {output / 'manifest.json'}")


def run_job_sync(fn):
    """Run a synchronous preparation step with the same error mapping as model jobs."""
    from condor.cli.runtime import run_job

    async def wrapper():
        return fn()

    return run_job(wrapper)


def void(
    output: OutputOpt,
    tree: TreeOpt = None,
    leaves: LeavesOpt = None,
    tasks: TasksOpt = None,
    lang: LangOpt = None,
    seed: SeedOpt = None,
    config: ConfigOpt = None,
    backend: BackendOpt = None,
    base_url: BaseUrlOpt = None,
    model: ModelOpt = None,
    api_key_env: ApiKeyEnvOpt = None,
    concurrency: ConcurrencyOpt = None,
    max_tokens: MaxTokensOpt = None,
    temperature: TemperatureOpt = None,
    cache: CacheOpt = None,
    retry_failed: RetryOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Condor Void: sample tags, write easy/medium/hard questions per task, filter them, answer them."""
    cfg, explicit = _config(config, backend, base_url, model, api_key_env, concurrency, max_tokens, temperature,
                            cache, tree, leaves, tasks, None, None, lang, seed)
    _execute(cfg, explicit, output, quiet, retry_failed, "void")


def refine(
    output: OutputOpt,
    input: Annotated[Optional[Path], typer.Option("--input", "-i", help="Refine this SFT JSONL instead of OUT's Condor Void results.")] = None,
    rounds: RoundsOpt = None,
    select: SelectOpt = None,
    config: ConfigOpt = None,
    backend: BackendOpt = None,
    base_url: BaseUrlOpt = None,
    model: ModelOpt = None,
    api_key_env: ApiKeyEnvOpt = None,
    concurrency: ConcurrencyOpt = None,
    max_tokens: MaxTokensOpt = None,
    temperature: TemperatureOpt = None,
    cache: CacheOpt = None,
    retry_failed: RetryOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Condor Refine: critique and rewrite answers for K rounds, select a version, export the dataset."""
    cfg, explicit = _config(config, backend, base_url, model, api_key_env, concurrency, max_tokens, temperature,
                            cache, None, None, None, rounds, select, None, None)
    if input is None and not (output / "stages" / "answer_filter" / "complete.json").exists():
        from condor.cli.options import fail

        fail(f"{output} has no finished Condor Void results; run `condor void -o {output}` first or pass --input FILE")
    _execute(cfg, explicit, output, quiet, retry_failed, "refine", refine_input=input)


def run(
    output: OutputOpt,
    tree: TreeOpt = None,
    leaves: LeavesOpt = None,
    tasks: TasksOpt = None,
    rounds: RoundsOpt = None,
    select: SelectOpt = None,
    lang: LangOpt = None,
    seed: SeedOpt = None,
    config: ConfigOpt = None,
    backend: BackendOpt = None,
    base_url: BaseUrlOpt = None,
    model: ModelOpt = None,
    api_key_env: ApiKeyEnvOpt = None,
    concurrency: ConcurrencyOpt = None,
    max_tokens: MaxTokensOpt = None,
    temperature: TemperatureOpt = None,
    cache: CacheOpt = None,
    retry_failed: RetryOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """The whole pipeline: tree sampling, Condor Void, Condor Refine, export to OUT/sft.jsonl."""
    cfg, explicit = _config(config, backend, base_url, model, api_key_env, concurrency, max_tokens, temperature,
                            cache, tree, leaves, tasks, rounds, select, lang, seed)
    _execute(cfg, explicit, output, quiet, retry_failed, "run")


def register(app: typer.Typer) -> None:
    app.command("void")(void)
    app.command("refine")(refine)
    app.command("run")(run)
