"""Chat-model backends behind one async method, ``generate(requests) -> completions``.

Heavy backends (llama.cpp) are imported only when built through :func:`condor.llm.factory.build_backend`.
"""

from condor.llm.base import (
    BackendUnavailable,
    ChatRequest,
    Completion,
    LLMBackend,
    Usage,
)

__all__ = ["BackendUnavailable", "ChatRequest", "Completion", "LLMBackend", "Usage"]
