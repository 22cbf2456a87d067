"""One backend per distinct model configuration, shared by the roles that use it.

By default every role (question writer, answerer, critic, refiner, judge) is the same model, as in the
paper, and gets the same backend object: one connection pool, one loaded GGUF. Roles configured with a
different model get their own. All of them share one request cache file.
"""

from __future__ import annotations

from pathlib import Path

from condor.config import ROLES, RunConfig
from condor.llm.base import LLMBackend


async def open_role_backends(cfg: RunConfig, cache_path: Path | None) -> dict[str, LLMBackend]:
    """``{role: backend}``, each backend checked (server reachable / model loaded) before use."""
    from condor.cli.runtime import open_backend
    from condor.llm.cache import RequestCache

    cache = RequestCache(cache_path) if cache_path is not None else None
    by_config: dict[str, LLMBackend] = {}
    roles: dict[str, LLMBackend] = {}
    try:
        for role in ROLES:
            role_cfg = cfg.backend_for(role)
            key = role_cfg.model_dump_json()
            if key not in by_config:
                by_config[key] = await open_backend(role_cfg, None, cache=cache)
            roles[role] = by_config[key]
    except BaseException:
        await close_role_backends(roles or by_config)
        if cache is not None:
            cache.close()
        raise
    return roles


async def close_role_backends(backends: dict[str, LLMBackend]) -> None:
    closed: set[int] = set()
    for backend in backends.values():
        if id(backend) not in closed:
            closed.add(id(backend))
            await backend.aclose()
