"""Tree files on disk: YAML or JSON with a ``format: condor-tree v1`` line, and the shipped trees.

A file holds the tree's name, default language, version, description, changelog and the nested tree
(see :mod:`condor.tree.nested`). The format line is checked before anything else so that a tag file
in another layout (say Condor's own, which :mod:`condor.tree.condor_layout` imports) gets a message
saying what to do rather than a confusing parse error. ``--tree en`` and ``--tree zh`` name the trees
shipped inside the package; anything else is a path.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path as FsPath
from typing import Any

import yaml

from condor.documents import TREE_BYTES, decode_utf8, read_capped
from condor.tree.document import Pairs, Scalar, parse_document, plain
from condor.tree.model import ChangelogEntry, KnowledgeTree, TreeError, language_code
from condor.tree.nested import NestedReader, to_nested

FORMAT = "condor-tree v1"
SHIPPED_TREES = ("en", "zh")
_OPERATIONS = ("create", "expand", "augment", "merge", "import", "edit")
_TOP_KEYS = ("format", "name", "language", "version", "description", "changelog", "tree")


def file_kind(path: str | FsPath) -> str:
    """"json" for ``.json`` files, "yaml" for everything else (YAML also reads JSON)."""
    return "json" if str(path).lower().endswith(".json") else "yaml"


def load_tree(path: str | FsPath, warnings: list[str] | None = None) -> KnowledgeTree:
    """Read a tree file; problems that were normalised rather than rejected are appended to ``warnings``."""
    path = FsPath(path)
    if not path.exists():
        raise TreeError(f"{path}: no such tree file (shipped trees: {', '.join(SHIPPED_TREES)})")
    text = decode_utf8(read_capped(path, "tree file", TREE_BYTES, TreeError), path, TreeError)
    return loads_tree(text, source=str(path), kind=file_kind(path), warnings=warnings)


def loads_tree(text: str, *, source: str = "<text>", kind: str = "yaml", warnings: list[str] | None = None) -> KnowledgeTree:
    document = parse_document(text, source, kind)
    if not isinstance(document, Pairs):
        raise TreeError(f"{source}: a tree file must be a mapping starting with 'format: {FORMAT}'")
    _check_duplicate_keys(document, source)
    _check_format(document, source)
    unknown = [key for key in document.keys() if key not in _TOP_KEYS]
    if unknown:
        raise TreeError(f"{source}: unknown top-level field(s) {unknown}; allowed: {list(_TOP_KEYS)}")
    meta = {key: plain(value, source) for key, value, _ in document if key != "tree"}
    name = _text(meta.get("name"), source, "name") or FsPath(source).stem
    language = _language(document, source, warnings)
    version = meta.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise TreeError(f"{source}: version must be a whole number >= 1, got {version!r}")
    if "tree" not in document.keys():
        raise TreeError(f"{source}: no 'tree' field (the nested domains, topics and leaves)")
    reader = NestedReader(source, warnings)
    domains = reader.children(document.get("tree"), ())
    if not domains:
        raise TreeError(f"{source}: the tree has no domains")
    return KnowledgeTree(
        name,
        language,
        version=version,
        description=_text(meta.get("description"), source, "description"),
        domains=domains,
        changelog=_changelog(meta.get("changelog"), source),
    )


def _check_duplicate_keys(document: Pairs, source: str) -> None:
    # The document keeps every key, but everything below reads the first (or last) one: a repeated
    # 'tree:' would silently drop a whole domain section, so a repeat is refused outright.
    seen: set[str] = set()
    for key, _, line in document:
        if key in seen:
            at = f", line {line}" if line else ""
            raise TreeError(f"{source}{at}: top-level field {key!r} appears twice; merge the two into one")
        seen.add(key)


def _check_format(document: Pairs, source: str) -> None:
    found = document.get("format")
    if found is None:
        hint = " (a Condor tag layout? use 'condor tree import')" if "tree" not in document.keys() else ""
        raise TreeError(f"{source}: missing 'format: {FORMAT}' line{hint}")
    text = found.text if isinstance(found, Scalar) else str(found)
    if text.strip() != FORMAT:
        raise TreeError(f"{source}: unknown format {text!r}; this version of condor reads {FORMAT!r}")


def _language(document: Pairs, source: str, warnings: list[str] | None) -> str:
    value = document.get("language")
    if value is None:
        return "en"
    line = next((line for key, _, line in document if key == "language"), None)
    where = f"{source}, line {line}" if line else source
    # The text as written (YAML reads `no`, Norwegian, as false), or the structure for a list or mapping.
    written = value.text if isinstance(value, Scalar) else plain(value, where)
    code = language_code(written, where)
    if code != written.strip() and warnings is not None:
        warnings.append(f"{where}: language {written!r} written as {code!r}")
    return code


def _text(value: Any, source: str, field: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, (dict, list)):
        raise TreeError(f"{source}: {field} must be text")
    return str(value).strip() or None


def _changelog(value: Any, source: str) -> list[ChangelogEntry]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise TreeError(f"{source}: changelog must be a list")
    entries = []
    for index, item in enumerate(value):
        where = f"{source}: changelog entry {index + 1}"
        if not isinstance(item, dict):
            raise TreeError(f"{where} must be a mapping")
        operation = item.get("operation")
        if operation not in _OPERATIONS:
            raise TreeError(f"{where}: operation must be one of {list(_OPERATIONS)}, got {operation!r}")
        try:
            entries.append(
                ChangelogEntry(
                    version=int(item.get("version", 1)),
                    operation=operation,
                    time=str(item.get("time", "")),
                    summary=str(item.get("summary", "")),
                    added=int(item.get("added", 0)),
                    removed=int(item.get("removed", 0)),
                )
            )
        except (TypeError, ValueError) as exc:
            raise TreeError(f"{where}: {exc}") from None
    return entries


def tree_to_dict(tree: KnowledgeTree) -> dict[str, Any]:
    out: dict[str, Any] = {"format": FORMAT, "name": tree.name, "language": tree.language, "version": tree.version}
    if tree.description:
        out["description"] = tree.description
    if tree.changelog:
        out["changelog"] = [entry.to_dict() for entry in tree.changelog]
    out["tree"] = to_nested(tree.domains)
    return out


def dumps_tree(tree: KnowledgeTree, kind: str = "yaml") -> str:
    data = tree_to_dict(tree)
    if kind == "json":
        return json.dumps(data, ensure_ascii=False, indent=2) + "\n"
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=120)


def save_tree(tree: KnowledgeTree, path: str | FsPath) -> None:
    """Write ``tree`` as YAML, or JSON when the name ends in ``.json``, streamed to the file (a tree of
    millions of leaves is never held as one string)."""
    path = FsPath(path)
    if path.parent != FsPath(""):
        path.parent.mkdir(parents=True, exist_ok=True)
    data = tree_to_dict(tree)
    with path.open("w", encoding="utf-8") as handle:
        if file_kind(path) == "json":
            json.dump(data, handle, ensure_ascii=False, indent=2)
            handle.write("\n")
        else:
            yaml.safe_dump(data, handle, allow_unicode=True, sort_keys=False, width=120)


def resolve_tree(name_or_path: str, warnings: list[str] | None = None) -> KnowledgeTree:
    """``en``/``zh`` are the shipped trees; anything else is read as a file path."""
    if name_or_path in SHIPPED_TREES:
        resource = resources.files("condor.tree").joinpath("data", f"{name_or_path}.yaml")
        if not resource.is_file():
            raise TreeError(f"the shipped tree {name_or_path!r} is missing from this installation")
        return loads_tree(resource.read_text(encoding="utf-8"), source=f"<shipped tree {name_or_path}>", warnings=warnings)
    return load_tree(name_or_path, warnings)
