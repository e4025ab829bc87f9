"""Encrypted ``.mg`` files (docs/formats/oms-level3.md §9): a whole container sealed in chunks.

::

    off  len  field
    0    4    magic "VXME"
    4    1    version 0x01
    5    1    algorithm 0x01 = AES-256-GCM
    6    2    reserved, 0
    8    32   salt (random per file)
    40   32   key check: HMAC-SHA256(HKDF(master, salt, "…/key-check"), "key-check")
    72   7    nonce prefix (random)
    79   4    chunk size C (u32 big-endian), 65536
    83   ...  chunks: AES-256-GCM(file key, nonce = prefix || u32be(i) || last, chunk i, aad = bytes 0-82)

Every chunk but the last holds C plaintext bytes (C+16 stored); the last holds fewer (possibly
none) and has ``last`` = 1 in its nonce, so a truncated file, reordered or dropped chunks, and
an edited header all fail. The file key is HKDF-SHA256(master, salt, "vexchange/oms-l3/v1/mg-file").
Both directions stream at constant memory and write through a partial file renamed at the end.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..._atomic import AtomicOutput
from ...errors import UsageError
from ..container import MAGIC as MG_MAGIC
from ..container import MgReader
from .errors import TamperedError
from .keys import MasterKey

__all__ = ["CHUNK", "MAGIC", "decrypt_file", "encrypt_file"]

MAGIC = b"VXME"
HEADER = 83
CHUNK = 65536
_TAG = 16


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + struct.pack(">IB", index, int(last))


def _paths(input: str | Path, output: str | Path) -> tuple[Path, Path]:
    source, target = Path(input), Path(output)
    if not source.is_file():
        raise UsageError(f"no such file: {source}")
    if target.exists() and target.resolve() == source.resolve():
        raise UsageError(f"{target} is the input: an input is never overwritten")
    return source, target


def encrypt_file(input: str | Path, output: str | Path, key: MasterKey) -> dict[str, Any]:
    """Seal the .mg file ``input`` into ``output``."""
    source, target = _paths(input, output)
    salt, prefix = os.urandom(32), os.urandom(7)
    header = (MAGIC + bytes((1, 1, 0, 0)) + salt + key.check_value(salt) + prefix + struct.pack(">I", CHUNK))
    aead = AESGCM(_file_key(key, salt))
    out = AtomicOutput(target)
    try:
        with open(source, "rb") as handle:
            if handle.read(3) != MG_MAGIC:
                raise UsageError(f"{source} is not a .mg file")
            handle.seek(0)
            out.write(header)
            index, size = 0, 0
            current = handle.read(CHUNK)
            while True:
                following = handle.read(CHUNK) if len(current) == CHUNK else b""
                last = not following and len(current) < CHUNK
                out.write(aead.encrypt(_nonce(prefix, index, last), current, header))
                size += len(current)
                index += 1
                if last:
                    break
                current = following
        out.commit()
    except BaseException:
        out.discard()
        raise
    return {"input": str(source), "output": str(target), "bytes": size, "chunks": index}


def _file_key(key: MasterKey, salt: bytes) -> bytes:
    return key.derive(salt, "file")


def _read_header(handle: BinaryIO, key: MasterKey, where: Path) -> tuple[bytes, bytes, int]:
    header = handle.read(HEADER)
    if len(header) < HEADER or header[:4] != MAGIC:
        raise UsageError(f"{where} is not an encrypted .mg file (vex grains encrypt makes them)")
    if header[4] != 1 or header[5] != 1:
        raise TamperedError(f"{where}: version {header[4]} / algorithm {header[5]} is not supported")
    salt = header[8:40]
    key.verify(salt, header[40:72], str(where))
    (chunk,) = struct.unpack(">I", header[79:83])
    if not 0 < chunk <= 1 << 24:
        raise TamperedError(f"{where}: chunk size {chunk} is not plausible")
    return header, salt, chunk


def decrypt_file(input: str | Path, output: str | Path, key: MasterKey) -> dict[str, Any]:
    """Open the encrypted file ``input`` into the .mg file ``output`` (checked before it is
    renamed into place)."""
    source, target = _paths(input, output)
    with open(source, "rb") as handle:
        header, salt, chunk = _read_header(handle, key, source)
        aead, prefix = AESGCM(_file_key(key, salt)), header[72:79]
        out = AtomicOutput(target)
        try:
            index, size = 0, 0
            current = handle.read(chunk + _TAG)
            while True:
                following = handle.read(chunk + _TAG)
                last = not following
                try:
                    plain = aead.decrypt(_nonce(prefix, index, last), current, header)
                except InvalidTag:
                    raise TamperedError(f"{source}: chunk {index} fails authentication (edited,"
                                        " truncated or reordered)") from None
                out.write(plain)
                size += len(plain)
                index += 1
                if last:
                    break
                current = following
            out.flush()
            MgReader(out.partial).close()  # the footer checks out before the file looks complete
            out.commit()
        except BaseException:
            out.discard()
            raise
    return {"input": str(source), "output": str(target), "bytes": size, "chunks": index}
