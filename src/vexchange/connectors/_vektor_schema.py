"""VEKTOR Slipstream SQLite: the two table layouts, and the mapping between rows and records.

Layout "slipstream" (current SDK): ``memories(id INTEGER PRIMARY KEY, agent_id, content, summary,
importance, tags, namespace, pinned, memory_type, confidence, source_db, edge_type, potential,
created_at INTEGER epoch seconds, updated_at, vector BLOB float32)`` plus an FTS5 index.
Layout "legacy" (Vex 0.0.1-0.3): ``memories(id TEXT PRIMARY KEY, content, embedding BLOB,
metadata TEXT JSON, created_at TEXT ISO, namespace)``.

What the columns cannot hold exactly (a string id in an INTEGER key, millisecond timestamps,
a vector's model, named vectors, metadata keys without a column, an integer written into a REAL
column...) goes to one side table, ``vexchange_records``, as *overrides*: only the fields that
differ from what the row alone gives back. Each entry carries a fingerprint of its row; if
Slipstream later edits that row, the fingerprint no longer matches and the row wins.
"""

from __future__ import annotations

import base64
import hashlib
import math
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import orjson

from .._json import dumps_exact, loads_exact, with_big_ints_as_fragments
from .._time import format_timestamp, parse_timestamp
from ..record import DEFAULT_VECTOR, MemoryRecord, SparseVector, Vector

SIDE_TABLE = "vexchange_records"
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1

SPACES_TABLE = "vexchange_vector_spaces"
"""Dims and metric of each vector name, as the source of the last import declared them (VEKTOR
itself has no notion of a metric)."""
SIDE_DDL = f"""
CREATE TABLE IF NOT EXISTS {SIDE_TABLE} (
  row_key     TEXT PRIMARY KEY,
  source_id   TEXT,
  fingerprint TEXT NOT NULL,
  overrides   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS {SIDE_TABLE}_source_id ON {SIDE_TABLE}(source_id);
CREATE TABLE IF NOT EXISTS {SPACES_TABLE} (
  name   TEXT PRIMARY KEY,
  dims   INTEGER,
  metric TEXT
);
"""

SLIPSTREAM_DDL = """
CREATE TABLE memories (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  agent_id    TEXT    NOT NULL DEFAULT 'default',
  content     TEXT    NOT NULL,
  summary     TEXT,
  importance  REAL    DEFAULT 1.0,
  tags        TEXT    DEFAULT '',
  namespace   TEXT    DEFAULT 'default',
  pinned      INTEGER DEFAULT 0,
  memory_type TEXT    DEFAULT 'semantic',
  confidence  REAL    DEFAULT 1.0,
  source_db   TEXT,
  edge_type   TEXT    DEFAULT 'semantic',
  potential   TEXT,
  created_at  INTEGER DEFAULT (strftime('%s','now')),
  updated_at  INTEGER DEFAULT (strftime('%s','now')),
  vector      BLOB
);
CREATE TABLE memory_edges (
  id         INTEGER PRIMARY KEY AUTOINCREMENT,
  agent_id   TEXT    NOT NULL DEFAULT 'default',
  source_id  INTEGER NOT NULL,
  target_id  INTEGER NOT NULL,
  edge_type  TEXT    NOT NULL DEFAULT 'related',
  weight     REAL    DEFAULT 1.0,
  created_at INTEGER DEFAULT (strftime('%s','now'))
);
CREATE INDEX idx_memories_namespace ON memories(namespace);
CREATE INDEX idx_memories_agent     ON memories(agent_id);
CREATE VIRTUAL TABLE memories_fts USING fts5(content, tags, content='memories', content_rowid='id');
CREATE TRIGGER memories_fts_insert AFTER INSERT ON memories BEGIN
  INSERT INTO memories_fts(rowid, content, tags) VALUES (new.id, new.content, new.tags);
END;
CREATE TRIGGER memories_fts_delete AFTER DELETE ON memories BEGIN
  INSERT INTO memories_fts(memories_fts, rowid, content, tags) VALUES ('delete', old.id, old.content, old.tags);
END;
CREATE TRIGGER memories_fts_update AFTER UPDATE ON memories BEGIN
  INSERT INTO memories_fts(memories_fts, rowid, content, tags) VALUES ('delete', old.id, old.content, old.tags);
  INSERT INTO memories_fts(rowid, content, tags) VALUES (new.id, new.content, new.tags);
END;
"""  # noqa: E501 - Slipstream's own DDL, kept as Slipstream writes it

