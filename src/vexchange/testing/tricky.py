"""The tricky-records corpus: what real agent memories contain and stores get wrong.

Each record is named by its category (``extra["case"]`` is not used: the category is in the
id, so a rejects line or a failed assertion says at once which case it is). The corpus is
built for a store's shape: ``dims`` for the default vector, ``named`` extra vector names (for
stores that hold several), ``null_vectors`` for stores that hold records without one.

Categories (issue "Nothing lost, nothing changed"):

* ids of every shape: integer-looking strings ("-1", "0", "007", "1e3"), integer ids beyond
  64 bits, quotes and backslashes (``O'Brien``), URL and path characters, a UUID in upper and
  lower case, ids that collide after Unicode normalisation (NFC and NFD spell "é" apart), very
  long ids, whitespace;
* the same id in two namespaces, records with no namespace, ``""`` beside ``None``;
* metadata keys and values of every JSON type: keys a store refuses (``$``, ``#``, the empty
  key), keys named like reserved fields (``_vex``, ``text``, ``namespace``, ``id``), dotted
  keys, large floats (1e16, 1e20, 1e300), the smallest subnormal, ``-0.0``, integers at and
  beyond 64 bits, lists of lists, mixed lists, empty objects, deep nesting;
* extreme but finite float32 vector components (3e38, all 1e-38, the largest float32, the
  smallest subnormal, ``-0.0``);
* very long and unusual text (NUL, CR/LF, right-to-left marks, combining characters);
* timestamps at 0, before 1970 and in year 9999; integer and float scores;
* sparse vectors, including an empty one; named vectors.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..record import MemoryRecord, SparseVector, Vector

__all__ = ["strict_form", "tricky_records"]

_MS = 1_735_689_600_123


def tricky_records(*, dims: int = 8, named: tuple[str, ...] = (), null_vectors: bool = True,
                   seed: int = 29) -> list[MemoryRecord]:
    """The corpus: ids unique per namespace, so every record can land in a store that keeps
    namespaces apart; stores that do not refuse the twins as ``id_conflict``."""
    rng = np.random.default_rng(seed)

    def vec(values: np.ndarray | None = None, size: int = dims) -> Vector:
        arr = rng.standard_normal(size).astype("<f4") if values is None else values.astype("<f4")
        return Vector(arr.tobytes(), "tricky-model")

    def vectors(default: Vector | None = None) -> dict[str, Vector]:
        out = {"": default or vec()}
        for name in named:
            out[name] = vec(size=dims + 4)
        return out

    def record(rid: str, **fields: Any) -> MemoryRecord:
        fields.setdefault("vectors", vectors())
        fields.setdefault("text", f"tricky record {rid}")
        fields.setdefault("namespace", "tricky")
        fields.setdefault("created_at", _MS)
        return MemoryRecord(id=rid, **fields)

    out: list[MemoryRecord] = []
    # ids of every shape
    for rid in ("-1", "0", "007", "1e3", "+5", " padded ", "O'Brien", 'say "hi"', "back\\slash",
                "a/b?c#d&e=f%20g", "550e8400-e29b-41d4-a716-446655440000",
                "550E8400-E29B-41D4-A716-446655440000", "caf\u00e9", "cafe\u0301", "🚀🧠",
                "x" * 300, "tab\there", "line\nbreak"):
        out.append(record(rid))
    out.append(record("-5", id_type="int"))
    out.append(record("18446744073709551616", id_type="int"))
    out.append(record("9223372036854775807", id_type="int"))
    # namespaces: none, empty, and the same id in two namespaces
    out.append(record("shared-id", namespace=None, text="no namespace"))
    out.append(record("shared-id", namespace="", text="empty namespace"))
    out.append(record("shared-id", namespace="tricky", text="namespace tricky"))
    out.append(record("42", namespace="other", id_type="int", text="int id in other"))
    out.append(record("42", namespace=None, id_type="int", text="int id without namespace"))
    out.append(record("ns-unicode", namespace="名前 空間/α"))  # noqa: RUF001 - a non-Latin namespace on purpose
    # metadata of every kind
    out.append(record("meta-keys", metadata={
        "$dollar": 1, "#hash": 2, "": "empty key", "_vex": "not ours", "text": "a key named text",
        "namespace": "a key named namespace", "id": "a key named id", "vector": [1.0],
        "a.b": "dotted", "with space": True, "ключ": "unicode key", "UPPER": "case"}))
    out.append(record("meta-numbers", metadata={
        "f16": 1e16, "f20": 1e20, "f300": 1e300, "tiny": 5e-324, "neg_zero": -0.0,
        "whole": 2.0, "i63": (1 << 63) - 1, "i63neg": -(1 << 63), "i64": 1 << 64,
        "i_huge": 10**30, "zero": 0, "f_small": 1e-300, "pi": math.pi}))
    out.append(record("meta-shapes", metadata={
        "list_of_lists": [[1, 2], [3]], "mixed": [1, "a", True, None, 1.5], "empty_obj": {},
        "empty_list": [], "deep": {"a": {"b": {"c": {"d": [{"e": None}]}}}}, "null": None,
        "bools": [True, False], "strs": ["x", ""], "objs": [{"k": 1}, {"k": "2"}]}))
    out.append(record("meta-none", metadata=None))
    out.append(record("meta-empty", metadata={}))
    # extreme but finite float32 vectors
    big = np.full(dims, 1.0, dtype="<f4")
    big[0] = 3e38
    out.append(record("vec-3e38", vectors=vectors(vec(big))))
    out.append(record("vec-all-1e-38", vectors=vectors(vec(np.full(dims, 1e-38)))))
    out.append(record("vec-max", vectors=vectors(vec(np.full(dims, np.finfo("<f4").max)))))
    sub = np.zeros(dims, dtype="<f4")
    sub[:] = np.float32(1.4e-45)
    out.append(record("vec-subnormal", vectors=vectors(vec(sub))))
    signed = rng.standard_normal(dims).astype("<f4")
    signed[0] = -0.0
    out.append(record("vec-neg-zero", vectors=vectors(vec(signed))))
    # text
    out.append(record("text-long", text="long " + "ß" * 200_000 + " end"))
    out.append(record("text-odd", text="nul\x00 cr\r\nlf \u200f rtl \u202e \u0301combining\ufeff"))
    out.append(record("text-empty", text=""))
    out.append(record("text-none", text=None))
    out.append(record("text-nfd", text="cafe\u0301 (decomposed)"))
    # timestamps and scores
    out.append(record("time-zero", created_at=0, updated_at=0))
    out.append(record("time-1969", created_at=-86_400_000))
    out.append(record("time-9999", created_at=253_402_300_799_999, updated_at=253_402_300_799_999))
    out.append(record("score-int", score=3))
    out.append(record("score-float", score=0.125))
    out.append(record("score-neg", score=-2.5))
    # sparse and named vectors
    out.append(record("sparse-empty", sparse={"bm25": SparseVector(b"", b"", "bm25")}))
    out.append(record("sparse-wide", sparse={"bm25": SparseVector.from_values(
        [0, 7, (1 << 32) - 1], [0.5, -1.25, 3e38], model="bm25")}))
    out.append(record("extra-keys", extra={"custom": {"kept": [1, 2]}}, modality="image"))
    if null_vectors:
        out.append(record("no-vector", vectors={}))
    return out


def strict_form(value: Any) -> Any:
    """A value in a form where equal means the same JSON types too: ``3`` and ``3.0``, ``0.0``
    and ``-0.0``, ``True`` and ``1`` all differ (Python's ``==`` calls each pair equal). For
    records, every field; vectors as their bytes."""
    if isinstance(value, MemoryRecord):
        return tuple((name, strict_form(getattr(value, name))) for name in value.__struct_fields__)
    if isinstance(value, (Vector, SparseVector)):
        return tuple(strict_form(getattr(value, name)) for name in value.__struct_fields__)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int):
        return ("int", value)
    if isinstance(value, float):
        return ("float", repr(value))
    if isinstance(value, dict):
        return ("dict", tuple(sorted((k, strict_form(v)) for k, v in value.items())))
    if isinstance(value, (list, tuple)):
        return ("list", tuple(strict_form(v) for v in value))
    return (type(value).__name__, value)
