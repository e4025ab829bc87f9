"""Our ``compat="vex"`` files into the published Vex 0.8.8's pgvector loader, against the test
PostgreSQL, checked row by row with psycopg.

Vex's loader puts ``created_at`` as it is into a BIGINT column, so a file with ISO timestamps
(our default) loses every row that has one; with ``compat="vex"`` (epoch seconds) every record is
written, and a lone named vector lands in the ``vector`` column. What Vex itself changes, and the
test states: ``namespace`` null becomes ``default``, null text becomes ``""``, importance is
``metadata.importance || 0.6``, a vector whose size differs from the first one is written NULL,
and ``metadata`` holds our flat line metadata (comma strings, JSON text) as JSONB.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

import vexchange
from vexchange.connectors.vmig import read_file
from vexchange.record import MemoryRecord
from vexchange.testing.conformance import write_vmig
from vexchange.testing.records import sample_records

pytest.importorskip("psycopg")


def _records() -> list[MemoryRecord]:
    """sample_records (8 dims), every fifth record's vector renamed so it is a lone named vector
    beside text, the case ``compat="vex"`` moves into ``vector``. Text without NUL characters,
    which PostgreSQL's text and jsonb refuse (a Vex row error, not ours to test here)."""
    out = []
    for i, record in enumerate(sample_records(36, dims=8)):
        if i % 5 == 3 and record.vector is not None:
            record = record.replace(vectors={"title": record.vector})
        out.append(record)
    return out


def _line_metadata(path: Path) -> dict[str, Any]:
    """Each record's ``metadata`` as the line holds it (what Vex stores as JSONB)."""
    return {obj["id"]: obj["metadata"] for obj in map(orjson.loads, path.read_bytes().splitlines())}


def _doubles(value: Any) -> Any:
    """Numbers as the doubles JavaScript makes of them (2**53 + 1 is 2**53 to Vex)."""
    if isinstance(value, dict):
        return {k: _doubles(v) for k, v in value.items()}
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


def _rows(server: Any, table: str) -> dict[str, tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(host=server.host, port=server.port, user="postgres", dbname="postgres",
                         autocommit=True) as conn:
        got = conn.execute(psycopg.sql.SQL(
            "SELECT id, content, namespace, importance, tags, created_at, metadata, vector::text"
            " FROM {}").format(psycopg.sql.Identifier(table))).fetchall()
        conn.execute(psycopg.sql.SQL("DROP TABLE {}").format(psycopg.sql.Identifier(table)))
    return {row[0]: row[1:] for row in got}


def _vex_import(vex_npm: Any, path: Path, server: Any, table: str) -> str:
    done = vex_npm.run("import", "--from", path, "--to", "pgvector", "--table", table,
                       "--url", f"postgres://postgres@{server.host}:{server.port}/postgres", cwd=path.parent)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return str(done.stdout + done.stderr)


def test_vex_pgvector_import_of_a_compat_file_writes_every_record(
        vex_npm: Any, store_servers: Any, tmp_path: Path) -> None:
    server = store_servers["postgres"]
    records = _records()
    plain = write_vmig(tmp_path / "ours.vmig.jsonl", records)
    compat = tmp_path / "ours-compat.vmig.jsonl"
    vexchange.migrate(plain, compat, compat="vex")
    run = uuid.uuid4().hex[:8]

    # without compat: every record with an ISO created_at is a row error in Vex
    said = _vex_import(vex_npm, plain, server, f"vex_plain_{run}")
    dated = sum(r.created_at is not None for r in records)
    assert f"({dated} failed)" in said, said[-2000:]
    assert len(_rows(server, f"vex_plain_{run}")) == len(records) - dated

    said = _vex_import(vex_npm, compat, server, f"vex_compat_{run}")
    assert "(0 failed)" in said, said[-2000:]
    rows = _rows(server, f"vex_compat_{run}")
    metadata = _line_metadata(compat)
    assert set(rows) == {r.id for r in records}
    moved = 0
    for record in records:
        content, namespace, importance, tags, created, meta, vector = rows[record.id]
        where = f"record {record.id!r}"
        assert content == (record.text or ""), where
        assert namespace == (record.namespace or "default"), where
        if record.created_at is not None:
            assert created == record.created_at // 1000, where
        line_meta = metadata[record.id] or {}
        assert _doubles(meta) == _doubles(line_meta), where  # Vex holds every number as a double
        assert tags == (line_meta.get("tags") or ""), where
        assert importance == (line_meta.get("importance") or 0.6), where
        dense = record.vector or (next(iter(record.vectors.values())) if len(record.vectors) == 1 else None)
        if dense is None:
            assert vector is None, where
        else:
            moved += record.vector is None
            values = np.array(orjson.loads(vector), dtype="<f4")
            assert values.tobytes() == dense.data, where  # float32 exactly
    assert moved >= 5  # lone named vectors landed in Vex's vector column
    # and our reader still has every record exactly
    assert [r for p in read_file(compat, batch_size=50) for r in p.items] == records
