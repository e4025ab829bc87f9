"""Object storage for the Arrow file connectors, against a real S3 server: moto in server mode
on loopback (``vexchange.testing.moto_server``), reached through pyarrow's own S3 client.

The conformance suite runs for ``parquet:s3://...`` (the bucket read back with pyarrow alone);
pinecone-bulk and milvus-bulk round-trip the tricky corpus; credentials given as secrets
never reach the receipt; and a run killed mid-upload (a forked-off child ending with
``os._exit`` inside a data file's multipart upload, then one killed while completing) leaves
nothing a reader takes as a complete dataset. docs/formats/object-storage.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pytest

from vexchange import open_store
from vexchange.api import migrate
from vexchange.errors import UsageError
from vexchange.testing.conformance import ConnectorConformance, NativeRow, read_all, write_vmig
from vexchange.testing.moto_server import (
    ACCESS_KEY,
    SECRET_KEY,
    MotoServer,
    serving,
    set_aws_environment,
)
from vexchange.testing.records import sample_records
from vexchange.testing.tricky import tricky_records

BUCKET = "vex-bucket"
KILLED = 137


@pytest.fixture(scope="module")
def s3() -> Iterator[MotoServer]:
    yield from serving(BUCKET)


@pytest.fixture
def aws_env(s3: MotoServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The AWS_* variables for the server (how a user's shell gives credentials)."""
    return set_aws_environment(s3, monkeypatch)


def bucket(s3: MotoServer) -> Any:
    return s3.filesystem()


def keys(s3: MotoServer, prefix: str) -> list[str]:
    infos = bucket(s3).get_file_info(pafs.FileSelector(f"{BUCKET}/{prefix}", recursive=True,
                                                       allow_not_found=True))
    return sorted(i.path[len(BUCKET) + 1:] for i in infos if i.type == pafs.FileType.File)


def s3_rows(s3: MotoServer) -> Callable[[str], list[NativeRow]]:
    def rows(location: str) -> list[NativeRow]:
        key = location.split("s3://", 1)[1].split("?")[0]
        table = pads.dataset(f"{key}/data", format="parquet", filesystem=bucket(s3)).to_table()
        return [NativeRow(text, None if vec is None else np.asarray(vec, "<f4").tobytes())
                for text, vec in zip(table.column("text").to_pylist(), table.column("vector").to_pylist(),
                                     strict=True)]
    return rows


class TestParquetOnS3(ConnectorConformance):
    same_id_in_namespaces = True

    @pytest.fixture
    def new_location(self, aws_env: dict[str, str], request: pytest.FixtureRequest) -> Any:
        test = request.node.name.replace("[", "-").replace("]", "")
        return lambda name: f"parquet:s3://{BUCKET}/{test}/out-{name}.parquet"

    @pytest.fixture
    def broken_location(self, aws_env: dict[str, str], s3: MotoServer) -> str:
        with bucket(s3).open_output_stream(f"{BUCKET}/broken/notes.txt") as handle:
            handle.write(b"a file vexchange did not write")
        return f"parquet:s3://{BUCKET}/broken"

    @pytest.fixture
    def native_rows(self, s3: MotoServer) -> Any:
        return s3_rows(s3)


def _export(tmp_path: Path, records: list[Any], target: str, **options: Any) -> Any:
    source = write_vmig(tmp_path / "src.vmig.jsonl", records, metric="cosine")
    return migrate(source, target, receipt=tmp_path / "x.json", rejects=tmp_path / "x.rejects.jsonl",
                   **options)


@pytest.mark.parametrize("connector", ["parquet", "pinecone-bulk", "milvus-bulk", "vdf"])
def test_the_tricky_corpus_round_trips_through_s3(tmp_path: Path, aws_env: dict[str, str], s3: MotoServer,
                                                  connector: str) -> None:
    """Every Arrow connector to S3 and back: what it holds comes back exactly, and what it
    refuses is refused by name, the same as on a local disk."""
    records = tricky_records(dims=8, named=("title",) if connector != "pinecone-bulk" else ())
    (tmp_path / "l").mkdir()
    local = _export(tmp_path / "l", records, f"{connector}://{tmp_path}/local")
    receipt = _export(tmp_path, records, f"{connector}:s3://{BUCKET}/tricky-{connector}")
    assert receipt.counts == local.counts
    assert receipt.target["location"] == f"s3://{BUCKET}/tricky-{connector}"
    assert not keys(s3, f"tricky-{connector}.partial") and not keys(s3, f"tricky-{connector}.staging")
    want = read_all(f"{connector}://{tmp_path}/local")
    got = read_all(f"{connector}:s3://{BUCKET}/tricky-{connector}")
    assert got.keys() == want.keys()
    ConnectorConformance.assert_strictly_same(list(want.values()), got)


