"""The mem0 connector against Mem0 open source running here (docs/connectors/mem0.md).

Memories are made with Mem0's own ``Memory.add(..., infer=False)`` over a local Qdrant or
Chroma store, moved with vexchange (out to a .vmig.jsonl file and back into a fresh Mem0, and
from one vector store behind Mem0 to the other), and read back with Mem0's own ``get_all``,
``history`` and ``search`` and with the vector store's own client for the raw vectors.

Mem0's embedder is its own OpenAI embedder pointed at a tiny OpenAI-compatible embeddings
server on 127.0.0.1 (vexchange.testing.embed_server, started here): deterministic vectors, no
model, no network. Each vector is a float32 unit vector of exact values (three components of
+-0.5 and four of +-0.25), so Qdrant's cosine normalisation keeps it bit for bit and "same
bits" is a strict check.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("MEM0_DIR", tempfile.mkdtemp(prefix="vex-mem0-home-"))  # not ~/.mem0
os.environ.setdefault("MEM0_TELEMETRY", "False")
mem0 = pytest.importorskip("mem0")

import vexchange  # noqa: E402
from vexchange.checks import verify  # noqa: E402
from vexchange.connectors._base import Reject  # noqa: E402
from vexchange.connectors._registry import open_store  # noqa: E402
from vexchange.connectors import _registry  # noqa: E402
from vexchange.errors import UsageError  # noqa: E402
from vexchange.testing.embed_server import embeddings_server, hash_embedding  # noqa: E402

DIMS = 16
PROBES = ["I like jasmine tea", "My dog is Rex", "the meeting is on Friday", "tea", "Rex"]


def _embedding(text: str) -> np.ndarray:
    return hash_embedding(text, DIMS)


@pytest.fixture(scope="module")
def embed_url() -> Iterator[str]:
    with embeddings_server(_embedding) as url:
        yield url


@pytest.fixture(autouse=True, scope="module")
def _registered() -> Iterator[None]:
    if "mem0" not in _registry.available():
        _registry.register("mem0", "vexchange.connectors.mem0:Mem0Connector")
    yield


def _config(directory: Path, provider: str, url: str) -> dict[str, Any]:
    store: dict[str, Any] = {"path": str(directory / provider), "collection_name": "mem0"}
    if provider == "qdrant":
        store["embedding_model_dims"] = DIMS
    return {
        "vector_store": {"provider": provider, "config": store},
        # Mem0's own OpenAI embedder, at the local server; the key is a placeholder the SDK
        # wants before it sends anything (the server ignores it). The LLM is never called.
        "embedder": {"provider": "openai", "config": {"api_key": "unused-local", "openai_base_url": url,
                                                      "embedding_dims": DIMS, "model": "hash"}},
        "llm": {"provider": "openai", "config": {"api_key": "unused-local", "openai_base_url": url}},
        "history_db_path": str(directory / "history.db"),
    }


Opener = Callable[[Path, str], Any]


@pytest.fixture
def memory(embed_url: str) -> Iterator[Opener]:
    opened: list[Any] = []

    def open_(directory: Path, provider: str = "qdrant") -> Any:
        m = mem0.Memory.from_config(_config(directory, provider, embed_url))
        opened.append(m)
        return m

    yield open_
    for m in opened:
        _close(m)


def _close(m: Any) -> None:
    """Release Mem0's SQLite file and Qdrant's local-mode lock, so vexchange can open them."""
    m.close()
    client = getattr(m.vector_store, "client", None)
    if client is not None and hasattr(client, "close") and m.config.vector_store.provider == "qdrant":
        client.close()


SCOPES = [{"user_id": "alice"}, {"user_id": "alice", "agent_id": "helper"},
          {"agent_id": "helper", "run_id": "run-7"}, {"user_id": "bob&co=1%"}]


def _fill(m: Any) -> dict[str, str]:
    """Memories in several scopes with metadata of every JSON type, an update (two history
    rows) and a deletion (history of a memory no longer there)."""
    ids: dict[str, str] = {}
    r = m.add("I like green tea", user_id="alice",
              metadata={"topic": "drinks", "n": 3, "ratio": 0.1, "ok": True, "tags": ["a", "b"]},
              infer=False)
    ids["tea"] = r["results"][0]["id"]
    r = m.add([{"role": "user", "content": "My dog is Rex"},
               {"role": "assistant", "content": "Nice dog", "name": "bot"}],
              user_id="alice", agent_id="helper", infer=False)
    ids["dog"], ids["nice"] = (x["id"] for x in r["results"])
    r = m.add("the meeting is on Friday", agent_id="helper", run_id="run-7", infer=False)
    ids["meeting"] = r["results"][0]["id"]
    r = m.add("Bob prefers window seats", user_id="bob&co=1%", metadata={"seat": "window"}, infer=False)
    ids["bob"] = r["results"][0]["id"]
    r = m.add("to be forgotten", user_id="alice", infer=False)
    m.delete(r["results"][0]["id"])
    ids["gone"] = r["results"][0]["id"]
    m.update(ids["tea"], "I like jasmine tea")
    # Mem0's message log, as its LLM path keeps it (SQLiteManager.save_messages, Mem0's own code)
    m.db.save_messages([{"role": "user", "content": "hello there"},
                        {"role": "assistant", "content": "hi", "name": "bot"}], "user_id=alice")
    return ids


def _state(m: Any) -> dict[str, Any]:
    """What Mem0 itself says: every memory per scope, each memory's history, and the
    search results for the probe queries (ids in order)."""
    memories = {}
    for scope in SCOPES:
        got = m.get_all(filters=scope, top_k=100)["results"]
        memories[json.dumps(scope, sort_keys=True)] = sorted(got, key=lambda x: x["id"])
    ids = sorted({x["id"] for rows in memories.values() for x in rows})
    gone = [r[0] for r in m.db.connection.execute(
        "SELECT DISTINCT memory_id FROM history WHERE event = 'DELETE'")]
    history = {i: m.history(i) for i in ids + gone}
    searches = {f"{q}|{json.dumps(s, sort_keys=True)}": _ranked(m.search(
        q, filters=s, top_k=10, threshold=0.0)["results"]) for q in PROBES for s in SCOPES}
    log = m.db.get_last_messages("user_id=alice", limit=10)
    return {"memories": memories, "history": history, "searches": searches, "log": log}


def _ranked(results: list[dict[str, Any]]) -> list[tuple[float, str]]:
    """Search results as (score, id), best first; memories of equal score (the test vectors
    tie often) in id order, since a store breaks ties by its own insertion order."""
    return sorted(((round(x["score"], 6), x["id"]) for x in results), key=lambda t: (-t[0], t[1]))


def _raw_vectors(m: Any) -> dict[str, bytes]:
    """Every stored vector, read with the vector store's own client."""
    vs = m.vector_store
    if m.config.vector_store.provider == "qdrant":
        points, _ = vs.client.scroll(vs.collection_name, limit=1000, with_vectors=True)
        return {str(p.id): np.asarray(p.vector.get("") if isinstance(p.vector, dict) else p.vector,
                                      dtype="<f4").tobytes() for p in points}
    got = vs.collection.get(include=["embeddings"])
    return {i: np.asarray(e, dtype="<f4").tobytes()
            for i, e in zip(got["ids"], got["embeddings"], strict=True)}


