"""``--engine ray`` (docs/engine.md, "Ray"): the plan run as Ray tasks on a local Ray instance
of two CPUs started here, equal to a one-worker run; transient failures and died Ray workers
retried on their shard, a permanent failure naming it; a run started on Ray resumed locally;
secrets from the workers' environment, never in a task; and the kill test of
tests/test_parallel_faults.py on Ray (slow).

The faulty sources below are real VEKTOR readers that fail at one shard; Ray's workers import
them from this module (the driver's ``sys.path`` reaches them)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import vexchange
from vexchange.connectors._base import Page, Shard
from vexchange.connectors.vektor import VektorConnector
from vexchange.errors import MigrationError, PermanentError, TransientError, UsageError
from vexchange.sample_data import build
from vexchange.spec import StoreSpec

ray = pytest.importorskip("ray")

import test_parallel_faults as faults  # noqa: E402  (its store helpers and its PostgreSQL server)

store_servers = faults.store_servers

_TOKEN = "ray-test-token-5d1e"
"""The secret a worker must find in its environment (set before the Ray instance starts)."""


@pytest.fixture(scope="module")
def ray_instance() -> Iterator[str]:
    """A local Ray instance with two CPUs for this module; its GCS address (for a driver in
    another process). The workers inherit from this environment VEX_SOURCE_SECRET_TOKEN and a
    PYTHONPATH that finds this module (for the faulty sources)."""
    tests = str(Path(__file__).parent)
    path = os.pathsep.join(p for p in (tests, os.environ.get("PYTHONPATH")) if p)
    before = {name: os.environ.get(name) for name in ("VEX_SOURCE_SECRET_TOKEN", "PYTHONPATH")}
    os.environ.update({"VEX_SOURCE_SECRET_TOKEN": _TOKEN, "PYTHONPATH": path})
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    try:
        yield str(ray.get_runtime_context().gcs_address)
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def source_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ray-src") / "m.db"
    build(path, n=3000, dims=8)
    return path


class _Faulty(VektorConnector):
    """A VEKTOR source whose shard 1 fails (``fail``), once (a marker file beside the
    database remembers it failed) or always."""

    once = True

    def fail(self) -> None:
        raise NotImplementedError

    def read_shard(self, shard: Shard, *, batch_size: int, after: str | None = None) -> Iterator[Page]:
        marker = self.path.with_name(f"{self.path.name}.{type(self).__name__}.failed")
        if shard.index == 1 and not (self.once and marker.exists()):
            marker.touch()
            self.fail()
        return super().read_shard(shard, batch_size=batch_size, after=after)


class TransientSource(_Faulty):
    def fail(self) -> None:
        raise TransientError("the source is busy (a test)")


class DyingSource(_Faulty):
    def fail(self) -> None:
        os.kill(os.getpid(), signal.SIGKILL)  # the Ray worker dies mid-task


class BrokenSource(_Faulty):
    once = False

    def fail(self) -> None:
        raise PermanentError("the source is broken (a test)")


class SecretSource(VektorConnector):
    """Reads only when the worker was given the token (from its environment)."""

    def read_shard(self, shard: Shard, *, batch_size: int, after: str | None = None) -> Iterator[Page]:
        if self.spec.secret("token") != _TOKEN:
            raise PermanentError("no token reached this worker")
        return super().read_shard(shard, batch_size=batch_size, after=after)


def _open(kind: type[VektorConnector], path: Path, **secrets: str) -> VektorConnector:
    return kind(StoreSpec.parse(f"vektor:{path}", secrets=secrets or None))


def test_ray_export_is_a_one_worker_export(ray_instance: str, source_db: Path, tmp_path: Path) -> None:
    one = vexchange.migrate(f"vektor:{source_db}", tmp_path / "one.vmig.jsonl")
    four = vexchange.migrate(f"vektor:{source_db}", tmp_path / "four.vmig.jsonl", workers=4, engine="ray")
    assert four.status == "completed" and four.options["engine"] == "ray"
    assert four.counts == one.counts and four.namespaces == one.namespaces
    assert (tmp_path / "four.vmig.jsonl").read_bytes() == (tmp_path / "one.vmig.jsonl").read_bytes()
    assert vexchange.verify(tmp_path / "four.vmig.jsonl").ok
    assert not (tmp_path / "four.vmig.jsonl.receipt.json.shards").exists()


@pytest.mark.parametrize("kind", [TransientSource, DyingSource])
def test_a_failed_or_died_task_runs_again_on_its_shard(ray_instance: str, source_db: Path, tmp_path: Path,
                                                       kind: type[VektorConnector]) -> None:
    db = tmp_path / "m.db"
    db.write_bytes(source_db.read_bytes())
    one = vexchange.migrate(f"vektor:{db}", tmp_path / "one.vmig.jsonl")
    four = vexchange.migrate(_open(kind, db), tmp_path / "four.vmig.jsonl", workers=4, engine="ray")
    assert db.with_name(f"m.db.{kind.__name__}.failed").exists()  # it did fail once
    assert four.status == "completed" and four.retries >= 1
    assert four.namespaces == one.namespaces and four.counts == one.counts
    assert (tmp_path / "four.vmig.jsonl").read_bytes() == (tmp_path / "one.vmig.jsonl").read_bytes()


def test_a_permanent_failure_names_its_shard_and_the_run_resumes_locally(
        ray_instance: str, source_db: Path, tmp_path: Path) -> None:
    target = tmp_path / "out.vmig.jsonl"
    named = r"shard 1 \(rowid \d+\.\.\d+\) of 4 failed: .*the source is broken"
    with pytest.raises(MigrationError, match=named):
        vexchange.migrate(_open(BrokenSource, source_db), target, workers=4, engine="ray")
    receipt = json.loads(target.with_name(target.name + ".receipt.json").read_text())
    assert receipt["status"] == "failed" and "shard 1" in receipt["error"]
    assert not target.exists()  # no file in place before every shard is done
    resumed = vexchange.migrate(f"vektor:{source_db}", target, workers=4, resume=True)  # local processes
    one = vexchange.migrate(f"vektor:{source_db}", tmp_path / "one.vmig.jsonl")
    assert resumed.status == "completed" and resumed.resumed
    assert resumed.namespaces == one.namespaces and resumed.counts == one.counts
    assert target.read_bytes() == (tmp_path / "one.vmig.jsonl").read_bytes()


def test_secrets_reach_workers_from_their_environment_only(ray_instance: str, source_db: Path,
                                                           tmp_path: Path) -> None:
    """The token is in the Ray workers' environment (set before the instance started), not in
    the run: the workers read it there. A run that carries its own secrets is refused on a
    Ray instance already running, naming the variables to set on every node."""
    target = tmp_path / "out.vmig.jsonl"
    done = vexchange.migrate(_open(SecretSource, source_db), target, workers=4, engine="ray")
    assert done.status == "completed" and done.counts.written == 3000
    with pytest.raises(UsageError, match="VEX_SOURCE_SECRET_TOKEN") as refused:
        vexchange.migrate(_open(SecretSource, source_db, token="given-here-9c2f"), tmp_path / "x.vmig.jsonl",
                          workers=4, engine="ray")
    assert "given-here-9c2f" not in str(refused.value) + str(refused.value.hint)
    assert not (tmp_path / "x.vmig.jsonl.receipt.json.checkpoint").exists()  # refused before the plan


_SECRET_DRIVER = """
import sys
sys.path.insert(0, sys.argv[1])
import vexchange
from vexchange.spec import StoreSpec
from test_ray import SecretSource
if __name__ == "__main__":
    source = SecretSource(StoreSpec.parse("vektor:" + sys.argv[2], secrets={"token": sys.argv[4]}))
    r = vexchange.migrate(source, sys.argv[3], workers=2, engine="ray")
    print(r.status, r.counts.written)
