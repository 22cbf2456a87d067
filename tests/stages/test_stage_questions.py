"""QuestionStage: prompt building and tolerant parsing of three questions per work item."""

import pytest
from hypothesis import given, settings, strategies as st

from condor.llm.base import ChatRequest, Completion
from condor.stages.base import ParseError
from condor.stages.questions import (
    SCHEMA,
    QuestionStage,
    read_json_questions,
    read_text_questions,
)
from condor.config_files import load_few_shot
from condor.stages.tasks import default_tasks

ITEM = {
    "id": "en/abc123/domain_qa",
    "tag_path": ["Health", "Sleep", "Insomnia"],
    "task": "domain_qa",
    "language": "en",
    "leaf_id": "abc123",
}
ITEM_ZH = {**ITEM, "id": "zh/abc123/material_processing", "task": "material_processing", "language": "zh", "tag_path": ["健康", "睡眠", "失眠"]}


def stage(**kwargs):
    return QuestionStage(default_tasks(), **kwargs)


def done(text, finish_reason="stop"):
    return [Completion(text=text, finish_reason=finish_reason)]


# ---------------------------------------------------------------- requests


def test_text_request_has_tag_task_and_markers():
    [request] = stage(max_tokens=512, temperature=0.9).requests(ITEM)
    assert isinstance(request, ChatRequest)
    assert request.max_tokens == 512 and request.temperature == 0.9 and request.json_schema is None
    system, user = request.messages
    assert system["role"] == "system" and user["role"] == "user"
    text = user["content"]
    assert "Health > Sleep > Insomnia" in text
    assert "Domain Q&A" in text
    assert "[Easy][Question Start]...[Question End]" in text
    assert "[Hard][Question Start]" in text
    assert "in English" in text
    assert "$" not in text


def test_structured_request_asks_for_json_with_schema():
    [request] = stage().requests(ITEM, structured=True)
    assert request.json_schema == SCHEMA
    assert set(SCHEMA["required"]) == {"easy", "medium", "hard"}
    assert '"easy"' in request.messages[-1]["content"]
    assert "[Question Start]" not in request.messages[-1]["content"]


def test_chinese_request_is_in_chinese_with_chinese_task_name():
    [request] = stage().requests(ITEM_ZH)
    text = request.messages[-1]["content"]
    assert "健康 > 睡眠 > 失眠" in text
    assert "给定材料处理" in text and "材料本身必须完整地写在问题里" in text
    assert "都用中文书写" in text
    assert "[Medium][Question Start]...[Question End]" in text


def test_few_shot_examples_for_the_domain_only():
    few = {"health": ["How many hours should a teenager sleep?", "Is napping bad?"], "Law": ["What is a tort?"]}
    text = stage(few_shot=few).requests(ITEM)[0].messages[-1]["content"]
    assert "How many hours should a teenager sleep?" in text and "Is napping bad?" in text
    assert "What is a tort?" not in text
    plain = stage().requests(ITEM)[0].messages[-1]["content"]
    assert "other users" not in plain


def test_few_shot_is_capped_and_stable_per_item():
    few = {"Health": [f"Example question {i}?" for i in range(10)]}
    s = stage(few_shot=few, few_shot_count=3)
    first = s.requests(ITEM)[0].messages[-1]["content"]
    assert first == s.requests(ITEM)[0].messages[-1]["content"]
    assert sum(f"Example question {i}?" in first for i in range(10)) == 3
    others = {s.requests({**ITEM, "id": f"en/x{i}/domain_qa"})[0].messages[-1]["content"] for i in range(12)}
    assert len(others) > 1


@pytest.mark.parametrize(
    "change, message",
    [
        ({"task": "juggling"}, "unknown task type"),
        ({"tag_path": []}, "tag_path"),
        ({"tag_path": "Health"}, "tag_path"),
        ({"language": "fr"}, "unsupported language"),
    ],
)
def test_bad_work_items_raise_value_error(change, message):
    with pytest.raises(ValueError, match=message):
        stage().requests({**ITEM, **change})


def test_stage_metadata():
    s = stage()
    assert (s.name, s.role, s.has_schema) == ("questions", "question_writer", True)
    with pytest.raises(ValueError):
        QuestionStage([])


# ---------------------------------------------------------------- parsing: the happy path and record shape

CLEAN = (
    "[Easy][Question Start]What is insomnia?[Question End]\n"
    "[Medium][Question Start]How does caffeine late in the day affect sleep onset?[Question End]\n"
    "[Hard][Question Start]Design a four-week CBT-I plan for a night-shift nurse.[Question End]"
)


