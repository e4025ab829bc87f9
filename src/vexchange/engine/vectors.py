"""New vectors on the way through a run: re-embedding from text, and adapters that translate
vectors from one model's space into another's. docs/embeddings.md.

Only the default vector (name ``""``) is replaced; named vectors pass unchanged. The policy:

* ``reembed="all"``: every record gets a new default vector from its text.
* ``reembed="missing"``: records without a default vector get one; the others keep theirs.
* ``adapter=FILE``: every default vector of the adapter's source size is translated.
* ``on_dims_mismatch``: what happens to a default vector that does not fit the target (its
  size differs from what the target holds): ``skip`` (the default; counted as
  ``dims_mismatch``), ``reembed`` (from the text, with ``embed_model``) or ``adapt`` (with
  ``adapter``; the other vectors are then left alone).

A record that needs a new vector but has no text (or only whitespace) is skipped as
``no_text``, counted and written to the rejects file whole. ``keep_old_vector=NAME`` keeps
the replaced vector beside the new one, as a named vector.
"""

from __future__ import annotations

from typing import Any

from ..connectors._base import Connector, Reject, VectorSpace
from ..errors import UsageError
from ..record import MemoryRecord, Vector
from ..retry import RetryPolicy

__all__ = ["MISMATCH_POLICIES", "REEMBED_MODES", "VectorTransform"]

REEMBED_MODES = ("all", "missing")
MISMATCH_POLICIES = ("skip", "reembed", "adapt")


class VectorTransform:
    def __init__(self, *, reembed: str | None, embed_model: str | None, keep_old_vector: str | None,
                 on_dims_mismatch: str, adapter: str | None, force_adapter: bool,
                 retry: RetryPolicy) -> None:
        from ..adapters import load_adapter
        from ..embed import get_embedder

        self.reembed, self.keep_old = reembed, keep_old_vector
        self.on_mismatch = on_dims_mismatch
        self.retry = retry
        self.embedder = get_embedder(embed_model) if embed_model else None
        self.adapter = load_adapter(adapter, force=force_adapter) if adapter else None
        self.adapt_all = self.adapter is not None and on_dims_mismatch != "adapt"

    @staticmethod
    def wanted(options: Any) -> bool:
        return bool(options.reembed or options.adapter or options.on_dims_mismatch != "skip")

    def describe(self) -> dict[str, Any]:
        """For the receipt: which embedder and adapter, never a secret."""
        out: dict[str, Any] = {"reembed": self.reembed, "on_dims_mismatch": self.on_mismatch,
                               "keep_old_vector": self.keep_old}
        if self.embedder is not None:
            out["embedder"] = self.embedder.describe()
        if self.adapter is not None:
            out["adapter"] = self.adapter.describe()
        return out

    def spaces(self, declared: dict[str, VectorSpace]) -> dict[str, VectorSpace]:
        """What the target will receive, so that it creates its collection the right size:
        the source's declared spaces with the default vector's replaced when every one is."""
        old = declared.get("")
        new: VectorSpace | None = None
        if self.embedder is not None and (self.reembed == "all" or (
                self.reembed == "missing" and (old is None or old.dims is None))):
            new = VectorSpace(dims=self.embedder.dims, metric=self.embedder.metric)
        elif (self.adapt_all and self.adapter is not None and old is not None
              and old.dims == self.adapter.source_dims):
            new = VectorSpace(dims=self.adapter.target_dims, metric="cosine")
        if new is None:
            return declared
        out = dict(declared)
        out[""] = new
        if self.keep_old and old is not None:
            out[self.keep_old] = old
        return out

    def close(self) -> None:
        if self.embedder is not None:
            self.embedder.close()

    def apply(self, records: list[MemoryRecord], pinned: dict[str, int],
              target: Connector) -> tuple[list[MemoryRecord | Reject], int, int]:
        """The records with their new vectors (or a Reject), and how many were re-embedded
        and adapted. ``pinned``: the sizes the target holds (not changed here)."""
        expected = pinned.get("")
        plan: list[str] = []
        for record in records:
            action = self._action(record, expected)
            plan.append(action)
            if expected is None and target.capabilities.fixed_dims:
                if action == "embed" and self.embedder is not None:
                    expected = self.embedder.dims
                elif action == "adapt" and self.adapter is not None:
                    expected = self.adapter.target_dims
                elif action == "keep" and "" in record.vectors:
                    expected = record.vectors[""].dims
        out: list[MemoryRecord | Reject] = list(records)
        embed_at: list[int] = []
        for i, action in enumerate(plan):
            if action != "embed":
                continue
            if (records[i].text or "").strip():
                embed_at.append(i)
            else:
                out[i] = Reject(reason="no_text", id=records[i].id, namespace=records[i].namespace,
                                detail="the record needs a new vector and has no text to embed")
        if embed_at and self.embedder is not None:
            embedder = self.embedder
            batch = [records[i].text or "" for i in embed_at]
            vectors = self.retry.call(lambda: embedder.embed(batch))
            for i, row in zip(embed_at, vectors, strict=False):
                out[i] = self._replace(records[i], Vector(row.astype("<f4").tobytes(), embedder.model))
        adapt_at = [i for i, a in enumerate(plan) if a == "adapt"]
        if adapt_at and self.adapter is not None:
            adapter = self.adapter
            import numpy as np  # here, not at the top: `vex --help` loads this module

            source = np.stack([records[i].vectors[""].array() for i in adapt_at])
            for i, row in zip(adapt_at, adapter.apply(source), strict=False):
                out[i] = self._replace(records[i], Vector(row.astype("<f4").tobytes(), adapter.target_model))
        return out, len(embed_at), len(adapt_at)

    def _action(self, record: MemoryRecord, expected: int | None) -> str:
        vector = record.vectors.get("")
        if self.reembed == "all" or (self.reembed == "missing" and vector is None):
            return "embed"
        if vector is None:
            return "keep"
        if self.adapt_all and self.adapter is not None and vector.dims == self.adapter.source_dims:
            return "adapt"
        if expected is not None and vector.dims != expected:
            if self.on_mismatch == "reembed":
                return "embed"
            if (self.on_mismatch == "adapt" and self.adapter is not None
                    and vector.dims == self.adapter.source_dims):
                return "adapt"
        return "keep"

    def _replace(self, record: MemoryRecord, vector: Vector) -> MemoryRecord:
        vectors = dict(record.vectors)
        old = vectors.get("")
        vectors[""] = vector
        if self.keep_old and old is not None:
            vectors[self.keep_old] = old
        return record.replace(vectors=vectors)


def check_options(options: Any) -> None:
    """Usage errors for the vector options, before any work."""
    if options.reembed is not None and options.reembed not in REEMBED_MODES:
        raise UsageError(f"reembed must be one of {', '.join(REEMBED_MODES)}, not {options.reembed!r}")
    if options.on_dims_mismatch not in MISMATCH_POLICIES:
        raise UsageError(f"on_dims_mismatch must be one of {', '.join(MISMATCH_POLICIES)}")
    if (options.reembed or options.on_dims_mismatch == "reembed") and not options.embed_model:
        raise UsageError("re-embedding needs a model", hint="add --embed-model minilm (or static, st:PATH,"
                                                            " openai+URL?model=NAME, ollama+URL?model=NAME)")
    if options.on_dims_mismatch == "adapt" and not options.adapter:
        raise UsageError("--on-dims-mismatch adapt needs --adapter FILE")
    if options.keep_old_vector == "":
        raise UsageError("--keep-old-vector needs a name for the old vector")
