"""Build a backend from its configuration, optionally behind the request cache.

Heavy modules are imported here, lazily, so that ``import condor`` and ``condor --help`` stay light.
"""

from __future__ import annotations

from pathlib import Path

from condor.config import BackendConfig, ConfigError
from condor.llm.base import LLMBackend


def build_backend(cfg: BackendConfig, cache_path: str | Path | None = None, *, cache=None) -> LLMBackend:
    """The configured backend, wrapped in a :class:`~condor.llm.cache.CachedBackend` when a cache is given.

    ``cache`` (a :class:`~condor.llm.cache.RequestCache`) lets several backends share one open cache;
    ``cache_path`` opens a new one.
    """
    backend: LLMBackend
    if cfg.backend == "openai":
        if not cfg.base_url:
            raise ConfigError("the openai backend needs a base_url (e.g. --base-url http://localhost:8000/v1)")
        if not cfg.model:
            raise ConfigError("the openai backend needs a model name (--model NAME, as the server lists it)")
        from condor.llm.openai import OpenAIBackend

        backend = OpenAIBackend.from_config(cfg)
    else:
        from condor.llm.embedded import EmbeddedBackend

        backend = EmbeddedBackend(
            cfg.model,
            n_ctx=cfg.n_ctx,
            n_threads=cfg.n_threads,
            max_tokens=cfg.max_tokens,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            seed=cfg.seed,
        )
    if cfg.structured == "on" and not backend.supports_schema:
        raise ConfigError(f"structured: on, but the {cfg.backend} backend cannot constrain output to a schema")
    if cache is not None or cache_path is not None:
        from condor.llm.cache import CachedBackend, RequestCache

        backend = CachedBackend(backend, cache if cache is not None else RequestCache(cache_path))
    return backend
