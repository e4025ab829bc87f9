"""Build VEKTOR Slipstream-style SQLite databases: the demo's data, and the tests' and benchmarks'.
Deterministic by seed.

    python -m vexchange.sample_data out.db -n 10000 --dims 384 --edge-cases
    python -m vexchange.sample_data legacy.db --layout legacy --edge-cases

Layouts: ``slipstream`` (INTEGER ids, float32 ``vector`` BLOB, epoch-second timestamps, FTS5
with its insert trigger) and ``legacy`` (TEXT ids, ``embedding`` BLOB, JSON ``metadata``, ISO
timestamps). Edge cases, in namespace ``edge``: a NULL vector, a truncated blob, emoji and
quotes, newlines and tabs, duplicate text, far-past and far-future timestamps, nested metadata
(legacy) and JSON-array tags (slipstream). Their ids are listed by :func:`build`.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._time import format_timestamp
from .connectors._vektor_schema import SLIPSTREAM_DDL

NAMESPACES = ("default", "trading", "research", "personal", "work")
AGENTS = ("vektor-mcp", "default", "claude-desktop")
MEMORY_TYPES = ("episodic", "semantic", "procedural", "working", "identity")
TAGS = ("crypto", "config", "bug", "decision", "deploy", "auth", "todo", "sqlite", "release")
WORDS = ["agent", "memory", "vector", "store", "namespace", "embedding", "recall", "context", "session",
         "user", "prefers", "deadline", "release", "token", "index", "cosine", "model", "batch", "retry",
         "checksum", "stream", "record"]

LEGACY_DDL = """
CREATE TABLE memories (id TEXT PRIMARY KEY, content TEXT, embedding BLOB, metadata TEXT,
                       created_at TEXT, namespace TEXT);
