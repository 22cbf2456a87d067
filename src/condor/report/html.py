"""``condor report``: one self-contained HTML file about a run, that works offline.

The page is built from ``static/report.html`` (layout), ``static/report.css`` and ``static/report.js``,
all inlined: no CDN, no network, nothing to install to open it. Summary numbers and charts (inline SVG,
:mod:`.charts`) are rendered here; the record browser is the script's, over data embedded as JSON.

Model text is untrusted. Everything rendered here goes through :func:`html.escape`; embedded JSON has
every ``<``, ``>`` and ``&`` written as a ``\\u`` escape, so no text can close its ``<script>`` element;
the script builds the page with ``textContent`` only, never HTML from data; and a Content-Security-Policy
allows exactly the page's own script and style (by hash) and no network at all.

To stay quick with 100,000 records the browser data is split: an index (the filter fields, the
question, the score) read at load, and the details (every version, critique, score and rejection) in
chunks of ``chunk_size`` records, each parsed only when one of its records is opened or searched.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from html import escape
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any, Sequence

from condor.judge.results import JudgeIndex, final_index, read_summary
from condor.judge.sources import final_answer
from condor.report import charts
from condor.report.metrics import run_metrics
from condor.run.records import RunReader
from condor.stages.base import Record

CHUNK = 1000
FILTERS = ("domain", "task", "difficulty", "language", "status")


class ReportError(ValueError):
    """A report that cannot be made as asked; the message says why."""


@dataclass
class Report:
    path: Path
    records: int
    bytes: int
    seconds: float
    notes: list[str] = field(default_factory=list)


def embed_json(value: Any) -> str:
    """JSON that is inert inside ``<script type="application/json">``: no ``<``, ``>``, ``&`` or line separators."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from a model's broken output: ASCII escapes encode anything
        text = json.dumps(value, ensure_ascii=True, separators=(",", ":"))
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _static(name: str) -> str:
    return resources.files("condor.report").joinpath("static", name).read_text(encoding="utf-8")


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")


# -- the record browser's data -----------------------------------------------------------------------
def _detail(record: Record, scores: dict[int, float], rejection: dict[str, Any] | None, pairwise: Any) -> dict[str, Any]:
    versions = record.get("versions") or []
    reasons = {e.get("version"): e.get("reason") for e in record.get("scores") or [] if isinstance(e, dict)}
    chosen = record.get("chosen") or {}
    out: dict[str, Any] = {
        "tag": " > ".join(str(p) for p in record.get("tag_path") or []),
        "versions": [{"r": v.get("round", i), "a": v.get("answer") or "", "s": scores.get(i), "why": reasons.get(i),
                      "src": v.get("source"), "cut": v.get("finish_reason") == "length"} for i, v in enumerate(versions)],
        "critiques": [{"r": c.get("round"), "strengths": c.get("strengths"), "weaknesses": c.get("weaknesses"),
                       "suggestions": c.get("suggestions")} for c in record.get("critiques") or []],
        "chosen": {"v": chosen.get("version"), "why": chosen.get("reason")} if chosen else None,
        "notes": [f"{n.get('stage')}: {n.get('reason')} {n.get('detail') or ''}".strip() for n in record.get("refine_notes") or []],
    }
    if rejection is not None:
        out["rejection"] = {"stage": rejection.get("stage"), "reason": rejection.get("reason"), "detail": rejection.get("detail")}
        out["attempts"] = [o.get("text") for o in rejection.get("outputs") or [] if isinstance(o, dict) and o.get("text")]
    if pairwise is not None:
        out["pairwise"] = {"winner": pairwise.get("winner"), "consistent": pairwise.get("consistent"),
                           "verdicts": pairwise.get("verdicts")}
    return out


