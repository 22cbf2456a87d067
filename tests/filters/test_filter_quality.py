"""Quality checks: each reason, refusals in both languages, no false language rejections."""

import pytest

from condor.config import PipelineConfig
from condor.filters.quality import QualityFilter, QualityIssue, _prose, check_text, detect_language, refusal_phrase

EN_ANSWER = (
    "Inflation is a general rise in prices across an economy over time. Central banks usually respond by raising "
    "interest rates, which makes borrowing more expensive and cools demand."
)
ZH_ANSWER = "通货膨胀是指一段时间内经济中价格水平的普遍上涨。中央银行通常通过提高利率来应对，使借贷成本上升，从而抑制需求。"


# ---------------------------------------------------------------- each reason


@pytest.mark.parametrize(
    "kwargs, reason",
    [
        ({"text": ""}, "empty"),
        ({"text": "   \n"}, "empty"),
        ({"text": None}, "empty"),
        ({"text": "Why?"}, "too_short"),
        ({"text": "x" * 101, "max_chars": 100}, "too_long"),
        ({"text": EN_ANSWER, "finish_reason": "length"}, "truncated"),
        ({"text": "I'm sorry, but I can't help with that request."}, "refusal"),
        ({"text": ZH_ANSWER, "language": "en"}, "wrong_language"),
        ({"text": EN_ANSWER, "language": "zh"}, "wrong_language"),
    ],
)
def test_each_reason(kwargs, reason):
    text = kwargs.pop("text")
    issue = check_text(text, **kwargs)
    assert isinstance(issue, QualityIssue) and issue.reason == reason and issue.detail


def test_good_texts_pass():
    assert check_text(EN_ANSWER, language="en", finish_reason="stop") is None
    assert check_text(ZH_ANSWER, language="zh") is None


def test_short_chinese_question_is_not_too_short():
    assert check_text("什么是光合作用？", language="zh") is None
    assert check_text("什么？", language="zh").reason == "too_short"


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "text",
    [
        "I'm sorry, but I can't help with that.",
        "I am sorry, I cannot provide instructions for this.",
        "Sorry, I can’t assist with that request.",
        "I'm afraid I can't do that.",
        "I cannot help with creating malware.",
        "Unfortunately, I am unable to provide medical diagnoses.",
        "As an AI language model, I cannot browse the internet.",
        "I must respectfully decline this request.",
        "抱歉，我无法提供这方面的帮助。",
        "对不起，这个问题我不能回答。",
        "我无法回答这个问题。",
        "作为一个人工智能语言模型，我无法提供医疗建议。",
        "很抱歉，我们不能协助完成这个请求。",
    ],
)
def test_refusals_are_caught(text):
    assert refusal_phrase(text)
    assert check_text(text + " " + "padding " * 3).reason == "refusal"


@pytest.mark.parametrize(
    "text",
    [
        "I'm sorry to hear you can't sleep. Here are some things that help: keep a regular schedule.",
        "You can't divide by zero, because no number times zero gives a non-zero result.",
        "Sorry for the confusion earlier — the capital of Australia is Canberra.",
        "很遗憾听到你无法入睡。以下是一些改善睡眠的建议：保持规律作息。",
        "我不能同意更多了！这个观点非常有道理，原因如下。",
        EN_ANSWER + " I can't stress enough how important this is.",
        "Here is the story you asked for.\n\n" + "x " * 200 + "I'm sorry, but I can't stay, said the knight.",
    ],
)
def test_helpful_texts_are_not_refusals(text):
    assert refusal_phrase(text) is None


def test_refusal_check_can_be_off():
    assert check_text("I'm sorry, but I can't help with that.", refusals=False) is None


# ---------------------------------------------------------------- language detection


def test_detect_language_basics():
    assert detect_language(EN_ANSWER) == "en"
    assert detect_language(ZH_ANSWER) == "zh"
    assert detect_language("Hi!") is None
    assert detect_language("") is None


def test_chinese_with_english_terms_is_chinese():
    text = "在 Python 中，可以使用 asyncio 库的 gather 函数并发运行多个协程，它会等待所有任务完成后返回结果列表。"
    assert detect_language(text) == "zh"
    assert check_text(text, language="zh") is None


CODE_HEAVY_ZH = """下面是实现方法：

```python
import asyncio

async def fetch(session, url):
    async with session.get(url) as response:
        return await response.text()

async def main(urls):
    async with aiohttp.ClientSession() as session:
        return await asyncio.gather(*(fetch(session, u) for u in urls))
```

运行即可。"""

UNFENCED_CODE_ZH = """用下面的代码：
def add(a, b):
    return a + b
print(add(1, 2))  # prints 3
result = [x * 2 for x in range(10) if x % 2 == 0]
这样就行了。"""


@pytest.mark.parametrize("text", [CODE_HEAVY_ZH, UNFENCED_CODE_ZH])
def test_code_heavy_chinese_answers_are_not_rejected(text):
    assert check_text(text, language="zh") is None


def test_code_only_and_formula_answers_are_not_rejected():
    code = "```js\nconst x = require('fs');\nconsole.log(x.readFileSync('a.txt', 'utf8'));\n```"
    assert check_text(code, language="zh") is None
    assert check_text(code, language="en") is None
    formula = "$$E = mc^2$$ 其中 $m$ 是质量，$c$ 是光速。"
    assert check_text(formula, language="zh") is None
    assert check_text("See https://example.com/a/very/long/path/with/english/words/in/it for details.", language="zh") is None


