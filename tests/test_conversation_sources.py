"""claude-export and chatgpt-export: conversation exports (written by the project's own
generators in the documented shapes) read as records into any store, branches kept, exchanges,
attachments by reference, broken input counted or refused clearly, memory flat."""

from __future__ import annotations

import io
import tracemalloc
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from vexchange import migrate, open_store, verify
from vexchange.checks import inspect
from vexchange.cli import main
from vexchange.connectors import _conversations
from vexchange.connectors._base import Reject
from vexchange.connectors._conversations import JsonElements, Truncated
from vexchange.errors import DecodeError, UsageError, VexError
from vexchange.oms.container import MgReader
from vexchange.record import MemoryRecord
from vexchange.testing.conformance import ConnectorConformance, _Interrupting, read_all
from vexchange.testing.conversations import Export, write_chatgpt_export, write_claude_export

same = ConnectorConformance.assert_same


def items(location: str, batch_size: int = 50) -> list[MemoryRecord | Reject]:
    with open_store(location) as store:
        return [item for page in store.read(batch_size=batch_size) for item in page.items]


def records(location: str) -> list[MemoryRecord]:
    got = items(location)
    assert all(isinstance(i, MemoryRecord) for i in got), [i for i in got if isinstance(i, Reject)][:3]
    return [i for i in got if isinstance(i, MemoryRecord)]


@pytest.fixture(scope="module")
def claude(tmp_path_factory: pytest.TempPathFactory) -> Export:
    return write_claude_export(tmp_path_factory.mktemp("claude") / "export.zip", seed=3)


@pytest.fixture(scope="module")
def chatgpt(tmp_path_factory: pytest.TempPathFactory) -> Export:
    return write_chatgpt_export(tmp_path_factory.mktemp("chatgpt") / "export.zip", seed=5)


# -------------------------------------------------------------------------- the contract


def test_claude_zip_folder_and_file_read_the_same(tmp_path: Path, claude: Export) -> None:
    zipped = records(f"claude-export://{claude.path}")
    assert len(zipped) == claude.messages + claude.others
    roles = Counter(r.metadata["role"] for r in zipped if r.metadata)
    assert roles == {"user": 12, "assistant": 12, "project": 2, "project_doc": 4, "memory": 3}
    folder = write_claude_export(tmp_path / "unpacked", seed=3, form="folder").path
    same(zipped, read_all(f"claude-export://{folder}"))
    alone = write_claude_export(tmp_path / "conversations.json", seed=3, form="file").path
    messages = [r for r in zipped if r.namespace == "claude-conversations"]
    same(messages, read_all(f"claude-export:{alone}"))
    assert {r.namespace for r in zipped} == {"claude-conversations", "claude-projects", "claude-memories"}


def test_claude_message_records_keep_the_contract(claude: Export) -> None:
    messages = [r for r in records(f"claude-export://{claude.path}")
                if r.namespace == "claude-conversations"]
    conversations: dict[str, list[MemoryRecord]] = {}
    for record in messages:
        conversations.setdefault(record.metadata["conversation_id"], []).append(record)  # type: ignore[index]
    assert len(conversations) == claude.conversations
    raw = orjson.loads(zipfile.ZipFile(claude.path).read("conversations.json"))
    for conv in raw:
        got = conversations[conv["uuid"]]
        assert [r.id for r in got] == [m["uuid"] for m in conv["chat_messages"]]
        assert [r.text for r in got] == [m["text"] for m in conv["chat_messages"]]  # exact, not trimmed
        for position, (record, message) in enumerate(zip(got, conv["chat_messages"], strict=True)):
            meta = record.metadata or {}
            assert meta["position"] == position and meta["branch"] == 0
            assert meta["role"] == {"human": "user"}.get(message["sender"], message["sender"])
            assert meta["conversation_name"] == conv["name"]
            assert meta["source_format"] == "claude.ai"
            assert meta["parent_id"] == (got[position - 1].id if position else None)
            assert meta.get("project_id") == conv.get("project_uuid")
            assert record.created_at is not None and record.vectors == {}
            assert record.source_store == "claude-export"
    thinking = [r for r in messages if "thinking" in (r.metadata or {}).get("content_types", [])]
    assert thinking  # the blocks that are not text are named, not carried


