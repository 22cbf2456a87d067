"""A persistent request cache in SQLite, and the backend wrapper that consults it.

The key is a SHA-256 of the backend's identity plus the canonical request (messages, sampling settings,
schema, sample index): see :func:`condor.llm.base.request_key`. API keys are never part of a backend's
identity, so they never reach this file. Only successful completions are stored: a failure may be
transient, and the run directory already records it.

Writes are committed in small batches (WAL mode, ``synchronous=NORMAL``) so that caching costs little at
thousands of requests per second; a crash loses at most the last fraction of a second of cache entries,
and the run directory, which is flushed per record, remains the source of truth for completed work.

Several processes on one host may share the file (the Ray executor's workers do): a batch waits in
memory and is written in one short ``BEGIN IMMEDIATE`` transaction, so a writer holds SQLite's lock for
milliseconds, never while it waits for a model, and the others wait for it (``busy_timeout``) instead of
failing. SQLite's locking needs every process on the same host: it is not for a network filesystem.

Beside completions the file keeps a few *notes* (:meth:`RequestCache.get_meta` / ``put_meta``): facts
a backend learnt about its server at start-up, such as the openai backend's structured-output dialect,
so that a second run against the same server does not probe it again. They are written at once, not
batched, and live in the ``meta`` table under a prefix of their own, apart from the format line.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Sequence

from condor.codec import decode, encode_text
from condor.files import file_mode
from condor.llm.base import Capabilities, ChatRequest, Completion, LLMBackend, request_key

CACHE_FORMAT = "condor-cache v1"
#: How long a write waits for another process's transaction before it gives up (and warns).
BUSY_TIMEOUT_MS = 30_000
# Notes share the meta table with the format line; the prefix keeps a note from ever replacing it.
_NOTE_PREFIX = "note:"

log = logging.getLogger(__name__)


class CacheError(RuntimeError):
    """The cache file cannot be used (wrong format, not SQLite, unwritable)."""


class RequestCache:
    """Key -> completion store. Not thread-safe: use it from one event loop."""

    def __init__(self, path: str | Path, *, commit_every: int = 64, commit_seconds: float = 0.5) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            if new:
                # SQLite creates 0644 whatever the umask allows; give it the mode of the run's other files
                # (its -wal and -shm files follow the database's mode).
                os.chmod(self.path, file_mode())
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            # Other processes' batches hold the write lock for milliseconds: wait for them.
            self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS completions (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL)"
            )
            row = self._db.execute("SELECT value FROM meta WHERE key='format'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise CacheError(f"{self.path}: not a usable request cache ({exc})") from None
        if row is None:
            self._db.execute("INSERT INTO meta VALUES ('format', ?)", (CACHE_FORMAT,))
        elif row[0] != CACHE_FORMAT:
            raise CacheError(f"{self.path}: cache format {row[0]!r}, expected {CACHE_FORMAT!r}; delete it or use another --cache")
        #: Entries not yet written: key -> JSON value. Read through by :meth:`get`.
        self._pending: dict[str, str] = {}
        self._last_commit = time.monotonic()
        self._commit_every = commit_every
        self._commit_seconds = commit_seconds
        self.hits = 0
        self.misses = 0
        self.errors = 0
        self._closed = False

    def get(self, key: str) -> Completion | None:
        value = self._pending.get(key)
        if value is None:
            try:
                row = self._db.execute("SELECT value FROM completions WHERE key=?", (key,)).fetchone()
            except sqlite3.Error as exc:
                self._warn(f"cache read failed ({exc}); asking the model instead")
                row = None
            value = row[0] if row is not None else None
        if value is None:
            self.misses += 1
            return None
        self.hits += 1
        data = decode(value)
        return Completion(
            text=data["text"],
            finish_reason=data.get("finish_reason"),
            prompt_tokens=data.get("prompt_tokens", 0),
            completion_tokens=data.get("completion_tokens", 0),
            model=data.get("model"),
            cached=True,
        )

    def put(self, key: str, completion: Completion) -> None:
        """Store a successful completion. Never raises: a cache that cannot be written (disk full,
        locked, text SQLite refuses) costs a future cache hit, not the answer in hand."""
        if not completion.ok:
            return
        # Model text with lone surrogates (a split emoji) is stored with ASCII escapes (see condor.codec).
        self._pending[key] = encode_text(completion.to_dict())
        now = time.monotonic()
        if len(self._pending) >= self._commit_every or now - self._last_commit >= self._commit_seconds:
            self.flush()

    def get_meta(self, key: str) -> Any | None:
        """A note stored by :meth:`put_meta`, or None (also when the file cannot be read)."""
        try:
            row = self._db.execute("SELECT value FROM meta WHERE key=?", (_NOTE_PREFIX + key,)).fetchone()
        except sqlite3.Error as exc:
            self._warn(f"cache read failed ({exc}); ignoring what earlier runs noted")
            return None
        if row is None:
            return None
        try:
            return json.loads(row[0])
        except ValueError:
            return None

    def put_meta(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable note under ``key`` now. Never raises, like :meth:`put`."""
        try:
            self._db.execute(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)", (_NOTE_PREFIX + key, json.dumps(value, ensure_ascii=True))
            )
        except sqlite3.Error as exc:
            self._rollback()
            self._warn(f"cache write failed ({exc}); the next run will learn this again")

    def flush(self) -> None:
        """Write the waiting entries in one short transaction. Never raises, like :meth:`put`."""
        if self._pending:
            now = time.time()
            rows = [(key, value, now) for key, value in self._pending.items()]
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany("INSERT OR REPLACE INTO completions VALUES (?, ?, ?)", rows)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                self._warn(f"cache commit failed ({exc}); the last {len(rows)} entries were not cached")
            self._pending.clear()
        self._last_commit = time.monotonic()

    def _rollback(self) -> None:
        try:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def _warn(self, message: str) -> None:
        self.errors += 1
        if self.errors <= 3:  # enough to notice; a failing disk would otherwise flood the log
            log.warning("%s: %s", self.path, message)

    def __len__(self) -> int:
        self.flush()
        return self._db.execute("SELECT COUNT(*) FROM completions").fetchone()[0]

    def close(self) -> None:
        # Several backends may share one cache and each closes it: only the first close does anything.
        if self._closed:
            return
        self.flush()
        self._db.close()
        self._closed = True


