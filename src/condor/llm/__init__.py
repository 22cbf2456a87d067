"""Chat-model backends behind one async method, ``generate(requests) -> completions``.

This package owns the backend interface (:mod:`~condor.llm.base`), each kind's settings
(:mod:`~condor.llm.settings`) and class, the registry that maps one to the other and opens backends
(:mod:`~condor.llm.registry`), the request cache and client-side rate limits. Heavy backends
(llama.cpp) are imported only when a backend of their kind is built.
"""

from condor.llm.base import (
    BackendUnavailable,
    Capabilities,
    ChatRequest,
    Completion,
    LLMBackend,
    Usage,
)

__all__ = ["BackendUnavailable", "Capabilities", "ChatRequest", "Completion", "LLMBackend", "Usage"]