def test_claude_projects_and_memories(claude: Export) -> None:
    got = records(f"claude-export://{claude.path}")
    projects = [r for r in got if r.metadata and r.metadata["role"] == "project"]
    docs = [r for r in got if r.metadata and r.metadata["role"] == "project_doc"]
    memories = [r for r in got if r.metadata and r.metadata["role"] == "memory"]
    assert all(r.text and r.metadata and r.metadata["project_name"] for r in projects)
    assert all(r.metadata and r.metadata["file_name"].endswith(".md") for r in docs)
    assert {(r.metadata or {})["scope"] for r in memories} == {"account", "project"}
    assert all(r.id.startswith("memory:") for r in memories)


def test_users_json_and_attachment_content_never_reach_the_output(tmp_path: Path, claude: Export) -> None:
    out = tmp_path / "out.vmig.jsonl"
    receipt = migrate(f"claude-export://{claude.path}", out)
    assert receipt.counts.written == claude.messages + claude.others
    written = out.read_text()
    for private in ("test.user@example.com", "Test User", "SECRET CONTENT"):
        assert private not in written
    same(records(f"claude-export://{claude.path}"), read_all(out))
    assert verify(out, against=f"claude-export://{claude.path}")["ok"]


def test_chatgpt_every_branch_is_kept(chatgpt: Export) -> None:
    got = records(f"chatgpt-export://{chatgpt.path}")
    assert len(got) == chatgpt.messages
    main_path = [r for r in got if (r.metadata or {})["branch"] == 0]
    assert len(main_path) == chatgpt.main_messages
    raw = orjson.loads(zipfile.ZipFile(chatgpt.path).read("conversations.json"))
    for conv in raw:
        mine = [r for r in got if (r.metadata or {})["conversation_id"] == conv["conversation_id"]]
        main = [r for r in mine if (r.metadata or {})["branch"] == 0]
        assert [(r.metadata or {})["position"] for r in main] == list(range(len(main)))
        assert main[-1].id == conv["current_node"]  # the main path ends where ChatGPT shows it
        def says(node: dict[str, Any]) -> bool:
            return bool(node["message"]) and node["message"]["content"].get("parts") != [""]

        path, key = [], conv["current_node"]
        while key:
            if says(conv["mapping"][key]):
                path.append(key)
            key = conv["mapping"][key]["parent"]
        assert [r.id for r in main] == path[::-1]
        off = [r for r in mine if (r.metadata or {})["branch"] > 0]
        assert {r.id for r in off} | {r.id for r in main} == {
            k for k, n in conv["mapping"].items() if says(n)}
        by_id = {r.id: r for r in mine}
        for record in off:  # each hangs off its parent, at the position of what it replaces
            parent = by_id[(record.metadata or {})["parent_id"]]
            assert (record.metadata or {})["position"] == (parent.metadata or {})["position"] + 1
    only_main = records(f"chatgpt-export://{chatgpt.path}?branches=main")
    same(main_path, {(r.namespace, r.id): r for r in only_main})


def test_chatgpt_metadata_and_times(chatgpt: Export) -> None:
    got = records(f"chatgpt-export://{chatgpt.path}")
    first = got[0]
    meta = first.metadata or {}
    assert meta["source_format"] == "chatgpt" and meta["role"] == "user"
    assert first.namespace == "chatgpt-conversations"
    assert first.created_at is not None and first.created_at % 1000 == 123  # float seconds, to the ms
    answers = [r for r in got if (r.metadata or {})["role"] == "assistant"]
    assert {(r.metadata or {}).get("model") for r in answers} == {"gpt-4o"}
    renamed = records(f"chatgpt-export://{chatgpt.path}?namespace=mine")
    assert {r.namespace for r in renamed} == {"mine"}


