"""Parallel runs (docs/engine.md, "Parallel runs"): shard plans, and a 4-worker run equal to a
one-worker run of the same source (digests, counts, and for a .vmig.jsonl target the bytes)."""

from __future__ import annotations

import sqlite3
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
