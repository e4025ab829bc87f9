"""VDF directories (vector-io's Parquet files and VDF_META.json): the conformance suite with
every written directory read back through ``json`` and ``pyarrow`` alone, as vdf-io reads it;
directories written by the real vdf-io read by vexchange; directories vexchange wrote imported
by the real vdf-io.

vdf-io 0.1.248 cannot be installed into the project's environment (it pins
``pinecone-client~=4.0``, whose ``pinecone`` module would replace the pinecone SDK 10 the
pinecone connector uses, and it pulls torch, litellm and every store SDK). The interop tests
run it in a separate interpreter named by ``VEXTEST_VDFIO_PYTHON`` (or this one, when it can
import ``vdf_io``), and are skipped, saying so, where neither is there. Set one up with::

    python3.11 -m venv /tmp/vdfio-venv
    /tmp/vdfio-venv/bin/pip install --no-deps vdf-io==0.1.248
    /tmp/vdfio-venv/bin/pip install numpy pandas pyarrow lancedb pylance halo pillow \\
        qdrant-client python-dotenv tqdm pydantic packaging "setuptools<81"
    export VEXTEST_VDFIO_PYTHON=/tmp/vdfio-venv/bin/python

(``--no-deps``: what vdf-io's LanceDB importer and exporter, the classes these tests drive,
import; its CLI imports every store SDK and cannot start without them all.)
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from vexchange.connectors import _registry
from vexchange.testing.conformance import ConnectorConformance, NativeRow


@pytest.fixture(autouse=True)
def vdf_connector() -> Iterator[None]:
    """The connector by name until its builtin registry row lands (a no-op then)."""
    if "vdf" not in _registry._BUILTINS:
        _registry.register("vdf", "vexchange.connectors.vdf:VdfConnector", replace=True)
    yield


def vdf_rows(location: str) -> list[NativeRow]:
    """Every row of a VDF directory through json and pyarrow: the manifest's namespace
    entries, every *.parquet under each data_path (as vdf-io's importer walks them), the
    ``text`` column and the first of ``vector_columns``."""
    root = Path(location.removeprefix("vdf://").split("?")[0])
    meta = json.loads((root / "VDF_META.json").read_text())
    rows = []
    for entries in meta["indexes"].values():
        for entry in entries:
            column = entry["vector_columns"][0] if entry["vector_columns"] else None
            for file in sorted((root / entry["data_path"]).rglob("*.parquet")):
                table = pq.read_table(file)
                vectors = table.column(column).to_pylist() if column else [None] * table.num_rows
                for text, vector in zip(table.column("text").to_pylist(), vectors, strict=True):
                    rows.append(NativeRow(text, None if vector is None
                                          else np.asarray(vector, dtype="<f4").tobytes()))
    return rows


class TestVdfDirectory(ConnectorConformance):
    """A VDF directory holds what one run wrote; each namespace is its own entry and folder."""

    same_id_in_namespaces = True

    @pytest.fixture
    def native_rows(self) -> Any:
        return vdf_rows

    @pytest.fixture
    def new_location(self, tmp_path: Path) -> Any:
        return lambda name: f"vdf://{tmp_path}/vdf-{name}"

    @pytest.fixture
    def broken_location(self, tmp_path: Path) -> str:
        blocker = tmp_path / "file"
        blocker.write_text("a file where the VDF directory should be")
        return f"vdf://{blocker}"
