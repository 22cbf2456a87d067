"""Reading YAML and JSON files within bounds: a size cap, a nesting limit and an alias budget.

Every YAML or JSON document Condor reads (run configs, task and few-shot files, tree and tag files) comes
through here, so one hostile file cannot take minutes or gigabytes. Three things are bounded:

- **Bytes.** A file larger than its kind's cap is refused before it is read (:data:`CONFIG_BYTES` for
  settings files, :data:`TREE_BYTES` for trees); a pipe is read up to the cap and no further.
- **Aliases.** YAML anchors and aliases let a few hundred bytes stand for millions of nodes (the
  "billion laughs"): nine levels of nine aliases is 9**9 leaves. The parsed node graph is walked once,
  counting each node as often as aliases repeat it, and a document whose aliases add more than
  :data:`ALIAS_EXTRA_NODES` nodes to what is written out, or that contains itself, is refused before
  anything is built from it. Ordinary uses of anchors (one backend block shared by several roles) are
  far inside the budget.
- **Depth.** More than :data:`MAX_DEPTH` levels of nesting is refused (a real tree is a handful of
  levels), so nothing downstream ends in a RecursionError.

Errors are one line that names the file, raised as the caller's error class (``ConfigError``,
``TreeError``). Text must be UTF-8; a bad byte is reported with its line. What the document means is
the caller's business: this module only hands back parsed data or a composed YAML node graph.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Any

import yaml

#: Largest run config, task file or few-shot file read (bytes).
CONFIG_BYTES = 16 * 1024 * 1024
#: Largest tree or tag file read (bytes): a tree file made from a 60 MB tag file (2.5 million leaves)
#: fits. Reading takes about 20 times the file's size in memory; measured in docs/reliability.md.
TREE_BYTES = 128 * 1024 * 1024
#: Files larger than this are announced before they are read: reading them takes a while.
ANNOUNCE_BYTES = 16 * 1024 * 1024
#: Nodes that aliases may add beyond the nodes written out in the file.
ALIAS_EXTRA_NODES = 100_000
#: Deepest nesting of mappings and lists accepted.
MAX_DEPTH = 200
log = logging.getLogger(__name__)
# libyaml's parser is several times faster on large files and gives the same marks.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.0f} MB" if size >= 1024 * 1024 else f"{size} bytes"


def read_capped(path: str | Path, what: str, max_bytes: int, error: type[Exception]) -> bytes:
    """The bytes of ``path``, refusing a file (or stream) larger than ``max_bytes``."""
    source = Path(path)
    try:
        with source.open("rb") as handle:
            info = os.fstat(handle.fileno())
            if stat.S_ISDIR(info.st_mode):
                raise error(f"{source}: is a directory, not a {what}")
            if stat.S_ISREG(info.st_mode) and info.st_size > max_bytes:
                raise error(f"{source}: {_mb(info.st_size)}, more than the {_mb(max_bytes)} Condor reads as a {what}")
            if stat.S_ISREG(info.st_mode) and info.st_size > ANNOUNCE_BYTES:
                log.warning("reading %s (%s, a large %s): this takes a while", source, _mb(info.st_size), what)
            data = handle.read(max_bytes + 1)
    except IsADirectoryError:
        raise error(f"{source}: is a directory, not a {what}") from None
    except OSError as exc:
        raise error(f"{source}: cannot read {what} ({exc.strerror or exc})") from None
    if len(data) > max_bytes:
        raise error(f"{source}: more than the {_mb(max_bytes)} Condor reads as a {what}")
    return data


def decode_utf8(data: bytes, source: str | Path, error: type[Exception]) -> str:
    """``data`` as text; a byte that is not UTF-8 is reported with its line and column."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise error(f"{source}, line {line}, column {column}: not UTF-8 text (byte 0x{data[exc.start]:02x})") from None


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def check_expansion(root: yaml.Node, source: str | Path, text_size: int, error: type[Exception]) -> int:
    """Refuse a node graph that aliases blow up, that contains itself, or that nests too deep.

    Walks each distinct node once (aliases share nodes), without recursion. Returns the number of
    nodes the document stands for, aliases expanded.
    """
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    # Each node is counted at most once per byte of text plus the alias budget: anything larger is
    # refused as soon as it is seen, before the walk could take long.
    ceiling = text_size + ALIAS_EXTRA_NODES
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 0, False)]
    while stack:
        node, depth, finished = stack.pop()
        key = id(node)
        if finished:
            on_path.discard(key)
            total = 1 + sum(sizes[id(child)] for child in _children(node))
            if total > ceiling:
                raise _too_many(source, error)
            sizes[key] = total
            continue
        if key in sizes:
            continue
        if depth > MAX_DEPTH:
            raise error(f"{source}, line {node.start_mark.line + 1}: nested more than {MAX_DEPTH} levels deep")
        on_path.add(key)
        stack.append((node, depth, True))
        for child in _children(node):
            if id(child) in on_path:
                raise error(f"{source}, line {child.start_mark.line + 1}: an alias refers to a node that contains it")
            if id(child) not in sizes:
                stack.append((child, depth + 1, False))
    expanded, written = sizes[id(root)], len(sizes)
    if expanded - written > ALIAS_EXTRA_NODES:
        raise _too_many(source, error)
    return expanded


def _too_many(source: str | Path, error: type[Exception]) -> Exception:
    return error(
        f"{source}: YAML aliases (*name) expand it to more than {ALIAS_EXTRA_NODES:,} extra nodes; "
        "write the repeated parts out instead"
    )


def compose_yaml(text: str, source: str | Path, error: type[Exception]) -> yaml.Node | None:
    """The YAML node graph of ``text``, checked by :func:`check_expansion`; None for an empty document."""
    loader = _LOADER(text)
    try:
        node = loader.get_single_node()
    except yaml.YAMLError as exc:
        raise _syntax_error(exc, source, error) from None
    except RecursionError:
        raise error(f"{source}: nested more than {MAX_DEPTH} levels deep") from None
    finally:
        loader.dispose()
    if node is not None:
        check_expansion(node, source, len(text), error)
    return node


def load_yaml(text: str, source: str | Path, error: type[Exception]) -> Any:
    """``text`` parsed as YAML (or JSON) into plain Python values, within the bounds above."""
    node = compose_yaml(text, source, error)
    if node is None:
        return None
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise _syntax_error(exc, source, error) from None


def read_yaml_file(path: str | Path, what: str, error: type[Exception], max_bytes: int = CONFIG_BYTES) -> Any:
    """The YAML or JSON document in the file at ``path`` (``what`` names it in messages)."""
    text = decode_utf8(read_capped(path, what, max_bytes, error), path, error)
    return load_yaml(text, path, error)


def _syntax_error(exc: yaml.YAMLError, source: str | Path, error: type[Exception]) -> Exception:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or "syntax error"
    if "nesting depth" in problem:
        # PyYAML 6.0.4 and later stop deep documents themselves, in their own words; say it in ours.
        problem = f"nested more than {MAX_DEPTH} levels deep"
    where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return error(f"{source}{where}: not valid YAML: {problem}")
