"""Condor against a real OpenAI-compatible server it did not write: llama-cpp-python's, on SmolLM2.

That server lists the GGUF path as its only model and answers any name; it takes a schema only as
``response_format: {"type": "json_object", "schema": ...}`` and answers the OpenAI ``json_schema`` type
with an HTTP 500. Issue 8: a run there used to stop at start-up, and then to end with no rows after
retrying the same 500 over and over.
"""

from __future__ import annotations

import json
import time

import pytest
from typer.testing import CliRunner

from condor.cli.main import app
from condor.llm.base import ChatRequest
from condor.llm.cache import CachedBackend, RequestCache
from condor.llm.openai import OpenAIBackend

pytestmark = [pytest.mark.slow, pytest.mark.llama_server]

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 40}},
    "required": ["city"],
    "additionalProperties": False,
}


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


async def test_start_up_learns_the_dialect_once_and_keeps_the_name(llama_server, tmp_path):
    cache = tmp_path / "cache.sqlite"
    before = len(llama_server.statuses())
    backend = CachedBackend(OpenAIBackend(llama_server.base_url, "smollm2", max_tokens=40, temperature=0.0), RequestCache(cache))
    async with backend:
        assert await backend.check() == [llama_server.model_path]
        described = backend.describe()
        [answer] = await backend.generate([
            ChatRequest(messages=[{"role": "user", "content": "Name a city in France."}], json_schema=SCHEMA)
        ])
    assert described["structured_dialect"] == "llama-cpp-python" and described["dialect_source"] == "probe"
    assert "does not list model 'smollm2'" in described["warnings"][0] and llama_server.model_path in described["warnings"][0]
    assert set(json.loads(answer.text)) == {"city"}
    # The probe: the OpenAI spelling (refused with the server's 500), then llama-cpp-python's; then the request.
    assert llama_server.statuses()[before:] == [500, 200, 200]

    again = CachedBackend(OpenAIBackend(llama_server.base_url, "smollm2"), RequestCache(cache))
    async with again:
        await again.check()
        assert again.describe()["dialect_source"] == "cache"
    assert len(llama_server.statuses()) == before + 3  # no second probe


def test_condor_run_gives_rows_and_few_server_errors(llama_server, tmp_path):
    out = tmp_path / "out"
    errors_before = llama_server.server_errors()
    started = time.monotonic()
    result = CliRunner().invoke(app, [
        "run", "-o", str(out), "--base-url", llama_server.base_url, "--model", "smollm2", "--leaves", "1",
        "--rounds", "1", "--tasks", "domain_qa", "--max-tokens", "200", "--quiet",
    ])
    elapsed = time.monotonic() - started
    assert result.exit_code == 0, result.output
    sft, rejected = read_jsonl(out / "sft.jsonl"), read_jsonl(out / "rejected.jsonl")
    assert sft or rejected, "the run produced neither rows nor rejections"
    assert all(row.get("reason") for row in rejected), "every rejection says why"
    manifest = json.loads((out / "manifest.json").read_text())
    backend = manifest["stages"]["questions"]["backend"]
    assert backend["structured_dialect"] == "llama-cpp-python"
    errors = llama_server.server_errors() - errors_before
    assert errors <= 3, f"{errors} HTTP 5xx replies in the server's log"
    print(f"condor run: {len(sft)} rows, {len(rejected)} rejections, {errors} server errors, {elapsed:.0f}s")