"""
BASE_TS = 1_735_689_600  # 2025-01-01T00:00:00Z
Row = tuple[Any, ...]


@dataclass
class Fixture:
    path: Path
    layout: str
    records: int
    dims: int
    edge_ids: dict[str, str] = field(default_factory=dict)
    """Edge case name -> the id of its row."""


def build(path: str | Path, *, n: int = 1000, dims: int = 384, layout: str = "slipstream",
          edge_cases: bool = False, seed: int = 7, fts: bool = True) -> Fixture:
    """Create the database at ``path`` (which must not exist)."""
    target = Path(path)
    if target.exists():
        raise FileExistsError(target)
    rng = np.random.default_rng(seed)
    db = sqlite3.connect(target)
    ddl = SLIPSTREAM_DDL if layout == "slipstream" else LEGACY_DDL
    if layout == "slipstream" and not fts:
        ddl = ddl.split("CREATE VIRTUAL TABLE")[0]
    if layout == "slipstream":
        ddl = _insert_trigger_only(ddl)
    db.executescript(ddl)
    chunk = 20_000
    for start in range(1, n + 1, chunk):
        stop = min(n, start + chunk - 1)
        rows = _rows(rng, start, stop, dims, layout)
        _insert(db, layout, rows)
        db.commit()
    fixture = Fixture(target, layout, n, dims)
    if edge_cases:
        fixture.edge_ids = _add_edge_cases(db, rng, n + 1, dims, layout)
        fixture.records += len(fixture.edge_ids)
    db.commit()
    db.close()
    return fixture


def _insert_trigger_only(ddl: str) -> str:
    """Slipstream itself ships only the insert trigger; model that, not our fuller set."""
    head, _, _ = ddl.partition("CREATE TRIGGER memories_fts_delete")
    return head


def _unit_vectors(rng: np.random.Generator, count: int, dims: int) -> np.ndarray:
    v = rng.standard_normal((count, dims), dtype=np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v.astype("<f4")


def _rows(rng: np.random.Generator, start: int, stop: int, dims: int, layout: str) -> list[Row]:
    vectors = _unit_vectors(rng, stop - start + 1, dims)
    words = rng.integers(0, len(WORDS), size=(stop - start + 1, 12))
    rows = []
    for offset, i in enumerate(range(start, stop + 1)):
        text = f"memory {i}: " + " ".join(WORDS[w] for w in words[offset][: 6 + i % 7]) + "."
        ts = BASE_TS + i * 37
        tags = [TAGS[(i + k) % len(TAGS)] for k in range(i % 4)]
        rows.append(_row(layout, i, text, vectors[offset].tobytes(), ts, NAMESPACES[i % 5], tags))
    return rows


def _row(layout: str, i: int, text: str, blob: bytes | None, ts: int, ns: str, tags: list[str],
         tag_text: str | None = None, extra_meta: dict[str, Any] | None = None) -> Row:
    if layout == "slipstream":
        return (i, AGENTS[i % 3], text, text[:40] if i % 7 == 0 else None, float(1 + i % 5),
                tag_text if tag_text is not None else ",".join(tags), ns, 1 if i % 50 == 0 else 0,
                MEMORY_TYPES[i % 5], round(0.5 + (i % 50) / 100, 2), None, "semantic",
                json.dumps([f"why {i}?"]) if i % 5 == 0 else None, ts, ts + 60, blob)
    meta = {"tags": ",".join(tags), "importance": round((i % 100) / 100, 2), "agent_id": AGENTS[i % 3]}
    meta.update(extra_meta or {})
    return (f"mem-{i:07d}", text, blob, json.dumps(meta), format_timestamp(ts * 1000), ns)


def _insert(db: sqlite3.Connection, layout: str, rows: list[Row]) -> None:
    if layout == "slipstream":
        db.executemany(
            "INSERT INTO memories (id, agent_id, content, summary, importance, tags, namespace,"
            " pinned, memory_type, confidence, source_db, edge_type, potential, created_at,"
            " updated_at, vector) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    else:
        db.executemany("INSERT INTO memories VALUES (?,?,?,?,?,?)", rows)


def _add_edge_cases(db: sqlite3.Connection, rng: np.random.Generator, first: int, dims: int,
                    layout: str) -> dict[str, str]:
    def vec() -> bytes:
        return bytes(_unit_vectors(rng, 1, dims)[0].tobytes())

    cases = [
        ("null_vector", "text only, no vector", None, BASE_TS, {}),
        ("truncated_blob", "vector blob three bytes short", vec()[:-3], BASE_TS, {}),
        ("unicode", "naïve café — 日本語 🚀 \"quoted\" 'single' \\backslash", vec(), BASE_TS, {}),
        ("newlines", "line one\nline two\r\nline three\ttabbed", vec(), BASE_TS, {}),
        ("duplicate_text", "memory 1: duplicate text", vec(), BASE_TS, {}),
        ("far_past", "far past timestamp", vec(), 0, {}),
        ("far_future", "far future timestamp", vec(), 4_102_444_800, {}),
        ("nested", "nested metadata and json tags", vec(), BASE_TS,
         {"nested": {"a": 1, "b": [1, 2.5, None]}, "flag": True}),
    ]
    ids = {}
    rows = []
    for offset, (name, text, blob, ts, meta) in enumerate(cases):
        i = first + offset
        tag_text = '["edge", "case"]' if name == "nested" else None
        rows.append(_row(layout, i, text, blob, ts, "edge", ["edge", "case"], tag_text, meta))
        ids[name] = str(i) if layout == "slipstream" else f"mem-{i:07d}"
    _insert(db, layout, rows)
    return ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("-n", type=int, default=1000)
    parser.add_argument("--dims", type=int, default=384)
    parser.add_argument("--layout", choices=["slipstream", "legacy"], default="slipstream")
    parser.add_argument("--edge-cases", action="store_true")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    fixture = build(args.out, n=args.n, dims=args.dims, layout=args.layout,
                    edge_cases=args.edge_cases, seed=args.seed)
    print(json.dumps({"path": str(fixture.path), "records": fixture.records,
                      "edge_ids": fixture.edge_ids}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