_CORE = {"id", "content", "namespace", "created_at", "updated_at", "vector", "embedding", "metadata"}


@dataclass(frozen=True)
class Layout:
    kind: str  # "slipstream" or "legacy"
    columns: tuple[str, ...]
    vector_column: str | None
    int_ids: bool
    epoch_times: bool

    @cached_property
    def meta_columns(self) -> tuple[str, ...]:
        """Columns that become metadata keys (slipstream layout)."""
        return tuple(c for c in self.columns if c not in _CORE)

    @cached_property
    def meta_column_set(self) -> frozenset[str]:
        return frozenset(self.meta_columns)


def detect_layout(db: sqlite3.Connection) -> Layout | None:
    """The layout of ``memories``, or None when there is no such table."""
    info = db.execute("PRAGMA table_info(memories)").fetchall()
    if not info:
        return None
    columns = tuple(row[1] for row in info)
    types = {row[1]: (row[2] or "").upper() for row in info}
    vector = "vector" if "vector" in columns else ("embedding" if "embedding" in columns else None)
    int_ids = "INT" in types.get("id", "")
    legacy = "metadata" in columns and not int_ids
    return Layout(
        kind="legacy" if legacy else "slipstream",
        columns=columns,
        vector_column=vector,
        int_ids=int_ids,
        epoch_times="INT" in types.get("created_at", "INT"),
    )


# ------------------------------------------------------------------------------ row -> record


def row_to_record(layout: Layout, row: dict[str, Any]) -> MemoryRecord:
    """The record a row gives on its own (before overrides). Raises ValueError on a bad row:
    SQLite keeps any type in any column, so a database from elsewhere may hold a number as
    content or text as the vector; such a row is refused, never turned into a record."""
    blob = row.get(layout.vector_column) if layout.vector_column else None
    raw_id = row["id"]
    if raw_id is None or isinstance(raw_id, (bytes, float)) or raw_id == "":
        raise ValueError(f"id {raw_id!r} is not an integer or a text")
    for column in ("content", "namespace"):
        if not isinstance(row.get(column), (str, type(None))):
            raise ValueError(f"{column} holds a {type(row[column]).__name__}, not text")
    if blob is not None and not isinstance(blob, bytes):
        raise ValueError(f"the vector column holds a {type(blob).__name__}, not a float32 blob")
    vectors = {DEFAULT_VECTOR: Vector.from_blob(blob)} if blob is not None else {}
    if layout.kind == "legacy":
        metadata = _legacy_metadata(row.get("metadata"))
    else:
        metadata = {c: _column_value(c, row[c]) for c in layout.meta_columns}
    return MemoryRecord(
        id=str(raw_id),
        id_type="int" if isinstance(raw_id, int) else "str",
        text=row.get("content"),
        vectors=vectors,
        namespace=row.get("namespace"),
        metadata=metadata,
        created_at=parse_timestamp(row.get("created_at")),
        updated_at=parse_timestamp(row.get("updated_at")),
        source_store="vektor",
    )


def plain_condition(layout: Layout, has_side: bool) -> str:
    """An SQL condition (on ``m``, the memories row, and ``s``, its side-table entry) that holds
    for a row :class:`PlainRows` may turn into a record without :func:`row_to_record`'s
    per-column type tests: SQLite tests the types in C, once per row, while it reads it. A row
    it does not hold for takes the full path (and is a record or a ``bad_row`` as before)."""
    if layout.kind != "slipstream":
        return "0"
    parts = ["(typeof(m.id) = 'integer' OR (typeof(m.id) = 'text' AND m.id <> ''))"]
    parts += [f"typeof(m.\"{c}\") IN ('text', 'null')"
              for c in ("content", "namespace") if c in layout.columns]
    if layout.vector_column:
        v = f'm."{layout.vector_column}"'
        parts.append(f"({v} IS NULL OR (typeof({v}) = 'blob' AND length({v}) > 0 AND length({v}) % 4 = 0))")
    parts += [f"typeof(m.\"{c}\") <> 'blob'" for c in layout.meta_columns]
    if has_side:
        parts.append("s.overrides IS NULL")
    return " AND ".join(parts)


