"""Running a job from a command: clean errors and interrupt handling.

Every model-calling command goes through :func:`run_job`, so that an unreachable server, a bad config or
a corrupted run directory ends in one readable line (exit code 2), and Ctrl-C in a hint that the same
command resumes (exit code 130), never in a traceback.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, TypeVar

from condor.cli.options import fail
from condor.config import ConfigError

T = TypeVar("T")


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


def run_sync(fn: Callable[[], T]) -> T:
    """Run a synchronous API call with the same error mapping as model jobs."""

    async def job() -> T:
        return fn()

    return run_job(job)


def describe_usage(stats: dict[str, Any]) -> str:
    usage = stats.get("usage", {})
    return (
        f"{usage.get('requests', 0)} requests ({usage.get('cached', 0)} from cache), "
        f"{usage.get('prompt_tokens', 0)} prompt + {usage.get('completion_tokens', 0)} completion tokens, "
        f"{usage.get('retries', 0)} retries"
    )
