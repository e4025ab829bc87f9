"""``vex convert``: each format's output against its published schema (tests/data/schemas),
each format's rules with counted refusals, any source, any record order, never the input
overwritten, memory flat, and what matches or deliberately differs from the real Vex."""

from __future__ import annotations

import itertools
import json
import random
import tracemalloc
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import vexchange
from vexchange.cli import main
from vexchange.convert import FORMATS, convert, format_names
from vexchange.errors import UsageError
from vexchange.record import MemoryRecord
from vexchange.testing.conformance import write_vmig
from vexchange.testing.vektor_fixture import build

SCHEMAS = Path(__file__).parent / "data" / "schemas"
T0 = 1_735_689_600_000


def message(conv: str, pos: int, role: str | None, text: str, *, name: str | None = None,
            rid: str | None = None, **meta: Any) -> MemoryRecord:
    metadata: dict[str, Any] = {"conversation_id": conv, "position": pos, **meta}
    if role is not None:
        metadata["role"] = role
    if name is not None:
        metadata["conversation_name"] = name
    return MemoryRecord(id=rid or f"{conv}-{pos}", text=text, metadata=metadata, created_at=T0 + pos * 1000)


def dialogue(conv: str, roles: str, *, name: str | None = None) -> list[MemoryRecord]:
    """A conversation from a role string: u user, a assistant, s system, t tool, h human."""
    names = {"u": "user", "a": "assistant", "s": "system", "t": "tool", "h": "human"}
    return [message(conv, i, names[r], f"{names[r]} says {i} in {conv}", name=name or f"Talk {conv}")
            for i, r in enumerate(roles)]


def mixed() -> list[MemoryRecord]:
    """Conversations every format treats differently, plus a lone memory (no conversation id,
    no role) and an exchange record."""
    records = [*dialogue("good", "uaua"), *dialogue("sys", "suaua"), *dialogue("hum", "haha"),
               *dialogue("noasst", "uu"), *dialogue("asstfirst", "aua"), *dialogue("enduser", "uau"),
               *dialogue("merge", "uuaau"), *dialogue("tool", "uata"), *dialogue("sysonly", "s")]
    records.append(MemoryRecord(id="lone", text="a memory with no conversation"))
    records.append(message("empty", 0, "user", "", name="Empty"))
    records.append(MemoryRecord(id="ex1", text="q\na", metadata={
        "conversation_id": "exch", "role": "exchange", "position": 0, "conversation_name": "Exchanges",
        "turns": [{"role": "user", "text": "q", "id": "ex1-u"},
                  {"role": "assistant", "text": "a", "id": "ex1-a"}]}))
    return records


@pytest.fixture
def source(tmp_path: Path) -> Path:
    records = mixed()
    random.Random(5).shuffle(records)
    return write_vmig(tmp_path / "chats.vmig.jsonl", records)


def schema(name: str) -> Any:
    loaded = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(loaded)
    assert "http" in loaded["description"]  # the published documentation it was written from
    return loaded


def validate(format_name: str, path: Path) -> list[Any]:
    """Validate an output file against its format's schema; the JSON values it holds."""
    checker = jsonschema.Draft202012Validator(schema(format_name))
    if format_name == "plain-text":
        checker.validate(path.read_text())
        return []
    if format_name == "openai-context":
        doc = json.loads(path.read_text())
        checker.validate(doc)
        return [doc]
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert path.read_text().endswith("\n") or not lines
    for line in lines:
        checker.validate(line)
        if format_name == "anthropic-finetune":  # what JSON Schema cannot say (see the schema)
            roles = [m["role"] for m in line["messages"]]
            assert all(a != b for a, b in itertools.pairwise(roles)), roles
            assert roles[-1] == "assistant"
    return lines


@pytest.mark.parametrize("format_name", list(FORMATS))
def test_each_format_passes_its_schema(tmp_path: Path, source: Path, format_name: str) -> None:
    out = tmp_path / f"out.{FORMATS[format_name].extension}"
    result = convert(source, out, format_name, drop_roles=["tool"] if format_name != "plain-text" else ())
    assert result.written > 0
    validate(format_name, out)
    assert result.written + sum(result.refused.values()) + result.over_budget == result.conversations
    assert result.conversations == 12  # 9 dialogues, the lone memory, the empty one, the exchange
    if result.refused:
        lines = [json.loads(x) for x in Path(result.rejects_file or "").read_text().splitlines()]
        assert sorted(r["reason"] for r in lines) == sorted(
            reason for reason, n in result.refused.items() for _ in range(n))


