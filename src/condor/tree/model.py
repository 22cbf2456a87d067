"""The World Knowledge Tree in memory: named nodes, their paths, and the tree's version history.

A path is a tuple of names from a root domain down to a node (``("Health", "Sleep", "Insomnia")``);
leaves are the tags that questions are written about. Sibling names are unique up to
:func:`name_key` (case, width and spacing), so a path always names at most one node.

This module knows nothing about files or models: reading and writing live in :mod:`condor.tree.io`,
growth in :mod:`condor.tree.expand` and :mod:`condor.tree.augment`.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterator, Literal

Path = tuple[str, ...]
Operation = Literal["create", "expand", "augment", "merge", "import", "edit"]

#: Longer names are rejected: a tag is a few words, and a paragraph here is almost always a
#: description pasted into the wrong field.
MAX_NAME_CHARS = 120
PATH_SEPARATOR = " > "


class TreeError(ValueError):
    """A tree that cannot be built or read; the message names the file and place when there is one."""


class DuplicateNodeError(TreeError):
    """A sibling with the same name (up to case and spacing) already exists."""


# A language is a short BCP-47-like code ("en", "zh", "zh-hant", "pt-br"), lower case. Anything else
# ("english", 5) used to load fine and only failed much later, when sampling found no leaves in "en".
_LANGUAGE_CODE = re.compile(r"[a-z]{2,3}(?:-[a-z0-9]{2,8})*")


def language_code(value: object, where: str = "") -> str:
    """``value`` as a lower-case language code; :class:`TreeError` (prefixed by ``where``) if it is not one."""
    text = value.strip().lower() if isinstance(value, str) else ""
    if not _LANGUAGE_CODE.fullmatch(text):
        prefix = f"{where}: " if where else ""
        raise TreeError(
            f"{prefix}language must be a short language code such as 'en', 'zh' or 'zh-hant', got {value!r}"
        )
    return text


def name_key(name: str) -> str:
    """The comparison key of a name: NFKC, case-folded, whitespace collapsed."""
    if name.isascii():  # NFKC leaves ASCII alone and casefold is lower: the common case, made cheap
        return " ".join(name.lower().split())
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())


# Control characters (NUL, escapes) and the invisible bidirectional controls (U+202E turns the rest of a
# line around: "txt.exe" shown as "exe.txt"). A tag is shown in prompts, files and terminals; neither
# belongs in one. Joiners (U+200C, U+200D) stay: some scripts and emoji need them.
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b\u200e\u200f\u202a-\u202e\u2060-\u2069\ufeff]")


def strip_unprintable(text: str) -> str:
    """``text`` without control or bidirectional-override characters (nothing else changes)."""
    return text if text.isascii() and text.isprintable() else _UNPRINTABLE.sub("", text)


def clean_name(name: str) -> str:
    """A name as stored: NFC, without control or bidirectional-override characters, whitespace collapsed."""
    if name.isascii() and name.isprintable():
        # Most names are already clean: keep the very string (millions of leaves, no copies).
        return name if "  " not in name and name.strip() == name else " ".join(name.split())
    return " ".join(_UNPRINTABLE.sub("", unicodedata.normalize("NFC", name)).split())


def format_path(path: Path) -> str:
    return PATH_SEPARATOR.join(path)


def node_id(path: Path) -> str:
    """A stable short id for a node: a hash of its path's keys, the same across saves and machines."""
    blob = "\x1f".join(name_key(part) for part in path)
    return hashlib.sha1(blob.encode("utf-8")).hexdigest()[:12]


def utc_now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


@dataclass(slots=True)
class TreeNode:
    """One tag. ``language`` is set only where it differs from the tree's (e.g. after merging en and zh)."""

    name: str
    description: str | None = None
    language: str | None = None
    children: list["TreeNode"] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def is_leaf(self) -> bool:
        return not self.children

    def child(self, name: str) -> "TreeNode | None":
        key = name_key(name)
        for node in self.children:
            if name_key(node.name) == key:
                return node
        return None

    def add_child(self, node: "TreeNode") -> "TreeNode":
        """Attach ``node``; a sibling with the same key raises :class:`DuplicateNodeError`."""
        if self.child(node.name) is not None:
            raise DuplicateNodeError(f"{self.name or 'the tree'} already has a child named {node.name!r}")
        self.children.append(node)
        return node


