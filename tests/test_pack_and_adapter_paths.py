"""User paths of the pack, micro-pack, search and adapter commands, end to end through the CLI:
the happy path, and bad inputs that must end in a clear message and an exit code."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vexchange import VexError
from vexchange.cli import main
from vexchange.record import MemoryRecord, Vector
from vexchange.testing.conformance import read_all, write_vmig
from vexchange.testing.records import sample_records


def vex(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def test_pack_create_unpack_and_micropack(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    records = list(sample_records(50, dims=8))
    source = write_vmig(tmp_path / "s.vmig.jsonl", records, metric="cosine")
    pack = tmp_path / "m.vpack"
    code, out, _ = vex(capsys, "pack", "create", str(source), str(pack), "--quiet")
    assert code == 0 and (pack / "manifest.yaml").is_file()
    code, _, _ = vex(capsys, "pack", "unpack", str(pack), f"cartridge://{tmp_path}/m.db", "--quiet")
    assert code == 0
    assert read_all(f"cartridge://{tmp_path}/m.db").keys() == {(r.namespace, r.id) for r in records}

    (tmp_path / "q.json").write_text(json.dumps([1.0] * 8))
    code, out, _ = vex(capsys, "micropack", f"vectorpack://{pack}", "-o", str(tmp_path / "t.jsonl"),
                       "--vector-file", str(tmp_path / "q.json"), "--k", "5", "--json")
    assert code == 0 and json.loads(out)["records"] == 5
    (tmp_path / "bad.json").write_text('{"not": "a list"}')
    code, _, err = vex(capsys, "micropack", str(source), "-o", str(tmp_path / "u.jsonl"),
                       "--vector-file", str(tmp_path / "bad.json"))
    assert code == 2 and "list of numbers" in err and not (tmp_path / "u.jsonl").exists()
    code, _, err = vex(capsys, "micropack", str(source), "-o", str(tmp_path / "u.jsonl"), "--query", "x")
    assert code == 2 and "--embed-model" in err


def test_search_and_feedback_refuse_what_they_cannot_do(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    source = write_vmig(tmp_path / "s.vmig.jsonl", list(sample_records(20, dims=8)), metric="cosine")
    vex(capsys, "pack", "create", str(source), str(tmp_path / "m.vpack"), "--quiet")
    (tmp_path / "q.json").write_text(json.dumps([1.0] * 3))
    code, _, err = vex(capsys, "search", f"vectorpack://{tmp_path}/m.vpack", "--vector-file",
                       str(tmp_path / "q.json"))
    assert code == 2 and "3" in err and "dims" in err
    inner = tmp_path / "m.vpack" / "tables" / "memory.db"
    code, _, err = vex(capsys, "feedback", f"cartridge://{inner}", "mem-000001", "--helpful")
    assert code == 2 and "VectorPack" in err
    code, _, err = vex(capsys, "search", str(tmp_path / "s.vmig.jsonl"), "--keyword", "x")
    assert code == 2 and "cartridge" in err


@pytest.fixture
def shrinking_adapter(tmp_path: Path) -> Path:
    """An adapter from a 12-dim space to an 8-dim one (a fixed linear map), from pairs."""
    rng = np.random.default_rng(7)
    projection = rng.standard_normal((12, 8))
    with open(tmp_path / "pairs.jsonl", "w") as handle:
        for _ in range(300):
            x = rng.standard_normal(12)
            handle.write(json.dumps({"source": x.tolist(), "target": (x @ projection).tolist()}) + "\n")
    assert main(["adapter", "train", str(tmp_path / "shrink.npz"), "--pairs",
                 str(tmp_path / "pairs.jsonl")]) == 0
    return tmp_path / "shrink.npz"


def test_adapter_apply_and_adapt_on_dims_mismatch(tmp_path: Path, shrinking_adapter: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    rng = np.random.default_rng(1)
    old = [MemoryRecord(id=f"n{i}", text=f"memory {i}",
                        vectors={"": Vector.from_values(rng.standard_normal(12))})
           for i in range(30)]
    source = write_vmig(tmp_path / "old.vmig.jsonl", old)
    code, out, _ = vex(capsys, "adapter", "apply", str(shrinking_adapter), str(source),
                       f"cartridge://{tmp_path}/a.db")
    assert code == 0 and "adapted" in out
    assert {r.vectors[""].dims for r in read_all(f"cartridge://{tmp_path}/a.db").values()} == {8}

    # a target that already holds 8-dim vectors; only the 12-dim ones are translated
    held = [MemoryRecord(id=f"h{i}", vectors={"": Vector.from_values(rng.standard_normal(8))})
            for i in range(5)]
    write_vmig(tmp_path / "held.vmig.jsonl", held)
    vex(capsys, "migrate", str(tmp_path / "held.vmig.jsonl"), f"cartridge://{tmp_path}/b.db", "--quiet")
    code, _, _ = vex(capsys, "migrate", str(source), f"cartridge://{tmp_path}/b.db", "--quiet")
    assert code == 4  # skipped as dims_mismatch without a policy
    code, out, _ = vex(capsys, "migrate", str(source), f"cartridge://{tmp_path}/b.db", "--on-dims-mismatch",
                       "adapt", "--adapter", str(shrinking_adapter), "--json")
    assert code == 0 and json.loads(out)["counts"]["adapted"] == 30
    assert len(read_all(f"cartridge://{tmp_path}/b.db")) == 35

    code, _, err = vex(capsys, "migrate", str(source), f"cartridge://{tmp_path}/c.db",
                       "--on-dims-mismatch", "adapt")
    assert code == 2 and "--adapter" in err
    card = shrinking_adapter.with_name("shrink.card.json")
    data = json.loads(card.read_text())
    data["evaluation"]["recall_at_10"] = 0.05
    card.write_text(json.dumps(data))
    code, _, err = vex(capsys, "adapter", "apply", str(shrinking_adapter), str(source),
                       f"cartridge://{tmp_path}/d.db")
    assert code == 2 and "--force-adapter" in err and not (tmp_path / "d.db").exists()


def test_an_embedding_server_that_is_down_is_a_clear_error(tmp_path: Path) -> None:
    from vexchange.embed import get_embedder
    from vexchange.testing.servers import free_port

    embedder = get_embedder(f"openai+http://127.0.0.1:{free_port()}/v1?model=m&retries=1&timeout=2")
    with pytest.raises(VexError) as caught:
        embedder.embed(["hello"])
    embedder.close()
    assert "cannot reach" in str(caught.value)
