"""``qdrant-edge``: a Qdrant Edge shard directory (``qdrant-edge-py``, the Qdrant engine's own
segment and shard code, in-process; the on-disk format of a server shard). docs/connectors/qdrant.md.

URL form: ``qdrant-edge:///abs/shard-dir`` (or ``qdrant-edge:relative/dir``).

Same mapping as the ``qdrant`` connector (ids, named vectors, payload, ``_vex``). The shard's
vector configuration is read from its ``edge_config.json``. A missing shard is created with the
source's dims and metric. Cosine vectors are stored normalised by the engine; ``verify``
reports them as "normalised".
"""

from __future__ import annotations

import os
import shutil
import uuid

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import qdrant_edge as qe

from ..errors import PermanentError, UsageError
from ..record import MemoryRecord
from ..spec import StoreSpec
from ._base import AtPath, Capabilities, Connector, Page, QueryHit, Reject, VectorSpace, Writer
from ._qdrant_common import LAYOUT, METRICS, held_by, point_id, record_from_point, refuse_taken
from ._store import StoreWriter, metric_for, metric_from, translated

__all__ = ["QdrantEdgeConnector"]

_CONFIG = "edge_config.json"


def _translated(operation: str) -> Any:
    return translated("qdrant-edge", operation, permanent=(RuntimeError, ValueError, OSError),
                      hint="is the directory a Qdrant Edge shard, and not open elsewhere?")


class QdrantEdgeConnector(AtPath, Connector):
    name = "qdrant-edge"
    url_options = frozenset()
    takes_path = True
    extra = "qdrant-edge"
    capabilities = Capabilities(read=True, write=True, named_vectors=True, fixed_dims=True,
                                preferred_batch=2000,
                                normalises=("cosine",))

    def __init__(self, spec: StoreSpec) -> None:
        super().__init__(spec)
        if not spec.path:
            raise UsageError("qdrant-edge needs a shard directory: qdrant-edge:///path/shard")
        self.path = Path(spec.path)
        self._shard: Any = None

    def describe(self) -> dict[str, Any]:
        return {"connector": "qdrant-edge", "location": str(self.path.resolve())}

    def is_shard(self) -> bool:
        return (self.path / _CONFIG).is_file()

    def sparse_names(self) -> set[str]:
        if not self.is_shard():
            return set()
        return set(orjson.loads((self.path / _CONFIG).read_bytes()).get("sparse_vectors") or {})

    def shard(self, *, create: dict[str, VectorSpace] | None = None,
              sparse: set[str] | None = None) -> Any:
        if self._shard is None:
            if self.is_shard():
                with _translated("open"):
                    self._shard = qe.EdgeShard.load(str(self.path))
            elif create is not None:
                if self.path.exists() and (not self.path.is_dir() or any(self.path.iterdir())):
                    raise UsageError(f"{self.path} exists and is not a Qdrant Edge shard")
                config = qe.EdgeConfig(vectors={
                    name: qe.EdgeVectorParams(size=space.dims or 0, distance=getattr(
                        qe.Distance, metric_for("qdrant-edge", space.metric, METRICS)))
                    for name, space in create.items()},
                    sparse_vectors={n: qe.EdgeSparseVectorParams() for n in sorted(sparse or ())})
                self._create(config)
            else:
                raise UsageError(f"{self.path} is not a Qdrant Edge shard (no {_CONFIG})")
        return self._shard

    def _create(self, config: Any) -> None:
        """Create the shard in a sibling folder and rename it into place: the engine writes its
        segments and WAL before ``edge_config.json``, so a run killed inside ``create`` would
        otherwise leave a folder that is neither empty nor a shard, and its ``--resume`` would
        refuse it. A folder left by such a kill is ours (its name says so) and is removed."""
        staging = self.path.parent / f".{self.path.name}.creating"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _translated("create"):
            if staging.exists():
                shutil.rmtree(staging)
            qe.EdgeShard.create(str(staging), config).close()
            # rename(2) takes an empty directory's place, so an empty target folder is fine
            os.rename(staging, self.path)
            self._shard = qe.EdgeShard.load(str(self.path))

    def count(self) -> int | None:
        shard = self.shard()
        with _translated("count"):
            return int(shard.count(qe.CountRequest()))

    def vector_spaces(self) -> dict[str, VectorSpace]:
        if not self.is_shard():
            raise UsageError(f"{self.path} is not a Qdrant Edge shard (no {_CONFIG})")
        try:
            config = orjson.loads((self.path / _CONFIG).read_bytes())
        except (OSError, orjson.JSONDecodeError) as err:
            raise PermanentError(f"cannot read {self.path / _CONFIG}: {err}",
                                 connector="qdrant-edge", operation="describe") from err
        return {name: VectorSpace(dims=params.get("size"),
                                  metric=metric_from(METRICS, params.get("distance")))
                for name, params in (config.get("vectors") or {}).items()}

    def read(self, *, batch_size: int, after: str | None = None) -> Iterator[Page]:
        shard = self.shard()
        offset: Any = orjson.loads(after) if after else None
        while True:
            with _translated("scroll"):
                points, offset = shard.scroll(qe.ScrollRequest(
                    offset=offset, limit=batch_size, with_vector=True, with_payload=True))
            items = [record_from_point(p.id, p.vector, p.payload) for p in points]
            yield Page(items, None if offset is None else orjson.dumps(offset).decode())
            if offset is None:
                return

    def keeps_records(self) -> bool:
        return True  # a shard directory is upserted into, run after run

    def query(self, vector: Any, k: int, *, namespace: str | None = None,
              vector_name: str = "") -> list[QueryHit]:
        """The engine's own nearest-neighbour query on the shard (its HNSW index once the
        optimiser built one, else a full scan), filtered on the ``namespace`` payload field."""
        shard = self.shard()
        where = None if namespace is None else qe.Filter(must=[qe.FieldCondition(
            LAYOUT.namespace_key or "namespace", match=qe.MatchValue(namespace))])
        with _translated("query"):
            points = shard.query(qe.QueryRequest(
                limit=k, query=qe.Query.Nearest([float(x) for x in vector], using=vector_name),
                with_payload=True, filter=where))
        hits: list[QueryHit] = []
        for point in points:
            item = record_from_point(point.id, None, point.payload)
            if isinstance(item, MemoryRecord):
                hits.append(QueryHit(item.id, float(point.score), item.namespace))
        return hits

    def open_writer(self, *, resume: dict[str, Any] | None = None, dry_run: bool = False,
                    spaces: dict[str, VectorSpace] | None = None) -> Writer:
        return QdrantEdgeWriter(self, dry_run=dry_run, spaces=spaces or {})

    def close(self) -> None:
        if self._shard is not None:
            self._shard.close()
            self._shard = None


