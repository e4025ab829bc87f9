"""Any framework through OMS (issue 20, item 4): a ``.mg`` written from Mem0, a LangGraph store or
a Letta Agent File imports into the others where the target can express it, and what it cannot
is counted by reason. Memories are made with each framework's own API (Mem0's ``Memory.add``,
LangGraph's ``SqliteStore.put``, Letta's own models for the ``.af``), and each target is read
with the target framework's own API or validated with its own schema.

One embedding function serves all three, so the searches agree: Mem0's own OpenAI embedder
pointed at a local OpenAI-compatible server (as tests/test_mem0.py), LangGraph's index
``embed``, and the embeddings of the Letta passages.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

os.environ.setdefault("MEM0_DIR", tempfile.mkdtemp(prefix="vex-mem0-home-"))  # not ~/.mem0
os.environ.setdefault("MEM0_TELEMETRY", "False")
mem0 = pytest.importorskip("mem0")
pytest.importorskip("langgraph.store.sqlite")
pytest.importorskip("letta_client")
pysqlite3 = pytest.importorskip("pysqlite3.dbapi2")

from langgraph.store.sqlite import SqliteStore  # noqa: E402
from letta_client.types import Passage  # noqa: E402
from letta_client.types import EmbeddingConfig as LettaEmbeddingConfig  # noqa: E402
from letta_client.types.block_response import BlockResponse  # noqa: E402

from vexchange import migrate  # noqa: E402
from vexchange.checks import verify  # noqa: E402
from vexchange.oms.memory import typed_fields  # noqa: E402
from vexchange.oms.tools import decode_grains, encode_grains  # noqa: E402
from vexchange.record import MemoryRecord  # noqa: E402
from vexchange.testing.conformance import read_all  # noqa: E402
from vexchange.testing.embed_server import embeddings_server, hash_embedding  # noqa: E402

DIMS = 16
SAMPLE = Path(__file__).parent / "data" / "letta" / "sample.af"


def embedding(text: str) -> np.ndarray:
    """Deterministic float32 unit vectors of exact values (as tests/test_mem0.py), so cosine
    normalisation keeps them bit for bit."""
    return hash_embedding(text, DIMS)


def embed_many(texts: list[str]) -> list[list[float]]:
    """LangGraph's index ``embed``: the same vectors."""
    return [embedding(str(t)).tolist() for t in texts]


@pytest.fixture(scope="module")
def embed_url() -> Iterator[str]:
    with embeddings_server(embedding) as url:
        yield url


def mem0_memory(directory: Path, url: str) -> Any:
    """Mem0 open source over local Qdrant and its SQLite history; its own OpenAI embedder at the
    local server (the key is a placeholder the SDK wants; the LLM is never called)."""
    local = {"api_key": "unused-local", "openai_base_url": url}
    return mem0.Memory.from_config({
        "vector_store": {"provider": "qdrant", "config": {"path": str(directory / "qdrant"),
                                                          "collection_name": "mem0",
                                                          "embedding_model_dims": DIMS}},
        "embedder": {"provider": "openai", "config": {**local, "embedding_dims": DIMS, "model": "hash"}},
        "llm": {"provider": "openai", "config": local},
        "history_db_path": str(directory / "history.db"),
    })


def close_mem0(m: Any) -> None:
    """Release Mem0's SQLite file and Qdrant's local-mode lock, so vexchange can open them."""
    m.close()
    client = getattr(m.vector_store, "client", None)
    if client is not None and hasattr(client, "close"):
        client.close()


def langgraph_store(path: Path) -> SqliteStore:
    """LangGraph's own SqliteStore (a pysqlite3 connection: it can load sqlite-vec)."""
    conn = pysqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
    store = SqliteStore(conn, index={"dims": DIMS, "embed": embed_many, "text_fields": ["text"]})  # type: ignore[arg-type]
    store.setup()
    return store


def grain_types(path: Path) -> Counter[str]:
    return Counter(g["type"] for g in decode_grains(path))


def ranked(pairs: list[tuple[float, str]]) -> list[str]:
    """Ids best first; equal scores (the test vectors tie) in id order; only positive scores
    (Mem0's search drops the others, even with ``threshold=0``)."""
    return [i for _, i in sorted(((-round(s, 5), i) for s, i in pairs if s > 1e-6))]