def _snapshot(m: Any) -> tuple[dict[str, Any], dict[str, bytes]]:
    return _state(m), _raw_vectors(m)


def _made(tmp_path: Path, memory: Opener, provider: str = "qdrant"
          ) -> tuple[Path, dict[str, str], dict[str, Any], dict[str, bytes]]:
    src = tmp_path / "src"
    m = memory(src, provider)
    ids = _fill(m)
    state, vectors = _snapshot(m)
    _close(m)
    return src, ids, state, vectors


def _location(directory: Path, provider: str) -> str:
    return f"mem0://{directory}" + ("?vector_store=chroma" if provider == "chroma" else "")


def test_made_by_mem0_as_expected(tmp_path: Path, memory: Opener) -> None:
    """The source is what the tests claim: four scopes, the deleted memory gone, searches
    that find things, vectors as the embedder made them."""
    _, ids, state, vectors = _made(tmp_path, memory)
    assert len(vectors) == 5 and ids["gone"] not in vectors
    assert vectors[ids["dog"]] == _embedding("My dog is Rex").tobytes()
    assert [h["event"] for h in state["history"][ids["tea"]]] == ["ADD", "UPDATE"]
    assert any(state["searches"].values())


@pytest.mark.parametrize("provider", ["qdrant", "chroma"])
def test_out_to_vmig_and_back(tmp_path: Path, memory: Opener, provider: str) -> None:
    src, ids, before, vectors = _made(tmp_path, memory, provider)
    out = tmp_path / "mem.vmig.jsonl"
    receipt = vexchange.export(_location(src, provider), str(out))
    # five memories, the history of the deleted one, two turns of the message log
    assert receipt.counts.written == 8 and receipt.counts.skipped == {}
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    by_id = {line["id"]: line for line in lines}
    assert [h["event"] for h in by_id[ids["gone"]]["mem0"]["history"]] == ["ADD", "DELETE"]
    assert by_id[ids["gone"]].get("vector") is None and by_id[ids["gone"]]["mem0"]["kind"] == "deleted"
    assert sorted(x["text"] for x in lines if x["mem0"].get("kind") == "message") == ["hello there", "hi"]
    assert by_id[ids["tea"]]["namespace"] == "user_id=alice"
    assert by_id[ids["dog"]]["namespace"] == "agent_id=helper&user_id=alice"
    assert by_id[ids["bob"]]["namespace"] == "user_id=bob%26co%3D1%25"

    dst = tmp_path / "dst"
    vexchange.import_(str(out), _location(dst, provider))
    m = memory(dst, provider)
    after, vectors_after = _snapshot(m)
    assert after == before
    assert vectors_after == vectors


