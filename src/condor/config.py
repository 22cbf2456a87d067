"""Run configuration: pydantic models read from YAML, validated strictly, overridable from the CLI.

Every field has a description; the CLI reuses them as option help. Unknown keys are errors
(``extra="forbid"``) so that a typo in a config file is caught before hours of generation, not after.
API keys are never part of the config: only the *name* of the environment variable that holds one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator

from condor.errors import ConfigError
from condor.llm.settings import (
    KINDS, BackendSettings, CommonSettings, EmbeddedSettings, OpenAISettings, StrictSettings, VLLMSettings,
)

__all__ = [
    "ROLES", "BackendSettings", "CommonSettings", "ConfigError", "EmbeddedSettings", "OpenAISettings",
    "PipelineConfig", "RaySettings", "RunConfig", "VLLMSettings", "load_config", "parse_shard",
]

ROLES = ("question_writer", "answerer", "critic", "refiner", "judge")

_SHARD = re.compile(r"(\d{1,6})/(\d{1,6})")


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/N"`` as ``(i, N)``: shard i (counted from 0) of N. Raises ValueError for anything else."""
    match = _SHARD.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"a shard is written i/N (for example 0/4), not {text!r}")
    index, count = int(match[1]), int(match[2])
    if count < 1 or index >= count:
        raise ValueError(f"shard {text!r}: i must be from 0 to N-1 and N at least 1")
    return index, count


class PipelineConfig(StrictSettings):
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
    resample_attempts: int = Field(
        2, ge=0, le=10,
        description="Fresh samples a degenerate question set, answer, critique or refinement gets before it is rejected.",
    )
    relevance: Literal["auto", "embeddings", "lexical", "off"] = Field(
        "auto",
        description="How questions are checked against their tag: MiniLM embeddings (auto: when installed), lexical overlap, or off.",
    )
    relevance_threshold: float | None = Field(
        None, ge=-1.0, le=1.0, description="Least on-topic score a question needs (default: calibrated per scorer and language)."
    )
    target: int | None = Field(
        None, ge=1, description="Keep sampling work items until exactly this many rows survive every gate."
    )
    max_requests: int | None = Field(
        None, ge=1, description="Request budget of a --target run (default: 30 per target row)."
    )
    max_failure_share: float = Field(
        0.1, ge=0.0, le=1.0,
        description="Largest share of a model step's items whose calls may fail before the run ends with an error (exit 1).",
    )
    shard: str | None = Field(
        None,
        description="Run only shard i of N of the plan (i/N, i from 0), on one of N machines; `condor merge` joins the shards.",
    )
    decontaminate: list[str] = Field(
        default_factory=list,
        description="Benchmark prompt files (JSONL, JSON array or plain lines); overlapping questions are dropped.",
    )

    @field_validator("shard")
    @classmethod
    def _shard(cls, value: str | None) -> str | None:
        if value is None:
            return None
        index, count = parse_shard(value)
        return f"{index}/{count}"


_RAY_ADDRESS = re.compile(r"(ray://)?[A-Za-z0-9_.\-\[\]:]+:[0-9]{1,5}")


class RaySettings(StrictSettings):
    """Where the Ray executor runs and how wide (used with ``executor: ray``)."""

    address: str | None = Field(
        None,
        description="Ray cluster to join: auto, host:port of its head (6379) or ray://host:10001; "
        "default: start a local Ray for the command.",
    )
    workers: int | None = Field(
        None, ge=1, le=4096, description="Ray workers calling models at once (default: the cluster's CPUs)."
    )
    block_size: int | None = Field(
        None, ge=1, le=1_000_000,
        description="Inputs per Ray block; each block writes its own shard "
        "(default: one to eight windows of a worker, at least four blocks per worker).",
    )
    num_cpus: int | None = Field(
        None, ge=1, le=4096, description="CPUs of the local Ray the command starts (default: all of them)."
    )

    @field_validator("address")
    @classmethod
    def _check_address(cls, value: str | None) -> str | None:
        if value is None or value == "auto" or _RAY_ADDRESS.fullmatch(value):
            return value
        raise ValueError(f"not a Ray address: {value!r}; use auto, host:port (e.g. 10.0.0.5:6379) or ray://host:10001")


class RunConfig(StrictSettings):
    """A whole run: the default model, optional per-role models, cache and pipeline settings."""

    llm: BackendSettings = Field(default_factory=EmbeddedSettings, description="The default model for every role.")
    roles: dict[str, BackendSettings] = Field(
        default_factory=dict, description=f"Per-role model overrides; roles: {', '.join(ROLES)}."
    )
    cache: str | None = Field(None, description="Request cache file (SQLite); pipeline runs default to <output>/cache.sqlite.")
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    executor: Literal["local", "ray"] = Field(
        "local", description="Who calls the models: local (asyncio, this process) or ray (Ray Data workers)."
    )
    ray: RaySettings = Field(default_factory=RaySettings, description="Ray executor settings.")

    @field_validator("roles")
    @classmethod
    def _known_roles(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - set(ROLES))
        if unknown:
            raise ValueError(f"unknown role(s) {unknown}; known roles are {list(ROLES)}")
        return value

    def backend_for(self, role: str) -> OpenAISettings | EmbeddedSettings | VLLMSettings:
        return self.roles.get(role, self.llm)

    def given(self, dotted: str) -> bool:
        """Whether the user set ``dotted`` (``"pipeline.leaves"``) in the file or a flag, not a default."""
        node: BaseModel = self
        *parents, leaf = dotted.split(".")
        for part in parents:
            if part not in node.model_fields_set:
                return False
            node = getattr(node, part)
        return leaf in node.model_fields_set


def _where(loc: tuple[Any, ...]) -> tuple[str, str | None]:
    """A dotted location without the union's kind tag (``llm.embedded.x`` -> ``llm.x``), and the kind."""
    parts, kind = [str(part) for part in loc], None
    for index in range(len(parts) - 1, 0, -1):
        backend_slot = parts[index - 1] == "llm" or (index >= 2 and parts[index - 2] == "roles")
        if backend_slot and parts[index] in KINDS:
            kind = parts.pop(index)
    return ".".join(parts) or "(top level)", kind


def _format_validation_error(path: Path | str | None, error: ValidationError, flags: dict[str, str]) -> str:
    lines = [f"{path}: invalid configuration" if path is not None else "invalid settings"]
    for item in error.errors():
        where, kind = _where(item["loc"])
        # A value given as a flag is reported under the flag, not under a file it did not come from.
        shown = f"{flags[where]} ({where})" if where in flags else where
        lines.append(f"  {shown}: {item['msg']}" + (f" (for backend {kind})" if kind else ""))
    return "\n".join(lines)


def load_config(
    path: str | Path | None, overrides: dict[str, Any] | None = None, *, flags: dict[str, str] | None = None
) -> RunConfig:
    """Read a YAML config (or start from defaults) and apply dotted-key overrides from the CLI.

    ``overrides`` maps ``"llm.model"``-style keys to values; ``None`` values are ignored so that unset
    CLI flags leave the file's value alone. ``flags`` names the flag that gave each override, so that an
    error about one names the flag.
    """
    data: dict[str, Any] = {}
    source: Path | None = None
    if path is not None:
        from condor.config_files import read_yaml

        source = Path(path)
        loaded = read_yaml(source, "config file")
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
        raise ConfigError(_format_validation_error(source, exc, flags or {})) from None
