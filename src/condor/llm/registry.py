"""Backend kinds by name: which class serves each kind, and how a configured backend is opened.

The registry maps a kind (the ``backend`` field of its settings, :mod:`condor.llm.settings`) to the
module and class that implement it; the module is imported only when a backend of that kind is built,
so that ``import condor`` never loads aiohttp, llama.cpp or torch. Opening a backend means building it,
wrapping it in the request cache when there is one, and running its ``check`` and ``warm_up`` so that
a wrong address, key or model file fails before any record is touched.
"""

from __future__ import annotations

import importlib
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, AsyncIterator, Awaitable, Callable

from condor.errors import ConfigError
from condor.llm.base import LLMBackend

if TYPE_CHECKING:
    from condor.config import RunConfig
    from condor.llm.cache import RequestCache
    from condor.llm.settings import CommonSettings

#: kind -> "module:Class"; each class has ``from_settings(settings)``.
BACKENDS: dict[str, str] = {
    "openai": "condor.llm.openai:OpenAIBackend",
    "embedded": "condor.llm.embedded:EmbeddedBackend",
    "vllm": "condor.llm.vllm:VLLMBackend",
    "transformers": "condor.llm.transformers:TransformersBackend",
}


def backend_class(kind: str) -> type[LLMBackend]:
    """The class that implements ``kind``; imports its module now."""
    try:
        target = BACKENDS[kind]
    except KeyError:
        raise ConfigError(f"unknown backend kind {kind!r}; known kinds: {', '.join(BACKENDS)}") from None
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def build_backend(settings: "CommonSettings", *, cache: "RequestCache | None" = None) -> LLMBackend:
    """The backend for ``settings``, behind ``cache`` when one is given (several backends may share one)."""
    if len(getattr(settings, "urls", lambda: ())()) > 1:
        # Several addresses of one model: one backend over the replicas (condor.llm.replicas).
        from condor.llm.replicas import ReplicaBackend

        backend: LLMBackend = ReplicaBackend.from_settings(settings)  # type: ignore[arg-type]
    else:
        backend = backend_class(settings.backend).from_settings(settings)  # type: ignore[attr-defined]
    if settings.structured == "on" and not backend.capabilities.structured:
        raise ConfigError(f"structured: on, but the {settings.backend} backend cannot constrain output to a schema")
    if cache is not None:
        from condor.llm.cache import CachedBackend

        backend = CachedBackend(backend, cache)
    return backend


async def open_backend(settings: "CommonSettings", *, cache: "RequestCache | None" = None,
                       warm_up: bool = True) -> LLMBackend:
    """A built and checked backend: the server answers, and (``warm_up``) the model file loads. Closed
    again on failure."""
    backend = build_backend(settings, cache=cache)
    try:
        await backend.check()
        if warm_up:
            await backend.warm_up()
    except BaseException:
        await backend.aclose()
        raise
    return backend


@asynccontextmanager
async def backend_session(settings: "CommonSettings", cache_path: Path | None) -> AsyncIterator[LLMBackend]:
    """``async with``: a checked backend (with its own cache file, if given), closed afterwards."""
    cache = None
    if cache_path is not None:
        from condor.llm.cache import RequestCache

        cache = RequestCache(cache_path)
    try:
        backend = await open_backend(settings, cache=cache)
    except BaseException:
        if cache is not None:
            cache.close()
        raise
    try:
        yield backend
    finally:
        await backend.aclose()


#: Opens one role's backend from its settings and the shared cache.
Opener = Callable[["CommonSettings", "RequestCache | None"], Awaitable[LLMBackend]]


async def open_roles(cfg: "RunConfig", cache: "RequestCache | None", opener: Opener | None = None, *,
                     only: Callable[["CommonSettings"], bool] | None = None) -> dict[str, LLMBackend]:
    """``{role: backend}`` for the roles whose settings ``only`` takes (default: all), one backend per
    distinct model configuration, opened by ``opener`` (default: :func:`open_backend`). When one fails,
    those already opened are closed again."""
    from condor.config import ROLES

    by_config: dict[str, LLMBackend] = {}
    roles: dict[str, LLMBackend] = {}
    try:
        for role in ROLES:
            settings = cfg.backend_for(role)
            if only is not None and not only(settings):
                continue
            key = settings.model_dump_json()
            if key not in by_config:
                by_config[key] = await (opener(settings, cache) if opener else open_backend(settings, cache=cache))
            roles[role] = by_config[key]
    except BaseException:
        await close_backends(by_config)
        raise
    return roles


async def open_role_backends(cfg: "RunConfig", cache_path: Path | None) -> dict[str, LLMBackend]:
    """``{role: backend}``: one backend per distinct model configuration, all sharing one cache file.

    By default every role is the same model, as in the paper, and gets the same object: one connection
    pool, one loaded GGUF.
    """
    from condor.llm.cache import RequestCache

    cache = RequestCache(cache_path) if cache_path is not None else None
    try:
        return await open_roles(cfg, cache)
    except BaseException:
        if cache is not None:
            cache.close()
        raise


async def close_backends(backends: dict[str, LLMBackend]) -> None:
    """Close each distinct backend once (several roles may share one)."""
    closed: set[int] = set()
    for backend in backends.values():
        if id(backend) not in closed:
            closed.add(id(backend))
            await backend.aclose()