def test_qdrant_to_chroma_and_back(tmp_path: Path, memory: Opener) -> None:
    """A move between two vector stores behind Mem0: no re-embedding, same answers."""
    src, _, before, vectors = _made(tmp_path, memory, "qdrant")
    chroma_dir = tmp_path / "via-chroma"
    receipt = vexchange.migrate(_location(src, "qdrant"), _location(chroma_dir, "chroma"))
    assert receipt.counts.written == 8
    m = memory(chroma_dir, "chroma")
    state, got = _snapshot(m)
    assert got == vectors
    assert state["memories"] == before["memories"] and state["history"] == before["history"]
    assert state["log"] == before["log"]
    # Mem0 scores Chroma by 1/(1+l2) and Qdrant by cosine, so the lists differ in scores and
    # in what the threshold keeps; a probe that is a memory's text finds that memory first
    for probe in PROBES[:3]:
        top = m.search(probe, filters={"user_id": "alice"} if probe != PROBES[2] else
                       {"agent_id": "helper", "run_id": "run-7"}, top_k=1)["results"]
        assert [x["memory"] for x in top] == [probe]
    _close(m)
    back = tmp_path / "back"
    vexchange.migrate(_location(chroma_dir, "chroma"), _location(back, "qdrant"))
    m2 = memory(back, "qdrant")
    assert _snapshot(m2) == (before, vectors)


def test_verify_against_the_source(tmp_path: Path, memory: Opener) -> None:
    src, _, _, _ = _made(tmp_path, memory)
    dst = tmp_path / "dst"
    vexchange.migrate(_location(src, "qdrant"), _location(dst, "chroma"))
    report = verify(_location(dst, "chroma"), against=_location(src, "qdrant"))
    assert report.ok, report


def test_rerun_is_an_upsert(tmp_path: Path, memory: Opener) -> None:
    src, _, before, vectors = _made(tmp_path, memory, "chroma")
    out = tmp_path / "m.vmig.jsonl"
    vexchange.export(_location(src, "chroma"), str(out))
    dst = tmp_path / "dst"
    for _ in range(2):
        vexchange.import_(str(out), _location(dst, "chroma"))
    m = memory(dst, "chroma")
    assert _snapshot(m) == (before, vectors)


