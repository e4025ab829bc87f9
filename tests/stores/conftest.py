"""Real store servers for the connector tests, started once per session on free loopback ports
and stopped by pid. When VEXTEST_STORES names a directory where `python -m
vexchange.testing.servers start DIR` already started them (as .ci/run does), those are used."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from vexchange.testing import servers


class LazyServers:
    def __init__(self) -> None:
        shared = os.environ.get("VEXTEST_STORES")
        self.shared = servers.load(Path(shared)) if shared else {}
        self.own: dict[str, servers.Server] = {}
        self.workdir: Path | None = None

    def __getitem__(self, kind: str) -> servers.Server:
        if kind in self.shared:
            return self.shared[kind]
        if kind not in self.own:
            if self.workdir is None:
                self.workdir = Path(tempfile.mkdtemp(prefix="vex-stores-"))
                self.workdir.chmod(0o755)  # postgres runs as another user and must reach it
            self.own[kind] = servers.start(kind, self.workdir)
        return self.own[kind]

    def close(self) -> None:
        servers.stop_all(self.own)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def store_servers() -> Iterator[LazyServers]:
    lazy = LazyServers()
    yield lazy
    lazy.close()


@pytest.fixture(scope="session")
def pinecone_emulator() -> Iterator[object]:
    """The project's Pinecone emulator (no Pinecone runs here), shared by the session."""
    pytest.importorskip("pinecone")
    from vexchange.testing.emulators.pinecone import PineconeEmulator

    with PineconeEmulator(api_key="emulator-key") as emulator:
        yield emulator


@pytest.fixture(scope="session")
def weaviate_emulator() -> Iterator[object]:
    """The project's Weaviate emulator (REST schema + gRPC objects; no Weaviate runs here)."""
    pytest.importorskip("weaviate")
    from vexchange.testing.emulators.weaviate import WeaviateEmulator

    with WeaviateEmulator(api_key="emulator-key") as emulator:
        yield emulator
