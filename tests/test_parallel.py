"""Parallel runs (docs/engine.md, "Parallel runs"): shard plans, and a 4-worker run equal to a
one-worker run of the same source (digests, counts, and for a .vmig.jsonl target the bytes)."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import pytest

import vexchange
from vexchange.connectors._base import Shard
from vexchange.connectors.vektor import VektorConnector
from vexchange.connectors.vmig import VmigConnector
from vexchange.engine.options import RunOptions
from vexchange.errors import UsageError
from vexchange.sample_data import build
from vexchange.spec import StoreSpec


def _ids(connector: object, shards: list[Shard]) -> list[object]:
    return [getattr(item, "id", None) or getattr(item, "location", None)
            for shard in shards for page in connector.read_shard(shard, batch_size=97)  # type: ignore[attr-defined]
            for item in page.items]


def test_vektor_plan_covers_every_row_once_in_order(tmp_path: Path) -> None:
    build(tmp_path / "m.db", n=2000, dims=4)
    source = VektorConnector(StoreSpec.parse(f"vektor:{tmp_path / 'm.db'}"))
    plan = source.shard_plan(4)
    assert len(plan) == 4 and plan == source.shard_plan(4)  # deterministic
    whole = [item.id for page in source.read(batch_size=97) for item in page.items]  # type: ignore[union-attr]
    assert _ids(source, plan) == whole


def test_vmig_plan_cuts_at_lines_and_keeps_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "m.vmig.jsonl"
    lines = [b'{"id":"%d","text":"%s","vector":[0.5,1.0]}\n' % (i, b"x" * (i % 50)) for i in range(4000)]
    lines[2500] = b"{not json\n"
    lines[10] = b"\n# a comment\n"
    path.write_bytes(b"".join(lines))
    source = VmigConnector(StoreSpec.parse(str(path)))
    plan = source.shard_plan(4)
    assert len(plan) == 4 and all(s.kind == "bytes" for s in plan)
    whole = [getattr(i, "id", None) or i.location for p in source.read(batch_size=97)  # type: ignore[union-attr]
             for i in p.items]
    assert _ids(source, plan) == whole
    assert f"{path} line 2502" in whole  # the comment added a line before it


def test_small_source_is_one_shard(tmp_path: Path) -> None:
    build(tmp_path / "m.db", n=10, dims=4)
    assert VektorConnector(StoreSpec.parse(f"vektor:{tmp_path / 'm.db'}")).shard_plan(4) == [Shard(index=0)]


def test_workers_option() -> None:
    assert RunOptions().worker_count() == 1
    assert RunOptions(workers="auto").worker_count() >= 1
    with pytest.raises(UsageError):
        RunOptions(workers=0).validate()


def test_four_workers_export_is_byte_identical(tmp_path: Path) -> None:
    build(tmp_path / "m.db", n=3000, dims=8)
    one = vexchange.migrate(f"vektor:{tmp_path / 'm.db'}", tmp_path / "one.vmig.jsonl")
    four = vexchange.migrate(f"vektor:{tmp_path / 'm.db'}", tmp_path / "four.vmig.jsonl", workers=4)
    assert four.status == "completed" and four.options["workers"] == 4
    assert four.counts == one.counts and four.namespaces == one.namespaces
    assert (tmp_path / "four.vmig.jsonl").read_bytes() == (tmp_path / "one.vmig.jsonl").read_bytes()
    assert not (tmp_path / "four.vmig.jsonl.receipt.json.shards").exists()
    assert vexchange.verify(tmp_path / "four.vmig.jsonl").ok  # the sidecar's checksum is over the whole


def test_four_workers_import_into_a_file_store(tmp_path: Path) -> None:
    """VEKTOR is one file: the parts are replayed in shard order through one writer."""
    build(tmp_path / "m.db", n=3000, dims=8)
    vexchange.migrate(f"vektor:{tmp_path / 'm.db'}", tmp_path / "src.vmig.jsonl")
    one = vexchange.migrate(tmp_path / "src.vmig.jsonl", f"vektor:{tmp_path / 'one.db'}")
    four = vexchange.migrate(tmp_path / "src.vmig.jsonl", f"vektor:{tmp_path / 'four.db'}", workers=4)
    assert four.counts == one.counts and four.namespaces == one.namespaces
    with sqlite3.connect(tmp_path / "four.db") as db:
        assert db.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM memories").fetchone() == (3000, 3000)


def test_a_replay_reads_the_parts_in_a_child(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             children: list[subprocess.Popen[bytes]]) -> None:
    """The parts replayed through a cartridge's one writer are read and decoded by a reading
    child (as a large file source is), so that writer does not parse them too."""
    from vexchange.engine import read_process

    build(tmp_path / "m.db", n=2000, dims=8)
    vexchange.migrate(f"vektor:{tmp_path / 'm.db'}", tmp_path / "src.vmig.jsonl")
    one = vexchange.migrate(tmp_path / "src.vmig.jsonl", f"cartridge:{tmp_path / 'one.cartridge'}")
    monkeypatch.setenv("VEX_READ_AHEAD", "process")
    monkeypatch.setattr(read_process, "usable_cpus", lambda: 2)
    two = vexchange.migrate(tmp_path / "src.vmig.jsonl", f"cartridge:{tmp_path / 'two.cartridge'}",
                            workers=2)
    assert len(children) == 1 and children[0].returncode == 0  # the replay's: the workers are apart
    assert two.counts == one.counts and two.namespaces == one.namespaces


def _records(connector: object, shards: list[Shard]) -> list[object]:
    return [item for shard in shards for page in connector.read_shard(shard, batch_size=97)  # type: ignore[attr-defined]
            for item in page.items]


@pytest.mark.parametrize("kind", ["mg", "cartridge"])
def test_mg_and_cartridge_plans_cover_every_record_once_in_order(tmp_path: Path, kind: str) -> None:
    from vexchange.connectors.cartridge import CartridgeConnector
    from vexchange.connectors.mg import MgConnector

    build(tmp_path / "m.db", n=2000, dims=4)
    location = f"cartridge:{tmp_path / 'm.cartridge'}" if kind == "cartridge" else str(tmp_path / "m.mg")
    vexchange.migrate(f"vektor:{tmp_path / 'm.db'}", location)
    source = (CartridgeConnector(StoreSpec.parse(location)) if kind == "cartridge"
              else MgConnector(StoreSpec.parse(location)))
    plan = source.shard_plan(4)
    assert len(plan) == 4 and plan == source.shard_plan(4)  # deterministic
    assert {s.kind for s in plan} == {"rowid" if kind == "cartridge" else "index"}
    whole = [item for page in source.read(batch_size=97) for item in page.items]
    assert _records(source, plan) == whole  # the records themselves, vectors included
    assert source.shard_checks() is not None


@pytest.mark.parametrize("kind", ["mg", "cartridge"])
def test_four_workers_from_mg_and_cartridge(tmp_path: Path, kind: str) -> None:
    build(tmp_path / "m.db", n=3000, dims=8)
    location = f"cartridge:{tmp_path / 'm.cartridge'}" if kind == "cartridge" else str(tmp_path / "m.mg")
    vexchange.migrate(f"vektor:{tmp_path / 'm.db'}", location)
    one = vexchange.migrate(location, tmp_path / "one.vmig.jsonl")
    four = vexchange.migrate(location, tmp_path / "four.vmig.jsonl", workers=4)
    assert four.counts == one.counts and four.namespaces == one.namespaces
    assert (tmp_path / "four.vmig.jsonl").read_bytes() == (tmp_path / "one.vmig.jsonl").read_bytes()


def test_a_damaged_mg_vectors_file_stops_a_parallel_run(tmp_path: Path) -> None:
    from vexchange.errors import IntegrityError

    build(tmp_path / "m.db", n=3000, dims=8)
    vexchange.migrate(f"vektor:{tmp_path / 'm.db'}", tmp_path / "m.mg")
    vectors = tmp_path / "m.mg.vectors"
    data = bytearray(vectors.read_bytes())
    data[-1] ^= 1
    vectors.write_bytes(bytes(data))
    with pytest.raises(IntegrityError):
        vexchange.migrate(tmp_path / "m.mg", tmp_path / "out.vmig.jsonl", workers=4)
    assert not (tmp_path / "out.vmig.jsonl").exists()


@pytest.mark.parametrize("target", ["out.vmig.jsonl", "vektor:out.db"])
def test_a_vmig_file_changed_after_its_sidecar_stops_a_parallel_run(tmp_path: Path, target: str) -> None:
    """The checksum is made on a thread beside the workers for a file or embedded target: the
    run still stops before anything is joined or replayed."""
    from vexchange.engine.receipt import load_receipt
    from vexchange.errors import IntegrityError

    build(tmp_path / "m.db", n=3000, dims=8)
    source = tmp_path / "m.vmig.jsonl"
    vexchange.migrate(f"vektor:{tmp_path / 'm.db'}", source)
    data = source.read_bytes()
    at = data.index(b"memory 2000")
    source.write_bytes(data[:at] + b"MEMORY" + data[at + 6:])  # still a valid record
    out = target.replace("vektor:", "")
    location = target.replace("out.db", str(tmp_path / "out.db")) if target.startswith("vektor:") \
        else str(tmp_path / target)
    with pytest.raises(IntegrityError):
        vexchange.migrate(source, location, workers=2)
    receipt = load_receipt(tmp_path / f"{out}.receipt.json")
    assert receipt.status == "failed"
    if out.endswith(".vmig.jsonl"):
        assert not (tmp_path / out).exists() and not (tmp_path / "out.vmig.jsonl.partial").exists()
    else:
        assert not (tmp_path / out).exists() or sqlite3.connect(tmp_path / out).execute(
            "SELECT COUNT(*) FROM memories").fetchone() == (0,)


def test_a_store_target_has_the_source_checked_before_any_worker_starts(tmp_path: Path) -> None:
    from vexchange.engine.parallel import check_source
    from vexchange.errors import IntegrityError

    build(tmp_path / "m.db", n=300, dims=8)
    source = tmp_path / "m.vmig.jsonl"
    vexchange.migrate(f"vektor:{tmp_path / 'm.db'}", source)
    source.write_bytes(source.read_bytes().replace(b"memory 200", b"MEMORY 200"))
    connector = VmigConnector(StoreSpec.parse(str(source)))
    with pytest.raises(IntegrityError):
        check_source(connector, "direct")  # raised here, not in a future the workers outrun
    beside = check_source(connector, "join")
    with pytest.raises(IntegrityError):
        beside.result(timeout=30)


def test_a_cartridge_row_changed_is_rejected_by_its_shard(tmp_path: Path) -> None:
    build(tmp_path / "m.db", n=3000, dims=8)
    cart = tmp_path / "m.cartridge"
    vexchange.migrate(f"vektor:{tmp_path / 'm.db'}", f"cartridge:{cart}")
    with sqlite3.connect(cart) as db:
        db.execute("UPDATE records SET text = 'changed' WHERE rid = 2500")
    one = vexchange.migrate(f"cartridge:{cart}", tmp_path / "one.vmig.jsonl")
    four = vexchange.migrate(f"cartridge:{cart}", tmp_path / "four.vmig.jsonl", workers=4)
    assert one.counts.skipped == {"content_id_mismatch": 1}
    assert four.counts == one.counts and four.namespaces == one.namespaces
    assert Path(str(four.rejects_file)).read_bytes() == Path(str(one.rejects_file)).read_bytes()
