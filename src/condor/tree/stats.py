"""Counts that say whether a tree is broad and balanced enough to sample from.

Nodes per level, leaves and depth per domain, leaves per language, and the min / median / max of
leaves per domain (a domain far below the median is under-covered). Plain dicts, ready for ``--json``.
"""

from __future__ import annotations

import statistics
from collections import Counter
from typing import Any

from condor.tree.model import KnowledgeTree, name_key


def tree_stats(tree: KnowledgeTree) -> dict[str, Any]:
    per_level: Counter = Counter()
    per_language: Counter = Counter()
    per_domain: dict[str, dict[str, int]] = {node.name: {"nodes": 0, "leaves": 0, "depth": 0} for node in tree.domains}
    # Languages are inherited down the tree, so carry them along the walk instead of asking per leaf.
    language_at: dict[tuple[str, ...], str] = {(): tree.language}
    for path, node in tree.walk():
        language = node.language or language_at[path[:-1]]
        language_at[path] = language
        per_level[len(path)] += 1
        domain = per_domain[path[0]]
        domain["nodes"] += 1
        domain["depth"] = max(domain["depth"], len(path))
        if node.is_leaf:
            domain["leaves"] += 1
            per_language[language] += 1
    leaf_counts = [entry["leaves"] for entry in per_domain.values()]
    return {
        "name": tree.name,
        "language": tree.language,
        "version": tree.version,
        "domains": len(tree.domains),
        "nodes": sum(per_level.values()),
        "leaves": sum(leaf_counts),
        "depth": max(per_level, default=0),
        "nodes_per_level": {str(level): per_level[level] for level in sorted(per_level)},
        "leaves_per_language": dict(sorted(per_language.items())),
        "leaves_per_domain": {
            "min": min(leaf_counts, default=0),
            "median": statistics.median(leaf_counts) if leaf_counts else 0,
            "max": max(leaf_counts, default=0),
        },
        "per_domain": per_domain,
    }


def duplicate_siblings(tree: KnowledgeTree) -> list[tuple[tuple[str, ...], str]]:
    """Parent paths holding two children with the same name key (a loaded tree never has any)."""
    found = []
    for path, node in [((), tree.root), *tree.walk()]:
        seen: set[str] = set()
        for child in node.children:
            key = name_key(child.name)
            if key in seen:
                found.append((path, child.name))
            seen.add(key)
    return found