def test_openai_finetune_rules(tmp_path: Path, source: Path) -> None:
    out = tmp_path / "ft.jsonl"
    result = convert(source, out, "openai-finetune")
    assert result.refused == {"no_assistant_turn": 2, "no_text": 1, "no_user_turn": 1, "unsupported_role": 1}
    assert not result.complete
    written = {json.dumps(x) for x in validate("openai-finetune", out)}
    assert len(written) == result.written == 7  # good sys hum asstfirst enduser merge exch
    rejected = Path(result.rejects_file or "").read_text().splitlines()
    rejects = {r["conversation_id"]: r for r in map(json.loads, rejected)}
    assert rejects["noasst"]["reason"] == "no_assistant_turn"
    assert [t["id"] for t in rejects["noasst"]["turns"]] == ["noasst-0", "noasst-1"]  # the whole conversation
    assert rejects["tool"]["reason"] == "unsupported_role" and "--drop-role tool" in rejects["tool"]["detail"]
    assert rejects["lone"]["reason"] == "no_assistant_turn"  # a record of its own, role user by default
    assert rejects["empty"]["reason"] == "no_text"
    assert rejects["sysonly"]["reason"] == "no_user_turn"
    # system turns keep their role (Vex makes them user turns); human is user
    lines = [json.loads(x) for x in written]
    system = {"role": "system", "content": "system says 0 in sys"}
    assert any(m == system for x in lines for m in x["messages"])
    assert all(m["role"] != "human" for x in lines for m in x["messages"])
    dropped = convert(source, out, "openai-finetune", drop_roles=["tool"], system_prompt="Be brief.")
    assert "unsupported_role" not in dropped.refused and dropped.turns_dropped["role:tool"] == 1
    assert all(json.loads(x)["messages"][0] == {"role": "system", "content": "Be brief."}
               for x in out.read_text().splitlines())


def test_anthropic_merges_turns_and_needs_user_first_assistant_last(tmp_path: Path, source: Path) -> None:
    out = tmp_path / "claude.jsonl"
    result = convert(source, out, "anthropic", system_prompt="You are terse.")
    assert result.format == "anthropic-finetune"
    # aua starts with the assistant; uau, uuaau, uu (one user turn once merged) and the lone
    # memory end with the user, which Bedrock refuses (Vex writes them)
    assert result.refused == {"starts_with_assistant": 1, "ends_with_user": 4, "unsupported_role": 1,
                              "no_text": 1, "no_chat_turn": 1}
    lines = validate("anthropic-finetune", out)
    sys_line = next(x for x in lines if "sys" in x["messages"][0]["content"] and "system" in x)
    assert sys_line["system"] == "You are terse.\n\nsystem says 0 in sys"
    assert all(set(x) <= {"system", "messages"} for x in lines)


def test_anthropic_merge_exact(tmp_path: Path) -> None:
    src = write_vmig(tmp_path / "m.vmig.jsonl", dialogue("m", "uuaa"))
    out = tmp_path / "m.jsonl"
    convert(src, out, "anthropic-finetune")
    assert json.loads(out.read_text()) == {"messages": [
        {"role": "user", "content": "user says 0 in m\n\nuser says 1 in m"},
        {"role": "assistant", "content": "assistant says 2 in m\n\nassistant says 3 in m"}]}


def test_openai_context_keeps_within_the_token_budget(tmp_path: Path, source: Path) -> None:
    out = tmp_path / "ctx.json"
    whole = convert(source, out, "openai-context")
    assert whole.over_budget == whole.truncated == 0
    total = sum(len(m["content"]) for m in validate("openai-context", out)[0]["messages"])
    budget = total // 8  # half the history's tokens
    result = convert(source, out, "openai-context", max_tokens=budget)
    messages = validate("openai-context", out)[0]["messages"]
    assert sum(len(m["content"]) for m in messages) <= budget * 4
    assert result.estimated_tokens is not None and result.estimated_tokens <= budget
    assert result.over_budget > 0 and result.truncated == 1
    assert result.refused == {"unsupported_role": 1, "no_text": 1}  # the budget refuses nothing
    assert result.turns_dropped["over_token_budget"] > 0
    # contiguous: what was written is the start of the unbudgeted history
    convert(source, tmp_path / "all.json", "openai-context")
    assert messages == json.loads((tmp_path / "all.json").read_text())["messages"][:len(messages)]
    kinds = {json.loads(x)["kind"] for x in Path(result.rejects_file or "").read_text().splitlines()}
    assert {"left_out", "truncated"} <= kinds
    with pytest.raises(UsageError, match="system prompt alone"):
        convert(source, out, "openai-context", max_tokens=2)
    one = convert(source, out, "openai-context", conversation_ids=["good"], system_prompt="")
    assert one.conversations == 1 and [m["role"] for m in json.loads(out.read_text())["messages"]] == list(
        ["user", "assistant"] * 2)
    with pytest.raises(UsageError, match="no conversation"):
        convert(source, out, "openai-context", conversation_ids=["nope"])


