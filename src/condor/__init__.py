"""Condor: turn any chat LLM into a factory of supervised fine-tuning and preference data.

The package root stays light on purpose: importing ``condor`` loads no backend, no model and no
heavy dependency. Subpackages:

- ``condor.llm``: one async interface over chat models (OpenAI-compatible servers, embedded llama.cpp),
  plus the request cache and rate limits.
- ``condor.run``: the run directory, append-only record shards, resume and the local asyncio executor.
- ``condor.tree``: the World Knowledge Tree.
- ``condor.stages``: pure prompt-building and parsing for each pipeline step.
- ``condor.cli``: the ``condor`` command, a thin layer over the above.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
