"""File targets through the shared conformance suite: ``.vmig.jsonl`` and OMS ``.mg`` files,
each read back with the standard library alone (no vexchange code), as the format pages say.

A file target holds what one run wrote: a rerun rewrites the whole file, so a record is never
there twice and a changed record replaces the old one."""

from __future__ import annotations

import itertools
import json
import struct
from pathlib import Path
from typing import Any

import pytest

from vexchange.testing.conformance import ConnectorConformance, NativeRow


def vmig_rows(location: str) -> list[NativeRow]:
    """Every line of a .vmig.jsonl file through ``json`` (docs/formats/vmig.md): ``text`` and
    the default ``vector`` (JSON numbers, each the shortest text of a float32)."""
    rows = []
    for line in Path(location).read_bytes().splitlines():
        if not line.strip() or line.startswith(b"#"):
            continue
        obj = json.loads(line)
        vector = obj.get("vector")
        rows.append(NativeRow(obj.get("text"), None if vector is None
                              else struct.pack(f"<{len(vector)}f", *vector)))
    return rows


def _msgpack(data: bytes, at: int) -> tuple[Any, int]:
    """One MessagePack value at ``at`` and where it ends: the subset canonical OMS grains use
    (nil, booleans, ints, float32/64, str, bin, arrays, maps)."""
    tag = data[at]
    at += 1
    if tag <= 0x7F:
        return tag, at
    if tag >= 0xE0:
        return tag - 0x100, at
    if 0x80 <= tag <= 0x8F:
        return _msgpack_map(data, at, tag & 0x0F)
    if 0x90 <= tag <= 0x9F:
        return _msgpack_array(data, at, tag & 0x0F)
    if 0xA0 <= tag <= 0xBF:
        return data[at:at + (tag & 0x1F)].decode(), at + (tag & 0x1F)
    fixed = {0xC0: None, 0xC2: False, 0xC3: True}
    if tag in fixed:
        return fixed[tag], at
    numbers = {0xCA: ">f", 0xCB: ">d", 0xCC: ">B", 0xCD: ">H", 0xCE: ">I", 0xCF: ">Q",
               0xD0: ">b", 0xD1: ">h", 0xD2: ">i", 0xD3: ">q"}
    if tag in numbers:
        size = struct.calcsize(numbers[tag])
        return struct.unpack_from(numbers[tag], data, at)[0], at + size
    sized = {0xC4: (">B", bytes), 0xC5: (">H", bytes), 0xC6: (">I", bytes),
             0xD9: (">B", str), 0xDA: (">H", str), 0xDB: (">I", str),
             0xDC: (">H", list), 0xDD: (">I", list), 0xDE: (">H", dict), 0xDF: (">I", dict)}
    fmt, kind = sized[tag]
    n = struct.unpack_from(fmt, data, at)[0]
    at += struct.calcsize(fmt)
    if kind is list:
        return _msgpack_array(data, at, n)
    if kind is dict:
        return _msgpack_map(data, at, n)
    raw = data[at:at + n]
    return (raw.decode() if kind is str else bytes(raw)), at + n


def _msgpack_array(data: bytes, at: int, n: int) -> tuple[list[Any], int]:
    out = []
    for _ in range(n):
        value, at = _msgpack(data, at)
        out.append(value)
    return out, at


def _msgpack_map(data: bytes, at: int, n: int) -> tuple[dict[Any, Any], int]:
    out = {}
    for _ in range(n):
        key, at = _msgpack(data, at)
        out[key], at = _msgpack(data, at)
    return out, at


def mg_rows(location: str) -> list[NativeRow]:
    """Every grain of a .mg file, decoded by the layout docs/formats/oms.md gives: a 16-byte
    header (magic ``MG\\x01``, flags, u32 BE count), u32 BE absolute offsets, the grains (9-byte
    grain header, then a canonical MessagePack map with compacted keys), a 32-byte SHA-256
    footer (a manifest map may stand between the last grain and the footer). The text is the
    record's exact text from the grain's ``vexchange`` field (JSON bytes; the grain's own
    ``object`` holds its NFC form); the vectors come from the companion
    ``.mg.vectors`` file, entries in grain order (u32 BE key length, key, u32 BE dims, float32
    LE values), as many for each grain as its ``embedding_refs`` (``er``)."""
    data = Path(location).read_bytes()
    assert data[:3] == b"MG\x01" and not data[3] & 0b00100, "uncompressed"
    manifest = bool(data[3] & 0b10000)  # the vectors file's hash: after the last grain
    (count,) = struct.unpack_from(">I", data, 4)
    offsets = [*struct.unpack_from(f">{count}I", data, 16), len(data) - 32]
    vectors = Path(location + ".vectors").read_bytes() if count else b""
    at = 0
    rows = []
    for start, end in itertools.pairwise(offsets):
        fields, used = _msgpack(data, start + 9)
        last = end == len(data) - 32
        assert used == end or (manifest and last), f"grain at {start} ends at {used}, not {end}"
        exact = json.loads(fields["vexchange"])
        default = None
        for name, _model in exact["vectors"]:
            (size,) = struct.unpack_from(">I", vectors, at)
            (dims,) = struct.unpack_from(">I", vectors, at + 4 + size)
            at += 8 + size
            if name == "":
                default = vectors[at:at + 4 * dims]
            at += 4 * dims
        assert len(exact["vectors"]) == len(fields.get("er") or [])
        rows.append(NativeRow(exact["text"], default))
    assert at == len(vectors), "the vector file holds entries no grain references"
    return rows


class TestVmigFile(ConnectorConformance):
    """A .vmig.jsonl file keeps namespaces apart (one line per record)."""

    same_id_in_namespaces = True

    @pytest.fixture
    def new_location(self, tmp_path: Path) -> Any:
        return lambda name: str(tmp_path / f"out-{name}.vmig.jsonl")

    @pytest.fixture
    def broken_location(self, tmp_path: Path) -> str:
        (tmp_path / "a-directory.vmig.jsonl").mkdir()
        return str(tmp_path / "a-directory.vmig.jsonl")

    @pytest.fixture
    def native_rows(self) -> Any:
        return vmig_rows


class TestMgFile(ConnectorConformance):
    """An OMS .mg file (one Belief grain per record) and its companion vector file."""

    same_id_in_namespaces = True

    @pytest.fixture
    def new_location(self, tmp_path: Path) -> Any:
        return lambda name: str(tmp_path / f"out-{name}.mg")

    @pytest.fixture
    def broken_location(self, tmp_path: Path) -> str:
        (tmp_path / "a-directory.mg").mkdir()
        return str(tmp_path / "a-directory.mg")

    @pytest.fixture
    def native_rows(self) -> Any:
        return mg_rows
