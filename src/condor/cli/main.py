"""Entry point of the ``condor`` command: composes the command groups.

Each group lives in its own module and is registered here; command modules import their heavy
dependencies inside the command functions so that ``condor --help`` stays instant.
"""

from __future__ import annotations

import typer
from typer.core import TyperGroup

from condor import __version__
from condor.cli.runtime import ARGV_KEY

class _CondorGroup(TyperGroup):
    """The root command, keeping the arguments it was given: a summary can then print the exact
    command that retries what failed (``--retry-failed``)."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        ctx.meta[ARGV_KEY] = list(args)
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_CondorGroup,
    name="condor",
    help="Turn any chat LLM into a factory of SFT and preference data (World Knowledge Tree, Condor Void, Condor Refine).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"condor {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    """Condor: knowledge-driven data synthesis and refinement."""


def _register() -> None:
    # Command modules keep their heavy imports inside the commands, so registering them all is cheap.
    from condor.cli import export, generate, iterate, judge, merge, pipeline, report, show, train, tree

    generate.register(app)
    pipeline.register(app)
    export.register(app)
    merge.register(app)
    judge.register(app)
    report.register(app)
    show.register(app)
    tree.register(app)
    train.register(app)
    iterate.register(app)


_register()


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
