"""Each store connector against the store's own best bulk path, in the same run.

    python bench/stores.py                      # 100k records of 384 dims, every store
    python bench/stores.py --records 20000 --stores pgvector,redis

For every store, four timed steps, each in a fresh process (peak RSS from VmHWM):

* import with vexchange: ``vexchange.import_(file, store)``;
* import, native: the same .vmig.jsonl file read line by line with orjson and written with the
  store's fastest bulk call through its own client (Chroma ``add`` at its max batch size, Qdrant
  Edge ``upsert_points``, pgvector binary ``COPY``, LanceDB ``add`` of Arrow tables, Milvus
  ``insert``, Redis pipelined ``HSET``), into a collection of the same shape;
* export with vexchange: ``vexchange.export(store, file)``;
* export, native: the store's fastest full read (``get`` pages, ``scroll``, a binary server-side
  cursor, ``to_batches``, ``query_iterator``, ``SCAN`` + pipelined ``HGETALL``), written as JSON
  lines with orjson.

Both import paths start from the same file, so both pay for reading it; the native paths skip
what vexchange adds (checks, digests, rejects, receipts, id and namespace handling), which is
what the ratio measures. Results are printed as Markdown and appended to bench/out/stores.jsonl.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson

import run  # bench/run.py: the shared fresh-process measurement

BATCH = 1000


def batches(path: str, size: int = 1000) -> Iterator[list[dict[str, Any]]]:
    out: list[dict[str, Any]] = []
    with open(path, "rb") as handle:
        for line in handle:
            out.append(orjson.loads(line))
            if len(out) == size:
                yield out
                out = []
    if out:
        yield out


def write_lines(path: str, rows: Iterator[tuple[str, list[float] | np.ndarray, str | None]]) -> int:
    n = 0
    with open(path, "wb") as out:
        for rid, vec, text in rows:
            out.write(orjson.dumps({"id": rid, "vector": vec, "text": text},
                                   option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE))
            n += 1
    return n


# ----------------------------------------------------------------------------- native imports


def native_import(store: str, file: str, where: dict[str, Any]) -> None:
    dims = len(next(batches(file))[0]["vector"])
    if store == "chroma":
        import chromadb

        client = chromadb.PersistentClient(path=where["path"])
        col = client.get_or_create_collection("native", metadata={"hnsw:space": "cosine"},
                                              embedding_function=None)
        size = client.get_max_batch_size()
        pending: list[dict[str, Any]] = []
        for batch in batches(file):
            pending.extend(batch)
            while len(pending) >= size:
                chunk, pending = pending[:size], pending[size:]
                col.add(ids=[r["id"] for r in chunk],
                        embeddings=np.array([r["vector"] for r in chunk], dtype=np.float32),
                        documents=[r["text"] for r in chunk],
                        metadatas=[r["metadata"] or {"_": 0} for r in chunk])
        if pending:
            col.add(ids=[r["id"] for r in pending],
                    embeddings=np.array([r["vector"] for r in pending], dtype=np.float32),
                    documents=[r["text"] for r in pending],
                    metadatas=[r["metadata"] or {"_": 0} for r in pending])
    elif store == "qdrant-edge":
        import uuid

        import qdrant_edge as qe

        Path(where["path"]).mkdir(parents=True, exist_ok=True)
        shard = qe.EdgeShard.create(where["path"], qe.EdgeConfig(
            vectors={"": qe.EdgeVectorParams(size=dims, distance=qe.Distance.Cosine)}))
        for batch in batches(file):
            shard.update(qe.UpdateOperation.upsert_points([
                qe.Point(id=str(uuid.uuid5(uuid.NAMESPACE_URL, r["id"])), vector={"": r["vector"]},
                         payload={"text": r["text"], **(r["metadata"] or {})}) for r in batch]))
        shard.flush()
        shard.close()
    elif store == "pgvector":
        import psycopg
        from pgvector.psycopg import register_vector
        from psycopg.types.json import Jsonb

        with psycopg.connect(where["dsn"], autocommit=True) as conn:
            register_vector(conn)
            conn.execute(f"CREATE TABLE native (id text PRIMARY KEY, text text, embedding vector({dims}),"
                         " metadata jsonb)")
            with conn.cursor() as cur, cur.copy(
                    "COPY native (id, text, embedding, metadata) FROM STDIN WITH (FORMAT BINARY)") as copy:
                copy.set_types(["text", "text", "vector", "jsonb"])
                for batch in batches(file):
                    for r in batch:
                        copy.write_row([r["id"], r["text"], np.asarray(r["vector"], dtype=np.float32),
                                        Jsonb(r["metadata"])])
            conn.execute("SET maintenance_work_mem = '256MB'")  # index after loading, as pgvector advises
            conn.execute("CREATE INDEX ON native USING hnsw (embedding vector_cosine_ops)")
    elif store == "lancedb":
        import lancedb
        import pyarrow as pa

        db = lancedb.connect(where["path"])
        schema = pa.schema([("id", pa.string()), ("text", pa.string()),
                            ("vector", pa.list_(pa.float32(), dims)), ("metadata", pa.string())])
        table = db.create_table("native", schema=schema)
        for batch in batches(file):
            flat = np.array([r["vector"] for r in batch], dtype=np.float32).ravel()
            table.add(pa.table({"id": [r["id"] for r in batch], "text": [r["text"] for r in batch],
                                "vector": pa.FixedSizeListArray.from_arrays(pa.array(flat), dims),
                                "metadata": [orjson.dumps(r["metadata"]).decode() for r in batch]},
                               schema=schema))
    elif store == "milvus":
        from pymilvus import DataType, MilvusClient

        client = MilvusClient(uri=where["uri"])
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.VARCHAR, max_length=65535, is_primary=True)
        schema.add_field("text", DataType.VARCHAR, max_length=65535)
        schema.add_field("metadata", DataType.JSON)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dims)
        index = MilvusClient.prepare_index_params()
        index.add_index("vector", index_type="AUTOINDEX", metric_type="COSINE")
        client.create_collection("native", schema=schema, index_params=index)
        for batch in batches(file, 100):  # Milvus Lite's fastest call size (see milvus.py)
            client.insert("native", [{"id": r["id"], "text": (r["text"] or "")[:16000],
                                      "metadata": r["metadata"] or {},
                                      "vector": np.asarray(r["vector"], dtype=np.float32)} for r in batch])
        client.close()
    elif store == "redis":
        import redis

        client = redis.Redis.from_url(where["url"])
        client.execute_command("FT.CREATE", "native", "ON", "HASH", "PREFIX", "1", "native:", "SCHEMA",
                               "text", "TEXT", "vector", "VECTOR", "HNSW", "6", "TYPE", "FLOAT32",
                               "DIM", str(dims), "DISTANCE_METRIC", "COSINE")
        for batch in batches(file):
            pipe = client.pipeline(transaction=False)
            for r in batch:
                pipe.hset(f"native:{r['id']}", mapping={
                    "text": r["text"] or "", "metadata": orjson.dumps(r["metadata"]),
                    "vector": np.asarray(r["vector"], dtype="<f4").tobytes()})
            pipe.execute()
    else:
        raise SystemExit(f"no native path for {store}")


# ----------------------------------------------------------------------------- native exports


def native_export(store: str, out: str, where: dict[str, Any]) -> None:
    if store == "chroma":
        import chromadb

        col = chromadb.PersistentClient(path=where["path"]).get_collection("native", embedding_function=None)

        def rows() -> Iterator[Any]:
            offset = 0
            while True:
                got = col.get(include=["embeddings", "documents"], limit=5000, offset=offset)
                for rid, vec, doc in zip(got["ids"], got["embeddings"], got["documents"], strict=False):
                    yield rid, np.asarray(vec, dtype=np.float32), doc
                if len(got["ids"]) < 5000:
                    return
                offset += 5000
    elif store == "qdrant-edge":
        import qdrant_edge as qe

        shard = qe.EdgeShard.load(where["path"])

        def rows() -> Iterator[Any]:
            offset = None
            while True:
                points, offset = shard.scroll(qe.ScrollRequest(offset=offset, limit=BATCH,
                                                               with_vector=True, with_payload=True))
                for p in points:
                    yield str(p.id), p.vector, (p.payload or {}).get("text")
                if offset is None:
                    return
    elif store == "pgvector":
        import psycopg
        from pgvector.psycopg import register_vector

        conn = psycopg.connect(where["dsn"])
        register_vector(conn)

        def rows() -> Iterator[Any]:
            with conn.cursor(name="dump", binary=True) as cur:
                cur.itersize = BATCH
                cur.execute("SELECT id, embedding, text FROM native")
                for rid, vec, text in cur:
                    yield rid, vec.to_numpy(), text
    elif store == "lancedb":
        import lancedb

        table = lancedb.connect(where["path"]).open_table("native")

        def rows() -> Iterator[Any]:
            data = table.to_arrow()
            vecs = data.column("vector").combine_chunks()
            flat = vecs.values.to_numpy().reshape(len(data), -1)
            yield from zip(data.column("id").to_pylist(), flat, data.column("text").to_pylist(), strict=False)
    elif store == "milvus":
        from pymilvus import MilvusClient

        client = MilvusClient(uri=where["uri"])

        def rows() -> Iterator[Any]:
            it = client.query_iterator("native", batch_size=BATCH, output_fields=["id", "text", "vector"])
            while True:
                got = it.next()
                if not got:
                    it.close()
                    return
                for r in got:
                    yield r["id"], np.asarray(r["vector"], dtype=np.float32), r["text"]
    elif store == "redis":
        import redis

        client = redis.Redis.from_url(where["url"])

        def rows() -> Iterator[Any]:
            cursor = 0
            while True:
                cursor, keys = client.scan(cursor, match="native:*", count=BATCH)
                pipe = client.pipeline(transaction=False)
                for key in keys:
                    pipe.hgetall(key)
                for key, fields in zip(keys, pipe.execute(), strict=False):
                    vector = np.frombuffer(fields[b"vector"], dtype="<f4")
                    yield key.decode()[7:], vector, fields[b"text"].decode()
                if cursor == 0:
                    return
    else:
        raise SystemExit(f"no native path for {store}")
    write_lines(out, rows())


# ----------------------------------------------------------------------------------- harness


def locations(store: str, work: Path, servers: dict[str, Any], tag: str) -> tuple[str, dict[str, Any]]:
    """(vexchange URL, native client settings) for a fresh location of ``store``."""
    if store == "chroma":
        return f"chroma://{work}/chroma-{tag}?collection=vex", {"path": str(work / f"chroma-native-{tag}")}
    if store == "qdrant-edge":
        return f"qdrant-edge://{work}/edge-{tag}", {"path": str(work / f"edge-native-{tag}")}
    if store == "lancedb":
        return f"lancedb://{work}/lance-{tag}?table=vex", {"path": str(work / f"lance-native-{tag}")}
    if store == "pgvector":
        s = servers["postgres"]
        db = f"b{tag}"
        subprocess.run([sys.executable, "-c", (
            "import psycopg\n"
            f"c=psycopg.connect(host='{s.host}', port={s.port}, user='postgres', dbname='postgres',"
            " autocommit=True)\n"
            f"c.execute('CREATE DATABASE {db}')\n"
            f"d=psycopg.connect(host='{s.host}', port={s.port}, user='postgres', dbname='{db}',"
            " autocommit=True)\n"
            "d.execute('CREATE EXTENSION vector')")], check=True)
        return (f"pgvector://{s.host}:{s.port}/{db}?table=vex&user=postgres",
                {"dsn": f"host={s.host} port={s.port} user=postgres dbname={db}"})
    if store == "milvus":
        s = servers["milvus"]
        return f"milvus://{s.host}:{s.port}/vex_{tag}", {"uri": f"http://{s.host}:{s.port}"}
    if store == "redis":
        s = servers["redis"]
        return f"redis://{s.host}:{s.port}/0?index=vex{tag}", {"url": f"redis://{s.host}:{s.port}/0"}
    raise SystemExit(f"unknown store {store}")


def measure(code: str) -> tuple[float, float]:
    return run.measure(code, setup="import sys\nsys.path.insert(0, 'bench')\nimport vexchange, stores")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--dims", type=int, default=384)
    parser.add_argument("--stores", default="chroma,qdrant-edge,pgvector,lancedb,milvus,redis")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the servers are stopped
    from vexchange.testing import servers as srv
    from vexchange.testing.conformance import write_vmig
    from vexchange.testing.records import sample_records

    work = Path(tempfile.mkdtemp(prefix="vex-bench-"))
    work.chmod(0o755)
    Path("bench/out").mkdir(parents=True, exist_ok=True)
    source = work / "source.vmig.jsonl"
    # ordinary records (the edge cases at the start of the sample set would stop the native
    # one-off scripts, which is the point of vexchange but not what this measures)
    records = itertools.islice(sample_records(args.records + 10, dims=args.dims,
                                              null_vectors=False, seed=1), 10, None)
    write_vmig(source, list(records), metric="cosine")
    running = srv.start_all(work / "servers", ("milvus", "redis", "postgres"))
    results = []
    try:
        for store in args.stores.split(","):
            url, native = locations(store, work, running, "a")
            row: dict[str, Any] = {"store": store, "records": args.records, "dims": args.dims}
            row["import_vex_s"], row["import_vex_mb"] = measure(
                f"vexchange.import_({str(source)!r}, {url!r}, receipt={str(work / (store + '.r.json'))!r})")
            row["import_native_s"], row["import_native_mb"] = measure(
                f"stores.native_import({store!r}, {str(source)!r}, {native!r})")
            row["export_vex_s"], row["export_vex_mb"] = measure(
                f"vexchange.export({url!r}, {str(work / (store + '.out.vmig.jsonl'))!r})")
            row["export_native_s"], row["export_native_mb"] = measure(
                f"stores.native_export({store!r}, {str(work / (store + '.native.jsonl'))!r}, {native!r})")
            row["import_ratio"] = round(row["import_native_s"] / row["import_vex_s"], 2)
            row["export_ratio"] = round(row["export_native_s"] / row["export_vex_s"], 2)
            results.append(row)
            print(json.dumps(row), flush=True)
            with open("bench/out/stores.jsonl", "a") as log:
                log.write(json.dumps({**row, "at": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n")
    finally:
        srv.stop_all(running)
        shutil.rmtree(work, ignore_errors=True)
    n = args.records
    print("\n| store | import vexchange rec/s | import native rec/s | ratio | export vexchange rec/s"
          " | export native rec/s | ratio | peak RSS vexchange import / export (MB) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['store']} | {n / r['import_vex_s']:,.0f} | {n / r['import_native_s']:,.0f} |"
              f" {r['import_ratio']} | {n / r['export_vex_s']:,.0f} | {n / r['export_native_s']:,.0f} |"
              f" {r['export_ratio']} | {r['import_vex_mb']:.0f} / {r['export_vex_mb']:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