def test_attachments_are_references(chatgpt: Export, claude: Export) -> None:
    chat = [r for r in records(f"chatgpt-export://{chatgpt.path}") if (r.metadata or {}).get("attachments")]
    assert chat
    for record in chat:
        (attachment,) = (record.metadata or {})["attachments"]  # the upload, not also its pointer
        assert set(attachment) == {"id", "file_name", "size", "type"}
        assert attachment["type"] == "image/png" and attachment["id"].startswith("file-")
    mine = [r for r in records(f"claude-export://{claude.path}") if (r.metadata or {}).get("attachments")]
    assert mine
    for record in mine:
        attachments = (record.metadata or {})["attachments"]
        assert attachments[0] == {"file_name": attachments[0]["file_name"], "size": attachments[0]["size"],
                                  "type": "txt"}
        assert attachments[1]["type"] == "image" and set(attachments[1]) == {"id", "file_name", "type"}


def test_exchange_mode(chatgpt: Export, claude: Export) -> None:
    messages = {r.id: r for r in records(f"chatgpt-export://{chatgpt.path}")}
    exchanges = records(f"chatgpt-export://{chatgpt.path}?unit=exchange")
    assert {(r.metadata or {})["role"] for r in exchanges} == {"exchange"}
    covered = [t["id"] for r in exchanges for t in (r.metadata or {})["turns"]]
    assert sorted(covered) == sorted(messages)  # every message in exactly one exchange
    for record in exchanges:
        meta = record.metadata or {}
        turns = meta["turns"]
        assert record.id == f"{meta['conversation_id']}:{turns[0]['id']}"
        assert record.text == "\n\n".join(f"[{t['role'].upper()}]\n{t['text']}" for t in turns)
        assert [t["text"] for t in turns] == [messages[t["id"]].text for t in turns]
        assert record.created_at == messages[turns[0]["id"]].created_at
        if meta["branch"] == 0:
            assert turns[0]["role"] == "user" and [t["role"] for t in turns[1:]] == ["assistant"]
    main = [r for r in exchanges if (r.metadata or {})["branch"] == 0]
    assert len(main) == chatgpt.main_messages // 2
    claude_exchanges = [r for r in records(f"claude-export://{claude.path}?unit=exchange")
                        if r.namespace == "claude-conversations"]
    assert len(claude_exchanges) == claude.messages // 2
    by_conv: dict[str, list[int]] = {}
    for record in claude_exchanges:
        by_conv.setdefault((record.metadata or {})["conversation_id"], []).append(
            (record.metadata or {})["position"])
    assert all(p == list(range(len(p))) for p in by_conv.values())


# ------------------------------------------------------------------------------ targets


def test_into_a_vektor_database(tmp_path: Path, claude: Export) -> None:
    source = f"claude-export://{claude.path}"
    target = f"vektor:{tmp_path / 'memory.db'}"
    receipt = migrate(source, target)
    assert receipt.counts.written == claude.messages + claude.others
    same(records(source), read_all(target))


@pytest.mark.parametrize("unit", ["message", "exchange"])
def test_into_mg_as_event_grains_read_back_exactly(tmp_path: Path, chatgpt: Export, unit: str) -> None:
    source = f"chatgpt-export://{chatgpt.path}?unit={unit}"
    grains = tmp_path / "chat.mg"
    migrate(source, grains)
    with MgReader(grains) as reader:
        assert reader.verify()["grains"] == len(reader)
        kinds = {reader[i].type for i in range(len(reader))}
        first = reader[0].fields
    assert kinds == {"event"}
    assert first["role"] == ("user" if unit == "message" else "exchange")
    assert isinstance(first["session_id"], str) and first["content"]
    same(records(source), read_all(grains))


