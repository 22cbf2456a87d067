"""How long ``condor report`` takes to build, and the page to load in Chromium, at 10,000 and 100,000 records.

A synthetic run directory is written for each size (real leaves of the shipped English tree, two answer
versions of a few hundred words, a critique, grades, 2% rejections), read back through the run reader
like any run. The report is built without embeddings (the question map samples at most a few thousand
questions, so its cost does not grow with the run; it is measured once, at 10,000). The page is then
opened from disk in Debian's headless chromium through Playwright; the times are taken inside the page
(``performance.now()`` when the records are browsable, and when the full-text index is built) and, for
a filter, a search and opening a record, around the action. With ``--write`` the "Report" section of
docs/benchmarks.md is replaced.

    .venv/bin/python bench/bench_report.py --write
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench_memory import update_section  # noqa: E402

from condor.report.html import build_report  # noqa: E402
from condor.run.directory import RUN_FORMAT  # noqa: E402
from condor.run.store import atomic_write_lines, dumps  # noqa: E402
from condor.tree.io import resolve_tree  # noqa: E402

SECTION = "## Report: build and page load"
WORDS = ("the a of to and in for with that this on as by is are be it can from or at your use when more which "
         "water budget plan tool step time family garden recipe energy health market code history learn price "
         "example simple careful option method result reason practice common safe quick local cost").split()
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def synthetic_run(root: Path, count: int, seed: int = 0) -> Path:
    """A run directory with ``count`` kept records (and 2% more rejected), readable by RunReader."""
    rng = random.Random(seed)
    leaves = resolve_tree("en").leaves()
    tasks, difficulties = ("domain_qa", "view", "creation", "role_playing"), ("easy", "medium", "hard")
    kept, rejected = [], []
    for i in range(int(count * 1.02)):
        path = leaves[i % len(leaves)]
        record = {"id": f"en/{i:07d}", "tag_path": list(path), "domain": path[0], "task": tasks[i % 4],
                  "difficulty": difficulties[i % 3], "language": "en", "tree": "en", "tree_version": 1,
                  "question": text(rng, rng.randint(20, 50)) + f" ({i})"}
        if i >= count:
            rejected.append({"input_id": record["id"], "records": [], "rejections": [
                {"stage": "question_filter", "reason": rng.choice(["near_duplicate", "too_short", "off_topic"]),
                 "detail": "synthetic", "record": record}]})
            continue
        original, better = text(rng, rng.randint(80, 200)), text(rng, rng.randint(120, 260))
        record.update({
            "versions": [{"round": 0, "answer": original, "finish_reason": "stop", "source": "answer"},
                         {"round": 1, "answer": better, "finish_reason": "stop", "source": "refine"}],
            "critiques": [{"round": 1, "strengths": text(rng, 15), "weaknesses": text(rng, 20), "suggestions": text(rng, 20)}],
            "scores": [{"version": 0, "score": rng.randint(4, 8), "reason": text(rng, 12)},
                       {"version": 1, "score": rng.randint(5, 9), "reason": text(rng, 12)}],
            "chosen": {"version": 1, "mode": "last", "reason": "version 1 is the last version", "score": None, "fallback": False},
            "answer": better,
        })
        kept.append({"input_id": record["id"], "records": [record], "rejections": []})
    root.mkdir(parents=True)
    for name, units in (("question_filter", kept + rejected), ("select", kept)):
        directory = root / "stages" / name
        atomic_write_lines(directory / "units.jsonl", (dumps(u) for u in units))
        (directory / "complete.json").write_text("{}", encoding="utf-8")
    usage = {"prompt_tokens": 300 * count, "completion_tokens": 250 * count, "requests": count, "cached": 0}
    manifest = {
        "format": RUN_FORMAT,
        "config": {"pipeline": {"tree": "en", "lang": "en", "rounds": 1, "select": "last"},
                   "llm": {"backend": "openai", "model": "synthetic"}},
        "steps": {"question_filter": {"kind": "gate", "reads": "plan", "carry_from": [], "carries": False},
                  "select": {"kind": "gate", "reads": "question_filter", "carry_from": [], "carries": False}},
        "stages": {"answer": {"usage": usage, "model": "synthetic"}},
        "final": {"step": "select", "dataset": "sft.jsonl", "preference": True},
    }
    (root / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return root


def measure_page(browser, path: Path) -> dict[str, float]:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    started = time.monotonic()
    page.goto(path.as_uri(), timeout=300_000)
    page.wait_for_selector("body[data-ready='1']", timeout=300_000)
    ready_wall = time.monotonic() - started
    ready = page.evaluate("window.__condorReady")
    while page.evaluate("window.__condorSearchReady === undefined"):
        time.sleep(0.05)
    search_ready = page.evaluate("window.__condorSearchReady")

    def applied(action) -> float:
        """Milliseconds the page spent filtering and drawing the rows after ``action`` (measured in the page)."""
        page.evaluate("window.__condorApplyMs = undefined")
        action()
        while page.evaluate("window.__condorApplyMs === undefined"):
            time.sleep(0.01)
        return page.evaluate("window.__condorApplyMs")

    filter_ms = applied(lambda: page.select_option("#filter-difficulty", label=page.locator("#filter-difficulty option").nth(2).inner_text()))
    search_ms = applied(lambda: page.fill("#search", "careful garden"))
    started = time.monotonic()
    page.locator("#rows tr").first.click()
    page.wait_for_selector("#record:not([hidden])")
    open_s = time.monotonic() - started
    memory = page.evaluate("performance.memory ? performance.memory.usedJSHeapSize : 0")
    page.close()
    if errors:
        raise RuntimeError(f"page errors: {errors}")
    return {"ready_ms": ready, "ready_wall_s": ready_wall, "search_ready_ms": search_ready, "filter_ms": filter_ms,
            "search_ms": search_ms, "open_s": open_s, "heap_mb": memory / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    scratch = Path(tempfile.mkdtemp(prefix="condor-bench-report-"))
    rows, map_row = [], None
    try:
        for size in (int(s) for s in args.sizes.split(",")):
            run = synthetic_run(scratch / f"run-{size}", size)
            built = build_report(run, scratch / f"report-{size}.html", embeddings=False)
            if size == 10000:
                with_map = build_report(run, scratch / f"report-map-{size}.html", embeddings=True)
                map_row = (size, with_map.seconds)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
                page = measure_page(browser, built.path)
                browser.close()
            rows.append((size, built, page))
            print(f"{size}: build {built.seconds:.1f} s, {built.bytes / 1e6:.0f} MB, page {page}", flush=True)
            shutil.rmtree(run)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    table = ["| records | build s | file MB | browsable after (ms) | full-text index ready (ms) | filter (ms) | search (ms) | open a record (s) | JS heap MB |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for size, built, page in rows:
        table.append(f"| {size:,} | {built.seconds:.1f} | {built.bytes / 1e6:.0f} | {page['ready_ms']:.0f} | "
                     f"{page['search_ready_ms']:.0f} | {page['filter_ms']:.0f} | {page['search_ms']:.0f} | "
                     f"{page['open_s']:.2f} | {page['heap_mb']:.0f} |")
    body = (f"{SECTION}\n\n"
            f"`condor report` on synthetic run directories (kept records with two answer versions of 80-260 words, a "
            f"critique and grades, plus 2% rejected), built with `--no-embeddings`, then opened from disk in Debian's "
            f"headless chromium ({platform.machine()}, 2 cores, Python {platform.python_version()}). \"Browsable\" is "
            f"`performance.now()` when the first page of rows is shown and filters work; the full-text index (questions "
            f"and every answer) is built after that, a chunk at a time, without blocking the page. Filter (one difficulty) "
            f"and search (two words over questions and answers, all records) are the page's own time to select the "
            f"records and draw the first rows; opening a record is a round trip from Playwright, click to panel shown. "
            f"Rerun:\n\n"
            f"    .venv/bin/python bench/bench_report.py --write\n\n" + "\n".join(table) + "\n")
    if map_row:
        body += (f"\nWith embeddings (diversity numbers and the t-SNE question map over a sample of 5,000 and 2,000 "
                 f"questions, all-MiniLM-L6-v2 on the CPU), the {map_row[0]:,}-record report takes {map_row[1]:.1f} s "
                 "to build; the sample sizes bound this cost whatever the size of the run.\n")
    if args.write:
        update_section(ROOT / "docs" / "benchmarks.md", SECTION, body)
    print(body)


if __name__ == "__main__":
    main()
