"""What ``vex grains`` does, as library functions with the same parameter names."""

from __future__ import annotations

import base64
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from ..errors import UsageError
from ..results import GrainsInspectReport, GrainsVerifyReport
from .container import FLAG_COMPRESSED, FLAG_MANIFEST, MgReader, MgWriter
from .errors import OMSError
from .grain import Grain, decode_grain, encode_grain

__all__ = ["decode_grains", "encode_grains", "inspect_grains", "verify_grains"]


def _reader(path: str | Path) -> MgReader:
    if not Path(path).is_file():
        raise UsageError(f"no such file: {path}")
    return MgReader(path)


def inspect_grains(path: str | Path) -> GrainsInspectReport:
    """Grain count, types, namespaces, flags and manifest size of a .mg file."""
    with _reader(path) as reader:
        types: Counter[str] = Counter()
        namespaces: Counter[str] = Counter()
        for grain in reader:
            types[grain.type] += 1
            namespaces[str(grain.fields.get("namespace", "(none)"))] += 1
        return GrainsInspectReport(
            file=str(path), grains=len(reader), types=dict(types.most_common()),
            namespaces=dict(namespaces.most_common()), compressed=bool(reader.flags & FLAG_COMPRESSED),
            manifest_entries=len(reader.manifest()) if reader.flags & FLAG_MANIFEST else 0)


def verify_grains(path: str | Path) -> GrainsVerifyReport:
    """Footer checksum and every grain's parse and address; ``ok`` False with the error."""
    try:
        with _reader(path) as reader:
            result = reader.verify()
    except OMSError as err:
        return GrainsVerifyReport(file=str(path), ok=False, error=err.code, detail=str(err))
    return GrainsVerifyReport(file=str(path), ok=True, **result)


def decode_grains(path: str | Path, *, index: int | None = None) -> list[dict[str, Any]]:
    """Grains as JSON-ready objects with full field names: from a .mg file (all, or grain
    ``index``) or from a file holding one blob."""
    data = Path(path)
    if not data.is_file():
        raise UsageError(f"no such file: {path}")
    if data.read_bytes()[:3] == b"MG\x01":
        with MgReader(data) as reader:
            if index is not None and not 0 <= index < len(reader):
                raise UsageError(f"{path} holds {len(reader)} grains; there is no grain {index}")
            grains = [reader[index]] if index is not None else list(reader)
    else:
        grains = [decode_grain(data.read_bytes())]
    return [_json(g) for g in grains]


def _json(grain: Grain) -> dict[str, Any]:
    return {"address": grain.address, "type": grain.type, "flags": grain.flags,
            "fields": _plain(grain.fields)}


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"$base64": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _unplain(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$base64"}:
            return base64.b64decode(value["$base64"])
        return {k: _unplain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unplain(v) for v in value]
    return value


def encode_grains(input: str | Path, output: str | Path, *, shape: str | None = None,
                  namespace: str | None = None) -> list[str]:
    """Canonical grains from JSON (one object, or one per line; full field names; bytes as
    ``{"$base64": ...}``): a .mg file when ``output`` ends in .mg, else one raw blob.

    With ``shape`` (one of :data:`vexchange.oms.shapes.SHAPE_NAMES`: conversation, tool_call,
    state, runbook, sensor, task, and the framework objects mem0, langgraph, letta_block,
    letta_agent, letta_tool, letta_message) the input is a JSONL log of that shape (see
    vexchange.oms.shapes); ``namespace`` then overrides the lines' (and the namespace a Mem0
    scope or a LangGraph namespace tuple spells)."""
    if not Path(input).is_file():
        raise UsageError(f"no such file: {input}")
    if shape is not None:
        from .shapes import grains_from_jsonl

        if Path(output).suffix != ".mg":
            raise UsageError("a shaped log becomes many grains: write them to a .mg file")
        with MgWriter(output) as writer:
            return [writer.add(blob) for blob in grains_from_jsonl(input, shape, namespace=namespace)]
    text = Path(input).read_text(encoding="utf-8").strip()
    try:
        objects = [orjson.loads(text)] if text.startswith("{") and "\n{" not in text else [
            orjson.loads(line) for line in text.splitlines() if line.strip()]
    except orjson.JSONDecodeError as err:
        raise UsageError(f"{input}: not JSON ({err})") from None
    blobs = [encode_grain(_unplain(obj.get("fields", obj))) for obj in objects]
    target = Path(output)
    if target.suffix == ".mg":
        with MgWriter(target) as writer:
            return [writer.add(blob) for blob in blobs]
    if len(blobs) != 1:
        raise UsageError("a raw blob holds one grain; write several to a .mg file")
    target.write_bytes(blobs[0])
    return [decode_grain(blobs[0]).address]
