"""Incremental runs (docs/engine.md, "Incremental runs"): after records of a VEKTOR source are
changed, added and deleted, ``--incremental`` copies only those, deletes what the source no
longer holds, and leaves the target equal, row for row (read with sqlite3), to a full run into
a new database; a second run with no change copies nothing; a run killed midway is caught up
by the next one."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

import vexchange
from vexchange.connectors.vektor import VektorWriter
from vexchange.engine.receipt import Receipt
from vexchange.errors import MigrationError, UsageError
from vexchange.sample_data import build

def _now() -> int:
    """The time of an edit, read when the edit is made: a run marks what it read by the
    clock at that moment, so a stamp taken when the module was collected (minutes earlier in
    a whole suite) would fall before the previous run's mark."""
    return int(time.time())


def _rows(db: Path) -> list[tuple[Any, ...]]:
    """Every row of ``memories`` and of the side table, by sqlite3 alone."""
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT * FROM memories ORDER BY id").fetchall()
        side = con.execute("SELECT * FROM vexchange_records ORDER BY row_key").fetchall() \
            if con.execute("SELECT 1 FROM sqlite_master WHERE name = 'vexchange_records'").fetchone() else []
        return rows + side
    finally:
        con.close()


def _fts(db: Path, word: str) -> list[int]:
    con = sqlite3.connect(db)
    try:
        return sorted(r[0] for r in con.execute(
            "SELECT rowid FROM memories_fts WHERE memories_fts MATCH ?", (word,)))
    finally:
        con.close()


def _change(db: Path) -> None:
    """What an app does between two runs: 3 rows edited, 2 added, 2 deleted, each stamped."""
    con = sqlite3.connect(db)
    with con:
        for i in (5, 50, 150):
            con.execute("UPDATE memories SET content = content || ' (edited)', updated_at = ?"
                        " WHERE id = ?", (_now(), i))
        for i in (9001, 9002):
            con.execute("INSERT INTO memories (id, content, namespace, created_at, updated_at, vector)"
                        " VALUES (?, ?, 'work', ?, ?, ?)", (i, f"fresh memory {i} zebra", _now(), _now(),
                                                            bytes(range(64))))
        con.execute("DELETE FROM memories WHERE id IN (7, 77)")
    con.close()


def _incremental(source: Path, target: Path, **options: Any) -> Receipt:
    return vexchange.migrate(f"vektor:{source}", f"vektor:{target}", incremental=True, allow_skips=True,
                             batch_size=64, **options)


def test_vektor_changes_added_and_deleted_leave_the_target_equal_to_a_full_run(tmp_path: Path) -> None:
    fx = build(tmp_path / "src.db", n=300, dims=16, edge_cases=True)
    target = tmp_path / "dst.db"
    first = _incremental(fx.path, target)
    assert first.incremental is not None and first.incremental["first"]
    assert first.counts.written == fx.records - 1 and first.counts.skipped == {"bad_row": 1}
    assert first.incremental["by"] == "updated_at" and first.incremental["in_step"]
    assert Path(first.incremental["state_file"]).exists()

    _change(fx.path)
    second = _incremental(fx.path, target)
    inc = second.incremental
    assert inc is not None and inc["read"] == "changed" and inc["since"] == first.incremental["high_water"]
    assert inc["previous_run_id"] == first.run_id
    assert second.counts.written == 5  # 3 edited, 2 added: only what changed
    assert second.counts.deleted == 2 and inc["deletions"] == "propagated"
    # read again and found unchanged: the far-future row (after every mark), nothing else
    assert second.counts.unchanged == 1
    assert inc["in_step"] and not inc["differ"]

    full = tmp_path / "full.db"
    whole = vexchange.migrate(f"vektor:{fx.path}", f"vektor:{full}", allow_skips=True)
    assert _rows(target) == _rows(full)  # row for row, side table included
    assert {ns: d.written for ns, d in second.namespaces.items()} == \
        {ns: d.written for ns, d in whole.namespaces.items()}
    assert _fts(target, "zebra") == [9001, 9002] and _fts(target, "edited") == [5, 50, 150]
    assert vexchange.verify(f"vektor:{target}", receipt=second.receipt_file).ok

    third = _incremental(fx.path, target)  # nothing changed since
    assert third.counts.written == 0 and third.counts.deleted == 0
    assert third.incremental is not None and third.incremental["in_step"]
    assert _rows(target) == _rows(full)


