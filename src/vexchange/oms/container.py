"""``.mg`` container files (OMS v1.3 §11): header, offset index, grains, optional index
manifest, SHA-256 footer. docs/formats/oms.md lists the choices made where the spec is silent.

Writing streams: grains go to a temporary region file as they come (with 4 bytes of offset
each in memory), and ``close`` writes header, index, region, manifest and footer into place
atomically. Reading maps the file and gives random access to grain ``i``; ``verify`` checks
the footer and every grain's address.

Reading checks by default (``MgReader(verify=True)``), before a grain is handed out: the
footer (before a compressed grain region is expanded, so a forged region is never inflated) and
the offset index (ascending, inside the region). A compressed region is expanded in bounded
steps up to ``VEX_MAX_DECOMPRESSED_BYTES`` (256 MiB by default), so a small hostile file
cannot expand to gigabytes in memory. The companion vectors file (``<file>.vectors``) has its
SHA-256 and size in the manifest under ``"vexchange.vectors"`` (docs/formats/oms.md), written
by ``MgWriter.describe_vectors`` and checked by ``VectorsCheck`` and ``verify``.
"""

from __future__ import annotations

import hashlib
import hmac
import mmap
import os
import re
import struct
import sys
import tempfile
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .._atomic import AtomicOutput
from ..errors import UsageError
from .canonical import decode, decode_prefix, encode
from .errors import error_class
from .grain import Grain, content_address, decode_grain

__all__ = ["DEFAULT_MAX_DECOMPRESSED_BYTES", "VECTORS_KEY", "MgReader", "MgWriter", "VectorsCheck",
           "companion_vectors", "max_decompressed_bytes", "read_mg", "write_mg"]

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
VECTORS_KEY = "vexchange.vectors"
"""The manifest key (not a grain address) of the companion vectors file's integrity entry:
``{"sha256": <hex>, "bytes": <size>}``. Other readers see one manifest entry they do not know."""
DEFAULT_MAX_DECOMPRESSED_BYTES = 256 << 20
_INFLATE_STEP = 512
"""Compressed bytes fed to zstd at a time: a zstd block of at most 128 KiB takes at least 4
bytes, so one step yields at most 16 MiB, and the limit is overshot by no more than that."""
_HEX64 = re.compile(r"[0-9a-f]{64}")
_PORTABLE_INDEX_KEYS = {"superseded_by": "sb", "system_valid_to": "svt",
                        "verification_status": "vstatus", "access_count": "ac",
                        "last_accessed_at": "laa", "contradicted": "ct"}


def _corrupt(message: str) -> Exception:
    return error_class("ERR_CORRUPT")(message)


def max_decompressed_bytes() -> int:
    """``VEX_MAX_DECOMPRESSED_BYTES``, else 256 MiB: the most a compressed grain region may
    expand to in memory (it is held whole for random access)."""
    raw = os.environ.get("VEX_MAX_DECOMPRESSED_BYTES", "").strip().replace("_", "")
    if not raw:
        return DEFAULT_MAX_DECOMPRESSED_BYTES
    if not raw.isdigit() or int(raw) < 1:
        raise UsageError(f"VEX_MAX_DECOMPRESSED_BYTES is {raw!r}; it must be a whole number of"
                         " bytes, 1 or more")
    return int(raw)