def test_claude_memories_and_projects_stay_beliefs(tmp_path: Path, claude: Export) -> None:
    grains = tmp_path / "claude.mg"
    migrate(f"claude-export://{claude.path}", grains)
    with MgReader(grains) as reader:
        kinds = Counter(reader[i].type for i in range(len(reader)))
    assert kinds == {"event": claude.messages, "belief": claude.others}
    same(records(f"claude-export://{claude.path}"), read_all(grains))


# ------------------------------------------------------------------ reading conformance


@pytest.mark.parametrize("unit", ["message", "exchange"])
def test_every_cursor_resumes_exactly(chatgpt: Export, unit: str) -> None:
    """A cursor taken after any page (inside a conversation too) continues with exactly the
    records that follow it, whatever the page size."""
    location = f"chatgpt-export://{chatgpt.path}?unit={unit}"
    whole = [i.id for i in items(location) if isinstance(i, MemoryRecord)]
    with open_store(location) as store:
        pages = list(store.read(batch_size=4))
        handed = 0
        for page in pages[:-1]:
            handed += len(page.items)
            rest = [i.id for p in store.read(batch_size=7, after=page.cursor) for i in p.items
                    if isinstance(i, MemoryRecord)]
            assert rest == whole[handed:]


def test_an_interrupted_run_resumes(tmp_path: Path, chatgpt: Export) -> None:
    source = f"chatgpt-export://{chatgpt.path}"
    out = tmp_path / "out.vmig.jsonl"
    options: dict[str, Any] = {"batch_size": 5, "receipt": tmp_path / "r.json",
                               "rejects": tmp_path / "r.rejects.jsonl"}
    with pytest.raises(KeyboardInterrupt):
        migrate(_Interrupting(open_store(source), pages=3), out, **options)
    receipt = migrate(source, out, resume=True, **options)
    assert receipt.counts.written == chatgpt.messages
    same(records(source), read_all(out))


