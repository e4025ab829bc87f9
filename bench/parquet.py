"""Parquet export and import rates and peak memory (issue 21: 1M records at >= 50,000/s, flat).

    python bench/parquet.py                    # 100k and 1M records of 384 dims (~8 GB disk)
    python bench/parquet.py --sizes 20000      # a quick run

Operations, each in a fresh Python process (peak RSS from the kernel, as bench/run.py):

* ``write (connector)``: pages of records handed to the parquet connector's writer, then
  ``finish`` (staging, then the data files, card and manifest): what an export into Parquet
  costs beyond reading its source. The records are made page by page in the same process;
  making them is not timed.
* ``read (connector)``: every page of the dataset read back as records.
* ``parquet -> parquet (engine)``: ``vexchange.migrate`` end to end (read, checks, digests,
  write, receipt): one process doing an import and an export at once.
* ``export vmig -> parquet``, ``import parquet -> vmig``: the same dataset through the
  ``.vmig.jsonl`` file connector on the other side (its JSON work bounds these).
* ``floor: pyarrow alone``: pyarrow reading the dataset's row groups and writing them to a new
  Parquet file with the connector's options (vector columns plain, content-defined chunking),
  then an fsync: no records, no checks, no staging. What no run through records can beat.

The pairs issue 21 asks for: an export into Parquet is ``write (connector)`` and, through the
engine, ``parquet -> parquet``; an import from Parquet is ``read (connector)`` and the same
engine run, which does both at once (a reading child reading each page as its table and
taking its records' digests from the columns, the engine checking the page column by column,
the writer staging the table and writing the data files: docs/formats/parquet.md, "Parquet to
Parquet: pages as tables"). ``--skip-vmig`` leaves out the JSON-bound pairs.

The fixture dataset is written by the connector once, untimed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from run import measure

MAKE = """
import numpy as np
from vexchange.record import MemoryRecord, Vector
def pages(n, dims, page=10_000, seed=7):
    rng = np.random.default_rng(seed)
    for start in range(0, n, page):
        count = min(page, n - start)
        vecs = rng.standard_normal((count, dims)).astype('<f4')
        yield [MemoryRecord(id=f"mem-{{start + i:08d}}",
                            text=f"memory number {{start + i}} about topic {{i % 97}}",
                            vectors={{"": Vector(vecs[i].tobytes(), "bench-model")}}, namespace="bench",
                            metadata={{"i": start + i, "topic": i % 97, "score": 0.5, "tags": ["a", "b"]}},
                            created_at=1_700_000_000_000 + start + i) for i in range(count)]
"""

WRITE = MAKE + """
from vexchange.spec import StoreSpec
from vexchange.connectors.parquet import ParquetConnector
from vexchange.connectors._base import VectorSpace
store = ParquetConnector(StoreSpec("parquet", "{out}"))
writer = store.open_writer(spaces={{"": VectorSpace(dims={dims}, metric="cosine")}})
spent = 0.0
for page in pages({n}, {dims}):
    t0 = time.perf_counter()
    writer.write(page)
    writer.checkpoint()
    spent += time.perf_counter() - t0
t0 = time.perf_counter()
writer.finish({{"source": {{"connector": "bench"}}}})
spent += time.perf_counter() - t0
"""

READ = """
from vexchange.spec import StoreSpec
from vexchange.connectors.parquet import ParquetConnector
store = ParquetConnector(StoreSpec("parquet", "{out}"))
got = sum(len(page.items) for page in store.read(batch_size=10_000))
assert got == {n}, got
"""

FLOOR = """
import os
import pyarrow.parquet as pq
f = pq.ParquetFile("{src}/data/train-00000-of-00001.parquet", pre_buffer=False)
vec = [n for n in f.schema_arrow.names if n.startswith("vector")]
rest = [n for n in f.schema_arrow.names if n not in vec]
w = pq.ParquetWriter("{dst}.floor.parquet", f.schema_arrow, use_dictionary=rest, write_statistics=rest,
                     compression={{n: "none" if n in vec else "snappy" for n in f.schema_arrow.names}},
                     use_content_defined_chunking=True)