def cosine_ranking(query: str, vectors: dict[str, list[float]]) -> list[str]:
    q = embedding(query).astype(np.float64)
    return ranked([(float(np.dot(q, v) / np.linalg.norm(v)), i) for i, v in vectors.items()])


# ------------------------------------------------------------------- Mem0 -> .mg -> LangGraph

MEM0_FACTS = [("I like jasmine tea", {"user_id": "alice"}, {"topic": "drinks", "n": 3, "ratio": 0.1}),
              ("My dog is Rex", {"user_id": "alice", "agent_id": "helper"}, None),
              ("the meeting is on Friday", {"agent_id": "helper", "run_id": "run-7"}, {"seat": None}),
              ("Alice takes the early train", {"user_id": "alice"}, {"tags": ["a", "b"], "ok": True})]
MEM0_PROBES = ["tea", "Rex", "train", "meeting on Friday"]


def test_mem0_to_mg_to_langgraph(tmp_path: Path, embed_url: str) -> None:
    src = tmp_path / "mem0"
    m = mem0_memory(src, embed_url)
    ids = {}
    for text, scope, metadata in MEM0_FACTS:
        ids[text] = m.add(text, **scope, metadata=metadata, infer=False)["results"][0]["id"]
    gone = m.add("to be forgotten", user_id="alice", infer=False)["results"][0]["id"]
    m.delete(gone)
    m.db.save_messages([{"role": "user", "content": "hello there"}], "user_id=alice")  # Mem0's message log
    memories = {x["id"]: x for x in m.get_all(filters={"user_id": "alice"}, top_k=100)["results"]}
    memories |= {x["id"]: x for x in m.get_all(filters={"agent_id": "helper"}, top_k=100)["results"]}
    before = {q: ranked([(x["score"], x["id"]) for x in m.search(q, filters={"user_id": "alice"}, top_k=10,
                                                                   threshold=0.0)["results"]
                         if (x.get("agent_id"), x.get("run_id")) == (None, None)]) for q in MEM0_PROBES}
    close_mem0(m)

    grains = tmp_path / "mem0.mg"
    migrate(f"mem0://{src}", str(grains))
    fields = [g["fields"] for g in decode_grains(grains)]
    beliefs = {f["subject"]: f for f in fields if f["type"] == "belief" and f["object"]}
    assert beliefs[ids["I like jasmine tea"]]["user_id"] == "alice"  # Mem0's user is OMS's data subject
    assert beliefs[ids["the meeting is on Friday"]]["run_id"] == "run-7"
    assert beliefs[ids["the meeting is on Friday"]]["context"] == {"agent_id": "helper"}
    assert [f["content"] for f in fields if f["type"] == "event"] == ["hello there"]  # the message log

    db = tmp_path / "store.db"
    receipt = migrate(str(grains), f"langgraph-sqlite:{db}")
    # LangGraph holds all of it: no vector (the deleted memory's history) and no text are fine there
    assert receipt.counts.skipped == {} and receipt.counts.written == len(fields) == 4 + 1 + 1
    assert verify(f"langgraph-sqlite:{db}", against=f"mem0://{src}").ok

    store = langgraph_store(db)
    for memory_id, memory in memories.items():
        scope = "&".join(f"{k}={memory[k]}" for k in ("agent_id", "run_id", "user_id") if memory.get(k))
        item = store.get((scope,), memory_id)
        assert item is not None, (scope, memory_id)
        assert item.value["text"] == memory["memory"]
        # Mem0 lifts actor_id and role out of the metadata it shows
        promoted = {k: memory[k] for k in ("actor_id", "role") if memory.get(k) is not None}
        assert {k: v for k, v in item.value.items() if k not in ("text", "_vex")} == {
            **(memory.get("metadata") or {}), **promoted}
    after = {q: ranked([(x.score or 0.0, x.key) for x in store.search(("user_id=alice",), query=q, limit=10)])
             for q in MEM0_PROBES}
    assert after == before and any(after.values())


# ---------------------------------------------------------------- LangGraph -> .mg -> Letta .af

