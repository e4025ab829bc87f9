"""letta-af: Letta Agent Files read as records and written back as the same document, checked
against Letta's own models. tests/data/letta/sample.af was made with Letta's server types
(tests/data/letta/make_sample.py); the passages and the larger files here are made with the
``letta-client`` package's models. Every written file is validated with Letta's models: the
``letta-client`` ones always, and the server's ``AgentFileSchema`` where ``letta`` is installed
(it cannot be beside vexchange's pinned dependencies; docs/connectors/letta.md)."""

from __future__ import annotations

import copy
import random
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from vexchange import migrate, open_store, verify
from vexchange.connectors import _registry
from vexchange.connectors._base import Reject
from vexchange.connectors.letta_af import LettaAgentFileConnector
from vexchange.errors import DecodeError, UsageError
from vexchange.oms.container import MgReader
from vexchange.record import MemoryRecord
from vexchange.spec import StoreSpec
from vexchange.testing.conformance import ConnectorConformance, _Interrupting, read_all, write_vmig
from vexchange.testing.records import sample_records

letta_types = pytest.importorskip("letta_client.types")
from letta_client.types import EmbeddingConfig, LlmConfig, Passage, Tool  # noqa: E402
from letta_client.types.agent_state import ToolRule  # noqa: E402
from letta_client.types.agents.internal_message import InternalMessage  # noqa: E402
from letta_client.types.agents.text_content import TextContent  # noqa: E402
from letta_client.types.block_response import BlockResponse  # noqa: E402
from pydantic import TypeAdapter  # noqa: E402

SAMPLE = Path(__file__).parent / "data" / "letta" / "sample.af"
same = ConnectorConformance.assert_same
SECRET = "sk-live-do-not-leak-4f9a"


@pytest.fixture(autouse=True, scope="module")
def _registered() -> Iterator[None]:
    """The connector by name, as its builtin row will give it (not registered yet)."""
    _registry.register("letta-af", "vexchange.connectors.letta_af:LettaAgentFileConnector", replace=True)
    yield
    _registry._REGISTERED.pop("letta-af", None)


def load(path: Path) -> Any:
    return orjson.loads(path.read_bytes())


def items(location: str, batch_size: int = 50) -> list[MemoryRecord | Reject]:
    with open_store(location) as store:
        return [i for page in store.read(batch_size=batch_size) for i in page.items]


def records(location: str) -> list[MemoryRecord]:
    got = items(location)
    assert all(isinstance(i, MemoryRecord) for i in got), [i for i in got if isinstance(i, Reject)][:3]
    return [i for i in got if isinstance(i, MemoryRecord)]


_RULES: TypeAdapter[Any] = TypeAdapter(ToolRule)

try:  # the server package: where it is installed (not beside vexchange's pins), its own schema too
    from letta.schemas.agent_file import AgentFileSchema  # type: ignore[import-not-found,unused-ignore]
except ImportError:
    AgentFileSchema = None


def letta_validates(doc: dict[str, Any]) -> None:
    """Letta's own models accept the file: the server's AgentFileSchema where ``letta`` is
    installed, and always the letta-client models of every part (LLM and embedding configs,
    tool rules, messages, blocks, tools, passages)."""
    if AgentFileSchema is not None:
        AgentFileSchema.model_validate(doc)
    for key in ("agents", "groups", "blocks", "files", "sources", "tools", "mcp_servers"):
        assert isinstance(doc[key], list), key  # the lists Letta's schema requires
    for agent in doc["agents"]:
        LlmConfig.model_validate(agent["llm_config"])
        if agent.get("embedding_config") is not None:
            EmbeddingConfig.model_validate(agent["embedding_config"])
        for rule in agent.get("tool_rules") or []:
            _RULES.validate_python(rule)
        for message in agent.get("messages") or []:
            content = message.get("content")
            InternalMessage.model_validate({**message,
                                            "content": content if isinstance(content, list) else None})
    for block in doc["blocks"]:
        BlockResponse.model_validate(block)
    for tool in doc["tools"]:
        Tool.model_validate(tool)
    for passage in doc.get("passages", []):
        Passage.model_validate(passage)


