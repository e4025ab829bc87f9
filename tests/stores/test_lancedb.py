"""LanceDB (embedded; the real Rust lance engine)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vexchange.testing.conformance import ConnectorConformance, NativeRow

pytest.importorskip("lancedb")


def lance_rows(location: str) -> list[NativeRow]:
    """Every row of the table at a location, through lancedb and pyarrow themselves."""
    import urllib.parse

    import lancedb
    import numpy as np

    parts = urllib.parse.urlsplit(location)
    params = dict(urllib.parse.parse_qsl(parts.query))
    table = lancedb.connect(parts.path).open_table(params.get("table", "memories")).to_arrow()
    rows: list[NativeRow] = []
    for text, vector in zip(table.column("text").to_pylist(), table.column("vector"), strict=False):
        dense = None if not vector.is_valid else np.asarray(
            vector.values.to_numpy(zero_copy_only=False), dtype="<f4").tobytes()
        rows.append(NativeRow(text, dense))
    return rows


class TestLanceDB(ConnectorConformance):
    @pytest.fixture
    def native_rows(self) -> Any:
        return lance_rows

    @pytest.fixture
    def new_location(self, tmp_path: Path) -> Any:
        return lambda name: f"lancedb://{tmp_path}/lance-{name}?table=t_{name}"

    @pytest.fixture
    def broken_location(self, tmp_path: Path) -> str:
        blocker = tmp_path / "not-a-dir"
        blocker.write_text("a file where the database directory should be")
        return f"lancedb://{blocker}?table=memories"