"""


@pytest.mark.slow
def test_a_local_instance_started_by_the_run_gets_its_secrets(source_db: Path, tmp_path: Path) -> None:
    """No Ray running: the run starts its own local instance (two CPUs for two workers) with
    the run's secrets in the environment the instance starts with, and stops it at the end.
    The secret is in no run file and not in Ray's own record of the session."""
    driver = tmp_path / "driver.py"
    driver.write_text(_SECRET_DRIVER)
    target = tmp_path / "out.vmig.jsonl"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = str(Path(__file__).parent)  # the instance's workers find SecretSource
    command = [sys.executable, str(driver), str(Path(__file__).parent), str(source_db), str(target), _TOKEN]
    out = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["completed", "3000"]
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert _TOKEN.encode() not in path.read_bytes(), path
    assert _TOKEN not in out.stdout + out.stderr


# ------------------------------------------------------------------------------ kill -9 on Ray

_DRIVER = """
import sys, vexchange
if __name__ == "__main__":
    source, target, mode, engine, address = sys.argv[1:6]
    r = vexchange.migrate(source, target, workers=4, batch_size=200, resume=mode == "resume",
                          engine=engine, ray_address=address if engine == "ray" else None)
    import json
    print(json.dumps({"status": r.status, "namespaces": {k: v.written for k, v in r.namespaces.items()}}))
"""