def browser_data(records: Sequence[Record], rejected: Sequence[dict[str, Any]], index: JudgeIndex,
                 chunk_size: int = CHUNK) -> tuple[dict[str, Any], list[list[dict[str, Any]]]]:
    """The index read at load, and the detail chunks."""
    values: dict[str, dict[str, int]] = {name: {} for name in FILTERS}
    codes: dict[str, list[int]] = {name: [] for name in FILTERS}
    ids, questions, scores_out, details = [], [], [], []

    def add(record: Record, status: str, rejection: dict[str, Any] | None) -> None:
        for name in FILTERS:
            value = status if name == "status" else str(record.get(name) or "(none)")
            codes[name].append(values[name].setdefault(value, len(values[name])))
        scores = index.scores(record) if rejection is None else {}
        verdict = None
        if rejection is None and index.has_pairwise:
            versions = record.get("versions") or []
            verdict = index.verdict(record, versions[0].get("answer") if versions else "", final_answer(record) or "")
        ids.append(str(record.get("id") or rejection and rejection.get("id") or ""))
        questions.append(record.get("question") or "")
        scores_out.append(scores.get(final_index(record)))
        details.append(_detail(record, scores, rejection, verdict))

    for record in records:
        add(record, "kept", None)
    for row in rejected:
        add(row.get("record") or {"id": row.get("id")}, f"rejected: {row.get('stage')}: {row.get('reason')}", row)
    data = {"count": len(ids), "chunk": chunk_size, "values": {k: list(v) for k, v in values.items()},
            "codes": codes, "id": ids, "q": questions, "score": scores_out}
    return data, [details[i:i + chunk_size] for i in range(0, len(details), chunk_size)]


# -- the summary and charts ---------------------------------------------------------------------------
def _card(label: str, value: str, detail: str = "") -> str:
    extra = f'<div class="detail">{escape(detail)}</div>' if detail else ""
    return f'<div class="card"><div class="label">{escape(label)}</div><div class="big">{escape(value)}</div>{extra}</div>'


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def summary_cards(metrics: dict[str, Any], judge: dict[str, Any] | None, diversity: dict[str, Any] | None) -> str:
    coverage, comp = metrics["coverage"], metrics["composition"]
    tokens = sum(t["prompt_tokens"] + t["completion_tokens"] for t in metrics["tokens"])
    cards = [
        _card("records kept", f"{metrics['rows']:,}", f"{metrics['rejected']:,} rejected"),
        _card("leaf coverage", _pct(coverage.get("tree_share")) if coverage.get("tree_leaves") else f"{coverage['kept_leaves']:,} leaves",
              f"{coverage['kept_leaves']:,} of {coverage['tree_leaves']:,} tree leaves" if coverage.get("tree_leaves") else (coverage.get("note") or "")),
        _card("domains", f"{len(comp['domain']['counts']):,}", f"balance {comp['domain']['balance']:.2f}" if comp['domain']['balance'] is not None else ""),
        _card("tasks x difficulties", f"{len(comp['task']['counts'])} x {len(comp['difficulty']['counts'])}",
              ", ".join(comp["language"]["counts"])),
        _card("tokens", f"{tokens:,}", f"{len(metrics['tokens'])} model steps"),
    ]
    gains = metrics.get("gains")
    if gains and gains.get("gain"):
        cards.append(_card("refinement gain", f"{gains['gain']['value']:+.2f}",
                           f"grade {gains['original']['value']:.2f} -> {gains['final']['value']:.2f} (1-10)"))
    pairs = (judge or {}).get("pairwise")
    if pairs and pairs.get("pairs"):
        cards.append(_card("final beats original", _pct(pairs["b_win_rate"]["value"]),
                           f"ties {_pct(pairs['tie_rate']['value'])}, consistency {_pct(pairs['position_consistency']['value'])}"))
    if diversity:
        cards.append(_card("question diversity", f"{diversity['mean_distance']:.3f}",
                           f"near-duplicates {_pct(diversity['near_duplicate_rate'])}"))
    return "".join(cards)


def _section(title: str, body: str, note: str = "") -> str:
    extra = f'<p class="note">{escape(note)}</p>' if note else ""
    return f'<section class="panel"><h2>{escape(title)}</h2>{extra}{body}</section>'


