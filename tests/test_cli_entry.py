"""The `condor` entry point itself: help for every command, version, light import."""

import subprocess
import sys

import pytest

COMMANDS = ["generate", "void", "refine", "run", "export", "merge", "judge", "report", "show", "tree", "train",
            "iterate"]


def condor(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "condor.cli.main", *args], capture_output=True, text=True, timeout=60)


def test_help_lists_every_command():
    result = condor("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_explains_itself(command):
    result = condor(command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout and len(result.stdout) > 200


def test_version():
    result = condor("--version")
    assert result.returncode == 0 and result.stdout.startswith("condor ")


def test_import_condor_is_light():
    code = "import sys, condor, condor.cli.main; print(sorted(m for m in ('llama_cpp','torch','datasketch','sentence_transformers','aiohttp') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def test_public_api_is_explicit():
    import condor
    import condor.llm
    import condor.stages

    assert condor.__all__ == [
        "__version__", "GateStep", "ModelStep", "RunConfig", "arun_pipeline", "build_report", "export_dataset",
        "export_run", "insert_after", "iterate", "judge_runs", "load_config", "merge_runs", "pipeline_steps",
        "read_run", "run_pipeline", "train_model",
    ]
    assert set(condor.llm.__all__) == {
        "BackendUnavailable", "Capabilities", "ChatRequest", "Completion", "LLMBackend", "Usage",
    }
    for module in (condor, condor.llm, condor.stages):
        for name in module.__all__:
            assert hasattr(module, name), name
