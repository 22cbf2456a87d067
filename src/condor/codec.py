"""JSON on the hot paths (request bodies, replies, units, cache entries): orjson, with the standard
library behind it.

A whole run encodes and decodes every request, reply and unit several times; the standard library
spends tens of microseconds on a unit of two kilobytes, orjson a few. The bytes may differ (orjson
writes no spaces either, but it spells a few floats differently), the values never do: whatever orjson
would change is handed to the standard library, exactly as before this module existed:

- writing: integers past 2**53 (``OPT_STRICT_INTEGER`` makes orjson refuse them), text with lone
  surrogates (a model that split an emoji), and values holding a NaN or an infinity, which orjson
  writes as ``null`` where the standard library writes ``NaN`` (looked for only when the output has a
  ``null``); dataclasses and datetimes, which the standard library refuses, are still refused (enums
  and UUIDs are the exception: orjson writes them);
- reading: text orjson refuses (``NaN``, lone surrogate escapes), and text with a run of 20 digits or
  more, where orjson would turn an integer past 2**64 into a float.

Hashes and cache keys are not made here: they keep the standard library's exact bytes (see
``condor.run.files.record_hash`` and ``condor.llm.base.request_key``), so existing runs and caches
still match.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

_OPTIONS = (
    orjson.OPT_NON_STR_KEYS  # an int key is written as a string, as json.dumps does
    | orjson.OPT_STRICT_INTEGER
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)
#: Every ASCII digit to "0", every other byte to a space: a run of 20 digits is then a plain substring
#: search, ten times faster than a regular expression (UTF-8 never puts digit bytes inside a character).
_DIGITS = bytes(48 if 48 <= byte <= 57 else 32 for byte in range(256))
_TWENTY_DIGITS = b"0" * 20


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
    # A null may be a NaN or an infinity that orjson wrote as null: then the standard library writes it.
    return _standard(obj) if b"null" in data and _non_finite(obj) else data


def _non_finite(obj: Any) -> bool:
    """Whether ``obj`` holds a NaN or an infinity (only dicts, lists and tuples get this far)."""
    todo = [obj]
    while todo:
        item = todo.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return True
        elif isinstance(item, dict):
            todo.extend(item.values())
        elif isinstance(item, (list, tuple)):
            todo.extend(item)
    return False


def encode_text(obj: Any) -> str:
    """:func:`encode` as a string."""
    return encode(obj).decode("utf-8")


def decode(data: bytes | str) -> Any:
    """A JSON value; text that is not JSON raises the standard library's usual ``ValueError``
    (``json.JSONDecodeError``, ``UnicodeDecodeError``) or ``RecursionError``."""
    raw = data if isinstance(data, (bytes, bytearray)) else data.encode("utf-8", "surrogatepass")
    if _TWENTY_DIGITS not in raw.translate(_DIGITS):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data)
