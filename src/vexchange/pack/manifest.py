"""``manifest.yaml``: a small, canonical YAML subset that any YAML parser reads.

Only nested mappings of scalars: every key and every string is a JSON string in double quotes
(valid YAML), numbers and booleans are JSON literals, keys are sorted, two spaces indent each
level. So the same manifest always has the same bytes, and this module reads it back without
a YAML library.
"""

from __future__ import annotations

import json
from typing import Any

from .._json import MAX_DEPTH
from ..errors import DecodeError

__all__ = ["dump_manifest", "load_manifest"]


def dump_manifest(data: dict[str, Any]) -> bytes:
    lines: list[str] = []
    _emit(data, 0, lines)
    return ("\n".join(lines) + "\n").encode()


def _emit(data: dict[str, Any], depth: int, lines: list[str]) -> None:
    pad = "  " * depth
    for key in sorted(data):
        value = data[key]
        label = json.dumps(str(key), ensure_ascii=False)
        if isinstance(value, dict):
            if value:
                lines.append(f"{pad}{label}:")
                _emit(value, depth + 1, lines)
            else:
                lines.append(f"{pad}{label}: {{}}")
        elif value is None or isinstance(value, (str, int, float, bool)):
            lines.append(f"{pad}{label}: {json.dumps(value, ensure_ascii=False)}")
        else:
            raise TypeError(f"manifest value {key!r} is a {type(value).__name__}")


def load_manifest(raw: bytes, where: str) -> dict[str, Any]:
    """Parse what ``dump_manifest`` writes; anything else is a DecodeError naming the line.

    Bounded on hostile input: mappings nest at most ``MAX_DEPTH`` levels, and only a key (a
    JSON string) or a scalar is ever handed to the JSON decoder, which recurses into arrays
    and objects (``[[[[...`` would end in a RecursionError)."""
    root: dict[str, Any] = {}
    stack: list[tuple[int, dict[str, Any]]] = [(-1, root)]
    decoder = json.JSONDecoder()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError("manifest is not UTF-8", location=where) from None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip(" "))
        if indent % 2:
            raise DecodeError("odd indentation", location=f"{where}:{number}")
        depth = indent // 2
        if depth >= MAX_DEPTH:
            raise DecodeError(f"mappings nested deeper than {MAX_DEPTH} levels",
                              location=f"{where}:{number}")
        try:
            if line[indent] != '"':
                raise ValueError("expected \"key\": value")
            key, end = decoder.raw_decode(line, indent)
            rest = line[end:]
            if not isinstance(key, str) or not rest.startswith(":"):
                raise ValueError("expected \"key\": value")
            rest = rest[1:].strip()
            while stack and stack[-1][0] >= depth:
                stack.pop()
            if not stack or stack[-1][0] != depth - 1:
                raise ValueError("indentation does not follow a mapping")
            parent = stack[-1][1]
            if key in parent:
                raise ValueError(f"key {key!r} appears twice")
            if rest == "":
                child: dict[str, Any] = {}
                parent[key] = child
                stack.append((depth, child))
            elif rest == "{}":
                parent[key] = {}
            elif rest[0] in "[{":
                raise ValueError("a value must be one JSON scalar")
            else:
                value, used = decoder.raw_decode(rest)
                if rest[used:].strip() or isinstance(value, (list, dict)):
                    raise ValueError("a value must be one JSON scalar")
                parent[key] = value
        except ValueError as err:
            raise DecodeError(f"manifest line is not in the manifest format ({err})",
                              location=f"{where}:{number}") from None
    return root
