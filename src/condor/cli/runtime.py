"""Running an async job from a command: backend lifetime, clean errors, interrupt handling.

Every model-calling command goes through :func:`run_job`, so that an unreachable server, a bad config or
a corrupted run directory ends in one readable line (exit code 2), and Ctrl-C in a hint that the same
command resumes (exit code 130), never in a traceback.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, TypeVar

from condor.cli.options import fail
from condor.config import BackendConfig, ConfigError

T = TypeVar("T")


async def open_backend(cfg: BackendConfig, cache_path: Path | None, *, cache=None):
    """Build the backend and make sure it can work before any record is touched."""
    from condor.llm.factory import build_backend

    backend = build_backend(cfg, cache_path, cache=cache)
    # The openai backend probes the server; the embedded one loads its model. Either fails here, early.
    check = getattr(backend, "check", None) or getattr(backend, "warm_up", None)
    if check is not None:
        try:
            await check()
        except BaseException:
            await backend.aclose()
            raise
    return backend


@asynccontextmanager
async def backend_session(cfg: BackendConfig, cache_path: Path | None) -> AsyncIterator[Any]:
    """``async with``: a checked backend for the block, closed (and its cache flushed) afterwards."""
    backend = await open_backend(cfg, cache_path)
    try:
        yield backend
    finally:
        await backend.aclose()


def run_job(job: Callable[[], Awaitable[T]]) -> T:
    """Run ``job`` on a fresh event loop, mapping expected failures to one-line errors."""
    from condor.llm.base import BackendUnavailable
    from condor.llm.cache import CacheError
    from condor.run.batch import InputError
    from condor.run.store import RunStoreError
    from condor.tree.model import TreeError

    expected: tuple[type[BaseException], ...] = (
        BackendUnavailable,
        ConfigError,
        CacheError,
        InputError,
        RunStoreError,
        TreeError,
    )
    try:
        return asyncio.run(job())
    except expected as exc:
        fail(str(exc))
    except (OSError, UnicodeError) as exc:
        # Files that vanish, disks that fill, text that is not UTF-8: one line, no traceback.
        fail(f"{type(exc).__name__}: {exc}")
    except KeyboardInterrupt:
        fail("interrupted; run the same command again to resume where it stopped", code=130)
    raise AssertionError("unreachable")


def describe_usage(stats: dict[str, Any]) -> str:
    usage = stats.get("usage", {})
    return (
        f"{usage.get('requests', 0)} requests ({usage.get('cached', 0)} from cache), "
        f"{usage.get('prompt_tokens', 0)} prompt + {usage.get('completion_tokens', 0)} completion tokens, "
        f"{usage.get('retries', 0)} retries"
    )
