"""Sharded runs: ``--shard i/N`` runs one N-th of a plan, so that N machines without Ray can share a run.

Which shard a work item belongs to is a stable hash of its id (:func:`shard_of`), so each shard's plan
is a subset of the unsharded plan, the shards are disjoint, and together they cover it whatever order
the plan is in. A shard records the size and a digest of the whole plan, so that ``condor merge``
(:mod:`condor.run.merge`) can prove there is no gap and no duplicate without the tree.

Gates that decide by looking across records (near-duplicate removal: the first of two similar
questions in id order wins) would decide differently inside a shard than over the whole plan: a
question could be dropped in its shard for a duplicate that the whole run drops too, leaving the
record the whole run keeps without an answer. So a shard *defers* such gates
(:func:`defer_cross_record_gates`): it answers every question the per-record gates let through, and
the merge applies the deferred gates to the merged records, in id order, exactly as one unsharded run
would. The cost is answering the few near-duplicates that the merge then drops; the gain is that a
merged run has exactly the records of the unsharded one. A gate that keeps state is deferred unless it
says otherwise (:attr:`~condor.filters.base.Gate.across_records`); the MiniLM on-topic gate does say so,
since its batch changes only the last bits of a score.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable, Sequence

from condor.config import PipelineConfig, parse_shard
from condor.run.steps import GateStep, Step

__all__ = ["defer_cross_record_gates", "gate_settings", "input_files", "parse_shard", "plan_digest", "shard_of"]


def shard_of(item_id: str, count: int) -> int:
    """The shard (0..count-1) that work item ``item_id`` belongs to; the same on every machine."""
    digest = hashlib.sha256(item_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def plan_digest(ids: Iterable[str]) -> str:
    """A digest of a set of work item ids (order does not matter)."""
    blob = "\n".join(sorted(ids))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def input_files(pipeline: PipelineConfig) -> dict[str, str | None]:
    """Digests of the task and few-shot files a run was made from: shards must agree on what the files
    hold, not on where they lie. (The tree's content is in the plan's fingerprint, the benchmark
    prompts' in the decontamination gate's settings.)"""
    def digest(path: str | None) -> str | None:
        if not path:
            return None
        try:
            return hashlib.sha256(Path(path).read_bytes()).hexdigest()
        except OSError:
            return None  # the run itself reads the file and says what is wrong with it

    return {"task_file": digest(pipeline.task_file), "few_shot_file": digest(pipeline.few_shot_file)}


def gate_settings(steps: Sequence[Step]) -> dict[str, Any]:
    """``{gate step: settings}`` as the orchestrator keys them, in JSON form (for the merged markers)."""
    out = {step.name: step.settings for step in steps if isinstance(step, GateStep)}
    return json.loads(json.dumps(out, default=str))


def defer_cross_record_gates(steps: Sequence[Step]) -> tuple[list[Step], dict[str, list[Any]]]:
    """``steps`` without the gates that look across records, and ``{step: [[gate name, settings]]}`` of
    what was left out, for the merge to apply over all shards."""
    shard_steps: list[Step] = []
    deferred: dict[str, list[Any]] = {}
    for step in steps:
        if isinstance(step, GateStep) and any(gate.decides_across_records for gate in step.gates):
            kept = tuple(gate for gate in step.gates if not gate.decides_across_records)
            deferred[step.name] = [[gate.name, gate.settings] for gate in step.gates if gate.decides_across_records]
            step = replace(step, gates=kept)
        shard_steps.append(step)
    return shard_steps, json.loads(json.dumps(deferred, default=str))
