"""Versioned updates, the paper's U(T, t): comparing two trees on tag paths and merging them.

Paths are compared by their names' keys (case, width and spacing ignored), the same rule that keeps
siblings unique. A diff lists every node path present in one tree and not the other, and which of those
are leaves (tags). A merge is a union: the first tree's nodes and fields win, nodes only in the second
are copied with their provenance, and the result's version is one past the higher of the two.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from condor.tree.model import KnowledgeTree, Path, TreeNode, format_path, name_key
from condor.tree.nested import count_nodes, merge_into


@dataclass(slots=True)
class TreeDiff:
    """Node paths only in the new tree (``added``) or only in the old one (``removed``)."""

    added: list[Path] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)
    added_leaves: int = 0
    removed_leaves: int = 0

    @property
    def unchanged(self) -> bool:
        return not self.added and not self.removed

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": [list(path) for path in self.added],
            "removed": [list(path) for path in self.removed],
            "added_leaves": self.added_leaves,
            "removed_leaves": self.removed_leaves,
        }

    def lines(self) -> list[str]:
        return [f"+ {format_path(p)}" for p in self.added] + [f"- {format_path(p)}" for p in self.removed]


def _keyed(tree: KnowledgeTree) -> dict[tuple[str, ...], tuple[Path, bool]]:
    return {tuple(name_key(part) for part in path): (path, node.is_leaf) for path, node in tree.walk()}


def diff_trees(old: KnowledgeTree, new: KnowledgeTree) -> TreeDiff:
    """What ``new`` adds to and removes from ``old``, in each tree's walk order."""
    before, after = _keyed(old), _keyed(new)
    diff = TreeDiff()
    for key, (path, is_leaf) in after.items():
        if key not in before:
            diff.added.append(path)
            diff.added_leaves += is_leaf
    for key, (path, is_leaf) in before.items():
        if key not in after:
            diff.removed.append(path)
            diff.removed_leaves += is_leaf
    return diff


def merge_trees(base: KnowledgeTree, other: KnowledgeTree, *, name: str | None = None) -> KnowledgeTree:
    """A new tree holding the union of ``base`` and ``other``; neither input is changed."""
    merged = KnowledgeTree(
        name or base.name,
        base.language,
        version=max(base.version, other.version),
        description=base.description,
        domains=copy.deepcopy(base.domains),
        changelog=list(base.changelog),
    )
    incoming = copy.deepcopy(other.domains)
    if other.language != base.language:
        # Mark the other tree's language on every node so per-language sampling still works after
        # merging, even for nodes that land under a branch both trees share; redundant marks go below.
        for domain in incoming:
            _mark_language(domain, other.language)
    added = 0
    for domain in incoming:
        existing = merged.root.child(domain.name)
        if existing is None:
            merged.root.children.append(domain)
            added += count_nodes(domain)
        else:
            added += merge_into(existing, domain)
    _drop_inherited_languages(merged.root, merged.language)
    known = {(e.version, e.operation, e.time, e.summary) for e in merged.changelog}
    merged.changelog.extend(e for e in other.changelog if (e.version, e.operation, e.time, e.summary) not in known)
    merged.changelog.sort(key=lambda entry: (entry.time, entry.version))
    merged.record_change(
        "merge", f"merged {other.name} v{other.version} into {base.name} v{base.version}", added=added
    )
    return merged


def _mark_language(node: TreeNode, inherited: str) -> None:
    node.language = node.language or inherited
    for child in node.children:
        _mark_language(child, node.language)


def _drop_inherited_languages(node: TreeNode, inherited: str) -> None:
    for child in node.children:
        if child.language == inherited:
            child.language = None
        _drop_inherited_languages(child, child.language or inherited)
