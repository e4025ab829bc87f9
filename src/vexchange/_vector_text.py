"""The JSON text vectors were read from, kept beside a page so a JSON writer can write it again.

Why: formatting 384 float32 values in their shortest decimal form is the largest single cost
of writing a .vmig.jsonl line (about 9 µs of a vmig -> vmig run's 100). When a vector comes from
a line and goes unchanged into another, its text can be written again as it was, with no
formatting, provided that text reads back to the very same bits, for us and for every other
reader. The .vmig.jsonl reader keeps the text only of vectors for which that is proven:

* its numbers parsed as one flat JSON array (a correctly rounding float64 parser), and
* no float64 they parse to is a float32 midpoint or in float32's subnormal range (the rows
  ``_floats.decode_rows`` does not send to the careful path), so rounding that float64 to
  float32, which any float64 parser followed by a cast does, gives exactly the bits the
  reader settled on. Vex (JavaScript numbers into a ``Float32Array``) reads the same.

The text is tied to the bytes object the reader made of it, by identity: a vector that was
changed on the way (re-embedded, adapted, normalised) is a new bytes object and is formatted
anew; the entry holds its bytes object, so the identity cannot be taken by another object while
the page lives. Records themselves keep plain ``bytes`` (their type is part of the contract).
"""

from __future__ import annotations

from typing import Any

__all__ = ["VectorTexts", "vector_texts_of"]


class VectorTexts:
    """Vector bytes -> the JSON text of the array they were read from (see the module)."""

    __slots__ = ("_by_id",)

    def __init__(self) -> None:
        self._by_id: dict[int, tuple[bytes, bytes]] = {}

    def add(self, data: bytes, text: bytes) -> None:
        """``text`` reads to exactly ``data`` for every float64 parser cast to float32."""
        self._by_id[id(data)] = (data, text)

    def get(self, data: bytes) -> bytes | None:
        """The text ``data`` itself (this very object) was read from, or None."""
        entry = self._by_id.get(id(data))
        return entry[1] if entry is not None and entry[0] is data else None

    def __len__(self) -> int:
        return len(self._by_id)


def vector_texts_of(page: Any) -> VectorTexts | None:
    """The vector texts a reader kept beside ``page`` (its ``vector_texts``), or None."""
    texts = getattr(page, "vector_texts", None)
    return texts if isinstance(texts, VectorTexts) and len(texts) else None
