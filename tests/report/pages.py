"""Helpers of the report tests: the hostile payload, the model that writes it, and a headless Chromium.

Importable as ``from report.pages import ...`` (``tests/`` is on sys.path; ``report`` is a namespace package).
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path

import pytest
from condor_responder import respond

#: Markup that would run script if it reached the page as HTML, or closed the JSON's <script> element.
PAYLOAD = ('<script>window.__pwned = "script";</script><img src=x onerror="window.__pwned = \'img\'">'
           '</script><script>window.__pwned = "breakout";</script><!-- & \u2028')
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def hostile(body: dict) -> str:
    """condor_responder's answers with the payload inside every question, answer, critique and refinement.

    The hard question of every Creation work item is "Why?", which the question filter rejects as too
    short, so that the report always has rejected records to show, whatever else the filters do.
    """
    text = respond(body)
    plain = "[" not in text
    for end in ("[Question End]", "[Weakness End]", "[Improved Answer End]"):
        text = text.replace(end, f" {PAYLOAD}{end}")
    if plain:  # an answer
        text = f"{text} {PAYLOAD}"
    prompt = body["messages"][-1]["content"]
    if "[Hard][Question Start]" in text and "Task type: Creation" in prompt:
        text = re.sub(r"(\[Hard\]\[Question Start\]).*?(\[Question End\])", r"\1Why?\2", text, flags=re.DOTALL)
    return text


@contextmanager
def chromium():
    """Debian's chromium, headless, driven by Playwright (its own browser download is never used).

    A context manager rather than a fixture: Playwright's sync API keeps an event loop running in this
    thread while it is open, so everything that calls ``asyncio.run`` (a pipeline run) must come first.
    """
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing; `make test` installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()
