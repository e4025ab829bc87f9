"""``.mg`` container files (OMS v1.3 §11): header, offset index, grains, optional index
manifest, SHA-256 footer. docs/formats/oms.md lists the choices made where the spec is silent.

Writing streams: grains go to a temporary region file as they come (with 4 bytes of offset
each in memory), and ``close`` writes header, index, region, manifest and footer into place
atomically. Reading maps the file and gives random access to grain ``i``; ``verify`` checks
the footer and every grain's address.
"""

from __future__ import annotations

import hashlib
import hmac
import mmap
import os
import struct
import sys
import tempfile
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from .._atomic import AtomicOutput
from .canonical import decode, decode_prefix, encode
from .errors import error_class
from .grain import Grain, content_address, decode_grain

__all__ = ["MgReader", "MgWriter", "read_mg", "write_mg"]

MAGIC = b"MG\x01"
HEADER_SIZE = 16
FOOTER_SIZE = 32
FIELD_MAP_VERSION = 0x01
FLAG_SORTED = 1 << 0
FLAG_DEDUPLICATED = 1 << 1
FLAG_COMPRESSED = 1 << 2
FLAG_FIELD_MAP = 1 << 3
FLAG_MANIFEST = 1 << 4
CODEC_NONE, CODEC_ZSTD = 0x00, 0x01
_PORTABLE_INDEX_KEYS = {"superseded_by": "sb", "system_valid_to": "svt",
                        "verification_status": "vstatus", "access_count": "ac",
                        "last_accessed_at": "laa"}


def _corrupt(message: str) -> Exception:
    return error_class("ERR_CORRUPT")(message)


class MgWriter:
    """Append grain blobs, then ``close()``. ``compress=True`` stores the grain region as one
    zstd frame (codec 0x01); offsets always count in the uncompressed file, so the same index
    serves both forms."""

    def __init__(self, path: str | Path, *, compress: bool = False, sorted_by_time: bool = False,
                 zstd_level: int = 3) -> None:
        self.path = Path(path)
        self.compress = compress
        self.zstd_level = zstd_level
        self.sorted_by_time = sorted_by_time
        self.offsets = array("I")
        self._region: BinaryIO = tempfile.TemporaryFile(dir=self.path.parent or None)
        self._size = 0
        self._manifest: dict[str, dict[str, Any]] = {}
        self._seen: set[bytes] = set()
        self._duplicates = False

    def add(self, blob: bytes, *, index_state: dict[str, Any] | None = None) -> str:
        """Append one grain blob; ``index_state`` (full names of index-layer fields) goes to
        the manifest. Returns the grain's content address."""
        if len(self.offsets) >= 0xFFFFFFFF:
            raise error_class("ERR_RANGE")("a .mg file holds at most 2**32-1 grains")
        digest = hashlib.sha256(blob).digest()
        if digest[:8] in self._seen:  # 8 bytes: a rare false "duplicate" only clears a flag
            self._duplicates = True
        self._seen.add(digest[:8])
        self.offsets.append(self._size)  # relative for now; made absolute in close()
        self._region.write(blob)
        self._size += len(blob)
        address = digest.hex()
        if index_state:
            entry = {_PORTABLE_INDEX_KEYS.get(k, k): v for k, v in index_state.items() if v is not None}
            if entry:
                self._manifest[address] = entry
        return address

    def close(self) -> None:
        count = len(self.offsets)
        base = HEADER_SIZE + 4 * count
        if base + self._size > 0xFFFFFFFF:
            raise error_class("ERR_RANGE")("offsets are u32: the grain region is beyond 4 GB")
        flags = (FLAG_SORTED if self.sorted_by_time else 0) | (
            0 if self._duplicates else FLAG_DEDUPLICATED) | (
            FLAG_COMPRESSED if self.compress else 0) | (FLAG_MANIFEST if self._manifest else 0)
        header = MAGIC + bytes([flags]) + struct.pack(">I", count) + bytes(
            [FIELD_MAP_VERSION, CODEC_ZSTD if self.compress else CODEC_NONE]) + bytes(6)
        index = array("I", (base + o for o in self.offsets))
        if sys.byteorder == "little":
            index.byteswap()
        out: AtomicOutput | None = None
        try:
            out = AtomicOutput(self.path)  # inside: a target it cannot open still closes the region
            out.write(header)
            out.write(index.tobytes())
            self._region.seek(0)
            if self.compress:
                import zstandard

                compressor = zstandard.ZstdCompressor(level=self.zstd_level)
                with compressor.stream_reader(self._region, size=self._size) as frames:
                    for chunk in iter(lambda: frames.read(1 << 20), b""):
                        out.write(chunk)
            else:
                for chunk in iter(lambda: self._region.read(1 << 20), b""):
                    out.write(chunk)
            if self._manifest:
                out.write(encode(self._manifest))
            out.write(bytes.fromhex(out.sha256))  # the footer: SHA-256 of all before it
            out.commit()
        except BaseException:
            if out is not None:
                out.discard()  # leave nothing that looks written
            raise
        finally:
            self._region.close()

    def discard(self) -> None:
        """Give up: nothing is written."""
        self._region.close()

    def __enter__(self) -> MgWriter:
        return self

    def __exit__(self, kind: Any, err: Any, tb: Any) -> None:
        if kind is None:
            self.close()
        else:
            self._region.close()


