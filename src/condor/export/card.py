"""The dataset card: ``README.md`` beside the exported data, in the Hugging Face card layout.

A YAML header (languages, size, task category, tags, and ``configs`` naming the data files so that
``datasets.load_dataset(DIR)`` finds the splits), then what a person deciding whether to train on the
data needs: how it was made (the command, models per role, prompt template versions, tree and
version, rounds and selection), what is in it (counts by domain, task, difficulty and language, leaf
coverage and balance), what was thrown away and why, tokens spent per stage, the judge's results, and
what this export did (format, filters, split, how DPO pairs were made). Rendering only: the numbers
come from :mod:`condor.report.metrics` and :mod:`condor.judge.results`.
"""

from __future__ import annotations

import shlex
from typing import Any

import yaml

FORMAT_DESCRIPTIONS = {
    "messages": "chat `messages` (user, assistant) with the record's whole provenance in `meta`: TRL's SFTTrainer, axolotl and most trainers read it",
    "sharegpt": "ShareGPT `conversations` (`from`: human/gpt, `value`) with provenance in `meta`",
    "alpaca": "Alpaca `instruction` / `input` / `output` with `domain`, `task`, `difficulty`, `language`",
    "parquet": "Parquet: chat `messages`, typed columns (`id`, `domain`, `task`, `difficulty`, `language`, `tag_path`, `score`, `chosen_version`) and the provenance as JSON text in `meta`",
    "hf": "a `datasets.DatasetDict` saved with `save_to_disk` (columns as in the Parquet layout); open it with `datasets.load_from_disk`",
    "dpo": "TRL's conversational preference format (`prompt`, `chosen`, `rejected`), judge verdicts and margin in `meta`",
    "critique": "critique records (`question`, `answer`, `critique`, `refined_answer`) labelled by whether the refinement won under the judge",
}


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "1M<n<10M"


def pipeline_command(manifest: dict[str, Any], run: str) -> str:
    """A command that makes the same run: the mode, then every pipeline and model setting it had."""
    config = manifest.get("config") or {}
    pipeline, llm = config.get("pipeline") or {}, config.get("llm") or {}
    steps = manifest.get("steps") or {}
    mode = "void" if (manifest.get("final") or {}).get("dataset") == "void.jsonl" else "run"
    if "imported" in steps or "questions" not in steps:
        mode = "refine"
    words = ["condor", mode, "-o", run]
    if mode != "refine":
        for name in ("tree", "leaves", "tasks", "lang", "seed"):
            value = pipeline.get(name)
            if value is not None:
                words += [f"--{name}", ",".join(value) if isinstance(value, list) else str(value)]
    if mode == "refine" and "imported" in steps:
        words += ["--input", "DATA.jsonl"]  # the file's path is not recorded, only its fingerprint
    if mode != "void":
        words += ["--rounds", str(pipeline.get("rounds")), "--select", str(pipeline.get("select"))]
    words += ["--backend", str(llm.get("backend"))]
    for name in ("base_url", "model"):
        if llm.get(name):
            words += ["--" + name.replace("_", "-"), str(llm[name])]
    return shlex.join(words)


def _models(manifest: dict[str, Any]) -> list[tuple[str, str, str]]:
    stages, steps = manifest.get("stages") or {}, manifest.get("steps") or {}
    rows = []
    for name, spec in steps.items():
        if spec.get("kind") == "model":
            entry = stages.get(name) or {}
            rows.append((name, spec.get("role", ""), entry.get("model") or "", spec.get("template_version", "")))
    return rows


def _judge_section(judge: dict[str, Any] | None) -> str:
    if not judge:
        return "No judge was run on this dataset (`condor judge --in RUN` grades it and compares each refined answer with its original)."
    lines = [f"Judge model: `{judge.get('judge_model')}`."]
    grades = judge.get("grades")
    if grades and grades.get("original"):
        o, f, g = grades["original"], grades.get("final") or {}, grades.get("gain") or {}
        lines.append(f"Grades (1-10, mean with 95% interval): original answers {o['value']:.2f} [{o['low']:.2f}, {o['high']:.2f}], "
                     f"final answers {f.get('value', 0):.2f} [{f.get('low', 0):.2f}, {f.get('high', 0):.2f}], "
                     f"gain {g.get('value', 0):+.2f} [{g.get('low', 0):+.2f}, {g.get('high', 0):+.2f}] over {grades['records']} records "
                     f"({grades['improved']} improved, {grades['same']} unchanged, {grades['worse']} worse).")
    pairs = judge.get("pairwise")
    if pairs and pairs.get("pairs"):
        def pct(key: str) -> str:
            value = pairs[key]
            return f"{100 * value['value']:.1f}% [{100 * value['low']:.1f}, {100 * value['high']:.1f}]"

        sides = pairs.get("sides") or {}
        lines.append(f"Pairwise, {sides.get('b', 'b')} against {sides.get('a', 'a')}, each pair asked in both orders "
                     f"({pairs['pairs']} pairs): wins {pct('b_win_rate')}, ties {pct('tie_rate')}, losses {pct('a_win_rate')}; "
                     f"position consistency {pct('position_consistency')}; mean length difference "
                     f"{pairs['mean_length_difference']:+.0f} characters"
                     + (f"; length-controlled win rate {pct('length_controlled_win_rate')}." if pairs.get("length_controlled_win_rate") else "."))
    return "\n\n".join(lines)


