"""A file-target run killed at every phase, then resumed (or run again where ``--resume`` is
refused clearly): no record lost or written twice, and no output that looks complete while it
is not.

Each kill is a forked child that ends with ``os._exit`` at a named point (like SIGKILL: no
``finally``, no flush of Python's buffers): after a page was written (the batch still held),
after a checkpoint, before and after every rename, unlink and tree removal of the output's
files (the partial complete, just after the rename, after the sidecar...) and before the
checkpoint's removal. A first, unkilled child lists those points for each target.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from vexchange import migrate, open_store
from vexchange._canonical import record_digest
from vexchange.engine.receipt import load_receipt
from vexchange.errors import DecodeError, UsageError
from vexchange.record import MemoryRecord
from vexchange.sidecar import read_sidecar, verify_checksum
from vexchange.testing.conformance import write_vmig
from vexchange.testing.records import sample_records

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="kills are forked children")

N, BATCH = 150, 30
KILLED = 137
TARGETS: dict[str, Callable[[Path], str]] = {
    "vmig": lambda d: str(d / "out.vmig.jsonl"),
    "mg": lambda d: str(d / "out.mg"),
    "cartridge": lambda d: f"cartridge://{d}/out.db",
    "vectorpack": lambda d: f"vectorpack://{d}/out.vpack",
}


def new_records() -> list[MemoryRecord]:
    return list(sample_records(N, dims=4, null_vectors=False, seed=3))


def old_records() -> list[MemoryRecord]:
    """An earlier export into the same output (other ids and vectors): it must stay whole or
    be replaced whole, never pair with the new run's bytes."""
    return [r.replace(id=f"old-{r.id}")
            for r in sample_records(20, dims=4, null_vectors=False, seed=5)]


def digests(records: Iterator[MemoryRecord] | list[MemoryRecord]) -> list[bytes]:
    return sorted(record_digest(r) for r in records)


def read_list(target: str) -> list[MemoryRecord]:
    """Every item the target yields, duplicates kept (a dict would hide them)."""
    out: list[MemoryRecord] = []
    store = open_store(target)
    for page in store.read(batch_size=64):
        for item in page.items:
            assert isinstance(item, MemoryRecord), f"unreadable entry: {item}"
            out.append(item)
    return out


def output_paths(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.name.startswith(("out.", ".out.")))


def final_path(name: str, directory: Path) -> Path:
    return {"vmig": directory / "out.vmig.jsonl", "mg": directory / "out.mg",
            "cartridge": directory / "out.db", "vectorpack": directory / "out.vpack"}[name]


# ------------------------------------------------------------------------- the killed child


def _ours(path: Any) -> bool:
    try:
        parts = Path(os.fsdecode(path)).parts
    except TypeError:
        return False
    return any(part.startswith(("out.", ".out.")) for part in parts)