for b in f.iter_batches(batch_size=10000, use_threads=False):
    w.write_batch(b, row_group_size=10000)
w.close()
fd = os.open("{dst}.floor.parquet", os.O_RDONLY); os.fsync(fd); os.close(fd)
os.unlink("{dst}.floor.parquet")
"""

ENGINE = {
    "parquet -> parquet (engine)": "vexchange.migrate('parquet:{src}', 'parquet:{dst}', batch_size=10000)",
    "export vmig -> parquet": "vexchange.migrate('{vmig}', 'parquet:{dst}', batch_size=10000)",
    "import parquet -> vmig": "vexchange.migrate('parquet:{src}', '{vmig2}', batch_size=10000)",
}

SETUP = """
import vexchange
from vexchange.connectors import _registry
if "parquet" not in _registry._BUILTINS:
    _registry.register("parquet", "vexchange.connectors.parquet:ParquetConnector", replace=True)
"""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--dims", type=int, default=384)
    parser.add_argument("--work", default="bench/out/parquet")
    parser.add_argument("--skip-vmig", action="store_true", help="leave out the vmig operations")
    parser.add_argument("--connector-only", action="store_true",
                        help="only the connector's write and read (no engine runs)")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        src, dst = work / f"src-{n}.parquet", work / f"dst-{n}.parquet"
        vmig, vmig2 = work / f"src-{n}.vmig.jsonl", work / f"dst-{n}.vmig.jsonl"
        for path in (src, dst, vmig2):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        ops: list[tuple[str, str, bool]] = [
            ("write (connector)", WRITE.format(out=src, n=n, dims=args.dims), True),
            ("read (connector)", READ.format(out=src, n=n), False),
            ("floor: pyarrow alone (read + write)", FLOOR.format(src=src, dst=dst), False)]
        names = [] if args.connector_only else ["parquet -> parquet (engine)"]
        if not (args.skip_vmig or args.connector_only):
            names += ["import parquet -> vmig", "export vmig -> parquet"]
        ops += [(label, ENGINE[label].format(src=src, dst=dst, vmig=vmig, vmig2=vmig), False)
                for label in names]
        for label, code, writer_only in ops:
            if label.startswith("export"):
                shutil.rmtree(dst, ignore_errors=True)
            if writer_only:
                secs, rss = _writer_seconds(code)
            else:
                secs, rss = measure(code, setup=SETUP)
            row = {"op": label, "records": n, "dims": args.dims, "seconds": round(secs, 2),
                   "records_per_s": round(n / secs), "peak_rss_mb": round(rss, 1),
                   "date": time.strftime("%Y-%m-%d")}
            rows.append(row)
            print(json.dumps(row), flush=True)
            with open(work / "results.jsonl", "a") as fh:
                fh.write(json.dumps(row) + "\n")
        for path in (src, dst):
            shutil.rmtree(path, ignore_errors=True)
        for path in (vmig, vmig2):
            path.unlink(missing_ok=True)
            Path(str(path).replace(".vmig.jsonl", ".vmig.meta.json")).unlink(missing_ok=True)
    print("\n| operation | records | seconds | records/s | peak RSS MB |\n|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['op']} | {r['records']:,} | {r['seconds']} | {r['records_per_s']:,}"
              f" | {r['peak_rss_mb']} |")
    return 0


def _writer_seconds(code: str) -> tuple[float, float]:
    """measure() times the whole snippet; the writer's own share is printed by it and read
    back here (the snippet's last line before measure's own)."""
    import os
    import subprocess

    script = (f"import time\n{SETUP}\n{code}\n"
              "hwm=[l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
              "print(spent, int(hwm) / 1024)")
    proc = subprocess.run([sys.executable, "-c", script], stdout=subprocess.PIPE, check=True,
                          env=dict(os.environ))
    secs, rss = proc.stdout.decode().strip().splitlines()[-1].split()
    return float(secs), float(rss)


if __name__ == "__main__":
    raise SystemExit(main())
