"""Running a job from a command: clean errors and interrupt handling.

Every model-calling command goes through :func:`run_job`, so that an unreachable server, a bad config or
a corrupted run directory ends in one readable line (exit code 2), and Ctrl-C in a hint that the same
command resumes (exit code 130), never in a traceback.
"""

from __future__ import annotations

import asyncio
import errno
import shlex
import sys
from typing import TYPE_CHECKING, Any, Awaitable, Callable, TypeVar

import typer

from condor.cli.options import fail
from condor.config import ConfigError

if TYPE_CHECKING:
    from condor.run.failures import FailureReport

#: Where the root command keeps the arguments it was called with (``click.Context.meta``).
ARGV_KEY = "condor.argv"
#: Exit code of a command that ran to the end but left too much undone (failed calls, no rows).
INCOMPLETE = 1

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
    except OSError as exc:
        # Files that vanish, disks that fill, a path that is a file: one line, no traceback.
        fail(describe_os_error(exc))
    except UnicodeError as exc:
        fail(f"not UTF-8 text: {exc}")
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


def describe_os_error(exc: OSError) -> str:
    """An operating-system error as a person would say it, naming the path."""
    where = f"{exc.filename}: " if exc.filename else ""
    if isinstance(exc, FileExistsError) or exc.errno == errno.ENOTDIR:
        return f"{where}a file is in the way where a directory is needed; choose another --output"
    if isinstance(exc, IsADirectoryError):
        return f"{where}is a directory where a file is needed"
    if isinstance(exc, PermissionError):
        return f"{where}permission denied"
    if exc.errno == errno.ENOSPC:
        return f"{where}no space left on the device; free some and rerun the same command to resume"
    return f"{where}{exc.strerror or exc}"


def retry_command(ctx: typer.Context | None) -> str:
    """The command this process was started with, plus ``--retry-failed``: what sends failed items again."""
    argv = ctx.meta.get(ARGV_KEY) if ctx is not None else None
    args = list(argv if argv is not None else sys.argv[1:])
    if "--retry-failed" not in args:
        args.append("--retry-failed")
    return shlex.join(["condor", *args])


def report_failures(report: "FailureReport", ctx: typer.Context | None) -> None:
    """Say what failed and how to retry it; exit with :data:`INCOMPLETE` when too much failed or nothing came through."""
    for line in report.notices():
        typer.secho(f"warning: {line}", err=True, fg=typer.colors.YELLOW)
    problems = report.problems()
    for line in problems:
        typer.secho(f"error: {line}", err=True, fg=typer.colors.RED)
    if report.failed:
        typer.echo(f"to send the {report.failed} failed items again: {retry_command(ctx)}", err=True)
    if problems:
        raise typer.Exit(INCOMPLETE)