def _arm(kill_at: int | None, log: Path) -> None:
    """In the child: checkpoint after every page, and count every event; end the process
    (``os._exit``) at event ``kill_at``, or write the list of events to ``log``."""
    from vexchange.engine import checkpoint as engine_checkpoint
    from vexchange.engine import run as engine_run

    events: list[str] = []

    def hit(name: str) -> None:
        if kill_at is not None and len(events) == kill_at:
            os._exit(KILLED)
        events.append(name)

    def around(name: str, call: Callable[..., Any], *, before: bool = True,
               when: Callable[..., bool] = lambda *a, **k: True) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if not when(*args, **kwargs):
                return call(*args, **kwargs)
            if before:
                hit(f"before {name} {_label(args)}")
            result = call(*args, **kwargs)
            hit(f"after {name} {_label(args)}")
            return result
        return wrapped

    def file_op(*args: Any, **kwargs: Any) -> bool:
        return "dir_fd" not in kwargs and any(_ours(a) for a in args[:2])

    engine_run._CHECKPOINT_EVERY_S = 0.0
    os.replace = around("replace", os.replace, when=file_op)  # type: ignore[assignment]
    os.rename = around("rename", os.rename, when=file_op)  # type: ignore[assignment]
    os.unlink = around("unlink", os.unlink, when=file_op)  # type: ignore[assignment]
    shutil.rmtree = around("rmtree", shutil.rmtree, when=file_op)  # type: ignore[assignment]
    engine_checkpoint.Checkpoint.save = around(  # type: ignore[method-assign]
        "checkpoint", engine_checkpoint.Checkpoint.save, before=False)
    engine_checkpoint.Checkpoint.remove = around(  # type: ignore[method-assign]
        "checkpoint removal", engine_checkpoint.Checkpoint.remove, before=True)
    opened = engine_run._open_writer

    def open_writer(*args: Any, **kwargs: Any) -> Any:
        writer = opened(*args, **kwargs)
        writer.write = around("page write", writer.write, before=False)
        if "write_with_texts" in type(writer).__dict__:  # how the engine writes to a JSON writer
            writer.write_with_texts = around("page write", writer.write_with_texts, before=False)
        return writer

    engine_run._open_writer = open_writer  # type: ignore[assignment]
    import atexit

    atexit.register(lambda: log.write_text(json.dumps(events)))
    _events[:] = [events, log]


_events: list[Any] = []


def _label(args: tuple[Any, ...]) -> str:
    return " ".join(Path(os.fsdecode(a)).name for a in args[:2]
                    if isinstance(a, (str, bytes, os.PathLike)))


