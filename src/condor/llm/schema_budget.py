"""Fit a JSON schema's string bounds to a request's token budget.

A stage's schema bounds its strings for a model with room to write (a critique allows 700 characters
per section). Under a small ``max_tokens`` (the embedded model's demo settings, a cheap judge) those
bounds add up to more text than the budget holds. A constrained decoder then happily follows a looping
model to the budget's end, and the reply stops inside the JSON: unparsable, its tokens wasted, and
the request resampled to be wasted again. Tightening the declared ``maxLength`` bounds until their
sum fits the budget makes the grammar close each string in time, so the reply is always a whole
object.

Only strings that already declare a ``maxLength`` are tightened: a stage that leaves a string
unbounded (a question, a rewritten answer) does so because a string stopped at its bound is cut
mid-sentence while the reply still says "stop"; there a reply that runs out of budget must stay a
visible truncation. Strings with a ``pattern``, ``format``, ``enum`` or ``const`` keep their bounds.
Bounds never drop below a string's ``minLength`` (or 1), and a budget wide enough for the schema, or
too small to hold even its keys, leaves it as it is (the same object).

The request itself is not changed, only what goes to the decoder: the cache key (what was asked for)
stays the same whatever budget a backend applies.
"""

from __future__ import annotations

import copy
from typing import Any

# Characters a bounded string may hold per budget token. English prose runs at about four characters
# per token in the tokenizers we meet, so three leaves some room. Digits, emoji and Chinese run lower
# (often one or two characters a token), so a reply in those can still outrun the budget: the bounds
# then only shorten the overrun, and the reply is cut as it would have been.
CHARS_PER_TOKEN = 3
# Tokens the JSON around each string takes (its key, quotes, colon, comma), and the braces.
TOKENS_PER_FIELD = 6
TOKENS_FOR_OBJECT = 4


# A string with one of these must keep its length: shortening it could leave no value that matches.
_SHAPED = ("pattern", "format", "enum", "const")


def _bounded_strings(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The free-text string schemas with a ``maxLength`` in an object schema's properties (one level:
    the shapes our stages send), in order."""
    properties = schema.get("properties") if schema.get("type") == "object" else None
    if not isinstance(properties, dict):
        return []
    return [value for value in properties.values()
            if isinstance(value, dict) and value.get("type") == "string" and isinstance(value.get("maxLength"), int)
            and not any(key in value for key in _SHAPED)]


def fit_to_budget(schema: dict[str, Any], max_tokens: int | None) -> dict[str, Any]:
    """``schema`` with its bounded strings' ``maxLength`` scaled down (in proportion) so that together
    they fit ``max_tokens``; ``schema`` itself when they already fit or nothing is bounded."""
    if not max_tokens or max_tokens <= 0:
        return schema
    bounded = _bounded_strings(schema)
    if not bounded:
        return schema
    fields = len(schema["properties"])
    room = (max_tokens - TOKENS_FOR_OBJECT - TOKENS_PER_FIELD * fields) * CHARS_PER_TOKEN
    declared = sum(value["maxLength"] for value in bounded)
    # A budget that cannot hold even the object's keys is left alone: the reply will be cut whatever
    # the bounds say, and a visible truncation beats a schema squeezed to nothing.
    if room <= 0 or declared <= room:
        return schema
    fitted = copy.deepcopy(schema)
    share = room / declared
    for value in _bounded_strings(fitted):
        floor = value.get("minLength", 1) if isinstance(value.get("minLength"), int) else 1
        value["maxLength"] = min(value["maxLength"], max(floor, int(value["maxLength"] * share)))
    return fitted