def test_without_updated_at_changes_are_found_by_digest(tmp_path: Path) -> None:
    """The legacy layout has no updated_at: every record is read and compared with the state;
    an edit that touches no timestamp is still found, and a deletion by the full read."""
    fx = build(tmp_path / "src.db", n=120, dims=8, layout="legacy")
    target = tmp_path / "dst.db"
    sqlite3.connect(target).executescript(
        "CREATE TABLE memories (id TEXT PRIMARY KEY, content TEXT, embedding BLOB, metadata TEXT,"
        " created_at TEXT, namespace TEXT);")
    first = _incremental(fx.path, target)
    assert first.incremental is not None and first.incremental["by"] == "digests"
    con = sqlite3.connect(fx.path)
    with con:
        con.execute("UPDATE memories SET content = 'rewritten' WHERE id = 'mem-0000010'")
        con.execute("DELETE FROM memories WHERE id = 'mem-0000011'")
    con.close()
    second = _incremental(fx.path, target)
    assert (second.counts.written, second.counts.deleted, second.counts.unchanged) == (1, 1, 118)
    assert second.incremental is not None and second.incremental["in_step"]
    full = tmp_path / "full.db"
    sqlite3.connect(full).executescript(
        "CREATE TABLE memories (id TEXT PRIMARY KEY, content TEXT, embedding BLOB, metadata TEXT,"
        " created_at TEXT, namespace TEXT);")
    vexchange.migrate(f"vektor:{fx.path}", f"vektor:{full}")
    assert _rows(target) == _rows(full)


def test_vmig_source_deletions_by_the_full_read(tmp_path: Path) -> None:
    fx = build(tmp_path / "src.db", n=50, dims=4)
    exported = tmp_path / "m.vmig.jsonl"
    vexchange.export(f"vektor:{fx.path}", exported)
    target = tmp_path / "dst.db"
    vexchange.migrate(exported, f"vektor:{target}", incremental=True)
    con = sqlite3.connect(fx.path)
    with con:
        con.execute("DELETE FROM memories WHERE id IN (3, 4, 5)")
    con.close()
    vexchange.export(f"vektor:{fx.path}", exported)  # the file written anew, with its sidecar
    again = vexchange.migrate(exported, f"vektor:{target}", incremental=True)
    assert (again.counts.written, again.counts.deleted) == (0, 3)
    assert again.incremental is not None and again.incremental["in_step"]
    assert len(_rows(target)) == 47