def test_parse_returns_three_records_with_ids_and_difficulty():
    records = stage().parse(ITEM, done(CLEAN))
    assert [r["difficulty"] for r in records] == ["easy", "medium", "hard"]
    assert [r["id"] for r in records] == [f"{ITEM['id']}/easy", f"{ITEM['id']}/medium", f"{ITEM['id']}/hard"]
    assert all(r["parent_id"] == ITEM["id"] for r in records)
    assert records[0]["question"] == "What is insomnia?"
    assert records[2]["tag_path"] == ITEM["tag_path"] and records[2]["leaf_id"] == "abc123"
    records[0]["tag_path"].append("mutated")
    assert ITEM["tag_path"] == ["Health", "Sleep", "Insomnia"] and records[1]["tag_path"][-1] == "Insomnia"


# ---------------------------------------------------------------- parsing: what models really write

REALISTIC_EN = [
    # prose before and after, bold markers
    (
        "Sure! Here are three questions:\n\n**[Easy]** **[Question Start]** What is insomnia? **[Question End]**\n\n"
        "**[Medium]** **[Question Start]** Why does screen light delay sleep? **[Question End]**\n\n"
        "**[Hard]** **[Question Start]** Compare CBT-I and zolpidem for chronic insomnia. **[Question End]**\n\nLet me know!",
        ("What is insomnia?", "Why does screen light delay sleep?", "Compare CBT-I and zolpidem for chronic insomnia."),
    ),
    # missing [Question End] everywhere, trailing sign-off
    (
        "[Easy][Question Start] What is insomnia?\n[Medium][Question Start] Why do naps hurt night sleep?\n"
        "[Hard][Question Start] How should melatonin timing change for jet lag east vs west?\n\nI hope these help!",
        ("What is insomnia?", "Why do naps hurt night sleep?", "How should melatonin timing change for jet lag east vs west?"),
    ),
    # lower case and odd spacing and underscores
    (
        "[easy] [question_start]a simple one?[question_end]\n[ MEDIUM ][QuestionStart]a medium one?[QuestionEnd]\n[hard][Question  Start]a hard one?[Question  End]",
        ("a simple one?", "a medium one?", "a hard one?"),
    ),
    # wrong order
    (
        "[Hard][Question Start]H?[Question End][Easy][Question Start]E?[Question End][Medium][Question Start]M?[Question End]",
        ("E?", "M?", "H?"),
    ),
    # headings instead of markers
    (
        "Easy: What is a sleep cycle?\nMedium: How does alcohol change REM sleep?\n**Hard:** Plan a sleep study protocol.",
        ("What is a sleep cycle?", "How does alcohol change REM sleep?", "Plan a sleep study protocol."),
    ),
    # markdown headings
    ("### Easy\nQ one?\n\n### Medium\nQ two?\n\n### Hard\nQ three?", ("Q one?", "Q two?", "Q three?")),
    # two levels merged into one block (the hard label was lost)
    (
        "[Easy][Question Start]A?[Question End]\n[Medium][Question Start]B?[Question End]\n[Question Start]C?[Question End]",
        ("A?", "B?", "C?"),
    ),
    # two questions in one medium block without markers between labels
    (
        "[Easy][Question Start]A?[Question End]\n[Medium][Question Start]B?\n[Question Start]C?",
        ("A?", "B?", "C?"),
    ),
    # escaped brackets from a markdown-happy model
    (
        "\\[Easy\\]\\[Question Start\\] A? \\[Question End\\]\n\\[Medium\\]\\[Question Start\\] B? \\[Question End\\]\n\\[Hard\\]\\[Question Start\\] C? \\[Question End\\]",
        ("A?", "B?", "C?"),
    ),
    # level labels without question markers, "Question:" prefixes and quotes
    ('[Easy]\nQuestion: "What is sleep hygiene?"\n[Medium]\nQuestion: Why is my sleep lighter in summer?\n[Hard]\n"How do orexin antagonists work?"',
     ("What is sleep hygiene?", "Why is my sleep lighter in summer?", "How do orexin antagonists work?")),
    # a reasoning model's think block mentions the markers first
    (
        "<think>I need [Easy][Question Start]...</think>\n" + CLEAN,
        ("What is insomnia?", "How does caffeine late in the day affect sleep onset?", "Design a four-week CBT-I plan for a night-shift nurse."),
    ),
    # JSON answer in text mode
    ('```json\n{"easy": "A?", "medium": "B?", "hard": "C?"}\n```', ("A?", "B?", "C?")),
    # multi-line material is kept intact
    (
        "[Easy][Question Start]Summarise this:\n\n> Sleep is vital.\n> It restores.\n[Question End]"
        "[Medium][Question Start]B?[Question End][Hard][Question Start]C?[Question End]",
        ("Summarise this:\n\n> Sleep is vital.\n> It restores.", "B?", "C?"),
    ),
]

