"""OMS Level 3 store: encrypted put and get rates, blind-index and FTS query latency.

    python bench/oms_level3.py                    # 100k and 1M grains
    python bench/oms_level3.py --sizes 100000

For each size a fresh SQLite store is filled in batches of 5,000 grains (one transaction each,
synchronous=FULL), then measured: single puts (one transaction and fsync each), gets of random
addresses, blind-index queries (an exact triple, a subject with 100 grains, a namespace with a
fifth of the store, first 10), and FTS queries (a rare word, a common word, first 10).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from vexchange.oms import encode_grain
from vexchange.oms.l3.keys import MasterKey
from vexchange.oms.l3.store import Level3Store

WORDS = ["coffee", "tea", "dark", "roast", "morning", "evening", "mode", "setting", "alpha", "beta"]


def grain(i: int, n: int) -> bytes:
    return encode_grain({
        "type": "belief", "subject": f"user-{i % (n // 100)}", "relation": f"prefers-{i % 7}",
        "object": f"{WORDS[i % 10]} {WORDS[(i // 10) % 10]} setting {i}", "confidence": 0.9,
        "source_type": "user_explicit", "created_at": 1768471200000 + i, "namespace": f"ns-{i % 5}",
        "user_id": f"person-{i % 1000}", "structural_tags": [f"topic:{i % 50}"]})


def _ms(action: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median and p95 latency in ms."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        action()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return statistics.median(times), times[int(0.95 * (len(times) - 1))]


def run(n: int) -> dict[str, float]:
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "s.l3"
        store = Level3Store(path, MasterKey(os.urandom(32)), create=True)

        def blobs() -> Iterator[bytes]:
            return (grain(i, n) for i in range(n))

        batch: list[bytes] = []
        t = time.perf_counter()
        for blob in blobs():
            batch.append(blob)
            if len(batch) == 5000:
                store.put_many(batch)
                batch = []
        if batch:
            store.put_many(batch)
        out["batched put/s"] = n / (time.perf_counter() - t)
        extra = [grain(n + i, n) for i in range(500)]
        t = time.perf_counter()
        for blob in extra:
            store.put(blob)
        out["single put/s"] = len(extra) / (time.perf_counter() - t)
        rng = random.Random(3)
        ids = ",".join(str(rng.randrange(1, n)) for _ in range(5000))
        sample = [row[0] for row in store.db.execute(f"SELECT address FROM grains WHERE id IN ({ids})")]
        t = time.perf_counter()
        for address in sample:
            store.get(address)
        out["get/s"] = len(sample) / (time.perf_counter() - t)
        k = n // 2
        exact = f"{WORDS[k % 10]} {WORDS[(k // 10) % 10]} setting {k}"
        queries: dict[str, Callable[[], object]] = {
            "triple (1 hit)": lambda: list(store.query(subject=f"user-{k % (n // 100)}",
                                                      relation=f"prefers-{k % 7}", object=exact)),
            "subject (100 hits)": lambda: list(store.query(subject="user-42")),
            "namespace, first 10": lambda: list(store.query(namespace="ns-3", limit=10)),
            "fts rare word": lambda: list(store.query(text=str(k))),
            "fts two common words, first 10": lambda: list(store.query(text="coffee roast", limit=10)),
        }
        for name, action in queries.items():
            median, p95 = _ms(action, 50)
            out[f"{name} ms"] = median
            out[f"{name} p95 ms"] = p95
        store.close()
        out["bytes/grain"] = path.stat().st_size / (n + 500)
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100000,1000000")
    args = parser.parse_args()
    for n in (int(s) for s in args.sizes.split(",")):
        result = run(n)
        print(f"## {n:,} grains", flush=True)
        for key, value in result.items():
            print(f"{key}: {value:,.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