def run_child(source: str, target: str, files: dict[str, Path], kill_at: int | None,
              log: Path) -> int:
    """Run the migration in a forked child armed to die at event ``kill_at``; its exit code."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            _arm(kill_at, log)
            migrate(source, target, batch_size=BATCH, **files)
        except BaseException:
            code = 1
        if kill_at is None:
            log.write_text(json.dumps(_events[0]))
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


# ------------------------------------------------------------------------------- the checks


def seed_old(source_dir: Path, target: str) -> list[bytes]:
    """The earlier export the run replaces (a cartridge is written into: it keeps them)."""
    migrate(write_vmig(source_dir / "old.vmig.jsonl", old_records()), target,
            receipt=source_dir / "old.json", rejects=source_dir / "old.rej")
    return digests(read_list(target))


def assert_nothing_half_done(name: str, directory: Path, target: str,
                             wholes: list[list[bytes]], where: str) -> None:
    """An output that is there holds one whole set of records (the earlier export's, or the
    new run's), and a sidecar there describes its file exactly."""
    final = final_path(name, directory)
    if name == "vmig":
        meta = read_sidecar(final) if (directory / "out.vmig.meta.json").exists() else None
        if meta is not None:
            assert final.exists() and verify_checksum(final).ok, f"{where}: a stale sidecar"
    if not final.exists():
        return
    if name == "mg" and not (directory / "out.mg.vectors").exists():
        pytest.fail(f"{where}: out.mg without its vectors file")
    found = digests(read_list(target))
    assert found in wholes, f"{where}: {final.name} holds {len(found)} records, not a whole set"


def assert_exact(name: str, directory: Path, target: str, expected: list[bytes], where: str) -> None:
    found = read_list(target)
    assert digests(found) == expected, f"{where}: {len(found)} records, {len(expected)} expected"
    leftovers = [p.name for p in output_paths(directory)
                 if p.name.endswith((".partial", ".building", ".replaced"))]
    assert not leftovers, f"{where}: left {leftovers}"
    if name == "vmig":
        final = final_path(name, directory)
        meta = read_sidecar(final)
        assert meta is not None and meta["record_count"] == len(expected), where
        assert verify_checksum(final).ok, where


def continue_run(source: str, target: str, files: dict[str, Path]) -> Any:
    """``--resume``; where it is refused (nothing checkpointed, or a partial it cannot
    trust) the refusal must say so, and a plain run starts over."""
    try:
        return migrate(source, target, batch_size=BATCH, resume=True, **files)
    except (UsageError, DecodeError) as err:
        assert "without --resume" in str(err), str(err)
        return migrate(source, target, batch_size=BATCH, **files)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_a_run_killed_at_any_phase_resumes_with_nothing_lost_or_doubled(
        name: str, tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    source = str(write_vmig(base / "in.vmig.jsonl", new_records()))
    target = TARGETS[name](base)
    old = seed_old(base, target)
    files = {"receipt": base / "r.json", "rejects": base / "r.rej"}
    log = tmp_path / "events.json"
    assert run_child(source, target, files, None, log) == 0
    events = json.loads(log.read_text())
    expected = digests(read_list(target))
    written = load_receipt(files["receipt"]).counts.written
    assert written >= N - 20 and len(expected) == written + (len(old) if name == "cartridge" else 0)
    wholes = [old, expected]
    assert_exact(name, base, target, expected, "unkilled")
    names = " | ".join(events)
    assert "after checkpoint" in names and "page write" in names and "checkpoint removal" in names
    resumed = 0
    for index, event in enumerate(events):
        work = tmp_path / f"k{index}"
        work.mkdir()
        shutil.copy2(base / "in.vmig.jsonl", work / "in.vmig.jsonl")
        shutil.copy2(base / "in.vmig.meta.json", work / "in.vmig.meta.json")
        wsource = str(work / "in.vmig.jsonl")
        wtarget = TARGETS[name](work)
        seed_old(work, wtarget)
        wfiles = {"receipt": work / "r.json", "rejects": work / "r.rej"}
        where = f"{name} killed at {event!r} (#{index})"
        assert run_child(wsource, wtarget, wfiles, index, log) == KILLED, where
        assert_nothing_half_done(name, work, wtarget, wholes, where)
        receipt = continue_run(wsource, wtarget, wfiles)
        resumed += bool(receipt.resumed)
        assert receipt.status == "completed", where
        assert receipt.counts.written == written, (where, receipt.counts)
        assert_exact(name, work, wtarget, expected, where)
        shutil.rmtree(work)
    assert resumed >= len(events) // 2, "most kill points must resume, not start over"


# ------------------------------------------------------------- resume refuses what it cannot trust


def killed_export(tmp_path: Path, name: str, kill_after_checkpoints: int = 3,
                  ) -> tuple[str, str, dict[str, Path], list[bytes]]:
    """An export killed just after its n-th checkpoint (a partial output on disk), and what
    the same export holds when it is not killed."""
    source = str(write_vmig(tmp_path / "in.vmig.jsonl", new_records()))
    target = TARGETS[name](tmp_path)
    files = {"receipt": tmp_path / "r.json", "rejects": tmp_path / "r.rej"}
    log = tmp_path / "events.json"
    assert run_child(source, target, files, None, log) == 0
    events = json.loads(log.read_text())
    expected = digests(read_list(target))
    at = [i for i, e in enumerate(events) if e.startswith("after checkpoint")][kill_after_checkpoints]
    for path in output_paths(tmp_path):
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    assert run_child(source, target, files, at + 1, log) == KILLED
    return source, target, files, expected


@pytest.mark.parametrize("damage", ["missing", "truncated", "changed"])
@pytest.mark.parametrize("partial", ["out.vmig.jsonl.partial", "out.mg.grains.partial",
                                     "out.mg.vectors.partial"])
def test_resume_refuses_a_partial_file_that_is_not_what_the_checkpoint_wrote(
        tmp_path: Path, partial: str, damage: str) -> None:
    name = "vmig" if partial.startswith("out.vmig") else "mg"
    source, target, files, expected = killed_export(tmp_path, name)
    path = tmp_path / partial
    size = path.stat().st_size
    assert size > 100
    if damage == "missing":
        path.unlink()
    elif damage == "truncated":
        with open(path, "r+b") as handle:
            handle.truncate(size // 3)
    else:
        with open(path, "r+b") as handle:
            handle.seek(size // 4)
            byte = handle.read(1)
            handle.seek(size // 4)
            handle.write(bytes([byte[0] ^ 0x20]))
    with pytest.raises((UsageError, DecodeError), match="cannot resume") as caught:
        migrate(source, target, batch_size=BATCH, resume=True, **files)
    assert "without --resume" in str(caught.value)
    assert not final_path(name, tmp_path).exists(), "nothing may look complete"
    receipt = migrate(source, target, batch_size=BATCH, **files)
    assert receipt.status == "completed"
    assert_exact(name, tmp_path, target, expected, damage)


def test_resume_refuses_a_cartridge_staging_file_of_another_run(tmp_path: Path) -> None:
    source, target, files, expected = killed_export(tmp_path, "cartridge")
    staging = tmp_path / "out.db.partial"
    with sqlite3.connect(staging) as db:
        db.execute("UPDATE s_run SET token = 'someone else'")
    with pytest.raises(DecodeError, match="another run"):
        migrate(source, target, batch_size=BATCH, resume=True, **files)
    staging.unlink()
    with pytest.raises(UsageError, match="is missing"):
        migrate(source, target, batch_size=BATCH, resume=True, **files)
    assert migrate(source, target, batch_size=BATCH, **files).status == "completed"
    assert_exact("cartridge", tmp_path, target, expected, "rerun")


def test_a_finished_export_killed_before_its_checkpoint_was_removed_is_taken_back(
        tmp_path: Path) -> None:
    """The reported silent shrink: killed just after the rename, ``--resume`` used to append
    only the records after the cursor (and keep the sidecar's full count)."""
    source = str(write_vmig(tmp_path / "in.vmig.jsonl", new_records()))
    target = TARGETS["vmig"](tmp_path)
    files = {"receipt": tmp_path / "r.json", "rejects": tmp_path / "r.rej"}
    log = tmp_path / "events.json"
    assert run_child(source, target, files, None, log) == 0
    events = json.loads(log.read_text())
    expected = digests(read_list(target))
    at = len(events) - 1 - events[::-1].index("before checkpoint removal ")
    for path in output_paths(tmp_path):
        path.unlink()
    assert run_child(source, target, files, at, log) == KILLED
    assert (tmp_path / "r.json.checkpoint").exists() and (tmp_path / "out.vmig.jsonl").exists()
    receipt = migrate(source, target, batch_size=BATCH, resume=True, **files)
    assert receipt.resumed and receipt.counts.written == len(expected)
    assert_exact("vmig", tmp_path, target, expected, "resumed")


# ------------------------------------------------------------ never delete what is not ours


def test_pack_create_never_deletes_a_directory_it_did_not_create(tmp_path: Path) -> None:
    source = write_vmig(tmp_path / "in.vmig.jsonl", new_records())
    pack = tmp_path / "x.vpack"
    files = {"receipt": tmp_path / "r.json", "rejects": tmp_path / "r.rej"}
    mine = tmp_path / "x.vpack.old"
    mine.mkdir()
    (mine / "precious.txt").write_text("keep me")
    migrate(source, f"vectorpack://{pack}", **files)
    migrate(source, f"vectorpack://{pack}", **files)  # replaces the pack: the old one goes
    assert (mine / "precious.txt").read_text() == "keep me"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".replaced")]
    foreign = tmp_path / "x.vpack.partial"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine too")
    with pytest.raises(UsageError, match="not a pack being built"):
        migrate(source, f"vectorpack://{pack}", **files)
    assert (foreign / "notes.txt").read_text() == "mine too"
    not_a_pack = tmp_path / "y.vpack"
    not_a_pack.mkdir()
    (not_a_pack / "data.bin").write_bytes(b"\0")
    with pytest.raises(UsageError, match="not a VectorPack"):
        migrate(source, f"vectorpack://{not_a_pack}", **files)
    assert (not_a_pack / "data.bin").exists()
