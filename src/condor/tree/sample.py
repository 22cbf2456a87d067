"""Balanced sampling of leaf tags: the dataset's balance is decided here.

Every leaf starts with the same weight, so draws are uniform over leaves, not over domains (picking a
domain first would over-sample domains with few leaves). Two optional adjustments multiply that weight:

- domain weights: ``{"Health": 2}`` makes each Health leaf twice as likely; unlisted domains keep 1,
  and 0 leaves a domain out;
- inverse frequency: a leaf already used c times in an existing dataset gets weight 1 / (1 + c), so
  new draws fill the gaps.

Draws are without replacement while ``n`` does not exceed the number of eligible leaves (weighted
draws use exponential keys, Efraimidis and Spirakis); beyond that, every leaf is used once per full pass
when weights are equal, else draws are with replacement. The same seed gives the same leaves.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from pathlib import Path as FsPath
from typing import Any, Iterable

from condor.tree.model import PATH_SEPARATOR, KnowledgeTree, Path, TreeError, language_code, name_key


def leaf_weights(
    tree: KnowledgeTree,
    *,
    language: str | None = None,
    domain_weights: dict[str, float] | None = None,
    counts: Counter | None = None,
) -> list[tuple[Path, float]]:
    """Every eligible leaf with its unnormalised weight (zero-weight leaves left out)."""
    weights_by_key = {name_key(name): weight for name, weight in (domain_weights or {}).items()}
    unknown = set(weights_by_key) - {name_key(node.name) for node in tree.domains}
    if unknown:
        raise TreeError(f"domain weight(s) for {sorted(unknown)} name no domain of tree {tree.name!r}")
    if any(weight < 0 or not math.isfinite(weight) for weight in weights_by_key.values()):
        raise TreeError("domain weights must be finite and >= 0")
    counts_by_key = Counter({tuple(name_key(p) for p in path): c for path, c in (counts or Counter()).items()})
    eligible = []
    for path, leaf_language in tree.leaves_with_language():
        if language is not None and leaf_language != language:
            continue
        weight = weights_by_key.get(name_key(path[0]), 1.0) if weights_by_key else 1.0
        if counts_by_key:
            weight /= 1 + counts_by_key.get(tuple(name_key(p) for p in path), 0)
        if weight > 0:
            eligible.append((path, weight))
    return eligible


def sample_leaves(
    tree: KnowledgeTree,
    n: int,
    *,
    seed: int = 0,
    language: str | None = None,
    domain_weights: dict[str, float] | None = None,
    counts: Counter | None = None,
) -> list[Path]:
    """``n`` leaf paths drawn as the module docstring describes."""
    if n < 0:
        raise ValueError("n must be >= 0")
    if language is not None:
        # "EN" or "english" would only surface as "no leaves in language ..."; say what is wrong instead.
        language = language_code(language, "language filter")
    eligible = leaf_weights(tree, language=language, domain_weights=domain_weights, counts=counts)
    if not eligible:
        where = f" in language {language!r}" if language else ""
        raise TreeError(f"tree {tree.name!r} has no leaves to sample{where}")
    rng = random.Random(seed)
    paths = [path for path, _ in eligible]
    weights = [weight for _, weight in eligible]
    equal = max(weights) == min(weights)
    if n <= len(paths):
        if equal:
            return rng.sample(paths, n)
        # Largest u ** (1 / w) wins: a weighted draw without replacement in one pass.
        keys = [math.log(1.0 - rng.random()) / weight for weight in weights]
        order = sorted(range(len(paths)), key=lambda index: keys[index], reverse=True)
        return [paths[index] for index in order[:n]]
    if equal:
        out: list[Path] = []
        while len(out) + len(paths) <= n:
            out.extend(rng.sample(paths, len(paths)))
        out.extend(rng.sample(paths, n - len(out)))
        return out
    return rng.choices(paths, weights=weights, k=n)


def tag_path_counts(path: str | FsPath) -> tuple[Counter, int]:
    """How often each tag path occurs in a JSONL dataset (``tag_path`` or ``meta.tag_path``), and how many
    lines had none."""
    counts: Counter = Counter()
    missing = 0
    try:
        handle = open(path, encoding="utf-8")
    except OSError as exc:
        raise TreeError(f"{path}: cannot read dataset ({exc.strerror or exc})") from None
    with handle:
        try:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise TreeError(f"{path}, line {number}: not valid JSON ({exc.msg})") from None
                except RecursionError:
                    raise TreeError(f"{path}, line {number}: JSON nested too deeply") from None
                tag_path = _tag_path(record)
                if tag_path is None:
                    missing += 1
                else:
                    counts[tag_path] += 1
        except UnicodeDecodeError:
            # Decoding happens while iterating (in buffered chunks, so no reliable line number), so a
            # binary or non-UTF-8 file fails here, not at open().
            raise TreeError(f"{path}: not UTF-8 text; a dataset must be UTF-8 JSONL") from None
    return counts, missing


def _tag_path(record: Any) -> Path | None:
    if not isinstance(record, dict):
        return None
    value = record.get("tag_path")
    if value is None and isinstance(record.get("meta"), dict):
        value = record["meta"].get("tag_path")
    if isinstance(value, str):
        parts: Iterable[str] = value.split(PATH_SEPARATOR.strip())
    elif isinstance(value, list) and all(isinstance(part, str) for part in value):
        parts = value
    else:
        return None
    path = tuple(part.strip() for part in parts if part.strip())
    return path or None


def parse_domain_weights(text: str) -> dict[str, float]:
    """``"Health=2,Law=0.5"`` (or a JSON object) as a mapping of domain to weight."""
    text = text.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TreeError(f"domain weights are not valid JSON: {exc.msg}") from None
        items = list(data.items()) if isinstance(data, dict) else None
    else:
        items = [tuple(part.rsplit("=", 1)) for part in text.split(",") if part.strip()]
    if not items or any(len(item) != 2 for item in items):
        raise TreeError(f"domain weights must look like 'Health=2,Law=0.5', got {text!r}")
    out: dict[str, float] = {}
    for name, value in items:
        try:
            out[str(name).strip()] = float(value)
        except (TypeError, ValueError):
            raise TreeError(f"domain weight for {name!r} is not a number: {value!r}") from None
    return out
