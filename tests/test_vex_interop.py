"""Interop with the published Vex 0.8.8 (npm), run for real through the ``vex_npm`` fixture.

Our files in Vex: every .vmig.jsonl file our test corpus produces (the tricky corpus with
named-vector-only, sparse-only and empty records added, sample_records, VEKTOR exports of both
layouts; each with and without ``compat="vex"``) passes Vex's ``validate`` with zero errors and
no line skipped, ``inspect`` reads it, and Vex's VEKTOR loader keeps ids, text, vectors (float32
bytes), created_at, tags and importance (checked in the database with sqlite3).

What Vex itself drops on import into VEKTOR, and these tests state exactly (docs/formats/vmig.md,
"What Vex does with our files"): records whose text is empty or missing (its loader skips them:
in the corpus ``text-empty``, ``text-none``, ``named-only``, ``named-two``, ``sparse-only``,
``nothing``), every record's namespace (all rows get ``default``), and, with ``compat="vex"``,
a ``created_at`` within the first second of 1970 (epoch second 0 is falsy to Vex, which then
writes the import time: ``time-zero``). No record of the corpus is refused by Vex's validator:
the one record it could never accept, an empty id, is refused by our writer (test_codec).

Vex's files in ours: ``vex export --from vektor`` reads back as the rows Vex exported (integer
ids and epoch-second created_at, null metadata), ``vex migrate --from jsonl --to jsonl`` of our
file reads back as our records after JavaScript's number handling (Vex parses and re-prints
every number as a double), and ``vexchange.verify`` accepts the sidecars it writes, the empty
export's (``checksum: null``) included.
"""

from __future__ import annotations

import json
import re
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

import vexchange
from vexchange.codecs.vmig import decode_object, joinable_strings, parse_line
from vexchange.connectors.vmig import read_file
from vexchange.errors import IntegrityError
from vexchange.record import MemoryRecord, SparseVector, Vector
from vexchange.results import ChecksumCheck
from vexchange.testing.conformance import write_vmig
from vexchange.testing.records import sample_records
from vexchange.testing.tricky import strict_form, tricky_records
from vexchange.testing.vektor_fixture import build

VEX_DROPS_ON_VEKTOR_IMPORT = {"text-empty", "text-none", "named-only", "named-two", "sparse-only", "nothing"}
"""Corpus records Vex's VEKTOR loader skips: their text is empty (or null, written as null or as
``""`` with ``text_null``); Vex keeps no record without content."""


def _vector(n: int, seed: int) -> Vector:
    return Vector(np.random.default_rng(seed).standard_normal(n).astype("<f4").tobytes(), "m")


def corpus_records() -> list[MemoryRecord]:
    """The tricky corpus with a named vector on every record, plus the records Vex's
    "text or vector" rule and its tag handling make tricky."""
    return [
        *tricky_records(named=("title",)),
        MemoryRecord(id="named-only", vectors={"title": _vector(8, 1)}, created_at=1_735_689_600_123),
        MemoryRecord(id="named-two", vectors={"title": _vector(8, 2), "body": _vector(12, 3)}),
        MemoryRecord(id="named-with-text", text="has text", vectors={"title": _vector(8, 4)},
                     metadata={"tags": ["x", "y"], "importance": 5}, created_at=1_735_689_600_999),
        MemoryRecord(id="sparse-only", sparse={"bm25": SparseVector.from_values([1, 5], [0.5, 0.25])}),
        MemoryRecord(id="nothing"),
        MemoryRecord(id="tags-comma", text="t", metadata={"tags": ["a,b", "c"], "importance": 0.25}),
        MemoryRecord(id="tags-empty", text="t", metadata={"tags": []}),
        MemoryRecord(id="tags-one", text="t", metadata={"tags": ["solo"], "importance": None}),
        MemoryRecord(id="tags-str", text="t", metadata={"tags": "plain,str", "importance": 0}),
    ]


