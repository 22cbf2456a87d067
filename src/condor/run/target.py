"""Exactly N rows: ``--target N`` grows the plan until N records survive every gate.

After each pass over the steps, the kept records of the final step are counted. Short of the target,
another draw of work items joins the plan, sized from the yield so far (kept rows per work item; see
:func:`items_to_draw`), its leaves weighted toward those with no kept row yet; the steps then run again, which
costs calls only for the new items. The loop stops at the target or when the run has sent
``max_requests`` requests in all (counted from the manifest, so the budget holds across resumes),
and says by how much it fell short. The export then keeps exactly N rows, the earliest draws first.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Awaitable, Callable

from condor.run.plan import append_draw, languages
from condor.run.records import RunReader
from condor.run.settings import Settings
from condor.run.directory import RunDirectory

#: Extra work items asked for beyond what the yield so far predicts.
MARGIN = 1.25
#: Requests per target row that the default budget allows.
DEFAULT_REQUESTS_PER_ROW = 30


@dataclass
class TargetOutcome:
    target: int
    kept: int
    draws: int
    requests: int
    budget: int

    @property
    def short_by(self) -> int:
        return max(0, self.target - self.kept)


def requests_sent(run: RunDirectory) -> int:
    """Requests the run has sent to models so far (cache hits not counted)."""
    total = 0
    for entry in run.manifest.get("stages", {}).values():
        usage = entry.get("usage") or {}
        total += max(0, usage.get("requests", 0) - usage.get("cached", 0))
    return total


def _leaf_use(reader: RunReader, final: str) -> tuple[Counter, int, int]:
    """How often each leaf is planned and has kept rows (as sampling weights), items, kept rows."""
    used: Counter = Counter()
    items = 0
    for item in reader.plan():
        used[tuple(item["tag_path"])] += 1
        items += 1
    kept = 0
    for record in reader.records(final):
        used[tuple(record.get("tag_path") or ())] += 20  # a leaf with a kept row is drawn again last
        kept += 1
    return used, items, kept


async def run_to_target(
    run: RunDirectory,
    settings: Settings,
    final: str,
    run_steps: Callable[[], Awaitable[RunReader]],
) -> TargetOutcome:
    """Run the steps, adding draws to the plan until ``target`` rows are kept or the budget is spent."""
    p = settings.config.pipeline
    target = p.target or 0
    budget = p.max_requests or DEFAULT_REQUESTS_PER_ROW * target
    draws = 1 + max((item.get("draw", 0) for item in RunReader(run.root, run.manifest).plan()), default=0)
    per_leaf = len(settings.tasks) * len(languages(p.lang))
    while True:
        reader = await run_steps()
        used, items, kept = _leaf_use(reader, final)
        sent = requests_sent(run)
        if kept >= target or sent >= budget:
            return TargetOutcome(target, kept, draws, sent, budget)
        wanted_items = items_to_draw(target - kept, kept, items, sequential=_one_at_a_time(settings))
        leaves = max(1, math.ceil(wanted_items / per_leaf))
        append_draw(run, p, settings.tasks, leaves, draws, used)
        draws += 1


def items_to_draw(needed: int, kept: int, items: int, *, sequential: bool) -> int:
    """Work items the next draw asks for, ``needed`` rows short, ``kept`` rows from ``items`` so far.

    A server that takes many requests at once gets the yield so far with a margin, so that the run
    rarely needs a pass just for its last few rows (each pass ends on its slowest request). A backend
    that answers one request at a time loses nothing to another pass, while every row past the target
    costs a critique and a refinement that the export then drops (seen: a demo whose second draw
    kept 15 rows where 5 were needed). There the draw assumes the yield is at least one row per item,
    so it overshoots by a few rows at most, and a low yield costs passes rather than wasted rows.
    """
    rows_per_item = kept / items if kept and items else 0.5
    if sequential:
        return max(1, math.ceil(needed / max(rows_per_item, 1.0)))
    return max(1, math.ceil(needed / rows_per_item * MARGIN))


def _one_at_a_time(settings: Settings) -> bool:
    """Whether questions are written one request at a time: the embedded model, or one server at
    concurrency 1, on the local executor (under Ray every worker runs its own)."""
    if settings.config.executor == "ray":
        return False
    writer = settings.config.backend_for("question_writer")
    one_server = not isinstance(getattr(writer, "base_url", None), list) or len(writer.base_url) == 1
    return writer.backend == "embedded" or (writer.concurrency == 1 and one_server)


def first_draw_leaves(settings: Settings) -> int:
    """Leaves per language of the first draw: about enough for the target at two rows per item."""
    p = settings.config.pipeline
    per_leaf = len(settings.tasks) * len(languages(p.lang))
    return max(1, math.ceil((p.target or 0) / 2 / per_leaf))
