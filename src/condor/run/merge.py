"""``condor merge``: join the run directories of a sharded run (``--shard i/N``) into one run directory.

The merged directory is an ordinary run: ``condor export``, ``judge`` and ``report`` read it, and the
unsharded command (``condor run -o MERGED`` with the same settings and no ``--shard``) finds every
step finished and makes no model call.

What is checked first, each failure a one-line :class:`MergeError` that names the directory:

- every directory is a finished shard (its final step and every step before it complete), and no
  other process is writing it (each shard's run lock is held until the merge ends);
- all were made with the same settings (machine-local ones aside: addresses, keys, concurrency,
  timeouts, rate limits, GPU sharing, the executor and the cache file), the same plan inputs (tree
  file content, leaves, tasks, languages, seed), the same content of task, few-shot and benchmark
  files wherever each machine keeps them, the same steps, and the same number of shards N;
- shards 0..N-1 are each there exactly once;
- their plans are disjoint, each item belongs to its shard, and together they are the whole plan
  (its size and id digest, noted by every shard when it made its plan).

Then each step of the pipeline, in order: a model step gets the shards' current units (ids are
disjoint, so nothing is chosen between shards); a gate step gets the shards' units for the inputs it
has now, and the gates each shard deferred (near-duplicate removal) are applied to the records they
kept, in id order, over all shards at once: the same verdicts as in one unsharded run (see
:mod:`condor.run.shards`). After each step, every current input must have its unit: a gap is an
error, never a silent drop. The result is built in a temporary directory beside ``OUT``
(``.OUT.merging-<pid>``, locked while it is built) and renamed into place, so a failed merge leaves
nothing half-written; one left by a merge that was killed outright is removed by the next merge. Left
out: merging request caches (the merged run needs none to be read) and judge summaries (judge the
merged run instead).
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

from condor.filters.base import Gate
from condor.run.lock import RunLock
from condor.run.orchestrate import step_key, step_summary
from condor.run.records import PLAN_FILE, RunReader, read_manifest
from condor.run.shards import plan_digest, shard_of
from condor.run.directory import LOCK_FILE, RunDirectory
from condor.run.store import RunStoreError, atomic_write_lines, dumps
from condor.stages.base import Rejection

__all__ = ["MergeError", "MergeResult", "merge_runs"]

#: Settings that may differ between the machines of one sharded run: where and how fast each one
#: reaches its model, not what the model is asked.
MACHINE_SETTINGS = frozenset({
    "base_url", "api_key_env", "concurrency", "timeout", "max_retries", "requests_per_minute", "tokens_per_minute",
    "replica_cooldown", "n_threads", "tensor_parallel_size", "gpu_memory_utilization", "max_batch", "enforce_eager",
})
#: Top-level settings of a machine's own: who calls the model (local or Ray, and where) and its cache file.
MACHINE_SECTIONS = frozenset({"cache", "executor", "ray"})
#: Pipeline settings compared by what they lead to, not as written: the shard itself, and file paths
#: (each machine keeps the files where it likes; their content is compared through the plan's
#: fingerprint, the gates' settings and the shard's note of its files).
PIPELINE_PATHS = frozenset({"shard", "tree", "task_file", "few_shot_file", "decontaminate"})


class MergeError(RunStoreError):
    """The directories are not the finished shards of one run; the message says which and why."""


@dataclass
class Shard:
    root: Path
    manifest: dict[str, Any]
    index: int
    count: int
    reader: RunReader


@dataclass
class MergeResult:
    """What ``condor merge`` made: where, from how many shards, and the dataset it wrote."""

    out: Path
    shards: int
    work_items: int
    sft: int
    rejected: int
    #: Records the deferred gates dropped at the merge (near-duplicates across shards), by step.
    dropped: dict[str, int] = field(default_factory=dict)
    failures: int = 0


def _rebuild_gate(name: str, settings: Any) -> Gate:
    """A deferred gate from its name and settings, as the shard recorded them."""
    if name == "near_duplicates":
        from condor.filters.gates import NearDuplicates

        # [threshold, base hash] since the CRC-32 sketches; a bare threshold from shards made before.
        threshold = settings[0] if isinstance(settings, list) and settings else settings
        if not isinstance(threshold, (int, float)) or isinstance(threshold, bool):
            raise MergeError(f"the shards recorded near-duplicate settings {settings!r}, which this version cannot read")
        return NearDuplicates(float(threshold))
    raise MergeError(f"the shards left gate {name!r} to the merge, which cannot rebuild it; "
                     "merge with the Condor version that made the shards")


def _open_shard(root: Path, locks: ExitStack) -> Shard:
    """A finished shard, its run lock held (in ``locks``) so that nothing writes it while it is merged."""
    manifest = read_manifest(root)
    info = manifest.get("shard")
    if not isinstance(info, dict) or "index" not in info:
        raise MergeError(f"{root} is not a shard: it was not made with --shard i/N")
    if not all(isinstance(info.get(k), (int, str)) for k in ("count", "plan_items", "plan_digest")):
        raise MergeError(f"{root}/manifest.json: the shard's note of its plan is damaged; run the shard again")
    reader = RunReader(root, manifest)
    final = reader.final_step
    if final is None:
        raise MergeError(f"{root}: shard {info['index']}/{info['count']} has not finished; rerun its command")
    for name in reader.ancestors(final):
        if not reader.is_complete(name):
            raise MergeError(f"{root}: shard {info['index']}/{info['count']} has not finished (step {name!r} is "
                             "incomplete); rerun its command to finish it")
    locks.enter_context(RunLock(root / LOCK_FILE))  # refuses, naming the pid, while another process writes it
    return Shard(root, manifest, int(info["index"]), int(info["count"]), reader)


def _result_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The part of a recorded config that decides the results (no shard, no machine-local settings)."""
    def strip(backend: Any) -> Any:
        return {k: v for k, v in backend.items() if k not in MACHINE_SETTINGS} if isinstance(backend, dict) else backend

    out = {k: v for k, v in config.items() if k not in MACHINE_SECTIONS}
    out["llm"] = strip(config.get("llm"))
    out["roles"] = {role: strip(b) for role, b in (config.get("roles") or {}).items()}
    out["pipeline"] = {k: v for k, v in (config.get("pipeline") or {}).items() if k not in PIPELINE_PATHS}
    return out


