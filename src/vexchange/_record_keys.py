"""How a record is keyed where a digest is kept per record (a backup's index, an incremental
run's state): its namespace and id as the JSON text ``[namespace, id]``. A two-column SQLite
key would let two NULL namespaces with one id through; one text column keeps None and ""
apart and compares exactly."""

from __future__ import annotations

import orjson

from .record import MemoryRecord

__all__ = ["key_of", "record_key", "split_key"]


def record_key(namespace: str | None, record_id: str) -> str:
    return orjson.dumps([namespace, record_id]).decode()


def key_of(record: MemoryRecord) -> str:
    return record_key(record.namespace, record.id)


def split_key(key: str) -> tuple[str | None, str]:
    """``(namespace, id)`` of a key made by ``record_key``."""
    namespace, record_id = orjson.loads(key)
    return namespace, record_id
