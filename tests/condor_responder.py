"""A scripted model for pipeline tests: answers each Condor prompt in the format that prompt asks for.

It recognises the stage from the prompt text (knowledge tag, critique markers, improved-answer markers,
judge score), so a whole `condor run` can go through the fake server. Importable as
``condor_responder:respond`` by ``fake_server.py --responder``.
"""

from __future__ import annotations

import hashlib
import json
import re

_TOPICS = ["budgeting", "history", "safety", "tools", "mistakes", "planning", "costs", "science", "habits", "law"]


def _last_user(body: dict) -> str:
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "user":
            return message.get("content", "")
    return ""


_VOCAB = (
    "apple river quiet lantern copper meadow violin orbit granite harbor pepper canyon ticket mirror "
    "saddle puzzle walnut falcon ember glacier velvet anchor compass thistle marble pocket ribbon "
    "summit tundra willow zephyr bramble cobalt dune fable garnet hollow iris jasper kettle lumen "
    "mosaic nectar oyster prism quartz relic sable tinder umber vessel wicker yonder zinc basalt"
).split()


def _word(seed: str, salt: str) -> str:
    """A phrase of eight pseudo-random words: distinct prompts give texts that are not near-duplicates."""
    digest = hashlib.sha256((seed + salt).encode()).digest()
    return " ".join(_VOCAB[b % len(_VOCAB)] for b in digest[:8])


def respond(body: dict) -> str:
    prompt = _last_user(body)
    schema = (body.get("response_format") or {}).get("json_schema", {}).get("schema")
    tag = re.search(r"(?:Knowledge tag|知识标签)[:：]\s*(.+)", prompt)
    if tag:
        seed = prompt
        zh = "用中文" in prompt or "中文" in prompt[-300:]
        qs = {
            "easy": f"Could you explain the basics of {tag.group(1)} for a beginner, focusing on {_word(seed, 'e')}?",
            "medium": f"I run a small club and need to compare two approaches to {_word(seed, 'm')} within {tag.group(1)}; which is better?",
            "hard": f"Given a budget of 300 and three weeks, design a detailed plan addressing {_word(seed, 'h')} under {tag.group(1)} with trade-offs.",
        }
        if zh:
            qs = {
                "easy": f"请给初学者讲讲{tag.group(1)}的基本知识，重点是{_word(seed, 'e')}。",
                "medium": f"我在社区组织活动，想比较两种关于{_word(seed, 'm')}的做法，在{tag.group(1)}方面哪种更好？",
                "hard": f"预算三百元、时间三周，请围绕{tag.group(1)}中的{_word(seed, 'h')}设计一个详细方案并分析取舍。",
            }
        if schema:
            return json.dumps(qs, ensure_ascii=False)
        return "".join(f"[{k.title()}][Question Start]{v}[Question End]\n" for k, v in qs.items())
    if "[Strength Start]" in prompt or (schema and "strengths" in json.dumps(schema)):
        if schema:
            return json.dumps({"strengths": "Clear and polite wording.", "weaknesses": "Too short for the question.",
                               "suggestions": "Add a concrete example."})
        return "[Strength Start]Clear and polite.[Strength End]\n[Weakness Start]Lacks an example.[Weakness End]\n[Suggestion Start]Add a concrete example.[Suggestion End]"
    if "[Improved Answer Start]" in prompt or (schema and "improved_answer" in json.dumps(schema)):
        previous = re.findall(r"Improved version \d+", prompt)
        n = len(previous) + 1
        # Each round really rewrites (a new example), so refinement gates see a changed answer.
        text = (f"Improved version {n}: a fuller answer with a concrete example about {_word(prompt, str(n))} "
                "and clear steps for the user.")
        if schema:
            return json.dumps({"improved_answer": text})
        return f"[Improved Answer Start]{text}[Improved Answer End]"
    if "[Score]" in prompt or (schema and "score" in json.dumps(schema)):
        score = 8 if "Improved version" in prompt else 6
        if schema:
            return json.dumps({"reason": "Fine.", "score": score})
        return f"[Reason Start]Reasonable answer.[Reason End]\n[Score] {score}"
    if re.search(r"[\u4e00-\u9fff]", prompt):
        return "这是一个有帮助的回答，包含具体的步骤和建议，适合提问者的情况。"
    return "Here is a helpful answer with practical steps and advice that fits the situation described."
