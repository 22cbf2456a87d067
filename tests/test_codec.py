"""condor.codec: orjson on the hot paths, the standard library for what orjson refuses."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from condor.codec import decode, encode, encode_text
from condor.run.store import StageStore

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@given(json_values)
def test_values_read_back_exactly_as_the_standard_library_reads_them(value):
    # Integers of any size and infinities included: what orjson would change goes the standard way.
    data = encode(value)
    assert decode(data) == json.loads(data) == json.loads(json.dumps(value))
    assert decode(data.decode("utf-8")) == decode(data)


def test_numbers_orjson_would_change_keep_their_value():
    assert encode({"x": float("nan"), "y": float("-inf")}) == b'{"x":NaN,"y":-Infinity}'
    assert math.isnan(decode(encode(float("nan"))))
    big = 123456789012345678901234567890
    assert encode(big) == str(big).encode() and decode(encode([big])) == [big]
    assert isinstance(decode(str(big)), int)  # orjson alone would give a float
    assert decode(encode(2**53 + 1)) == 2**53 + 1


def test_what_the_standard_library_refuses_is_still_refused():
    import dataclasses
    import datetime

    @dataclasses.dataclass
    class Verdict:
        reason: str

    for value in (Verdict("x"), datetime.date(2026, 1, 1), {1, 2}):
        with pytest.raises(TypeError):
            encode({"unit": value})


def test_text_with_a_lone_surrogate_is_written_with_ascii_escapes():
    value = {"text": "half an emoji \ud83d", "ok": "é"}
    data = encode(value)
    data.decode("utf-8")  # always valid UTF-8
    assert b"\\ud83d" in data and decode(data) == value
    assert encode_text(value) == data.decode("utf-8")


def test_what_orjson_refuses_is_read_by_the_standard_library():
    assert math.isnan(decode('{"n": NaN}')["n"])
    assert decode('"\\ud800"') == "\ud800"
    assert encode({1: "a"}) == b'{"1":"a"}'


def test_text_that_is_not_json_raises_the_usual_errors():
    with pytest.raises(json.JSONDecodeError):
        decode("{not json")
    with pytest.raises(UnicodeDecodeError):
        decode(b'{"a": "\xff"}')


def test_a_unit_with_a_lone_surrogate_is_stored_and_read_back(tmp_path):
    store = StageStore(tmp_path / "stages" / "step", "step")
    unit = {"input_id": "a", "records": [{"id": "a", "answer": "split \udc00 emoji"}], "rejections": []}
    store.append(dict(unit))
    store.close()
    [back] = list(store.iter_units())
    assert back["records"] == unit["records"]
