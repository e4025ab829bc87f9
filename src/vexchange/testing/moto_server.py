"""A local S3 server for tests: moto in server mode on loopback, a free port, stopped after.

    with MotoServer.start() as s3:          # None when moto cannot be found: skip
        s3.create_bucket("bkt")
        url = f"parquet:s3://bkt/out?endpoint_url={s3.endpoint}"

moto's server is found as ``$VEXTEST_MOTO_SERVER`` (the path of a ``moto_server`` program), a
``moto_server`` on ``PATH``, or ``moto.server`` importable here. Why a program of its own:
moto needs botocore, whose ``python-dateutil<3`` pin cannot sit in vexchange's test
environment, so it may live in a venv of its own (docs/formats/object-storage.md). The server
takes any access key; the test credentials below are fixed, and not secrets.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from types import TracebackType
from typing import Any

__all__ = ["ACCESS_KEY", "SECRET_KEY", "MotoServer", "moto_command"]

ACCESS_KEY = "vextest-access"
SECRET_KEY = "vextest-secret"
_START_SECONDS = 30.0


def moto_command() -> list[str] | None:
    """The command that runs moto's server, or None where there is none."""
    given = os.environ.get("VEXTEST_MOTO_SERVER")
    if given:
        return [given]
    found = shutil.which("moto_server")
    if found:
        return [found]
    try:
        import moto.server  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        return None
    return [sys.executable, "-m", "moto.server"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MotoServer:
    """One moto server process on 127.0.0.1; ``endpoint`` is its URL."""

    def __init__(self, process: subprocess.Popen[bytes], port: int) -> None:
        self.process, self.port = process, port
        self.endpoint = f"http://127.0.0.1:{port}"

    @classmethod
    def start(cls) -> MotoServer | None:
        command = moto_command()
        if command is None:
            return None
        port = _free_port()
        process = subprocess.Popen([*command, "-H", "127.0.0.1", "-p", str(port)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        server = cls(process, port)
        deadline = time.monotonic() + _START_SECONDS
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"moto_server exited with {process.returncode}")
            try:
                urllib.request.urlopen(f"{server.endpoint}/moto-api/", timeout=1).close()
                return server
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        server.stop()
        raise RuntimeError(f"moto_server did not answer within {_START_SECONDS:.0f} s")

    def env(self) -> dict[str, str]:
        """The AWS_* variables that point a client at this server."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": self.endpoint}

    def filesystem(self) -> object:
        """A pyarrow S3 file system on this server (for a test's own looks at the bucket)."""
        import pyarrow.fs as pafs

        return pafs.S3FileSystem(access_key=ACCESS_KEY, secret_key=SECRET_KEY, region="us-east-1",
                                 endpoint_override=f"127.0.0.1:{self.port}", scheme="http",
                                 allow_bucket_creation=True, allow_bucket_deletion=True)

    def create_bucket(self, name: str) -> None:
        self.filesystem().create_dir(name)  # type: ignore[attr-defined]

    def reset(self) -> None:
        """Forget every bucket and object (moto's own reset call)."""
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=10).close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def __enter__(self) -> MotoServer:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def serving(bucket: str) -> Iterator[MotoServer]:
    """The body of a pytest fixture: a server with ``bucket`` made, for the fixture's scope
    (``yield from serving("bkt")``). Without a moto server the test is skipped, and fails
    under CI (``CI`` set), where .ci/run installs one."""
    import pytest

    server = MotoServer.start()
    if server is None:
        why = "no moto server: set VEXTEST_MOTO_SERVER or install moto[server]"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    with server:
        server.create_bucket(bucket)
        yield server


def set_aws_environment(server: MotoServer, monkeypatch: Any) -> dict[str, str]:
    """The AWS_* variables for ``server`` set through pytest's ``monkeypatch`` (how a user's
    shell gives credentials); returns them."""
    env = server.env()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env
