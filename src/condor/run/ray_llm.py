"""vLLM engines inside Ray, through Ray Data's LLM processors, for roles whose backend kind is ``vllm``.

With ``--executor ray``, a role served by the ``vllm`` kind is not built inside the block workers (one
engine per CPU worker would not fit a GPU); Ray Data's LLM processor (``ray.data.llm.build_processor``
with a ``vLLMEngineProcessorConfig``) places the engines on the cluster's GPUs, one per
``tensor_parallel_size`` GPUs, and streams requests through them.

:class:`ProcessorBackend` makes that processor a backend with native batching: each ``generate`` call
is one pass of a Ray dataset of requests through the engines. The step itself runs on the driver with
the local executor (:class:`~condor.run.local.LocalExecutor`) and a very wide window, so the first pass
carries the first request of every record of the step, and later passes only what the recovery ladder
sends again (repair turns, schema attempts, resamples): a handful of passes per step, each loading the
engines once. Prompts, parsing, the ladder and record formats are the same as everywhere else.

Ray's output rows carry no finish reason, so it is inferred from what they do carry: a reply that used
its whole token budget (``num_generated_tokens >= max_tokens``) is marked ``"length"``, cut off, so
the quality gate and version selection treat it as truncated (one that ended exactly at the budget
cannot be told apart and is treated the same); any other reply has an unknown finish reason (None),
never an invented ``"stop"``.

On a cluster without GPUs this stops before anything runs, with one line saying so. What it leaves
out: keeping engines loaded between passes and steps (Ray Data builds them per dataset), LoRA and
multimodal inputs. It cannot be exercised without a GPU; its configuration and the mapping of requests
and replies are tested here.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Sequence

from condor.errors import ConfigError
from condor.llm.base import BackendUnavailable, Capabilities, ChatRequest, Completion, LLMBackend, clean_text
from condor.llm.schema_budget import fit_to_budget
from condor.llm.vllm import engine_arguments, resolve_request, vllm_identity

#: Rows of one pass; the window of the step on the driver is as wide, so a pass holds the whole step.
PASS_SIZE = 100_000
#: Rows handed to an engine at a time (Ray Data's batch of the LLM stage), unless ``max_batch`` says.
ENGINE_BATCH = 64
def require_gpus(resources: dict[str, float], per_engine: int = 1) -> int:
    """How many engines the cluster's GPUs hold; a one-line :class:`ConfigError` when none fits."""
    gpus = int(resources.get("GPU", 0))
    if gpus == 0:
        raise ConfigError(
            "the vllm backend runs on GPUs and this Ray cluster has none; join a cluster with GPU nodes "
            "(--ray-address), or serve the model with `vllm serve` and use --base-url"
        )
    if gpus < per_engine:
        raise ConfigError(f"tensor_parallel_size {per_engine} needs {per_engine} GPUs per engine; "
                          f"this Ray cluster has {gpus}")
    return gpus // per_engine


def engine_kwargs(settings: Any) -> dict[str, Any]:
    """vLLM engine arguments from the role's settings (only those that are set), as the in-process
    engine gets them; the model goes to the processor on its own."""
    return {name: value for name, value in engine_arguments(settings).items() if name != "model"}


def processor_config(settings: Any, resources: dict[str, float]) -> Any:
    """The validated ``vLLMEngineProcessorConfig`` for ``settings`` on a cluster with ``resources``."""
    args = engine_kwargs(settings)
    per_engine = int(args.get("tensor_parallel_size", 1))
    engines = require_gpus(resources, per_engine)
    from ray.data.llm import vLLMEngineProcessorConfig

    try:
        return vLLMEngineProcessorConfig(
            model_source=str(settings.model), engine_kwargs=args, concurrency=engines,
            batch_size=int(getattr(settings, "max_batch", None) or ENGINE_BATCH),
            # A request vLLM refuses (a prompt longer than the context) becomes that request's
            # failure, not the end of the pass.
            should_continue_on_error=True,
        )
    except ValueError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(f"vllm settings do not make a Ray Data LLM processor: {first}") from None