# ------------------------------------------------------------------ files made with Letta's types

T0 = datetime(2026, 4, 1, 8, 0, 0, 250000, tzinfo=timezone.utc)


def passages(count: int, dims: int = 8, seed: int = 3) -> list[dict[str, Any]]:
    """Archival passages as letta-client's Passage model writes them (float32 embeddings)."""
    rng = np.random.default_rng(seed)
    config = EmbeddingConfig(embedding_endpoint_type="openai", embedding_model="text-embedding-3-small",
                             embedding_dim=dims)
    out = []
    for i in range(count):
        vector = rng.standard_normal(dims).astype("<f4")
        out.append(Passage(id=f"passage-{i}", text=f"archival fact {i}: the mooring is at pier {i % 7}",
                           embedding=[float(v) for v in vector], embedding_config=config,
                           created_at=T0 + timedelta(seconds=i), archive_id="archive-0",
                           metadata={"n": i, "tags": ["a", "b"]}, tags=["sailing"]).model_dump(mode="json"))
    return out


def with_passages(tmp_path: Path, count: int = 5) -> Path:
    doc = load(SAMPLE)
    doc["passages"] = passages(count)
    path = tmp_path / "with-passages.af"
    path.write_bytes(orjson.dumps(doc))
    return path


def long_conversation(tmp_path: Path, messages: int = 60) -> Path:
    """The sample with a longer conversation, its messages made with letta-client's model."""
    doc = load(SAMPLE)
    agent = doc["agents"][0]
    extra = [InternalMessage(id=f"message-{5 + i}", role="user" if i % 2 == 0 else "assistant",
                             agent_id="agent-0", model=None if i % 2 == 0 else "gpt-4o-mini",
                             content=[TextContent(type="text", text=f"turn {i} — ünïcode ✓")],
                             created_at=T0 + timedelta(minutes=i)).model_dump(mode="json", exclude_none=True)
             for i in range(messages)]
    agent["messages"] += extra
    agent["in_context_message_ids"] = [m["id"] for m in agent["messages"]]
    path = tmp_path / "long.af"
    path.write_bytes(orjson.dumps(doc))
    return path


# ------------------------------------------------------------------------------ reading


def test_every_object_of_the_file_is_a_record() -> None:
    got = records(f"letta-af:{SAMPLE}")
    kinds = Counter((r.metadata or {})["letta_kind"] for r in got)
    assert kinds == {"agent_file": 1, "agent": 1, "message": 5, "block": 2, "tool": 2, "file": 1,
                     "source": 1, "mcp_server": 1, "skill": 1}
    by_id = {r.id: r for r in got}
    doc = load(SAMPLE)
    assert by_id["agent-0"].text == doc["agents"][0]["system"]
    assert by_id["block-0"].text == doc["blocks"][0]["value"] and by_id["block-0"].namespace == "letta-blocks"
    assert by_id["tool-0"].text == doc["tools"][0]["description"]
    messages = [r for r in got if r.namespace == "letta-messages"]
    assert [r.id for r in messages] == [m["id"] for m in doc["agents"][0]["messages"]]
    roles = [(r.metadata or {})["role"] for r in messages]
    assert roles == ["system", "user", "assistant", "tool", "assistant"]
    assert {(r.metadata or {})["conversation_id"] for r in messages} == {"agent-0"}
    assert messages[1].text == "Hi Sam, I'm Chad. I sail on weekends ⛵."
    assert messages[2].text is None  # reasoning and a tool call: no text part, kept whole
    assert (messages[2].metadata or {})["letta"]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert messages[1].created_at == int(datetime.fromisoformat(
        doc["agents"][0]["messages"][1]["created_at"].replace("Z", "+00:00")).timestamp() * 1000)
    exact = doc["agents"][0]["messages"][1]["created_at"]
    assert (messages[1].metadata or {})["letta"]["created_at"] == exact  # microseconds kept