@dataclass(slots=True)
class ChangelogEntry:
    """One versioned update U(T, t): what was done, when, and how much changed."""

    version: int
    operation: Operation
    time: str
    summary: str = ""
    added: int = 0
    removed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "operation": self.operation,
            "time": self.time,
            "summary": self.summary,
            "added": self.added,
            "removed": self.removed,
        }


class KnowledgeTree:
    """A forest of domains with a name, a default language, a version and a changelog."""

    def __init__(
        self,
        name: str,
        language: str = "en",
        *,
        version: int = 1,
        description: str | None = None,
        domains: list[TreeNode] | None = None,
        changelog: list[ChangelogEntry] | None = None,
    ) -> None:
        self.name = name
        self.language = language_code(language)
        self.version = version
        self.description = description
        # A nameless root keeps every operation uniform: domains are simply its children.
        self.root = TreeNode(name="", children=list(domains or []))
        self.changelog: list[ChangelogEntry] = list(changelog or [])

    @property
    def domains(self) -> list[TreeNode]:
        return self.root.children

    def walk(self) -> Iterator[tuple[Path, TreeNode]]:
        """Every node with its path, depth first, in stored order."""
        stack: list[tuple[Path, TreeNode]] = [((node.name,), node) for node in reversed(self.domains)]
        while stack:
            path, node = stack.pop()
            yield path, node
            stack.extend((path + (child.name,), child) for child in reversed(node.children))

    def __iter__(self) -> Iterator[Path]:
        return (path for path, _ in self.walk())

    def __len__(self) -> int:
        return sum(1 for _ in self.walk())

    def leaves(self) -> list[Path]:
        return [path for path, node in self.walk() if node.is_leaf]

    def leaves_with_language(self) -> Iterator[tuple[Path, str]]:
        """Every leaf with its language (the nearest explicit one above it, else the tree's), in one walk.

        Asking :meth:`language_of` per leaf looks every path up again from the root; with millions of
        leaves that was minutes before a run's first request.
        """
        stack: list[tuple[Path, TreeNode, str]] = [
            ((node.name,), node, node.language or self.language) for node in reversed(self.domains)
        ]
        while stack:
            path, node, language = stack.pop()
            if node.is_leaf:
                yield path, language
            stack.extend((path + (child.name,), child, child.language or language) for child in reversed(node.children))

    def branches(self) -> list[Path]:
        """Paths of nodes that have children (where new tags can be filed)."""
        return [path for path, node in self.walk() if not node.is_leaf]

    def find(self, path: Path | str) -> TreeNode | None:
        node = self.root
        for part in parse_path(path):
            found = node.child(part)
            if found is None:
                return None
            node = found
        return node

    def language_of(self, path: Path) -> str:
        """The nearest explicit language on the path, else the tree's."""
        language = self.language
        node = self.root
        for part in path:
            node = node.child(part)  # type: ignore[assignment]
            if node is None:
                raise TreeError(f"no node at {format_path(path)!r}")
            if node.language:
                language = node.language
        return language

    def add(self, parent: Path | str, node: TreeNode) -> Path:
        """Attach ``node`` under ``parent`` (``()`` for a new domain); returns the new node's path."""
        parent_path = parse_path(parent)
        holder = self.find(parent_path)
        if holder is None:
            raise TreeError(f"no node at {format_path(parent_path)!r} to add {node.name!r} under")
        holder.add_child(node)
        return parent_path + (node.name,)

    def ensure_path(self, path: Path, provenance: dict[str, Any] | None = None) -> tuple[TreeNode, int]:
        """Create whatever part of ``path`` is missing; returns the last node and how many were created."""
        node, created = self.root, 0
        for part in path:
            found = node.child(part)
            if found is None:
                found = node.add_child(TreeNode(name=part, provenance=dict(provenance or {})))
                created += 1
            node = found
        return node, created

    def record_change(self, operation: Operation, summary: str, *, added: int = 0, removed: int = 0, time: str | None = None) -> ChangelogEntry:
        """Bump the version and log what happened; every mutation through the toolkit ends here."""
        self.version += 1
        entry = ChangelogEntry(self.version, operation, time or utc_now(), summary, added, removed)
        self.changelog.append(entry)
        return entry


def parse_path(path: Path | str) -> Path:
    """A path from a tuple, or from text written 'Domain > Topic > Leaf'."""
    if isinstance(path, str):
        return tuple(part.strip() for part in path.split(PATH_SEPARATOR.strip())) if path.strip() else ()
    return tuple(path)
