"""``--engine ray``: the shards of a parallel run as Ray tasks. docs/engine.md, "Ray".

The plan, the checkpoint and the merge are the coordinator's (engine/parallel.py), exactly as
for local processes; this module only runs ``parallel.run_shard(task)`` as one Ray task per
shard and hands each result (reported through Ray: the task's return value) to
``Coordinator.settle``. So a run started here resumes here or on local processes, and the
other way round. It is the only module that imports ``ray`` (the ``ray`` extra).

Secrets are never in a task's arguments, in ``runtime_env`` (Ray keeps it in the job's
record, shown by ``ray list jobs`` and the dashboard) or in a log. A Ray worker takes them from
its node's environment: ``VEX_SOURCE_SECRET_<NAME>`` / ``VEX_TARGET_SECRET_<NAME>`` (the
``--source-secret`` / ``--target-secret`` of the run), or the connectors' own
``VEX_<CONNECTOR>_<NAME>``. A local Ray instance that this module starts gets the run's
secrets that way: they are in the environment the instance starts with, and the worker
processes inherit it. A Ray instance that was running already (``--ray-address``, ``RAY_ADDRESS``,
or a process that called ``ray.init``) cannot be handed them: a run that has secrets of its own
is refused there, naming the variables to set on every node.

Failures: a task whose Ray worker died (kill -9, the node lost, Ray's memory monitor) or whose
shard failed with a transient error runs again at once on its shard, from the shard's
checkpoint, ``retries`` attempts in all (Ray's own task retries are off, so the count is the
engine's); anything else stops the run with the shard named.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import MissingDependencyError, UsageError
from . import parallel
from .options import RunOptions

try:
    import ray
    import ray.exceptions
except ImportError as err:  # the extra is missing: a usage error, never a traceback
    raise MissingDependencyError("Ray", "ray", "ray", kind="engine") from err

__all__ = ["RayExecutor", "secret_variable", "shard_task"]

_ROLES = ("source", "target")
_DIED = (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError, ray.exceptions.ObjectLostError,
         ray.exceptions.OutOfMemoryError, ray.exceptions.TaskCancelledError)
"""Errors that say the task's worker went away, not that the shard failed: run it again."""
_GATE_WAIT_S = 0.05


def secret_variable(role: str, name: str) -> str:
    """The variable a Ray worker reads one secret of the run from: ``VEX_TARGET_SECRET_API_KEY``
    for ``--target-secret api_key=...``."""
    return f"VEX_{role.upper()}_SECRET_{name.upper().replace('-', '_')}"


def _secrets_from_environment() -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {role: {} for role in _ROLES}
    for role in _ROLES:
        prefix = secret_variable(role, "")
        for name, value in os.environ.items():
            if name.startswith(prefix) and len(name) > len(prefix):
                found[role][name[len(prefix):].lower()] = value
    return found


def shard_task(task: dict[str, Any]) -> dict[str, Any]:
    """One shard, in a Ray worker: the secrets from this node's environment, then
    ``run_shard``. The run folder must be the coordinator's (a shared filesystem on a
    cluster): a node that does not see it fails the shard, permanently, naming the node."""
    folder = Path(task["folder"])
    if not folder.is_dir():
        return {"status": "failed", "transient": False,
                "error": f"the run folder {folder} is not visible on Ray node {socket.gethostname()}:"
                         " every node needs the run files (and a file source or target) at the same"
                         " path, on a shared filesystem (docs/engine.md, Ray)"}
    parallel.use_secrets(_secrets_from_environment())
    return parallel.run_shard(task)


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """``values`` in this process's environment while a local Ray instance starts (its
    processes inherit it), then the environment as it was."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class RayExecutor:
    """The shards as Ray tasks on the instance the options name: one already connected in
    this process, ``ray_address`` (or ``RAY_ADDRESS``), else a local instance started here
    with ``workers`` CPUs and stopped at the end."""

    def __init__(self, options: RunOptions, secrets: Mapping[str, Mapping[str, str]]) -> None:
        self.options = options
        self.owned = False
        """Whether this executor connected (then ``close`` disconnects, and a local instance
        it started stops)."""
        values = {secret_variable(role, name): value
                  for role in _ROLES for name, value in secrets.get(role, {}).items()}
        address = options.ray_address or os.environ.get("RAY_ADDRESS") or None
        if (ray.is_initialized() or address) and values:
            raise UsageError(
                "a running Ray instance cannot be handed this run's secrets: its workers read"
                " them from their own environment",
                hint="set " + ", ".join(sorted(values)) + " in the environment of every Ray node"
                     " (before `ray start`), and give no --source-secret/--target-secret or URL"
                     " password")
        if ray.is_initialized():
            return
        try:
            if address:
                ray.init(address=address, include_dashboard=False, log_to_driver=False,
                         logging_level=logging.WARNING)
            else:
                with _environment(values):
                    ray.init(address="local", num_cpus=max(1, options.worker_count()),
                             include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as err:
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            raise UsageError(f"could not connect to {where}: {err}",
                             hint="check --ray-address (ray://HOST:10001, HOST:6379 or auto)"
                                  " and that the cluster runs the same Ray version") from None
        self.owned = True

    def max_shards(self) -> int:
        """``workers``, or for ``auto`` the CPUs of the whole Ray cluster."""
        if self.options.workers == "auto":
            resources: Any = ray.cluster_resources()  # type: ignore[no-untyped-call]
            return max(1, int(resources.get("CPU", 1)))
        return self.options.worker_count()

    def close(self) -> None:
        if self.owned:
            ray.shutdown()
            self.owned = False

    def run(self, coordinator: parallel.Coordinator) -> None:
        """Every pending shard submitted at once (Ray schedules them on free CPUs); each
        result settled as it arrives, a shard to run again resubmitted at once."""
        remote = ray.remote(num_cpus=1, max_retries=0)(shard_task)
        running: dict[Any, int] = {}

        def submit(index: int) -> Any:
            ref = remote.remote(coordinator.task(index))
            running[ref] = index
            return ref

        pending = coordinator.pending()
        if pending and coordinator.take_gate():  # the first shard alone until it has written
            first = submit(pending[0])
            while not ray.wait([first], timeout=_GATE_WAIT_S)[0] and not coordinator.has_started(pending[0]):
                pass
        for index in pending:
            if index not in running.values():
                submit(index)
        failures: dict[int, Exception] = {}
        while running:
            ready, _ = ray.wait(list(running), num_returns=1)
            index = running.pop(ready[0])
            error = coordinator.settle(index, self._result(ready[0]))
            if error is not None:
                failures[index] = error
            elif index in coordinator.pending():
                submit(index)  # transient, or its worker died: again from its checkpoint
        coordinator.save()
        if failures:
            raise failures[min(failures)]

    @staticmethod
    def _result(ref: Any) -> dict[str, Any]:
        """The task's result, or what Ray says went wrong as a shard's failure."""
        try:
            result: dict[str, Any] = ray.get(ref)
            return result
        except _DIED as err:
            return parallel.died(f"its Ray worker died ({type(err).__name__})")
        except ray.exceptions.RayTaskError as err:
            cause = err.cause if isinstance(err.cause, BaseException) else err
            return {"status": "failed", "transient": False, "error": f"{type(cause).__name__}: {cause}"}
        except ray.exceptions.RayError as err:
            return {"status": "failed", "transient": False, "error": f"{type(err).__name__}: {err}"}
