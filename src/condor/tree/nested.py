"""The nested form shared by tree files and Condor's tag layout, in both directions.

The nested form is what people write by hand: a mapping ``{name: children}`` where children are again a
mapping, a list, a single string or nothing (a leaf). Lists hold strings (leaves), one-or-more-key
mappings (branches), or, in our own files, node objects ``{name: ..., description: ..., provenance: ...,
children: ...}`` for nodes that carry more than a name.

Reading validates as it goes: an empty or over-long name is an error naming the file, line and path;
names are whitespace-normalised and duplicate siblings merged, each with a warning, so nothing is
dropped without a word.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from condor.tree.document import Items, Pairs, Scalar, plain
from condor.tree.model import (
    MAX_NAME_CHARS,
    Path,
    TreeError,
    TreeNode,
    clean_name,
    format_path,
    language_code,
    name_key,
)

NODE_KEYS = ("name", "description", "language", "provenance", "children")


def _only_spacing_changed(text: str) -> bool:
    """Whether cleaning ``text`` changed nothing but its whitespace."""
    return clean_name(text) == " ".join(unicodedata.normalize("NFC", text).split())


class NestedReader:
    """Turns a parsed nested structure into :class:`TreeNode` lists; collects warnings as it goes."""

    def __init__(self, source: str, warnings: list[str] | None = None) -> None:
        self.source = source
        self.warnings = warnings if warnings is not None else []
        self._indexes: dict[int, tuple[list[TreeNode], dict[str, TreeNode]]] = {}

    def where(self, path: Path, line: int | None) -> str:
        at = f", line {line}" if line else ""
        under = f" (under {format_path(path)})" if path else " (top level)"
        return f"{self.source}{at}{under}"

    def children(self, value: Any, path: Path, line: int | None = None) -> list[TreeNode]:
        """The children described by ``value``, found at ``path``."""
        nodes = self._children(value, path, line)
        # The list is complete: its key index is needed again only if a later duplicate merges into it
        # (then it is built anew), so memory holds the indexes of one path from the root, not the tree's.
        self._indexes.pop(id(nodes), None)
        return nodes

    def _children(self, value: Any, path: Path, line: int | None) -> list[TreeNode]:
        nodes: list[TreeNode] = []
        if value is None:
            return nodes
        if isinstance(value, Pairs):
            if is_node_object(value):
                self._attach(nodes, self.node_object(value, path), path, value.line)
                return nodes
            for key, child, key_line in value:
                name = self.name(Scalar(key, key), path, key_line)
                node = TreeNode(name=name, children=self.children(child, path + (name,), key_line))
                self._attach(nodes, node, path, key_line)
            return nodes
        if isinstance(value, Items):
            for item, item_line in zip(value, value.lines, strict=False):
                item_line = item_line or line
                if isinstance(item, Pairs):
                    for node in self.children(item, path, item_line):
                        self._attach(nodes, node, path, item_line)
                elif isinstance(item, Scalar):
                    self._attach(nodes, TreeNode(name=self.name(item, path, item_line)), path, item_line)
                elif item is None:
                    raise TreeError(f"{self.where(path, item_line)}: empty list item where a tag name was expected")
                else:
                    raise TreeError(f"{self.where(path, item_line)}: a list inside a list; expected a name or a mapping")
            return nodes
        if isinstance(value, Scalar):
            # A lone string stands for a single leaf (Condor's files sometimes write one tag this way).
            return [TreeNode(name=self.name(value, path, line))]
        raise TreeError(f"{self.where(path, line)}: unexpected {type(value).__name__}")

    def name(self, scalar: Scalar, path: Path, line: int | None) -> str:
        if isinstance(scalar.value, bool) and scalar.text in ("true", "false"):
            raise TreeError(f"{self.where(path, line)}: {scalar.text} is not a tag name")
        raw = scalar.text
        name = clean_name(raw)
        if not name:
            raise TreeError(f"{self.where(path, line)}: empty tag name")
        if len(name) > MAX_NAME_CHARS:
            raise TreeError(
                f"{self.where(path, line)}: tag name of {len(name)} characters is too long "
                f"(limit {MAX_NAME_CHARS}): {name[:40]!r}...; shorten it or move the text to a description"
            )
        if name != raw.strip():
            what = "spacing" if _only_spacing_changed(raw) else "control or bidirectional characters"
            self.warnings.append(f"{self.where(path, line)}: normalised {what} in {raw!r} to {name!r}")
        return name

    def node_object(self, value: Pairs, path: Path) -> TreeNode:
        unknown = [key for key in value.keys() if key not in NODE_KEYS]
        if unknown:
            raise TreeError(
                f"{self.where(path, value.line)}: unknown node field(s) {unknown}; allowed: {list(NODE_KEYS)}"
            )
        seen: set[str] = set()
        for key, _, key_line in value:
            if key in seen:
                raise TreeError(f"{self.where(path, key_line or value.line)}: node field {key!r} appears twice")
            seen.add(key)
        raw_name = value.get("name")
        if raw_name is None:
            raise TreeError(f"{self.where(path, value.line)}: node object without a 'name' (fields: {value.keys()})")
        if not isinstance(raw_name, Scalar):
            raise TreeError(f"{self.where(path, value.line)}: a node's 'name' must be text")
        name = self.name(raw_name, path, value.line)
        where = self.where(path + (name,), value.line)
        provenance = plain(value.get("provenance"), where) or {}
        if not isinstance(provenance, dict):
            raise TreeError(f"{where}: provenance must be a mapping")
        node = TreeNode(
            name=name,
            description=_optional_text(value.get("description"), where, "description"),
            language=_optional_language(value.get("language"), where),
            provenance=provenance,
        )
        node.children = self.children(value.get("children"), path + (name,), value.line)
        return node

    def _keys(self, siblings: list[TreeNode]) -> dict[str, TreeNode]:
        # Sibling names by comparison key, so that attaching stays linear: comparing each new name with
        # every sibling made a 60 MB tag file (70 leaves per topic, 500 topics per domain) take minutes.
        # Keyed by the list's id, holding the list so that the id is not reused while reading.
        entry = self._indexes.get(id(siblings))
        if entry is None:
            entry = (siblings, {name_key(node.name): node for node in siblings})
            self._indexes[id(siblings)] = entry
        return entry[1]

    def _attach(self, siblings: list[TreeNode], node: TreeNode, path: Path, line: int | None) -> None:
        key = name_key(node.name)
        keys = self._keys(siblings)
        existing = keys.get(key)
        if existing is not None:
            self.warnings.append(f"{self.where(path, line)}: duplicate sibling {node.name!r} merged into {existing.name!r}")
            existing.description = existing.description or node.description
            for field, item in node.provenance.items():
                existing.provenance.setdefault(field, item)
            # Children are merged one by one so that nested repeats are reported too.
            for child in node.children:
                self._attach(existing.children, child, path + (existing.name,), line)
            return
        siblings.append(node)
        keys[key] = node


def merge_into(target: TreeNode, other: TreeNode) -> int:
    """Union ``other``'s subtree into ``target``; ``target``'s fields win. Returns nodes added."""
    if not target.description and other.description:
        target.description = other.description
    for key, item in other.provenance.items():
        target.provenance.setdefault(key, item)
    added = 0
    for child in other.children:
        existing = target.child(child.name)
        if existing is None:
            target.children.append(child)
            added += count_nodes(child)
        else:
            added += merge_into(existing, child)
    return added


def count_nodes(node: TreeNode) -> int:
    return 1 + sum(count_nodes(child) for child in node.children)


def is_node_object(value: Pairs) -> bool:
    # Any node field makes the mapping a node object. Requiring a text ``name`` let ``name: 5`` or a
    # missing name fall through to the branch reading, turning field names into tags ("name > 5").
    return any(key in NODE_KEYS for key in value.keys())


def _optional_language(value: Any, where: str) -> str | None:
    # Checked like the tree's own language: a bad code here would only surface when sampling.
    if value is None:
        return None
    return language_code(value.text if isinstance(value, Scalar) else plain(value, where), where)


def _optional_text(value: Any, where: str, field_name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, Scalar):
        raise TreeError(f"{where}: {field_name} must be text")
    return str(value.text).strip() or None


def to_nested(nodes: list[TreeNode], *, rich: bool = True) -> Any:
    """The most compact nested form of ``nodes``; ``rich`` keeps descriptions, languages and provenance."""
    def has_meta(node: TreeNode) -> bool:
        return rich and bool(node.description or node.language or node.provenance)

    if not any(has_meta(node) for node in nodes):
        if all(node.is_leaf for node in nodes):
            return [node.name for node in nodes]
        # A leaf among branches is written as an empty list, which both layouts read as "no children".
        return {node.name: to_nested(node.children, rich=rich) for node in nodes}
    items: list[Any] = []
    for node in nodes:
        if has_meta(node):
            items.append(_node_object(node, rich))
        elif node.is_leaf:
            items.append(node.name)
        else:
            items.append({node.name: to_nested(node.children, rich=rich)})
    return items


def _node_object(node: TreeNode, rich: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": node.name}
    if node.description:
        out["description"] = node.description
    if node.language:
        out["language"] = node.language
    if node.provenance:
        out["provenance"] = node.provenance
    if node.children:
        out["children"] = to_nested(node.children, rich=rich)
    return out
