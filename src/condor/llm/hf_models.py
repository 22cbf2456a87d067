"""Loading a causal language model and its tokenizer, offline, for the transformers backend and for training.

A model is named by a local path, of one of three kinds:

- a Hugging Face model directory (``config.json`` and weights), as ``condor train`` saves one;
- a LoRA adapter directory (``adapter_config.json``); its base is the path recorded in ``condor-model.json``
  by ``condor train``, else PEFT's ``base_model_name_or_path``, and is loaded the same way (an adapter
  trained on an adapter works: bases are followed down to a full model);
- a GGUF file, read by transformers with the ``gguf`` package. Its weights come back dequantized, but the
  model is marked quantized, which the Trainer refuses and ``save_pretrained`` cannot write; so the
  weights are copied into a plain model built from the same config. The tokenizer and its chat template
  come from the file too. Parsing a GGUF file takes a minute on two cores, so it is done once: the
  result is saved as a Hugging Face directory under ``$CONDOR_CACHE_DIR`` (default ``~/.cache/condor``),
  named by the file's fingerprint, and loaded from there in about a second afterwards.

With no path, the SmolLM2-135M GGUF that the embedded backend uses is loaded, so everything runs offline.
Leaves out: hub model names (nothing is downloaded here), quantized loading (bitsandbytes, GPTQ) and
sharding a model over several GPUs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from condor.llm.base import BackendUnavailable

#: What ``condor train`` writes beside a model or adapter: its base, method and settings.
MODEL_CARD = "condor-model.json"
INSTALL_HINT = "install the train extra: pip install 'condor-data[train]'"
#: Adapters on adapters are followed this deep before the chain is taken for a loop.
MAX_ADAPTER_DEPTH = 16


@dataclass(frozen=True)
class ModelSource:
    """A local model: its path and kind (``hf`` directory, LoRA ``adapter`` directory or ``gguf`` file)."""

    path: Path
    kind: Literal["hf", "adapter", "gguf"]

    def describe(self) -> str:
        return f"{self.kind}:{self.path}"


def resolve_source(model: str | Path | None) -> ModelSource:
    """What ``model`` names; a path that is missing or of no known kind is a one-line error."""
    if model is None or str(model) == "":
        from condor.llm.embedded import default_model_path

        return ModelSource(default_model_path(), "gguf")
    path = Path(model).expanduser()
    if not path.exists():
        raise BackendUnavailable(
            f"model not found: {path}; give a local model directory, LoRA adapter directory or GGUF file "
            "(models are never downloaded)"
        )
    if path.is_file():
        if path.suffix.lower() == ".gguf":
            return ModelSource(path, "gguf")
        raise BackendUnavailable(f"{path} is a file but not a GGUF model; give a model directory or a .gguf file")
    if (path / "adapter_config.json").is_file():
        return ModelSource(path, "adapter")
    if (path / "config.json").is_file():
        return ModelSource(path, "hf")
    ggufs = sorted(path.glob("*.gguf"))
    if len(ggufs) == 1:
        return ModelSource(ggufs[0], "gguf")
    raise BackendUnavailable(
        f"{path} holds no model: expected config.json (a Hugging Face model), adapter_config.json (a LoRA "
        "adapter) or one .gguf file"
    )


def read_model_card(directory: Path) -> dict[str, Any] | None:
    """``condor-model.json`` of a trained model or adapter, or None."""
    try:
        data = json.loads((directory / MODEL_CARD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def adapter_base(directory: Path) -> ModelSource:
    """The model an adapter was trained on."""
    card = read_model_card(directory) or {}
    base = card.get("base_path")
    if not base:
        try:
            config = json.loads((directory / "adapter_config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BackendUnavailable(f"{directory}/adapter_config.json cannot be read: {exc}") from None
        base = config.get("base_model_name_or_path")
    if not base:
        raise BackendUnavailable(f"{directory} is an adapter that names no base model")
    candidate = Path(base)
    if not candidate.is_absolute():
        candidate = (directory / candidate).resolve() if (directory / candidate).exists() else candidate
    if not candidate.exists():
        raise BackendUnavailable(f"the base model of adapter {directory} is not on this machine: {base}")
    return resolve_source(candidate)


def _fingerprint_file(path: Path) -> str:
    with path.open("rb") as handle:
        head = handle.read(1 << 20)
    return f"{path.name}:{path.stat().st_size}:{hashlib.sha256(head).hexdigest()[:16]}"


def fingerprint(source: ModelSource, depth: int = 0) -> str:
    """A short identity of the weights (names, sizes and the first MiB of each file), for cache keys.

    A directory retrained in place gets a new fingerprint, so a request cache never serves answers of
    the old weights.
    """
    if source.kind == "gguf":
        return _fingerprint_file(source.path)
    names = ("config.json", "adapter_config.json", "generation_config.json")
    parts = [_fingerprint_file(p) for p in sorted(source.path.iterdir())
             if p.is_file() and (p.suffix in (".safetensors", ".bin") or p.name in names)]
    if source.kind == "adapter" and depth < MAX_ADAPTER_DEPTH:
        parts.append("base=" + fingerprint(adapter_base(source.path), depth + 1))
    return hashlib.sha256("|".join(parts).encode("utf-8")).hexdigest()[:16]


def _imports() -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError:
        raise BackendUnavailable(f"the transformers backend and training need torch and transformers; {INSTALL_HINT}") from None
    return torch, transformers


def cache_root() -> Path:
    """Where converted GGUF models are kept: ``$CONDOR_CACHE_DIR``, else ``~/.cache/condor``."""
    configured = os.environ.get("CONDOR_CACHE_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "condor"


def as_directory(source: ModelSource) -> ModelSource:
    """``source`` as a Hugging Face or adapter directory: a GGUF file is converted once and cached."""
    if source.kind != "gguf":
        return source
    digest = hashlib.sha256(_fingerprint_file(source.path).encode("utf-8")).hexdigest()[:16]
    target = cache_root() / "from-gguf" / f"{source.path.stem}-{digest}"
    if (target / "config.json").is_file():
        return ModelSource(target, "hf")
    tokenizer = _gguf_tokenizer(source)
    model = _load_gguf(source)
    partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
    try:
        model.save_pretrained(str(partial))
        tokenizer.save_pretrained(str(partial))
        (partial / MODEL_CARD).write_text(json.dumps({"converted_from": str(source.path)}), encoding="utf-8")
        try:
            partial.rename(target)  # whole or not at all: a killed conversion leaves only a .partial
        except OSError:
            if not (target / "config.json").is_file():  # not another process that got there first
                raise
    except OSError as exc:
        raise BackendUnavailable(f"cannot save the converted {source.path.name} under {target.parent}: "
                                 f"{exc}; set CONDOR_CACHE_DIR to a writable directory") from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return ModelSource(target, "hf")


def torch_dtype(name: str, device: str) -> Any:
    """The torch dtype for a ``dtype`` setting: auto is bfloat16 on a GPU that has it, else float32."""
    torch, _ = _imports()
    if name == "auto":
        if device == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return getattr(torch, name)


def pick_device(name: str) -> str:
    torch, _ = _imports()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailable("device cuda was asked for, but torch sees no GPU; use device auto or cpu")
    return name


def _gguf_tokenizer(source: ModelSource) -> Any:
    _, transformers = _imports()
    try:
        return transformers.AutoTokenizer.from_pretrained(str(source.path.parent), gguf_file=source.path.name,
                                                          local_files_only=True)
    except (OSError, ValueError, ImportError) as exc:
        raise BackendUnavailable(f"cannot read the tokenizer of {source.path}: {_short(exc)}") from None


def load_tokenizer(source: ModelSource) -> Any:
    """The tokenizer (with its chat template), padded on the left for batched generation."""
    _, transformers = _imports()
    source = as_directory(source)
    try:
        if source.kind == "adapter" and not (source.path / "tokenizer_config.json").exists():
            return load_tokenizer(adapter_base(source.path))
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(source.path), local_files_only=True)
    except (OSError, ValueError, ImportError) as exc:
        raise BackendUnavailable(f"cannot load the tokenizer of {source.path}: {_short(exc)}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _load_gguf(source: ModelSource) -> Any:
    torch, transformers = _imports()
    try:
        import gguf  # noqa: F401  (transformers needs it to read the file; a clearer message than its own)
    except ImportError:
        raise BackendUnavailable(f"reading a GGUF model needs the gguf package; {INSTALL_HINT}") from None
    directory, name = str(source.path.parent), source.path.name
    try:
        config = transformers.AutoConfig.from_pretrained(directory, gguf_file=name, local_files_only=True)
        if getattr(config, "quantization_config", None) is not None:
            del config.quantization_config
        loaded = transformers.AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, local_files_only=True,
                                                                   dtype=torch.float32)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise BackendUnavailable(f"cannot read the GGUF model {source.path}: {_short(exc)}") from None
    state = loaded.state_dict()
    del loaded
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(state, strict=False)
    # Tied output embeddings are not stored separately; anything else missing means a broken file.
    missing = [k for k in missing if k != "lm_head.weight" or not getattr(config, "tie_word_embeddings", False)]
    if missing or unexpected:
        raise BackendUnavailable(f"{source.path}: weights do not fit the model (missing {missing[:3]}, "
                                 f"unexpected {unexpected[:3]})")
    model.tie_weights()
    return model


def load_model(source: ModelSource, *, dtype: Any = None, device: str = "cpu", merge: bool = False,
               depth: int = 0) -> Any:
    """The model of ``source`` on ``device``, in eval mode.

    An adapter is applied to its base; with ``merge`` it is folded into the base weights, which is what
    training a new model on top of it needs.
    """
    torch, transformers = _imports()
    dtype = dtype or torch.float32
    source = as_directory(source)
    try:
        if source.kind == "hf":
            model = transformers.AutoModelForCausalLM.from_pretrained(str(source.path), dtype=dtype,
                                                                      local_files_only=True)
        else:
            if depth >= MAX_ADAPTER_DEPTH:
                raise BackendUnavailable(f"{source.path}: adapters on adapters more than {MAX_ADAPTER_DEPTH} deep")
            try:
                from peft import PeftModel
            except ImportError:
                raise BackendUnavailable(f"loading a LoRA adapter needs peft; {INSTALL_HINT}") from None
            base = load_model(adapter_base(source.path), dtype=dtype, device="cpu", merge=True, depth=depth + 1)
            model = PeftModel.from_pretrained(base, str(source.path))
            if merge:
                model = model.merge_and_unload()
    except BackendUnavailable:
        raise
    except (OSError, ValueError, RuntimeError, KeyError, ImportError) as exc:
        raise BackendUnavailable(f"cannot load the model {source.path}: {_short(exc)}") from None
    model.to(device)
    model.eval()
    return model
