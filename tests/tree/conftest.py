"""Fixtures for the knowledge-tree tests: small trees written by hand, and a backend on the fake server."""

from __future__ import annotations

from pathlib import Path

import pytest

from condor.tree.io import loads_tree
from condor.tree.model import KnowledgeTree

SMALL_TREE = """\
format: condor-tree v1
name: small
language: en
version: 3
description: A hand-written tree for tests.
tree:
  Health:
    Sleep:
      - Insomnia
      - Napping
    Nutrition:
      - Vitamins
      - Meal planning
  Programming:
    Python:
      - Decorators
      - Packaging
    Rust:
      - Ownership
  Travel:
    - Visas
    - Packing
"""


@pytest.fixture
def small_tree() -> KnowledgeTree:
    return loads_tree(SMALL_TREE, source="small.yaml")


@pytest.fixture
def small_tree_file(tmp_path: Path) -> Path:
    path = tmp_path / "small.yaml"
    path.write_text(SMALL_TREE, encoding="utf-8")
    return path


@pytest.fixture
def openai_backend(fake_server):
    """The real OpenAI-compatible client pointed at the fake server, with instant retries."""
    from condor.llm.openai import OpenAIBackend

    return OpenAIBackend(fake_server.base_url, "fake-model", backoff_base=0.0, max_retries=2, concurrency=8)