REALISTIC_ZH = [
    (
        "【简单】【问题开始】什么是失眠？【问题结束】\n【中等】【问题开始】睡前喝咖啡为什么会影响入睡？【问题结束】\n【困难】【问题开始】请为一名夜班护士设计四周的失眠认知行为治疗方案。【问题结束】",
        ("什么是失眠？", "睡前喝咖啡为什么会影响入睡？", "请为一名夜班护士设计四周的失眠认知行为治疗方案。"),
    ),
    (
        "好的，以下是三个问题：\n[Easy][Question Start]什么是失眠？[Question End]\n[Medium][Question Start]午睡会影响晚上的睡眠吗？[Question End]\n[Hard][Question Start]褪黑素在倒时差时应如何服用？[Question End]\n希望对你有帮助！",
        ("什么是失眠？", "午睡会影响晚上的睡眠吗？", "褪黑素在倒时差时应如何服用？"),
    ),
    (
        "简单：什么是深睡眠？\n中等：酒精如何改变快速眼动睡眠？\n困难：如何设计一项多导睡眠监测研究？",
        ("什么是深睡眠？", "酒精如何改变快速眼动睡眠？", "如何设计一项多导睡眠监测研究？"),
    ),
    (
        "［简单］［问题开始］问题一？\n［中等］［问题开始］问题二？\n［困难］［问题开始］问题三？\n\n以上三个问题难度递增。",
        ("问题一？", "问题二？", "问题三？"),
    ),
    (
        "**【简单难度】**\n问题：睡眠有几个阶段？\n\n**【中等难度】**\n问题：蓝光如何影响褪黑素分泌？\n\n**【困难难度】**\n问题：比较两种失眠药物的作用机制。",
        ("睡眠有几个阶段？", "蓝光如何影响褪黑素分泌？", "比较两种失眠药物的作用机制。"),
    ),
    (
        "[困难][Question Start]丙？[Question End][简单][Question Start]甲？[Question End][中等][Question Start]乙？[Question End]",
        ("甲？", "乙？", "丙？"),
    ),
    (
        "【Easy】【Question Start】「什么是失眠？」【Question End】【Medium】【Question Start】乙？【Question End】【Hard】【Question Start】丙？【Question End】",
        ("什么是失眠？", "乙？", "丙？"),
    ),
    (
        '{"简单": "甲？", "中等": "乙？", "困难": "丙？"}',
        ("甲？", "乙？", "丙？"),
    ),
    (
        "[Easy][Question Start]请阅读下面的材料并总结要点：\n【材料】睡眠对健康至关重要。\n[Question End]\n[Medium][Question Start]乙？[Question End]\n[Hard][Question Start]丙？[Question End]",
        ("请阅读下面的材料并总结要点：\n【材料】睡眠对健康至关重要。", "乙？", "丙？"),
    ),
    (
        "### 简单\n甲？\n### 中等\n乙？\n### 困难\n丙？",
        ("甲？", "乙？", "丙？"),
    ),
]


@pytest.mark.parametrize("text, expected", REALISTIC_EN + REALISTIC_ZH)
def test_realistic_replies_parse(text, expected):
    records = stage().parse(ITEM, done(text))
    assert tuple(r["question"] for r in records) == expected


MALFORMED = [
    ("I'm sorry, I can't write questions about that.", "missing_questions"),
    ("[Easy][Question Start]A?[Question End]\n[Medium][Question Start]B?[Question End]", "missing_questions"),
    ("[Easy][Question Start][Question End][Medium][Question Start]B?[Question End][Hard][Question Start]C?[Question End]", "empty_question"),
    ("[Easy][Question Start]...[Question End][Medium][Question Start]B?[Question End][Hard][Question Start]C?[Question End]", "empty_question"),
    ("[Easy][Question Start]Same?[Question End][Medium][Question Start]same?[Question End][Hard][Question Start]C?[Question End]", "duplicate_questions"),
    ("【简单】【问题开始】甲？【问题结束】", "missing_questions"),
    ("", "missing_questions"),
    ("<think>still thinking about [Easy][Question Start] A?", "missing_questions"),
]


