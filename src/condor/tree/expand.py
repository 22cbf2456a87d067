"""Growing a tree with a model, as the paper builds its World Knowledge Tree.

Starting from root tags (or any tree), every current leaf is shown to the model as a topic path and
the model names sub-topics; those become the next level, to the requested depth. All nodes of one
level go out in a single ``generate`` call so the backend can serve them concurrently.

Answers are requested as JSON (``{"subtopics": [...]}``) when the backend can constrain output, else as
a plain list that :mod:`condor.tree.replies` reads. Sub-topics that near-duplicate a sibling or the
parent are dropped (counted, not reported as problems); over-long names and unusable answers become
:class:`TreeProblem` entries with the node path, so one bad answer never stops the run. Every added
node records that a model proposed it, which model, and when.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from condor.llm.base import ChatRequest, LLMBackend
from condor.tree.dedup import DEFAULT_THRESHOLD, NearDuplicateFilter
from condor.tree.model import MAX_NAME_CHARS, KnowledgeTree, Path, TreeError, TreeNode, clean_name, format_path, utc_now
from condor.tree.replies import ReplyError, parse_subtopics

SUBTOPICS_SCHEMA_NAME = "subtopics"


@dataclass(slots=True)
class TreeProblem:
    """Something a model answer for one node could not give; kept and reported, never raised."""

    path: Path
    reason: str
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"path": list(self.path), "reason": self.reason, "detail": self.detail}

    def __str__(self) -> str:
        where = format_path(self.path) or "(tree)"
        return f"{where}: {self.reason}" + (f" ({self.detail})" if self.detail else "")


@dataclass(slots=True)
class ExpandReport:
    added: list[Path] = field(default_factory=list)
    problems: list[TreeProblem] = field(default_factory=list)
    duplicates: int = 0
    requests: int = 0


def subtopics_schema(breadth: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"subtopics": {"type": "array", "items": {"type": "string"}, "maxItems": breadth}},
        "required": ["subtopics"],
        # OpenAI's strict json_schema mode (sent by the openai backend) rejects objects without this.
        "additionalProperties": False,
    }


def subtopic_request(
    path: Path,
    breadth: int,
    language: str,
    *,
    structured: bool,
    max_tokens: int | None = None,
    temperature: float | None = None,
    seed: int | None = None,
) -> ChatRequest:
    """The request asking for ``breadth`` sub-topics of the node at ``path``."""
    topic = " > ".join(path)
    if language == "zh":
        system = "你负责整理一个知识主题分类体系，用来编写多样的问题。"
        prompt = (
            f"主题路径：{topic}\n请为最后一级主题“{path[-1]}”列出{breadth}个不同而具体的子主题。"
            "每个子主题是简短自然的中文名称，不超过十二个字，不要解释。"
        )
        prompt += '以 JSON 回答：{"subtopics": ["…", "…"]}' if structured else "每行写一个，用编号列表，不要写其他内容。"
    else:
        system = "You organise a taxonomy of knowledge topics used to write diverse questions."
        prompt = (
            f"Topic path: {topic}\nName {breadth} distinct, specific sub-topics of the last topic, "
            f"\"{path[-1]}\". Each is a short natural name of at most six words, with no explanation."
        )
        if language != "en":
            prompt += f" Write the names in the language with code '{language}'."
        prompt += ' Answer as JSON: {"subtopics": ["...", "..."]}' if structured else " Answer with a numbered list, one per line, and nothing else."
    return ChatRequest(
        messages=[{"role": "system", "content": system}, {"role": "user", "content": prompt}],
        max_tokens=max_tokens,
        temperature=temperature,
        seed=seed,
        json_schema=subtopics_schema(breadth) if structured else None,
    )


def tree_from_roots(roots: list[str], *, name: str = "expanded", language: str = "en") -> KnowledgeTree:
    """A one-level tree of root tags, to expand from; repeated roots are an error rather than dropped."""
    tree = KnowledgeTree(name, language, version=0)
    for root in roots:
        cleaned = clean_name(root)
        if not cleaned:
            continue
        if len(cleaned) > MAX_NAME_CHARS:
            raise TreeError(f"root tag {cleaned[:40]!r}... is longer than {MAX_NAME_CHARS} characters")
        tree.add((), TreeNode(name=cleaned, provenance={"origin": "user"}))
    if not tree.domains:
        raise TreeError("no root tags given")
    tree.record_change("create", f"{len(tree.domains)} root tag(s)", added=len(tree.domains))
    return tree


async def expand_tree(
    tree: KnowledgeTree,
    backend: LLMBackend,
    *,
    depth: int = 1,
    breadth: int = 8,
    under: Path = (),
    structured: bool | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    seed: int | None = None,
    threshold: float = DEFAULT_THRESHOLD,
) -> ExpandReport:
    """Add up to ``breadth`` children to every leaf below ``under``, ``depth`` levels deep, in place."""
    if depth < 1 or breadth < 1:
        raise ValueError("depth and breadth must be at least 1")
    start = tree.find(under)
    if start is None:
        raise TreeError(f"no node at {format_path(under)!r} to expand under")
    structured = backend.supports_schema if structured is None else structured
    report = ExpandReport()
    frontier = [path for path in tree.leaves() if path[: len(under)] == tuple(under)]
    for _ in range(depth):
        if not frontier:
            break
        requests = [
            subtopic_request(
                path, breadth, tree.language_of(path), structured=structured,
                max_tokens=max_tokens, temperature=temperature, seed=seed,
            )
            for path in frontier
        ]
        completions = await backend.generate(requests)
        report.requests += len(requests)
        provenance = {"origin": "model", "model": backend.identity, "added": utc_now(), "operation": "expand"}
        next_frontier: list[Path] = []
        for path, completion in zip(frontier, completions, strict=True):
            if not completion.ok:
                report.problems.append(TreeProblem(path, "backend_error", completion.error or "no text"))
                continue
            try:
                names = parse_subtopics(completion.text)
            except ReplyError as exc:
                report.problems.append(TreeProblem(path, exc.reason, exc.snippet))
                continue
            next_frontier.extend(_attach(tree, path, names, breadth, provenance, threshold, report))
        frontier = next_frontier
    if report.added:
        scope = f" under {format_path(under)}" if under else ""
        tree.record_change(
            "expand",
            f"model {backend.identity} added {len(report.added)} tag(s){scope}, depth {depth}, breadth {breadth}",
            added=len(report.added),
        )
    return report


def _attach(
    tree: KnowledgeTree, path: Path, names: list[str], breadth: int, provenance: dict[str, Any],
    threshold: float, report: ExpandReport,
) -> list[Path]:
    parent = tree.find(path)
    if parent is None:
        raise TreeError(f"node {format_path(path)!r} disappeared during expansion")
    siblings = NearDuplicateFilter(threshold, [path[-1]] + [child.name for child in parent.children])
    added: list[Path] = []
    for name in names:
        if len(added) == breadth:
            break
        if len(name) > MAX_NAME_CHARS:
            report.problems.append(TreeProblem(path, "name_too_long", name[:60] + "..."))
            continue
        twin = siblings.offer(name)
        if twin is not None:
            # Kept in the report, not silently dropped: a model that only repeats its parent shows up.
            report.duplicates += 1
            report.problems.append(TreeProblem(path, "near_duplicate", f"{name!r} repeats {twin!r}"))
            continue
        child_path = tree.add(path, TreeNode(name=name, provenance=dict(provenance)))
        added.append(child_path)
    report.added.extend(added)
    return added
