"""The transformers backend: a local Hugging Face model (a trained directory, an adapter, a GGUF file) in-process.

It is how a freshly trained model writes the next iteration's data without a server: ``condor train``
saves a directory, and a config with ``backend: transformers, model: DIR`` generates from it, on CPU or
GPU. Loading is :mod:`condor.llm.hf_models`. Generation is batched: the executor hands over requests of
many records at once (``native_batching``), and requests that share sampling settings run as one padded
batch of up to ``batch_size`` sequences. Calls block, so they run one at a time on a worker thread and
the event loop keeps serving progress and writes.

Failures are values: a prompt longer than the context, or an error inside ``generate``, fails the
requests of that batch only. Seeds: a batch is seeded with the seed of its first request, so a rerun of
the same batch samples the same text; two requests in one batch do not get independent seeds.
JSON schemas are enforced with llguidance (:mod:`condor.llm.constrained`) when it is installed (the
``train`` extra has it), so a small model's question sets and critiques parse, and schemas are asked for
from the first attempt, as with the embedded backend; without it ``structured`` is off and stages use
their text formats and the recovery ladder. Leaves out: streaming, speculative decoding and multi-GPU
sharding.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Sequence

from condor.llm import constrained
from condor.llm.base import BackendUnavailable, Capabilities, ChatRequest, Completion, LLMBackend, with_defaults
from condor.llm.hf_models import fingerprint, load_model, load_tokenizer, pick_device, resolve_source, torch_dtype
from condor.llm.schema_budget import fit_to_budget

if TYPE_CHECKING:
    from condor.llm.settings import TransformersSettings


class TransformersBackend(LLMBackend):
    """A causal LM run by ``transformers.generate``, batched, on one device."""

    def __init__(
        self,
        model: str | None = None,
        *,
        batch_size: int = 8,
        device: str = "auto",
        dtype: str = "auto",
        max_tokens: int = 512,
        temperature: float = 0.7,
        top_p: float | None = None,
        seed: int | None = None,
    ) -> None:
        self.source = resolve_source(model)
        self.identity = f"transformers:{self.source.path.name}:{fingerprint(self.source)}"
        self.batch_size = batch_size
        # The window of records in flight is sized from this; the batcher gathers their requests.
        self.concurrency = batch_size
        self._structured = constrained.available()
        self.capabilities = self._capabilities(None)
        self._device_name, self._dtype_name = device, dtype
        self._defaults = {"max_tokens": max_tokens, "temperature": temperature, "top_p": top_p, "seed": seed}
        self._model: Any = None
        self._tokenizer: Any = None
        self._context: int | None = None
        self._guidance: constrained.GuidanceTokenizer | None = None
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="condor-transformers")

    def _capabilities(self, context: int | None) -> Capabilities:
        # Constrained decoding is local and cheap, and a small model needs it: ask for schemas first.
        return Capabilities(structured=self._structured, schema_first=self._structured, native_batching=True,
                            max_batch=self.batch_size, max_context=context)

    @classmethod
    def from_settings(cls, settings: "TransformersSettings") -> "TransformersBackend":
        return cls(settings.model, batch_size=settings.batch_size, device=settings.device, dtype=settings.dtype,
                   max_tokens=settings.max_tokens, temperature=settings.temperature, top_p=settings.top_p,
                   seed=settings.seed)

    def _load(self) -> None:
        if self._model is not None:
            return
        device = pick_device(self._device_name)
        self._tokenizer = load_tokenizer(self.source)
        if not getattr(self._tokenizer, "chat_template", None):
            raise BackendUnavailable(f"{self.source.path} has no chat template; train with --chat-template FILE "
                                     "or give a model whose tokenizer has one")
        self._model = load_model(self.source, dtype=torch_dtype(self._dtype_name, device), device=device)
        self._device = device
        self._context = getattr(self._model.config, "max_position_embeddings", None)
        self.capabilities = self._capabilities(self._context)
        if self._structured:
            self._guidance = constrained.GuidanceTokenizer(self._tokenizer, self._model.config.vocab_size)

    def resolve(self, request: ChatRequest) -> ChatRequest:
        return with_defaults(request, **self._defaults)

    def describe(self) -> dict[str, Any]:
        return {"identity": self.identity, "model": str(self.source.path), "kind": self.source.kind,
                "batch_size": self.batch_size}

    async def warm_up(self) -> None:
        """Load the weights now (on the worker thread), so that a bad path fails before a run starts."""
        await asyncio.get_running_loop().run_in_executor(self._worker, self._load)

    async def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        if not requests:
            return []
        return await asyncio.get_running_loop().run_in_executor(self._worker, self._generate_all, list(requests))

    def _generate_all(self, requests: list[ChatRequest]) -> list[Completion]:
        self._load()
        resolved = [self.resolve(r) for r in requests]
        results: list[Completion | None] = [None] * len(resolved)
        groups: dict[tuple, list[int]] = {}
        for index, request in enumerate(resolved):
            key = (request.max_tokens, request.temperature, request.top_p, tuple(request.stop or ()))
            groups.setdefault(key, []).append(index)
        for indices in groups.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                for index, completion in zip(chunk, self._generate_batch([resolved[i] for i in chunk])):
                    results[index] = completion
        return [r if r is not None else Completion.failed("not generated") for r in results]

    def _generate_batch(self, batch: list[ChatRequest]) -> list[Completion]:
        """One padded batch; a request whose own prompt does not fit the context fails alone."""
        tokenizer = self._tokenizer
        max_new = batch[0].max_tokens or self._defaults["max_tokens"]
        results: list[Completion | None] = [None] * len(batch)
        prompts: dict[int, str] = {}
        for index, request in enumerate(batch):
            try:
                prompt = tokenizer.apply_chat_template(request.messages, add_generation_prompt=True, tokenize=False)
            except Exception as exc:  # a template that rejects a message list (roles out of order, say)
                results[index] = Completion.failed(f"chat template: {str(exc)[:200]}")
                continue
            length = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
            if self._context is not None and length + max_new > self._context:
                results[index] = Completion.failed(
                    f"prompt of {length} tokens plus {max_new} new ones exceeds the context of {self._context}")
                continue
            prompts[index] = prompt
        if prompts:
            rows = list(prompts)
            for index, completion in zip(rows, self._generate_rows([batch[i] for i in rows], [prompts[i] for i in rows],
                                                                  max_new)):
                results[index] = completion
        return [r if r is not None else Completion.failed("not generated") for r in results]

    def _generate_rows(self, batch: list[ChatRequest], prompts: list[str], max_new: int) -> list[Completion]:
        import torch
        from transformers import LogitsProcessorList

        tokenizer, model = self._tokenizer, self._model
        first = batch[0]
        encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        length = encoded["input_ids"].shape[1]
        sampling: dict[str, Any] = {"do_sample": False}
        temperature = first.temperature or 0.0
        if temperature > 0:
            sampling = {"do_sample": True, "temperature": temperature}
            if first.top_p is not None:
                sampling["top_p"] = first.top_p
        seed = first.effective_seed()
        if seed is not None:
            torch.manual_seed(seed)
        stops = {tokenizer.eos_token_id, *(_as_list(getattr(model.generation_config, "eos_token_id", None)))}
        constraint = None
        try:
            if any(r.json_schema is not None for r in batch):
                if self._guidance is None:
                    return [Completion.failed("this backend cannot constrain output to a schema (llguidance is "
                                              "not installed)") for _ in batch]
                schemas = [fit_to_budget(r.json_schema, max_new) if r.json_schema is not None else None for r in batch]
                constraint = constrained.SchemaConstraint(self._guidance, schemas, length, stops)
                sampling["logits_processor"] = LogitsProcessorList([constraint])
            with torch.inference_mode():
                output = model.generate(**encoded.to(self._device), max_new_tokens=max_new,
                                        pad_token_id=tokenizer.pad_token_id, **sampling)
        except (RuntimeError, ValueError) as exc:  # out of memory, a bad generation setting, an unusable schema
            return [Completion.failed(f"transformers: {str(exc)[:300]}") for _ in batch]
        completions = []
        for row, request in enumerate(batch):
            new = output[row, length:].tolist()
            ended = next((i for i, token in enumerate(new) if token in stops), None)
            tokens = new if ended is None else new[:ended]
            text = tokenizer.decode(tokens, skip_special_tokens=True)
            finish = "length" if ended is None else "stop"
            for stop in request.stop or ():
                if stop and stop in text:
                    text, finish = text[: text.index(stop)], "stop"
            prompt_tokens = int(encoded["attention_mask"][row].sum())
            completion = Completion(text=text, finish_reason=finish, prompt_tokens=prompt_tokens,
                                    completion_tokens=len(tokens), model=self.source.path.name)
            if constraint is not None and row in constraint.errors:
                # The schema could not be followed; the cut-off text goes on to the parser and the ladder.
                completion.finish_reason = "length"
                completion.extra["constraint_error"] = constraint.errors[row]
            completions.append(completion)
        return completions

    async def aclose(self) -> None:
        self._worker.shutdown(wait=True)
        self._model = None
        self._tokenizer = None


def _as_list(value: Any) -> list[int]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]