class CachedBackend(LLMBackend):
    """Wraps any backend: cached requests are answered locally, the rest are sent in one batch."""

    def __init__(self, inner: LLMBackend, cache: RequestCache) -> None:
        self.inner = inner
        self.cache = cache
        self.identity = inner.identity
        self.concurrency = inner.concurrency

    @property
    def capabilities(self) -> Capabilities:  # type: ignore[override]
        # Read through, never copied: the inner backend may learn at check() (or mid-run) that its
        # server cannot constrain output, and whoever asks this wrapper must see that.
        return self.inner.capabilities

    def __getattr__(self, name: str):
        # Backend-specific extras (e.g. the openai backend's list of models, its warnings) pass through.
        return getattr(self.inner, name)

    async def check(self):  # returns what the inner backend's check returns (the openai one: listed models)
        self.inner.use_notes(self.cache)
        return await self.inner.check()

    async def warm_up(self) -> None:
        await self.inner.warm_up()

    def describe(self) -> dict:
        return self.inner.describe()

    def resolve(self, request: ChatRequest) -> ChatRequest:
        return self.inner.resolve(request)

    async def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        # Keyed on what is actually sent: the backend's defaults (max_tokens, seed...) are part of it.
        keys = [request_key(self.identity, self.inner.resolve(r)) for r in requests]
        results: list[Completion | None] = [self.cache.get(k) for k in keys]
        missing = [i for i, c in enumerate(results) if c is None]
        if missing:
            fresh = await self.inner.generate([requests[i] for i in missing])
            for i, completion in zip(missing, fresh, strict=True):
                results[i] = completion
                self.cache.put(keys[i], completion)
        return results  # type: ignore[return-value]

    async def aclose(self) -> None:
        try:
            await self.inner.aclose()
        finally:
            self.cache.close()
