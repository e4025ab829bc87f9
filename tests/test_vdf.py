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

import subprocess

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vexchange.connectors import _registry
from vexchange.testing import conformance
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

    def test_resume_after_the_process_is_killed(self, tmp_path: Path, new_location: Any,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
        """The suite's killed run, in a child process that knows the connector's name too
        (until the registry row lands)."""
        if "vdf" not in _registry._BUILTINS:
            popen = subprocess.Popen
            setup = ("from vexchange.connectors import _registry; _registry.register("
                     "'vdf', 'vexchange.connectors.vdf:VdfConnector', replace=True); ")

            def with_setup(args: list[str], **kwargs: Any) -> Any:
                return popen([*args[:-1], setup + args[-1]], **kwargs)

            monkeypatch.setattr(conformance.subprocess, "Popen", with_setup)
        super().test_resume_after_the_process_is_killed(tmp_path, new_location)


# ---------------------------------------------------------------------------- the real vdf-io


def vdfio_python() -> str:
    """The interpreter that runs vdf-io (see the module docstring); skips when there is none."""
    named = os.environ.get("VEXTEST_VDFIO_PYTHON")
    if named:
        if not Path(named).exists():
            pytest.fail(f"VEXTEST_VDFIO_PYTHON={named} does not exist")
        return named
    import importlib.util
    import sys

    if importlib.util.find_spec("vdf_io") is not None:
        return sys.executable
    why = "vdf-io is not installed here; set VEXTEST_VDFIO_PYTHON (see tests/test_vdf.py)"
    if os.environ.get("CI"):
        pytest.fail(why)  # CI installs it (like the published Vex): a missing one must not pass
    pytest.skip(why)


def run_vdfio(code: str, cwd: Path) -> str:
    """Run vdf-io's own code in its interpreter: telemetry off, no prompts, no API key."""
    env = {**os.environ, "DISABLE_TELEMETRY_VECTORIO": "1", "LANCEDB_API_KEY": "",
           "PYTHONPATH": ""}
    proc = subprocess.run([vdfio_python(), "-c", code], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout


def interop_records(n: int = 25) -> list[Any]:
    from vexchange.record import MemoryRecord, Vector

    rng = np.random.default_rng(11)
    return [MemoryRecord(
        id=f"r{i}", text=f"text {i}", created_at=1_700_000_000_000 + i,
        vectors={"": Vector(rng.standard_normal(8).astype("<f4").tobytes(), "test-model")},
        metadata={"category": "ab"[i % 2], "year": 2000 + i, "score": i / 3, "flag": i % 2 == 0,
                  "tags": ["t", str(i)]}) for i in range(n)]


@pytest.mark.slow
def test_vdfio_imports_what_vexchange_writes(tmp_path: Path) -> None:
    """vdf-io's ImportLanceDB (``import_vdf lancedb``) takes a directory vexchange wrote: every
    row lands in LanceDB with its id, its exact float32 vector (a fixed-size column, so the
    table is searchable), its text and its metadata as columns."""
    import lancedb

    from vexchange.api import migrate
    from vexchange.testing.conformance import write_vmig

    records = interop_records()
    source = write_vmig(tmp_path / "src.vmig.jsonl", records, metric="dot")
    migrate(source, f"vdf://{tmp_path}/out?index=docs", batch_size=10, receipt=tmp_path / "r.json",
            rejects=tmp_path / "r.rejects.jsonl")
    run_vdfio(
        "import os, vdf_io\n"
        "from vdf_io.import_vdf.lancedb_import import ImportLanceDB\n"
        f"ImportLanceDB.import_vdb({{'dir': {str(tmp_path / 'out')!r}, 'cwd': os.getcwd(),"
        f" 'endpoint': {str(tmp_path / 'lance')!r}, 'library_version': vdf_io.__version__,"
        " 'batch_size': 1000})\n", tmp_path)
    table = lancedb.connect(str(tmp_path / "lance")).open_table("docs")
    rows = {row["id"]: row for row in table.to_arrow().to_pylist()}
    assert len(rows) == len(records) == table.count_rows()
    for record in records:
        row = rows[record.id]
        assert np.asarray(row["vector"], dtype="<f4").tobytes() == record.vector.data  # type: ignore[union-attr]
        assert row["text"] == record.text
        assert {k: row[k] for k in record.metadata or {}} == record.metadata
    kind = table.schema.field("vector").type
    assert pa.types.is_fixed_size_list(kind) and kind.list_size == 8 and kind.value_type == pa.float32()
    near = table.search(records[3].vector.array()).limit(1).to_arrow()  # type: ignore[union-attr]
    assert near.column("id").to_pylist() == ["r3"]


@pytest.mark.slow
def test_vexchange_reads_what_vdfio_exports(tmp_path: Path) -> None:
    """vdf-io's ExportLanceDB (``export_vdf lancedb``) writes a VDF directory of a LanceDB
    table (pandas Parquet, vectors as list<float>, its own file numbering); vexchange reads
    every row back: ids, float32 vectors bit for bit, text, metadata with its types."""
    from vexchange.api import migrate
    from vexchange.testing.conformance import read_all

    run_vdfio(
        "import lancedb, numpy as np, pyarrow as pa, vdf_io\n"
        "from vdf_io.export_vdf.lancedb_export import ExportLanceDB\n"
        "vec = np.random.default_rng(3).standard_normal((30, 8)).astype('float32')\n"
        "np.save('vec.npy', vec)\n"
        "t = pa.table({'id': [f'd{i}' for i in range(30)],"
        " 'vector': pa.FixedSizeListArray.from_arrays(pa.array(vec.ravel()), 8),"
        " 'text': [f'doc {i}' for i in range(30)], 'year': list(range(30)),"
        " 'score': [i / 7 for i in range(30)], 'flag': [i % 2 == 0 for i in range(30)],"
        " 'tags': [['a', str(i)] for i in range(30)]})\n"
        "lancedb.connect('src').create_table('docs', t)\n"
        "ExportLanceDB.export_vdb({'endpoint': 'src', 'tables': 'docs', 'batch_size': 10,"
        " 'library_version': vdf_io.__version__})\n", tmp_path)
    (exported,) = tmp_path.glob("vdf_*")
    vectors = np.load(tmp_path / "vec.npy")
    got = read_all(f"vdf://{exported}")
    assert len(got) == 30
    for i in range(30):
        record = got[(None, f"d{i}")]
        assert record.vector is not None and record.vector.data == vectors[i].tobytes()
        assert record.text == f"doc {i}"
        assert record.metadata == {"year": i, "score": i / 7, "flag": i % 2 == 0, "tags": ["a", str(i)]}
        assert type(record.metadata["year"]) is int
    receipt = migrate(f"vdf://{exported}", tmp_path / "back.vmig.jsonl", receipt=tmp_path / "b.json",
                      rejects=tmp_path / "b.rejects.jsonl")
    assert receipt.counts.written == 30 and not receipt.counts.skipped
