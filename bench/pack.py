"""VectorPack and cartridge: records -> pack and pack -> records per second with peak memory,
and exact search latency on a cartridge. Each step runs in a fresh process (bench/run.py).

    python bench/pack.py                         # 100k and 1M records of 384 dims
    python bench/pack.py --sizes 100000
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from run import measure

RECORDS = """
import numpy as np
from vexchange.record import MemoryRecord, Vector
def batches(n, dims, size=2000):
    rng = np.random.default_rng(0)
    for start in range(0, n, size):
        block = rng.standard_normal((min(size, n - start), dims), dtype=np.float32)
        yield [MemoryRecord(id=f"m{start + i}", namespace=("work", "home", None)[(start + i) % 3],
                            text=f"memory {start + i}: the user prefers option {(start + i) % 97}",
                            metadata={"n": start + i, "tag": "t%d" % ((start + i) % 7)},
                            created_at=1735689600000 + start + i,
                            vectors={"": Vector(row.tobytes(), "bench-model")})
               for i, row in enumerate(block)]
"""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--dims", type=int, default=384)
    parser.add_argument("--work", default="bench/out")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    print("| records | records -> pack (rec/s) | peak MB | pack -> records (rec/s) | peak MB"
          " | pack size MB |")
    print("|---|---|---|---|---|---|")
    for n in (int(s) for s in args.sizes.split(",")):
        pack = work / f"pack-{n}.vpack"
        if pack.exists():
            shutil.rmtree(pack)
        write_s, write_mb = measure(
            f"w = PackWriter(Path({str(pack)!r}), resume=False)\n"
            f"for b in batches({n}, {args.dims}): w.write(b)\n"
            "w.finish({'': 'cosine'})",
            setup="from pathlib import Path\nfrom vexchange.pack.vectorpack import PackWriter\n" + RECORDS)
        read_s, read_mb = measure(
            f"c = VectorPackConnector(StoreSpec('vectorpack', {str(pack)!r}))\n"
            "count = sum(len(p.items) for p in c.read(batch_size=5000))\n"
            f"assert count == {n}, count",
            setup="from vexchange.connectors.vectorpack import VectorPackConnector\n"
                  "from vexchange.spec import StoreSpec")
        size = sum(p.stat().st_size for p in pack.rglob("*") if p.is_file()) / 1e6
        print(f"| {n:,} | {n / write_s:,.0f} | {write_mb:,.0f} | {n / read_s:,.0f} | {read_mb:,.0f}"
              f" | {size:,.0f} |")
        if n == 100_000:
            cartridge = pack / "tables" / "memory.db"
            secs, mb = measure(
                f"for _ in range(5): search({str(cartridge)!r}, vector=q, k=10)",
                setup="import numpy as np\nfrom vexchange.pack.search import search\n"
                      f"q = np.random.default_rng(1).standard_normal({args.dims:d}).tolist()\n"
                      f"search({str(cartridge)!r}, vector=q, k=10)")
            print(f"\nexact search, {n:,} x {args.dims} cartridge, k=10: {secs / 5 * 1000:,.0f} ms"
                  f" per query (peak {mb:,.0f} MB)")
            measure(f"reindex({str(pack)!r})", setup="from vexchange.pack.vectorpack import reindex")
            secs, mb = measure(
                "for _ in range(5): s.search(vector=q, k=10)",
                setup="import numpy as np\nfrom vexchange.pack.search import Searcher\n"
                      f"q = np.random.default_rng(1).standard_normal({args.dims:d}).tolist()\n"
                      f"s = Searcher({str(pack)!r})\ns.search(vector=q, k=10)")
            print(f"the same on the pack, opened once (hashes checked), with its flat index"
                  f" (vex pack reindex): {secs / 5 * 1000:,.0f} ms per query (peak {mb:,.0f} MB)\n")
        shutil.rmtree(pack)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
