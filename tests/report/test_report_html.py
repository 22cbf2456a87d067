"""The report file itself (no browser): offline, escaped, the numbers in it, and its data."""

from __future__ import annotations

import json
from html.parser import HTMLParser

from hypothesis import given, strategies as st
from typer.testing import CliRunner

import condor
from condor.cli.main import app
from condor.report.html import embed_json
from condor.report.metrics import evenness, leaf_coverage


class Elements(HTMLParser):
    """Every start tag with its attributes, and the text of each script element by id."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: dict[str, str] = {}
        self._script: str | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._script = dict(attrs).get("id") or "(code)"
            self.scripts[self._script] = ""

    def handle_endtag(self, tag):
        if tag == "script":
            self._script = None

    def handle_data(self, data):
        if self._script is not None:
            self.scripts[self._script] += data


def parse(path) -> Elements:
    elements = Elements()
    elements.feed(path.read_text(encoding="utf-8"))
    return elements


def test_the_page_is_one_offline_file_in_which_model_text_stays_text(run_copy, counts, tmp_path):
    report = condor.build_report(run_copy, tmp_path / "r.html", embeddings=False, chunk_size=5)
    page = parse(report.path)
    scripts = [attrs for tag, attrs in page.tags if tag == "script"]
    chunks = [a for a in scripts if (a.get("id") or "").startswith("chunk-")]
    # Our elements and nothing else: the index, every record in chunks of 5, and the page's own code.
    assert len(chunks) == -(-counts.total // 5) and len(scripts) == 1 + len(chunks) + 1
    assert all(a.get("type") == "application/json" for a in scripts if a.get("id"))
    assert not [tag for tag, attrs in page.tags if tag == "img" or any(name.startswith("on") for name in attrs)]
    for tag, attrs in page.tags:
        for name in ("src", "href", "action"):
            assert not (attrs.get(name) or "").startswith(("http", "//")), (tag, attrs)
    csp = next(attrs["content"] for tag, attrs in page.tags if attrs.get("http-equiv") == "Content-Security-Policy")
    assert "default-src 'none'" in csp and "script-src 'sha256-" in csp and "unsafe-inline" not in csp
    text = report.path.read_text(encoding="utf-8")
    assert "url(" not in page.scripts.get("(code)", "") and "@import" not in text and "url(http" not in text
    index = json.loads(page.scripts["index"])
    final = counts.final
    assert index["count"] == counts.total and index["q"][: len(final)] == [r["question"] for r in final]
    assert "window.__pwned" in index["q"][0]  # the payload is there, as data
    detail = json.loads(page.scripts["chunk-0"])[0]
    assert detail["versions"][1]["s"] == 8.0 and "onerror" in detail["versions"][0]["a"]
    assert "status" in index["values"] and any(v.startswith("rejected: ") for v in index["values"]["status"])


def test_summary_numbers_and_charts_are_on_the_page(run_copy, counts, tmp_path):
    report = condor.build_report(run_copy, tmp_path / "r.html", embeddings=False)
    text = report.path.read_text(encoding="utf-8")
    for expected in ("records kept", f">{counts.kept}<", f"{len(counts.rejected)} rejected", "Rows by domain",
                     "Leaf coverage by domain", "Task x difficulty", "Rejections by reason", "question_filter: question_too_short", "Refinement: grade before and after",
                     "Question length", "Final answer length", "Tokens per stage", "judge_pairwise",
                     "Judge: pairwise", "position consistency"):
        assert expected in text, expected
    assert text.count("<svg") >= 7


def test_the_cli_writes_the_report(run_copy, counts, tmp_path):
    out = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["report", str(run_copy), "-o", str(out), "--no-embeddings"])
    assert result.exit_code == 0, result.output
    assert f"report: {out} ({counts.total} records" in result.output and out.is_file()
    bad = CliRunner().invoke(app, ["report", str(tmp_path / "nothing")])
    assert bad.exit_code == 2 and "not a Condor run directory" in bad.output


@given(st.text())
def test_embedded_json_is_inert_and_reads_back(text):
    embedded = embed_json({"t": text})
    assert not any(ch in embedded for ch in "<>&\u2028\u2029")
    assert json.loads(embedded) == {"t": text}


def test_leaf_coverage_and_balance():
    manifest = {"config": {"pipeline": {"tree": "en", "lang": "en"}}}
    from condor.tree.io import resolve_tree

    leaves = resolve_tree("en").leaves()
    records = [{"language": "en", "tag_path": list(leaves[0])}, {"language": "en", "tag_path": list(leaves[0])},
               {"language": "en", "tag_path": list(leaves[1])}]
    coverage = leaf_coverage(records, manifest, planned=records + [{"language": "en", "tag_path": list(leaves[2])}])
    assert coverage["kept_leaves"] == 2 and coverage["tree_leaves"] == len(leaves)
    assert coverage["tree_share"] == 2 / len(leaves) and coverage["sampled_share"] == 2 / 3
    assert sum(d["covered"] for d in coverage["by_domain"].values()) == 2
    gone = leaf_coverage(records, {"config": {"pipeline": {"tree": "/nowhere/tree.yaml"}}})
    assert gone["tree_leaves"] is None and "could not be loaded" in gone["note"]
    assert abs(evenness([5, 5, 5]) - 1.0) < 1e-9 and evenness([99, 1]) < 0.1 and evenness([3]) is None
