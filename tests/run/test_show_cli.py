"""``condor show``: kept rows and rejections of a finished run, in the terminal, model text made harmless."""

from __future__ import annotations

from condor_responder import respond
from typer.testing import CliRunner

from condor.cli.main import app


def test_show_prints_kept_rows_and_rejections_with_control_characters_escaped(tmp_path, fake_server):
    def noisy(body):
        text = respond(body)
        prompt = body["messages"][-1]["content"]
        if "Knowledge tag" not in prompt and "[Strength Start]" not in prompt and "Improved Answer" not in prompt:
            return text + " \x1b[31mred\x1b[0m"  # an answer with a terminal escape in it
        return text

    fake_server.responder = noisy
    out = tmp_path / "out"
    made = CliRunner().invoke(app, ["run", "-o", str(out), "--leaves", "2", "--tasks", "view", "--rounds", "0",
                                    "--base-url", fake_server.base_url, "--model", "fake-model", "--quiet"])
    assert made.exit_code == 0, made.output
    result = CliRunner().invoke(app, ["show", str(out), "-n", "2"])
    assert result.exit_code == 0, result.output
    assert result.output.count("  Q: ") == 2 and result.output.count("  A") == 2
    assert "kept rows" in result.output and "[view, " in result.output
    assert "\x1b" not in result.output and "\\x1b[31mred" in result.output
    before = fake_server.request_count
    CliRunner().invoke(app, ["show", str(out)])
    assert fake_server.request_count == before


def test_show_on_a_directory_that_is_not_a_run_is_one_line(tmp_path):
    result = CliRunner().invoke(app, ["show", str(tmp_path)])
    assert result.exit_code == 2 and "not a Condor run directory" in result.output