def test_options_a_format_does_not_take_are_refused(tmp_path: Path, source: Path) -> None:
    with pytest.raises(UsageError, match="--max-tokens does not apply to openai-finetune"):
        convert(source, tmp_path / "x.jsonl", "openai-finetune", max_tokens=10)
    with pytest.raises(UsageError, match="--separator"):
        convert(source, tmp_path / "x.jsonl", "generic-chat", separator="---")
    with pytest.raises(UsageError, match="no convert format"):
        convert(source, tmp_path / "x.jsonl", "openai")


@pytest.mark.parametrize(("alias", "name"), [("perplexity", "generic-chat"), ("groq", "generic-chat"),
                                             ("mistral", "generic-chat"), ("together", "generic-chat"),
                                             ("anthropic", "anthropic-finetune"), ("txt", "plain-text"),
                                             ("GROQ", "generic-chat")])
def test_aliases_write_the_same_bytes(tmp_path: Path, source: Path, alias: str, name: str) -> None:
    a, b = tmp_path / "alias.out", tmp_path / "name.out"
    assert convert(source, a, alias).format == name
    convert(source, b, name)
    assert a.read_bytes() == b.read_bytes()
    assert alias.lower() in format_names()


def test_unordered_input_is_grouped_and_ordered(tmp_path: Path) -> None:
    records = [r for c in range(40) for r in dialogue(f"c{c}", "ua" * 5)]
    ordered = write_vmig(tmp_path / "ordered.vmig.jsonl", records)
    shuffled = list(records)
    random.Random(11).shuffle(shuffled)
    # first-seen order of conversations must match for the bytes to match: put one turn of each
    # conversation first, in order, then the rest shuffled
    heads = [r for r in records if r.metadata and r.metadata["position"] == 3]
    rest = [r for r in shuffled if r not in heads]
    mixed_up = write_vmig(tmp_path / "mixed.vmig.jsonl", heads + rest)
    convert(ordered, tmp_path / "a.jsonl", "generic-chat")
    convert(mixed_up, tmp_path / "b.jsonl", "generic-chat")
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    lines = [json.loads(x) for x in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert len(lines) == 40
    expected = [f"{'user' if i % 2 == 0 else 'assistant'} says {i} in c0" for i in range(10)]
    assert [m["content"] for m in lines[0]["messages"]] == expected


def test_order_without_position_is_created_at_then_id(tmp_path: Path) -> None:
    recs = [MemoryRecord(id=i, text=f"t{i}", created_at=T0 + t,
                         metadata={"conversation_id": "x", "role": r})
            for i, t, r in [("b", 5, "assistant"), ("c", 5, "user"), ("a", 1, "user"), ("z", 9, "assistant")]]
    src = write_vmig(tmp_path / "p.vmig.jsonl", recs)
    convert(src, tmp_path / "p.json", "openai-context", system_prompt="")
    messages = json.loads((tmp_path / "p.json").read_text())["messages"]
    assert [m["content"] for m in messages] == ["ta", "tb", "tc", "tz"]


def test_a_vektor_database_is_a_source(tmp_path: Path) -> None:
    fixture = build(tmp_path / "memory.db", n=25, dims=8)
    out = tmp_path / "memory.txt"
    result = convert(f"vektor://{fixture.path}", out, "plain-text")
    assert result.records == result.conversations == result.written == 25  # each its own conversation
    validate("plain-text", out)
    refused = convert(f"vektor://{fixture.path}", tmp_path / "m.jsonl", "openai-finetune")
    assert refused.refused == {"no_assistant_turn": 25}  # memories are user turns by default
    # conversations imported into a VEKTOR database keep their role, id and position
    db = build(tmp_path / "chats.db", n=3, dims=8)
    vexchange.import_(write_vmig(tmp_path / "c.vmig.jsonl", dialogue("talk", "uaua")), f"vektor://{db.path}")
    result = convert(f"vektor://{db.path}", tmp_path / "chats.jsonl", "openai-finetune")
    assert result.written == 1 and result.refused == {"no_assistant_turn": 3}
    assert [m["role"] for m in validate("openai-finetune", tmp_path / "chats.jsonl")[0]["messages"]] == [
        "user", "assistant", "user", "assistant"]


def test_never_overwrites_the_input(tmp_path: Path, source: Path) -> None:
    before = source.read_bytes()
    sidecar = tmp_path / "chats.vmig.meta.json"
    assert sidecar.exists()
    (tmp_path / "sub").mkdir()
    for target in (source, sidecar, tmp_path / "sub" / ".." / "chats.vmig.jsonl",
                   tmp_path / "chats.vmig.sig"):
        with pytest.raises(UsageError, match="never overwritten"):
            convert(source, target, "plain-text")
    with pytest.raises(UsageError, match="never overwritten"):
        convert(source, tmp_path / "ok.txt", "plain-text", rejects=source)
    db = build(tmp_path / "m.db", n=2, dims=4)
    for target in (db.path, Path(f"{db.path}-wal")):
        with pytest.raises(UsageError, match="never overwritten"):
            convert(f"vektor://{db.path}", target, "txt")
    link = tmp_path / "link.txt"
    link.symlink_to(source)
    with pytest.raises(UsageError, match="never overwritten"):
        convert(source, link, "plain-text")
    assert source.read_bytes() == before
    # the default output of a .vmig.jsonl source is beside it with the format's extension
    assert convert(source, None, "txt").output == str(tmp_path / "chats.txt")
    with pytest.raises(UsageError, match="give the output"):
        convert(f"vektor://{db.path}", None, "txt")
    assert main([ "convert", str(source), "-f", "txt", "-o", str(source)]) == 2
    assert source.read_bytes() == before


def test_a_failed_run_leaves_no_output(tmp_path: Path, source: Path) -> None:
    out = tmp_path / "ctx.json"
    with pytest.raises(UsageError):
        convert(source, out, "openai-context", max_tokens=1)
    assert not out.exists() and not list(tmp_path.glob("*.partial"))


def _peak(tmp_path: Path, conversations: int) -> int:
    text = "x" * 500
    records = [message(f"c{c}", i, "user" if i % 2 == 0 else "assistant", f"{c}:{i}:{text}")
               for c in range(conversations) for i in range(4)]
    random.Random(3).shuffle(records)
    src = write_vmig(tmp_path / f"big{conversations}.vmig.jsonl", records)
    del records
    tracemalloc.start()
    try:
        result = convert(src, tmp_path / "big.jsonl", "openai-finetune")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.written == conversations and result.complete
    return peak


def test_memory_stays_flat(tmp_path: Path) -> None:
    """Four times the records (unordered, 3,000 then 12,000 of half a kilobyte), about the
    same peak of Python memory: one page of records while reading, one conversation while
    writing; the grouping is in the SQLite spill."""
    small, large = _peak(tmp_path, 750), _peak(tmp_path, 3000)
    assert large < small * 1.25 + 500_000, (small, large)
    assert large < 8_000_000, large  # the large source holds 6 MB of text


def test_cli_summary_json_and_exit_codes(tmp_path: Path, source: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ft.jsonl"
    assert main(["convert", "--from", str(source), "--adapter", "openai-finetune", "-o", str(out)]) == 4
    captured = capsys.readouterr()
    assert "refused: no_assistant_turn 2" in captured.out and "--allow-skips" in captured.err
    assert main(["convert", str(source), "-f", "openai-finetune", "-o", str(out), "--allow-skips",
                 "--json", "--drop-role", "tool"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["format"] == "openai-finetune"
    assert result["turns_dropped"] == {"role:tool": 1, "empty_text": 1}
    assert main(["convert", str(source), "-f", "txt", "-o", str(tmp_path / "t.txt")]) == 4  # the empty one
    assert main(["convert", str(source), "-f", "txt", "-o", str(tmp_path / "t.txt"),
                 "--max-tokens", "5"]) == 2
    capsys.readouterr()
    assert main(["convert", "-f", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [f["name"] for f in listed] == list(FORMATS)


VEX_FORMATS = ["openai-finetune", "openai-context", "generic-chat", "anthropic-finetune", "plain-text"]


def test_against_the_published_vex(tmp_path: Path, vex_npm: Any) -> None:
    """Where Vex is right our bytes are its bytes; where it is wrong we differ on purpose."""
    plain = [*dialogue("one", "uaua"), *dialogue("two", "ua")]
    src = write_vmig(tmp_path / "plain.vmig.jsonl", plain)
    for name in VEX_FORMATS:
        theirs, ours = tmp_path / f"vex-{name}.out", tmp_path / f"ours-{name}.out"
        done = vex_npm.run("convert", "--from", src, "--adapter", name, "--output", theirs, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        convert(src, ours, name)
        assert ours.read_bytes() == theirs.read_bytes(), name

    tricky = [*dialogue("enduser", "uau"), *dialogue("sys", "sua"), *dialogue("hum", "ha")]
    src = write_vmig(tmp_path / "tricky.vmig.jsonl", tricky)
    vex_out = tmp_path / "vex-anthropic.jsonl"
    vex_npm.run("convert", "--from", src, "--adapter", "anthropic", "--output", vex_out, cwd=tmp_path)
    vex_lines = [json.loads(x) for x in vex_out.read_text().splitlines() if x]
    # Vex writes the conversation that ends with the user (Bedrock refuses it) and makes the
    # system turn a user turn; we refuse the first and put the system text into "system"
    assert any(x["messages"][-1]["role"] == "user" for x in vex_lines)
    ours = convert(src, tmp_path / "ours-anthropic.jsonl", "anthropic")
    assert ours.refused == {"ends_with_user": 1}
    validate("anthropic-finetune", tmp_path / "ours-anthropic.jsonl")
    # Vex labels a "human" turn ASSISTANT in plain text; we label it HUMAN
    vex_txt = tmp_path / "vex.txt"
    vex_npm.run("convert", "--from", src, "--adapter", "txt", "--output", vex_txt, cwd=tmp_path)
    convert(src, tmp_path / "ours.txt", "txt")
    assert "[ASSISTANT]\nhuman says 0 in hum" in vex_txt.read_text()
    assert "[HUMAN]\nhuman says 0 in hum" in (tmp_path / "ours.txt").read_text()
    # Vex's budget lets the last turn overrun it; ours never does
    vex_ctx = tmp_path / "vex.json"
    vex_npm.run("convert", "--from", src, "--adapter", "openai-context", "--max-tokens", "30",
                "--output", vex_ctx, cwd=tmp_path)
    assert sum(len(m["content"]) for m in json.loads(vex_ctx.read_text())["messages"]) > 30 * 4
    convert(src, tmp_path / "ours.json", "openai-context", max_tokens=30)
    ours_ctx = json.loads((tmp_path / "ours.json").read_text())["messages"]
    assert sum(len(m["content"]) for m in ours_ctx) <= 30 * 4
    # without --output, Vex writes over an input not named .vmig.jsonl; we refuse to guess
    other = tmp_path / "chats.jsonl"
    other.write_bytes(src.read_bytes())
    vex_npm.run("convert", "--from", other, "--adapter", "txt", cwd=tmp_path)
    assert other.read_text().startswith("═")  # Vex overwrote its input
    other.write_bytes(src.read_bytes())
    with pytest.raises(UsageError, match="give the output"):
        convert(other, None, "txt")


def test_unreadable_source_lines_are_counted_and_kept(tmp_path: Path) -> None:
    src = write_vmig(tmp_path / "bad.vmig.jsonl", dialogue("d", "ua"))
    (tmp_path / "bad.vmig.meta.json").unlink()  # no checksum to fail: the bad line is read as a reject
    with src.open("a") as handle:
        handle.write('{"id": "broken", "text": \n')
    result = convert(src, tmp_path / "bad.jsonl", "openai-finetune")
    assert result.written == 1 and sum(result.unreadable.values()) == 1 and not result.complete
    lines = [json.loads(x) for x in Path(result.rejects_file or "").read_text().splitlines()]
    assert [x["kind"] for x in lines] == ["unreadable"] and "broken" in str(lines[0]["record"])


def test_the_cli_lists_every_format_without_loading_the_converters() -> None:
    from vexchange.cli.convert import FORMAT_NAMES
    from vexchange.convert import format_names

    assert format_names() == FORMAT_NAMES
