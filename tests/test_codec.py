"""condor.codec: orjson on the hot paths, the standard library for what orjson refuses."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from condor.codec import decode, encode, encode_text
from condor.run.store import StageStore

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@given(json_values)
def test_what_is_encoded_reads_back_as_the_standard_library_reads_it(value):
    data = encode(value)
    assert decode(data) == json.loads(data) == json.loads(json.dumps(value))


def test_text_with_a_lone_surrogate_is_written_with_ascii_escapes():
    value = {"text": "half an emoji \ud83d", "ok": "é"}
    data = encode(value)
    data.decode("utf-8")  # always valid UTF-8
    assert b"\\ud83d" in data and decode(data) == value
    assert encode_text(value) == data.decode("utf-8")


def test_what_orjson_refuses_is_read_by_the_standard_library():
    assert decode('{"n": NaN}')["n"] != decode('{"n": NaN}')["n"]  # NaN, as json.loads gives it
    assert decode('"\\ud800"') == "\ud800"
    assert decode(json.dumps(2**70)) == 2**70
    assert encode(2**70) == b"1180591620717411303424"
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