def test_records_from_elsewhere(tmp_path: Path, memory: Opener) -> None:
    """Records that never were Mem0 memories: a plain namespace becomes the user id, a
    non-UUID id gets a UUIDv5 in Qdrant, no namespace needs ?user_id=; all come back exact."""
    src = tmp_path / "in.vmig.jsonl"
    vec = _embedding("a note").tolist()
    rows = [
        {"id": "note-1", "text": "a note", "namespace": "work", "vector": vec,
         "metadata": {"data": "collides", "nested": {"k": [1, None]}},
         "created_at": "2025-01-02T03:04:05.678Z"},
        {"id": "note-2", "text": "another", "vector": _embedding("another").tolist()},
        {"id": "note-3", "text": None, "namespace": "work", "vector": vec},
    ]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    dst = tmp_path / "dst"
    receipt = vexchange.import_(str(src), f"mem0://{dst}?user_id=someone", allow_skips=True)
    assert receipt.counts.written == 2 and receipt.counts.skipped == {"no_text": 1}
    m = memory(dst, "qdrant")
    work = m.get_all(filters={"user_id": "work"})["results"]
    assert [x["memory"] for x in work] == ["a note"]
    assert work[0]["created_at"] == "2025-01-02T03:04:05.678000+00:00"
    assert [x["memory"] for x in m.get_all(filters={"user_id": "someone"})["results"]] == ["another"]
    assert [x["memory"] for x in m.search("a note", filters={"user_id": "work"}, top_k=1)["results"]] \
        == ["a note"]
    _close(m)
    back = tmp_path / "back.vmig.jsonl"
    vexchange.export(f"mem0://{dst}", str(back))
    sent, got = _records(src), _records(back)
    assert got["note-1"].namespace == "work" and got["note-2"].namespace is None
    for key in ("note-1", "note-2"):  # the Mem0 fields (hash, ISO times) ride in extra
        assert got[key].replace(extra={}) == sent[key]
    assert set(got["note-1"].extra) == {"mem0"}


def _records(location: Path) -> dict[str, Any]:
    """Records of a file as vexchange reads them."""
    with open_store(str(location)) as store:
        return {r.id: r for page in store.read(batch_size=100) for r in page.items
                if not isinstance(r, Reject)}


def test_no_scope_is_refused_with_a_reason(tmp_path: Path) -> None:
    src = tmp_path / "in.vmig.jsonl"
    src.write_text(json.dumps({"id": "x", "text": "t", "vector": _embedding("t").tolist()}) + "\n")
    receipt = vexchange.import_(str(src), f"mem0://{tmp_path / 'dst'}", allow_skips=True)
    assert receipt.counts.skipped == {"no_scope": 1}


def test_config_file_location(tmp_path: Path, memory: Opener, embed_url: str) -> None:
    """``mem0:///path/config.json`` reads the stores a Mem0 config names, and only those."""
    src = _made(tmp_path, memory)[0]
    config = tmp_path / "mem0.json"
    config.write_text(json.dumps(_config(src, "qdrant", embed_url)))
    out = tmp_path / "m.vmig.jsonl"
    receipt = vexchange.export(f"mem0://{config}", str(out))
    assert receipt.counts.written == 8
    assert "unused-local" not in Path(receipt.receipt_file).read_text()


@pytest.mark.parametrize(("location", "message"), [
    ("mem0://{tmp}/nothing", "no qdrant store"),
    ("mem0://{tmp}/d?vector_store=faiss", "not supported"),
    ("mem0://{tmp}/server.json", "only a local"),
    ("mem0://{tmp}/missing.json", "no config file"),
])
def test_bad_locations(tmp_path: Path, location: str, message: str) -> None:
    (tmp_path / "server.json").write_text(json.dumps(
        {"vector_store": {"provider": "qdrant", "config": {"host": "localhost", "port": 6333}}}))
    with pytest.raises(UsageError, match=message):
        vexchange.export(location.format(tmp=tmp_path), str(tmp_path / "o.vmig.jsonl"))

