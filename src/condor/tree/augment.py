"""Filing trending topics (forum or news headlines) under the branch of the tree where each fits best.

Placement asks the model twice, each time to pick from a numbered list: first the domain, then a branch
inside it (or the domain itself). Both rounds are batched over all topics. A topic whose answer is
unusable falls back to embedding similarity (all-MiniLM-L6-v2, see :mod:`condor.tree.embeddings`)
against every branch; with no backend at all, embeddings place everything.

Topics go only under branches, never under an existing leaf, so no tag in use stops being a tag.
A topic the model says fits nowhere, or whose best similarity is below the threshold, goes to the
review list with the reason; nothing is dropped. Added leaves record where they came from and how
they were placed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

from condor.llm.base import ChatRequest, LLMBackend
from condor.tree.embeddings import Embedder, EmbeddingsUnavailable, MiniLMEmbedder, nearest
from condor.tree.expand import TreeProblem
from condor.documents import decode_utf8
from condor.tree.model import MAX_NAME_CHARS, KnowledgeTree, Path, TreeError, TreeNode, clean_name, format_path, name_key, utc_now
from condor.tree.replies import ReplyError, parse_choice

DEFAULT_SIMILARITY = 0.3


@dataclass(slots=True)
class Placement:
    """Where one topic went (``parent``), how, and why; ``parent`` is None for topics left for review."""

    topic: str
    parent: Path | None
    method: str
    score: float | None = None
    reason: str = ""
    model: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "parent": list(self.parent) if self.parent is not None else None,
            "method": self.method,
            "score": self.score,
            "reason": self.reason,
        }


@dataclass(slots=True)
class AugmentReport:
    placed: list[Placement] = field(default_factory=list)
    review: list[Placement] = field(default_factory=list)
    already_present: list[Placement] = field(default_factory=list)
    problems: list[TreeProblem] = field(default_factory=list)


def read_topics(path: str | FsPath) -> list[str]:
    """Topics one per line; blank lines skipped, repeats (up to case and spacing) kept once."""
    try:
        data = FsPath(path).read_bytes()
    except OSError as exc:
        raise TreeError(f"{path}: cannot read topics file ({exc.strerror or exc})") from None
    lines = decode_utf8(data, path, TreeError).splitlines()
    topics, seen = [], set()
    for line in lines:
        topic = clean_name(line)
        if topic and name_key(topic) not in seen:
            seen.add(name_key(topic))
            topics.append(topic)
    return topics


def write_review(items: list[Placement], path: str | FsPath) -> None:
    """The review list: JSON lines with reasons for ``.jsonl``/``.json``, else one topic per line."""
    path = FsPath(path)
    if path.suffix in (".jsonl", ".json"):
        text = "".join(json.dumps(item.to_dict(), ensure_ascii=False) + "\n" for item in items)
    else:
        # Plain text stays a valid topics file, so reviewed topics can be fed straight back in.
        text = "".join(item.topic + "\n" for item in items)
    path.write_text(text, encoding="utf-8")


def choice_request(topic: str, options: list[str], language: str, *, structured: bool, within: str | None = None, max_tokens: int | None = None) -> ChatRequest:
    """Ask which numbered option ``topic`` belongs to; 0 means none (or, within a domain, the domain itself)."""
    numbered = "\n".join(f"{index}. {option}" for index, option in enumerate(options, start=1))
    if language == "zh":
        ask = f"新话题：{topic}\n"
        ask += f"它属于“{within}”。下面哪个分支最适合它？\n" if within else "下面哪个领域最适合这个话题？\n"
        zero = f"如果都不如直接放在“{within}”下，回答 0。" if within else "如果都不合适，回答 0。"
        ask += f"{numbered}\n只回答编号。{zero}"
        fmt = '以 JSON 回答：{"choice": 编号}'
    else:
        ask = f"New topic: {topic}\n"
        ask += f'It belongs to "{within}". Which branch below fits it best?\n' if within else "Which domain below fits this topic best?\n"
        zero = f'Answer 0 if it should go directly under "{within}".' if within else "Answer 0 if none fits."
        ask += f"{numbered}\nAnswer with the number only. {zero}"
        fmt = 'Answer as JSON: {"choice": N}'
    if structured:
        ask += "\n" + fmt
    schema = {
        "type": "object",
        "properties": {"choice": {"type": "integer", "minimum": 0, "maximum": len(options)}},
        "required": ["choice"],
        # OpenAI's strict json_schema mode (sent by the openai backend) rejects objects without this.
        "additionalProperties": False,
    }
    return ChatRequest(
        messages=[{"role": "user", "content": ask}],
        max_tokens=max_tokens,
        temperature=0.0,  # a placement is a decision, not a creative act: the same tree, the same answer
        json_schema=schema if structured else None,
    )


async def augment_tree(
    tree: KnowledgeTree,
    topics: list[str],
    backend: LLMBackend | None = None,
    *,
    embedder: Embedder | None = None,
    use_embeddings: bool = True,
    threshold: float = DEFAULT_SIMILARITY,
    structured: bool | None = None,
    max_tokens: int | None = 32,
    source: str = "topics",
) -> AugmentReport:
    """Place ``topics`` into ``tree`` in place; the report says where each went or why it did not."""
    report = AugmentReport()
    usable = []
    for topic in topics:
        if len(topic) > MAX_NAME_CHARS:
            report.review.append(Placement(topic, None, "none", reason=f"longer than {MAX_NAME_CHARS} characters"))
        else:
            usable.append(topic)
    fallback = list(usable)
    if backend is not None and usable:
        decided, fallback = await _place_with_model(tree, usable, backend, structured, max_tokens, report)
        report.placed.extend(p for p in decided if p.parent is not None)
        report.review.extend(p for p in decided if p.parent is None)
    if fallback:
        _place_with_embeddings(tree, fallback, embedder, use_embeddings, threshold, report)
    now = utc_now()
    kept = []
    for placement in report.placed:
        parent = placement.parent
        if parent is None:  # placed entries always have one; this keeps the type narrow
            continue
        if tree.find(parent + (placement.topic,)) is not None:
            placement.reason = "already in the tree"
            report.already_present.append(placement)
            continue
        provenance = {"origin": "trending", "source": source, "placed_by": placement.method, "added": now}
        if placement.model:
            provenance["model"] = placement.model
        if placement.score is not None:
            provenance["similarity"] = round(placement.score, 4)
        tree.add(parent, TreeNode(name=placement.topic, provenance=provenance))
        kept.append(placement)
    report.placed = kept
    if kept:
        tree.record_change("augment", f"placed {len(kept)} trending topic(s) from {source}", added=len(kept), time=now)
    return report


async def _place_with_model(
    tree: KnowledgeTree, topics: list[str], backend: LLMBackend, structured: bool | None, max_tokens: int | None,
    report: AugmentReport,
) -> tuple[list[Placement], list[str]]:
    """Two batched rounds of numbered choices; returns decisions and the topics left for the fallback."""
    structured = backend.supports_schema if structured is None else structured
    domains = [node.name for node in tree.domains]
    first = await backend.generate(
        [choice_request(t, domains, tree.language, structured=structured, max_tokens=max_tokens) for t in topics]
    )
    decided: list[Placement] = []
    fallback: list[str] = []
    second: list[tuple[str, Path, list[Path]]] = []
    for topic, completion in zip(topics, first, strict=True):
        choice = _read_choice(completion, len(domains), topic, report)
        if choice is False:
            fallback.append(topic)
        elif choice is None:
            decided.append(Placement(topic, None, "model", reason="the model found no fitting domain"))
        else:
            domain = (domains[choice - 1],)
            branches = [path for path in tree.branches() if path[:1] == domain and path != domain]
            if branches:
                second.append((topic, domain, branches))
            else:
                decided.append(Placement(topic, domain, "model", model=backend.identity))
    if second:
        answers = await backend.generate(
            [
                choice_request(t, [format_path(p) for p in branches], tree.language_of(domain), structured=structured, within=domain[0], max_tokens=max_tokens)
                for t, domain, branches in second
            ]
        )
        for (topic, domain, branches), completion in zip(second, answers, strict=True):
            choice = _read_choice(completion, len(branches), topic, report)
            # The domain is already known to fit, so an unusable second answer still files it there.
            parent = branches[choice - 1] if choice else domain
            decided.append(Placement(topic, parent, "model", model=backend.identity))
    return decided, fallback


def _read_choice(completion: Any, count: int, topic: str, report: AugmentReport) -> int | None | bool:
    """The choice, None for "none fits", or False when the answer is unusable (recorded as a problem)."""
    if not completion.ok:
        report.problems.append(TreeProblem((topic,), "backend_error", completion.error or "no text"))
        return False
    try:
        return parse_choice(completion.text, count)
    except ReplyError as exc:
        report.problems.append(TreeProblem((topic,), exc.reason, exc.snippet))
        return False


def _place_with_embeddings(
    tree: KnowledgeTree, topics: list[str], embedder: Embedder | None, enabled: bool, threshold: float, report: AugmentReport
) -> None:
    if not enabled:
        report.review.extend(Placement(t, None, "none", reason="model answer unusable; embeddings disabled") for t in topics)
        return
    candidates = [(node.name,) for node in tree.domains] + [p for p in tree.branches() if len(p) > 1]
    texts = [_branch_text(tree, path) for path in candidates]
    try:
        matches = nearest(embedder or MiniLMEmbedder(), topics, texts)
    except EmbeddingsUnavailable as exc:
        report.problems.append(TreeProblem((), "embeddings_unavailable", str(exc)))
        report.review.extend(Placement(t, None, "none", reason=f"no model placement and {exc}") for t in topics)
        return
    for topic, (index, score) in zip(topics, matches, strict=True):
        if score >= threshold:
            report.placed.append(Placement(topic, candidates[index], "embedding", score))
        else:
            reason = f"best match {format_path(candidates[index])} at similarity {score:.2f} < {threshold}"
            report.review.append(Placement(topic, None, "embedding", score, reason))


def _branch_text(tree: KnowledgeTree, path: Path) -> str:
    # A branch is described by its path and a few of its children, which says more than the name alone.
    node = tree.find(path)
    children = ", ".join(child.name for child in (node.children if node else [])[:8])
    return f"{format_path(path)}: {children}" if children else format_path(path)