class MgReader:
    """Random access to the grains of a ``.mg`` file (``len``, ``[i]``, iteration)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size < HEADER_SIZE + FOOTER_SIZE:
                raise _corrupt(f"{self.path}: {size} bytes is too short for a .mg file")
            self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        data = self._map
        if data[:3] != MAGIC:
            raise _corrupt(f"{self.path}: not a .mg file (magic {bytes(data[:3])!r})")
        self.flags = data[3]
        self.count = struct.unpack(">I", data[4:8])[0]
        self.field_map_version, self.codec = data[8], data[9]
        index_end = HEADER_SIZE + 4 * self.count
        if index_end + FOOTER_SIZE > size:
            raise _corrupt(f"{self.path}: {self.count} grains declared, the file is too short")
        index = array("I", data[HEADER_SIZE:index_end])
        if sys.byteorder == "little":
            index.byteswap()
        self.offsets = index
        self._stored_end = size - FOOTER_SIZE
        self._region, self._manifest_bytes = self._load_region(index_end)

    def _load_region(self, start: int) -> tuple[bytes | memoryview, bytes]:
        stored = memoryview(self._map)[start:self._stored_end]
        if self.flags & FLAG_COMPRESSED or self.codec == CODEC_ZSTD:
            if self.codec != CODEC_ZSTD:
                raise _corrupt(f"{self.path}: compression codec 0x{self.codec:02x} is not supported")
            import zstandard

            try:
                inflater = zstandard.ZstdDecompressor().decompressobj()
                region = inflater.decompress(bytes(stored))
            except zstandard.ZstdError as err:
                raise _corrupt(f"{self.path}: grain region is not valid zstd ({err})") from None
            return region, bytes(inflater.unused_data)
        if self.flags & FLAG_MANIFEST and self.count:
            last = self.offsets[-1] - start
            _, end = decode_prefix(bytes(stored[last + 9:]))
            region_end = last + 9 + end
            return stored[:region_end], bytes(stored[region_end:])
        return stored, b""

    def __len__(self) -> int:
        return int(self.count)

    def blob(self, i: int) -> bytes:
        if not 0 <= i < self.count:
            raise IndexError(i)
        base = HEADER_SIZE + 4 * self.count
        start = self.offsets[i] - base
        end = (self.offsets[i + 1] - base) if i + 1 < self.count else len(self._region)
        if not 0 <= start < end <= len(self._region):
            raise _corrupt(f"{self.path}: offset of grain {i} is outside the grain region")
        return bytes(self._region[start:end])

    def __getitem__(self, i: int) -> Grain:
        return decode_grain(self.blob(i))

    def __iter__(self) -> Iterator[Grain]:
        for i in range(self.count):
            yield self[i]

    def manifest(self) -> dict[str, Any]:
        if not self.flags & FLAG_MANIFEST:
            return {}
        value = decode(self._manifest_bytes)
        if not isinstance(value, dict):
            raise _corrupt(f"{self.path}: the index manifest is not a map")
        return value

    def verify(self) -> dict[str, Any]:
        """The footer over everything before it, then every grain's parse and address."""
        stored = hashlib.sha256(self._map[:self._stored_end]).digest()
        if not hmac.compare_digest(stored, bytes(self._map[self._stored_end:])):
            raise error_class("ERR_INTEGRITY")(f"{self.path}: footer checksum does not match")
        addresses = [content_address(self.blob(i)) for i in range(self.count)]
        for i in range(self.count):
            self[i]
        return {"grains": self.count, "footer": "ok", "addresses": len(addresses)}

    def close(self) -> None:
        self._region = b""
        self._map.close()

    def __enter__(self) -> MgReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_mg(path: str | Path, blobs: list[bytes], **options: Any) -> None:
    with MgWriter(path, **options) as writer:
        for blob in blobs:
            writer.add(blob)


def read_mg(path: str | Path) -> list[Grain]:
    with MgReader(path) as reader:
        reader.verify()
        return list(reader)
