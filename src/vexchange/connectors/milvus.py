"""``milvus``: a Milvus collection, on a server (or Zilliz) or in Milvus Lite. docs/connectors/milvus.md.

URL forms::

    milvus://host:19530/memories                 server (token: VEX_MILVUS_TOKEN; ?db=NAME, ?https=true)
    milvus:///abs/path/milvus.db?collection=memories   Milvus Lite, embedded

Collections the connector creates (Milvus Lite has no nullable fields, so nothing is nullable)::

    id VARCHAR primary key (an id with a quote, backslash or control character as
    ``vex-hex:<hex of its UTF-8>``, the id itself in vex), namespace VARCHAR, text
    ARRAY<VARCHAR> (the text in pieces of at most 65,535 bytes, so long text is kept whole;
    [] for no text), metadata JSON, vex ARRAY<VARCHAR>
    (JSON text), created_at / updated_at INT64 (epoch ms, 0 when unknown), and one FLOAT_VECTOR
    field per named vector (``vector`` for the default one), each indexed with the source's metric.

Every record needs every vector field the collection has (Milvus vectors cannot be null); a
record missing one is refused with a reason. Reading pages by primary key (``id > last``), so a
run can resume; collections of any shape can be read (INT64 or VARCHAR keys, dynamic fields).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
from pymilvus import DataType, MilvusClient, MilvusException

from .._json import dumps_exact, loads_exact
from ..errors import PermanentError, UsageError
from ..record import MemoryRecord
from ..spec import StoreSpec
from ._base import Capabilities, Page, QueryHit, Reject, VectorSpace, Writer
from ._payload import PayloadLayout, json_exact
from ._split import CollectionStore
from ._store import StoreWriter, Verdict, metric_for, metric_from, translated

__all__ = ["MilvusConnector"]

_METRICS = {"cosine": "COSINE", "dot": "IP", "euclidean": "L2"}
_LAYOUT = PayloadLayout("milvus", text_key=None, namespace_key=None, native=json_exact)
_PIECE = 65_535
_MAX_PIECES = 4096
_NO_NAMESPACE = "namespace_null"
_FETCH = 250
"""Rows per query."""
_OWN_FIELDS: dict[str, dict[str, Any]] = {
    "id": {"datatype": DataType.VARCHAR, "max_length": _PIECE, "is_primary": True},
    "namespace": {"datatype": DataType.VARCHAR, "max_length": _PIECE},
    "text": {"datatype": DataType.ARRAY, "element_type": DataType.VARCHAR,
             "max_capacity": _MAX_PIECES, "max_length": _PIECE},
    "metadata": {"datatype": DataType.JSON},
    "vex": {"datatype": DataType.ARRAY, "element_type": DataType.VARCHAR,
            "max_capacity": _MAX_PIECES, "max_length": _PIECE},
    "created_at": {"datatype": DataType.INT64},
    "updated_at": {"datatype": DataType.INT64},
}
"""The scalar fields of a collection vexchange creates (vector fields follow, one per name):
the schema it creates and the requests it sends are both made from this table."""
_CALL_TIMEOUT_S = 60.0
"""A write that has not answered by then fails as transient and is retried (the batch is looked
up and merged, never added twice). pymilvus's own insert has no deadline at all."""
_WRITE_ROWS = 100
"""Rows per insert: Milvus Lite's cost per call grows faster than its size. 10k rows of 384
dims: 1.7 s in calls of 100, 2.1 s of 250, 4.6 s of 1,000, 7.8 s of 2,000 (pymilvus's own
insert is fastest at 100 too: 1.69 s, against 1.76 s at 250)."""


def _pieces(text: str) -> list[str]:
    """UTF-8 pieces of at most 65,535 bytes, cut between characters."""
    data = text.encode()
    out: list[str] = []
    start = 0
    while start < len(data):
        end = min(start + _PIECE, len(data))
        while end < len(data) and (data[end] & 0xC0) == 0x80:
            end -= 1
        out.append(data[start:end].decode())
        start = end
    return out or [""]