class QdrantEdgeWriter(StoreWriter):
    def __init__(self, store: QdrantEdgeConnector, *, dry_run: bool,
                 spaces: dict[str, VectorSpace]) -> None:
        super().__init__(store, dry_run=dry_run, spaces=spaces, metrics=METRICS)
        self.held = store.vector_spaces() if store.is_shard() else {}
        self.sparse = store.sparse_names()
        self.holders: dict[Any, str] = {}
        """Point id -> the record id it holds, for the batch's points already stored."""

    def target_dims(self) -> dict[str, int]:
        return {n: s.dims for n, s in self.held.items() if s.dims}

    def vector_spaces(self) -> dict[str, VectorSpace]:
        return dict(self.held)

    def created(self) -> bool:
        return bool(self.held)

    def create(self, batch: list[MemoryRecord]) -> None:
        self.store.shard(create=self.spaces_to_create(batch),
                         sparse={name for record in batch for name in record.sparse})
        self.held = self.store.vector_spaces()
        self.sparse = self.store.sparse_names()

    def store_id(self, record: MemoryRecord) -> Any:
        return point_id(record.id)

    def namespaces_of(self, ids: list[Any]) -> dict[Any, str | None]:
        """Also notes which record id holds each point, for ``upsert`` (``refuse_taken``)."""
        with _translated("retrieve"):
            found = self.store.shard().retrieve(ids, True, False)
        # the shard hands UUID ids back as uuid.UUID; ours are strings (point_id)
        keyed = [(str(p.id) if isinstance(p.id, uuid.UUID) else p.id, p.payload) for p in found]
        self.holders = {pid: held_by(pid, payload) for pid, payload in keyed}
        return {pid: (payload or {}).get("namespace") for pid, payload in keyed}

    def upsert(self, rows: list[tuple[Any, MemoryRecord]]) -> list[Reject]:
        points = []
        rows, rejects = refuse_taken(rows, self.holders)
        self.holders = {}
        for key, record in rows:
            unknown = [n for n in record.vectors if n not in self.held]
            if unknown:
                rejects.append(Reject(reason="unknown_vector", id=record.id, namespace=record.namespace,
                                      detail=f"the shard has no vector named {unknown[0]!r}"))
                continue
            native = self.sparse & set(record.sparse)
            vector: list[float] | dict[str, Any]
            if not native and len(record.vectors) == 1 and "" in record.vectors:
                # the default vector alone, given bare: the same point, and qdrant-edge takes
                # a bare list in about two thirds of the time of a one-entry dict (6 µs, 9 µs)
                vector = record.vectors[""].tolist()
            else:
                vector = {n: v.tolist() for n, v in record.vectors.items()}
                for name in native:
                    sp = record.sparse[name]
                    vector[name] = qe.SparseVector(indices=sp.index_array().tolist(),
                                                   values=sp.value_array().tolist())
            points.append(qe.Point(id=key, vector=vector,
                                   payload=LAYOUT.pack(record, store_id=str(key), native_sparse=native)))
        if points:
            shard = self.store.shard()
            with _translated("upsert"):
                shard.update(qe.UpdateOperation.upsert_points(points))
        return rejects

    def delete(self, keys: list[tuple[str | None, str]]) -> None:
        """Delete the points of these ``(namespace, id)`` pairs; a point that holds another
        record or namespace, or none, is left alone."""
        if self.dry_run or not self.created():
            return
        wanted = {point_id(record_id): (namespace, record_id) for namespace, record_id in keys}
        shard = self.store.shard()
        with _translated("retrieve"):
            found = shard.retrieve(list(wanted), True, False)
        doomed = []
        for point in found:
            pid = str(point.id) if isinstance(point.id, uuid.UUID) else point.id
            namespace, record_id = wanted[pid]
            payload = point.payload or {}
            if held_by(pid, payload) == record_id and payload.get("namespace") == namespace:
                doomed.append(pid)
        if doomed:
            with _translated("delete"):
                shard.update(qe.UpdateOperation.delete_points(doomed))

    def finish(self, summary: dict[str, Any]) -> None:
        """Updates are in the shard's write-ahead log as soon as ``update`` returns (a killed
        run loses none of them); flushing writes the segments once, at the end."""
        self._flush()

    def abort(self) -> None:
        self._flush()

    def _flush(self) -> None:
        if self.store._shard is not None:
            with _translated("flush"):
                self.store._shard.flush()
