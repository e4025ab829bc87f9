"""Fuzzing every reader: seeded, bounded mutations of every file format vexchange reads.

Each reader gets ``CASES`` mutated copies of a small valid file (bit flips, truncation, byte
insertion and deletion, splices of the file into itself, and for SQLite files whole damaged
pages), each read under a time bound. Asserted for every case:

* no traceback: only vexchange's errors (VexError) or clean rejects;
* no hang: ``signal.alarm`` stops a case after ``CASE_SECONDS`` (and SQLite statements are
  bounded by VEX_SQLITE_SECONDS, set low here);
* no corrupted input accepted: where the format has a checksum (a .vmig.jsonl sidecar, the .mg
  footer and vectors hash, a cartridge's content ids, a pack's manifest hashes), a read that
  completes yields only records exactly as they were written; where it has none (a VEKTOR
  database, whose rows anyone may edit), every record yielded is a well-formed MemoryRecord.

A failure names the reader, the seed and the mutation, so ``_mutate(data, Random(seed))``
replays it. Total time well under a minute on two cores.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import signal
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vexchange import api
from vexchange._canonical import content_id
from vexchange.checks import inspect, validate
from vexchange.connectors._base import Reject
from vexchange.engine.checkpoint import Checkpoint
from vexchange.engine.receipt import load_receipt
from vexchange.errors import VexError
from vexchange.pack.manifest import dump_manifest, load_manifest
from vexchange.pack.search import search
from vexchange.pack.vectorpack import verify_pack
from vexchange.record import MemoryRecord, Vector
from vexchange.sidecar import sidecar_path
from vexchange.testing.conformance import write_vmig

CASES = 300
"""Mutations per reader (each case reads the mutated copy completely)."""
CASE_SECONDS = 5
"""A case that takes longer is a hang (a normal case takes milliseconds)."""


class Hang(BaseException):
    """Raised by the alarm: a BaseException, so no reader's ``except Exception`` swallows it."""