def test_secrets_as_flags_and_never_in_the_receipt(tmp_path: Path, s3: MotoServer,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    records = list(sample_records(40, dims=4, seed=2))
    target = f"parquet:s3://{BUCKET}/flags?endpoint_url={s3.endpoint}&region=us-east-1"
    _export(tmp_path, records, target, target_secrets={"key": ACCESS_KEY, "secret": SECRET_KEY})
    text = (tmp_path / "x.json").read_text()
    assert SECRET_KEY not in text and ACCESS_KEY not in text
    assert f"s3://{BUCKET}/flags" in text
    store_secrets = {"key": ACCESS_KEY, "secret": SECRET_KEY}
    with open_store(target, secrets=store_secrets) as store:
        assert store.count() == 40
    with pytest.raises(UsageError, match="both the key and the secret"):
        _export(tmp_path, records, target, target_secrets={"key": ACCESS_KEY})
    with pytest.raises(UsageError, match="no credentials in its URL") as err:
        _export(tmp_path, records, f"parquet:s3://{ACCESS_KEY}:{SECRET_KEY}@{BUCKET}/x")
    assert SECRET_KEY not in str(err.value)
    with pytest.raises(UsageError, match="names a bucket, not a prefix"):
        _export(tmp_path, records, f"parquet:s3://{BUCKET}")


def test_a_rerun_replaces_an_s3_output_and_never_a_foreign_prefix(tmp_path: Path, aws_env: dict[str, str],
                                                                  s3: MotoServer) -> None:
    records = list(sample_records(30, dims=4, seed=1))
    target = f"parquet:s3://{BUCKET}/rerun"
    _export(tmp_path, records, target)
    _export(tmp_path, records[:10], target)
    assert len(read_all(target)) == 10
    assert keys(s3, "rerun.staging") == [] and keys(s3, "rerun.partial") == []
    assert keys(s3, "rerun") == ["rerun/README.md", "rerun/data/train-00000-of-00001.parquet",
                                 "rerun/vexchange.json"]
    with bucket(s3).open_output_stream(f"{BUCKET}/theirs/keep.txt") as handle:
        handle.write(b"keep me")
    with pytest.raises(UsageError, match="did not write"):
        _export(tmp_path, records, f"parquet:s3://{BUCKET}/theirs")
    assert keys(s3, "theirs") == ["theirs/keep.txt"]


def test_foreign_parquet_in_a_bucket_reads(tmp_path: Path, aws_env: dict[str, str], s3: MotoServer) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    vectors = np.random.default_rng(4).standard_normal((12, 3)).astype("<f4")
    table = pa.table({"id": [f"r{i}" for i in range(12)], "embedding": vectors.tolist(),
                      "label": ["x"] * 12})
    pq.write_table(table, f"{BUCKET}/foreign/part-0.parquet", filesystem=bucket(s3))
    got = read_all(f"parquet:s3://{BUCKET}/foreign")
    assert got[(None, "r5")].vectors[""].data == vectors[5].tobytes()
    assert got[(None, "r5")].metadata == {"label": "x"}


def test_a_vdf_rerun_on_s3_replaces_it_and_a_cut_short_one_is_refused(
        tmp_path: Path, aws_env: dict[str, str], s3: MotoServer) -> None:
    """VDF's completion mark is ``VDF_META.json`` (what vdf-io reads first): copied last; an
    output without it beside a ``.partial`` holding one is refused, and a rerun replaces it."""
    records = list(sample_records(20, dims=4, seed=6))
    target = f"vdf:s3://{BUCKET}/vdf-out"
    _export(tmp_path, records, target)
    _export(tmp_path, records[:5], target)
    assert len(read_all(target)) == 5
    fs = bucket(s3)
    fs.copy_file(f"{BUCKET}/vdf-out/VDF_META.json", f"{BUCKET}/vdf-out.partial/VDF_META.json")
    fs.delete_file(f"{BUCKET}/vdf-out/VDF_META.json")
    with pytest.raises(UsageError, match="unfinished"):
        read_all(target)
    _export(tmp_path, records, target)
    assert len(read_all(target)) == 20 and not keys(s3, "vdf-out.partial")


def test_a_memory_url_through_fsspec(tmp_path: Path) -> None:
    """Any fsspec URL works the same way (``memory://`` here: fsspec's own file system)."""
    pytest.importorskip("fsspec")
    records = tricky_records(dims=8, named=("title",))
    _export(tmp_path, records, "parquet:memory://vex/tricky")
    ConnectorConformance.assert_strictly_same(records, read_all("parquet:memory://vex/tricky"))


# ----------------------------------------------------------------------------- interruptions

_CHILD = textwrap.dedent("""
    import os, sys
    import pyarrow.parquet as pq
    from vexchange.api import migrate
    from vexchange.connectors import _arrow

    where, after = sys.argv[1], int(sys.argv[2])
    calls = [0]

    def killer(original):
        def wrapped(*args, **kwargs):
            calls[0] += 1
            if calls[0] > after:
                os._exit(137)  # like SIGKILL: nothing flushed, no upload completed
            return original(*args, **kwargs)
        return wrapped

    if where == "upload":  # inside a data file: row groups already streamed as parts
        pq.ParquetWriter.write_table = killer(pq.ParquetWriter.write_table)
    else:  # while completing: after some objects were copied into place
        _arrow.ObjectFiles.publish_one = killer(_arrow.ObjectFiles.publish_one)
    migrate(sys.argv[3], sys.argv[4], receipt=sys.argv[5], rejects=sys.argv[5] + ".rejects",
            batch_size=250)
""")


def _run_killed(tmp_path: Path, env: dict[str, str], where: str, after: int, source: Path,
                target: str) -> None:
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    done = subprocess.run([sys.executable, str(script), where, str(after), str(source), target,
                           str(tmp_path / f"{where}.receipt.json")],
                          env={**os.environ, **env}, capture_output=True, timeout=240, check=False)
    assert done.returncode == KILLED, done.stderr.decode()[-2000:]


def _uploads_in_progress(s3: MotoServer) -> list[str]:
    with urllib.request.urlopen(f"{s3.endpoint}/{BUCKET}?uploads", timeout=10) as answer:
        body = answer.read().decode()
    return [part.split("</Key>")[0] for part in body.split("<Key>")[1:]]


def _nothing_complete(s3: MotoServer, prefix: str, target: str) -> None:
    """What a reader sees: vexchange refuses the location; pyarrow's dataset reader finds no
    Parquet file under the output's prefix."""
    with pytest.raises(UsageError, match=r"does not exist|unfinished"):
        read_all(target)
    found = [k for k in keys(s3, prefix) if k.endswith(".parquet")]
    assert not found or f"{prefix}/vexchange.json" not in keys(s3, prefix)


@pytest.mark.slow
def test_a_run_killed_mid_upload_leaves_nothing_that_looks_complete(
        tmp_path: Path, aws_env: dict[str, str], s3: MotoServer) -> None:
    """15 MB of vectors in one data file, in row groups of 500 rows: the child dies after nine
    row groups (14 MB) went into the file's multipart upload. The upload stays open (moto lists it)
    and no object exists at the file's key, nor at the output; a rerun then completes it."""
    records = list(sample_records(5000, dims=768, null_vectors=False, seed=9))
    source = write_vmig(tmp_path / "big.vmig.jsonl", records, metric="cosine")
    target = f"parquet:s3://{BUCKET}/killed?row_group=500"
    _run_killed(tmp_path, aws_env, "upload", 9, source, target)
    assert keys(s3, "killed") == [] and keys(s3, "killed.partial") == []
    assert "killed.partial/data/train-00000-of-00001.parquet" in _uploads_in_progress(s3)
    assert keys(s3, "killed.staging")  # the staged batches wait for a rerun
    _nothing_complete(s3, "killed", target)
    migrate(str(source), target, receipt=tmp_path / "r.json", rejects=tmp_path / "r.rejects")
    got = read_all(target)
    assert len(got) == 5000 and got[(None, records[7].id)].vectors[""].data == records[7].vectors[""].data


def test_a_run_killed_while_completing_leaves_nothing_that_looks_complete(
        tmp_path: Path, aws_env: dict[str, str], s3: MotoServer) -> None:
    """Completion copies the finished objects into place, the manifest last: killed after the
    first copy, the output holds a data file but no manifest, and vexchange refuses it as an
    unfinished output; an earlier output's manifest went first, so it too is never taken for
    the new one. A rerun completes it."""
    records = list(sample_records(50, dims=4, seed=3))
    source = write_vmig(tmp_path / "s.vmig.jsonl", records, metric="cosine")
    target = f"parquet:s3://{BUCKET}/completing"
    migrate(str(source), target, receipt=tmp_path / "first.json", rejects=tmp_path / "first.rejects")
    _run_killed(tmp_path, aws_env, "publish", 1, source, target)
    left = keys(s3, "completing")
    assert "completing/vexchange.json" not in left and len(left) == 1
    assert "completing.partial/vexchange.json" in keys(s3, "completing.partial")
    with pytest.raises(UsageError, match="unfinished"):
        read_all(target)
    migrate(str(source), target, receipt=tmp_path / "r.json", rejects=tmp_path / "r.rejects")
    assert len(read_all(target)) == 50
    assert keys(s3, "completing.partial") == []
