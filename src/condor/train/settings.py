"""Settings of ``condor train sft|dpo``: the paper's recipe as defaults, and the usual knobs.

The Condor paper fine-tunes with a learning rate of 2e-5 for 3 epochs; those are the defaults, for full
fine-tuning and LoRA alike (LoRA usually wants a larger rate, such as 1e-4: set it). Precision ``auto``
is bfloat16 on a GPU that has it and float32 elsewhere (CPUs train slowly and badly in half precision).
Pure pydantic, no heavy import: the CLI reads its option help from the field descriptions.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from condor.llm.settings import OpenAISettings, TransformersSettings

Method = Literal["sft", "dpo"]


class TrainSettings(BaseModel):
    """How a model is trained; everything but the data and the output directory."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    base_model: str | None = Field(
        None, description="Model to start from: a model directory, LoRA adapter directory or GGUF file "
        "(default: the embedded SmolLM2-135M GGUF).")
    lora: bool = Field(False, description="Train a LoRA adapter (PEFT) instead of every weight.")
    lora_r: int = Field(16, ge=1, le=1024, description="LoRA rank.")
    lora_alpha: int = Field(32, ge=1, description="LoRA scaling (alpha).")
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0, description="LoRA dropout.")
    learning_rate: float = Field(2e-5, gt=0, le=1.0, description="Peak learning rate (the paper: 2e-5).")
    epochs: float = Field(3.0, gt=0, description="Passes over the data (the paper: 3).")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps (overrides epochs).")
    batch_size: int = Field(4, ge=1, le=4096, description="Rows per device per step.")
    gradient_accumulation: int = Field(1, ge=1, le=4096, description="Steps whose gradients are summed per update.")
    max_length: int = Field(1024, ge=16, le=131072, description="Longest tokenized row; longer rows are truncated.")
    warmup_ratio: float = Field(0.03, ge=0.0, lt=1.0, description="Share of steps spent warming up the learning rate.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="Training precision (auto: bf16 on a GPU that supports it, else fp32).")
    chat_template: str | None = Field(
        None, description="Jinja chat template file to use instead of the tokenizer's own.")
    beta: float = Field(0.1, gt=0, description="DPO: strength of the pull towards the reference model.")
    seed: int = Field(0, description="Seed of data order, dropout and initialisation.")
    save_steps: int = Field(50, ge=1, description="Checkpoint every this many steps (a killed run resumes from the last).")
    logging_steps: int = Field(1, ge=1, description="Log the loss every this many steps.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where to train (auto: a GPU when present).")


class IterateSettings(BaseModel):
    """``condor iterate``: how many iterations, how each model is trained, judged and promoted.

    What data each iteration makes is the run configuration's business (``--config``: pipeline sizes,
    ``roles.judge``); this is everything else.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    iterations: int = Field(1, ge=1, le=1000, description="Iterations to run in total (a rerun with more continues).")
    method: Method = Field("sft", description="How each new model is trained: sft on the refined answers, or dpo "
                           "on the policy's own pairs (original rejected, judged-better refinement chosen).")
    base_model: str | None = Field(None, description="The starting model M_0 (default: the embedded SmolLM2-135M GGUF).")
    train: TrainSettings = Field(default_factory=TrainSettings, description="Training settings of every iteration.")
    generator: Annotated[
        Union[TransformersSettings, OpenAISettings], Field(discriminator="backend")
    ] = Field(default_factory=lambda: TransformersSettings(max_tokens=256),
              description="How the policy writes data and held-out answers: in-process (transformers), or a server "
              "that serves it (openai; '{policy}' in model is replaced by the policy's directory).")
    eval_share: float = Field(0.3, gt=0, lt=1, description="Share of iteration 1's rows whose leaves are held out "
                              "for evaluation (and never trained on).")
    eval_questions: int = Field(50, ge=1, description="At most this many held-out questions are judged.")
    gate: Literal["ci", "rate", "always"] = Field(
        "ci", description="Promotion rule on the win rate (ties count half): 'ci' its 95% interval lies entirely "
        "above the threshold, 'rate' the rate itself is above it, 'always' every new model is promoted.")
    threshold: float = Field(0.5, ge=0, lt=1, description="Win rate the gate compares against.")
    seed: int = Field(0, description="Seed of the held-out split.")