ITEMS = [(("users", "alice"), "prefs", {"text": "prefers dark mode", "theme": "dark", "size": 14}),
         (("users", "alice"), "food", {"text": "favourite food is pizza", "likes": ["pizza", "pasta"]}),
         (("users", "bob"), "prefs", {"text": "prefers light mode", "theme": "light"}),  # key "prefs" again
         (("users", "bob"), "note", {"other": "no text field", "n": 99}),
         (("team",), "runbook", {"text": "deploy on fridays never", "nested": {"k": [1, 2, {"x": None}]}})]
LG_PROBES = ["dark mode", "pizza", "deploy", "light"]


def test_langgraph_to_mg_to_letta(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    store = langgraph_store(db)
    for namespace, key, value in ITEMS:
        store.put(namespace, key, value, index=None if "text" in value else False)
    before = {q: ranked([(x.score or 0.0, f"{'.'.join(x.namespace)}/{x.key}") for x in store.search(
        (), query=q, limit=10)]) for q in LG_PROBES}
    grains = tmp_path / "store.mg"
    migrate(f"langgraph-sqlite:{db}", str(grains))
    decoded = [g["fields"] for g in decode_grains(grains)]
    beliefs = {f"{f['subject']}@{f['namespace']}": f for f in decoded}
    assert {g["type"] for g in decode_grains(grains)} == {"belief"}
    assert beliefs["prefs@users.alice"]["object"] == dict(ITEMS[0][2])  # the value: a key-value memory
    assert beliefs["runbook@team"]["object"]["nested"] == {"k": [1, 2, {}]}  # nulls omitted (§4.5)

    af = tmp_path / "agent.af"
    receipt = migrate(str(grains), f"letta-af:{af}")
    # an .af list holds one object per id: the second "prefs" (another namespace) is refused
    assert receipt.counts.skipped == {"duplicate_id": 1} and receipt.counts.written == 4
    rejects = [orjson.loads(line) for line in Path(str(receipt.rejects_file)).read_bytes().splitlines()]
    assert [r["reason"] for r in rejects] == ["duplicate_id"]
    assert verify(f"letta-af:{af}", receipt=receipt.receipt_file).ok

    doc = orjson.loads(af.read_bytes())
    for key in ("agents", "groups", "blocks", "files", "sources", "tools", "mcp_servers"):
        assert doc[key] == []  # the lists Letta's AgentFileSchema requires
    passages = {p["id"]: Passage.model_validate(p) for p in doc["passages"]}  # Letta's own model
    stored = {(ns, key): value for ns, key, value in ITEMS}
    kept = {key: ns for ns, key, _ in ITEMS if (ns, key) != (("users", "bob"), "prefs")}
    assert set(passages) == set(kept)
    for key, ns in kept.items():
        assert passages[key].metadata is not None
        assert {k: v for k, v in passages[key].metadata.items() if k != "_vex"} == stored[ns, key]
    assert passages["note"].embedding is None  # put with index=False: no vector, none invented
    vectors = {f"{'.'.join(kept[k])}/{k}": list(p.embedding) for k, p in passages.items() if p.embedding}
    for vector_key, vec in vectors.items():
        assert np.array_equal(np.asarray(vec, dtype="<f4"), embedding(stored[tuple(
            vector_key.split("/")[0].split(".")), vector_key.split("/")[1]]["text"]))
    # Letta has no local search without a server: the passages' own embeddings rank as LangGraph did
    for q in LG_PROBES:
        assert cosine_ranking(q, vectors) == [i for i in before[q] if i != "users.bob/prefs"]


# ---------------------------------------------------------------- Letta .af -> .mg -> Mem0

LETTA_FACTS = ["the mooring is at pier 4", "Chad's boat is called Wind", "the regatta starts at noon",
               "always reef early in a NW breeze"]
LETTA_PROBES = ["pier", "boat", "regatta noon", "reef"]


def letta_file(path: Path) -> dict[str, Any]:
    """The sample agent (made with Letta's server types) with archival passages made with the
    letta-client models, embedded with the shared function."""
    doc = orjson.loads(SAMPLE.read_bytes())
    config = LettaEmbeddingConfig(embedding_endpoint_type="openai", embedding_model="hash",
                                  embedding_dim=DIMS)
    doc["passages"] = [Passage(id=f"passage-{i}", text=text, embedding=embedding(text).tolist(),
                               embedding_config=config, archive_id="archive-0", metadata={"n": i},
                               created_at=f"2026-04-01T08:00:0{i}Z").model_dump(mode="json")
                       for i, text in enumerate(LETTA_FACTS)]
    for block in doc["blocks"]:
        BlockResponse.model_validate(block)
    path.write_bytes(orjson.dumps(doc))
    return doc


def test_letta_to_mg_to_mem0(tmp_path: Path, embed_url: str) -> None:
    af = tmp_path / "agent.af"
    doc = letta_file(af)
    grains = tmp_path / "agent.mg"
    migrate(f"letta-af:{af}", str(grains))
    types = grain_types(grains)
    # blocks and the agent are State, tools Action definitions, the one-tool-call message an Action
    # call; the other messages Events; the file's own record, files, sources, MCP, skills, passages Beliefs
    assert types == {"state": 3, "action": 3, "event": 4, "belief": 5 + len(LETTA_FACTS)}
    by_subject = {g["fields"]["subject"]: g for g in decode_grains(grains)}
    call = by_subject["message-2"]["fields"]
    assert (call["action_phase"], call["tool_name"], call["input"], call["tool_call_id"]) == (
        "call", "get_weather", {"city": "Zürich"}, "call_weather_1")
    assert by_subject["tool-0"]["fields"]["action_phase"] == "definition"
    assert by_subject["block-0"]["fields"]["context"]["label"] == "human"
    migrate(str(grains), f"letta-af:{tmp_path / 'back.af'}")
    assert orjson.loads((tmp_path / "back.af").read_bytes()) == doc  # and back: the same document

    dst = tmp_path / "mem0"
    receipt = migrate(str(grains), f"mem0://{dst}")
    # Mem0 holds text + a vector + a scope: the passages; the rest is counted, each by its reason
    records = list(read_all(af).values())
    no_text = [r for r in records if not r.text]
    assert receipt.counts.written == len(LETTA_FACTS)
    assert receipt.counts.skipped == {"no_text": len(no_text), "no_vector": len(records) - len(no_text)
                                      - len(LETTA_FACTS)}
    assert verify(f"mem0://{dst}", receipt=receipt.receipt_file).ok

    m = mem0_memory(dst, embed_url)
    try:
        got = m.get_all(filters={"user_id": "letta-passages"}, top_k=100)["results"]  # the namespace's scope
        # Qdrant needs UUIDs: the point id is a UUIDv5, the passage id is kept in _vex
        exact = {json.loads(x["metadata"]["_vex"])["id"]: x for x in got}
        assert {i: x["memory"] for i, x in exact.items()} == {
            f"passage-{i}": t for i, t in enumerate(LETTA_FACTS)}
        point = {x["id"]: i for i, x in exact.items()}
        vectors = {p["id"]: p["embedding"] for p in doc["passages"]}
        for q in LETTA_PROBES:
            found = m.search(q, filters={"user_id": "letta-passages"}, top_k=10, threshold=0.0)["results"]
            assert ranked([(x["score"], point[x["id"]]) for x in found]) == cosine_ranking(q, vectors)
    finally:
        close_mem0(m)


# ---------------------------------------------------------------- grains of every type read back


def test_every_emitted_type_reads_back_exactly(tmp_path: Path) -> None:
    """Records that make State, Action (definition and call), Event and Belief grains, and Mem0
    scopes, through .mg and back: the same records."""
    made = list(read_all(SAMPLE).values())
    made += [MemoryRecord(id="m1", text="likes tea", namespace="agent_id=a&user_id=u%26v", metadata={"x": 1}),
             MemoryRecord(id="lg", text="t", namespace="users.alice", source_store="langgraph",
                          metadata={"text": "t", "big": 2**70, "s": "\ufeffe\u0301", "deep": [[[[]]]]}),
             MemoryRecord(id="call", namespace="chat", metadata={
                 "role": "assistant", "conversation_id": "c1",
                 "tool_calls": [{"id": "t1", "type": "function",
                                 "function": {"name": "f", "arguments": "[1]"}}]}),
             MemoryRecord(id="log", text="hi", namespace="user_id=u", extra={"mem0": {"kind": "message",
                                                                                     "role": "user"}})]
    kinds = {r.id: typed_fields(r)["type"] for r in made}
    assert kinds["call"] == "event"  # arguments that are not an object: not an Action call
    assert kinds["log"] == "event" and kinds["lg"] == "belief"
    assert typed_fields(made[-4])["user_id"] == "u&v"
    lg = typed_fields(made[-3])["object"]
    assert lg == {"text": "t", "big": str(2**70), "s": "é", "deep": [[[[]]]]}
    source = tmp_path / "in.vmig.jsonl"
    from vexchange.testing.conformance import write_vmig

    write_vmig(source, made)
    migrate(str(source), str(tmp_path / "all.mg"))
    migrate(str(tmp_path / "all.mg"), str(tmp_path / "back.vmig.jsonl"))
    assert read_all(tmp_path / "back.vmig.jsonl") == read_all(source)


# ---------------------------------------------------------------- the framework shapes


def test_framework_shapes(tmp_path: Path) -> None:
    """`vex grains encode --shape` for the objects the frameworks' APIs hand out."""
    doc = orjson.loads(SAMPLE.read_bytes())
    logs = {
        "mem0": [{"id": "5b0c", "memory": "I like jasmine tea", "hash": "ab", "metadata": {"topic": "drinks"},
                  "created_at": "2026-04-01T08:00:00.123456-07:00", "updated_at": None,
                  "user_id": "alice", "agent_id": "helper"}],
        "langgraph": [{"namespace": ["users", "alice"], "key": "prefs", "value": {"theme": "dark"},
                       "created_at": "2026-04-01T08:00:00+00:00", "updated_at": "2026-04-01T08:00:00+00:00"}],
        "letta_block": doc["blocks"], "letta_tool": doc["tools"], "letta_agent": [
            {k: v for k, v in doc["agents"][0].items() if k != "messages"}],
        "letta_message": doc["agents"][0]["messages"],
    }
    got = {}
    for shape, lines in logs.items():
        log = tmp_path / f"{shape}.jsonl"
        log.write_bytes(b"\n".join(orjson.dumps(line) for line in lines) + b"\n")
        encode_grains(log, tmp_path / f"{shape}.mg", shape=shape)
        got[shape] = [g["fields"] for g in decode_grains(tmp_path / f"{shape}.mg")]
    [memory] = got["mem0"]
    assert (memory["type"], memory["namespace"], memory["user_id"], memory["object"]) == (
        "belief", "agent_id=helper&user_id=alice", "alice", "I like jasmine tea")
    assert memory["context"] == {"agent_id": "helper", "hash": "ab", "metadata": {"topic": "drinks"}}
    [item] = got["langgraph"]
    assert (item["namespace"], item["subject"], item["object"]) == ("users.alice", "prefs", {"theme": "dark"})
    assert [b["type"] for b in got["letta_block"]] == ["state", "state"]
    assert got["letta_block"][0]["context"] == {"label": "human", "value": doc["blocks"][0]["value"],
                                                "description": "What I know about the user"}
    assert got["letta_block"][0]["created_at"] == 0 and "limit" in got["letta_block"][0]["source_fields"]
    assert [t["action_phase"] for t in got["letta_tool"]] == ["definition", "definition"]
    assert got["letta_agent"][0]["context"]["memory_blocks"] == ["block-0", "block-1"]
    assert [g["type"] for g in got["letta_message"]] == ["event", "event", "action", "event", "event"]
    assert got["letta_message"][2]["context"]["content"][0]["type"] == "reasoning"  # nothing dropped
    # the same kind of grain from a log as from the .af's records
    mg = tmp_path / "af.mg"
    migrate(f"letta-af:{SAMPLE}", str(mg))
    from_af = {g["fields"]["subject"]: g["type"] for g in decode_grains(mg)}
    assert all(from_af[g["subject"]] == g["type"] for shape in ("letta_block", "letta_tool", "letta_agent",
                                                                  "letta_message") for g in got[shape])
