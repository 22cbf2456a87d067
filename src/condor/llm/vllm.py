"""The vllm backend: vLLM's offline engine (``vllm.LLM``) in this process, on this machine's GPUs.

vLLM schedules many sequences at once on the GPU, so the backend declares ``native_batching``: the
executor hands it the requests of many records in one ``generate`` call (up to ``max_batch``, see
:mod:`condor.run.batching`), and they go to ``LLM.chat`` as one list of conversations, each with its
own ``SamplingParams`` (sampling settings, a per-sample seed, and a JSON schema when the stage asks for
one, through vLLM's structured outputs: ``StructuredOutputsParams(json=...)``, or
``GuidedDecodingParams`` on vLLM before 0.12). The call blocks, so it runs on one worker thread and the
event loop keeps writing units and drawing progress meanwhile.

What a request becomes is a set of pure functions (:func:`engine_arguments`, :func:`sampling_arguments`,
:func:`structured_argument`, :func:`completion_from`), tested without vLLM; only :func:`load_api` and
the engine calls need it. vLLM is an optional extra (``pip install 'condor-data[vllm]'``, which brings a
CUDA build of torch): without it, or without a CUDA GPU, :meth:`VLLMBackend.check` says so in one line
before a run starts. A prompt that vLLM refuses (longer than ``max_model_len``) fails its whole call,
so such a batch is sent again one request at a time and only the bad request fails.

Left out: LoRA adapters, speculative decoding, multi-node engines (use a vLLM server and
``--base-url``, or the Ray executor), streaming.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

from condor.llm.base import BackendUnavailable, Capabilities, ChatRequest, Completion, LLMBackend, clean_text
from condor.llm.base import with_defaults
from condor.llm.schema_budget import fit_to_budget

if TYPE_CHECKING:
    from condor.llm.settings import VLLMSettings

__all__ = [
    "VLLMBackend", "completion_from", "engine_arguments", "load_api", "missing_requirement", "resolve_request",
    "sampling_arguments", "structured_argument", "vllm_identity",
]

log = logging.getLogger(__name__)

INSTALL = "pip install 'condor-data[vllm]'"
# The engine settings handed to vllm.LLM under the same names.
_ENGINE_FIELDS = (
    "tokenizer", "tensor_parallel_size", "gpu_memory_utilization", "max_model_len", "dtype", "quantization",
    "enable_prefix_caching", "enforce_eager", "trust_remote_code",
)


def missing_requirement(find_spec: Callable[[str], Any] = importlib.util.find_spec) -> str | None:
    """Why the vllm backend cannot run here (vLLM not installed, no CUDA GPU), or None."""
    if find_spec("vllm") is None:
        return (f"the vllm backend needs vLLM, which is not installed: {INSTALL} on a machine with an NVIDIA GPU "
                "(or serve the model with `vllm serve` and pass --base-url)")
    try:
        import torch
    except ImportError:
        return f"the vllm backend needs torch with CUDA, which is not installed: {INSTALL}"
    if not torch.cuda.is_available():
        return ("the vllm backend needs a CUDA GPU and this machine has none (torch.cuda.is_available() is False); "
                "run where the GPUs are, or serve the model with `vllm serve` and pass --base-url")
    return None


def engine_arguments(settings: "VLLMSettings") -> dict[str, Any]:
    """Keyword arguments of ``vllm.LLM`` for these settings; unset ones are left to vLLM."""
    out: dict[str, Any] = {"model": settings.model}
    for name in _ENGINE_FIELDS:
        value = getattr(settings, name)
        if value is not None:
            out[name] = value
    if settings.seed is not None:
        out["seed"] = settings.seed
    return out


def vllm_identity(settings: "VLLMSettings") -> str:
    """The model identity of ``settings``: the model and what changes its outputs. The same for the
    in-process engine and for Ray's (:mod:`condor.run.ray_llm`), so both share cache entries."""
    parts = [str(settings.model)] + [f"{name}={getattr(settings, name)}" for name in ("tokenizer", "dtype", "quantization")
                                     if getattr(settings, name, None) not in (None, "auto")]
    return "vllm:" + ":".join(parts)


def resolve_request(settings: "VLLMSettings", request: ChatRequest) -> ChatRequest:
    """``request`` with the role's sampling defaults filled in (what every vLLM engine is sent)."""
    s = settings
    return with_defaults(request, max_tokens=s.max_tokens, temperature=s.temperature, top_p=s.top_p, seed=s.seed)


def sampling_arguments(request: ChatRequest) -> dict[str, Any]:
    """Keyword arguments of ``vllm.SamplingParams`` for a request whose defaults are filled in
    (:meth:`VLLMBackend.resolve`); the schema is :func:`structured_argument`'s business."""
    out: dict[str, Any] = {"n": 1}
    for name in ("max_tokens", "temperature", "top_p"):
        value = getattr(request, name)
        if value is not None:
            out[name] = value
    seed = request.effective_seed()  # distinct per sample, like the openai backend's
    if seed is not None:
        out["seed"] = seed
    if request.stop:
        out["stop"] = list(request.stop)
    return out


def structured_argument(schema: dict[str, Any], field: str) -> tuple[str, dict[str, Any]]:
    """The ``SamplingParams`` field and the keyword arguments of its params class that constrain the
    output to ``schema``: ``structured_outputs`` (vLLM 0.12 and later) or ``guided_decoding`` (earlier);
    both take the schema as ``json``."""
    if field not in ("structured_outputs", "guided_decoding"):
        raise ValueError(f"unknown vLLM structured-output field {field!r}")
    return field, {"json": schema}


