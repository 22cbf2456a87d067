"""Shared fixtures: a real OpenAI-compatible server on 127.0.0.1 (see ``fake_server.py``).

Test modules import the server class directly with ``from fake_server import FakeChatServer``: pytest puts
this directory on ``sys.path`` because it holds this conftest and no ``__init__.py``.
"""

from __future__ import annotations

from typing import Iterator

import pytest

from fake_server import FakeChatServer


@pytest.fixture
def fake_server() -> Iterator[FakeChatServer]:
    """A fresh fake chat server for one test: no latency, no faults, the echo responder."""
    server = FakeChatServer().start()
    try:
        yield server
    finally:
        server.stop()
