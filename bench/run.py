"""Throughput and peak memory of export, import and file-to-file, at several record counts.

    python bench/run.py                 # 10k, 100k, 1M records of 384 dims (needs ~15 GB disk)
    python bench/run.py --sizes 10000   # a quick run

Each operation runs in a fresh Python process; its peak RSS comes from the kernel (wait4), its
time from the wall clock around the library call. Fixtures are built first and not timed.
Results are printed as a Markdown table and appended to bench/out/results.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

OPS = {
    "export vektor -> vmig": "vexchange.export('vektor:{db}', '{a}', allow_skips=True)",
    "vmig -> vmig": "vexchange.migrate('{a}', '{b}')",
    "import vmig -> vektor": "vexchange.import_('{a}', 'vektor:{db2}')",
}


_WATCH_CHILDREN = """
import glob, threading
child_peak = {}
def _watch():
    while True:
        for listing in glob.glob('/proc/self/task/*/children'):
            try:  # threads and children come and go while we look
                for pid in open(listing).read().split():
                    for line in open(f'/proc/{pid}/status'):
                        if line.startswith('VmHWM'):
                            child_peak[pid] = max(child_peak.get(pid, 0), int(line.split()[1]))
            except OSError:
                pass
        time.sleep(0.05)
threading.Thread(target=_watch, daemon=True).start()
"""


def measure(code: str, *, setup: str = "import vexchange") -> tuple[float, float]:
    """Seconds and peak RSS (MB) of ``code`` run after ``setup`` in a fresh Python process.

    The RSS is the process's own peak plus the largest peak of a child it started (the engine
    reads large files in a child process, docs/engine.md), sampled every 50 ms: both run at once.
    """
    # VmHWM is the peak RSS of this process image; it resets on exec, unlike a forked child's
    # ru_maxrss, which starts at the parent's size (so children are watched through /proc).
    script = (f"import time\n{setup}\n{_WATCH_CHILDREN}\nt=time.perf_counter()\n{code}\n"
              "secs=time.perf_counter()-t\n"
              "hwm=[l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
              "print(secs, (int(hwm) + max(child_peak.values(), default=0)) / 1024)")
    proc = subprocess.run([sys.executable, "-c", script], stdout=subprocess.PIPE, check=False,
                          env={**os.environ, "ANONYMIZED_TELEMETRY": "False"})
    if proc.returncode != 0:
        raise SystemExit(f"benchmark step failed: {code}")
    secs, rss = proc.stdout.decode().strip().splitlines()[-1].split()
    return float(secs), float(rss)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--dims", type=int, default=384)
    parser.add_argument("--work", default="bench/out")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    from vexchange.sample_data import build

    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        db, db2 = work / f"src-{n}.db", work / f"dst-{n}.db"
        a, b = work / f"a-{n}.vmig.jsonl", work / f"b-{n}.vmig.jsonl"
        if not db.exists():
            build(db, n=n, dims=args.dims)
        for path in (db2, a, b):
            path.unlink(missing_ok=True)
        for label, template in OPS.items():
            secs, rss = measure(template.format(db=db, db2=db2, a=a, b=b))
            row = {"op": label, "records": n, "dims": args.dims, "seconds": round(secs, 2),
                   "records_per_s": round(n / secs), "peak_rss_mb": round(rss, 1),
                   "date": time.strftime("%Y-%m-%d")}
            rows.append(row)
            print(json.dumps(row), flush=True)
            with open(work / "results.jsonl", "a") as fh:
                fh.write(json.dumps(row) + "\n")
        for path in (db2, a, b):
            path.unlink(missing_ok=True)
    print("\n| operation | records | seconds | records/s | peak RSS MB |\n|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['op']} | {r['records']:,} | {r['seconds']} | {r['records_per_s']:,}"
              f" | {r['peak_rss_mb']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
