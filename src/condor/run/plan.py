"""The plan of a run: which (tag, task, language) work items Condor Void writes questions for.

Leaves are drawn from the World Knowledge Tree by the balanced sampler (uniform over leaves), once per
language, and crossed with the selected task types. The plan is saved in the run directory at the first
run and read back on resume, so a resumed run works on exactly the same items. The manifest keeps a
fingerprint of what made the plan (tree name or tree file content, leaves, tasks, language, seed): a
resume with any of them changed, an edited tree file included, is refused instead of silently mixing
two plans.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from pathlib import Path
from collections import Counter
from typing import Iterator

from condor.config import ConfigError, PipelineConfig
from condor.run.records import PLAN_FILE
from condor.run.shards import parse_shard, plan_digest, shard_of
from condor.run.directory import RunDirectory
from condor.run.store import atomic_write_lines, dumps
from condor.stages.base import Record
from condor.stages.tasks import TaskType
from condor.tree.io import SHIPPED_TREES, resolve_tree
from condor.tree.model import KnowledgeTree, node_id
from condor.tree.sample import sample_leaves

log = logging.getLogger(__name__)

__all__ = ["PLAN_FILE", "append_draw", "build_plan", "plan_items", "load_or_create_plan", "plan_fingerprint", "trees_for"]


def languages(lang: str) -> list[str]:
    return ["en", "zh"] if lang == "both" else [lang]


def trees_for(pipeline: PipelineConfig) -> dict[str, KnowledgeTree]:
    """The tree each language samples from.

    A shipped tree name follows the language (``--lang zh`` uses the shipped ``zh`` tree, ``both`` uses
    ``en`` and ``zh``); a tree file serves every requested language it has leaves in.
    """
    chosen: dict[str, KnowledgeTree] = {}
    path = Path(pipeline.tree)
    if pipeline.tree not in SHIPPED_TREES and path.exists() and not path.is_file():
        # Read for the plan's fingerprint and again for each draw: a pipe would be empty the second time.
        raise ConfigError(f"{path}: not a regular file (a pipe or a device?); save the tree to a file and pass that")
    if pipeline.tree in SHIPPED_TREES:
        for lang in languages(pipeline.lang):
            chosen[lang] = resolve_tree(lang if lang in SHIPPED_TREES else pipeline.tree)
    else:
        tree = resolve_tree(pipeline.tree)
        for lang in languages(pipeline.lang):
            chosen[lang] = tree
    return chosen


def build_plan(
    pipeline: PipelineConfig,
    tasks: dict[str, TaskType],
    leaves: int,
    *,
    draw: int = 0,
    seen: dict[str, int] | None = None,
    used: Counter | None = None,
) -> list[Record]:
    """Work items: ``leaves`` sampled leaves per language, each with every selected task.

    A growing plan (``--target``) adds draws: draw ``d`` samples with its own seed, weighting leaves
    down by ``used`` (how often each already appears, and has kept rows), and ``seen`` keeps ids unique
    across draws.
    """
    return list(plan_items(pipeline, tasks, leaves, draw=draw, seen=seen, used=used))


def plan_items(
    pipeline: PipelineConfig,
    tasks: dict[str, TaskType],
    leaves: int,
    *,
    draw: int = 0,
    seen: dict[str, int] | None = None,
    used: Counter | None = None,
) -> Iterator[Record]:
    """The work items of :func:`build_plan` one at a time, so a large plan is written without a list."""
    seen = {} if seen is None else seen
    for lang, tree in trees_for(pipeline).items():
        seed = pipeline.seed if draw == 0 else hash_seed(pipeline.seed, draw)
        paths = sample_leaves(tree, leaves, seed=seed, language=lang, counts=used)
        distinct = len(set(paths))
        if draw == 0 and distinct < len(paths):
            # Said before the run starts: repeated leaves make near-identical questions, and the duplicate
            # filter will reject most of them, which otherwise looks like a broken model.
            log.warning(
                "tree %r has %d %s in %r, fewer than the %d asked for (--leaves): each is used about %d "
                "times, so expect many near-duplicate questions to be rejected", tree.name, distinct,
                "leaf" if distinct == 1 else "leaves", lang, leaves, round(leaves / distinct),
            )
        for path in paths:
            for task in tasks.values():
                base = f"{lang}/{node_id(path)}/{task.slug}"
                seen[base] = seen.get(base, 0) + 1
                # Sampling past the number of leaves repeats leaves; the draw number keeps ids unique.
                item_id = base if seen[base] == 1 else f"{base}~{seen[base]}"
                yield (
                    {
                        "id": item_id,
                        "tag_path": list(path),
                        "domain": path[0],
                        "task": task.slug,
                        "language": lang,
                        "tree": tree.name,
                        "tree_version": tree.version,
                        **({"draw": draw} if draw else {}),
                    }
                )


def hash_seed(seed: int, draw: int) -> int:
    """A seed for draw ``draw`` that does not repeat draw 0's sample."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{draw}".encode()).digest()[:8], "big")


