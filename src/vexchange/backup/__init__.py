"""Encrypted, versioned backups of any source to a Git remote or a directory (docs/backup.md).

``vex backup push|pull|status|diff`` (and ``vex sync``, Vex's name for it) call these
functions. The key comes from a passphrase or a key file through Argon2id, never from the
machine, so a backup made on one machine restores on any other.
"""

from __future__ import annotations

from ._crypto import PASSPHRASE_ENV
from ._ops import backup_diff, backup_init, backup_pull, backup_push, backup_status
from ._results import BackupDiff, BackupInit, BackupPush, BackupStatus, RecordRef

__all__ = ["PASSPHRASE_ENV", "BackupDiff", "BackupInit", "BackupPush", "BackupStatus", "RecordRef",
           "backup_diff", "backup_init", "backup_pull", "backup_push", "backup_status"]
