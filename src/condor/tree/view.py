"""Text views of a tree for people: the indented outline of ``condor tree show`` and the stats summary.

Machines get JSON from :func:`condor.tree.stats.tree_stats` instead; nothing here is meant to be parsed.
"""

from __future__ import annotations

from typing import Any, Iterator

from condor.tree.model import KnowledgeTree, TreeNode, node_id


def outline(tree: KnowledgeTree, *, depth: int | None = None, ids: bool = False) -> Iterator[str]:
    """One line per node, two spaces per level; a branch cut off by ``depth`` shows how many leaves it hides."""
    yield f"{tree.name} (language {tree.language}, version {tree.version})"
    for path, node in tree.walk():
        if depth is not None and len(path) > depth:
            continue
        line = "  " * len(path) + node.name
        if depth is not None and len(path) == depth and node.children:
            line += f"  [+{_leaf_count(node)} leaves]"
        if node.language and node.language != tree.language:
            line += f"  ({node.language})"
        if ids:
            line += f"  #{node_id(path)}"
        yield line


def _leaf_count(node: TreeNode) -> int:
    if node.is_leaf:
        return 1
    return sum(_leaf_count(child) for child in node.children)


def stats_lines(stats: dict[str, Any]) -> Iterator[str]:
    spread = stats["leaves_per_domain"]
    yield f"tree {stats['name']} (language {stats['language']}, version {stats['version']})"
    yield f"  domains: {stats['domains']}   nodes: {stats['nodes']}   leaves: {stats['leaves']}   depth: {stats['depth']}"
    yield "  nodes per level: " + ", ".join(f"{level}: {count}" for level, count in stats["nodes_per_level"].items())
    yield "  leaves per language: " + ", ".join(f"{lang}: {count}" for lang, count in stats["leaves_per_language"].items())
    yield f"  leaves per domain: min {spread['min']}, median {spread['median']}, max {spread['max']}"
    yield "  per domain (leaves / nodes / depth):"
    for name, entry in sorted(stats["per_domain"].items(), key=lambda item: (-item[1]["leaves"], item[0])):
        yield f"    {entry['leaves']:5d} {entry['nodes']:5d} {entry['depth']:3d}  {name}"


__all__ = ["outline", "stats_lines"]
