"""The SQLite request cache: keys, hits, distinct samples, secrets, format checks, crash safety."""

import sqlite3

import pytest
from scripted_backend import ScriptedBackend

from condor.llm.base import ChatRequest, Completion, request_key
from condor.llm.cache import CachedBackend, CacheError, RequestCache
from condor.llm.openai import OpenAIBackend


def ask(text, **kw):
    return ChatRequest(messages=[{"role": "user", "content": text}], **kw)


def test_key_is_canonical_and_covers_every_setting():
    a = request_key("m", ask("hi", temperature=0.5, max_tokens=10))
    assert a == request_key("m", ChatRequest(max_tokens=10, temperature=0.5, messages=[{"content": "hi", "role": "user"}]))
    assert a != request_key("other-model", ask("hi", temperature=0.5, max_tokens=10))
    assert a != request_key("m", ask("hi", temperature=0.6, max_tokens=10))
    assert a != request_key("m", ask("hi", temperature=0.5, max_tokens=10, json_schema={"type": "object"}))
    assert a != request_key("m", ask("hi", temperature=0.5, max_tokens=10, sample_index=1))


async def test_hits_make_no_calls_and_failures_are_not_cached(tmp_path):
    answers = iter(["one", Completion.failed("http 500"), "three", "four"])
    backend = ScriptedBackend(lambda r: next(answers))
    cached = CachedBackend(backend, RequestCache(tmp_path / "c.sqlite"))
    first = await cached.generate([ask("a"), ask("b"), ask("c")])
    assert [c.text for c in first] == ["one", None, "three"]
    again = await cached.generate([ask("a"), ask("b"), ask("c")])
    assert [c.text for c in again] == ["one", "four", "three"]
    assert [c.cached for c in again] == [True, False, True]
    assert len(backend.calls) == 4
    await cached.aclose()


async def test_samples_with_one_seed_stay_distinct(tmp_path, fake_server):
    fake_server.responder = lambda body: f"seed={body.get('seed')}"
    backend = CachedBackend(OpenAIBackend(base_url=fake_server.base_url, model="m"), RequestCache(tmp_path / "c.sqlite"))
    requests = [ask("same", seed=7, sample_index=i) for i in range(3)]
    out = await backend.generate(requests)
    assert [c.text for c in out] == ["seed=7", "seed=8", "seed=9"]
    again = await backend.generate(requests)
    assert [c.text for c in again] == ["seed=7", "seed=8", "seed=9"] and all(c.cached for c in again)
    assert fake_server.request_count == 3
    await backend.aclose()


async def test_entries_survive_reopen_and_api_key_never_stored(tmp_path, fake_server):
    path = tmp_path / "c.sqlite"
    backend = CachedBackend(
        OpenAIBackend(base_url=fake_server.base_url, model="m", api_key="sk-secret-xyz"), RequestCache(path)
    )
    await backend.generate([ask("persist me")])
    await backend.aclose()
    assert b"sk-secret-xyz" not in path.read_bytes()
    reopened = CachedBackend(OpenAIBackend(base_url=fake_server.base_url, model="m"), RequestCache(path))
    (hit,) = await reopened.generate([ask("persist me")])
    assert hit.cached and hit.text == "Echo: persist me"
    assert fake_server.request_count == 1
    await reopened.aclose()


def test_wrong_format_or_garbage_file_is_a_clear_error(tmp_path):
    garbage = tmp_path / "g.sqlite"
    garbage.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(CacheError, match="not a usable request cache"):
        RequestCache(garbage)
    other = tmp_path / "o.sqlite"
    RequestCache(other).close()
    db = sqlite3.connect(other)
    db.execute("UPDATE meta SET value='condor-cache v0'")
    db.commit()
    db.close()
    with pytest.raises(CacheError, match="expected 'condor-cache v1'"):
        RequestCache(other)


def test_batched_commits_are_visible_after_flush(tmp_path):
    cache = RequestCache(tmp_path / "c.sqlite", commit_every=1000, commit_seconds=3600)
    for i in range(10):
        cache.put(f"k{i}", Completion(text=str(i)))
    reader = sqlite3.connect(tmp_path / "c.sqlite")
    assert reader.execute("SELECT COUNT(*) FROM completions").fetchone()[0] == 0
    cache.flush()
    assert reader.execute("SELECT COUNT(*) FROM completions").fetchone()[0] == 10
    cache.close()


def test_notes_persist_apart_from_the_format_line(tmp_path):
    path = tmp_path / "c.sqlite"
    cache = RequestCache(path)
    assert cache.get_meta("openai:http://h/v1:m:structured-dialect") is None
    cache.put(request_key("m", ask("a")), Completion(text="kept"))  # an open batch: the note must not wait for it
    cache.put_meta("openai:http://h/v1:m:structured-dialect", {"dialect": "llama-cpp-python", "note": "probe"})
    cache.put_meta("format", "not the format line")  # a note may be called anything without harm
    cache.close()
    again = RequestCache(path)  # opens: the format line is intact
    assert again.get_meta("openai:http://h/v1:m:structured-dialect") == {"dialect": "llama-cpp-python", "note": "probe"}
    assert again.get_meta("format") == "not the format line" and len(again) == 1
    again.close()


async def test_the_wrapper_hands_its_notes_to_the_inner_backend(tmp_path):
    seen = []

    class Noting(ScriptedBackend):
        def use_notes(self, notes):
            seen.append(notes)

    cache = RequestCache(tmp_path / "c.sqlite")
    wrapped = CachedBackend(Noting(lambda r: "x"), cache)
    await wrapped.check()
    assert seen == [cache]
    await wrapped.aclose()