class _Collection:
    """A collection's shape: key field, vector fields with dims and metrics, our own layout."""

    def __init__(self, client: MilvusClient, name: str) -> None:
        info = client.describe_collection(name)
        fields = info["fields"]
        self.key = next(f["name"] for f in fields if f.get("is_primary"))
        self.key_is_int = next(f["type"] for f in fields if f.get("is_primary")) == DataType.INT64
        self.vector_dims = {f["name"]: int(f["params"]["dim"]) for f in fields
                            if f["type"] == DataType.FLOAT_VECTOR}
        self.own = bool(info.get("properties", {}).get("vexchange")) or {
            "vex", "metadata", "namespace", "text"} <= {f["name"] for f in fields}
        self.names = {c: ("" if c == "vector" or len(self.vector_dims) == 1 else c.removeprefix("vector_"))
                      for c in self.vector_dims}
        if self.own:
            self.names = {c: ("" if c == "vector" else c.removeprefix("vector_")) for c in self.vector_dims}
        self.metrics: dict[str, str | None] = {}
        for field in self.vector_dims:
            try:
                index = client.describe_index(name, field) or {}
            except MilvusException:
                index = {}
            self.metrics[field] = metric_from(_METRICS, index.get("metric_type"))
        self.scalars = [f["name"] for f in fields if f["name"] not in self.vector_dims]

    def spaces(self) -> dict[str, VectorSpace]:
        return {self.names[f]: VectorSpace(dims=d, metric=self.metrics.get(f))
                for f, d in self.vector_dims.items()}


