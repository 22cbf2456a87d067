"""Options shared by every command that calls a model, and the glue that turns them into a RunConfig.

Each model-calling command declares the same flags (``--backend``, ``--base-url``, ``--model``,
``--api-key-env``, ``--concurrency``, ``--max-tokens``, ``--temperature``) plus ``--config``; flags
override the YAML file, which overrides the defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from condor.config import ConfigError, RunConfig, load_config

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML run configuration.")]
BackendOpt = Annotated[
    Optional[str], typer.Option("--backend", help="embedded (llama.cpp, default) or openai (any compatible server).")
]
BaseUrlOpt = Annotated[
    Optional[str], typer.Option("--base-url", help="Server address as OpenAI clients take it, e.g. http://localhost:8000/v1.")
]
ModelOpt = Annotated[Optional[str], typer.Option("--model", help="Model name on the server, or a GGUF path for embedded.")]
ApiKeyEnvOpt = Annotated[
    Optional[str], typer.Option("--api-key-env", help="Environment variable holding the API key (never stored).")
]
ConcurrencyOpt = Annotated[Optional[int], typer.Option("--concurrency", help="Requests in flight at once (default 64).")]
MaxTokensOpt = Annotated[Optional[int], typer.Option("--max-tokens", help="Maximum tokens per completion.")]
TemperatureOpt = Annotated[Optional[float], typer.Option("--temperature", help="Sampling temperature.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars; only errors and the final summary.")]
CacheOpt = Annotated[Optional[Path], typer.Option("--cache", help="Request cache file (default: OUT/cache.sqlite).")]
RetryOpt = Annotated[bool, typer.Option("--retry-failed", help="Send again the items whose model calls failed last time.")]


def backend_overrides(
    backend: str | None,
    base_url: str | None,
    model: str | None,
    api_key_env: str | None,
    concurrency: int | None,
    max_tokens: int | None,
    temperature: float | None,
) -> dict[str, Any]:
    """Dotted config keys for the backend flags. Giving --base-url alone implies the openai backend."""
    if backend is None and base_url is not None:
        backend = "openai"
    return {
        "llm.backend": backend,
        "llm.base_url": base_url,
        "llm.model": model,
        "llm.api_key_env": api_key_env,
        "llm.concurrency": concurrency,
        "llm.max_tokens": max_tokens,
        "llm.temperature": temperature,
    }


def resolve_config(config: Path | None, overrides: dict[str, Any]) -> RunConfig:
    """Load the config or exit with the error message (no traceback)."""
    try:
        return load_config(config, overrides)
    except ConfigError as exc:
        fail(str(exc))
        raise  # unreachable; keeps type checkers happy


def fail(message: str, code: int = 2) -> None:
    """Print an actionable error to stderr and exit."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)
