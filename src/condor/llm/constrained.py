"""JSON-schema constrained decoding for the transformers backend, with llguidance.

A small model writes parseable question sets and critiques only when its sampling is held to the
schema (the embedded backend does the same with llama.cpp grammars). :class:`SchemaConstraint` is a
``transformers`` logits processor over a padded batch: each row with a schema has its own llguidance
matcher, which takes the token sampled at the previous step and then masks every token the schema does
not allow at this one; rows without a schema are left alone. A finished row (the matcher stopped after
its end-of-sequence) only pads; a matcher that errs lets its row end, and the reply then fails to parse
and goes up the recovery ladder like any bad reply. Without llguidance installed nothing is constrained
and the backend says so in its capabilities. Leaves out: grammars other than JSON schemas.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def allowed_tokens(matcher: Any) -> np.ndarray:
    """One byte per token id (1: allowed next), from an llguidance matcher's packed bitmask; the array
    may run past the vocabulary to a multiple of 32."""
    return np.unpackbits(np.frombuffer(matcher.compute_bitmask(), dtype=np.uint8), bitorder="little")


def available() -> bool:
    try:
        import llguidance  # noqa: F401
        import llguidance.hf  # noqa: F401
    except ImportError:
        return False
    return True


class GuidanceTokenizer:
    """llguidance's view of a Hugging Face fast tokenizer; building it takes about a second, so it is kept."""

    def __init__(self, tokenizer: Any, vocab_size: int) -> None:
        import llguidance.hf

        self.vocab_size = vocab_size
        self.inner = llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab_size)


class SchemaConstraint:
    """Masks the logits of each row to what its JSON schema allows next."""

    def __init__(self, tokenizer: GuidanceTokenizer, schemas: Sequence[dict | None], prompt_length: int,
                 eos_ids: set[int]) -> None:
        from llguidance import LLMatcher

        self.vocab_size = tokenizer.vocab_size
        self.prompt_length = prompt_length
        self.eos_ids = sorted(i for i in eos_ids if i is not None and 0 <= i < self.vocab_size)
        self.matchers: list[Any] = []
        #: Rows whose matcher failed, with llguidance's reason (the row was ended there).
        self.errors: dict[int, str] = {}
        for schema in schemas:
            if schema is None:
                self.matchers.append(None)
                continue
            matcher = LLMatcher(tokenizer.inner, LLMatcher.grammar_from_json_schema(schema), log_level=0)
            if matcher.is_error():
                raise ValueError(f"the JSON schema cannot be enforced: {matcher.get_error()[:200]}")
            self.matchers.append(matcher)

    def _only_eos(self, scores: Any, row: int) -> None:
        keep = scores[row, self.eos_ids].clone()
        scores[row, :] = float("-inf")
        scores[row, self.eos_ids] = keep

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        step = input_ids.shape[1] - self.prompt_length
        for row, matcher in enumerate(self.matchers):
            if matcher is None:
                continue
            if step > 0 and not matcher.is_stopped() and not matcher.is_error():
                matcher.consume_token(int(input_ids[row, -1]))
            if matcher.is_error() and row not in self.errors:
                self.errors[row] = matcher.get_error()[:200]
            if matcher.is_stopped() or matcher.is_error():
                self._only_eos(scores, row)
                continue
            allowed = torch.from_numpy(allowed_tokens(matcher)[: self.vocab_size].astype(bool))
            columns = scores.shape[1]
            if allowed.shape[0] < columns:  # the model's vocabulary is padded past the tokenizer's
                allowed = torch.cat([allowed, torch.zeros(columns - allowed.shape[0], dtype=torch.bool)])
            scores[row, ~allowed[:columns]] = float("-inf")
        return scores
