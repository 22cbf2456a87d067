"""Options shared by the commands, defined once, with their help taken from the config's fields.

Every command that calls a model takes the same model flags (``--config``, ``--backend``,
``--base-url`` (repeatable: replicas), ``--model``, ``--api-key-env``, ``--concurrency``, ``--max-tokens``, ``--temperature``,
``--cache``): :func:`model_options` adds them to a command and hands them over as one
:class:`ModelFlags`. Flags override the YAML file, which overrides the defaults; the YAML file is read
once, by :func:`condor.config.load_config`.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from condor.config import ConfigError, PipelineConfig, RunConfig, load_config
from condor.llm.settings import KINDS, CommonSettings, EmbeddedSettings, OpenAISettings


def _help(model: type, name: str, extra: str = "") -> str:
    description = model.model_fields[name].description or ""
    return f"{description} {extra}".strip()


def _limits(model: type, name: str) -> dict[str, Any]:
    """The field's inclusive bounds as typer's ``min``/``max``, so a bad flag is named by the flag itself."""
    out: dict[str, Any] = {}
    for item in model.model_fields[name].metadata:
        if getattr(item, "ge", None) is not None:
            out["min"] = item.ge
        if getattr(item, "le", None) is not None:
            out["max"] = item.le
    return out


def pipeline_option(name: str, flag: str, kind: type, extra: str = "", **limits: Any) -> Any:
    """An optional flag for ``pipeline.<name>`` with the field's description as help."""
    return Annotated[Optional[kind], typer.Option(flag, help=_help(PipelineConfig, name, extra), **limits)]


ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML run configuration (flags override it).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars; only errors and the final summary.")]
RetryOpt = Annotated[bool, typer.Option("--retry-failed", help="Send again the items whose model calls failed last time.")]
OutputOpt = Annotated[Path, typer.Option("--output", "-o", help="Run directory (resumable; rerun the same command to continue).")]
TreeOpt = pipeline_option("tree", "--tree", str)
LeavesOpt = pipeline_option("leaves", "--leaves", int, "Per language.", min=1)
TasksOpt = pipeline_option("tasks", "--tasks", str, "Comma-separated.")
RoundsOpt = pipeline_option("rounds", "--rounds", int, min=0, max=10)
SelectOpt = pipeline_option("select", "--select", str, "(last or best)")
LangOpt = pipeline_option("lang", "--lang", str, "(en, zh or both)")
SeedOpt = pipeline_option("seed", "--seed", int)
MaxFailureShareOpt = pipeline_option("max_failure_share", "--max-failure-share", float, min=0.0, max=1.0)
ForceOpt = Annotated[bool, typer.Option(
    "--force", help="Write into OUT even though it holds output files but no manifest.json (they are replaced).")]


@dataclass
class ModelFlags:
    """The shared model flags of one command invocation (None: not given)."""

    config: Optional[Path] = None
    backend: Optional[str] = None
    base_url: Optional[list[str]] = None
    model: Optional[str] = None
    api_key_env: Optional[str] = None
    concurrency: Optional[int] = None
    max_tokens: Optional[int] = None
    temperature: Optional[float] = None
    cache: Optional[Path] = None

    def overrides(self) -> dict[str, Any]:
        """Dotted config keys for the flags. Giving --base-url alone implies the openai backend."""
        backend = self.backend
        if backend is None and self.base_url:
            backend = "openai"
        values = {name: getattr(self, name) for name in ("model", "api_key_env", "concurrency", "max_tokens", "temperature")}
        out = {f"llm.{name}": value for name, value in values.items()}
        if self.base_url:
            # Given several times: replicas of one model (condor.llm.replicas); once: one server.
            out["llm.base_url"] = self.base_url[0] if len(self.base_url) == 1 else list(self.base_url)
        out["llm.backend"] = backend
        out["cache"] = str(self.cache) if self.cache else None
        return out

    def load(self, more: dict[str, Any] | None = None) -> RunConfig:
        """The run configuration: defaults, then the YAML file, then these flags and ``more``."""
        return resolve_config(self.config, {**self.overrides(), **(more or {})})


#: The flag that sets each dotted config key, so that a bad value is reported under the flag's name.
FLAGS = {"llm.base_url": "--base-url", "llm.model": "--model", "llm.api_key_env": "--api-key-env",
         "llm.concurrency": "--concurrency", "llm.max_tokens": "--max-tokens", "llm.temperature": "--temperature",
         "llm.backend": "--backend", "cache": "--cache"}


_MODEL_OPTIONS: dict[str, Any] = {
    "config": ConfigOpt,
    "backend": Annotated[Optional[str], typer.Option("--backend", help=f"Backend kind: {', '.join(KINDS)} (default embedded; --base-url implies openai).")],
    "base_url": Annotated[Optional[list[str]], typer.Option(
        "--base-url", help="Server address as OpenAI clients take it, e.g. http://localhost:8000/v1; give it once per "
        "replica to spread the load over several servers of one model.")],
    "model": Annotated[Optional[str], typer.Option(
        "--model", help=f"{_help(OpenAISettings, 'model')} For embedded: {_help(EmbeddedSettings, 'model')}")],
    "api_key_env": Annotated[Optional[str], typer.Option("--api-key-env", help=_help(OpenAISettings, "api_key_env"))],
    "concurrency": Annotated[Optional[int], typer.Option(
        "--concurrency", help=_help(CommonSettings, "concurrency"), **_limits(CommonSettings, "concurrency"))],
    "max_tokens": Annotated[Optional[int], typer.Option(
        "--max-tokens", help=_help(CommonSettings, "max_tokens"), **_limits(CommonSettings, "max_tokens"))],
    "temperature": Annotated[Optional[float], typer.Option(
        "--temperature", help=_help(CommonSettings, "temperature"), **_limits(CommonSettings, "temperature"))],
    "cache": Annotated[Optional[Path], typer.Option("--cache", help=_help(RunConfig, "cache"))],
}
assert set(_MODEL_OPTIONS) == {f.name for f in fields(ModelFlags)}


def model_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give ``command`` the shared model flags; it receives them as its ``flags: ModelFlags`` argument."""
    signature = inspect.signature(command, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name != "flags"]
    added = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=kind)
        for name, kind in _MODEL_OPTIONS.items()
    ]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        flags = ModelFlags(**{name: kwargs.pop(name) for name in _MODEL_OPTIONS})
        return command(**kwargs, flags=flags)

    # typer reads the signature and the type hints; both must show the added flags, not `flags`.
    wrapper.__signature__ = signature.replace(parameters=[*own, *added])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in [*own, *added]} | {"return": signature.return_annotation}
    return wrapper


def resolve_config(config: Path | None, overrides: dict[str, Any]) -> RunConfig:
    """Load the config or exit with the error message (no traceback)."""
    try:
        given = {key: FLAGS.get(key, f"--{key.rsplit('.', 1)[-1].replace('_', '-')}")
                 for key, value in overrides.items() if value is not None}
        return load_config(config, overrides, flags=given)
    except ConfigError as exc:
        fail(str(exc))
        raise  # unreachable; keeps type checkers happy


def fail(message: str, code: int = 2) -> None:
    """Print an actionable error to stderr and exit."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)