class PlainRows:
    """Records of a page of rows, built a page at a time where :func:`plain_condition` holds:
    the columns taken by position (no dict per row), the vectors' finite check one numpy call
    over the page's joined blobs. Gives exactly the record :func:`stored_record` gives for
    such a row (a row without a side-table entry is :func:`row_to_record`'s record), and None
    for every other row, or for one whose values still fail a check (a timestamp out of
    range, a vector with NaN), which the caller sends the full way.

    ``first``: the position of ``layout.columns[0]`` in each row tuple; ``flag``: the position
    of the condition's value."""

    def __init__(self, layout: Layout, first: int, flag: int) -> None:
        at = {c: first + i for i, c in enumerate(layout.columns)}
        self.flag = flag
        self.id_at = at["id"]
        self.text_at = at.get("content")
        self.namespace_at = at.get("namespace")
        self.created_at = at.get("created_at")
        self.updated_at = at.get("updated_at")
        self.vector_at = at.get(layout.vector_column) if layout.vector_column else None
        self.metadata = _dict_maker({c: at[c] for c in layout.meta_columns})
        self.tagged = "tags" in layout.meta_columns

    def records(self, rows: Sequence[tuple[Any, ...]]) -> list[MemoryRecord | None]:
        flag, vector_at = self.flag, self.vector_at
        finite = True
        if vector_at is not None:
            blobs = [row[vector_at] for row in rows if row[flag] and row[vector_at] is not None]
            if blobs:
                np = _numpy()
                finite = bool(np.isfinite(np.frombuffer(b"".join(blobs), dtype="<f4")).all())
        out: list[MemoryRecord | None] = []
        append, build = out.append, self._record
        for row in rows:
            if not row[flag]:
                append(None)
                continue
            try:
                append(build(row, finite))
            except ValueError:
                append(None)
        return out

    def _record(self, row: tuple[Any, ...], finite: bool) -> MemoryRecord:
        raw_id = row[self.id_at]
        metadata = self.metadata(row)
        if self.tagged:
            tags = metadata["tags"]
            if type(tags) is str and not tags.startswith("["):
                metadata["tags"] = tags.split(",") if tags else []
        blob = None if self.vector_at is None else row[self.vector_at]
        if blob is None:
            vectors: dict[str, Vector] = {}
        else:
            vectors = {DEFAULT_VECTOR: Vector(blob) if finite else Vector.from_blob(blob)}
        return MemoryRecord(
            id=str(raw_id),
            id_type="int" if type(raw_id) is int else "str",
            text=None if self.text_at is None else row[self.text_at],
            vectors=vectors,
            namespace=None if self.namespace_at is None else row[self.namespace_at],
            metadata=metadata,
            created_at=parse_timestamp(None if self.created_at is None else row[self.created_at]),
            updated_at=parse_timestamp(None if self.updated_at is None else row[self.updated_at]),
            source_store="vektor",
        )


def _dict_maker(positions: dict[str, int]) -> Callable[[tuple[Any, ...]], dict[str, Any]]:
    """A function making ``{name: row[position], ...}`` as one dict display: a third of the
    time ``dict(zip(names, itemgetter(*positions)(row)))`` takes. The names are column names
    from the database, written as ``repr`` literals (a string's repr is always a literal, so
    no name can be anything but a key), the positions integers."""
    body = ", ".join(f"{name!r}: row[{int(at)}]" for name, at in positions.items())
    made: Callable[[tuple[Any, ...]], dict[str, Any]] = eval(f"lambda row: {{{body}}}", {})
    return made


def _numpy() -> Any:
    import numpy

    return numpy


def _legacy_metadata(raw: Any) -> dict[str, Any] | None:
    if raw is None or raw == "":
        return None
    value = loads_exact(raw)
    if not isinstance(value, dict):
        raise ValueError("metadata column is not a JSON object")
    return value


