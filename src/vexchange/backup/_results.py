"""Typed results of ``vex backup init|push|status|diff`` (``pull`` returns the run's Receipt).
Fields are described in docs/backup.md."""

from __future__ import annotations

from ..results import Result

__all__ = ["BackupDiff", "BackupInit", "BackupPush", "BackupStatus", "RecordRef"]


class BackupInit(Result, frozen=True, kw_only=True):
    repository: str
    created: bool
    """False when the repository existed (and the key was checked against it)."""
    snapshots: int
    repository_id: str


class BackupPush(Result, frozen=True, kw_only=True):
    repository: str
    snapshot: int | None
    """The new snapshot's number; the latest one's when nothing changed (``created`` False)."""
    created: bool
    records: int
    """Records live in the snapshot."""
    added: int
    changed: int
    removed: int
    unchanged: int
    skipped: int
    """Source entries not backed up (unreadable, or a value the line format cannot carry):
    each in the rejects file."""
    kept_from_previous: int
    """Of the skipped, those whose version from the previous snapshot stays live."""
    data_chunks: int
    """Data chunks the new snapshot wrote (changed records and tombstones only)."""
    data_bytes: int
    """Their plaintext size before compression."""
    rejects_file: str | None


class BackupStatus(Result, frozen=True, kw_only=True):
    repository: str
    snapshot: int | None
    snapshots: int
    snapshot_created_at: str | None
    snapshot_records: int
    local_records: int
    added: int
    changed: int
    removed: int
    unchanged: int
    skipped: int
    in_sync: bool


class RecordRef(Result, frozen=True, kw_only=True):
    namespace: str | None
    id: str


class BackupDiff(Result, frozen=True, kw_only=True):
    repository: str
    snapshot: int | None
    added: list[RecordRef]
    changed: list[RecordRef]
    removed: list[RecordRef]
    unchanged: int
    skipped: int
