"""JSON on the hot paths (request bodies, replies, units, cache entries): orjson, with the standard
library behind it.

A whole run encodes and decodes every request, reply and unit several times; the standard library
spends tens of microseconds on a unit of two kilobytes, orjson a few. orjson refuses a little that the
standard library takes (text with lone surrogates from a model that split an emoji, integers past 64
bits, ``NaN`` in a reply); those values go through the standard library exactly as before, so nothing
that was readable or writable stops being so.

Hashes and cache keys are not made here: they keep the standard library's exact bytes (see
``condor.run.files.record_hash`` and ``condor.llm.base.request_key``), so existing runs and caches
still match.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

#: Dictionary keys that are not strings (an int id) are written as strings, as ``json.dumps`` does.
_OPTIONS = orjson.OPT_NON_STR_KEYS


def encode(obj: Any) -> bytes:
    """Compact JSON as UTF-8 bytes; text that UTF-8 cannot carry (lone surrogates) is ASCII-escaped."""
    try:
        return orjson.dumps(obj, option=_OPTIONS)
    except orjson.JSONEncodeError:
        text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:
            return json.dumps(obj, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def encode_text(obj: Any) -> str:
    """:func:`encode` as a string."""
    return encode(obj).decode("utf-8")


def decode(data: bytes | str) -> Any:
    """A JSON value; what orjson refuses is read by the standard library, which raises the usual
    ``ValueError`` (``json.JSONDecodeError``, ``UnicodeDecodeError``) or ``RecursionError`` when the
    text is not JSON at all."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)