def chart_sections(metrics: dict[str, Any], judge: dict[str, Any] | None, diversity: dict[str, Any] | None) -> str:
    comp, coverage = metrics["composition"], metrics["coverage"]
    domains = list(comp["domain"]["counts"].items())
    shown = domains[:40] + ([("(other domains)", sum(v for _, v in domains[40:]))] if len(domains) > 40 else [])
    parts = [_section("Rows by domain", charts.bars(shown, "rows by domain"),
                      f"balance (Pielou evenness) {comp['domain']['balance']:.2f}" if comp["domain"]["balance"] is not None else "")]
    by_domain = sorted(coverage.get("by_domain", {}).items(), key=lambda kv: -kv[1]["covered"])
    if by_domain:
        items = [(name, [c["covered"], c["leaves"] - c["covered"]]) for name, c in by_domain[:40]]
        parts.append(_section("Leaf coverage by domain", charts.stacked(items, ["leaves with a kept row", "leaves without"], "leaf coverage"),
                              f"{coverage['kept_leaves']:,} of {coverage['tree_leaves']:,} leaves ({_pct(coverage['tree_share'])}); "
                              f"{_pct(coverage.get('sampled_share'))} of the sampled leaves"))
    grid = metrics["task_by_difficulty"]
    parts.append(_section("Task x difficulty", charts.heatmap(grid["tasks"], grid["difficulties"], grid["counts"], "task by difficulty")))
    parts.append(_section("Rejections by reason", charts.bars(list(metrics["rejections"].items())[:40], "rejections by reason")))
    gains = metrics.get("gains")
    if gains:
        points = [(f"version {r['round']} (" + ("original" if r["round"] == 0 else f"after round {r['round']}") + ")",
                   r["value"], r["low"], r["high"]) for r in gains["by_round"]]
        for label, key in (("original answers", "original"), ("final answers", "final")):
            if gains.get(key):
                points.append((label, gains[key]["value"], gains[key]["low"], gains[key]["high"]))
        parts.append(_section("Refinement: grade before and after", charts.intervals(points, "grades by round"),
                              f"mean judge grade (1-10) with 95% intervals; {gains['improved']} improved, {gains['same']} unchanged, "
                              f"{gains['worse']} worse"))
    else:
        parts.append(_section("Refinement: grade before and after", charts.empty("no grades yet: run `condor judge --in RUN`")))
    lengths = metrics["lengths"]
    for key, title in (("question", "Question length"), ("answer", "Final answer length")):
        d = lengths[key]
        note = f"mean {d['mean']:.0f}, median {d['median']}, 90th percentile {d['p90']} characters" if d["n"] else ""
        parts.append(_section(title, charts.histogram(d["edges"], d["counts"], title), note))
    tokens = [(t["stage"], [t["prompt_tokens"], t["completion_tokens"]]) for t in metrics["tokens"]]
    parts.append(_section("Tokens per stage", charts.stacked(tokens, ["prompt", "completion"], "tokens per stage")))
    if diversity and diversity.get("points"):
        ref = diversity.get("reference")
        note = (f"t-SNE of all-MiniLM-L6-v2 embeddings; mean pairwise cosine distance {diversity['mean_distance']:.3f}"
                f" (sample of {diversity['sample']:,}), near-duplicates (cosine >= {diversity['threshold']}) "
                f"{_pct(diversity['near_duplicate_rate'])}")
        if ref:
            note += f"; {ref['name']}: {ref['mean_distance']:.3f} and {_pct(ref['near_duplicate_rate'])}"
        points = [(p[0], p[1], int(p[2])) for p in diversity["points"]]
        parts.append(_section("Question map", charts.scatter(points, diversity["groups"], "question map"), note))
    return "".join(parts)


