"""Level 3 at scale and under kill -9 (slow: run with ``-m slow``). docs/formats/oms-level3.md §8."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("cryptography")

from vexchange.oms.grain import encode_grain
from vexchange.oms.l3.keys import MasterKey
from vexchange.oms.l3.store import Level3Store

pytestmark = pytest.mark.slow
T0 = 1768471200000
KEY = bytes(range(32))


def _grains(n: int) -> Iterator[bytes]:
    for i in range(n):
        yield encode_grain({"type": "belief", "subject": f"s{i % 1000}", "relation": f"r{i % 7}",
                            "object": f"object {i}", "confidence": 0.5, "created_at": T0 + i,
                            "namespace": f"ns{i % 5}", "user_id": f"u{i % 100}"})


def test_round_trip_100k(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    expected: list[str] = []
    with Level3Store(path, MasterKey(KEY), create=True) as store:
        batch: list[bytes] = []
        for blob in _grains(100_000):
            batch.append(blob)
            if len(batch) == 5000:
                expected += store.put_many(batch)
                batch = []
        assert len(store) == 100_000
    with Level3Store(path, MasterKey(KEY)) as store:
        assert [g.address for g in store.query(current_only=False)] == expected
        assert len(list(store.query(subject="s7"))) == 100
        assert len(list(store.query(subject="s7", relation="r0"))) == len(
            [i for i in range(100_000) if i % 1000 == 7 and i % 7 == 0])
        assert [g.fields["object"] for g in store.query(text="object 99999")] == ["object 99999"]
        report = store.verify_audit()
        assert report["ok"] and report["entries"] == 100_001


_CHILD = textwrap.dedent("""
    import random, sys
    from vexchange.oms.grain import encode_grain
    from vexchange.oms.l3.keys import MasterKey
    from vexchange.oms.l3.store import Level3Store

    path, directory, seed = sys.argv[1], sys.argv[2] == "dir", int(sys.argv[3])
    rng = random.Random(seed)
    store = Level3Store(path, MasterKey(bytes(range(32))))
    print("ready", flush=True)

    def grain(i, **more):
        fields = {"type": "belief", "subject": f"s{i % 13}", "relation": "r", "object": f"o {seed} {i}",
                  "confidence": 0.5, "created_at": 1768471200000 + seed * 1000 + i, "namespace": "k",
                  "user_id": f"u{i % 4}"}
        fields.update(more)
        return encode_grain(fields)

    current = [g.address for g in store.query(limit=50)]
    for i in range(100):
        op = rng.random()
        if op < 0.2 and current:
            old = current.pop(rng.randrange(len(current)))
            address = store.supersede(old, grain(i, derived_from=[old]))
        elif op < 0.3 and current:
            old = current.pop(rng.randrange(len(current)))
            address = store.contradict(old, grain(i, relation="contradicts"))
        elif op < 0.35:
            address = store.put_many([grain(i, object=f"b {seed} {i} {j}") for j in range(5)])[-1]
        else:
            address = store.put(grain(i))
        current.append(address)
        print(address, flush=True)
    store.close()
    print("done", flush=True)
""")


@pytest.mark.parametrize("backend", ["file", "dir"])
def test_kill_minus_9_during_writes(tmp_path: Path, backend: str) -> None:
    path = tmp_path / ("s.db" if backend == "file" else "store")
    Level3Store(path, MasterKey(KEY), create=True, directory=backend == "dir").close()
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    rng = random.Random(18 if backend == "file" else 19)
    acknowledged: list[str] = []
    killed = 0
    for trial in range(12):
        child = subprocess.Popen([sys.executable, str(script), str(path), backend, str(trial)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ})
        assert child.stdout is not None
        assert child.stdout.readline() == b"ready\n", child.stderr.read() if child.stderr else ""
        # kill after a random number of acknowledged writes (0-89 of 100), whatever the
        # machine's speed, so the kills land during the writes, at a random point of one
        seen = b"".join(child.stdout.readline() for _ in range(rng.randrange(90)))
        time.sleep(rng.uniform(0.0, 0.01))
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate(timeout=60)
        lines = (seen + out).split(b"\n")[:-1]  # the last piece has no newline: never acknowledged
        killed += b"done" not in lines
        acknowledged += [line.decode() for line in lines if line != b"done"]
        with Level3Store(path, MasterKey(KEY)) as store:
            report = store.verify_audit()
            assert report["ok"], (trial, report)
            assert store.recovery["missing_blobs"] == 0
            for address in acknowledged:
                assert store.get(address) is not None, (trial, address)
            stored = set(store.addresses())
            indexed = {g.address for g in store.query(current_only=False)}
            assert indexed == stored
            assert {g.address for g in store.query(namespace="k", current_only=False)} == stored
            orphans = store.db.execute("SELECT count(*) FROM blind WHERE gid NOT IN (SELECT id FROM grains)")
            assert orphans.fetchone()[0] == 0
    assert killed >= 8  # most kills land during the writes
    assert len(acknowledged) > 0
