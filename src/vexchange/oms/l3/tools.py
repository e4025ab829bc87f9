"""What ``vex grains store ...``, ``vex grains encrypt`` and ``vex grains decrypt`` do, as library
functions with the CLI's parameter names. The master key comes from ``key_file`` or the
``VEX_OMS_KEY`` environment variable (64 hex digits); it never reaches a report or message."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import Any

from ...errors import UsageError
from ..container import MAGIC as MG_MAGIC
from ..container import MgReader
from ..tools import _json
from . import keys
from .keys import load_master_key
from .mgfile import decrypt_file, encrypt_file
from .store import INDEX_FILE, Level3Store

__all__ = ["decrypt_grains", "encrypt_grains", "store_audit_verify", "store_contradict", "store_erase",
           "store_get", "store_init", "store_put", "store_query", "store_rotate", "store_supersede"]

BATCH = 1000
_ADDRESS = re.compile("[0-9a-f]{64}")


@contextmanager
def _opened(store: str | Path, key_file: str | Path | None) -> Iterator[Level3Store]:
    handle = Level3Store(store, load_master_key(key_file))
    try:
        yield handle
    finally:
        handle.close()


def _blobs(input: str | Path) -> Iterator[bytes]:
    """Grain blobs of a .mg file (streamed) or of a file holding one blob."""
    path = Path(input)
    if not path.is_file():
        raise UsageError(f"no such file: {input}")
    with open(path, "rb") as handle:
        is_mg = handle.read(3) == MG_MAGIC
    if not is_mg:
        yield path.read_bytes()
        return
    with MgReader(path) as reader:
        for i in range(len(reader)):
            yield reader.blob(i)


def _one_blob(input: str | Path) -> bytes:
    blobs = list(islice(_blobs(input), 2))
    if len(blobs) != 1:
        raise UsageError(f"{input} must hold exactly one grain")
    return blobs[0]


def store_init(store: str | Path, *, key_file: str | Path | None = None, preset: str = "none",
               directory: bool = False, new_key: bool = False) -> dict[str, Any]:
    """Create a Level 3 store (with ``new_key``, first a new key file at ``key_file``)."""
    if new_key:
        if key_file is None:
            raise UsageError("--new-key writes the new key to --key-file: give one")
        key = keys.new_key_file(key_file)
    else:
        key = load_master_key(key_file)
    Level3Store(store, key, create=True, preset=preset, directory=directory).close()
    return {"store": str(store), "backend": "directory" if directory else "sqlite", "preset": preset,
            "key_file": None if key_file is None else str(key_file)}


def store_put(store: str | Path, input: str | Path, *, key_file: str | Path | None = None) -> dict[str, Any]:
    """Put every grain of ``input`` (a .mg file or one blob), a batch of 1000 per transaction."""
    added = 0
    with _opened(store, key_file) as opened:
        before = len(opened)
        blobs = _blobs(input)
        while batch := list(islice(blobs, BATCH)):
            opened.put_many(batch)
            added += len(batch)
        return {"store": str(store), "grains": added, "new": len(opened) - before}


def _address(address: str) -> str:
    if not _ADDRESS.fullmatch(address):
        raise UsageError(f"{address!r} is not a content address (64 lowercase hex digits)")
    return address


def store_get(store: str | Path, address: str, *, key_file: str | Path | None = None) -> dict[str, Any]:
    _address(address)
    with _opened(store, key_file) as opened:
        grain = opened.get(address)
        if grain is None:
            raise UsageError(f"no grain {address} in {store}")
        return {**_json(grain), "index": opened.index_state(address)}


def store_query(store: str | Path, *, key_file: str | Path | None = None, subject: str | None = None,
                relation: str | None = None, object: str | None = None, namespace: str | None = None,
                user_id: str | None = None, type: str | None = None, tag: str | None = None,
                text: str | None = None, all_versions: bool = False,
                limit: int | None = None) -> Iterator[dict[str, Any]]:
    """Grains matching every filter (current ones only unless ``all_versions``), streamed."""
    with _opened(store, key_file) as opened:
        for grain in opened.query(subject=subject, relation=relation, object=object, namespace=namespace,
                                  user_id=user_id, type=type, tag=tag, text=text,
                                  current_only=not all_versions, limit=limit):
            yield _json(grain)


def store_supersede(store: str | Path, old_address: str, input: str | Path, *,
                    key_file: str | Path | None = None, justification: str | None = None) -> dict[str, Any]:
    _address(old_address)
    with _opened(store, key_file) as opened:
        address = opened.supersede(old_address, _one_blob(input), justification=justification)
        return {"superseded": old_address, "by": address}


def store_contradict(store: str | Path, address: str, input: str | Path, *,
                     key_file: str | Path | None = None, justification: str | None = None) -> dict[str, Any]:
    _address(address)
    with _opened(store, key_file) as opened:
        new = opened.contradict(address, _one_blob(input), justification=justification)
        return {"contradicted": address, "by": new}


def store_erase(store: str | Path, *, key_file: str | Path | None = None, user_id: str | None = None,
                address: str | None = None) -> dict[str, Any]:
    """Crypto-erasure of every grain of ``user_id``, or compliance deletion of one grain."""
    if (user_id is None) == (address is None):
        raise UsageError("give exactly one of --user-id and --address")
    if address is not None:
        _address(address)
    with _opened(store, key_file) as opened:
        if user_id is not None:
            return {"erased": opened.erase(user_id), "user_key_destroyed": True}
        existed = opened.exists(address or "")
        opened.delete(address or "")
        return {"erased": int(existed), "user_key_destroyed": False}


def store_rotate(store: str | Path, *, key_file: str | Path | None = None, new_key_file: str | Path,
                 create_key: bool = False) -> dict[str, Any]:
    """Re-wrap every key of the store under the master key in ``new_key_file`` (made first with
    ``create_key``); no grain is re-encrypted. The old key opens the store no more."""
    new = keys.new_key_file(new_key_file) if create_key else load_master_key(new_key_file)
    with _opened(store, key_file) as opened:
        return {"store": str(store), "user_keys_rewrapped": opened.rotate(new),
                "key_file": str(new_key_file)}


def store_audit_verify(store: str | Path, *, key_file: str | Path | None = None,
                       expect_head: str | None = None) -> dict[str, Any]:
    """The audit chain's check: ``ok``, entries, head (keep it to detect a rollback later)."""
    with _opened(store, key_file) as opened:
        return {"store": str(store), **opened.verify_audit(expect_head=expect_head),
                "recovery": opened.recovery}


def encrypt_grains(input: str | Path, output: str | Path, *,
                   key_file: str | Path | None = None) -> dict[str, Any]:
    return encrypt_file(input, output, load_master_key(key_file))


def decrypt_grains(input: str | Path, output: str | Path, *,
                   key_file: str | Path | None = None) -> dict[str, Any]:
    return decrypt_file(input, output, load_master_key(key_file))


def is_store(path: str | Path) -> bool:
    p = Path(path)
    return (p / INDEX_FILE).is_file() if p.is_dir() else p.is_file()