def plan_fingerprint(pipeline: PipelineConfig, task_slugs: list[str], leaves: int | str) -> str:
    tree_id = pipeline.tree
    if pipeline.tree not in SHIPPED_TREES:
        path = Path(pipeline.tree)
        tree_id = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else pipeline.tree
    blob = json.dumps(
        {"tree": tree_id, "leaves": leaves, "tasks": task_slugs, "lang": pipeline.lang, "seed": pipeline.seed},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def load_or_create_plan(
    run: RunDirectory, pipeline: PipelineConfig, tasks: dict[str, TaskType], leaves: int, *, growing: bool = False
) -> int:
    """Write the plan on the first run, check it on later ones; returns the number of work items.

    A growing plan (``--target``) is bound to everything but its size, which later draws change. A
    sharded run (``pipeline.shard``, i/N) keeps only its shard's items and notes in the manifest how
    many items the whole plan has and a digest of their ids, for ``condor merge`` to check.
    """
    path = run.root / PLAN_FILE
    run.bind_inputs("plan", plan_fingerprint(pipeline, list(tasks), "growing" if growing else leaves))
    run.bind_inputs("shard", pipeline.shard or "all")
    if path.exists():
        with path.open(encoding="utf-8") as handle:
            return sum(1 for _ in handle)
    items = plan_items(pipeline, tasks, leaves)
    first = next(items, None)
    if first is None:
        raise ConfigError("the plan is empty: no leaves or no tasks selected")
    if pipeline.shard is not None:
        index, count = parse_shard(pipeline.shard)
        # Every id (for the digest the merge checks) but only this shard's items are held.
        ids: list[str] = []
        mine: list[Record] = []
        for item in itertools.chain([first], items):
            ids.append(item["id"])
            if shard_of(item["id"], count) == index:
                mine.append(item)
        run.manifest["shard"] = {"index": index, "count": count, "plan_items": len(ids), "plan_digest": plan_digest(ids)}
        run.save_manifest()
        return atomic_write_lines(path, (dumps(item) for item in mine))
    return atomic_write_lines(path, (dumps(item) for item in itertools.chain([first], items)))


def append_draw(
    run: RunDirectory, pipeline: PipelineConfig, tasks: dict[str, TaskType], leaves: int, draw: int, used: Counter
) -> int:
    """Add draw ``draw`` (``leaves`` more leaves per language) to the plan; returns the items added.

    The whole plan is rewritten through a temporary file, so a kill leaves the old plan or the new one.
    """
    path = run.root / PLAN_FILE
    existing = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    seen: dict[str, int] = {}
    for line in existing:
        base = json.loads(line)["id"].split("~", 1)[0]
        seen[base] = seen.get(base, 0) + 1
    items = build_plan(pipeline, tasks, leaves, draw=draw, seen=seen, used=used)
    atomic_write_lines(path, iter([*existing, *(dumps(item) for item in items)]))
    return len(items)