@pytest.fixture(autouse=True)
def _bounded(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("VEX_SQLITE_SECONDS", "2")

    def stop(signum: int, frame: Any) -> None:
        raise Hang()

    previous = signal.signal(signal.SIGALRM, stop)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


# ----------------------------------------------------------------------------------- inputs


def _records() -> list[MemoryRecord]:
    rng = np.random.default_rng(7)
    out = []
    for i in range(12):
        vectors = {"": Vector.from_values(rng.standard_normal(4).astype(np.float32), "m")}
        if i % 3 == 0:
            vectors["title"] = Vector.from_values(rng.standard_normal(2).astype(np.float32))
        out.append(MemoryRecord(
            id=str(i) if i % 2 else f"mem-{i}", id_type="int" if i % 2 else "str",
            text=f"memory number {i} " + "é" * (i % 3), vectors=vectors,
            namespace=None if i % 4 == 0 else f"ns{i % 3}",
            metadata={"k": i, "tags": ["a", "b"], "nested": {"x": [i, {"y": None}]}},
            created_at=1_700_000_000_000 + i * 1000))
    return out


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One valid file of every format, written by vexchange itself."""
    root = tmp_path_factory.mktemp("fuzz-sources")
    plain = write_vmig(root / "plain.vmig.jsonl", _records())
    out = {"plain": plain}
    for name, target in (("vmig", "export.vmig.jsonl"), ("mg", "memory.mg"),
                         ("cartridge", "memory.cartridge"), ("vektor", "memory.db"),
                         ("pack", "memory.vpack")):
        location = {"vektor": f"vektor://{root / target}", "cartridge": f"cartridge://{root / target}",
                    "pack": f"vectorpack://{root / target}"}.get(name, str(root / target))
        api.migrate(plain, location, receipt=root / f"{name}.receipt.json")
        out[name] = root / target
    out["receipt"] = root / "vmig.receipt.json"
    checkpoint = root / "run.checkpoint"
    Checkpoint(checkpoint).save({"cursor": "120:12", "target": {"offset": 4096, "sha256": "ab" * 32},
                                 "counts": {"read": 12, "written": 12, "rejected": 0},
                                 "seen": 12, "namespaces": {"ns1": [3, "00" * 16]}})
    out["checkpoint"] = checkpoint
    return out


# -------------------------------------------------------------------------------- mutations


def _flip(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    out = bytearray(data)
    spots = [rng.randrange(len(out)) for _ in range(rng.randint(1, 4))]
    for spot in spots:
        out[spot] ^= 1 << rng.randrange(8)
    return bytes(out), f"bit flips at {spots}"


def _truncate(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    at = rng.randrange(len(data))
    return data[:at], f"truncated to {at} bytes"


def _insert(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    at = rng.randrange(len(data) + 1)
    junk = rng.choice([bytes(rng.randrange(256) for _ in range(rng.randint(1, 16))),
                       b"[" * rng.randint(1, 3000), b'{"a":' * 300, b"\n", b"\x00" * 8, b'"'])
    return data[:at] + junk + data[at:], f"{len(junk)} bytes inserted at {at}"


def _delete(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    at = rng.randrange(len(data))
    size = rng.randint(1, 64)
    return data[:at] + data[at + size:], f"{size} bytes deleted at {at}"


def _splice(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    start = rng.randrange(len(data))
    chunk = data[start:start + rng.randint(1, 512)]
    at = rng.randrange(len(data))
    if rng.random() < 0.5:
        return data[:at] + chunk + data[at:], f"{len(chunk)} bytes from {start} inserted at {at}"
    return data[:at] + chunk + data[at + len(chunk):], f"{len(chunk)} bytes from {start} copied over {at}"


def _page(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """A whole SQLite page damaged: zeroed, random, or another page's bytes; or a header field."""
    size = int.from_bytes(data[16:18], "big") or 65536
    pages = max(1, len(data) // size)
    page = rng.randrange(pages)
    out = bytearray(data)
    how = rng.choice(["zero", "random", "copy", "header", "cells"])
    at = page * size
    if how == "zero":
        out[at:at + size] = bytes(size)
    elif how == "random":
        out[at:at + size] = bytes(rng.randrange(256) for _ in range(size))
    elif how == "copy":
        other = rng.randrange(pages) * size
        out[at:at + size] = data[other:other + size]
    elif how == "header":
        field = rng.randrange(16, 100)
        out[field] = rng.randrange(256)
        return bytes(out), f"header byte {field} set to {out[field]}"
    else:  # the page's cell pointers and first cells scrambled
        start = at + (100 if page == 0 else 0)
        for i in range(start, min(start + 64, len(out))):
            out[i] = rng.randrange(256)
    return bytes(out), f"page {page} ({how})"


TEXT_MUTATIONS = (_flip, _truncate, _insert, _delete, _splice)
SQLITE_MUTATIONS = (_flip, _truncate, _page, _page, _page, _splice)


def _mutate(data: bytes, rng: random.Random,
            mutations: tuple[Callable[[bytes, random.Random], tuple[bytes, str]], ...]) -> tuple[bytes, str]:
    out, what = rng.choice(mutations)(data, rng)
    if rng.random() < 0.2:  # now and then two at once
        out, more = rng.choice(mutations)(out or data, rng)
        what += "; " + more
    return out, what


# ---------------------------------------------------------------------------------- readers


def _key(record: MemoryRecord) -> tuple[str | None, str]:
    return record.namespace, record.id


def _originals() -> dict[tuple[str | None, str], str]:
    return {_key(r): content_id(r) for r in _records()}


def _well_formed(record: Any) -> None:
    """What every record a reader yields must be, checksum or not."""
    assert isinstance(record, MemoryRecord), type(record)
    assert isinstance(record.id, str) and record.id, record.id
    assert record.id_type in ("int", "str")
    for field in ("text", "namespace", "source_store", "modality"):
        assert isinstance(getattr(record, field), (str, type(None))), field
    for field in ("created_at", "updated_at"):
        assert getattr(record, field) is None or type(getattr(record, field)) is int, field
    assert isinstance(record.metadata, (dict, type(None))) and isinstance(record.extra, dict)
    for vector in record.vectors.values():
        Vector.from_blob(vector.data)  # a whole number of finite float32 values
    content_id(record)  # computable: nothing in it that a writer could not encode


def _read_all(location: str | Path) -> list[MemoryRecord]:
    store = api.open_store(location)
    store.count()
    store.vector_spaces()
    records = []
    for page in store.read(batch_size=5):
        for item in page.items:
            if not isinstance(item, Reject):
                _well_formed(item)
                records.append(item)
    return records


def _intact(records: list[MemoryRecord]) -> None:
    """A read that completed over a checksummed format: only records as written."""
    originals = _originals()
    for record in records:
        assert originals.get(_key(record)) == content_id(record), \
            f"record {_key(record)} was read from a damaged file as if intact"


def _read_vmig(path: Path) -> None:
    validate(path)
    inspect(path)
    _intact(_read_all(path))


def _read_mg(path: Path) -> None:
    _intact(_read_all(path))


def _read_cartridge(path: Path) -> None:
    _intact(_read_all(f"cartridge://{path}"))
    search(path, vector=[0.1, 0.2, 0.3, 0.4], k=3)


def _read_pack(path: Path) -> None:
    verify_pack(path)
    _intact(_read_all(f"vectorpack://{path}"))
    search(path, vector=[0.1, 0.2, 0.3, 0.4], k=3)


def _rehashed(path: Path) -> None:
    """A hostile pack: its cartridge damaged and the manifest's hash and size made to match, so
    the cartridge's own checks (SQLite, tables only, content ids) are what stands."""
    manifest_path = path / "manifest.yaml"
    manifest = load_manifest(manifest_path.read_bytes(), str(manifest_path))
    cartridge = path / "tables" / "memory.db"
    data = cartridge.read_bytes()
    manifest["files"]["tables/memory.db"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    manifest_path.write_bytes(dump_manifest(manifest))


def _read_vektor(path: Path) -> None:
    _read_all(f"vektor://{path}")  # no checksum: well-formed records is all one can ask


def _read_receipt(path: Path) -> None:
    load_receipt(path)


def _read_checkpoint(path: Path) -> None:
    Checkpoint(path).load()


# ------------------------------------------------------------------------------------ cases


def _copy(source: Path, into: Path) -> Path:
    if source.is_dir():
        shutil.copytree(source, into / source.name)
    else:
        shutil.copy2(source, into / source.name)
        for extra in (sidecar_path(source), source.with_name(source.name + ".vectors")):
            if extra.exists() and extra != source:
                shutil.copy2(extra, into / extra.name)
    return into / source.name


def _targets(copy: Path, kind: str) -> list[Path]:
    """The files of a copy a mutation may hit."""
    if kind == "pack-rehashed":
        return [copy / "tables" / "memory.db"]
    if copy.is_dir():
        return sorted(p for p in copy.rglob("*") if p.is_file())
    found = [copy] + [p for p in copy.parent.iterdir()
                      if p != copy and p.name.startswith(copy.name.split(".")[0])
                      and not p.name.endswith((".receipt.json", ".rejects.jsonl"))]
    return sorted(set(found))


def _is_sqlite(path: Path) -> bool:
    return path.suffix in (".db", ".cartridge")


READERS: dict[str, Callable[[Path], None]] = {
    "vmig": _read_vmig, "mg": _read_mg, "cartridge": _read_cartridge, "pack": _read_pack,
    "vektor": _read_vektor, "receipt": _read_receipt, "checkpoint": _read_checkpoint,
    "pack-rehashed": _read_pack,
}

KNOWN: dict[str, tuple[str, str]] = {}
"""Reader -> (exception type, reason): crashes found in files that are not this test's
author's, reported to their owners; a case failing only so is an expected failure."""


@pytest.mark.parametrize("kind", sorted(READERS))
def test_fuzzed_files_give_clear_errors_never_tracebacks_hangs_or_damaged_records(
        kind: str, sources: dict[str, Path], tmp_path: Path) -> None:
    reader = READERS[kind]
    source = sources["pack" if kind == "pack-rehashed" else kind]
    reader(source)  # the pristine file reads
    failures, known, outcomes = [], [], {"read": 0, "refused": 0}
    for seed in range(CASES):
        rng = random.Random(f"{kind}-{seed}")
        case = tmp_path / f"case{seed}"
        case.mkdir()
        copy = _copy(source, case)
        target = rng.choice(_targets(copy, kind))
        data = target.read_bytes()
        mutated, what = _mutate(data, rng, SQLITE_MUTATIONS if _is_sqlite(target) else TEXT_MUTATIONS) \
            if data else (b"x", "an empty file given a byte")
        if mutated == data:
            continue
        target.write_bytes(mutated)
        if kind == "pack-rehashed":
            _rehashed(copy)
        where = f"{kind} seed {seed}: {target.relative_to(case)} {what}"
        signal.alarm(CASE_SECONDS)
        try:
            reader(copy)
            outcomes["read"] += 1
        except VexError:
            outcomes["refused"] += 1
        except (Hang, AssertionError, Exception) as err:  # every other error is a finding
            found = f"{where}: " + (f"no answer within {CASE_SECONDS} s" if isinstance(err, Hang)
                                     else f"{type(err).__name__}: {err}")
            (known if kind in KNOWN and type(err).__name__ == KNOWN[kind][0] else failures).append(found)
        finally:
            signal.alarm(0)
        shutil.rmtree(case, ignore_errors=True)
    assert not failures, f"{len(failures)} of {CASES} cases failed:\n" + "\n".join(failures[:40])
    assert outcomes["refused"] > 0, "no mutation was refused: the fuzzer does not reach the checks"
    if known:
        pytest.xfail(f"{KNOWN[kind][1]}: " + "; ".join(known[:5]))


def test_the_mutations_are_seeded() -> None:
    data = bytes(range(256)) * 8
    for mutation in (*TEXT_MUTATIONS, _page):
        assert mutation(data, random.Random(3)) == mutation(data, random.Random(3))


def test_a_damaged_sqlite_page_is_found_by_the_fuzzer(sources: dict[str, Path], tmp_path: Path) -> None:
    """The page mutation does damage SQLite: the pristine cartridge reads, a zeroed root page
    of ``records`` does not (and is a clear error)."""
    copy = _copy(sources["cartridge"], tmp_path)
    db = sqlite3.connect(copy)
    root = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'records'").fetchone()[0]
    size = db.execute("PRAGMA page_size").fetchone()[0]
    db.close()
    data = bytearray(copy.read_bytes())
    data[(root - 1) * size:root * size] = bytes(size)
    copy.write_bytes(bytes(data))
    with pytest.raises(VexError):
        _read_cartridge(copy)
