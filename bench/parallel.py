"""Parallel runs against one process and against the floor: records/s, CPU seconds and peak
memory (each process, and all of them at once) for VEKTOR -> .vmig.jsonl and .vmig.jsonl ->
.vmig.jsonl with 1 and 2 workers (docs/engine.md, "Parallel runs").

    python bench/parallel.py --records 100000                  # a quick look
    python bench/parallel.py --records 1000000 --floor-dir /work/shared/tools

Each run is a fresh process (``vex`` through the library, ``workers=N``); this script samples
its process tree's ``VmHWM`` (peak RSS) every 50 ms from /proc, so a worker's peak is its own
and the total is the largest sum of the processes alive at one time (sampled RSS). CPU is the
user + system time of the finished process and every descendant it waited for
(``RUSAGE_CHILDREN``), the load average is read before each run. The floor scripts (a plain
script writing byte-identical output, kept outside the project) are run, never copied, when
``--floor-dir`` names them. Results: a Markdown table, and JSON lines in bench/out/parallel.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

_RUN = """
import sys, vexchange
if __name__ == "__main__":
    vexchange.migrate(sys.argv[1], sys.argv[2], workers=int(sys.argv[3]))
"""


def _tree(root: int) -> list[int]:
    """The pids of ``root`` and its descendants (from /proc's children lists)."""
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as listing:
                    todo.extend(int(p) for p in listing.read().split())
        except OSError:
            continue
    return found


def _status(pid: int) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(("VmHWM", "VmRSS")):
                    key, value = line.split(":")
                    out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def measure(argv: list[str]) -> dict[str, float]:
    """Wall seconds, CPU seconds (user + sys, descendants included), the largest peak RSS of
    one process, and the largest sampled sum of RSS over the tree, in MB."""
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peaks: dict[int, int] = {}
    total = 0
    while proc.poll() is None:
        alive = 0
        for pid in _tree(proc.pid):
            status = _status(pid)
            peaks[pid] = max(peaks.get(pid, 0), status.get("VmHWM", 0))
            alive += status.get("VmRSS", 0)
        total = max(total, alive)
        time.sleep(0.05)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        assert proc.stderr is not None
        raise SystemExit(f"{argv} failed: {proc.stderr.read().decode()[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "load": round(load, 2),
            "peak_process_mb": round(max(peaks.values(), default=0) / 1024, 1),
            "peak_total_mb": round(total / 1024, 1), "processes": len(peaks)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--dims", type=int, default=384)
    parser.add_argument("--work", default="bench/out")
    parser.add_argument("--floor-dir", default=None, help="where floor_export.py and floor_jsonl.py are")
    parser.add_argument("--workers", default="1,2")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    n = args.records
    db, src = work / f"par-src-{n}.db", work / f"par-src-{n}.vmig.jsonl"
    out = work / f"par-out-{n}.vmig.jsonl"
    driver = work / "par_driver.py"
    driver.write_text(_RUN)
    if not db.exists():
        from vexchange.sample_data import build

        build(db, n=n, dims=args.dims)
    if not src.exists():
        import vexchange

        vexchange.migrate(f"vektor:{db}", src)
    runs: list[tuple[str, list[str]]] = []
    for w in (int(x) for x in args.workers.split(",")):
        runs.append((f"export vektor -> vmig, {w} worker{'s' * (w > 1)}",
                     [sys.executable, str(driver), f"vektor:{db}", str(out), str(w)]))
        runs.append((f"vmig -> vmig, {w} worker{'s' * (w > 1)}",
                     [sys.executable, str(driver), str(src), str(out), str(w)]))
    if args.floor_dir:
        floor = Path(args.floor_dir)
        runs.append(("floor export (floor_export.py --sha --fsync)",
                     [sys.executable, str(floor / "floor_export.py"), str(db), str(out), "--sha", "--fsync"]))
        runs.append(("floor vmig -> vmig (floor_jsonl.py --f32 --sha --fsync)",
                     [sys.executable, str(floor / "floor_jsonl.py"), str(src), str(out), "--f32", "--sha",
                      "--fsync"]))
    rows = []
    for label, argv in runs:
        for path in out.parent.glob(out.name + "*"):
            if path.is_file():
                path.unlink()
        row = {"op": label, "records": n, "dims": args.dims, **measure(argv),
               "date": time.strftime("%Y-%m-%d")}
        row["records_per_s"] = round(n / row["wall_s"])
        row["cpu_us_per_record"] = round(row["cpu_s"] / n * 1e6, 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
        with open(work / "parallel.jsonl", "a") as fh:
            fh.write(json.dumps(row) + "\n")
    for path in out.parent.glob(out.name + "*"):
        if path.is_file():
            path.unlink()
    print("\n| operation | records | wall s | records/s | CPU s | CPU µs/record | load (1 min) |"
          " peak MB, one process | peak MB, all at once | processes |\n"
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['op']} | {r['records']:,} | {r['wall_s']} | {r['records_per_s']:,} | {r['cpu_s']}"
              f" | {r['cpu_us_per_record']} | {r['load']} | {r['peak_process_mb']} | {r['peak_total_mb']}"
              f" | {r['processes']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
