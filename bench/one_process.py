"""CPU per record of one process (user + system, not wall time), beside a floor script's.

    python bench/one_process.py --records 50000 --floor-dir ../shared/tools [--vex DIR]

Builds a VEKTOR fixture (vexchange.sample_data, 384 dims) in --work, then runs, each in a fresh
process with ``VEX_READ_AHEAD=off`` (one process: no reading child, no thread), alternating
with its floor run by run: export vektor -> vmig against ``floor_export.py SRC OUT --sha
--fsync``, and vmig -> vmig against ``floor_jsonl.py IN OUT --f32 --sha --fsync``. The figures
are the kernel's accounting of each finished child (``resource.getrusage(RUSAGE_CHILDREN)``,
what ``/usr/bin/time`` prints), so a busy machine moves them far less than the wall clock.
The floor scripts are not part of this project; give the directory that holds them.

Import vmig -> VEKTOR runs against ``floor_import.py IN OUT.db`` when the floor directory has
one, and, with ``--vex DIR`` (the published Vex, as ``vexchange.testing.vex_npm`` installs it),
against ``vex import --to vektor --skip-graph``; each run writes a fresh database.

Python's bytecode: every run here is a fresh interpreter, and where ``PYTHONDONTWRITEBYTECODE``
is set (this workplace sets it) each one compiles vexchange from source, 0.2-0.3 s of CPU that an
installed package never pays. Our runs therefore keep their bytecode under ``--work``
(``PYTHONPYCACHEPREFIX``), after one run that is not counted; ``--as-is`` measures without.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path


def cpu_of(argv: list[str], env: dict[str, str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--work", default="bench/out")
    parser.add_argument("--floor-dir", required=True)
    parser.add_argument("--vex", help="the published Vex's install directory (import against it)")
    parser.add_argument("--as-is", action="store_true", help="leave PYTHONDONTWRITEBYTECODE as it is")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    db, a, b = work / f"cpu-{args.records}.db", work / "cpu-a.vmig.jsonl", work / "cpu-b.vmig.jsonl"
    if not db.exists():
        from vexchange.sample_data import build
        build(db, n=args.records, dims=384)
    env = {**os.environ, "VEX_READ_AHEAD": "off"}
    if not args.as_is:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str((work / "pycache").resolve())
    floor = Path(args.floor_dir)
    target = work / "cpu-import.db"
    fresh = f"import os; os.path.exists('{target}') and os.unlink('{target}'); "
    pairs = {
        "export vektor -> vmig": (
            [sys.executable, "-c",
             f"import vexchange; vexchange.export('vektor:{db}', '{a}', allow_skips=True)"],
            [sys.executable, str(floor / "floor_export.py"), str(db), str(work / "floor.jsonl"), "--sha",
             "--fsync"]),
        "vmig -> vmig": (
            [sys.executable, "-c", f"import vexchange; vexchange.migrate('{a}', '{b}')"],
            [sys.executable, str(floor / "floor_jsonl.py"), str(a), str(work / "floor.jsonl"), "--f32",
             "--sha", "--fsync"]),
    }
    importing = [sys.executable, "-c",
                 fresh + f"import vexchange; vexchange.migrate('{a}', 'vektor:{target}')"]
    if (floor / "floor_import.py").exists():
        pairs["import vmig -> vektor (floor)"] = (importing, [
            "sh", "-c",
            f"rm -f {target}.floor && exec {sys.executable} {floor / 'floor_import.py'} {a} {target}.floor"])
    if args.vex:
        script = Path(args.vex) / "node_modules" / "@vektormemory" / "vex" / "vex.mjs"
        pairs["import vmig -> vektor (Vex 0.8.8, --skip-graph)"] = (importing, [
            "sh", "-c", f"rm -f {target}.vex && CI=1 exec node {script} import --from {a} --to vektor"
                        f" --db {target}.vex --skip-graph"])
    # one run not counted: the other pairs' input, and the bytecode under --work
    subprocess.run(pairs["export vektor -> vmig"][0], check=True, env=env, stdout=subprocess.DEVNULL)
    print("| operation | vexchange µs/record | other µs/record | ratio (median of pairs) |\n"
          "|---|---:|---:|---:|")
    for label, (ours, theirs) in pairs.items():
        mine, base, ratios = [], [], []
        for _ in range(args.runs):
            b.unlink(missing_ok=True)
            mine.append(cpu_of(ours, env) / args.records * 1e6)
            base.append(cpu_of(theirs, env) / args.records * 1e6)
            ratios.append(mine[-1] / base[-1])
        print(f"| {label} | {statistics.median(mine):.0f} | {statistics.median(base):.0f}"
              f" | {statistics.median(ratios):.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
