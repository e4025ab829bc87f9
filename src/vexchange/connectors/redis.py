"""``redis``: Redis hashes indexed by RediSearch (Redis 8, Redis Stack, Valkey + the module).
docs/connectors/redis.md.

URL form::

    redis://host:6379/0?index=memories           (password: VEX_REDIS_PASSWORD; ?user=NAME)
    redis://:password@host:6379/0, redis://user:password@host:6379/0
    (a URL's password beats VEX_REDIS_PASSWORD; given also as --*-secret password=, the two
    must be the same)

One hash per record at ``<prefix><id>`` (prefix ``<index>:`` unless ``?prefix=`` says
otherwise). Fields: ``id``, ``namespace`` (TAG), ``text`` (TEXT), ``vector`` and
``vector_<name>`` (float32 little-endian bytes, so vectors are bit-exact), ``metadata`` and
``_vex`` (JSON text), ``created_at``/``updated_at`` (NUMERIC, epoch ms). A missing index is
created with the source's dims and metric (HNSW). Each batch is one MULTI/EXEC transaction that
replaces each record's hash, so fields a record no longer has do not linger.

Reading walks the keys with SCAN (a stateless cursor, so a run can resume); hashes written by
other tools are read too: every VECTOR attribute of the index is a vector, other fields become
metadata.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import redis

from .._json import dumps_exact, loads_exact
from ..errors import UsageError
from ..record import MemoryRecord
from ..spec import StoreSpec
from ._base import Capabilities, Connector, Page, QueryHit, Reject, VectorSpace, Writer
from ._payload import PayloadLayout, json_exact
from ._store import StoreWriter, Verdict, metric_for, metric_from, translated

__all__ = ["RedisConnector"]

_METRICS = {"cosine": "COSINE", "dot": "IP", "euclidean": "L2"}
_LAYOUT = PayloadLayout("redis", text_key=None, namespace_key=None, native=json_exact, vex_as_text=True)
_TAG_SEPARATOR = "\x1f"
"""The namespace TAG's separator: the unit separator, not the default ",", so a namespace with
a comma is one tag, not two; with CASESENSITIVE, ``@namespace:{Docs}`` does not match "docs"."""


class _Index:
    """An index's vector attributes (from FT.INFO) and vexchange's note of their names."""

    def __init__(self, info: dict[str, Any] | None, note: dict[str, Any] | None) -> None:
        self.exists = info is not None
        self.fields: dict[str, VectorSpace] = {}
        for attr in (info or {}).get("attributes", []):
            pairs = dict(zip(attr[::2], attr[1::2], strict=False))
            if _text(pairs.get("type")) == "VECTOR":
                self.fields[_text(pairs["attribute"])] = VectorSpace(
                    dims=int(pairs["dim"]), metric=metric_from(_METRICS, _text(pairs.get("distance_metric"))))
        self.own = note is not None
        if note is not None:
            self.names: dict[str, str] = {f: n for n, f in note["vectors"].items()}
        elif len(self.fields) == 1:
            self.names = {next(iter(self.fields)): ""}
        else:
            self.names = {f: ("" if f == "vector" else f) for f in self.fields}

    def spaces(self) -> dict[str, VectorSpace]:
        return {self.names[f]: s for f, s in self.fields.items()}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisConnector(Connector):
    name = "redis"
    url_options = frozenset({'index', 'prefix', 'user'})
    url_userinfo = "user"
    extra = "redis"
    capabilities = Capabilities(read=True, write=True, named_vectors=True, fixed_dims=True)

    def __init__(self, spec: StoreSpec) -> None:
        super().__init__(spec)
        if not spec.host:
            raise UsageError("redis needs a server: redis://host:6379/0?index=NAME")
        self.db_number = _db_number(spec)
        self.index = spec.params.get("index", "memories")
        self.prefix = spec.params.get("prefix", f"{self.index}:")
        self.note_key = f"vexchange:index:{self.index}"
        self._client: Any = None  # redis.Redis; its partial types add nothing here

    @property
    def user(self) -> str | None:
        """The ACL user: the URL's (``redis://alice:pw@host``), else ``?user=``, else Redis's default."""
        return self.spec.user or self.spec.params.get("user")

    def describe(self) -> dict[str, Any]:
        user = f"{self.user}@" if self.user else ""
        return {"connector": "redis", "location": f"redis://{user}{self.spec.host}:"
                f"{self.spec.port or 6379}/{self.db_number}#{self.index}"}

    def client(self) -> Any:
        if self._client is None:
            self._client = redis.Redis(
                host=self.spec.host or "127.0.0.1", port=self.spec.port or 6379, db=self.db_number,
                username=self.user, password=self.spec.secret("password"),
                socket_timeout=30, socket_connect_timeout=10)
            with translated_redis("connect"):
                self._client.ping()
        return self._client

    def describe_index(self) -> _Index:
        client = self.client()
        with translated_redis("describe"):
            try:
                info = client.ft(self.index).info()
            except redis.ResponseError as err:
                if "unknown index" not in str(err).lower() and "no such index" not in str(err).lower():
                    raise
                info = None
            note = client.get(self.note_key)
        return _Index(info, loads_exact(note) if note else None)

    def _require(self) -> _Index:
        index = self.describe_index()
        if not index.exists:
            raise UsageError(f"Redis has no search index {self.index!r} at {self.describe()['location']}")
        return index

    def count(self) -> int | None:
        self._require()
        with translated_redis("count"):
            return int(self.client().ft(self.index).info()["num_docs"])

    def vector_spaces(self) -> dict[str, VectorSpace]:
        return self._require().spaces()

    def read(self, *, batch_size: int, after: str | None = None) -> Iterator[Page]:
        index = self._require()
        client = self.client()
        cursor = int(after) if after else 0
        pattern = _escape_glob(self.prefix) + "*"
        while True:
            keys: list[bytes] = []
            with translated_redis("scan"):
                while len(keys) < batch_size:
                    cursor, found = client.scan(cursor, match=pattern, count=batch_size)
                    keys.extend(found)
                    if cursor == 0:
                        break
                pipe = client.pipeline(transaction=False)
                for key in keys:
                    pipe.hgetall(key)
                hashes = [_hash_or_none(got) for got in pipe.execute(raise_on_error=False)]
            items = [self._item(index, key, fields)
                     for key, fields in zip(keys, hashes, strict=False) if fields]
            yield Page(items, str(cursor) if cursor else None)
            if cursor == 0:
                return

    def _item(self, index: _Index, key: bytes, fields: dict[bytes, bytes]) -> MemoryRecord | Reject:
        store_id = key.decode("utf-8", "replace")[len(self.prefix):]
        try:
            vectors: dict[str, bytes] = {}
            for field, name in index.names.items():
                blob = fields.pop(field.encode(), None)
                if blob is not None:
                    if len(blob) != 4 * (index.fields[field].dims or 0):
                        raise ValueError(f"field {field!r} holds {len(blob)} bytes, not"
                                         f" {index.fields[field].dims} float32 values")
                    vectors[name] = bytes(blob)
            if index.own:
                meta = fields.get(b"metadata")
                payload = loads_exact(meta) if meta else {}
                payload["_vex"] = fields.get(b"_vex", b"").decode() or None
                store_id = fields[b"id"].decode()
            else:
                payload = {k.decode(): v.decode() for k, v in fields.items()
                           if k not in (b"namespace", b"text")}
            namespace = fields.get(b"namespace")
            record = _LAYOUT.unpack(payload, store_id=store_id, vectors=vectors,
                                    namespace=None if namespace is None else namespace.decode())
        except (ValueError, UnicodeDecodeError, KeyError) as err:
            return Reject(reason="bad_hash", detail=str(err), id=store_id,
                          location=f"{self.describe()['location']} key {key!r}")
        text = fields.get(b"text")
        return record if text is None else record.replace(text=text.decode())

    def query(self, vector: Any, k: int, *, namespace: str | None = None,
              vector_name: str = "") -> list[QueryHit]:
        """A KNN query (``FT.SEARCH ... =>[KNN k @field $q]``, dialect 2) on the field's HNSW or
        FLAT index, filtered on the ``namespace`` TAG; each hit's hash read and decoded as
        ``read`` decodes it."""
        index = self._require()
        field = next((f for f, n in index.names.items() if n == vector_name), None)
        if field is None:
            return []
        where = "*" if namespace is None else "(@namespace:{" + _escape_tag(namespace) + "})"
        blob = np.asarray(vector, dtype="<f4").tobytes()
        client = self.client()
        with translated_redis("search"):
            got = client.execute_command(
                "FT.SEARCH", self.index, f"{where}=>[KNN {int(k)} @{field} $q AS vex_score]",
                "PARAMS", "2", "q", blob, "SORTBY", "vex_score", "ASC", "RETURN", "1", "vex_score",
                "LIMIT", "0", str(int(k)), "DIALECT", "2")
            keys, scores = _knn_hits(got)
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.hgetall(key)
            hashes = [_hash_or_none(h) for h in pipe.execute(raise_on_error=False)]
        hits: list[QueryHit] = []
        for key, fields, score in zip(keys, hashes, scores, strict=False):
            item = self._item(index, key, fields) if fields else None
            if isinstance(item, MemoryRecord):
                hits.append(QueryHit(item.id, score, item.namespace))
        return hits

    def open_writer(self, *, resume: dict[str, Any] | None = None, dry_run: bool = False,
                    spaces: dict[str, VectorSpace] | None = None) -> Writer:
        return RedisWriter(self, dry_run=dry_run, spaces=spaces or {})

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _db_number(spec: StoreSpec) -> int:
    """The database number the URL's path names (``/0`` when none): a UsageError, not a
    traceback, for a path that is not one."""
    text = (spec.path or "/0").strip("/") or "0"
    if not text.isdigit():
        raise UsageError(f"redis: the path names a database number, not {text!r}"
                         f" ({spec.redacted()})", hint="redis://host:6379/0?index=NAME")
    return int(text)


def _hash_or_none(got: Any) -> Any:
    """A hash's fields, or None for a key under the prefix that holds no hash (vexchange's note
    of the index when its name makes the prefix cover it, another tool's string): the index
    does not hold those either. Any other error is raised."""
    if isinstance(got, redis.ResponseError):
        if str(got).startswith("WRONGTYPE"):
            return None
        raise got
    return got


def _knn_hits(got: Any) -> tuple[list[bytes], list[float]]:
    """Keys and scores of an FT.SEARCH reply: a RESP3 map (``results``, each with ``id`` and
    ``extra_attributes``) or a RESP2 list (total, key, fields, key, fields, ...)."""
    if isinstance(got, dict):
        rows = got.get(b"results", got.get("results")) or []
        keys = [_bytes(row.get(b"id", row.get("id"))) for row in rows]
        extra = [row.get(b"extra_attributes", row.get("extra_attributes")) or {} for row in rows]
        return keys, [float(e.get(b"vex_score", e.get("vex_score", 0))) for e in extra]
    fields = [dict(zip(f[::2], f[1::2], strict=False)) for f in got[2::2]]
    return [_bytes(k) for k in got[1::2]], [float(f.get(b"vex_score", 0)) for f in fields]


def _bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def _escape_tag(text: str) -> str:
    """A namespace as a TAG query value: every character but letters and digits escaped, as
    RediSearch's query syntax asks (a space, a comma, a brace or a dash is syntax there)."""
    return "".join(c if c.isalnum() else "\\" + c for c in text)