def test_short_answers_are_never_language_rejected():
    assert check_text("OK, 42 is the answer.", language="zh") is None
    assert check_text("答案是四十二。", language="en") is None


def test_english_text_about_chinese_is_not_rejected_as_chinese():
    text = (
        "The poem 静夜思 by Li Bai reads 床前明月光，疑是地上霜 in its opening lines. It describes a traveller who "
        "looks at the moonlight on the floor and thinks of home, and it is one of the best known poems in China."
    )
    assert check_text(text, language="en") is None


# ---------------------------------------------------------------- record-level filter


def test_question_issue_prefixes_and_skips_refusals():
    qf = QualityFilter(min_chars=10, max_chars=1000)
    assert qf.question_issue({"question": "Why?", "language": "en"}).reason == "question_too_short"
    assert qf.question_issue({"question": ZH_ANSWER, "language": "en"}).reason == "question_wrong_language"
    daily = {"question": "I'm sorry, but I can't decide between two laptops for college. Which should I pick?", "language": "en"}
    assert qf.question_issue(daily) is None
    assert qf.question_issue({"language": "en"}).reason == "question_empty"


def test_answer_issue_uses_the_chosen_version():
    record = {
        "language": "en",
        "versions": [
            {"round": 0, "answer": EN_ANSWER, "finish_reason": "stop"},
            {"round": 1, "answer": "Inflation is", "finish_reason": "length"},
        ],
        "chosen": {"version": 0},
        "answer": EN_ANSWER,
    }
    qf = QualityFilter()
    assert qf.answer_issue(record) is None
    record.update(chosen={"version": 1}, answer="Inflation is a rise in prices that")
    issue = qf.answer_issue(record)
    assert issue.reason == "answer_truncated" and issue.detail.startswith("answer:")


def test_answer_issue_without_selection_checks_the_latest_version():
    record = {"language": "zh", "versions": [{"answer": ZH_ANSWER, "finish_reason": "stop"}, {"answer": EN_ANSWER, "finish_reason": "stop"}]}
    assert QualityFilter().answer_issue(record).reason == "answer_wrong_language"
    assert QualityFilter(check_language=False).answer_issue(record) is None
    assert QualityFilter().answer_issue({"language": "en"}).reason == "answer_empty"
    refusal = {"language": "en", "versions": [{"answer": "I'm sorry, but I cannot help with that request.", "finish_reason": "stop"}]}
    assert QualityFilter().answer_issue(refusal).reason == "answer_refusal"


def test_from_config():
    qf = QualityFilter.from_config(PipelineConfig(min_chars=3, max_chars=50))
    assert (qf.min_chars, qf.max_chars) == (3, 50)


# ---------------------------------------------------------------- refusals: only at the start, with the act refused


@pytest.mark.parametrize(
    "text, task",
    [
        ("Unfortunately, I have to decline your kind invitation to speak at the conference this year.", "creation"),
        ("Unfortunately, I have to decline the offer, as I have accepted another position.", "domain_qa"),
        ("I'm sorry, but I can't attend the meeting on Friday. Could we move it to Monday?", "daily_chat"),
        ("I can't help but watch the tide\nas it carries the evening out to sea.", "creation"),
        ("I'm sorry, but I can't give you a refund without a receipt. I can offer store credit.", "role_playing"),
        ("公司的这一要求违反了《劳动合同法》的相关规定，你有权拒绝。", "domain_qa"),
        ("非常抱歉，我们无法在本月底前交货，预计将推迟一周。", "creation"),
        ("Dear Ms Li,\n\nI'm sorry, but I cannot provide the report by Friday.", "creation"),
    ],
)
def test_letters_poems_and_role_play_are_not_refusals(text, task):
    assert check_text(text, task=task) is None


@pytest.mark.parametrize(
    "text",
    [
        "I'm unable to help with that request.",
        "As an AI, I'm not able to provide legal advice.",
        "I won't be able to help with that.",
        "I am not able to assist with this request.",
    ],
)
def test_more_refusal_wordings_are_caught(text):
    assert check_text(text + " padding padding").reason == "refusal"


def test_role_play_still_catches_model_refusals():
    assert check_text("I'm sorry, but I can't help with that request.", task="role_playing").reason == "refusal"
    assert check_text("As an AI language model, I cannot pretend to be a person.", task="creation").reason == "refusal"


# ---------------------------------------------------------------- translations


def test_translations_are_not_wrong_language():
    qf = QualityFilter()
    translation = {
        "language": "en",
        "task": "material_processing",
        "question": "Translate this paragraph into Chinese: Sleep is essential for memory and mood.",
        "versions": [{"answer": ZH_ANSWER, "finish_reason": "stop"}],
    }
    assert qf.answer_issue(translation) is None
    # A translation asked for in another task type counts too.
    assert qf.answer_issue({**translation, "task": "daily_chat"}) is None
    # Without a translation request the check still applies.
    assert qf.answer_issue({**translation, "task": "domain_qa", "question": "What is sleep for?"}).reason == "answer_wrong_language"


def test_unclosed_formulas_take_linear_time():
    import time

    for text in ("\\( x " * 10000, "\\[ y " * 10000):
        start = time.perf_counter()
        detect_language(text)
        assert time.perf_counter() - start < 1
    # closed formulas are still removed before the language is guessed
    assert "x^2" not in _prose("Let \\(x^2\\) be given and \\[y\\] too.")