@pytest.mark.parametrize("text, reason", MALFORMED)
def test_malformed_replies_raise_parse_error(text, reason):
    with pytest.raises(ParseError) as info:
        stage().parse(ITEM, done(text))
    assert info.value.reason == reason


def test_truncated_last_question_is_rejected_only_when_cut_off():
    text = "[Easy][Question Start]A?[Question End][Medium][Question Start]B?[Question End][Hard][Question Start]Imagine a patient who"
    assert stage().parse(ITEM, done(text, "stop"))[2]["question"] == "Imagine a patient who"
    with pytest.raises(ParseError) as info:
        stage().parse(ITEM, done(text, "length"))
    assert info.value.reason == "truncated"
    # all three closed: a cut-off sign-off afterwards does not matter
    assert len(stage().parse(ITEM, done(CLEAN + "\nHope these", "length"))) == 3


def test_failed_completion_is_no_output():
    with pytest.raises(ParseError) as info:
        stage().parse(ITEM, [Completion.failed("timeout")])
    assert info.value.reason == "no_output"


# ---------------------------------------------------------------- structured mode


@pytest.mark.parametrize(
    "text",
    [
        '{"easy": "A?", "medium": "B?", "hard": "C?"}',
        '```json\n{"Easy": "A?", "Medium": "B?", "Hard": "C?"}\n```',
        '{"questions": {"easy": "A?", "medium": "B?", "hard": "C?"}}',
        '{"questions": [{"difficulty": "hard", "question": "C?"}, {"difficulty": "easy", "question": "A?"}, {"difficulty": "medium", "question": "B?"}]}',
        '["A?", "B?", "C?"]',
        '{"easy": {"question": "A?"}, "medium": "B?", "hard": "C?"}',
        "[Easy][Question Start]A?[Question End][Medium][Question Start]B?[Question End][Hard][Question Start]C?[Question End]",
    ],
)
def test_structured_replies(text):
    records = stage().parse(ITEM, done(text), structured=True)
    assert [r["question"] for r in records] == ["A?", "B?", "C?"]


@pytest.mark.parametrize(
    "text, reason",
    [
        ("not json at all", "invalid_json"),
        ('{"easy": "A?", "medium": "B?"}', "empty_question"),
        ('{"easy": "A?", "medium": "", "hard": "C?"}', "empty_question"),
        ('"just a string"', "invalid_json"),
        ('{"easy": "A?", "medium": "A?", "hard": "C?"}', "duplicate_questions"),
    ],
)
def test_structured_failures(text, reason):
    with pytest.raises(ParseError) as info:
        stage().parse(ITEM, done(text), structured=True)
    assert info.value.reason == reason


def test_readers_directly():
    assert read_text_questions(CLEAN)["easy"] == "What is insomnia?"
    assert read_json_questions('{"easy":"a","medium":"b","hard":"c"}') == {"easy": "a", "medium": "b", "hard": "c"}


# ---------------------------------------------------------------- repair


def test_repair_request_quotes_bad_output_and_restates_layout():
    bad = "Here are some questions: 1. A? 2. B? 3. C?"
    error = ParseError("missing_questions", "no markers found")
    [repair] = stage().repair_requests(ITEM, done(bad), error)
    roles = [m["role"] for m in repair.messages]
    assert roles == ["system", "user", "assistant", "user"]
    assert repair.messages[2]["content"] == bad
    note = repair.messages[3]["content"]
    assert "no markers found" in note and "[Easy][Question Start]...[Question End]" in note
    assert repair.json_schema is None


def test_repair_in_chinese_and_none_without_text():
    [repair] = stage().repair_requests(ITEM_ZH, done("乱写"), ParseError("missing_questions"))
    assert "无法被解析" in repair.messages[-1]["content"]
    assert stage().repair_requests(ITEM, [Completion.failed("x")], ParseError("no_output")) is None


def test_repair_quotes_at_most_a_bounded_reply():
    [repair] = stage().repair_requests(ITEM, done("x" * 50000), ParseError("missing_questions"))
    assert len(repair.messages[2]["content"]) < 9000


# ---------------------------------------------------------------- property: nothing but ParseError

FRAGMENTS = st.sampled_from(
    ["[Easy]", "[Medium]", "[Hard]", "[Question Start]", "[Question End]", "【简单】", "【问题开始】", "【问题结束】",
     "**", "\n", "\n\n", "Easy:", "困难：", "What?", "甲", "{", "}", '"easy": "x"', "```json", "```", "<think>", "</think>", "\\[", "..."]
)
REPLIES = st.one_of(st.text(max_size=300), st.lists(st.one_of(FRAGMENTS, st.text(max_size=8)), max_size=40).map("".join))