class MilvusConnector(CollectionStore):
    name = "milvus"
    url_options = frozenset({'collection', 'db', 'namespaces'})
    url_userinfo = "token"
    url_secret = "token"
    extra = "milvus"
    default_port = 19530
    capabilities = Capabilities(read=True, write=True, named_vectors=True, null_vectors=False,
                                preferred_batch=_WRITE_ROWS,
                                fixed_dims=True)

    def accept_bulk(self, bulk: bool) -> None:
        """``--bulk`` is refused: the Milvus run here has no import to start (docs/connectors/milvus.md)."""
        if bulk:
            raise UsageError(
                "--bulk into milvus is not available: Milvus Lite (milvus-lite 2.5.1, the Milvus"
                " vexchange runs and tests against) answers pymilvus's utility.do_bulk_insert (the"
                " Import RPC) with UNIMPLEMENTED and serves no REST endpoint for bulk_import, so no"
                " server-side import could be started or tested",
                hint="leave --bulk out (rows are upserted), or write milvus-bulk:s3://BUCKET/PREFIX"
                     " files and import them with your Milvus server's own bulk_import")

    def __init__(self, spec: StoreSpec) -> None:
        super().__init__(spec)
        if spec.host:
            self.collection_name = (spec.path or "").strip("/") or "memories"
        elif spec.path:
            self.collection_name = spec.params.get("collection", "memories")
        else:
            raise UsageError("milvus needs a location: milvus://host:19530/COLLECTION or"
                             " milvus:///path/milvus.db?collection=NAME")
        self._client: MilvusClient | None = None

    def collection_names(self) -> list[str]:
        client = self.client()
        with translated_milvus("list collections"):
            return [str(name) for name in client.list_collections()]

    def client(self) -> MilvusClient:
        if self._client is None:
            with translated_milvus("connect"):
                url = self.server_url()
                if url:
                    self._client = MilvusClient(
                        uri=url,
                        token=self.spec.secret("token") or "", db_name=self.spec.params.get("db", ""),
                        timeout=10)
                else:
                    self._client = MilvusClient(str(self.spec.path))
        return self._client

    def shape(self) -> _Collection | None:
        client = self.client()
        with translated_milvus("describe"):
            if not client.has_collection(self.collection_name):
                return None
            return _Collection(client, self.collection_name)

    def _require(self) -> _Collection:
        shape = self.shape()
        if shape is None:
            raise UsageError(f"Milvus has no collection {self.collection_name!r} at"
                             f" {self.describe()['location']}")
        return shape

    def count(self) -> int | None:
        self._require()
        with translated_milvus("count"):
            rows = self.client().query(self.collection_name, filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"]) if rows else 0

    def vector_spaces(self) -> dict[str, VectorSpace]:
        return self._require().spaces()

    def read(self, *, batch_size: int, after: str | None = None) -> Iterator[Page]:
        shape = self._require()
        client = self.client()
        last: Any = orjson.loads(after) if after else None
        fetch = min(batch_size, _FETCH)
        while True:
            condition = "" if last is None else f"{shape.key} > {_literal(last)}"
            with translated_milvus("query"):
                rows = client.query(self.collection_name, filter=condition, limit=fetch,
                                    output_fields=["*"])
            keys = [r[shape.key] for r in rows]
            if keys != sorted(keys) or (last is not None and keys and keys[0] <= last):
                raise PermanentError("Milvus returned a page out of primary-key order; reading"
                                     " on could skip records", connector="milvus", operation="read")
            if not rows:
                yield Page([], None)
                return
            for start in range(0, len(rows), batch_size):
                chunk = rows[start:start + batch_size]
                last = chunk[-1][shape.key]
                more = start + batch_size < len(rows) or len(rows) == fetch
                yield Page([_item(shape, dict(r)) for r in chunk],
                           orjson.dumps(last).decode() if more else None)
            if len(rows) < fetch:
                return

    def query(self, vector: Any, k: int, *, namespace: str | None = None,
              vector_name: str = "") -> list[QueryHit]:
        """Milvus's ``search`` on the vector field's index (with the index's own metric),
        filtered on ``namespace``; hits decoded as ``read`` decodes rows."""
        shape = self._require()
        field = next((f for f, n in shape.names.items() if n == vector_name), None)
        if field is None or (namespace is not None and "namespace" not in shape.scalars):
            return []
        where = "" if namespace is None else f"namespace == {_literal(namespace)}"
        with translated_milvus("search"):
            found = self.client().search(
                self.collection_name, data=[np.asarray(vector, dtype=np.float32).tolist()],
                anns_field=field, limit=k, filter=where,
                output_fields=[f for f in shape.scalars if f != shape.key])
        hits: list[QueryHit] = []
        for hit in found[0] if found else []:
            row = dict(hit.get("entity") or {})
            row[shape.key] = hit["id"]
            item = _item(shape, row)
            if isinstance(item, MemoryRecord):
                hits.append(QueryHit(item.id, float(hit["distance"]), item.namespace))
        return hits

    def open_writer(self, *, resume: dict[str, Any] | None = None, dry_run: bool = False,
                    spaces: dict[str, VectorSpace] | None = None) -> Writer:
        return MilvusWriter(self, dry_run=dry_run, spaces=spaces or {})

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _literal(value: Any) -> str:
    """A key as a literal of Milvus's filter grammar, in single quotes. Milvus decodes only a
    backslash before a backslash or a quote (JSON's escapes for a tab or "é" stay as written
    and match nothing), and its lexer refuses a raw line break: vexchange's own keys never hold
    one (see ``_store_key``); a foreign key that does cannot be named in a filter at all."""
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if "\n" in text or "\r" in text:
        raise PermanentError(f"the key {text!r:.80} holds a line break, which Milvus's filter"
                             " expressions cannot spell, so reading cannot page past it",
                             connector="milvus", operation="read")
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


_KEY_PREFIX = "vex-hex:"
_UNSAFE_KEY = re.compile(r"[\x00-\x1f\x7f'\"\\]")


def _store_key(record_id: str) -> str:
    """The primary key Milvus keeps for an id. An id with a quote, a backslash or a control
    character is kept as ``vex-hex:`` and its UTF-8 bytes in hex (the id itself goes to
    ``vex``): Milvus's expression lexer cannot spell a line break at all, and Milvus Lite's
    upsert and pymilvus's delete by ids build expressions without escaping, so ``O'Brien``
    failed with "internal error" or was silently not deleted. Ids that start with the prefix
    are encoded too, so no two ids share a key."""
    if _UNSAFE_KEY.search(record_id) is None and not record_id.startswith(_KEY_PREFIX):
        return record_id
    return _KEY_PREFIX + record_id.encode().hex()


def _classify_milvus(err: BaseException) -> Verdict | None:
    """Unreachable servers and timeouts are transient; schema and auth errors are not."""
    if not isinstance(err, MilvusException):
        return None
    text = str(getattr(err, "message", "") or err).lower()
    if any(word in text for word in ("unavailable", "fail connecting", "timeout", "deadline",
                                     "connection")):
        return ("transient", None)
    return ("permanent", "check the Milvus location, collection and VEX_MILVUS_TOKEN")


def translated_milvus(operation: str) -> Any:
    return translated("milvus", operation, classify=_classify_milvus)


def _item(shape: _Collection, row: dict[str, Any]) -> MemoryRecord | Reject:
    raw_id = row.pop(shape.key)
    vectors = {shape.names[f]: np.asarray(row.pop(f), dtype="<f4").tobytes()
               for f in shape.vector_dims if row.get(f) is not None}
    try:
        if shape.own:
            vex = loads_exact("".join(row.get("vex") or []) or "{}")
            payload = dict(row.get("metadata") or {})
            namespace = None if vex.pop(_NO_NAMESPACE, False) else row.get("namespace")
            pieces = row.get("text") or []
            payload["_vex"] = vex
            record = _LAYOUT.unpack(payload, store_id=str(raw_id), vectors=vectors,
                                    namespace=namespace)
            return record.replace(text="".join(pieces)) if pieces else record
        text = row.pop("text", None)
        namespace = row.pop("namespace", None)
        record = _LAYOUT.unpack(row, store_id=str(raw_id), vectors=vectors,
                                namespace=namespace if isinstance(namespace, str) else None,
                                id_type="int" if shape.key_is_int else "str")
        return record.replace(text=text) if isinstance(text, str) else record
    except (ValueError, orjson.JSONDecodeError) as err:
        return Reject(reason="bad_row", detail=str(err), id=str(raw_id))


class MilvusWriter(StoreWriter):
    def __init__(self, store: MilvusConnector, *, dry_run: bool,
                 spaces: dict[str, VectorSpace]) -> None:
        super().__init__(store, dry_run=dry_run, spaces=spaces, metrics=_METRICS)
        self.shape = store.shape()
        self._sender: _ColumnSender | _PublicSender | None = None  # chosen at the first write
        if self.shape is not None and not self.shape.own:
            raise UsageError(f"collection {store.collection_name!r} was not created by vexchange;"
                             " writing into it could break its schema",
                             hint="choose a new collection name")

    def target_dims(self) -> dict[str, int]:
        return {n: s.dims for n, s in self.shape.spaces().items() if s.dims} if self.shape else {}

    def vector_spaces(self) -> dict[str, VectorSpace]:
        return self.shape.spaces() if self.shape else {}

    def create(self, batch: list[MemoryRecord]) -> None:
        wanted = self.spaces_to_create(batch)
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        for name, params in _OWN_FIELDS.items():
            schema.add_field(name, **params)
        index = MilvusClient.prepare_index_params()
        for name in sorted(wanted):
            field = "vector" if name == "" else f"vector_{name}"
            schema.add_field(field, DataType.FLOAT_VECTOR, dim=wanted[name].dims)
            metric = metric_for("milvus", wanted[name].metric, _METRICS)
            index.add_index(field, index_type="AUTOINDEX", metric_type=metric)
        client = self.store.client()
        with translated_milvus("create collection"):
            client.create_collection(self.store.collection_name, schema=schema, index_params=index,
                                     properties={"vexchange": "1"})
        self.shape = self.store.shape()

    def created(self) -> bool:
        return self.shape is not None

    def store_id(self, record: MemoryRecord) -> str:
        return _store_key(record.id)

    def namespaces_of(self, ids: list[Any]) -> dict[Any, str | None]:
        listed = ", ".join(_literal(i) for i in ids)
        with translated_milvus("query"):
            rows = self.store.client().query(self.store.collection_name, filter=f"id in [{listed}]",
                                             output_fields=["namespace", "vex"],
                                             consistency_level="Strong")
        held: dict[Any, str | None] = {}
        for row in rows:
            vex = loads_exact("".join(row.get("vex") or []) or "{}")
            held[row["id"]] = None if vex.get(_NO_NAMESPACE) else row.get("namespace")
        return held

    def upsert(self, rows: list[tuple[Any, MemoryRecord]]) -> list[Reject]:
        assert self.shape is not None
        fields_of = {n: f for f, n in self.shape.names.items()}
        rejects: list[Reject] = []
        data: list[dict[str, Any]] = []
        for key, record in rows:
            problem = _refusal(key, record, fields_of)
            if problem is None:
                payload = _LAYOUT.pack(record, store_id=key)
                vex = payload.pop("_vex")
                if record.namespace is None:
                    vex[_NO_NAMESPACE] = True
                text_pieces = _pieces(record.text) if record.text is not None else []
                vex_pieces = _pieces(dumps_exact(vex))
                if max(len(text_pieces), len(vex_pieces)) > _MAX_PIECES:
                    problem = ("too_large", "text or fields beyond 256 MB do not fit a Milvus row")
            if problem is not None:
                rejects.append(Reject(reason=problem[0], detail=problem[1], id=record.id,
                                      namespace=record.namespace))
                continue
            row = {"id": key, "namespace": record.namespace or "", "text": text_pieces,
                   "metadata": payload, "vex": vex_pieces, "created_at": record.created_at or 0,
                   "updated_at": record.updated_at or 0}
            for name, vec in record.vectors.items():
                row[fields_of[name]] = vec.data
            data.append(row)
        # ids the store already holds are upserted (Milvus upsert is a delete plus an insert);
        # the others, usually all of them, take the cheaper insert. A retried batch finds its
        # own rows held and upserts them, so nothing is ever written twice.
        fresh = [row for row in data if row["id"] not in self.held_ids]
        again = [row for row in data if row["id"] in self.held_ids]
        with translated_milvus("upsert"):
            if self._sender is None:
                client = self.store.client()
                self._sender = _ColumnSender.for_client(client) or _PublicSender(client)
            for part, replace in ((fresh, False), (again, True)):
                if part:
                    self._sender.send(self.store.collection_name, part, self.shape.vector_dims,
                                      replace=replace)
        return rejects


def _refusal(key: str, record: MemoryRecord, fields_of: dict[str, str]) -> tuple[str, str] | None:
    unknown = [n for n in record.vectors if n not in fields_of]
    if unknown:
        return "unknown_vector", f"the collection has no field for vector {unknown[0]!r}"
    missing = [n for n in fields_of if n not in record.vectors]
    if missing:
        return "missing_vector", (f"Milvus needs every vector field; this record has no vector"
                                  f" {missing[0]!r}")
    if len(key.encode()) > _PIECE:
        spelled = "" if key == record.id else (
            " (this id is kept in hex: it has a quote, backslash or control character)")
        return "id_too_long", f"Milvus keys hold at most 65,535 bytes{spelled}"
    return None


class _ColumnSender:
    """Sends a batch of rows to a collection vexchange created, as one insert or upsert request
    built column by column.

    Why: pymilvus packs a row-based insert one value at a time in Python, about 160 µs a row of
    this schema on the project's machine, 52 µs of it for a 384-dim vector (a protobuf repeated
    float takes one Python float at a time); that made vexchange's import 0.6 of a native
    script's with half the fields. Here each scalar column is extended in one call, and each
    vector column is parsed from the float32 bytes the records already hold: on the wire a packed
    repeated float is exactly those little-endian bytes, so the values are bit-exact.

    It uses pymilvus's generated protobuf classes, its connection's gRPC stub and the call
    metadata pymilvus 3 sends (database name, request id), which are not public API. When any of
    them is missing (another pymilvus), :meth:`for_client` gives None and the public
    ``insert``/``upsert`` are used: slower, same rows.
    """

    def __init__(self, client: MilvusClient) -> None:
        from pymilvus.client.call_context import _api_level_md
        from pymilvus.grpc_gen import milvus_pb2

        self.stub = client._get_connection()._stub
        self.metadata_of = _api_level_md
        self.context = client._generate_call_context
        self.requests = {False: milvus_pb2.InsertRequest, True: milvus_pb2.UpsertRequest}
        self.calls = {False: self.stub.Insert, True: self.stub.Upsert}

    @classmethod
    def for_client(cls, client: MilvusClient) -> _ColumnSender | None:
        try:
            return cls(client)
        except (ImportError, AttributeError):
            return None

    def send(self, collection: str, rows: list[dict[str, Any]], vector_dims: dict[str, int], *,
             replace: bool) -> None:
        import grpc

        request = self.requests[replace](collection_name=collection, num_rows=len(rows))
        for name, params in _OWN_FIELDS.items():
            kind = params["datatype"]
            column = request.fields_data.add(field_name=name, type=kind)
            values = [row[name] for row in rows]
            if kind == DataType.VARCHAR:
                column.scalars.string_data.data.extend(values)
            elif kind == DataType.INT64:
                column.scalars.long_data.data.extend(values)
            elif kind == DataType.JSON:
                column.scalars.json_data.data.extend([dumps_exact(v).encode() for v in values])
            else:  # an ARRAY of VARCHAR pieces
                pieces = column.scalars.array_data
                pieces.element_type = params["element_type"]
                for value in values:
                    pieces.data.add().string_data.data.extend(value)
        for name, dims in vector_dims.items():
            column = request.fields_data.add(field_name=name, type=DataType.FLOAT_VECTOR)
            column.vectors.dim = dims
            packed = b"".join([row[name] for row in rows])
            column.vectors.float_vector.MergeFromString(b"\x0a" + _varint(len(packed)) + packed)
        try:
            response = self.calls[replace](request, timeout=_CALL_TIMEOUT_S,
                                           metadata=self.metadata_of(self.context()))
        except grpc.RpcError as err:  # what pymilvus's own calls turn into MilvusException
            raise MilvusException(message=f"{err.code().name}: {err.details()}") from None
        status = response.status
        if status.code != 0 or status.error_code != 0:
            raise MilvusException(code=status.code or status.error_code, message=status.reason)


class _PublicSender:
    """pymilvus's public ``insert`` and ``upsert``: the fallback for :class:`_ColumnSender`."""

    def __init__(self, client: MilvusClient) -> None:
        self.client = client

    def send(self, collection: str, rows: list[dict[str, Any]], vector_dims: dict[str, int], *,
             replace: bool) -> None:
        # pymilvus wants vectors as float32 arrays, not bytes
        rows = [{**row, **{f: np.frombuffer(row[f], dtype="<f4") for f in vector_dims}} for row in rows]
        (self.client.upsert if replace else self.client.insert)(collection, rows)


def _varint(value: int) -> bytes:
    """Protobuf's base-128 length prefix."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