def _column_value(column: str, value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if column == "tags" and isinstance(value, str) and not value.startswith("["):
        return value.split(",") if value else []
    return value


# ------------------------------------------------------------------------------ record -> row


def record_to_row(layout: Layout, record: MemoryRecord) -> dict[str, Any]:
    """Column values for a record (without the id); missing columns take the table defaults."""
    row: dict[str, Any] = {"content": record.text if record.text is not None else ""}
    vec = record.vectors.get(DEFAULT_VECTOR)
    if layout.vector_column:
        row[layout.vector_column] = vec.data if vec else None
    if "namespace" in layout.columns and record.namespace is not None:
        row["namespace"] = record.namespace
    for field in ("created_at", "updated_at"):
        ms = getattr(record, field)
        if field in layout.columns and ms is not None:
            row[field] = _time_value(layout, ms)
    if layout.kind == "legacy":
        if "metadata" in layout.columns and record.metadata is not None:
            row["metadata"] = dumps_exact(record.metadata)
        return row
    if record.metadata:
        columns = layout.meta_column_set
        for key, value in record.metadata.items():
            if key in columns and value is not None and _fits_sqlite(value):
                row[key] = _to_column(key, value)
    return row


def _fits_sqlite(value: Any) -> bool:
    """Whether SQLite can bind the value: not an integer beyond 64 bits. One that is not
    leaves its column at the table default, and the side table keeps the value exactly."""
    return not isinstance(value, int) or _INT64_MIN <= value <= _INT64_MAX


def _time_value(layout: Layout, ms: int) -> Any:
    return ms // 1000 if layout.epoch_times else format_timestamp(ms)


def _to_column(key: str, value: Any) -> Any:
    kind = type(value)
    if kind is str or kind is float or kind is int:
        return value
    if key == "tags" and isinstance(value, list) and all(isinstance(t, str) for t in value):
        return ",".join(value)
    if isinstance(value, (list, dict)):
        return dumps_exact(value)
    return value


# --------------------------------------------------------------------------------- overrides


def fingerprint(row: dict[str, Any]) -> str:
    """A digest of a row's stored values, so stale overrides are never applied."""
    values = [v.hex() if isinstance(v, bytes) else v for _, v in sorted(row.items())]
    return hashlib.sha256(orjson.dumps(values)).hexdigest()[:32]


def overrides_for(original: MemoryRecord, derived: MemoryRecord) -> dict[str, Any]:
    """The fields of ``original`` that the row alone does not give back exactly."""
    out: dict[str, Any] = {}
    for field in ("id", "id_type", "text", "namespace", "created_at", "updated_at", "score",
                  "modality", "source_store"):
        mine, theirs = getattr(original, field), getattr(derived, field)
        if not _surely_same(mine, theirs) and _strict(mine) != _strict(theirs):
            out[field] = mine
    if _strict(original.metadata) != _strict(derived.metadata):
        out["metadata"] = original.metadata
    if original.extra:
        out["extra"] = original.extra
    if original.sparse:
        out["sparse"] = {name: {"indices": base64.b64encode(sp.indices).decode(),
                                "values": base64.b64encode(sp.values).decode(), "model": sp.model}
                         for name, sp in original.sparse.items()}
    if original.vectors != derived.vectors:
        out["vectors"] = {name: _vector_override(v, derived.vectors.get(name))
                          for name, v in original.vectors.items()}
    return out


def _vector_override(original: Vector, in_row: Vector | None) -> dict[str, Any]:
    """A vector's model, and its bytes unless the row's vector column already holds them."""
    same_bytes = in_row is not None and in_row.data == original.data
    return {"model": original.model,
            "data": None if same_bytes else base64.b64encode(original.data).decode()}


def stored_record(layout: Layout, row: dict[str, Any], row_fingerprint: str | None,
                  overrides: str | None) -> MemoryRecord:
    """The record a row reads back as: the row, with its side-table entry where that entry
    still matches the row. Where the row was edited since (by Slipstream), the row wins, but
    it is still the same memory: its id and id type are kept. The reader emits this, and the
    writer asks it who holds a row, so the two never disagree about a memory's id or
    namespace. Raises ValueError on a bad row."""
    record = row_to_record(layout, row)
    if overrides is None:
        return record
    entry = _side_entry(overrides)
    if row_fingerprint != fingerprint(row):
        entry = {k: entry[k] for k in _IDENTITY if k in entry}
    try:
        return _checked_record(apply_overrides(record, entry))
    except (TypeError, KeyError, AttributeError, ValueError) as err:
        raise ValueError(f"the side-table entry of this row is malformed ({err!r})") from None


def _side_entry(overrides: Any) -> dict[str, Any]:
    """A side-table entry: a JSON object (ValueError otherwise, the row is then refused)."""
    if not isinstance(overrides, (str, bytes)):
        raise ValueError("the side-table entry of this row is not JSON text")
    entry = loads_exact(overrides)
    if not isinstance(entry, dict) or not set(entry) <= _OVERRIDE_FIELDS:
        raise ValueError("the side-table entry of this row is not an object of record fields")
    return entry


_OVERRIDE_FIELDS = frozenset({"id", "id_type", "text", "namespace", "created_at", "updated_at",
                              "score", "modality", "source_store", "metadata", "extra", "sparse",
                              "vectors"})
"""What :func:`overrides_for` writes; an entry with another key was not written by vexchange."""


def _checked_record(record: MemoryRecord) -> MemoryRecord:
    """The record an entry made, refused (ValueError) when a field has a type no record has:
    the side table of a database from elsewhere may hold anything."""
    if not isinstance(record.id, str) or not record.id or record.id_type not in ("int", "str"):
        raise ValueError("id must be a non-empty string, id_type 'int' or 'str'")
    for field in ("text", "namespace", "modality", "source_store"):
        if not isinstance(getattr(record, field), (str, type(None))):
            raise ValueError(f"{field} must be a string or null")
    for field in ("created_at", "updated_at"):
        value = getattr(record, field)
        if value is not None and type(value) is not int:
            raise ValueError(f"{field} must be epoch milliseconds")
    if not isinstance(record.metadata, (dict, type(None))) or not isinstance(record.extra, dict):
        raise ValueError("metadata and extra must be objects")
    if record.score is not None and (isinstance(record.score, bool)
                                     or not isinstance(record.score, (int, float))):
        raise ValueError("score must be a number")
    for vector in record.vectors.values():
        Vector.from_blob(vector.data, vector.model)  # its length and finite values
        if not isinstance(vector.model, (str, type(None))):
            raise ValueError("a vector's model must be a string or null")
    return record


_IDENTITY = ("id", "id_type")
"""What a side-table entry says about a row that stays true when the row is edited."""


def stored_identity(row: dict[str, Any], row_fingerprint: str | None,
                    overrides: str | None) -> tuple[str, str | None]:
    """``(id, namespace)`` of :func:`stored_record`, without decoding the rest of the row:
    the writer asks this of every row it may update. Never raises (a bad row is a row)."""
    record_id, namespace = str(row["id"]), row.get("namespace")
    if overrides is None:
        return record_id, namespace
    try:
        entry = _side_entry(overrides)
    except ValueError:
        return record_id, namespace
    if isinstance(entry.get("id"), str) and entry["id"]:
        record_id = entry["id"]
    if "namespace" in entry and row_fingerprint == fingerprint(row):
        namespace = entry["namespace"]
    return record_id, namespace


def apply_overrides(record: MemoryRecord, overrides: dict[str, Any]) -> MemoryRecord:
    changes = {k: v for k, v in overrides.items() if k not in ("vectors", "sparse")}
    if "sparse" in overrides:
        changes["sparse"] = {
            name: SparseVector(base64.b64decode(e["indices"]), base64.b64decode(e["values"]), e["model"])
            for name, e in overrides["sparse"].items()}
    if "vectors" in overrides:
        vectors: dict[str, Vector] = {}
        for name, entry in overrides["vectors"].items():
            data = record.vectors[name].data if entry["data"] is None else base64.b64decode(entry["data"])
            vectors[name] = Vector(data, entry["model"])
        changes["vectors"] = vectors
    return record.replace(**changes)


def _surely_same(a: Any, b: Any) -> bool:
    """True only where ``_strict(a) == _strict(b)`` surely, for the scalar fields of a record:
    the same type, and equal strings, integers, booleans, or finite floats of the same sign.
    False says nothing (NaN, -0.0 against 0.0, int against float...): the caller compares
    ``_strict`` then. Writing a row compares ten fields, and ``_strict`` is an orjson call each."""
    kind = type(a)
    if kind is not type(b):
        return False
    if kind is str or kind is int or kind is bool or a is None:
        return bool(a == b)
    if kind is float:
        return bool(a == b and a - a == 0.0 and math.copysign(1.0, a) == math.copysign(1.0, b))
    return False


def _strict(value: Any) -> bytes:
    """A type-exact comparison key (1, 1.0 and True differ). The copy with integers beyond 64
    bits as fragments only where orjson refuses the value as it is (the same text otherwise)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return orjson.dumps(with_big_ints_as_fragments(value), option=orjson.OPT_SORT_KEYS)
