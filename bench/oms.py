"""OMS grains: encode and decode per second, and .mg write / read / verify throughput.

    python bench/oms.py                 # 100k and 1M grains
    python bench/oms.py --sizes 100000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from vexchange.oms import decode_grain, encode_grain
from vexchange.oms.container import MgReader, MgWriter


def grain(i: int) -> dict[str, object]:
    return {"type": "belief", "subject": f"user-{i}", "relation": "prefers",
            "object": f"dark mode, setting {i}", "confidence": 0.9, "source_type": "user_explicit",
            "created_at": 1768471200000 + i, "namespace": "shared",
            "author_did": "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100000,1000000")
    args = parser.parse_args()
    print("| grains | encode/s | decode/s | .mg write/s | .mg read/s | .mg verify/s |")
    print("|---|---|---|---|---|---|")
    for n in (int(s) for s in args.sizes.split(",")):
        inputs = [grain(i) for i in range(n)]
        t = time.perf_counter()
        blobs = [encode_grain(g) for g in inputs]
        enc = n / (time.perf_counter() - t)
        t = time.perf_counter()
        for blob in blobs:
            decode_grain(blob)
        dec = n / (time.perf_counter() - t)
        with tempfile.TemporaryDirectory() as work:
            path = Path(work) / "b.mg"
            t = time.perf_counter()
            with MgWriter(path) as writer:
                for blob in blobs:
                    writer.add(blob)
            wr = n / (time.perf_counter() - t)
            t = time.perf_counter()
            with MgReader(path) as reader:
                for i in range(len(reader)):
                    reader[i]
            rd = n / (time.perf_counter() - t)
            t = time.perf_counter()
            with MgReader(path) as reader:
                reader.verify()
            ver = n / (time.perf_counter() - t)
        print(f"| {n:,} | {enc:,.0f} | {dec:,.0f} | {wr:,.0f} | {rd:,.0f} | {ver:,.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
