"""Each store connector against the store's own best bulk path, in the same run.

    python bench/stores.py                      # 100k records of 384 dims, every store
    python bench/stores.py --records 20000 --stores pgvector,redis
    python bench/stores.py --servers /tmp/stores --workers 1,2,4 --steps import

``--servers DIR`` uses servers already running (``python -m vexchange.testing.servers start
DIR``) instead of starting them; ``--workers 1,2,4`` runs the vexchange import once per worker
count (``workers=N``, docs/engine.md "Parallel runs"), each against the same native script;
``chroma-http`` is Chroma's own server (the ``chroma`` server kind), written over HTTP.

For every store, four timed steps, each in a fresh process (peak RSS from VmHWM, CPU as the
user + system seconds of the finished process and every process it waited for):

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
import os
import resource
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
    if store in ("chroma", "chroma-http"):
        import chromadb

        client = (chromadb.HttpClient(host=where["host"], port=where["port"]) if "host" in where
                  else chromadb.PersistentClient(path=where["path"]))
        col = client.get_or_create_collection(where.get("collection", "native"),
                                              metadata={"hnsw:space": "cosine"}, embedding_function=None)
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
            table = where.get("table", "native")
            conn.execute(f"CREATE TABLE {table} (id text PRIMARY KEY, text text, embedding vector({dims}),"
                         " metadata jsonb)")
            with conn.cursor() as cur, cur.copy(
                    f"COPY {table} (id, text, embedding, metadata) FROM STDIN WITH (FORMAT BINARY)") as copy:
                copy.set_types(["text", "text", "vector", "jsonb"])
                for batch in batches(file):
                    for r in batch:
                        copy.write_row([r["id"], r["text"], np.asarray(r["vector"], dtype=np.float32),
                                        Jsonb(r["metadata"])])
            conn.execute("SET maintenance_work_mem = '256MB'")  # index after loading, as pgvector advises
            conn.execute(f"CREATE INDEX ON {table} USING hnsw (embedding vector_cosine_ops)")
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
        name = where.get("collection", "native")
        client.create_collection(name, schema=schema, index_params=index)
        for batch in batches(file, 100):  # Milvus Lite's fastest call size (see milvus.py)
            client.insert(name, [{"id": r["id"], "text": (r["text"] or "")[:16000],
                                      "metadata": r["metadata"] or {},
                                      "vector": np.asarray(r["vector"], dtype=np.float32)} for r in batch])
        client.close()
    elif store == "redis":
        import redis

        client = redis.Redis.from_url(where["url"])
        name = where.get("index", "native")
        client.execute_command("FT.CREATE", name, "ON", "HASH", "PREFIX", "1", f"{name}:", "SCHEMA",
                               "text", "TEXT", "vector", "VECTOR", "HNSW", "6", "TYPE", "FLOAT32",
                               "DIM", str(dims), "DISTANCE_METRIC", "COSINE")
        for batch in batches(file):
            pipe = client.pipeline(transaction=False)
            for r in batch:
                pipe.hset(f"{name}:{r['id']}", mapping={
                    "text": r["text"] or "", "metadata": orjson.dumps(r["metadata"]),
                    "vector": np.asarray(r["vector"], dtype="<f4").tobytes()})
            pipe.execute()
    else:
        raise SystemExit(f"no native path for {store}")


# ----------------------------------------------------------------------------- native exports


def native_export(store: str, out: str, where: dict[str, Any]) -> None:
    if store in ("chroma", "chroma-http"):
        import chromadb

        client = (chromadb.HttpClient(host=where["host"], port=where["port"]) if "host" in where
                  else chromadb.PersistentClient(path=where["path"]))
        col = client.get_collection(where.get("collection", "native"), embedding_function=None)

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
                cur.execute(f"SELECT id, embedding, text FROM {where.get('table', 'native')}")
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
            it = client.query_iterator(where.get("collection", "native"), batch_size=BATCH,
                                       output_fields=["id", "text", "vector"])
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

        name = where.get("index", "native")

        def rows() -> Iterator[Any]:
            cursor = 0
            while True:
                cursor, keys = client.scan(cursor, match=f"{name}:*", count=BATCH)
                pipe = client.pipeline(transaction=False)
                for key in keys:
                    pipe.hgetall(key)
                for key, fields in zip(keys, pipe.execute(), strict=False):
                    vector = np.frombuffer(fields[b"vector"], dtype="<f4")
                    yield key.decode()[len(name) + 1:], vector, fields[b"text"].decode()
                if cursor == 0:
                    return
    else:
        raise SystemExit(f"no native path for {store}")
    write_lines(out, rows())


# ----------------------------------------------------------------------------------- harness


def locations(store: str, work: Path, servers: dict[str, Any], tag: str,
              shared_db: str | None = None) -> tuple[str, dict[str, Any]]:
    """(vexchange URL, native client settings) for a fresh location of ``store`` (for
    pgvector: a fresh database, or fresh tables in ``shared_db``)."""
    if store == "chroma":
        return f"chroma://{work}/chroma-{tag}?collection=vex", {"path": str(work / f"chroma-native-{tag}")}
    if store == "chroma-http":
        s = servers["chroma"]
        return (f"chroma://{s.host}:{s.port}/vex_{tag}",
                {"host": s.host, "port": s.port, "collection": f"native_{tag}"})
    if store == "qdrant-edge":
        return f"qdrant-edge://{work}/edge-{tag}", {"path": str(work / f"edge-native-{tag}")}
    if store == "lancedb":
        return f"lancedb://{work}/lance-{tag}?table=vex", {"path": str(work / f"lance-native-{tag}")}
    if store == "pgvector" and shared_db:
        s = servers["postgres"]
        return (f"pgvector://{s.host}:{s.port}/{shared_db}?table=vex_{tag}&user=postgres",
                {"dsn": f"host={s.host} port={s.port} user=postgres dbname={shared_db}",
                 "table": f"native_{tag}"})
    if store == "pgvector":
        s = servers["postgres"]
        db = shared_db or f"b{tag}"
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
        return (f"milvus://{s.host}:{s.port}/vex_{tag}",
                {"uri": f"http://{s.host}:{s.port}", "collection": f"native_{tag}"})
    if store == "redis":
        s = servers["redis"]
        return (f"redis://{s.host}:{s.port}/0?index=vex{tag}",
                {"url": f"redis://{s.host}:{s.port}/0", "index": f"native{tag}"})
    raise SystemExit(f"unknown store {store}")


def measure(code: str, work: Path) -> tuple[float, float, float]:
    """Wall seconds, peak RSS (MB) and CPU seconds of ``code`` in a fresh Python process.

    The code runs from a script file under ``if __name__ == "__main__":``, so that a run with
    workers can start its spawned processes. The peak is the process's own plus the largest
    of its children's (bench/run.py's sampler); the CPU is the user + system time of the
    finished process and every process it waited for (the workers, the reading child).
    """
    script = work / "step.py"
    script.write_text(
        "import sys, time\n"
        f"sys.path.insert(0, {str(Path('bench').resolve())!r})\n"
        "import vexchange, stores\n"
        f"{run._WATCH_CHILDREN}\n"
        "if __name__ == '__main__':\n"
        "    t = time.perf_counter()\n"
        f"    {code}\n"
        "    secs = time.perf_counter() - t\n"
        "    hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
        "    print(secs, (int(hwm) + max(child_peak.values(), default=0)) / 1024)\n")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([sys.executable, str(script)], stdout=subprocess.PIPE, check=False,
                          env={**os.environ, "ANONYMIZED_TELEMETRY": "False"})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark step failed: {code}")
    secs, rss = proc.stdout.decode().strip().splitlines()[-1].split()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return float(secs), float(rss), cpu


def one(spec: str, source: str, servers: str, work: str) -> int:
    """One import into a fresh location, for timing from outside (pairs of runs compared by
    an external timer): ``STORE:vex:WORKERS`` or ``STORE:native``. pgvector tables go into
    the database ``vexbench`` (made on first use)."""
    from vexchange.testing import servers as srv

    store, mode, *rest = spec.split(":")
    running = srv.load(Path(servers))
    folder = Path(work)
    folder.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}x{time.time_ns() % 10**9}"
    if store == "pgvector":
        import psycopg

        s = running["postgres"]
        with psycopg.connect(host=s.host, port=s.port, user="postgres", dbname="postgres",
                             autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'vexbench'").fetchone():
                conn.execute("CREATE DATABASE vexbench")
                with psycopg.connect(host=s.host, port=s.port, user="postgres", dbname="vexbench",
                                     autocommit=True) as bench:
                    bench.execute("CREATE EXTENSION vector")
    url, native = locations(store, folder, running, tag, shared_db="vexbench")
    if mode == "native":
        native_import(store, source, native)
    else:
        import vexchange

        vexchange.import_(source, url, receipt=str(folder / f"{tag}.r.json"), workers=int(rest[0]))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--dims", type=int, default=384)
    parser.add_argument("--stores", default="chroma,qdrant-edge,pgvector,lancedb,milvus,redis")
    parser.add_argument("--workers", default="1", help="worker counts of the vexchange import, e.g. 1,2,4")
    parser.add_argument("--steps", default="import,export", help="import, export or both")
    parser.add_argument("--servers", help="a folder of running servers (its servers.json) to use")
    parser.add_argument("--one", help="STORE:vex:WORKERS or STORE:native: one import of --source,"
                        " timed outside")
    parser.add_argument("--source", help="the .vmig.jsonl file of --one")
    parser.add_argument("--work", default="/tmp/vex-bench-one", help="where --one puts embedded stores")
    args = parser.parse_args()
    if args.one:
        return one(args.one, args.source, args.servers, args.work)
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
    running = (srv.load(Path(args.servers)) if args.servers
               else srv.start_all(work / "servers", ("milvus", "redis", "postgres", "chroma")))
    steps = set(args.steps.split(","))
    counts = [int(w) for w in args.workers.split(",")]
    run_tag = f"{os.getpid()}{int(time.time()) % 100000}"
    results = []
    try:
        for store in args.stores.split(","):
            row: dict[str, Any] = {"store": store, "records": args.records, "dims": args.dims,
                                   "load": os.getloadavg()[0]}
            url, native = locations(store, work, running, f"n{run_tag}")
            if "import" in steps:
                row["import_native_s"], row["import_native_mb"], row["import_native_cpu"] = measure(
                    f"stores.native_import({store!r}, {str(source)!r}, {native!r})", work)
                for n in counts:
                    wurl, _ = locations(store, work, running, f"w{n}{run_tag}")
                    receipt = str(work / f"{store}-{n}.r.json")
                    secs, mb, cpu = measure(f"vexchange.import_({str(source)!r}, {wurl!r},"
                                            f" receipt={receipt!r}, workers={n})", work)
                    row.update({f"import_vex{n}_s": secs, f"import_vex{n}_mb": mb, f"import_vex{n}_cpu": cpu})
                    row[f"import_ratio{n}"] = round(row["import_native_s"] / secs, 2)
                    if n == counts[0]:
                        url = wurl
            if "export" in steps:
                if "import" not in steps:
                    measure(f"vexchange.import_({str(source)!r}, {url!r})", work)
                    measure(f"stores.native_import({store!r}, {str(source)!r}, {native!r})", work)
                row["export_vex_s"], row["export_vex_mb"], row["export_vex_cpu"] = measure(
                    f"vexchange.export({url!r}, {str(work / (store + '.out.vmig.jsonl'))!r})", work)
                row["export_native_s"], row["export_native_mb"], row["export_native_cpu"] = measure(
                    f"stores.native_export({store!r}, {str(work / (store + '.native.jsonl'))!r},"
                    f" {native!r})", work)
                row["export_ratio"] = round(row["export_native_s"] / row["export_vex_s"], 2)
            results.append(row)
            print(json.dumps(row), flush=True)
            with open("bench/out/stores.jsonl", "a") as log:
                log.write(json.dumps({**row, "at": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n")
    finally:
        if not args.servers:
            srv.stop_all(running)
        shutil.rmtree(work, ignore_errors=True)
    report(results, args.records, counts, steps)
    return 0


def report(results: list[dict[str, Any]], n: int, counts: list[int], steps: set[str]) -> None:
    if "import" in steps:
        print("\n| store | records | " + " | ".join(f"vexchange {w} worker(s) rec/s (ratio)" for w in counts)
              + " | native rec/s | CPU s vexchange " + "/".join(map(str, counts)) + " / native"
              " | peak RSS MB vexchange " + "/".join(map(str, counts)) + " / native | load |")
        print("|---|---:|" + "---|" * len(counts) + "---:|---|---|---:|")
        for r in results:
            cells = " | ".join(f"{n / r[f'import_vex{w}_s']:,.0f} ({r[f'import_ratio{w}']})" for w in counts)
            cpu = "/".join(f"{r[f'import_vex{w}_cpu']:.1f}" for w in counts)
            mb = "/".join(f"{r[f'import_vex{w}_mb']:.0f}" for w in counts)
            print(f"| {r['store']} | {n:,} | {cells} | {n / r['import_native_s']:,.0f} |"
                  f" {cpu} / {r['import_native_cpu']:.1f} | {mb} / {r['import_native_mb']:.0f} |"
                  f" {r['load']:.1f} |")
    if "export" in steps:
        print("\n| store | export vexchange rec/s | export native rec/s | ratio | peak RSS MB |")
        print("|---|---|---|---|---|")
        for r in results:
            print(f"| {r['store']} | {n / r['export_vex_s']:,.0f} | {n / r['export_native_s']:,.0f} |"
                  f" {r['export_ratio']} | {r['export_vex_mb']:.0f} |")


if __name__ == "__main__":
    raise SystemExit(main())
