"""Lance datasets (pylance, the ``lance`` module): the conformance suite against datasets the
real Lance engine writes and reads, datasets pylance wrote read by vexchange, and datasets
vexchange wrote opened, scanned and searched with pylance itself."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vexchange.connectors import _registry
from vexchange.testing.conformance import ConnectorConformance, NativeRow

lance = pytest.importorskip("lance")
pa = pytest.importorskip("pyarrow")


@pytest.fixture(autouse=True)
def lance_connector() -> Iterator[None]:
    """The connector by name until its builtin registry row lands (replace: a no-op then)."""
    if "lance" not in _registry._BUILTINS:
        _registry.register("lance", "vexchange.connectors.lance:LanceConnector", replace=True)
    yield


def lance_rows(location: str) -> list[NativeRow]:
    """Every row of the dataset at a location, through pylance and pyarrow alone."""
    path = location.removeprefix("lance://")
    table = lance.dataset(path).to_table()
    rows = []
    vectors = table.column("vector") if "vector" in table.column_names else None
    for i, text in enumerate(table.column("text").to_pylist()):
        cell = vectors[i] if vectors is not None else None
        dense = None if cell is None or not cell.is_valid else np.asarray(
            cell.values.to_numpy(zero_copy_only=False), dtype="<f4").tobytes()
        rows.append(NativeRow(text, dense))
    return rows


class TestLanceDataset(ConnectorConformance):
    """A Lance dataset holds what one run wrote (rows, not keys): namespaces stay apart."""

    same_id_in_namespaces = True

    @pytest.fixture
    def native_rows(self) -> Any:
        return lance_rows

    @pytest.fixture
    def new_location(self, tmp_path: Path) -> Any:
        return lambda name: f"lance://{tmp_path}/ds-{name}.lance"

    @pytest.fixture
    def broken_location(self, tmp_path: Path) -> str:
        blocker = tmp_path / "file.lance"
        blocker.write_text("a file where the dataset directory should be")
        return f"lance://{blocker}"