def test_passages_carry_their_embeddings_as_float32(tmp_path: Path) -> None:
    path = with_passages(tmp_path)
    doc = load(path)
    got = [r for r in records(f"letta-af:{path}") if r.namespace == "letta-passages"]
    assert [r.id for r in got] == [p["id"] for p in doc["passages"]]
    for record, passage in zip(got, doc["passages"], strict=True):
        assert record.vector is not None and record.vector.model == "text-embedding-3-small"
        assert record.vector.data == np.asarray(passage["embedding"], dtype="<f4").tobytes()
        assert record.text == passage["text"] and "embedding" not in (record.metadata or {})["letta"]


def test_an_embedding_that_is_not_float32_is_a_counted_reject(tmp_path: Path) -> None:
    doc = load(SAMPLE)
    doc["passages"] = passages(2)
    doc["passages"][1]["embedding"][0] = 0.1  # a float64 no float32 equals
    path = tmp_path / "bad.af"
    path.write_bytes(orjson.dumps(doc))
    rejects = [i for i in items(f"letta-af:{path}") if isinstance(i, Reject)]
    assert [(r.reason, r.id) for r in rejects] == [("not_float32", "passage-1")]
    receipt = migrate(f"letta-af:{path}", tmp_path / "out.vmig.jsonl", allow_skips=True)
    assert receipt.counts.skipped == {"not_float32": 1}


def test_every_cursor_resumes_exactly(tmp_path: Path) -> None:
    location = f"letta-af:{long_conversation(tmp_path)}"
    whole = [i.id for i in items(location) if isinstance(i, MemoryRecord)]
    with open_store(location) as store:
        handed = 0
        for page in list(store.read(batch_size=7))[:-1]:
            handed += len(page.items)
            rest = [i.id for p in store.read(batch_size=11, after=page.cursor) for i in p.items]
            assert rest == whole[handed:]


def test_a_document_saved_as_a_json_string_is_read(tmp_path: Path) -> None:
    path = tmp_path / "twice.af"
    path.write_bytes(orjson.dumps(SAMPLE.read_text()))  # what saving export_file's str as JSON gives
    same(records(f"letta-af:{SAMPLE}"), read_all(f"letta-af:{path}"))


# ------------------------------------------------------------------------------ round trips


def test_round_trip_through_vmig_vektor_and_mg_is_exact(tmp_path: Path) -> None:
    source = with_passages(tmp_path)
    original = records(f"letta-af:{source}")
    vmig, db, grains, back = (tmp_path / "a.vmig.jsonl", f"vektor:{tmp_path / 'a.db'}", tmp_path / "a.mg",
                              tmp_path / "back.af")
    migrate(f"letta-af:{source}", vmig)
    migrate(vmig, db)
    migrate(db, grains)
    receipt = migrate(grains, f"letta-af:{back}")
    assert receipt.counts.written == len(original) and not receipt.counts.skipped
    for location in (vmig, db, grains, f"letta-af:{back}"):
        same(original, read_all(location), strict=True)
    assert load(back) == load(source)  # the same document: every object, every field
    assert "vexchange" not in load(back)  # nothing needed the extension
    letta_validates(load(back))
    assert verify(f"letta-af:{back}", receipt=tmp_path / "back.af.receipt.json").ok
    assert verify(f"letta-af:{back}", against=f"letta-af:{source}").ok


def test_messages_are_event_grains(tmp_path: Path) -> None:
    grains = tmp_path / "agent.mg"
    migrate(f"letta-af:{SAMPLE}", grains)
    with MgReader(grains) as reader:
        kinds = Counter(reader[i].type for i in range(len(reader)))
        events = [reader[i].fields for i in range(len(reader)) if reader[i].type == "event"]
    # blocks and the agent are States, tools and the tool-call message Actions (docs/connectors/letta.md)
    assert kinds == {"belief": 5, "event": 4, "state": 3, "action": 3}
    assert {e["session_id"] for e in events} == {"agent-0"}
    assert [e["role"] for e in events] == ["system", "user", "tool", "assistant"]
    assert events[0]["model_id"] == "gpt-4o-mini"


