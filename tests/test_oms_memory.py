"""Memory as OMS grains: VEKTOR -> .mg (+ vectors) -> .vmig.jsonl is lossless, and `.mg` is a
format the engine reads and writes like any other."""

from __future__ import annotations

import json
from pathlib import Path

from vexchange import export, migrate, verify
from vexchange.cli import main
from vexchange.oms.container import MgReader
from vexchange.testing.conformance import ConnectorConformance, read_all, write_vmig
from vexchange.testing.records import sample_records
from vexchange.testing.vektor_fixture import Fixture


def test_vektor_to_grains_to_vmig_is_lossless(slipstream: Fixture, tmp_path: Path) -> None:
    source = f"vektor://{slipstream.path}"
    grains = tmp_path / "memory.mg"
    receipt = export(source, grains, allow_skips=True)
    assert receipt.counts.written == receipt.counts.selected  # the truncated blob is unreadable
    assert (tmp_path / "memory.mg.vectors").exists()
    with MgReader(grains) as reader:
        assert reader.verify()["grains"] == receipt.counts.written
        assert reader[0].type == "belief" and reader[0].fields["embedding_refs"]
    out = tmp_path / "back.vmig.jsonl"
    migrate(grains, out)
    assert verify(out, against=grains)["ok"]
    check = verify(grains, against=source)["checks"][0]
    # everything but the fixture's unreadable row, which verify names instead of passing over
    assert (check["missing"], check["changed"], check["extra"], check["source_unreadable"]) == (0, 0, 0, 1)


def test_every_field_survives_grains(tmp_path: Path) -> None:
    records = list(sample_records(40, named=("title",), sparse=True))
    records[3] = records[3].replace(text="cafe\u0301 not NFC", id="i\u0301d", id_type="str",
                                    namespace="n\u0303s")
    records[4] = records[4].replace(text="\ufeffstarts with a BOM", id="\ufeffbom-id",
                                    source_store="\ufeffsrc")
    source = write_vmig(tmp_path / "s.vmig.jsonl", records, metric="dot")
    grains = tmp_path / "m.mg"
    receipt = migrate(source, grains)
    assert receipt.counts.written == 40, receipt.counts
    ConnectorConformance.assert_same(records, read_all(grains))
    from vexchange import open_store
    with open_store(grains) as store:
        assert store.vector_spaces()[""].metric == "dot"


def test_cli_export_and_migrate_with_mg(tmp_path: Path) -> None:
    records = list(sample_records(12))
    source = write_vmig(tmp_path / "s.vmig.jsonl", records)
    assert main(["migrate", str(source), str(tmp_path / "m.mg"), "--quiet"]) == 0
    assert main(["migrate", str(tmp_path / "m.mg"), str(tmp_path / "b.vmig.jsonl"), "--quiet"]) == 0
    assert main(["verify", str(tmp_path / "b.vmig.jsonl"), "--against", str(source)]) == 0


def test_grains_from_elsewhere_are_read(tmp_path: Path) -> None:
    vectors = json.loads((Path(__file__).parent / "data" / "oms-test-vectors.json").read_text())
    path = tmp_path / "foreign.mg"
    path.write_bytes(bytes.fromhex(vectors["mg_file_vectors"][0]["file_hex"]))
    got = read_all(path)
    assert {r.id for r in got.values()} == set(vectors["mg_file_vectors"][0]["grain_content_addresses"])
    assert "dark mode" in {r.text for r in got.values()}


def test_vex_grains_commands(tmp_path: Path, capsys: object) -> None:
    vectors = json.loads((Path(__file__).parent / "data" / "oms-test-vectors.json").read_text())
    source = tmp_path / "grains.jsonl"
    source.write_text("\n".join(json.dumps(v["input"]) for v in vectors["vectors"]) + "\n")
    assert main(["grains", "encode", str(source), "-o", str(tmp_path / "g.mg")]) == 0
    assert main(["grains", "verify", str(tmp_path / "g.mg")]) == 0
    assert main(["grains", "inspect", str(tmp_path / "g.mg"), "--json"]) == 0
    assert main(["grains", "decode", str(tmp_path / "g.mg"), "--index", "0"]) == 0
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert vectors["vectors"][0]["expected_content_address"] in out
    assert '"subject":"user"' in out
    assert main(["grains", "decode", str(tmp_path / "g.mg"), "--index", "99"]) == 2
    one = tmp_path / "one.json"
    one.write_text(json.dumps(vectors["vectors"][5]["input"]))
    assert main(["grains", "encode", str(one), "-o", str(tmp_path / "one.blob")]) == 0
    import hashlib
    blob = (tmp_path / "one.blob").read_bytes()
    assert hashlib.sha256(blob).hexdigest() == vectors["vectors"][5]["expected_content_address"]
    broken = bytearray((tmp_path / "g.mg").read_bytes())
    broken[-1] ^= 1
    (tmp_path / "bad.mg").write_bytes(bytes(broken))
    assert main(["grains", "verify", str(tmp_path / "bad.mg")]) == 3


SHAPED = {
    "conversation": [{"role": "user", "content": "hi", "timestamp": "2026-01-15T10:00:00Z",
                      "session_id": "s1", "lang": "en"}],
    "tool_call": [{"tool": "search", "input": {"q": "x"}, "output": {"hits": 3},
                   "timestamp": 1768471200, "call_id": "c1"}],
    "state": [{"state": {"memory_blocks": ["a"]}, "plan": ["next"], "timestamp": 1768471200000}],
    "runbook": [{"trigger": "deploy", "steps": ["build", "ship"], "timestamp": 1768471200}],
    "sensor": [{"sensor_id": "t1", "sensor_type": "temperature", "reading": 21.5,
                "timestamp": 1768471200, "unit": "C"}],
    "task": [{"description": "write docs", "status": "done", "priority": 2,
              "due": "2026-02-01T00:00:00Z", "timestamp": 1768471200}],
}
TYPES = {"conversation": "event", "tool_call": "action", "state": "state", "runbook": "workflow",
         "sensor": "observation", "task": "goal"}


def test_each_memory_shape_becomes_its_grain_type(tmp_path: Path) -> None:
    from vexchange.oms.tools import decode_grains, encode_grains

    for shape, lines in SHAPED.items():
        source = tmp_path / f"{shape}.jsonl"
        source.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
        out = tmp_path / f"{shape}.mg"
        assert main(["grains", "encode", str(source), "-o", str(out), "--shape", shape,
                     "--namespace", "team:app"]) == 0
        [grain] = decode_grains(out)
        assert grain["type"] == TYPES[shape]
        assert grain["fields"]["namespace"] == "team:app"
    [event] = decode_grains(tmp_path / "conversation.mg")
    assert event["fields"]["context"] == {"lang": "en"} and event["fields"]["role"] == "user"
    [goal] = decode_grains(tmp_path / "task.mg")
    assert goal["fields"]["goal_state"] == "satisfied"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"role": "user", "timestamp": 1}) + "\n")
    assert main(["grains", "encode", str(bad), "-o", str(tmp_path / "bad.mg"), "--shape",
                 "conversation"]) == 2
    assert encode_grains  # library entry point exists