def request_row(index: int, request: ChatRequest) -> dict[str, Any]:
    """One request as a row of the processor's dataset; ``index`` puts replies back in order."""
    sampling: dict[str, Any] = {
        "max_tokens": request.max_tokens,
        "temperature": request.temperature if request.temperature is not None else 1.0,
        "top_p": request.top_p if request.top_p is not None else 1.0,
        "seed": request.effective_seed(),
        "stop": request.stop or [],
    }
    if request.json_schema is not None:
        # As text: rows with schemas of different shapes would not fit one Arrow column type.
        schema = fit_to_budget(request.json_schema, request.max_tokens)
        sampling["structured_outputs"] = {"json": json.dumps(schema, sort_keys=True)}
    return {"condor_index": index, "messages": request.messages, "sampling_params": sampling}


def completions_from(rows: Sequence[dict[str, Any]], count: int) -> list[Completion]:
    """The processor's output rows as ``count`` completions in request order; errors as values."""
    found: list[Completion | None] = [None] * count
    for row in rows:
        index = int(row.get("condor_index", -1))
        if not 0 <= index < count:
            continue
        error = row.get("__inference_error__") or ""
        if error:
            found[index] = Completion.failed(f"vLLM: {str(error).strip().splitlines()[0]}")
            continue
        generated, limit = int(row.get("num_generated_tokens") or 0), row.get("max_tokens")
        found[index] = Completion(
            text=clean_text(str(row.get("generated_text") or "")),
            prompt_tokens=int(row.get("num_input_tokens") or 0),
            completion_tokens=generated,
            # The rows have no finish reason: a reply that used its whole budget was cut off (see above).
            finish_reason="length" if limit and generated >= int(limit) else None,
        )
    return [c if c is not None else Completion.failed("no reply from the vLLM processor") for c in found]


def postprocess(row: dict[str, Any]) -> dict[str, Any]:
    """What the processor hands back per request: the reply, its token counts, its error, and the
    request's token budget (to tell a cut-off reply)."""
    keep = ("condor_index", "generated_text", "num_input_tokens", "num_generated_tokens", "__inference_error__")
    out = {name: row.get(name) for name in keep}
    sampling = row.get("sampling_params")
    out["max_tokens"] = sampling.get("max_tokens") if isinstance(sampling, dict) else None
    return out


class ProcessorBackend(LLMBackend):
    """A ``vllm`` role served by Ray Data's LLM processor; one ``generate`` call is one pass."""

    def __init__(self, settings: Any, resources: dict[str, float]) -> None:
        self.settings = settings
        self.config = processor_config(settings, resources)
        self.identity = vllm_identity(settings)
        self.concurrency = PASS_SIZE
        self.capabilities = Capabilities(structured=True, native_batching=True, max_batch=PASS_SIZE,
                                         max_context=getattr(settings, "max_model_len", None))

    def resolve(self, request: ChatRequest) -> ChatRequest:
        return resolve_request(self.settings, request)

    async def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        rows = [request_row(i, self.resolve(r)) for i, r in enumerate(requests)]
        return await asyncio.to_thread(self._one_pass, rows)

    def _one_pass(self, rows: list[dict[str, Any]]) -> list[Completion]:
        import ray
        from ray.data.llm import build_processor

        processor = build_processor(self.config, postprocess=postprocess)
        try:
            out = processor(ray.data.from_items(rows)).take_all()
        except Exception as exc:  # the pass as a whole failed: the engines could not start or died
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BackendUnavailable(f"the vLLM engines on Ray failed ({first}); finished work is saved: "
                                     "rerun the same command to resume") from None
        return completions_from(out, len(rows))

    def describe(self) -> dict[str, Any]:
        return {"identity": self.identity, "engine": engine_kwargs(self.settings), "engines": self.config.concurrency}
