"""LanceDB (embedded; the real Rust lance engine)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vexchange.testing.conformance import ConnectorConformance

pytest.importorskip("lancedb")


class TestLanceDB(ConnectorConformance):
    @pytest.fixture
    def new_location(self, tmp_path: Path) -> Any:
        return lambda name: f"lancedb://{tmp_path}/lance-{name}?table=t_{name}"

    @pytest.fixture
    def broken_location(self, tmp_path: Path) -> str:
        blocker = tmp_path / "not-a-dir"
        blocker.write_text("a file where the database directory should be")
        return f"lancedb://{blocker}?table=memories"
