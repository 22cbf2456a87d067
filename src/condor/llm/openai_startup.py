"""Start-up of the OpenAI-compatible backend: is a server there, does it take the key and the model, and
which schema dialect it speaks.

An unreachable server or a refused key raises :class:`~condor.llm.base.BackendUnavailable`. The models
the server lists are information, not a gate: servers answer names they do not list (llama-cpp-python
lists a file path and serves any name, Ollama lists ``llama3:latest`` for ``llama3``, proxies list
aliases or nothing), so an unlisted name is a warning, and only the server's own "model not found"
reply to a chat request stops the run, naming what it lists. Then the schema dialect is settled
(:mod:`condor.llm.dialects`): configured, noted by an earlier run in the request cache, or probed once;
with none, the backend declares ``structured=False``.

:class:`ServerStartUp` is a part of :class:`~condor.llm.openai.OpenAIBackend`, kept apart because it
runs once per run while the rest of the backend runs per request; it uses the backend's address, key,
session and warnings.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import aiohttp

from condor.codec import encode
from condor.llm import errors
from condor.llm.base import BackendUnavailable, Notes
from condor.llm.dialects import PROBE_HEADER, ProbeReply, choose, probe_body
from condor.llm.errors import model_missing, server_message
from condor.llm.wire import endpoint, read_prefix

if TYPE_CHECKING:
    from condor.llm.openai import _LoopState

__all__ = ["ServerStartUp"]


class ServerStartUp:
    """:meth:`check` and what it needs; mixed into :class:`~condor.llm.openai.OpenAIBackend`."""

    # Set by OpenAIBackend.__init__ (and its connection helpers: _loop_state, _auth_headers, _scrub, _warn).
    base_url: str
    model: str
    models: list[str]
    timeout: float
    structured: str
    structured_dialect: str
    dialect: str
    dialect_source: str
    dialect_note: str
    _dialect_key: str
    _notes: Notes | None
    _url: str

    def use_notes(self, notes: Notes) -> None:
        self._notes = notes

    async def check(self) -> list[str]:
        """Make sure a server answers at ``base_url``, settle the schema dialect; return the model ids it lists.

        Any HTTP answer to ``/models`` counts as reachable, even 404 (some servers have none); only
        connection failures, timeouts and a refused key raise :class:`BackendUnavailable`, and so
        does a chat reply saying the model does not exist.
        """
        self.models = await self._list_models(self._loop_state())
        # Ollama lists "llama3:latest" and answers "llama3": an untagged name means the latest tag.
        listed = self.model in self.models or f"{self.model}:latest" in self.models
        if self.models and not listed:
            self._warn(
                f"the server at {self.base_url} does not list model {self.model!r} (it lists: "
                f"{errors.show_models(self.models)}); going on, since many servers answer names they do not list"
            )
        choice = await choose(
            self.structured_dialect, self.structured, self._probe_send, self.model, self._notes,
            self._dialect_key, self.base_url,
        )
        self.dialect_source, self.dialect_note = choice.source, choice.note
        if choice.warning:
            self._warn(choice.warning)
        if choice.dialect == "none":
            self.capabilities = replace(self.capabilities, structured=False)
        else:
            self.dialect = choice.dialect
        if not choice.answered and not listed:
            # Nothing has shown yet that the server takes this name: one plain request, whose reply
            # raises if the server says the model does not exist.
            await self._probe_send(probe_body(self.model, None), "model")
        return self.models

    async def _list_models(self, state: _LoopState) -> list[str]:
        try:
            async with state.session.get(
                endpoint(self.base_url, "models"),
                headers=self._auth_headers(),
                timeout=aiohttp.ClientTimeout(total=min(self.timeout, 15.0)),
            ) as response:
                body = await read_prefix(response)
                status = response.status
        except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
            raise BackendUnavailable(errors.unreachable(self.base_url, self._scrub(str(exc) or type(exc).__name__))) from None
        except aiohttp.InvalidURL:
            raise BackendUnavailable(f"base_url {self.base_url!r} is not a valid URL") from None
        if status in (401, 403):
            raise BackendUnavailable(errors.key_refused(self.base_url, status))
        return errors.listed_models(body) if status == 200 else []

    def _model_missing(self, status: int, raw: bytes) -> BackendUnavailable:
        said = self._scrub(server_message(raw))
        return BackendUnavailable(errors.no_such_model(self.base_url, self.model, self.models, status, said))

    async def _probe_send(self, body: dict[str, Any], label: str) -> ProbeReply:
        """One start-up request, never retried here; raises for a refused key or a missing model."""
        state = self._loop_state()
        headers = {**(self._auth_headers() or {}), PROBE_HEADER: label}
        try:
            async with state.session.post(self._url, data=encode(body), headers=headers) as response:
                status, raw = response.status, await read_prefix(response)
                retry_after = response.headers.get("Retry-After")
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            return ProbeReply(None, error=self._scrub(f"{type(exc).__name__}: {exc}"))
        if status in (401, 403):
            raise BackendUnavailable(errors.key_refused(self.base_url, status))
        if model_missing(status, raw):
            raise self._model_missing(status, raw)
        return ProbeReply(status, raw, retry_after=retry_after)
