"""The approximate index of a VectorPack (``vex pack reindex --ann usearch``): build time, query
latency, and recall@10 against exact search, on two kinds of 384-dim vectors:

* random (standard normal): the worst case for any graph index, since no point is much nearer
  to a query than any other;
* clustered (1,000 centres, each vector a centre plus noise): the structure real embeddings
  have, where nearest neighbours are much nearer than the rest.

    python bench/ann.py                    # 100k records
    python bench/ann.py --records 20000 --threads 0
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np

from vexchange.pack.search import Searcher, Weights
from vexchange.pack.vectorpack import PackWriter, reindex
from vexchange.record import MemoryRecord, Vector

SIMILARITY_ONLY = Weights(similarity=1.0, elo=0.0, recency=0.0)
"""So recall compares the two searches and nothing else."""


def vectors(kind: str, n: int, dims: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "random":
        return rng.standard_normal((n, dims), dtype=np.float32)
    centres = rng.standard_normal((1000, dims), dtype=np.float32)
    return centres[rng.integers(0, 1000, n)] + 0.35 * rng.standard_normal((n, dims), dtype=np.float32)


def build_pack(path: Path, matrix: np.ndarray) -> None:
    writer = PackWriter(path, resume=False)
    for start in range(0, len(matrix), 5000):
        writer.write([MemoryRecord(id=f"m{start + i}", text=f"memory {start + i}",
                                   vectors={"": Vector(row.tobytes(), "bench")})
                      for i, row in enumerate(matrix[start:start + 5000])])
    writer.finish({"": "cosine"})


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--dims", type=int, default=384)
    parser.add_argument("--threads", type=int, default=1, help="for the build (0: every core)")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--work", default="bench/out")
    args = parser.parse_args()
    print("| vectors | build s | exact ms/query | approximate ms/query | recall@10 |")
    print("|---|---|---|---|---|")
    for kind in ("random", "clustered"):
        rng = np.random.default_rng(11)
        matrix = vectors(kind, args.records, args.dims, rng)
        pack = Path(args.work) / f"ann-{kind}.vpack"
        shutil.rmtree(pack, ignore_errors=True)
        build_pack(pack, matrix)
        started = time.perf_counter()
        reindex(pack, ann="usearch", threads=args.threads)
        build_s = time.perf_counter() - started
        # queries near the data: a stored vector plus a little noise
        picks = matrix[rng.integers(0, len(matrix), args.queries)]
        queries = picks + 0.1 * rng.standard_normal(picks.shape, dtype=np.float32)
        searcher = Searcher(pack)
        exact_s = approximate_s = 0.0
        found = 0
        for q in queries:
            t = time.perf_counter()
            exact = searcher.search(vector=q.tolist(), k=10, exact=True, weights=SIMILARITY_ONLY)
            exact_s += time.perf_counter() - t
            t = time.perf_counter()
            approximate = searcher.search(vector=q.tolist(), k=10, weights=SIMILARITY_ONLY)
            approximate_s += time.perf_counter() - t
            found += len({h["id"] for h in exact} & {h["id"] for h in approximate})
        searcher.close()
        shutil.rmtree(pack)
        print(f"| {kind} | {build_s:,.1f} | {exact_s / args.queries * 1000:,.1f} |"
              f" {approximate_s / args.queries * 1000:,.2f} | {found / (10 * args.queries):.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
