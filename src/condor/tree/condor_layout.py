"""Import and export of the tag layout that Condor's own repository publishes.

That layout is a bare JSON object ``{domain: {topic: [leaf, ...]}}`` with no format line, no version and
no metadata. We also accept deeper nesting of objects and lists, lists holding strings or objects, a
string standing for a single leaf, and an empty list or ``null`` for a tag with no children.
Export writes the same shape back (lists of strings where every child is a leaf), so importing a file
and exporting it again gives the same tags. Descriptions and provenance have no place in this layout
and are left out of exports; use the native format to keep them.
"""

from __future__ import annotations

import json
from pathlib import Path as FsPath
from typing import Any

from condor.documents import TREE_BYTES, decode_utf8, read_capped
from condor.tree.document import Pairs, parse_document
from condor.tree.model import KnowledgeTree, TreeError, utc_now
from condor.tree.nested import NestedReader, to_nested


def import_condor_tags(
    path: str | FsPath,
    *,
    name: str | None = None,
    language: str = "en",
    warnings: list[str] | None = None,
) -> KnowledgeTree:
    """Read a Condor-layout tag file into a new tree (version 1, one 'import' changelog entry)."""
    path = FsPath(path)
    text = decode_utf8(read_capped(path, "tag file", TREE_BYTES, TreeError), path, TreeError)
    return loads_condor_tags(text, source=str(path), name=name or path.stem, language=language, warnings=warnings)


def loads_condor_tags(
    text: str,
    *,
    source: str = "<text>",
    name: str = "imported",
    language: str = "en",
    warnings: list[str] | None = None,
) -> KnowledgeTree:
    # The published tags sit in a README code block; accept YAML too since it is a superset of JSON
    # and gives line numbers in errors.
    document = parse_document(text, source, "json" if source.lower().endswith(".json") else "yaml")
    if isinstance(document, Pairs) and "format" in document.keys() and "tree" in document.keys():
        raise TreeError(f"{source}: this is already a condor tree file; load it directly instead of importing")
    if not isinstance(document, Pairs):
        raise TreeError(f"{source}: expected a JSON object of domains at the top level")
    domains = NestedReader(source, warnings).children(document, ())
    if not domains:
        raise TreeError(f"{source}: no tags found")
    tree = KnowledgeTree(name, language, version=0, domains=domains)
    tree.record_change("import", f"imported from {FsPath(source).name}", added=len(tree), time=utc_now())
    return tree


def to_condor_tags(tree: KnowledgeTree) -> Any:
    """The tree in Condor's layout: nested objects, with lists of strings at the bottom."""
    nested = to_nested(tree.domains, rich=False)
    if isinstance(nested, list):
        # Condor's layout is an object at the top; domains without children become empty lists.
        return _as_object(nested)
    return nested


def _as_object(items: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        if isinstance(item, str):
            out[item] = []
        else:
            out.update(item)
    return out


def dumps_condor_tags(tree: KnowledgeTree) -> str:
    return json.dumps(to_condor_tags(tree), ensure_ascii=False, indent=4) + "\n"


def export_condor_tags(tree: KnowledgeTree, path: str | FsPath) -> None:
    path = FsPath(path)
    if path.parent != FsPath(""):
        path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps_condor_tags(tree), encoding="utf-8")