def test_read_only_and_inspectable(tmp_path: Path, chatgpt: Export,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    source = f"chatgpt-export://{chatgpt.path}"
    with open_store(source) as store:
        assert store.can_read() and not store.can_write()
    with pytest.raises(VexError):
        migrate(source, f"claude-export://{tmp_path}/x.zip")
    report = inspect(source)
    assert report.records == chatgpt.messages
    assert main(["inspect", source]) == 0
    out = tmp_path / "cli.vmig.jsonl"
    assert main(["migrate", source, str(out), "--quiet"]) == 0
    assert main(["verify", str(out), "--against", source]) == 0
    capsys.readouterr()


def test_location_forms_and_options(tmp_path: Path, chatgpt: Export) -> None:
    with pytest.raises(UsageError, match="takes a file path"):
        open_store("chatgpt-export://somewhere/export.zip")
    with pytest.raises(UsageError, match="unit"):
        open_store(f"chatgpt-export://{chatgpt.path}?unit=turn")
    with pytest.raises(UsageError, match="does not know the URL option"):
        open_store(f"chatgpt-export://{chatgpt.path}?chunk-mode=turn")
    with pytest.raises(UsageError, match="cannot tell which store"):
        open_store(str(chatgpt.path))  # a .zip could be either export: no suffix names one


# ---------------------------------------------------------------------------- broken input


def _conversations_file(path: Path, body: bytes) -> str:
    path.write_bytes(body)
    return f"chatgpt-export:{path}"


def test_a_bad_element_is_one_counted_reject(tmp_path: Path) -> None:
    good = write_chatgpt_export(tmp_path / "good.json", conversations=3, form="file", branches=False)
    elements = orjson.loads(good.path.read_bytes())
    body = b"[" + orjson.dumps(elements[0]) + b', {"id": "x", "mapping": {"a": tru}}, ' \
        + orjson.dumps(elements[1]) + b", [1, 2], " + orjson.dumps(elements[2]) + b"]"
    got = items(_conversations_file(tmp_path / "conversations.json", body))
    rejects = [i for i in got if isinstance(i, Reject)]
    assert [r.reason for r in rejects] == ["bad_json", "not_a_conversation"]
    assert rejects[0].record == '{"id": "x", "mapping": {"a": tru}}'
    assert "element 1" in (rejects[0].location or "")
    assert len([i for i in got if isinstance(i, MemoryRecord)]) == good.messages
    out = tmp_path / "out.vmig.jsonl"
    receipt = migrate(f"chatgpt-export:{tmp_path / 'conversations.json'}", out, allow_skips=True,
                      rejects=tmp_path / "rej.jsonl")
    assert receipt.counts.written == good.messages
    assert sum(receipt.counts.skipped.values()) == 2
    assert len((tmp_path / "rej.jsonl").read_text().splitlines()) == 2


def test_missing_fields_are_counted_rejects_never_invented(tmp_path: Path) -> None:
    conv = {"uuid": "c1", "name": "n", "chat_messages": [
        {"uuid": "m1", "sender": "human", "text": "hello", "created_at": "2025-01-01T00:00:00Z"},
        {"sender": "assistant", "text": "no id"},
        {"uuid": "m3", "text": "no sender"},
        {"uuid": "m4", "sender": "assistant", "text": "bad time", "created_at": "yesterday"},
        {"uuid": "m5", "sender": "assistant", "text": "no time at all"}]}
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "conversations.json").write_bytes(orjson.dumps([conv, {"name": "no uuid", "chat_messages": []},
                                                              {"uuid": "c3"}]))
    got = items(f"claude-export:{folder}")
    reasons = Counter(i.reason for i in got if isinstance(i, Reject))
    assert reasons == {"missing_id": 2, "missing_role": 1, "bad_timestamp": 1, "no_messages": 1}
    kept = {i.id: i for i in got if isinstance(i, MemoryRecord)}
    assert set(kept) == {"m1", "m5"}
    assert kept["m5"].created_at is None  # no time is not "now"
    assert (kept["m5"].metadata or {})["parent_id"] == "m1" and (kept["m5"].metadata or {})["position"] == 1