@settings(max_examples=200, deadline=None)
@given(REPLIES, st.booleans(), st.sampled_from(["stop", "length", None]))
def test_any_reply_gives_three_questions_or_parse_error(text, structured, finish_reason):
    try:
        records = stage().parse(ITEM, done(text, finish_reason), structured=structured)
    except ParseError as exc:
        assert exc.reason in {"missing_questions", "empty_question", "duplicate_questions", "invalid_json", "truncated"}
        return
    assert [r["difficulty"] for r in records] == ["easy", "medium", "hard"]
    assert all(r["question"].strip() for r in records)


# ---------------------------------------------------------------- few-shot file


def test_load_few_shot(tmp_path):
    path = tmp_path / "few.yaml"
    path.write_text("Health:\n  - How much sleep do I need?\n  - ' Is napping bad? '\n", encoding="utf-8")
    assert load_few_shot(path) == {"Health": ["How much sleep do I need?", "Is napping bad?"]}
    (tmp_path / "few.json").write_text('{"Law": ["What is a tort?"]}', encoding="utf-8")
    assert load_few_shot(tmp_path / "few.json") == {"Law": ["What is a tort?"]}


@pytest.mark.parametrize("text, fragment", [("- a\n- b\n", "mapping"), ("Health: oops\n", "Health"), ("Health: [1, '']\n", "Health"), ("a: [", "not valid")])
def test_load_few_shot_errors(tmp_path, text, fragment):
    from condor.config import ConfigError

    path = tmp_path / "few.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_few_shot(path)
    assert str(path) in str(info.value) and fragment in str(info.value)


# ---------------------------------------------------------------- last question without an end marker


@pytest.mark.parametrize(
    "last",
    [
        "| Month | Sales |\n|---|---|\n| Jan | 10 |\n| Feb | 12 |\n\n"
        "The above table is from our Q1 report. Forecast March sales and explain your method.",
        "我们的服务每秒有一万次请求，请设计缓存层。\n\n希望能给出具体的代码示例",
        "Write a script that renames all photos by date.\n\nNote: it must run on Python 3.8",
        "Summarise the meeting notes below.\n\n以上会议记录来自上周的项目会。",
    ],
)
def test_last_question_keeps_its_final_paragraph(last):
    # Closing paragraphs open with "The above", "Note:", "希望", "以上" too; they are part of the question.
    for text in (
        f"[Easy][Question Start] What is a cache?\n[Medium][Question Start] Why do caches go stale?\n[Hard][Question Start] {last}",
        f"**Easy:** What is a cache?\n\n**Medium:** Why do caches go stale?\n\n**Hard:** {last}",
    ):
        assert read_text_questions(text)["hard"] == last


@pytest.mark.parametrize("sign_off", ["I hope these help!", "希望这些问题对你有帮助！", "以上就是三个问题。", "Let me know if you want more."])
def test_short_sign_offs_are_still_trimmed(sign_off):
    text = f"**Easy:** What is a cache?\n\n**Medium:** Why do caches go stale?\n\n**Hard:** Design a cache for a bank.\n\n{sign_off}"
    assert read_text_questions(text)["hard"] == "Design a cache for a bank."


# ---------------------------------------------------------------- marker-like text inside questions


def test_brackets_in_code_and_bare_end_words_are_not_markers():
    text = (
        "[Easy][Question Start] Why does `last = v[end]` fail on an empty vector in Julia?[Question End]\n"
        "[Medium][Question Start] In Julia, what does v[end] mean, and how does it differ from Python?[Question End]\n"
        "[Hard][Question Start] 文档里用 [开始] 和 [结束] 标出段落，如何用正则提取它们之间的内容？[Question End]"
    )
    found = read_text_questions(text)
    assert found["easy"] == "Why does `last = v[end]` fail on an empty vector in Julia?"
    assert found["medium"].endswith("differ from Python?")
    assert found["hard"] == "文档里用 [开始] 和 [结束] 标出段落，如何用正则提取它们之间的内容？"


def test_schema_does_not_cut_long_material():
    # A grammar that enforces maxLength stops a question mid-material while finish_reason stays "stop".
    for level in ("easy", "medium", "hard"):
        assert "maxLength" not in SCHEMA["properties"][level]
        assert SCHEMA["properties"][level]["minLength"] == 10