def _records(path: Path) -> list[MemoryRecord]:
    out: list[MemoryRecord] = []
    for page in read_file(path, batch_size=100):
        for item in page.items:
            assert isinstance(item, MemoryRecord), f"unreadable: {item}"
            out.append(item)
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, list[MemoryRecord]]]:
    """Every file, by name, with the records it was written from (for the VEKTOR exports: the
    records vexchange reads from the database, which the default export holds exactly)."""
    where = tmp_path_factory.mktemp("ours")
    out: dict[str, tuple[Path, list[MemoryRecord]]] = {}
    for name, records in (("tricky", corpus_records()),
                          ("sample", list(sample_records(40, named=("title",), sparse=True)))):
        plain = write_vmig(where / f"{name}.vmig.jsonl", records)
        out[name] = (plain, records)
        compat = where / f"{name}-compat.vmig.jsonl"
        vexchange.migrate(plain, compat, compat="vex")
        out[f"{name}-compat"] = (compat, records)
    for layout in ("slipstream", "legacy"):
        db = build(where / f"{layout}.db", n=120, dims=16, layout=layout, edge_cases=True).path
        plain = where / f"vektor-{layout}.vmig.jsonl"
        vexchange.export(f"vektor:{db}", plain, allow_skips=True)  # the fixture's bad row: a reject
        records = _records(plain)
        out[f"vektor-{layout}"] = (plain, records)
        compat = where / f"vektor-{layout}-compat.vmig.jsonl"
        vexchange.export(f"vektor:{db}", compat, allow_skips=True, compat="vex")
        out[f"vektor-{layout}-compat"] = (compat, records)
    return out


NAMES = ["tricky", "tricky-compat", "sample", "sample-compat", "vektor-slipstream",
         "vektor-slipstream-compat", "vektor-legacy", "vektor-legacy-compat"]


@pytest.mark.parametrize("name", NAMES)
def test_vex_validates_and_inspects_our_file_and_we_read_it_exactly(
        vex_npm: Any, files: Any, name: str) -> None:
    path, records = files[name]
    assert [strict_form(r) for r in _records(path)] == [strict_form(r) for r in records]
    done = vex_npm.run("validate", path, cwd=path.parent)
    said = done.stdout + done.stderr
    assert done.returncode == 0, said[-3000:]
    assert re.search(rf"VALIDATION\s+\({len(records)} records\)", said), said[-2000:]
    assert "error(s)" not in said and "\u2717" not in said, said[-3000:]
    assert "skipping bad line" not in said  # Vex parsed every line
    shown = vex_npm.run("inspect", path, cwd=path.parent)
    assert shown.returncode == 0, (shown.stdout + shown.stderr)[-2000:]
    assert re.search(rf"records\s+{len(records)}\b", shown.stdout), shown.stdout[-2000:]


def _expected_tags(metadata: dict[str, Any] | None) -> str | None:
    """What Vex's VEKTOR loader writes in ``tags`` from our line: the comma string (a
    reversible list of strings), or the JSON text we wrote for any other list."""
    tags = (metadata or {}).get("tags")
    if isinstance(tags, list):
        text = ",".join(tags) if joinable_strings(tags) else orjson.dumps(tags).decode()
        return text or None
    return tags or None


def _expected_vector(record: MemoryRecord, compat: bool) -> bytes | None:
    if record.vector is not None:
        return record.vector.data
    if compat and len(record.vectors) == 1:  # a lone named vector is written as `vector`
        return next(iter(record.vectors.values())).data
    return None


