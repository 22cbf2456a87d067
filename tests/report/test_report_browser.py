"""The report in a real headless Chromium: loads clean, nothing hostile runs, filters, search and a record work."""

from __future__ import annotations

import time

import pytest

from report.pages import chromium

import condor

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def wait_until(page, expression, seconds=20.0):
    """Poll ``expression`` in the page; Playwright's own wait_for_function needs eval, which the page's CSP forbids."""
    deadline = time.monotonic() + seconds
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        time.sleep(0.05)


def open_page(browser, path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path.as_uri())
    page.wait_for_selector("body[data-ready='1']")
    wait_until(page, "window.__condorSearchReady !== undefined")
    return page, problems, requests


def count_text(page) -> str:
    return page.locator("#count").inner_text()


def test_the_report_works_in_chromium_and_hostile_text_stays_text(run_copy, counts, tmp_path, artifacts):
    report = condor.build_report(run_copy, tmp_path / "report.html", embeddings=False, chunk_size=4)
    with chromium() as browser:
        check_page(browser, report, counts, artifacts)


def check_page(browser, report, counts, artifacts):
    final, total = counts.final, counts.total
    everything = f"{total} of {total} records"
    page, problems, requests = open_page(browser, report.path)
    try:
        assert requests == [report.path.as_uri()]  # the page itself, and nothing from anywhere else
        assert page.evaluate("window.__pwned") is None
        assert count_text(page) == everything
        page.screenshot(path=str(artifacts / "report-overview.png"), full_page=True)

        # Filters: the rejected record alone, then back to everything, then one difficulty.
        page.select_option("#filter-status", label=f"{counts.status} ({counts.status_count})")
        assert count_text(page) == f"{counts.status_count} of {total} records"
        page.select_option("#filter-status", value="-1")
        hard = sum(1 for r in final if r["difficulty"] == "hard") + sum(
            1 for r in counts.rejected if r["record"].get("difficulty") == "hard")
        page.select_option("#filter-difficulty", label=f"hard ({hard})")
        assert count_text(page) == f"{hard} of {total} records"
        assert set(page.locator("#rows tr td:nth-child(4)").all_inner_texts()) == {"hard"}
        page.select_option("#filter-difficulty", value="-1")

        # Full-text search reaches answers, not only questions.
        page.fill("#search", "improved version 1")
        refined = f"{counts.kept} of"
        wait_until(page, f"document.getElementById('count').textContent.startsWith('{refined}')")
        word = final[3]["question"].split()[-12]  # one of the pseudo-random words of a question
        records = [r for r in final] + [r["record"] for r in counts.rejected]
        expected = sum(1 for r in records if word.lower() in "\n".join(
            [r.get("question") or ""] + [v["answer"] for v in r.get("versions") or []]).lower())
        page.fill("#search", word.upper())
        wait_until(page, f"document.getElementById('count').textContent === '{expected} of {total} records'")
        page.fill("#search", "")
        wait_until(page, f"document.getElementById('count').textContent === '{everything}'")

        # A record: the question, both versions with their scores, the critique, the verdict, all as text.
        page.locator("#rows tr").first.click()
        body = page.locator("#record-body")
        assert page.locator("#record").is_visible()
        shown = body.inner_text()
        assert '<script>window.__pwned = "script";</script>' in shown
        assert "<img src=x onerror=" in shown and "</script><script>" in shown
        assert "Version 0 (original) · score 6" in shown and "Version 1 (round 1) · score 8" in shown
        assert "Critique that led to it" in shown and "Weaknesses: Lacks an example." in shown
        assert "Judge, final against original: final (both orders agree)" in shown
        assert body.locator("img, script").count() == 0
        page.screenshot(path=str(artifacts / "report-record.png"))

        # The rejected record opens too, with its reason.
        page.select_option("#filter-status", label=f"{counts.status} ({counts.status_count})")
        page.locator("#rows tr").first.click()
        assert f"Rejected at {counts.status.removeprefix('rejected: ')}" in body.inner_text()
        assert page.evaluate("window.__pwned") is None
        assert problems == []
    finally:
        page.close()
