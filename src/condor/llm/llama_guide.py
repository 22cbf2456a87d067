"""JSON schemas held by llguidance while llama.cpp samples (the embedded backend).

llama-cpp-python applies a GBNF grammar to every token of the vocabulary at every step (49,152 for
SmolLM2) before it samples. On two cores that costs more than the model itself: measured on a critique
prompt, the 135M model wrote 8 to 16 tokens a second under the grammar against 24 to 32 with this
guide, with the same tokens where both allow them. llguidance computes the mask of allowed tokens in
Rust from a token trie; :class:`SchemaGuide` is a llama-cpp-python logits processor that feeds it each
sampled token and sets every token the schema does not allow next to minus infinity.

The JSON is compact (``{"key": "value", ...}``, no free whitespace): a small model allowed free
whitespace may spend its budget on newlines. Once the object is complete only end-of-sequence is
allowed; a matcher that fails (it should not: it only ever sees tokens it allowed) ends the reply
there, which then fails to parse and goes up the recovery ladder like any bad reply.

Without llguidance (it is in the ``embedded`` extra) the backend falls back to llama.cpp's grammars.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from condor.llm.constrained import allowed_tokens

log = logging.getLogger(__name__)

# Compact separators, no whitespace between tokens of the JSON.
JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


def guide_tokenizer(llama: Any) -> Any | None:
    """llguidance's view of a loaded model's vocabulary (about a second to build, so built once), or
    None when llguidance is not installed or cannot read this vocabulary."""
    try:
        import llama_cpp
        from llguidance.llamacpp import lltokenizer_from_vocab
    except ImportError:
        return None
    try:
        return lltokenizer_from_vocab(llama_cpp.llama_model_get_vocab(llama.model))
    except Exception:  # noqa: BLE001 - an unreadable vocabulary only means the slower grammar path
        log.warning("llguidance cannot read this model's vocabulary; using llama.cpp grammars", exc_info=True)
        return None


class SchemaGuide:
    """A logits processor that keeps one reply to ``schema`` (one per request: it holds the state)."""

    def __init__(self, tokenizer: Any, schema: dict[str, Any], eos: int) -> None:
        from llguidance import LLMatcher

        grammar = LLMatcher.grammar_from_json_schema(schema, defaults=JSON_OPTIONS)  # type: ignore[arg-type]
        self.matcher = LLMatcher(tokenizer, grammar, log_level=0)
        if self.matcher.is_error():
            raise ValueError(self.matcher.get_error()[:200])
        self.eos = eos
        self._seen: int | None = None  # tokens of input_ids already fed to the matcher

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        # llama-cpp-python calls this through ctypes, which would swallow an exception and let the next
        # token be sampled unconstrained: a failure here ends the reply instead (it then fails to parse).
        try:
            return self._mask(input_ids, scores)
        except Exception:  # noqa: BLE001
            log.warning("the llguidance guide failed; the reply ends here", exc_info=True)
            return self._only_eos(scores)

    def _only_eos(self, scores: np.ndarray) -> np.ndarray:
        keep = scores[self.eos]
        scores[:] = -np.inf
        scores[self.eos] = keep
        return scores

    def _mask(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        # The first call sees the prompt; each later one sees the tokens sampled since.
        if self._seen is None:
            self._seen = len(input_ids)
        for token in input_ids[self._seen:]:
            if self.matcher.is_error() or self.matcher.is_stopped():
                break
            self.matcher.consume_token(int(token))
        self._seen = len(input_ids)
        if self.matcher.is_error() or self.matcher.is_stopped():
            return self._only_eos(scores)
        scores[allowed_tokens(self.matcher)[: len(scores)] == 0] = -np.inf
        return scores
