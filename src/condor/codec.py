"""JSON on the hot paths (request bodies, replies, units, cache entries): orjson, with the standard
library behind it.

A whole run encodes and decodes every request, reply and unit several times; the standard library
spends tens of microseconds on a unit of two kilobytes, orjson a few. The bytes may differ (orjson
writes no spaces either, but it spells a few floats differently), the values never do: whatever orjson
would change is handed to the standard library, exactly as before this module existed:

- writing: integers past 2**53 (``OPT_STRICT_INTEGER`` makes orjson refuse them), text with lone
  surrogates (a model that split an emoji), and anything with a ``null`` in it, since orjson writes
  ``NaN`` and the infinities as ``null`` where the standard library writes ``NaN``; dataclasses and
  datetimes, which the standard library refuses, are still refused (enums and UUIDs are the exception:
  orjson writes them);
- reading: text orjson refuses (``NaN``, lone surrogate escapes), and text with a run of 20 digits or
  more, where orjson would turn an integer past 2**64 into a float.

Hashes and cache keys are not made here: they keep the standard library's exact bytes (see
``condor.run.files.record_hash`` and ``condor.llm.base.request_key``), so existing runs and caches
still match.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

_OPTIONS = (
    orjson.OPT_NON_STR_KEYS  # an int key is written as a string, as json.dumps does
    | orjson.OPT_STRICT_INTEGER
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)
_LONG_DIGITS = re.compile(r"\d{20}")
_LONG_DIGITS_BYTES = re.compile(rb"\d{20}")


def _standard(obj: Any) -> bytes:
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(obj, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def encode(obj: Any) -> bytes:
    """Compact JSON as UTF-8 bytes; text that UTF-8 cannot carry (lone surrogates) is ASCII-escaped."""
    try:
        data = orjson.dumps(obj, option=_OPTIONS)
    except orjson.JSONEncodeError:
        return _standard(obj)
    # A null may be a NaN orjson wrote as null: units rarely hold one, so those are written again.
    return _standard(obj) if b"null" in data else data


def encode_text(obj: Any) -> str:
    """:func:`encode` as a string."""
    return encode(obj).decode("utf-8")


def decode(data: bytes | str) -> Any:
    """A JSON value; text that is not JSON raises the standard library's usual ``ValueError``
    (``json.JSONDecodeError``, ``UnicodeDecodeError``) or ``RecursionError``."""
    long_digits = _LONG_DIGITS_BYTES if isinstance(data, (bytes, bytearray)) else _LONG_DIGITS
    if long_digits.search(data) is None:  # type: ignore[arg-type]
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data)