def _escape_glob(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _classify_redis(err: BaseException) -> Verdict | None:
    """Connection trouble and timeouts are transient; a refused login or a bad command is not."""
    if not isinstance(err, redis.RedisError):
        return None
    if isinstance(err, redis.AuthenticationError) or "NOAUTH" in str(err) or "WRONGPASS" in str(err):
        return ("permanent", "check the user and password (in the URL, --*-secret password=..."
                " or VEX_REDIS_PASSWORD)")
    if isinstance(err, (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)):
        return ("transient", None)
    return ("permanent", "is the RediSearch module loaded?")


def translated_redis(operation: str) -> Any:
    return translated("redis", operation, classify=_classify_redis)


class RedisWriter(StoreWriter):
    def __init__(self, store: RedisConnector, *, dry_run: bool,
                 spaces: dict[str, VectorSpace]) -> None:
        super().__init__(store, dry_run=dry_run, spaces=spaces, metrics=_METRICS)
        self.index = store.describe_index()
        if self.index.exists and not self.index.own:
            raise UsageError(f"index {store.index!r} was not created by vexchange; writing"
                             " hashes for it could break its schema",
                             hint="choose a new index with ?index=NAME")

    def target_dims(self) -> dict[str, int]:
        return {n: s.dims for n, s in self.index.spaces().items() if s.dims}

    def vector_spaces(self) -> dict[str, VectorSpace]:
        return self.index.spaces()

    def create(self, batch: list[MemoryRecord]) -> None:
        wanted = self.spaces_to_create(batch)
        fields = {name: ("vector" if name == "" else f"vector_{name}") for name in sorted(wanted)}
        schema: list[Any] = ["namespace", "TAG", "SEPARATOR", _TAG_SEPARATOR, "CASESENSITIVE",
                             "text", "TEXT", "created_at", "NUMERIC"]
        for name, field in fields.items():
            metric = metric_for("redis", wanted[name].metric, _METRICS)
            schema += [field, "VECTOR", "HNSW", "6", "TYPE", "FLOAT32", "DIM", str(wanted[name].dims),
                       "DISTANCE_METRIC", metric]
        client = self.store.client()
        with translated_redis("create index"):
            client.set(self.store.note_key, dumps_exact({"vexchange": 1, "vectors": fields}))
            client.execute_command("FT.CREATE", self.store.index, "ON", "HASH", "PREFIX", "1",
                                   self.store.prefix, "SCHEMA", *schema)
        self.index = self.store.describe_index()

    def created(self) -> bool:
        return self.index.exists

    def store_id(self, record: MemoryRecord) -> str:
        return record.id

    def namespaces_of(self, ids: list[Any]) -> dict[Any, str | None]:
        ids = [rid for rid in ids if self.store.prefix + rid != self.store.note_key]  # refused
        if not ids:
            return {}
        pipe = self.store.client().pipeline(transaction=False)
        for rid in ids:
            pipe.hmget(self.store.prefix + rid, ["id", "namespace"])
        with translated_redis("read"):
            found = pipe.execute()
        return {rid: (ns.decode() if ns is not None else None)
                for rid, (held, ns) in zip(ids, found, strict=False) if held is not None}

    def upsert(self, rows: list[tuple[Any, MemoryRecord]]) -> list[Reject]:
        fields_of = {n: f for f, n in self.index.names.items()}
        rejects: list[Reject] = []
        pipe = self.store.client().pipeline(transaction=True)
        for key, record in rows:
            unknown = [n for n in record.vectors if n not in fields_of]
            if unknown:
                rejects.append(Reject(reason="unknown_vector", id=record.id, namespace=record.namespace,
                                      detail=f"the index has no field for vector {unknown[0]!r}"))
                continue
            redis_key = self.store.prefix + key
            if redis_key == self.store.note_key:
                rejects.append(Reject(
                    reason="id_reserved", id=record.id, namespace=record.namespace,
                    detail=f"its key {redis_key!r} is where vexchange notes the index's vector"
                           " fields; choose another ?prefix= to hold it"))
                continue
            payload = _LAYOUT.pack(record)
            mapping: dict[str, Any] = {"id": record.id, "_vex": payload.pop("_vex")}
            if record.metadata is not None:
                mapping["metadata"] = dumps_exact(payload)
            if record.namespace is not None:
                mapping["namespace"] = record.namespace
            if record.text is not None:
                mapping["text"] = record.text
            if record.created_at is not None:
                mapping["created_at"] = record.created_at
            if record.updated_at is not None:
                mapping["updated_at"] = record.updated_at
            for name, vec in record.vectors.items():
                mapping[fields_of[name]] = vec.data
            if key in self.held_ids:  # a hash the store holds: its old fields go first
                pipe.delete(redis_key)
            pipe.hset(redis_key, mapping=mapping)
        with translated_redis("upsert"):
            pipe.execute()
        return rejects