def judge_table(judge: dict[str, Any] | None) -> str:
    pairs = (judge or {}).get("pairwise")
    if not pairs or not pairs.get("pairs"):
        return ""
    def row(label: str, key: str) -> str:
        value = pairs.get(key)
        if not value:
            return ""
        return (f"<tr><th>{escape(label)}</th><td>{100 * value['value']:.1f}%</td>"
                f"<td>{100 * value['low']:.1f}% - {100 * value['high']:.1f}%</td></tr>")
    sides = pairs.get("sides") or {}
    body = "".join([row("final wins" if judge.get("kind") == "run" else "b wins", "b_win_rate"), row("ties", "tie_rate"),
                    row("losses", "a_win_rate"), row("win rate, ties as half", "b_win_rate_with_ties"),
                    row("position consistency", "position_consistency"),
                    row("length-controlled win rate", "length_controlled_win_rate")])
    note = (f"{pairs['pairs']:,} pairs, {sides.get('b')} against {sides.get('a')}, each asked in both orders; judge "
            f"{judge.get('judge_model')}; mean length difference {pairs['mean_length_difference']:+.0f} characters")
    return _section("Judge: pairwise", f'<table class="stats"><tr><th></th><th>rate</th><th>95% interval</th></tr>{body}</table>', note)


# -- the page -----------------------------------------------------------------------------------------
def build_report(
    run: str | Path,
    out: str | Path | None = None,
    *,
    reference: str | Path | None = None,
    embeddings: bool = True,
    map_points: int = 2000,
    sample: int = 5000,
    chunk_size: int = CHUNK,
) -> Report:
    """Write the report of ``run`` to ``out`` (default ``RUN/report.html``)."""
    started = time.monotonic()
    root = Path(run)
    reader = RunReader(root)
    target = Path(out) if out is not None else root / "report.html"
    if target.is_dir():
        raise ReportError(f"{target} is a directory; --output names the HTML file to write")
    records = reader.final_records()
    rejected = list(reader.rejections())
    index = JudgeIndex(reader)
    judge = read_summary(root)
    metrics = run_metrics(reader, records, index, rejected)
    notes: list[str] = []
    diversity = None
    if embeddings:
        from condor.report.diversity import question_diversity, read_reference
        from condor.tree.embeddings import EmbeddingsUnavailable

        try:
            ref_questions = read_reference(reference) if reference is not None else None
        except ValueError as exc:
            raise ReportError(str(exc)) from None
        try:
            diversity = question_diversity([r["question"] for r in records if r.get("question")], ref_questions,
                                           map_points=map_points, sample=sample,
                                           reference_name=Path(reference).name if reference else "reference").as_dict()
        except EmbeddingsUnavailable as exc:
            notes.append(f"no diversity numbers or question map: {exc}")
    elif reference is not None:
        notes.append("--reference is drawn on the question map, which --no-embeddings leaves out")
    data, chunks = browser_data(records, rejected, index, chunk_size)
    script, style = _static("report.js"), _static("report.css")
    csp = (f"default-src 'none'; script-src '{_sha256(script)}'; style-src '{_sha256(style)}'; img-src data:; "
           "base-uri 'none'; form-action 'none'")
    chunk_tags = "".join(f'<script type="application/json" id="chunk-{i}">{embed_json(c)}</script>\n' for i, c in enumerate(chunks))
    page = Template(_static("report.html")).substitute(
        csp=escape(csp), style=style, script=script, title=escape(f"Condor report: {root.resolve().name}"),
        run=escape(str(root)), generated=escape(datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        cards=summary_cards(metrics, judge, diversity), judge=judge_table(judge),
        charts=chart_sections(metrics, judge, diversity), index=embed_json(data), chunks=chunk_tags,
        notes="".join(f'<p class="note">{escape(n)}</p>' for n in notes + ([metrics["coverage"]["note"]] if metrics["coverage"].get("note") else [])),
    )
    from condor.run.store import atomic_write_text

    atomic_write_text(target, page)
    return Report(target, data["count"], target.stat().st_size, time.monotonic() - started, notes)