def _first_difference(a: Any, b: Any, path: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            found = _first_difference(a.get(key), b.get(key), f"{path}.{key}" if path else key)
            if found:
                return found
        return None
    return None if a == b else f"{path}: {a!r} != {b!r}"


def _check_together(shards: list[Shard]) -> None:
    first = shards[0]
    for shard in shards[1:]:
        if shard.count != first.count:
            raise MergeError(f"{shard.root} is shard {shard.index}/{shard.count} but {first.root} is one of "
                             f"{first.count}: the shards of one run share N")
        diff = _first_difference(_result_settings(first.manifest.get("config", {})),
                                 _result_settings(shard.manifest.get("config", {})))
        if diff:
            raise MergeError(f"{shard.root} was made with other settings than {first.root} ({diff}); the shards of "
                             "one run share every setting but the shard and the machine's own")
        if shard.manifest.get("inputs", {}).get("plan") != first.manifest.get("inputs", {}).get("plan"):
            raise MergeError(f"{shard.root} was made from another plan than {first.root} (a different tree file, "
                             "leaves, tasks, language or seed)")
        for part, what in (("files", "task or few-shot file"), ("gate_settings", "filter settings or benchmark file")):
            diff = _first_difference(first.manifest["shard"].get(part), shard.manifest["shard"].get(part))
            if diff:
                raise MergeError(f"{shard.root} was made with another {what} than {first.root} ({diff}); the "
                                 "shards of one run use the same files, wherever each machine keeps them")
        for part in ("steps", "final"):
            if shard.manifest.get(part) != first.manifest.get(part):
                raise MergeError(f"{shard.root} ran other steps than {first.root} ({part} differ): run the same "
                                 "commands (run, or void then refine) in every shard")
    by_index: dict[int, Path] = {}
    for shard in shards:
        if shard.index in by_index:
            raise MergeError(f"shard {shard.index}/{shard.count} is given twice: {by_index[shard.index]} and {shard.root}")
        by_index[shard.index] = shard.root
    missing = [i for i in range(first.count) if i not in by_index]
    if missing:
        raise MergeError(f"shard {missing[0]}/{first.count} is missing ({len(missing)} of {first.count} shards are); "
                         "give every shard's directory")


def _check_plan(shards: list[Shard]) -> list[dict[str, Any]]:
    """Every shard's work items, checked to be disjoint, each in its shard, and together the whole plan."""
    items: dict[str, dict[str, Any]] = {}
    owner: dict[str, Path] = {}
    for shard in shards:
        for item in shard.reader.plan():
            item_id = item["id"]
            if item_id in items:
                raise MergeError(f"work item {item_id} is in two shards: {owner[item_id]} and {shard.root}")
            if shard_of(item_id, shard.count) != shard.index:
                raise MergeError(f"{shard.root}/{PLAN_FILE}: work item {item_id} does not belong to shard "
                                 f"{shard.index}/{shard.count}; the plan was edited, or made by another Condor version")
            items[item_id], owner[item_id] = item, shard.root
    info = shards[0].manifest["shard"]
    if len(items) != info["plan_items"] or plan_digest(items) != info["plan_digest"]:
        raise MergeError(f"the shards hold {len(items)} work items, but the plan they were cut from has "
                         f"{info['plan_items']} (or other ones); a shard's plan was edited")
    return [items[item_id] for item_id in sorted(items)]


def _units(shards: list[Shard], name: str, current: bool) -> Iterator[tuple[Shard, dict[str, Any]]]:
    for shard in shards:
        store = shard.reader.store(name)
        units = store.latest_units(shard.reader.current(name)) if current else store.iter_units()
        for unit in units:
            yield shard, unit


def _merge_model_step(run: RunDirectory, reader: RunReader, shards: list[Shard], name: str) -> None:
    store = run.stage(name)
    store.open()
    try:
        for _, unit in _units(shards, name, current=True):
            unit.pop("seq", None)
            unit.pop("at", None)
            store.append(unit)
    finally:
        store.close()
    done = store.done_map()
    current = reader.current(name) or {}
    gaps = [i for i, h in current.items() if i not in done or done[i] not in (h, None)]
    if gaps:
        raise MergeError(f"step {name!r}: {len(gaps)} of its inputs have no result in any shard (first: {gaps[0]}); "
                         "the shards do not add up to one run")


def _in_id_order(shards: list[Shard], name: str) -> Iterator[dict[str, Any]]:
    """Every shard's units of step ``name`` in input id order, holding only ids and file offsets."""
    index: list[tuple[str, int, int]] = []
    paths: list[Path] = []
    for shard in shards:
        for path in shard.reader.store(name).shard_paths():
            paths.append(path)
            offset = 0
            with path.open("rb") as handle:
                for line in handle:
                    if line.endswith(b"\n"):
                        try:
                            index.append((json.loads(line)["input_id"], len(paths) - 1, offset))
                        except (ValueError, KeyError, TypeError):
                            raise MergeError(f"{path}: unreadable unit at byte {offset}; the file was edited") from None
                    offset += len(line)
    index.sort()
    handles = [path.open("rb") for path in paths]
    try:
        for _, number, offset in index:
            handles[number].seek(offset)
            yield json.loads(handles[number].readline())
    finally:
        for handle in handles:
            handle.close()


def _apply(gates: list[Gate], unit: dict[str, Any], name: str) -> tuple[dict[str, Any], bool]:
    """``unit`` after the deferred ``gates``: its record kept, or a rejection in this step's name."""
    for record in unit["records"]:
        verdict: Any = record
        for gate in gates:
            verdict = gate.check(verdict)
            if isinstance(verdict, Rejection):
                rejection = replace(verdict, stage=name).to_dict()
                return {"input_id": unit["input_id"], "records": [], "rejections": [rejection]}, True
    return unit, False


def _merge_gate_step(reader: RunReader, run: RunDirectory, shards: list[Shard], name: str,
                     deferred: list[Any]) -> int:
    """The shards' units for the step's current inputs, streamed; with deferred gates, in id order
    through those gates, as one unsharded run applies them. Returns how many records they dropped."""
    wanted = {record["id"] for record in reader.inputs(name)}
    gates = [_rebuild_gate(gate_name, settings).fresh() for gate_name, settings in deferred]
    seen: set[str] = set()
    dropped = [0]

    def units() -> Iterator[dict[str, Any]]:
        source = _in_id_order(shards, name) if gates else (unit for _, unit in _units(shards, name, current=False))
        for unit in source:
            input_id = unit["input_id"]
            if input_id not in wanted:
                continue  # its input left the pipeline at the merge (a deferred gate upstream)
            if input_id in seen:
                raise MergeError(f"step {name!r}: input {input_id} has results in two shards")
            seen.add(input_id)
            if gates:
                unit, rejected = _apply(gates, unit, name)
                dropped[0] += rejected
            yield unit

    run.stage(name).rewrite(units())
    gaps = sorted(wanted - seen)
    if gaps:
        raise MergeError(f"step {name!r}: {len(gaps)} of its inputs have no result in any shard (first: {gaps[0]})")
    return dropped[0]


def merge_runs(shard_dirs: Sequence[str | Path], out: str | Path) -> MergeResult:
    """Join the finished shards ``shard_dirs`` into the new run directory ``out`` (see the module docstring)."""
    out = Path(out)
    if not shard_dirs:
        raise MergeError("no shard directories given")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise MergeError(f"{out} already exists; condor merge writes a new run directory")
    with ExitStack() as locks:
        shards = [_open_shard(Path(d), locks) for d in shard_dirs]
        _check_together(shards)
        plan = _check_plan(shards)
        shards.sort(key=lambda s: s.index)
        _remove_stale_builds(out)
        building = out.parent / f".{out.name}.merging-{os.getpid()}"
        shutil.rmtree(building, ignore_errors=True)
        try:
            locks.enter_context(RunDirectory(building).lock())  # tells a later merge this one is alive
            result = _build(shards, plan, building)
            os.replace(building, out)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
    result.out = out
    return result


def _remove_stale_builds(out: Path) -> None:
    """Remove what merges into ``out`` that were killed outright left beside it; refuse while another
    merge into ``out`` is still running."""
    for stale in out.parent.glob(f".{out.name}.merging-*"):
        lock = RunLock(stale / LOCK_FILE)
        try:
            lock.acquire()
        except RunStoreError:
            raise MergeError(f"another condor merge is writing {out} (its work in progress is {stale}); "
                             "wait for it to finish") from None
        except OSError:
            pass  # not a directory we can lock in: not a build in progress either
        try:
            shutil.rmtree(stale, ignore_errors=True)
        finally:
            lock.release()


def _build(shards: list[Shard], plan: list[dict[str, Any]], building: Path) -> MergeResult:
    """The merged run, written into ``building``."""
    from condor.export.dataset import record_export, write_exports

    first = shards[0].manifest
    run = RunDirectory(building)
    config = json.loads(json.dumps(first.get("config", {})))
    config.setdefault("pipeline", {})["shard"] = None
    run.manifest.update({
        "config": config, "settings": first.get("settings", {}), "steps": first["steps"],
        "inputs": {"plan": first.get("inputs", {}).get("plan"), "shard": "all"},
        "merged_from": [{"dir": str(s.root), "shard": f"{s.index}/{s.count}"} for s in shards],
    })
    atomic_write_lines(run.root / PLAN_FILE, (dumps(item) for item in plan))
    reader = RunReader(run.root, run.manifest)
    info = first["shard"]
    result = MergeResult(building, len(shards), len(plan), 0, 0)
    for name, spec in first["steps"].items():
        upstream = [spec.get("reads"), *spec.get("carry_from", ())]
        if spec["kind"] == "model":
            _merge_model_step(run, reader, shards, name)
            # Keyed like the orchestrator keys a model step: with the sampling settings that made it.
            settings = first["stages"].get(name, {}).get("settings") or None
        elif spec["kind"] == "gate":
            dropped = _merge_gate_step(reader, run, shards, name, info.get("deferred", {}).get(name, []))
            if dropped:
                result.dropped[name] = dropped
            settings = info.get("gate_settings", {}).get(name)
        else:
            raise MergeError(f"step {name!r} is a {spec['kind']} step, which sharded runs do not have")
        entry = step_summary(reader, name)
        if spec["kind"] == "model":
            usages = [s.manifest["stages"].get(name, {}).get("usage", {}) for s in shards]
            entry["usage"] = {k: sum(u.get(k, 0) for u in usages) for k in usages[0]} if usages[0] else {}
            for part in ("template_version", "model", "backend", "settings"):
                if part in first["stages"].get(name, {}):
                    entry[part] = first["stages"][name][part]
            result.failures += entry["failures"]
        run.manifest["stages"][name] = entry
        run.stage(name).mark_complete({**entry, "key": step_key(run, upstream, settings)})
    run.manifest["final"] = first["final"]
    run.save_manifest()
    summary = write_exports(reader, run.root)
    record_export(run, summary)
    result.sft, result.rejected = summary.sft, summary.rejected
    return result