def companion_vectors(path: str | Path) -> Path:
    """Where the vectors a ``.mg`` file's grains reference live: ``<file>.vectors``."""
    path = Path(path)
    return path.with_name(path.name + ".vectors")


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
        # no context manager (SIM115): the builder's scratch region, open until the container is written
        self._region: BinaryIO = tempfile.TemporaryFile(dir=self.path.parent or None)  # noqa: SIM115
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

    def describe_vectors(self, sha256: str, size: int) -> None:
        """Carry the companion vectors file's SHA-256 (hex) and size in the manifest, so a
        reader can check the vectors as it reads them (``VECTORS_KEY``)."""
        self._manifest[VECTORS_KEY] = {"sha256": sha256, "bytes": size}

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
    """Random access to the grains of a ``.mg`` file (``len``, ``[i]``, iteration).

    ``verify`` (the default): the footer is checked before the grain region is touched, and
    the offset index after it is loaded. ``max_decompressed``: the most a compressed region
    may expand to (default :func:`max_decompressed_bytes`)."""

    def __init__(self, path: str | Path, *, verify: bool = True,
                 max_decompressed: int | None = None) -> None:
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
        if verify:
            self.check_footer()
        self._region, self._manifest_bytes = self._load_region(
            index_end, max_decompressed or max_decompressed_bytes())
        if verify:
            self._check_index(index_end)

    def check_footer(self) -> None:
        """ERR_INTEGRITY unless the footer is the SHA-256 of everything before it (hashed in
        place, a MiB at a time: the file is never copied)."""
        digest = hashlib.sha256()
        view = memoryview(self._map)
        try:
            for start in range(0, self._stored_end, 1 << 20):
                digest.update(view[start:min(start + (1 << 20), self._stored_end)])
            footer = bytes(view[self._stored_end:])
        finally:
            view.release()
        if not hmac.compare_digest(digest.digest(), footer):
            raise error_class("ERR_INTEGRITY")(f"{self.path}: footer checksum does not match")

    def _check_index(self, base: int) -> None:
        """The offsets start where the index ends and rise, each inside the grain region:
        every grain's address range is sound before any grain is read."""
        if not self.count:
            return
        offsets = np.frombuffer(self.offsets.tobytes(), dtype=np.uint32).astype(np.int64)
        if offsets[0] != base:
            raise _corrupt(f"{self.path}: the first grain does not start where the index ends")
        falls = np.flatnonzero(np.diff(offsets) <= 0)
        if falls.size:
            raise _corrupt(f"{self.path}: offset of grain {int(falls[0]) + 1} does not follow grain"
                           f" {int(falls[0])}'s")
        if offsets[-1] - base >= len(self._region):
            raise _corrupt(f"{self.path}: offset of grain {self.count - 1} is outside the grain region")

    def _load_region(self, start: int, limit: int) -> tuple[bytes | bytearray | memoryview, bytes]:
        stored = memoryview(self._map)[start:self._stored_end]
        if self.flags & FLAG_COMPRESSED or self.codec == CODEC_ZSTD:
            if self.codec != CODEC_ZSTD:
                raise _corrupt(f"{self.path}: compression codec 0x{self.codec:02x} is not supported")
            return self._inflate(stored, limit)
        if self.flags & FLAG_MANIFEST and self.count:
            last = self.offsets[-1] - start
            _, end = decode_prefix(bytes(stored[last + 9:]))
            region_end = last + 9 + end
            return stored[:region_end], bytes(stored[region_end:])
        return stored, b""

    def _inflate(self, stored: memoryview, limit: int) -> tuple[bytearray, bytes]:
        """The zstd frame expanded a few hundred compressed bytes at a time, refused as soon as
        it passes ``limit``; and the bytes after the frame (the manifest)."""
        import zstandard

        region = bytearray()
        inflater = zstandard.ZstdDecompressor().decompressobj()
        try:
            for at in range(0, len(stored), _INFLATE_STEP):
                region += inflater.decompress(stored[at:at + _INFLATE_STEP])
                if len(region) > limit:
                    raise error_class("ERR_RANGE")(
                        f"{self.path}: the compressed grain region expands past {limit:,} bytes;"
                        " refusing to hold more in memory (set VEX_MAX_DECOMPRESSED_BYTES to allow"
                        " a larger one)")
                if inflater.eof:
                    break
        except zstandard.ZstdError as err:
            raise _corrupt(f"{self.path}: grain region is not valid zstd ({err})") from None
        if not inflater.eof:
            raise _corrupt(f"{self.path}: the compressed grain region is truncated")
        return region, bytes(inflater.unused_data)

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
        value = self._manifest_map()
        return {k: v for k, v in value.items() if k != VECTORS_KEY}

    def _manifest_map(self) -> dict[str, Any]:
        if not self.flags & FLAG_MANIFEST:
            return {}
        value = decode(self._manifest_bytes)
        if not isinstance(value, dict):
            raise _corrupt(f"{self.path}: the index manifest is not a map")
        return value

    def vectors_hash(self) -> dict[str, Any] | None:
        """The companion vectors file's ``{"sha256", "bytes"}`` as the manifest carries it, or
        None for a file written without it (by another writer, or before vexchange wrote it)."""
        entry = self._manifest_map().get(VECTORS_KEY)
        if entry is None:
            return None
        if not (isinstance(entry, dict) and isinstance(entry.get("sha256"), str)
                and _HEX64.fullmatch(entry["sha256"]) and isinstance(entry.get("bytes"), int)):
            raise _corrupt(f"{self.path}: the manifest's {VECTORS_KEY} entry is not"
                           " {sha256, bytes}")
        return entry

    def verify(self) -> dict[str, Any]:
        """The footer over everything before it, the offset index, every grain's parse and
        address (and every address the manifest names is a grain of the file), then the
        companion vectors file against the hash the manifest carries."""
        self.check_footer()
        self._check_index(HEADER_SIZE + 4 * self.count)
        addresses = set()
        for i in range(self.count):
            addresses.add(content_address(self.blob(i)))
            self[i]
        for key in self.manifest():
            if key not in addresses:
                raise error_class("ERR_INTEGRITY")(
                    f"{self.path}: the manifest names grain {str(key)[:16]}..., which the file"
                    " does not hold")
        return {"grains": self.count, "footer": "ok", "addresses": len(addresses),
                "vectors": self._verify_vectors()}

    def _verify_vectors(self) -> str:
        """What the companion vectors file's check found: "ok", or why it was not checked."""
        companion = companion_vectors(self.path)
        expected = self.vectors_hash()
        if expected is None:
            return ("no vectors hash in the manifest (an older or foreign writer): not checked"
                    if companion.exists() else "no vectors file")
        if not companion.is_file():
            raise error_class("ERR_INTEGRITY")(f"{companion}: missing; the manifest records its hash")
        with open(companion, "rb") as handle:
            check = VectorsCheck(handle, expected, companion)
            while check.read(1 << 20):
                pass
            check.finish()
        return "ok"

    def close(self) -> None:
        self._region = b""
        self._map.close()

    def __enter__(self) -> MgReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class VectorsCheck:
    """A companion vectors file read through this (``read``, ``tell``) is hashed as it goes;
    ``finish`` hashes what is left and raises ERR_INTEGRITY unless the whole file is the one
    the manifest describes. A read that starts at ``start`` (a resumed one) hashes the bytes
    before it first."""

    def __init__(self, handle: BinaryIO, expected: dict[str, Any], path: Path,
                 start: int = 0) -> None:
        self._handle, self._expected, self._path = handle, expected, path
        self._hash = hashlib.sha256()
        self._size = 0
        handle.seek(0)
        while self._size < start and self.read(min(1 << 20, start - self._size)):
            pass

    def read(self, n: int) -> bytes:
        data = self._handle.read(n)
        self._hash.update(data)
        self._size += len(data)
        return data

    def tell(self) -> int:
        return self._handle.tell()

    def finish(self) -> None:
        while self.read(1 << 20):
            pass
        if self._size != self._expected["bytes"] or not hmac.compare_digest(
                self._hash.hexdigest(), self._expected["sha256"]):
            raise error_class("ERR_INTEGRITY")(
                f"{self._path}: the vectors file is not the one the .mg file's manifest describes"
                f" ({self._size:,} bytes, the manifest says {self._expected['bytes']:,}, or its"
                " SHA-256 differs)")


def write_mg(path: str | Path, blobs: list[bytes], **options: Any) -> None:
    with MgWriter(path, **options) as writer:
        for blob in blobs:
            writer.add(blob)


def read_mg(path: str | Path) -> list[Grain]:
    with MgReader(path) as reader:
        reader.verify()
        return list(reader)
