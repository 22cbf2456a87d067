"""Training on Condor data, and the self-iteration loop (needs the ``train`` extra).

- :mod:`.trainer`: ``condor train sft|dpo``, TRL's SFTTrainer and DPOTrainer, full or LoRA, resumable.
- :mod:`.data`: training rows from a run directory, an export or a JSONL file, checked row by row.
- :mod:`.iterate`: ``condor iterate``, generate with model M_i, train M_i+1, judge it against M_i on held-out
  questions, promote it or not.

Nothing here is imported by ``import condor``; torch, TRL and PEFT load only when a command needs them.
"""