def test_a_truncated_file_ends_with_a_counted_reject(tmp_path: Path) -> None:
    good = write_chatgpt_export(tmp_path / "good.json", conversations=3, form="file")
    body = good.path.read_bytes()
    got = items(_conversations_file(tmp_path / "conversations.json", body[: len(body) * 2 // 3]))
    assert isinstance(got[-1], Reject) and got[-1].reason == "truncated"
    assert all(isinstance(i, MemoryRecord) for i in got[:-1]) and got[:-1]


def test_broken_structure_and_missing_files_are_clear_errors(tmp_path: Path) -> None:
    broken = _conversations_file(tmp_path / "conversations.json", b'[{"id": "a"} {"id": "b"}]')
    with pytest.raises(DecodeError, match="structure is broken at byte 13"):
        items(broken)
    with pytest.raises(DecodeError, match="JSON array"):
        items(_conversations_file(tmp_path / "c2.json", b'"just text"'))
    empty_zip = tmp_path / "export.zip"
    with zipfile.ZipFile(empty_zip, "w") as archive:
        archive.writestr("memories.json", "[]")
        archive.writestr("users.json", "[]")
    with pytest.raises(UsageError, match=r"holds no conversations\.json"):
        items(f"claude-export://{empty_zip}")
    with pytest.raises(UsageError, match="no such file or folder"):
        items(f"chatgpt-export://{tmp_path}/missing.zip")
    damaged = tmp_path / "damaged.zip"
    good = write_chatgpt_export(tmp_path / "ok.zip", conversations=2).path.read_bytes()
    damaged.write_bytes(good[:100] + b"\0" * 200 + good[300:])
    with pytest.raises((DecodeError, UsageError)):
        items(f"chatgpt-export://{damaged}")


def test_the_cli_reports_broken_input_without_a_traceback(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    empty_zip = tmp_path / "export.zip"
    with zipfile.ZipFile(empty_zip, "w") as archive:
        archive.writestr("notes.txt", "x")
    assert main(["migrate", f"claude-export://{empty_zip}", str(tmp_path / "o.vmig.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "vex: error:" in err and "holds no conversations.json" in err and "Traceback" not in err
    (tmp_path / "conversations.json").write_bytes(b'[{"id": "a"} x]')
    code = main(["migrate", f"chatgpt-export:{tmp_path / 'conversations.json'}",
                 str(tmp_path / "p.vmig.jsonl")])
    err = capsys.readouterr().err
    assert code != 0 and "vex: error:" in err and "Traceback" not in err
    assert not (tmp_path / "p.vmig.jsonl").exists()


# ------------------------------------------------------------------------ the splitter


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64])
def test_the_splitter_at_every_chunk_boundary(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    monkeypatch.setattr(_conversations, "CHUNK", chunk)
    elements = [{"a": "x]}\"\\", "b": [1, {"c": "\\\\"}]}, "te\"xt", 12.5, None, [], {"k": "日本 🙂"}]
    body = b"\xef\xbb\xbf \n[ " + b" ,\n".join(orjson.dumps(e) for e in elements) + b" ]\n"
    split = list(JsonElements(io.BytesIO(body), where="t"))
    assert [orjson.loads(raw) for _, raw in split] == elements
    assert [body[offset:offset + len(raw)] for offset, raw in split] == [raw for _, raw in split]
    keyed = b'{"meta": {"x": [1, "]"]}, "conversations": ' + orjson.dumps(elements) + b', "after": 1}'
    assert [orjson.loads(r) for _, r in JsonElements(io.BytesIO(keyed), where="t", key="conversations")] \
        == elements
    one = b'{"conversations_memory": "m"}'
    assert [r for _, r in JsonElements(io.BytesIO(one), where="t")] == [one]
    offset = split[3][0]
    resumed = list(JsonElements(io.BytesIO(body[offset:]), where="t", start=offset))
    assert [(o, r) for o, r in resumed] == [(o - 0, r) for o, r in split[3:]]


def test_the_splitter_bounds_an_element(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_conversations, "CHUNK", 16)
    body = b'[{"a": "' + b"x" * 500 + b'"}]'
    with pytest.raises(DecodeError, match="longer than 100 bytes"):
        list(JsonElements(io.BytesIO(body), where="t", max_element=100))
    with pytest.raises(Truncated):
        list(JsonElements(io.BytesIO(body[:200]), where="t"))


# ---------------------------------------------------------------------------- memory


def _peak(location: str) -> int:
    tracemalloc.start()
    try:
        with open_store(location) as store:
            for page in store.read(batch_size=100):
                del page
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.slow
def test_memory_stays_flat(tmp_path: Path) -> None:
    """A few thousand messages read without holding the file: the peak is a page and an
    element, not the export, and does not grow with it."""
    small = write_chatgpt_export(tmp_path / "small.zip", conversations=60, messages=30, text_size=600)
    large = write_chatgpt_export(tmp_path / "large.zip", conversations=300, messages=30, text_size=600)
    assert large.messages > 9000
    size = zipfile.ZipFile(large.path).getinfo("conversations.json").file_size
    small_peak, large_peak = _peak(f"chatgpt-export://{small.path}"), _peak(f"chatgpt-export://{large.path}")
    assert large_peak < size / 8, (large_peak, size)
    assert large_peak < small_peak * 1.5 + (256 << 10), (small_peak, large_peak)
    folders = [write_claude_export(tmp_path / f"claude-{n}", conversations=n, messages=30,
                                   text_size=600, form="folder").path for n in (20, 80)]
    peaks = [_peak(f"claude-export://{folder}") for folder in folders]
    assert peaks[1] < peaks[0] * 1.5 + (256 << 10), peaks