def test_records_in_any_order_make_the_same_file(tmp_path: Path) -> None:
    """A store hands records back in its own order: positions put each list back in order."""
    got = records(f"letta-af:{long_conversation(tmp_path)}")
    random.Random(7).shuffle(got)
    shuffled = write_vmig(tmp_path / "shuffled.vmig.jsonl", got)
    out = tmp_path / "out.af"
    migrate(shuffled, f"letta-af:{out}", batch_size=9)
    assert load(out) == load(tmp_path / "long.af")
    letta_validates(load(out))


def test_an_interrupted_write_resumes(tmp_path: Path) -> None:
    source = f"letta-af:{long_conversation(tmp_path)}"
    out = tmp_path / "out.af"
    options: dict[str, Any] = {"batch_size": 6, "receipt": tmp_path / "r.json",
                               "rejects": tmp_path / "r.rejects.jsonl"}
    with pytest.raises(KeyboardInterrupt):
        migrate(_Interrupting(open_store(source), pages=4), f"letta-af:{out}", **options)
    assert not out.exists()
    receipt = migrate(source, f"letta-af:{out}", resume=True, **options)
    assert receipt.counts.written == len(records(source))
    assert load(out) == load(tmp_path / "long.af")
    assert not list(tmp_path.glob("out.af.*partial"))


# ------------------------------------------------------------------ records from elsewhere


def test_records_of_another_source_become_passages_and_read_back_exactly(tmp_path: Path) -> None:
    foreign = list(sample_records(40, dims=8, named=("title",), sparse=True))
    vmig = write_vmig(tmp_path / "other.vmig.jsonl", foreign)
    out = tmp_path / "other.af"
    receipt = migrate(vmig, f"letta-af:{out}")
    assert receipt.counts.written == len(foreign)
    doc = load(out)
    letta_validates(doc)
    assert doc["agents"] == [] and len(doc["passages"]) == len(foreign)
    with_vector = next(p for p, r in zip(doc["passages"], foreign, strict=True) if r.vector is not None)
    assert len(with_vector["embedding"]) == 8
    same(foreign, read_all(f"letta-af:{out}"), strict=True)
    assert verify(f"letta-af:{out}", against=vmig).ok


def test_changed_and_homeless_records_are_kept_exactly(tmp_path: Path) -> None:
    """A block given a vector, records read into one namespace, a message whose agent is not
    written: all read back exactly (the extension keeps what the Letta objects cannot say)."""
    got = records(f"letta-af:{SAMPLE}?namespace=agent")
    changed = [r.replace(vectors={"": sample_vector()}) if r.id == "block-0" else r for r in got]
    changed = [r for r in changed if r.id != "agent-0"]  # its messages lose their agent
    out = tmp_path / "changed.af"
    migrate(write_vmig(tmp_path / "c.vmig.jsonl", changed), f"letta-af:{out}")
    same(changed, read_all(f"letta-af:{out}"), strict=True)
    doc = load(out)
    letta_validates(doc)
    assert len(doc["vexchange"]["unplaced"]) == 5 and doc["agents"] == []


def sample_vector() -> Any:
    from vexchange.record import Vector
    return Vector.from_values([0.5, -1.25, 3.0], model="m")


def test_one_id_twice_in_one_list_is_refused_by_name(tmp_path: Path) -> None:
    first = MemoryRecord(id="p1", text="one", namespace="a")
    second = MemoryRecord(id="p1", text="two", namespace="b")
    vmig = write_vmig(tmp_path / "dup.vmig.jsonl", [first, second])
    receipt = migrate(vmig, f"letta-af:{tmp_path / 'dup.af'}", allow_skips=True)
    assert receipt.counts.skipped == {"duplicate_id": 1}
    assert [p["text"] for p in load(tmp_path / "dup.af")["passages"]] == ["one"]


# ------------------------------------------------------------------------------ secrets


