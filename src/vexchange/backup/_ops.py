"""``vex backup init|push|pull|status|diff``: one public function per command, same names.

A push compares the source with the latest snapshot's digest index, record by record (in a
temporary SQLite file, never in memory), and writes a new snapshot holding only the records
that were added or changed, a tombstone per record removed, and the full index of what is live.
``status`` and ``diff`` make the same comparison without writing; ``pull`` restores a snapshot
into any target through the engine, checking every record. See docs/backup.md.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from .._canonical import NamespaceDigest, record_digest
from ..codecs.vmig import RecordError, encode_record
from ..connectors._base import Connector, Reject
from ..connectors._registry import Location, open_store
from ..engine.checkpoint import RejectsFile
from ..engine.progress import Progress
from ..engine.receipt import Receipt
from ..errors import UsageError
from ..record import MemoryRecord
from ._crypto import Kdf, key_material
from ._index import DigestIndex, key_of, line_hash, record_key
from ._layout import HEADER, ChunkWriter, Manifest, Repository, create_header, now
from ._results import BackupDiff, BackupInit, BackupPush, BackupStatus, RecordRef
from ._restore import SnapshotSource
from ._where import Workspace, describe_location, workspace

__all__ = ["backup_diff", "backup_init", "backup_pull", "backup_push", "backup_status"]

_READ_BATCH = 500
_UNCHANGED, _ADDED, _CHANGED = 0, 1, 2


@dataclass(frozen=True)
class _Key:
    passphrase: str | None
    passphrase_file: str | Path | None
    key_file: str | Path | None

    def material(self) -> bytes:
        return key_material(passphrase=self.passphrase, passphrase_file=self.passphrase_file,
                            key_file=self.key_file)


def _kdf(kdf_memory_mib: int, kdf_iterations: int, kdf_lanes: int) -> Kdf:
    kdf = Kdf(memory_kib=kdf_memory_mib * 1024, iterations=kdf_iterations, lanes=kdf_lanes)
    kdf.check()
    return kdf


def _open_or_create(space: Workspace, material: bytes, kdf: Kdf) -> tuple[Repository, bool]:
    created = not (space.root / HEADER).exists()
    if created:
        create_header(space.root, material, kdf)
    return Repository(space.root, material), created


def backup_init(
    repository: str,
    *,
    passphrase: str | None = None,
    passphrase_file: str | Path | None = None,
    key_file: str | Path | None = None,
    branch: str = "main",
    kdf_memory_mib: int = 64,
    kdf_iterations: int = 3,
    kdf_lanes: int = 4,
) -> BackupInit:
    """Make ``repository`` a backup repository (its plaintext header: the KDF parameters and a
    fresh salt), or check that the key opens the one already there. ``push`` does this itself
    on first use; ``init`` is where to choose the Argon2id cost (``kdf_*``).

    The key comes from ``passphrase`` (Python only), else ``passphrase_file`` or ``key_file``,
    else the ``VEX_BACKUP_PASSPHRASE`` environment variable; never from the machine."""
    kdf = _kdf(kdf_memory_mib, kdf_iterations, kdf_lanes)
    material = _Key(passphrase, passphrase_file, key_file).material()
    with workspace(repository, write=True, branch=branch) as space:
        repo, created = _open_or_create(space, material, kdf)
        if created:
            space.publish("vex backup: new repository")
        return BackupInit(repository=describe_location(repository), created=created,
                          snapshots=len(repo.snapshots()), repository_id=repo.repository_id)


def backup_push(
    source: Location,
    repository: str,
    *,
    passphrase: str | None = None,
    passphrase_file: str | Path | None = None,
    key_file: str | Path | None = None,
    branch: str = "main",
    message: str | None = None,
    rejects: str | Path | None = None,
    source_secrets: Mapping[str, str] | None = None,
    kdf_memory_mib: int = 64,
    kdf_iterations: int = 3,
    kdf_lanes: int = 4,
    chunk_bytes: int | None = None,
) -> BackupPush:
    """Snapshot ``source`` (any store or file vexchange reads) into ``repository``: only the
    records added or changed since the latest snapshot, tombstones for those removed, and the
    digest index of every live record, all encrypted. Nothing changed: no new snapshot.

    A record the source cannot read goes to the rejects file (``rejects``; beside a file source,
    else in the working directory), is counted in ``skipped``, and keeps its version from the
    latest snapshot if it had one. ``kdf_*`` apply when the repository is created."""
    kdf = _kdf(kdf_memory_mib, kdf_iterations, kdf_lanes)
    material = _Key(passphrase, passphrase_file, key_file).material()
    src = open_store(source, secrets=source_secrets)
    rejects_path = Path(rejects) if rejects else _rejects_beside(src)
    with src, workspace(repository, write=True, branch=branch) as space, DigestIndex() as index:
        repo, _ = _open_or_create(space, material, kdf)
        latest = _latest(repo, index)
        number, partial = repo.start_snapshot()
        try:
            result = _push(src, repo, latest, index, number, partial, message, rejects_path,
                           chunk_bytes, repository)
        finally:
            if partial.exists():
                shutil.rmtree(partial)
        if result.created:
            space.publish(f"vex backup: snapshot {number:06d}")
        return result


def _push(src: Connector, repo: Repository, latest: Manifest | None, index: DigestIndex, number: int,
          partial: Path, message: str | None, rejects_path: Path, chunk_bytes: int | None,
          repository: str) -> BackupPush:
    data = ChunkWriter(repo, partial, number, "data", **({"chunk_bytes": chunk_bytes} if chunk_bytes else {}))
    counts = dict.fromkeys(("added", "changed", "unchanged", "skipped", "kept"), 0)
    rejected = RejectsFile(rejects_path)
    try:
        for record, line, reject in _source_lines(src):
            if reject is not None:
                rejected.add(reject)
                counts["skipped"] += 1
                key = record_key(reject.namespace, reject.id) if reject.id else None
                kept = index.previous(key) if key else None
                if key and kept is not None and index.add_current(key, *kept):
                    counts["kept"] += 1
                continue
            assert record is not None and line is not None
            key, digest, lhash = key_of(record), record_digest(record), line_hash(line)
            previous = index.previous(key)
            same = previous is not None and previous[0] == digest and previous[1] == lhash
            if not index.add_current(key, digest, lhash, previous[2] if same and previous else number):
                rejected.add(_duplicate(record))
                counts["skipped"] += 1
                continue
            if same:
                counts["unchanged"] += 1
                continue
            counts["changed" if previous is not None else "added"] += 1
            data.add(line, "records")
    finally:
        rejected.close()
    removed = 0
    for key in index.removed():
        namespace, record_id = orjson.loads(key)
        data.add(orjson.dumps({"tombstone": {"id": record_id, "namespace": namespace}}) + b"\n", "tombstones")
        removed += 1
    data.flush()
    created = latest is None or bool(counts["added"] or counts["changed"] or removed)
    total = NamespaceDigest()
    index_chunks = ChunkWriter(repo, partial, number, "index")
    if created:
        for key, digest, lhash, snap in index.current_entries():
            namespace, record_id = orjson.loads(key)
            total.add(digest)
            index_chunks.add(orjson.dumps([namespace, record_id, digest.hex(), lhash.hex(), snap]) + b"\n")
        index_chunks.flush()
        repo.finish_snapshot(partial, Manifest(
            snapshot=number, parent=latest.snapshot if latest else None,
            parent_manifest_sha256=repo.manifest(latest.snapshot)[1] if latest else None,
            created_at=now(), records=total.count, digest=total.hex, added=counts["added"],
            changed=counts["changed"], removed=removed, unchanged=counts["unchanged"] + counts["kept"],
            source=_describe(src), message=message, data=data.entries, index=index_chunks.entries))
    live = total.count if created else (latest.records if latest else 0)
    shown = number if created else (latest.snapshot if latest else None)
    return BackupPush(
        repository=describe_location(repository), snapshot=shown,
        created=created, records=live, added=counts["added"], changed=counts["changed"], removed=removed,
        unchanged=counts["unchanged"], skipped=counts["skipped"], kept_from_previous=counts["kept"],
        data_chunks=len(data.entries), data_bytes=sum(e["bytes"] for e in data.entries),
        rejects_file=str(rejects_path) if rejected.count else None)


def _source_lines(src: Connector) -> Iterator[tuple[MemoryRecord | None, bytes | None, Reject | None]]:
    """Each record of the source with its exact line, or a reject (unreadable, or a value the
    line format cannot carry)."""
    if not src.can_read():
        raise UsageError(f"{src.name} cannot be read, so it cannot be backed up")
    for page in src.read(batch_size=_READ_BATCH):
        for item in page.items:
            if isinstance(item, Reject):
                yield None, None, item
                continue
            try:
                yield item, encode_record(item), None
            except RecordError as err:
                yield None, None, Reject(reason=err.reason, detail=err.detail, id=item.id,
                                         namespace=item.namespace, record=_plain(item))


def _plain(record: MemoryRecord) -> Any:
    import msgspec

    return msgspec.to_builtins(record, enc_hook=repr)


def _duplicate(record: MemoryRecord) -> Reject:
    return Reject(reason="duplicate_id", detail="the source holds this namespace and id twice;"
                  " the first was backed up", id=record.id, namespace=record.namespace,
                  record=_plain(record))


def _describe(src: Connector) -> dict[str, Any]:
    described = dict(src.describe())
    with contextlib.suppress(Exception):  # a store that cannot say keeps none (the default)
        described["vector_spaces"] = {name: {"dims": s.dims, "metric": s.metric}
                                      for name, s in src.vector_spaces().items()}
    return described


def _rejects_beside(src: Connector) -> Path:
    base = src.run_files_base()
    if base is not None:
        return base.with_name(base.name + ".backup-rejects.jsonl")
    return Path.cwd() / f"vex-backup-{src.name}.rejects.jsonl"


def _latest(repo: Repository, index: DigestIndex, snapshot: int | None = None) -> Manifest | None:
    """The latest snapshot (or the one named), its chain checked and its index loaded."""
    numbers = repo.snapshots()
    if snapshot is not None:
        if snapshot not in numbers:
            raise UsageError(f"the backup repository has no snapshot {snapshot}",
                             hint=f"its snapshots: {', '.join(map(str, numbers)) or 'none'}")
        numbers = [n for n in numbers if n <= snapshot]
    if not numbers:
        return None
    repo.check_chain(numbers[-1])
    manifest, _ = repo.manifest(numbers[-1])
    index.load(repo, manifest)
    return manifest


def _compare(source: Location, repository: str, key: _Key, branch: str,
             source_secrets: Mapping[str, str] | None,
             index: DigestIndex) -> tuple[Manifest | None, dict[str, int], int]:
    material = key.material()
    src = open_store(source, secrets=source_secrets)
    with src, workspace(repository, write=False, branch=branch) as space:
        repo = Repository(space.root, material)
        latest = _latest(repo, index)
        snapshots = len(repo.snapshots())
        counts = dict.fromkeys(("added", "changed", "unchanged", "skipped"), 0)
        for record, line, reject in _source_lines(src):
            if reject is not None:
                counts["skipped"] += 1
                continue
            assert record is not None and line is not None
            k, digest, lhash = key_of(record), record_digest(record), line_hash(line)
            previous = index.previous(k)
            status = (_ADDED if previous is None else
                      _UNCHANGED if previous[0] == digest and previous[1] == lhash else _CHANGED)
            if index.add_current(k, digest, lhash, status):
                counts[("unchanged", "added", "changed")[status]] += 1
        return latest, counts, snapshots


def backup_status(
    source: Location,
    repository: str,
    *,
    passphrase: str | None = None,
    passphrase_file: str | Path | None = None,
    key_file: str | Path | None = None,
    branch: str = "main",
    source_secrets: Mapping[str, str] | None = None,
) -> BackupStatus:
    """How ``source`` differs from the latest snapshot, by record digests: counts of records
    added, changed and removed since it (``in_sync`` when there are none)."""
    with DigestIndex() as index:
        latest, counts, snapshots = _compare(source, repository, _Key(passphrase, passphrase_file, key_file),
                                             branch, source_secrets, index)
        removed = sum(1 for _ in index.removed())
        return BackupStatus(
            repository=describe_location(repository), snapshot=latest.snapshot if latest else None,
            snapshots=snapshots, snapshot_created_at=latest.created_at if latest else None,
            snapshot_records=latest.records if latest else 0,
            local_records=sum(counts.values()) - counts["skipped"],
            added=counts["added"], changed=counts["changed"], removed=removed, unchanged=counts["unchanged"],
            skipped=counts["skipped"],
            in_sync=latest is not None and not (counts["added"] or counts["changed"] or removed))


def backup_diff(
    source: Location,
    repository: str,
    *,
    passphrase: str | None = None,
    passphrase_file: str | Path | None = None,
    key_file: str | Path | None = None,
    branch: str = "main",
    source_secrets: Mapping[str, str] | None = None,
) -> BackupDiff:
    """The records by which ``source`` differs from the latest snapshot: the namespace and id
    of each record added, changed and removed since it (in key order)."""
    with DigestIndex() as index:
        latest, counts, _ = _compare(source, repository, _Key(passphrase, passphrase_file, key_file),
                                     branch, source_secrets, index)

        def refs(keys: Iterator[str]) -> list[RecordRef]:
            out = []
            for k in keys:
                namespace, record_id = orjson.loads(k)
                out.append(RecordRef(namespace=namespace, id=record_id))
            return out

        rows = index.db.execute("SELECT key, snap FROM cur WHERE snap != 0 ORDER BY key").fetchall()
        return BackupDiff(
            repository=describe_location(repository), snapshot=latest.snapshot if latest else None,
            added=refs(k for k, s in rows if s == _ADDED), changed=refs(k for k, s in rows if s == _CHANGED),
            removed=refs(index.removed()), unchanged=counts["unchanged"], skipped=counts["skipped"])


def backup_pull(
    repository: str,
    target: Location,
    *,
    snapshot: int | None = None,
    passphrase: str | None = None,
    passphrase_file: str | Path | None = None,
    key_file: str | Path | None = None,
    branch: str = "main",
    dry_run: bool = False,
    allow_skips: bool = False,
    receipt: str | Path | None = None,
    rejects: str | Path | None = None,
    progress: Progress | None = None,
    target_secrets: Mapping[str, str] | None = None,
) -> Receipt:
    """Restore the latest snapshot (or ``snapshot``) of ``repository`` into ``target`` (any
    store or file vexchange writes: a new VEKTOR database, a .vmig.jsonl file...), through the
    engine, so the run has a receipt and rejects like ``vex import``. The whole snapshot is
    checked first (every chunk authenticated, every record against the digest index), so a
    wrong or tampered repository writes nothing; the check is made again as records are written."""
    from ..api import migrate

    material = _Key(passphrase, passphrase_file, key_file).material()
    with workspace(repository, write=False, branch=branch) as space, DigestIndex() as index:
        repo = Repository(space.root, material)
        manifest = _latest(repo, index, snapshot)
        if manifest is None:
            raise UsageError(f"the backup repository {describe_location(repository)} has no snapshot yet",
                             hint="push one first")
        source = SnapshotSource(repo, manifest, index, describe_location(repository))
        return migrate(source, target, dry_run=dry_run, allow_skips=allow_skips, verify_first=True,
                       receipt=receipt, rejects=rejects, progress=progress, target_secrets=target_secrets,
                       operation="backup pull")