def test_a_run_killed_midway_is_caught_up_by_the_next(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The state is marked unknown before each write and learns the digests only after the
    target acknowledged, so a failure after the target took a batch loses nothing: the next
    run writes what is unknown again, and ends equal to a full run."""
    fx = build(tmp_path / "src.db", n=200, dims=8)
    target = tmp_path / "dst.db"
    _incremental(fx.path, target)
    con = sqlite3.connect(fx.path)
    original = con.execute("SELECT content, updated_at FROM memories WHERE id = 70").fetchone()
    with con:
        con.execute("UPDATE memories SET content = 'changed', updated_at = ? WHERE id <= 150", (_now(),))
    con.close()
    write = VektorWriter.write
    calls = {"n": 0}

    def failing(self: VektorWriter, batch: list[Any]) -> Any:
        calls["n"] += 1
        result = write(self, batch)  # the target takes it, then the run dies
        if calls["n"] == 2:
            raise OSError("disk gone")
        return result

    monkeypatch.setattr(VektorWriter, "write", failing)
    with pytest.raises(MigrationError) as stopped:
        _incremental(fx.path, target)
    assert "--resume" not in (stopped.value.hint or "")
    monkeypatch.setattr(VektorWriter, "write", write)
    # meanwhile the app puts back, as it was, a row of the batch the target took but the state
    # never learnt of: without a newer updated_at only a full read finds it
    con = sqlite3.connect(fx.path)
    with con:
        con.execute("UPDATE memories SET content = ?, updated_at = ? WHERE id = 70", original)
    con.close()
    caught_up = _incremental(fx.path, target)
    assert caught_up.incremental is not None and caught_up.incremental["in_step"]
    assert caught_up.incremental["read"] == "all"
    assert caught_up.counts.written == 150 - 64
    full = tmp_path / "full.db"
    vexchange.migrate(f"vektor:{fx.path}", f"vektor:{full}")
    assert _rows(target) == _rows(full)


def test_dry_run_counts_and_keeps_nothing(tmp_path: Path) -> None:
    fx = build(tmp_path / "src.db", n=60, dims=16)
    target = tmp_path / "dst.db"
    _incremental(fx.path, target)
    _change(fx.path)
    before = _rows(target)
    dry = _incremental(fx.path, target, dry_run=True)
    assert dry.status == "dry_run" and (dry.counts.written, dry.counts.deleted) == (4, 1)
    assert _rows(target) == before
    real = _incremental(fx.path, target)
    assert (real.counts.written, real.counts.deleted) == (4, 1)


@pytest.mark.parametrize("options", [{"workers": 2}, {"resume": True}, {"limit": 5},
                                     {"since": "2025-01-01T00:00:00Z"}])
def test_refused_options(tmp_path: Path, options: dict[str, Any]) -> None:
    fx = build(tmp_path / "src.db", n=10, dims=4)
    with pytest.raises(UsageError, match="--incremental cannot be combined"):
        _incremental(fx.path, tmp_path / "dst.db", **options)


def test_a_file_target_is_refused(tmp_path: Path) -> None:
    fx = build(tmp_path / "src.db", n=10, dims=4)
    with pytest.raises(UsageError, match="keeps what it holds"):
        vexchange.migrate(f"vektor:{fx.path}", tmp_path / "out.vmig.jsonl", incremental=True)


def test_cli_incremental(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from vexchange.cli import main

    fx = build(tmp_path / "src.db", n=30, dims=4)
    target = tmp_path / "dst.db"
    args = ["migrate", f"vektor:{fx.path}", f"vektor:{target}", "--incremental", "--json"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    receipt = json.loads(out)
    assert receipt["counts"]["written"] == 0 and receipt["incremental"]["in_step"]
    assert main([*args, "--workers", "2"]) == 2
    assert "--incremental cannot be combined with --workers" in capsys.readouterr().err


def _edge_points(path: Path) -> dict[str, tuple[Any, bytes]]:
    """Every point of a Qdrant Edge shard, by its own client: id -> (payload, vector bytes)."""
    import numpy as np
    import orjson

    qe = pytest.importorskip("qdrant_edge")
    shard = qe.EdgeShard.load(str(path))
    out: dict[str, tuple[Any, bytes]] = {}
    try:
        offset = None
        while True:
            points, offset = shard.scroll(qe.ScrollRequest(offset=offset, limit=500, with_payload=True,
                                                           with_vector=True))
            for p in points:
                vector = p.vector[""] if isinstance(p.vector, dict) else p.vector
                out[str(p.id)] = (orjson.dumps(p.payload, option=orjson.OPT_SORT_KEYS),
                                  np.asarray(vector, dtype="<f4").tobytes())
            if offset is None:
                return out
    finally:
        shard.close()


def test_vektor_into_qdrant_edge(tmp_path: Path) -> None:
    """Dot product: Qdrant keeps cosine vectors normalised, and the added rows' vectors are
    not unit vectors (the proof would then say, rightly, that the target holds other bytes)."""
    pytest.importorskip("qdrant_edge")
    fx = build(tmp_path / "src.db", n=200, dims=16)
    target = tmp_path / "edge"
    first = vexchange.migrate(f"vektor:{fx.path}", f"qdrant-edge://{target}", incremental=True,
                              batch_size=64, metric="dot")
    assert first.counts.written == 200
    _change(fx.path)
    second = vexchange.migrate(f"vektor:{fx.path}", f"qdrant-edge://{target}", incremental=True,
                               metric="dot")
    assert (second.counts.written, second.counts.deleted) == (5, 2)
    assert second.incremental is not None and second.incremental["in_step"]
    full = tmp_path / "full"
    vexchange.migrate(f"vektor:{fx.path}", f"qdrant-edge://{full}", metric="dot")
    assert _edge_points(target) == _edge_points(full) and len(_edge_points(target)) == 200
