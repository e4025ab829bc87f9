from __future__ import annotations

import os
from pathlib import Path

import pytest

from vexchange.testing.vektor_fixture import Fixture, build


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No VEX_* settings from the developer's shell leak into a test."""
    for key in list(os.environ):
        if key.startswith("VEX_"):
            monkeypatch.delenv(key)


@pytest.fixture
def slipstream(tmp_path: Path) -> Fixture:
    return build(tmp_path / "slipstream.db", n=300, dims=16, edge_cases=True)


@pytest.fixture
def legacy(tmp_path: Path) -> Fixture:
    return build(tmp_path / "legacy.db", n=300, dims=16, layout="legacy", edge_cases=True)