def render_card(*, name: str, run: str, manifest: dict[str, Any], metrics: dict[str, Any], export: dict[str, Any],
                judge: dict[str, Any] | None, command: str | None = None) -> str:
    """The whole ``README.md``; ``export`` describes this export (format, files, rows, filters, pairing)."""
    languages = [lang for lang in metrics["composition"]["language"]["counts"] if lang != "(none)"]
    total = sum(export["rows"].values())
    header: dict[str, Any] = {
        "pretty_name": name,
        "language": languages or ["en"],
        "size_categories": [_size_category(total)],
        "task_categories": ["text-generation"],
        "tags": ["synthetic", "condor", "dpo" if export["format"] == "dpo" else "sft"],
    }
    if export.get("data_files"):
        header["configs"] = [{"config_name": "default",
                              "data_files": [{"split": s, "path": p} for s, p in export["data_files"].items()]}]
    pipeline = (manifest.get("config") or {}).get("pipeline") or {}
    composition = metrics["composition"]
    coverage = metrics["coverage"]
    out = ["---", yaml.safe_dump(header, allow_unicode=True, sort_keys=False).strip(), "---", "",
           f"# {name}", "",
           f"Synthetic {'preference' if export['format'] == 'dpo' else 'instruction'} data made with Condor "
           "(knowledge-driven question synthesis from a World Knowledge Tree, then self-critique and refinement), "
           f"{total} rows in the {export['format']} layout: {FORMAT_DESCRIPTIONS[export['format']]}.", "",
           "## Files", "", _table(("split", "file", "rows"), [(s, export["data_files"].get(s, export["files"].get(s, "")), n)
                                                            for s, n in export["rows"].items()]), "",
           "## How the data was made", "",
           "The run was made by this command (flags reconstructed from the run's recorded configuration; "
           "`DATA.jsonl` stands for the dataset a refine run was given):", "",
           "```bash", pipeline_command(manifest, run), "```", ""]
    if command:
        out += ["and exported with:", "", "```bash", command, "```", ""]
    trees = ", ".join(f"{lang}: `{t['tree']}` version {t['version']}" for lang, t in metrics.get("trees", {}).items())
    out += [f"Tree: {trees or 'none (an imported dataset)'}; "
            f"refinement rounds: {pipeline.get('rounds')}, selection: `{pipeline.get('select')}`.", "",
            _table(("step", "role", "model", "prompt template version"), _models(manifest)), "",
            "## Composition", ""]
    for field in ("domain", "task", "difficulty", "language"):
        entry = composition[field]
        balance = f" (balance {entry['balance']:.2f})" if entry["balance"] is not None else ""
        out += [f"By {field}{balance}:", "", _table((field, "rows"), list(entry["counts"].items())), ""]
    if coverage.get("tree_leaves"):
        out.append(f"Leaf coverage: {coverage['kept_leaves']} of the tree's {coverage['tree_leaves']} leaves have a kept row "
                   f"({100 * coverage['tree_share']:.2f}%)" + (f"; {100 * coverage['sampled_share']:.1f}% of the sampled leaves."
                                                              if coverage.get("sampled_share") is not None else "."))
    else:
        out.append(f"Leaf coverage: {coverage['kept_leaves']} leaves have a kept row; {coverage.get('note') or ''}.")
    out += ["", "## Rejections", ""]
    rejections = metrics["rejections"]
    out.append(_table(("stage: reason", "records"), list(rejections.items())) if rejections else "No record was rejected.")
    out += ["", "## Tokens per stage", ""]
    tokens = metrics["tokens"]
    out.append(_table(("stage", "prompt tokens", "completion tokens", "requests", "from cache"),
                      [(t["stage"], t["prompt_tokens"], t["completion_tokens"], t["requests"], t["cached"]) for t in tokens])
               if tokens else "No token usage was recorded.")
    out += ["", "## Judge results", "", _judge_section(judge), "", "## This export", ""]
    details = [f"Format: `{export['format']}`."]
    if export.get("filters"):
        details.append("Filters: " + ", ".join(f"{k} = {v}" for k, v in export["filters"].items()) + ".")
    if export.get("dropped"):
        details.append("Left out by the filters: " + ", ".join(f"{v} ({k})" for k, v in export["dropped"].items()) + ".")
    if export.get("split"):
        details.append(export["split"])
    if export.get("pairing"):
        details.append(export["pairing"])
    if export.get("skipped"):
        details.append("Records that gave no row: " + ", ".join(f"{v} ({k})" for k, v in export["skipped"].items()) + ".")
    details += export.get("notes") or []
    out += [" ".join(details), "", "## Limitations", "",
            "Every question and answer was written by a language model and checked only by automatic filters and, "
            "where stated, a model judge; no person reviewed the rows. Judges prefer longer answers and, unless "
            "asked in both orders, the first answer shown. Check a sample (`condor report`) before training.", ""]
    return "\n".join(out)