def completion_from(output: Any, model: str) -> Completion:
    """A :class:`Completion` from one of vLLM's ``RequestOutput`` (text, finish reason, token counts)."""
    choices = getattr(output, "outputs", None) or []
    if not choices:
        return Completion.failed("vLLM returned no output for this request")
    first = choices[0]
    if first.finish_reason == "abort":
        return Completion.failed("vLLM aborted this request", transient=True)
    return Completion(
        text=clean_text(first.text or ""),
        finish_reason=first.finish_reason,
        prompt_tokens=len(getattr(output, "prompt_token_ids", None) or ()),
        completion_tokens=len(getattr(first, "token_ids", None) or ()),
        model=model,
    )


@dataclass(frozen=True)
class VLLMApi:
    """The parts of vLLM the backend uses, found once (their names moved between versions)."""

    LLM: Any
    SamplingParams: Any
    StructuredParams: Any
    structured_field: str


def load_api() -> VLLMApi:
    """Import vLLM: the engine, ``SamplingParams`` and whichever structured-output params it has."""
    try:
        import vllm
        from vllm import sampling_params
    except ImportError as exc:
        raise BackendUnavailable(f"cannot import vLLM ({exc}); {INSTALL}") from None
    if hasattr(sampling_params, "StructuredOutputsParams"):
        return VLLMApi(vllm.LLM, vllm.SamplingParams, sampling_params.StructuredOutputsParams, "structured_outputs")
    return VLLMApi(vllm.LLM, vllm.SamplingParams, sampling_params.GuidedDecodingParams, "guided_decoding")


class VLLMBackend(LLMBackend):
    """vLLM's offline engine, one per backend, loaded by :meth:`warm_up`; one batch at a time."""

    concurrency = 1

    def __init__(self, settings: "VLLMSettings", *, api: Callable[[], VLLMApi] = load_api) -> None:
        self.settings = settings
        self.identity = vllm_identity(settings)
        self.capabilities = Capabilities(
            structured=settings.structured != "off", native_batching=True, max_batch=settings.max_batch,
            max_context=settings.max_model_len,
        )
        self._load_api = api
        self._api: VLLMApi | None = None
        self._engine: Any = None
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="condor-vllm")

    @classmethod
    def from_settings(cls, settings: "VLLMSettings") -> "VLLMBackend":
        return cls(settings)

    def describe(self) -> dict[str, Any]:
        engine = {k: v for k, v in engine_arguments(self.settings).items() if k != "model"}
        out: dict[str, Any] = {"identity": self.identity, "engine": engine, "max_batch": self.settings.max_batch}
        if self._api is not None:
            out["structured_field"] = self._api.structured_field
        return out

    async def check(self) -> None:
        problem = missing_requirement()
        if problem is not None:
            raise BackendUnavailable(problem)

    async def warm_up(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._worker, self._load)

    def _load(self) -> None:
        if self._engine is not None:
            return
        self._api = self._load_api()
        try:
            self._engine = self._api.LLM(**engine_arguments(self.settings))
        except Exception as exc:  # vLLM raises many kinds (ValueError, RuntimeError, OSError, CUDA errors)
            message = " ".join(str(exc).split())[:300] or type(exc).__name__
            raise BackendUnavailable(f"vLLM could not load {self.settings.model}: {message}") from None

    def resolve(self, request: ChatRequest) -> ChatRequest:
        return resolve_request(self.settings, request)

    def _params(self, request: ChatRequest) -> Any:
        assert self._api is not None
        kwargs = sampling_arguments(request)
        if request.json_schema is not None:
            field, constraint = structured_argument(fit_to_budget(request.json_schema, request.max_tokens),
                                                    self._api.structured_field)
            kwargs[field] = self._api.StructuredParams(**constraint)
        return self._api.SamplingParams(**kwargs)

    async def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        if not requests:
            return []
        resolved = [self.resolve(request) for request in requests]
        return await asyncio.get_running_loop().run_in_executor(self._worker, self._generate_blocking, resolved)

    def _generate_blocking(self, requests: list[ChatRequest]) -> list[Completion]:
        self._load()
        try:
            outputs = self._engine.chat([r.messages for r in requests], sampling_params=[self._params(r) for r in requests],
                                        use_tqdm=False)
        except Exception as exc:
            if len(requests) > 1:
                # vLLM refuses a whole call for one bad prompt: send them one by one so that only it fails.
                log.warning("vLLM refused a batch of %d (%s); sending its requests one at a time", len(requests), exc)
                return [self._generate_blocking([request])[0] for request in requests]
            # A refused input (ValueError: too long, bad schema) is the request's fault; anything else
            # is the engine's, like a server going down.
            message = " ".join(str(exc).split())[:300] or type(exc).__name__
            return [Completion.failed(f"vLLM: {message}", transient=not isinstance(exc, ValueError))]
        if len(outputs) != len(requests):
            return [Completion.failed(f"vLLM returned {len(outputs)} outputs for {len(requests)} requests", transient=True)
                    for _ in requests]
        return [completion_from(output, self.settings.model) for output in outputs]

    async def aclose(self) -> None:
        self._engine = None  # vLLM frees GPU memory when its engine is collected
        self._worker.shutdown(wait=False)
