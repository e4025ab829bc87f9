"""Content-addressed blobs in a directory: ``DIR/sha256/ab/cdef...`` (the first two hex digits
of the SHA-256 name a subdirectory).

Used where a store cannot hold a record's text whole (Pinecone keeps at most 40 KB of metadata
per record): the record keeps a ``sha256:<hex>`` reference and the bytes live here. A
reference read back from a store is untrusted input: only 64 lowercase hex digits are
accepted, so a reference can never name a path outside the directory, and the bytes are
hashed again on read.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from ._atomic import atomic_write_bytes

__all__ = ["BlobDir", "BlobError"]

_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")


class BlobError(ValueError):
    """A reference that is malformed, missing from the directory, or whose bytes changed."""


class BlobDir:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path_of(self, ref: str) -> Path:
        match = _DIGEST.fullmatch(ref)
        if match is None:
            raise BlobError(f"malformed blob reference {ref[:80]!r}")
        hexdigest = match.group(1)
        return self.root / "sha256" / hexdigest[:2] / hexdigest[2:]

    def put(self, data: bytes) -> str:
        """Store ``data`` (once; a blob already present is not rewritten); its reference."""
        ref = "sha256:" + hashlib.sha256(data).hexdigest()
        path = self.path_of(ref)
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, data)
        return ref

    def get(self, ref: str) -> bytes:
        path = self.path_of(ref)
        if path.is_symlink() or not path.is_file():
            raise BlobError(f"blob {ref} is not in {self.root}")
        data = path.read_bytes()
        if "sha256:" + hashlib.sha256(data).hexdigest() != ref:
            raise BlobError(f"blob {ref} in {self.root} does not match its hash")
        return data
