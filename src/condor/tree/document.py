"""Reading YAML or JSON text into plain structures that remember where things were.

Tree files are hand-edited, so two things a stock loader does are wrong here: it forgets line numbers
(an error could only say "somewhere in the file"), and it keeps the last of two equal keys, silently
dropping a duplicate branch. Here a mapping is a :class:`Pairs` list that keeps every key with its line,
and a scalar keeps its source text next to its typed value, so a leaf written ``yes`` stays the tag
"yes" rather than becoming ``True``.

JSON has no line numbers after parsing; its errors name the node path instead.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass
from typing import Any

import yaml

from condor.documents import MAX_DEPTH, compose_yaml
from condor.tree.model import TreeError

_NULL_TAG = "tag:yaml.org,2002:null"


@dataclass(slots=True, frozen=True)
class Scalar:
    """A scalar with its text as written and its typed value (None for null)."""

    text: str
    value: Any


class Pairs(list):
    """A mapping as an ordered list of ``(key, value, line)``; duplicate keys are all kept."""

    def __init__(self, items: list[tuple[str, Any, int | None]] | None = None, line: int | None = None) -> None:
        super().__init__(items or [])
        self.line = line

    def get(self, key: str, default: Any = None) -> Any:
        for name, value, _ in self:
            if name == key:
                return value
        return default

    def keys(self) -> list[str]:
        return [name for name, _, _ in self]


class Items(list):
    """A sequence, with the line of each item where known."""

    def __init__(self, items: list[Any] | None = None, lines: list[int | None] | None = None, line: int | None = None) -> None:
        super().__init__(items or [])
        self.lines = lines or [None] * len(self)
        self.line = line


def parse_document(text: str, source: str, kind: str) -> Any:
    """Parse ``text`` as ``kind`` ("yaml" or "json"); syntax errors name the file, line and column."""
    if kind == "json":
        try:
            raw = json.loads(text, object_pairs_hook=lambda pairs: Pairs([(k, v, None) for k, v in pairs]))
        except json.JSONDecodeError as exc:
            raise TreeError(f"{source}, line {exc.lineno}, column {exc.colno}: not valid JSON: {exc.msg}") from None
        except RecursionError:
            raise _too_deep(source) from None
        return _wrap_json(raw, source)
    # Bounded: aliases that would expand it past a budget, or nesting past MAX_DEPTH, are refused here.
    node = compose_yaml(text, source, TreeError)
    if node is None:
        return None
    return _from_yaml(node, yaml.SafeLoader(""), source)


def _too_deep(source: str, line: int | None = None) -> TreeError:
    at = f", line {line}" if line else ""
    return TreeError(f"{source}{at}: nested more than {MAX_DEPTH} levels deep; not a usable tree file")


def _from_yaml(node: yaml.Node, loader: yaml.SafeLoader, source: str, depth: int = 0) -> Any:
    line = node.start_mark.line + 1
    if depth > MAX_DEPTH:
        raise _too_deep(source, line)
    if isinstance(node, yaml.MappingNode):
        pairs = Pairs(line=line)
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise TreeError(f"{source}, line {key_node.start_mark.line + 1}: a key must be plain text")
            pairs.append((key_node.value, _from_yaml(value_node, loader, source, depth + 1), key_node.start_mark.line + 1))
        return pairs
    if isinstance(node, yaml.SequenceNode):
        values = [_from_yaml(child, loader, source, depth + 1) for child in node.value]
        return Items(values, [child.start_mark.line + 1 for child in node.value], line)
    if node.tag == _NULL_TAG:
        return None
    try:
        value = loader.construct_object(node, deep=True)
    except yaml.YAMLError:
        value = node.value
    return Scalar(node.value, value)


def _wrap_json(raw: Any, source: str, depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise _too_deep(source)
    if isinstance(raw, Pairs):
        return Pairs([(k, _wrap_json(v, source, depth + 1), None) for k, v, _ in raw])
    if isinstance(raw, list):
        return Items([_wrap_json(v, source, depth + 1) for v in raw])
    if raw is None:
        return None
    text = raw if isinstance(raw, str) else json.dumps(raw)
    return Scalar(text, raw)


def plain(value: Any, where: str) -> Any:
    """Ordinary dicts, lists and values, for metadata; duplicate keys here are an error."""
    if isinstance(value, Pairs):
        out: dict[str, Any] = {}
        for key, item, line in value:
            if key in out:
                at = f", line {line}" if line else ""
                raise TreeError(f"{where}{at}: key {key!r} appears twice")
            out[key] = plain(item, where)
        return out
    if isinstance(value, Items):
        return [plain(item, where) for item in value]
    if isinstance(value, Scalar):
        if isinstance(value.value, (_dt.date, _dt.datetime)):
            return value.value.isoformat()
        return value.value
    return value