def _ray_workers(root: int) -> list[int]:
    import psutil  # type: ignore[import-untyped]

    found = []
    for proc in psutil.Process(root).children(recursive=True):
        try:
            if "shard_task" in " ".join(proc.cmdline()):
                found.append(proc.pid)
        except psutil.Error:
            continue
    return found


def _kill_at(driver: Path, source: str, target: str, address: str, delay: float, victim: str,
             cwd: Path) -> tuple[str, dict[str, Any] | None]:
    """Start a 4-worker Ray run, wait until its Ray workers run shards, then after ``delay``
    kill -9 one of them (``worker``) or the coordinator: what was killed, and the run's own
    result when it finished anyway (a killed Ray worker's shard runs again within the run)."""
    proc = subprocess.Popen([sys.executable, str(driver), source, target, "fresh", "ray", address], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 120
    while proc.poll() is None and not _ray_workers(os.getpid()) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(delay)
    killed = "nothing (the run had ended)"
    if proc.poll() is None:
        workers = _ray_workers(os.getpid()) if victim == "worker" else []
        if workers:
            os.kill(random.Random(delay).choice(workers), signal.SIGKILL)
            killed = "a Ray worker"
        else:
            os.kill(proc.pid, signal.SIGKILL)
            killed = "the coordinator"
    out, _ = proc.communicate(timeout=120)
    if killed == "the coordinator":  # Ray ends the dead driver's tasks; give it a moment
        time.sleep(1.0)
    return killed, json.loads(out.strip().splitlines()[-1]) if proc.returncode == 0 else None


def _resume(driver: Path, source: str, target: str, engine: str, address: str, cwd: Path) -> dict[str, Any]:
    out = None
    for _ in range(3):  # a kill may land before the first checkpoint: then start over
        for mode in ("resume", "fresh"):
            out = subprocess.run([sys.executable, str(driver), source, target, mode, engine, address],
                                 cwd=cwd, capture_output=True, text=True, timeout=300)
            if out.returncode == 0:
                return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]
            if mode == "resume" and "nothing to resume" not in out.stderr:
                break
    raise AssertionError(out.stderr[-2000:] if out else "not run")


@pytest.mark.slow
def test_kill_ray_worker_or_coordinator_and_resume(ray_instance: str, tmp_path: Path,
                                                    store_servers: Any) -> None:
    """Acceptance: kill -9 of a Ray worker or of the coordinator of a 4-worker Ray run at
    random points, for VEKTOR -> vmig and vmig -> pgvector; each resumed, on Ray or on local
    processes by turns; checked with the stores' own readers: 0 lost, 0 duplicated, digests
    equal to a one-worker run."""
    records = 4000
    build(tmp_path / "m.db", n=records, dims=8)
    vexchange.migrate(f"vektor:{tmp_path / 'm.db'}", tmp_path / "m.vmig.jsonl")
    sources = {"vektor": f"vektor:{tmp_path / 'm.db'}", "vmig": str(tmp_path / "m.vmig.jsonl")}
    driver = tmp_path / "driver.py"
    driver.write_text(_DRIVER)
    n = iter(range(1000))
    pairs: list[faults.Pair] = [
        ("vektor", "vektor->vmig", lambda: str(tmp_path / f"out{next(n)}.vmig.jsonl"), faults._vmig_ids),
        ("vmig", "vmig->pgvector", lambda: faults._pg_location(store_servers), faults._pg_ids),
    ]
    rng = random.Random(1919)
    for source_kind, label, new_target, native_ids in pairs:
        source = sources[source_kind]
        reference = vexchange.migrate(source, new_target(), workers=1)
        for point in range(4):  # each victim, resumed on Ray and on local processes
            target = new_target()
            delay, victim = rng.uniform(0.0, 0.8), ("worker", "coordinator")[point >= 2]
            engine = ("ray", "local")[point % 2]
            killed, done = _kill_at(driver, source, target, ray_instance, delay, victim, tmp_path)
            where = (label, point, round(delay, 2), killed, engine, "resumed" if done is None else "went on")
            if done is None:
                done = _resume(driver, source, target, engine, ray_instance, tmp_path)
            print("killed:", where, file=sys.stderr)
            assert done["status"] in ("completed", "completed_with_skips"), where
            assert done["namespaces"] == {k: v.written for k, v in reference.namespaces.items()}, where
            ids = native_ids(target)
            assert len(ids) == records, where  # 0 lost
            assert len(set(ids)) == len(ids), where  # 0 duplicated
            assert vexchange.verify(target, against=source).ok, where
