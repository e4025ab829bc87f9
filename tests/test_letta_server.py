"""Letta Agent Files against a running Letta server (PyPI ``letta`` 0.16.8, its own REST API,
export and import): memory made through Letta's API, exported by Letta, moved by vexchange
through other formats and back, imported by Letta, read back through Letta's API.

The server runs from a venv of its own (vexchange.testing.letta_server: ``letta`` cannot be
installed beside vexchange's pins), on loopback, with PostgreSQL + pgvector and the offline
MiniLM embedder behind a local OpenAI-compatible endpoint; no LLM. Skipped where that venv is
missing, except under CI (``CI`` set), where it fails: ``.ci/run`` installs it.

What Letta keeps on import, and so what is compared (docs/connectors/letta.md):
* an ``.af`` names objects with file-local ids (``agent-0``, ``block-1``, ``message-3``); Letta
  gives every imported object a new server id and exports them with the same file ids again,
  so ids are compared in the files (exactly) and server objects by position;
* each message's ``otid`` (an idempotency key) is generated anew on import;
* archival passages are not part of Letta's Agent File: they travel in the file's ``passages``
  key (Letta's own Passage objects, as its API lists them), and are put back through Letta's
  passages API, which takes text, tags and time and assigns new ids: passages are compared by
  text, tags, time and embedding (bit for bit: Letta embeds them again with the same model).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from vexchange import migrate, open_store, verify
from vexchange.connectors import _registry
from vexchange.connectors._base import Reject
from vexchange.record import MemoryRecord
from vexchange.testing import letta_server
from vexchange.testing.conformance import ConnectorConformance, read_all

letta_client = pytest.importorskip("letta_client")
from letta_client import Letta  # noqa: E402

pytestmark = pytest.mark.slow

SAMPLE = Path(__file__).parent / "data" / "letta" / "sample.af"
same = ConnectorConformance.assert_same

PASSAGES = [
    ("The mooring is at pier 7, behind the fuel dock.", ["harbour"]),
    ("Chad's boat is a 26-foot sloop called Petrel.", ["boat"]),
    ("The jib sheet frayed in March and was replaced with Dyneema.", ["boat", "repairs"]),
    ("High tide on Saturdays is usually around nine in the morning.", ["tides"]),
    ("Chad gets seasick on long beam reaches; ginger helps.", ["health"]),
    ("The yacht club dinner is on the first Friday of the month.", ["social"]),
    ("Always check the weather forecast before crossing the bay.", ["safety"]),
    ("Chad's sister Ana crews for him in the autumn regatta.", ["people"]),
    ("The outboard motor needs a new spark plug every season.", ["repairs"]),
    ("Dolphins were seen near the lighthouse last July.", ["wildlife"]),
    ("Chad prefers jasmine tea to coffee on the water ☕.", ["food"]),
    ("The emergency VHF channel is 16.", ["safety"]),
]
PROBES = ["where is the boat kept", "what broke on the boat", "when is the tide high",
          "who sails with Chad", "what should I drink", "radio channel for help"]


@pytest.fixture(scope="module", autouse=True)
def _registered() -> Iterator[None]:
    _registry.register("letta-af", "vexchange.connectors.letta_af:LettaAgentFileConnector", replace=True)
    yield
    _registry._REGISTERED.pop("letta-af", None)


@pytest.fixture(scope="session")
def letta(tmp_path_factory: pytest.TempPathFactory) -> Iterator[letta_server.LettaServer]:
    """A Letta server of our own for the session, stopped (by pid) at its end; or the one
    ``$VEXTEST_LETTA_SERVER`` names (the directory a ``letta_server start`` wrote), left running."""
    running = os.environ.get("VEXTEST_LETTA_SERVER")
    if running:
        yield letta_server.load(Path(running))
        return
    if not letta_server.installed():
        why = (f"no Letta {letta_server.LETTA_VERSION} venv at {letta_server.default_venv()}"
               " (python -m vexchange.testing.letta_server install)")
        if os.environ.get("CI"):
            pytest.fail(f"the Letta server tests must run under CI: {why}")
        pytest.skip(why)
    workdir = tmp_path_factory.mktemp("letta-server")
    server = letta_server.start(workdir)
    try:
        yield server
    finally:
        letta_server.stop(workdir)


@pytest.fixture(scope="session")
def client(letta: letta_server.LettaServer) -> Letta:
    return Letta(base_url=letta.base_url, api_key="unused-local", timeout=120, max_retries=0)


def load(path: Path) -> Any:
    return orjson.loads(path.read_bytes())


def in_order(location: str) -> list[MemoryRecord]:
    """The records of a location in the order its connector hands them over."""
    with open_store(location) as store:
        got = [i for page in store.read(batch_size=50) for i in page.items]
    assert all(isinstance(i, MemoryRecord) for i in got), [i for i in got if isinstance(i, Reject)][:1]
    return [i for i in got if isinstance(i, MemoryRecord)]


def without(value: Any, keys: frozenset[str]) -> Any:
    """``value`` with ``keys`` removed from every object at any depth."""
    if isinstance(value, dict):
        return {k: without(v, keys) for k, v in value.items() if k not in keys}
    if isinstance(value, list):
        return [without(v, keys) for v in value]
    return value


def differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Where two JSON values differ (paths, with short values), for readable failures."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(a.keys() | b.keys())
                for d in differences(a.get(k, "<missing>"), b.get(k, "<missing>"), f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True))
                for d in differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {str(a)[:80]!r} != {str(b)[:80]!r}"]


def canonical(doc: dict[str, Any]) -> dict[str, Any]:
    """An exported file with its blocks and tools named by label and name instead of file ids
    and sorted by them: Letta numbers them in the order its database lists them, which an
    import does not keep (the agent's ``block_ids``/``tool_ids`` follow the same renaming)."""
    doc = without(doc, REGENERATED)
    names = {b["id"]: f"block:{b['label']}" for b in doc["blocks"]}
    names |= {t["id"]: f"tool:{t['name']}" for t in doc["tools"]}
    for key in ("blocks", "tools"):
        doc[key] = sorted(({**o, "id": names[o["id"]]} for o in doc[key]), key=lambda o: str(o["id"]))
    for agent in doc["agents"]:
        for key in ("block_ids", "tool_ids"):
            agent[key] = sorted(names[i] for i in agent[key] or [])
    return doc


REGENERATED = frozenset({"otid"})
"""What Letta generates anew for each imported object (besides its server id)."""


def configs(letta: letta_server.LettaServer) -> tuple[Any, Any]:
    """The agent's llm and embedding configs (plain dicts, as the client's TypedDicts take)."""
    return letta_server.llm_config(letta), letta_server.embedding_config(letta)


def make_agent(client: Letta, letta: letta_server.LettaServer) -> str:
    """An agent made through Letta's REST API only: blocks, a conversation, archival passages."""
    agent = client.agents.create(
        name="sailing-buddy", system="You are Sam, a calm sailing buddy who remembers everything.",
        description="remembers Chad's sailing life", tags=["sailing", "test"],
        metadata={"team": "blue", "n": 3},
        memory_blocks=[
            {"label": "human", "value": "Name: Chad. Sails on weekends. Likes précis answers ⛵.",
             "limit": 4000},
            {"label": "persona", "value": "I am Sam.", "description": "who I am", "limit": 2000},
            {"label": "boat", "value": "Petrel, 26 ft sloop, berth 7.", "description": "the boat",
             "metadata": {"source": "chad"}},
        ],
        initial_message_sequence=[
            {"role": "user", "content": "Hi Sam, I'm Chad. I sail on weekends."},
            {"role": "assistant", "content": "Nice to meet you, Chad! Where do you keep your boat?"},
            {"role": "user", "content": "At pier 7 — the one with the red crane."},
        ],
        llm_config=configs(letta)[0], embedding_config=configs(letta)[1],
        include_base_tools=True)
    for n, (text, tags) in enumerate(PASSAGES):
        client.agents.passages.create(agent.id, text=text, tags=tags,
                                      created_at=f"2026-04-01T08:{n:02d}:00.{123456 + n}+00:00")
    return agent.id


def passages(client: Letta, agent_id: str) -> list[dict[str, Any]]:
    """The agent's archival passages as Letta's API gives them (Letta's Passage objects)."""
    found = client.agents.passages.list(agent_id, limit=1000, ascending=True)
    return [p.model_dump(mode="json") for p in found]


def searches(client: Letta, agent_id: str) -> list[list[str]]:
    """Letta's own archival search, top 3 passage ids for each probe query."""
    return [[r.id for r in client.agents.passages.search(agent_id, query=q, top_k=3).results]
            for q in PROBES]


def kept(passage: dict[str, Any]) -> tuple[Any, ...]:
    """What Letta keeps of a passage through its passages API (its id it assigns anew; its
    tags as a set: Letta lists a passage's tags in no fixed order, read to read)."""
    return (passage["text"], sorted(passage["tags"] or []), passage["created_at"], passage["metadata"],
            np.asarray(passage["embedding"], dtype="<f4").tobytes())


def messages(client: Letta, agent_id: str) -> list[dict[str, Any]]:
    """The agent's messages through Letta's API, oldest first, without the ids Letta assigns."""
    found = client.agents.messages.list(agent_id, order="asc", limit=1000)
    return [without(m.model_dump(mode="json"), frozenset({"id", "otid", "sender_id", "run_id",
                                                          "step_id"})) for m in found]


def blocks(client: Letta, agent_id: str) -> list[dict[str, Any]]:
    found = client.agents.blocks.list(agent_id, limit=100)
    dumped = [without(b.model_dump(mode="json"), frozenset({"id", "created_by_id",
                                                            "last_updated_by_id"})) for b in found]
    return sorted(dumped, key=lambda b: b["label"])


def import_file(client: Letta, path: Path) -> str:
    with open(path, "rb") as body:
        done = client.agents.import_file(file=(path.name, body, "application/json"),
                                         append_copy_suffix=False)
    assert len(done.agent_ids) == 1, done
    return done.agent_ids[0]


def insert_passages(client: Letta, agent_id: str, records: list[MemoryRecord]) -> None:
    """The archival passages of an ``.af`` read by vexchange, put into an agent through Letta's
    passages API (Letta's import ignores the file's ``passages``)."""
    for record in records:
        letta = (record.metadata or {})["letta"]
        client.agents.passages.create(agent_id, text=record.text or "", tags=letta.get("tags"),
                                      created_at=letta.get("created_at"))


# ------------------------------------------------------------------------------ the round trip


def test_an_agent_made_by_letta_goes_out_and_back_exactly(tmp_path: Path, client: Letta,
                                                          letta: letta_server.LettaServer) -> None:
    source = make_agent(client, letta)
    before_search = searches(client, source)
    before_passages = passages(client, source)
    assert len(before_passages) == len(PASSAGES)

    # Letta's own export; its passages (Letta's objects from its API) in the file's `passages`
    exported = json.loads(client.agents.export_file(source))
    exported["passages"] = before_passages
    original = tmp_path / "sailing.af"
    original.write_bytes(orjson.dumps(exported))

    records = in_order(f"letta-af:{original}")
    vmig, grains, back = tmp_path / "a.vmig.jsonl", tmp_path / "a.mg", tmp_path / "back.af"
    migrate(f"letta-af:{original}", vmig)
    migrate(vmig, grains)
    receipt = migrate(grains, f"letta-af:{back}")
    assert receipt.counts.written == len(records) and not receipt.counts.skipped
    same(records, read_all(f"letta-af:{back}"), strict=True)
    assert load(back) == load(original)  # the same document, every object and field
    assert verify(f"letta-af:{back}", against=f"letta-af:{original}").ok

    # Letta imports vexchange's file; its export of the new agent is the file Letta first gave
    target = import_file(client, back)
    assert target != source
    again = json.loads(client.agents.export_file(target))
    first = {k: v for k, v in exported.items() if k not in ("passages", "created_at")}
    assert differences(canonical({k: v for k, v in again.items() if k != "created_at"}),
                       canonical(first)) == []

    # through Letta's API: every block and message, by what Letta keeps
    assert blocks(client, target) == blocks(client, source)
    assert messages(client, target) == messages(client, source)
    assert len(messages(client, source)) >= 4

    # archival passages back through Letta's passages API, from the records vexchange read
    moved = [r for r in in_order(f"letta-af:{back}") if r.namespace == "letta-passages"]
    assert [r.id for r in moved] == [p["id"] for p in before_passages]
    for record, passage in zip(moved, before_passages, strict=True):
        assert record.vector is not None
        assert record.vector.data == np.asarray(passage["embedding"], dtype="<f4").tobytes()
    insert_passages(client, target, moved)
    after_passages = passages(client, target)
    assert [kept(p) for p in after_passages] == [kept(p) for p in before_passages]  # vectors too
    new_id = {p["id"]: q["id"] for p, q in zip(before_passages, after_passages, strict=True)}
    assert len(set(new_id.values())) == len(PASSAGES)

    # Letta's own archival search finds the same passages, in the same order, for every probe
    after_search = searches(client, target)
    assert after_search == [[new_id[i] for i in hits] for hits in before_search]
    assert all(len(hits) == 3 for hits in before_search)
    hits = {p["id"]: p["text"] for p in before_passages}
    assert "pier 7" in hits[before_search[0][0]]  # the search means something: real embeddings


def test_letta_embeds_what_vexchange_carried(tmp_path: Path, client: Letta,
                                             letta: letta_server.LettaServer) -> None:
    """The vectors in Letta are the offline MiniLM's, bit for bit, padded by Letta to pgvector's
    4096 columns: what a move keeps is what Letta would compute."""
    from vexchange.embed import get_embedder

    agent = client.agents.create(name="embed-check", llm_config=configs(letta)[0],
                                 embedding_config=configs(letta)[1],
                                 include_base_tools=False)
    text = PASSAGES[1][0]
    client.agents.passages.create(agent.id, text=text)
    (stored,) = passages(client, agent.id)
    vector = np.asarray(stored["embedding"], dtype="<f4")
    dims = letta_server.EMBEDDING_DIMS
    assert vector.shape == (4096,) and not vector[dims:].any()
    assert vector[:dims].tobytes() == get_embedder("minilm").embed([text])[0].astype("<f4").tobytes()


# ------------------------------------------------------------------ a file vexchange wrote


def local_sample(tmp_path: Path, letta: letta_server.LettaServer) -> Path:
    """tests/data/letta/sample.af (made with Letta's types) pointed at what runs here: its
    model and embedding endpoints at the local ones, its MCP server at a public name (Letta
    refuses loopback MCP URLs; nothing connects to it on import)."""
    doc = load(SAMPLE)
    doc["mcp_servers"][0]["server_url"] = "https://charts.example.com/mcp"
    for agent in doc["agents"]:
        agent["embedding_config"] = letta_server.embedding_config(letta)
        agent["llm_config"] = {**agent["llm_config"], **letta_server.llm_config(letta)}
    for source in doc["sources"]:
        source["embedding_config"] = letta_server.embedding_config(letta)
    path = tmp_path / "sample-local.af"
    path.write_bytes(orjson.dumps(doc))
    return path


def test_a_file_vexchange_wrote_from_grains_imports_into_letta(tmp_path: Path, client: Letta,
                                                              letta: letta_server.LettaServer) -> None:
    """The sample (tools with code, tool rules, a tool call and its return, a source and its
    file, an MCP server) through a VEKTOR store and OMS grains, written as an ``.af`` by
    vexchange: Letta imports it, and gives the same agent as from the original file."""
    original = local_sample(tmp_path, letta)
    db, grains, back = f"vektor:{tmp_path / 's.db'}", tmp_path / "s.mg", tmp_path / "s-back.af"
    migrate(f"letta-af:{original}", db)
    migrate(db, grains)
    migrate(grains, f"letta-af:{back}")
    assert load(back) == load(original)

    direct, moved = import_file(client, original), import_file(client, back)
    strip = REGENERATED | {"created_at"}
    # the file's own time, and the server times of objects Letta reuses (tools by name)
    exports = [without(canonical(json.loads(client.agents.export_file(a))), strip) for a in (direct, moved)]
    assert differences(exports[0], exports[1]) == []
    assert blocks(client, moved) == blocks(client, direct)
    assert messages(client, moved) == messages(client, direct)
    texts = [m.get("content") for m in messages(client, moved) if m["message_type"] == "user_message"]
    assert texts and all(isinstance(t, str) for t in texts)
    sample_blocks = {b["label"]: b["value"] for b in load(SAMPLE)["blocks"]}
    assert {b["label"]: b["value"] for b in blocks(client, moved)} == sample_blocks