@pytest.mark.parametrize("name", ["tricky", "tricky-compat", "vektor-slipstream", "sample-compat"])
def test_vex_vektor_import_keeps_ids_text_vectors_times_tags_importance(
        vex_npm: Any, files: Any, name: str, tmp_path: Path) -> None:
    path, records = files[name]
    compat = name.endswith("-compat")
    db = tmp_path / "new.db"
    done = vex_npm.run("import", "--from", path, "--to", "vektor", "--db", db, "--skip-graph", cwd=tmp_path)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    kept = [r for r in records if (r.text or "").strip()]
    if name == "tricky":
        assert {r.id for r in records} - {r.id for r in kept} == VEX_DROPS_ON_VEKTOR_IMPORT
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT id, content, vector, created_at, tags, importance, namespace"
                            " FROM memories ORDER BY rowid").fetchall()
    assert len(rows) == len(kept)
    for record, (rid, content, blob, created, tags, importance, namespace) in zip(kept, rows, strict=True):
        where = f"record {record.id!r}"
        assert (rid, content) == (record.id, record.text), where
        assert blob == _expected_vector(record, compat), where
        if record.created_at is not None and not (compat and record.created_at // 1000 == 0):
            assert created == record.created_at // 1000, where  # else Vex writes the import time
        assert tags == _expected_tags(record.metadata), where
        wanted = (record.metadata or {}).get("importance")
        assert importance == (3 if wanted is None else wanted), where
        assert namespace == "default"  # Vex ignores record namespaces (--namespace or "default")


def test_we_read_vex_exports_of_a_vektor_database_as_vex_meant(vex_npm: Any, tmp_path: Path) -> None:
    db = build(tmp_path / "fx.db", n=60, dims=8).path
    out = tmp_path / "x.vmig.jsonl"
    done = vex_npm.run("export", "--from", "vektor", "--db", db, "--output", out, cwd=tmp_path)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    line = json.loads(out.read_text().splitlines()[0])
    assert type(line["id"]) is int and type(line["created_at"]) is int and line["metadata"] is None
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT id, content, vector, namespace, created_at FROM memories").fetchall()
    expected = {str(i): MemoryRecord(id=str(i), id_type="int", text=text, vectors={"": Vector(blob)},
                                     namespace=ns, created_at=created * 1000, source_store="vektor")
                for i, text, blob, ns, created in rows}
    got = {r.id: r for r in _records(out)}
    assert {k: strict_form(v) for k, v in got.items()} == {k: strict_form(v) for k, v in expected.items()}


def _as_javascript(value: Any) -> Any:
    """A parsed JSON value as ``JSON.stringify(JSON.parse(...))`` leaves it: every number is a
    double, printed as an integer when it is whole and below 1e21, ``-0`` as ``0``."""
    if isinstance(value, dict):
        return {k: _as_javascript(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_javascript(v) for v in value]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    double = float(value)
    if double.is_integer() and abs(double) < 1e21:
        return int(Decimal(repr(double)))  # JavaScript's digits: 2**64 prints 18446744073709552000
    return double


@pytest.mark.parametrize("name", ["tricky", "tricky-compat"])
def test_we_read_vex_migrate_of_our_file_and_verify_its_sidecar(
        vex_npm: Any, files: Any, name: str, tmp_path: Path) -> None:
    path, _ = files[name]
    theirs = tmp_path / "theirs.vmig.jsonl"
    done = vex_npm.run("migrate", "--from", "jsonl", "--to", "jsonl", "--file", path, "--output", theirs,
                       cwd=tmp_path)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    meant = []
    for raw in path.read_bytes().splitlines():
        obj = _as_javascript(json.loads(raw))
        text = json.dumps(obj).encode()
        meant.append(decode_object(parse_line(text), text))
    assert [strict_form(r) for r in _records(theirs)] == [strict_form(r) for r in meant]
    report = vexchange.verify(theirs)
    assert report.ok, report
    check = report.checks[0]
    assert isinstance(check, ChecksumCheck)
    assert check.status == "ok-vex-convention"  # Vex hashes the file minus its last LF


def test_vex_sidecar_of_an_empty_export_verifies_and_reads(vex_npm: Any, tmp_path: Path) -> None:
    empty = tmp_path / "empty.vmig.jsonl"
    empty.write_bytes(b"")
    theirs = tmp_path / "theirs.vmig.jsonl"
    done = vex_npm.run("migrate", "--from", "jsonl", "--to", "jsonl", "--file", empty, "--output", theirs,
                       cwd=tmp_path)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    meta = json.loads((tmp_path / "theirs.vmig.meta.json").read_text())
    assert meta["checksum"] is None and meta["record_count"] == 0
    report = vexchange.verify(theirs)
    check = report.checks[0]
    assert report.ok and isinstance(check, ChecksumCheck) and check.status == "ok-empty", report
    assert _records(theirs) == []
    copy = tmp_path / "copy.vmig.jsonl"
    vexchange.migrate(theirs, copy)
    assert _records(copy) == [] and vexchange.verify(copy).ok
    # the empty claim is a claim: a record added later fails both verify and a read
    with open(theirs, "ab") as handle:
        handle.write(b'{"id":"late","text":"added","vex_version":"1.0.0"}\n')
    assert not vexchange.verify(theirs).ok
    with pytest.raises(IntegrityError):
        _records(theirs)
