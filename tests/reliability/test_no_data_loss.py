"""Ordinary paths that used to lose data, through the real CLI: piped input, files already in OUT, an
input that is its own output, symbolic links inside the run directory, and the modes files are made with.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from cli_process import condor
from condor_responder import respond
from fake_server import FakeChatServer
from typer.testing import CliRunner

from condor.cli.main import app


def prompts_text(n: int, prefix: str = "prompt") -> str:
    return "".join(json.dumps({"id": i, "prompt": f"{prefix} {i}"}) + "\n" for i in range(n))


def server_args(server: FakeChatServer, *more: str) -> list[str]:
    return ["--base-url", server.base_url, "--model", "fake-model", "--quiet", *more]


def invoke(*args: str):
    return CliRunner().invoke(app, [str(arg) for arg in args])


def test_piped_prompts_are_read_once_and_resumed_from_the_copy(tmp_path, fake_server):
    out = tmp_path / "out"
    text = prompts_text(5).encode()
    first = condor("generate", "/dev/stdin", "-o", out, *server_args(fake_server), stdin=text)
    assert first.code == 0 and "5 outputs" in first.stdout, first.output
    rows = [json.loads(line) for line in (out / "output.jsonl").read_text().splitlines()]
    assert [row["output"] for row in rows] == [f"Echo: prompt {i}" for i in range(5)]
    assert (out / "inputs" / "prompts.jsonl").read_bytes() == text
    # The same stream again: nothing is sent twice. Another stream: refused, the first copy kept.
    sent = fake_server.request_count
    again = condor("generate", "/dev/stdin", "-o", out, *server_args(fake_server), stdin=text)
    assert again.code == 0 and fake_server.request_count == sent, again.output
    other = condor("generate", "/dev/stdin", "-o", out, *server_args(fake_server), stdin=prompts_text(5, "other").encode())
    assert other.code == 2 and "different prompts" in other.stderr, other.output
    assert (out / "inputs" / "prompts.jsonl").read_bytes() == text


def test_an_empty_prompts_input_is_an_error_not_zero_outputs(tmp_path, fake_server):
    result = condor("generate", "/dev/stdin", "-o", tmp_path / "out", *server_args(fake_server), stdin=b"\n\n")
    assert result.code == 2 and "no prompts" in result.stderr, result.output


@pytest.mark.parametrize("name", ["output.jsonl", "sft.jsonl"])
def test_files_in_out_without_a_manifest_are_not_written_over(tmp_path, fake_server, name):
    out = tmp_path / "out"
    out.mkdir()
    precious = out / name
    precious.write_text('{"mine": true}\n')
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(prompts_text(2))
    command = (["generate", prompts, "-o", out] if name == "output.jsonl" else
               ["run", "-o", out, "--leaves", "1", "--tasks", "view", "--rounds", "0"])
    fake_server.responder = respond
    result = invoke(*command, *server_args(fake_server))
    assert result.exit_code == 2 and f"holds {name} but no manifest.json" in result.output and "--force" in result.output
    assert precious.read_text() == '{"mine": true}\n' and fake_server.request_count == 0
    forced = invoke(*command, *server_args(fake_server), "--force")
    assert forced.exit_code in (0, 1), forced.output  # --force writes (the run's own verdict is not the point)
    assert precious.read_text() != '{"mine": true}\n'


def test_a_prompts_file_is_never_replaced_by_its_own_results(tmp_path, fake_server):
    out = tmp_path / "out"
    out.mkdir()
    prompts = out / "output.jsonl"
    prompts.write_text(prompts_text(3))
    result = invoke("generate", prompts, "-o", out, *server_args(fake_server), "--force")
    assert result.exit_code == 2 and "an input is never its own output" in result.output, result.output
    assert prompts.read_text() == prompts_text(3)


def test_refine_input_that_is_the_runs_own_dataset_is_refused(tmp_path, fake_server):
    fake_server.responder = respond
    out = tmp_path / "out"
    assert invoke("run", "-o", out, "--leaves", "1", "--tasks", "view", "--rounds", "0",
                  *server_args(fake_server)).exit_code in (0, 1)
    before = (out / "sft.jsonl").read_bytes()
    result = invoke("refine", "-o", out, "--input", out / "sft.jsonl", *server_args(fake_server))
    assert result.exit_code == 2 and "an input is never its own output" in result.output
    assert (out / "sft.jsonl").read_bytes() == before


def test_refine_input_from_a_pipe_is_refused_clearly(tmp_path, fake_server):
    row = json.dumps({"question": "What is a prime number?", "answer": "A number with exactly two divisors."})
    result = condor("refine", "-o", tmp_path / "out", "--input", "/dev/stdin", *server_args(fake_server),
                    stdin=(row + "\n").encode())
    assert result.code == 2 and "not a regular file" in result.stderr and "save it to a file" in result.stderr


@pytest.mark.parametrize("command", ["import", "export"])
def test_tree_conversions_never_overwrite_their_input(tmp_path, command):
    source = tmp_path / "tags.json"
    if command == "import":
        source.write_text(json.dumps({"Health": {"Sleep": ["Insomnia"]}}))
        args = ["tree", "import", source, "-o", source]
    else:
        source.write_text(json.dumps({"format": "condor-tree v1", "tree": {"Health": {"Sleep": ["Insomnia"]}}}))
        args = ["tree", "export", source, "-o", source]
    before = source.read_bytes()
    result = invoke(*args)
    assert result.exit_code == 2 and "is the file being read" in result.output
    assert source.read_bytes() == before


def test_symbolic_links_inside_the_run_directory_are_refused(tmp_path, fake_server):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(prompts_text(2))
    out = tmp_path / "out"
    assert invoke("generate", prompts, "-o", out, *server_args(fake_server)).exit_code == 0
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    step = out / "stages" / "generate"

    def refused() -> None:
        result = invoke("generate", prompts, "-o", out, *server_args(fake_server), "--retry-failed")
        assert result.exit_code == 2 and "is a symbolic link" in result.output, result.output
        assert all(path.stat().st_size == 0 for path in outside.iterdir() if path.is_file())

    # The step's folder replaced by a link to a folder outside OUT.
    step.rename(tmp_path / "moved")
    step.symlink_to(outside)
    refused()
    # The folder back, and the shard itself a link to a file outside OUT.
    step.unlink()
    (tmp_path / "moved").rename(step)
    (step / "units.jsonl").unlink()
    (outside / "units.jsonl").write_text("")
    (step / "units.jsonl").symlink_to(outside / "units.jsonl")
    refused()
    # A cache file that is a link would be written through by SQLite: refused too.
    (step / "units.jsonl").unlink()
    (out / "cache.sqlite").unlink()
    (out / "cache.sqlite").symlink_to(outside / "cache.sqlite")
    result = invoke("generate", prompts, "-o", out, *server_args(fake_server))
    assert result.exit_code == 2 and "cache.sqlite is a symbolic link" in result.output
    assert not (outside / "cache.sqlite").exists()


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_every_file_condor_writes_gets_the_mode_the_umask_allows(tmp_path, fake_server, umask, mode):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(prompts_text(2))
    generated = condor("generate", prompts, "-o", tmp_path / "gen", *server_args(fake_server), umask=umask)
    fake_server.responder = respond
    ran = condor("run", "-o", tmp_path / "run", "--leaves", "1", "--tasks", "view", "--rounds", "1",
                 *server_args(fake_server), umask=umask, env={"COLUMNS": "200"})
    assert generated.code == 0 and ran.code in (0, 1), generated.output + ran.output
    files = [p for d in ("gen", "run") for p in (tmp_path / d).rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"output.jsonl", "sft.jsonl", "units.jsonl", "manifest.json", "cache.sqlite", "plan.jsonl", ".lock"} <= names
    wrong = {str(p.relative_to(tmp_path)): oct(stat.S_IMODE(p.stat().st_mode)) for p in files
             if stat.S_IMODE(p.stat().st_mode) != mode}
    assert not wrong, wrong


def test_an_output_that_is_a_file_is_one_clear_line(tmp_path, fake_server):
    fake_server.responder = respond
    run = tmp_path / "run"
    assert invoke("run", "-o", run, "--leaves", "1", "--tasks", "view", "--rounds", "0",
                  *server_args(fake_server)).exit_code in (0, 1)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for args in (["export", run, "-o", blocker], ["export", run, "-o", blocker / "sub"],
                 ["report", run, "-o", blocker / "report.html"], ["tree", "export", "en", "-o", blocker / "en.json"]):
        result = invoke(*args)
        assert result.exit_code == 2, result.output
        assert "a file is in the way where a directory is needed" in result.output, result.output
        assert "Errno" not in result.output and "Error:" not in result.output
