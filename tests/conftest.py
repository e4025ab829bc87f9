from __future__ import annotations

import os
import subprocess
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import pytest

from vexchange.engine import read_process
from vexchange.testing.vektor_fixture import Fixture, build


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No VEX_* settings from the developer's shell leak into a test, and no secret one test
    gave the process (redact() masks those everywhere) masks words in another's messages."""
    from vexchange import errors

    for key in list(os.environ):
        if key.startswith("VEX_"):
            monkeypatch.delenv(key)
    before = set(errors._SECRETS)
    yield
    errors._SECRETS.intersection_update(before)


@pytest.fixture
def slipstream(tmp_path: Path) -> Fixture:
    return build(tmp_path / "slipstream.db", n=300, dims=16, edge_cases=True)


@pytest.fixture
def legacy(tmp_path: Path) -> Fixture:
    return build(tmp_path / "legacy.db", n=300, dims=16, layout="legacy", edge_cases=True)


@pytest.fixture
def children(monkeypatch: pytest.MonkeyPatch) -> list[subprocess.Popen[bytes]]:
    """Every child the reader starts, to check that each one has ended."""
    started: list[subprocess.Popen[bytes]] = []
    popen = subprocess.Popen

    def recording(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        child = popen(*args, **kwargs)
        started.append(child)
        return child

    monkeypatch.setattr(read_process.subprocess, "Popen", recording)
    return started


@pytest.fixture(scope="session")
def vex_npm() -> Any:
    """The published Vex 0.8.8 from npm (vexchange.testing.vex_npm), installed once into a
    cache. Skipped with the reason where npm cannot install it; under CI it must run."""
    from vexchange.testing.vex_npm import VexUnavailable, vex_cli

    try:
        return vex_cli()
    except VexUnavailable as err:
        if os.environ.get("CI"):
            pytest.fail(f"the interop tests need the published Vex and CI must not skip them: {err}")
        pytest.skip(f"the published Vex is not available here: {err}")