def test_secrets_never_reach_a_record_or_a_file(tmp_path: Path) -> None:
    doc = load(SAMPLE)
    agent = doc["agents"][0]
    agent["secrets"] = {"WEATHER_API_KEY": SECRET}
    agent["tool_exec_environment_variables"] = {"WEATHER_API_KEY": SECRET}
    doc["mcp_servers"][0].update(token=SECRET, custom_headers={"Authorization": SECRET},
                                 stdio_config={"command": "charts", "args": [], "env": {"KEY": SECRET}})
    leaky = tmp_path / "leaky.af"
    leaky.write_bytes(orjson.dumps(doc))
    got = records(f"letta-af:{leaky}")
    assert SECRET not in orjson.dumps([r.metadata for r in got]).decode()
    vmig, back = tmp_path / "x.vmig.jsonl", tmp_path / "back.af"
    migrate(f"letta-af:{leaky}", vmig)
    migrate(vmig, f"letta-af:{back}")
    for path in tmp_path.iterdir():  # records, receipts, the written file: all but the input
        assert path == leaky or SECRET.encode() not in path.read_bytes(), path
    written = load(back)
    assert written["agents"][0]["secrets"] == {"WEATHER_API_KEY": ""}  # Letta's own export rule
    assert written["mcp_servers"][0]["stdio_config"] == {"command": "charts", "args": []}
    letta_validates(written)


def test_secrets_in_records_from_elsewhere_are_removed_on_write(tmp_path: Path) -> None:
    got = records(f"letta-af:{SAMPLE}")
    leaky = []
    for record in got:
        if record.id == "agent-0":
            letta = copy.deepcopy((record.metadata or {})["letta"])
            letta["secrets"] = {"WEATHER_API_KEY": SECRET}
            record = record.replace(metadata={**(record.metadata or {}), "letta": letta})
        leaky.append(record)
    out = tmp_path / "out.af"
    migrate(write_vmig(tmp_path / "leaky.vmig.jsonl", leaky), f"letta-af:{out}")
    assert SECRET.encode() not in out.read_bytes()
    assert load(out) == load(SAMPLE)


# ------------------------------------------------------------------------------ broken input


@pytest.mark.parametrize(("body", "words"), [
    (b"{not json", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"core_memory": [], "messages": []}', "legacy single-agent"),
    (b'{"blocks": []}', "no 'agents' list"),
])
def test_broken_files_are_clear_errors(tmp_path: Path, body: bytes, words: str) -> None:
    path = tmp_path / "broken.af"
    path.write_bytes(body)
    with pytest.raises(DecodeError, match=words):
        items(f"letta-af:{path}")


def test_locations(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such Letta agent file"):
        items(f"letta-af:{tmp_path / 'missing.af'}")
    with pytest.raises(UsageError):
        open_store(f"letta-af:{SAMPLE}?nmespace=x")
    connector = LettaAgentFileConnector(StoreSpec(scheme="letta-af", path=str(SAMPLE)))
    assert connector.count() == 15 and connector.describe()["connector"] == "letta-af"
    assert {r.namespace for r in records(f"letta-af:{SAMPLE}?namespace=sam")} == {"sam"}


def test_embeddings_in_letta_apis_shortest_form_read_and_write_back_the_same(tmp_path: Path) -> None:
    """Letta's REST API writes a float32 embedding in its shortest decimal form (``0.0022848654``,
    not the double ``0.002284865407...``): it reads as the same float32s and is written back in
    the form the file had; a value that is neither form stays a reject."""
    doc = load(SAMPLE)
    doc["passages"] = passages(3)
    for passage in doc["passages"]:
        passage["embedding"] = [float(str(np.float32(v))) for v in passage["embedding"]]
    assert any(v != float(np.float32(v)) or str(v) != repr(float(np.float32(v)))
               for v in doc["passages"][0]["embedding"])
    path = tmp_path / "short.af"
    path.write_bytes(orjson.dumps(doc))
    got = [r for r in records(f"letta-af:{path}") if r.namespace == "letta-passages"]
    for record, passage in zip(got, doc["passages"], strict=True):
        assert record.vector is not None
        assert record.vector.data == np.asarray(passage["embedding"], dtype="<f4").tobytes()
    back = tmp_path / "back.af"
    migrate(write_vmig(tmp_path / "short.vmig.jsonl", records(f"letta-af:{path}")), f"letta-af:{back}")
    assert load(back) == doc and "vexchange" not in load(back)
    letta_validates(load(back))
