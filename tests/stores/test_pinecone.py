"""Pinecone, through the official SDK, against the project's emulator of its documented API
(no Pinecone runs here): the conformance suite, injected network faults, and the limits."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

pytest.importorskip("pinecone")

from vexchange import VexError, migrate, open_store
from vexchange.checks import verify
from vexchange.testing.conformance import (
    ConnectorConformance,
    NativeRow,
    read_all,
    write_vmig,
)
from vexchange.testing.emulators.pinecone import PineconeEmulator
from vexchange.testing.faults import FaultConformance
from vexchange.testing.records import sample_records

KEY = "emulator-key"  # the session emulator's (conftest.py)


@pytest.fixture
def emulator(pinecone_emulator: PineconeEmulator) -> PineconeEmulator:
    return pinecone_emulator


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch, emulator: PineconeEmulator) -> Iterator[None]:
    monkeypatch.setenv("VEX_PINECONE_API_KEY", KEY)
    emulator.faults.clear()
    yield
    emulator.faults.clear()


def index_url(emulator: PineconeEmulator, name: str, blobs: Path | None = None, **params: str) -> str:
    query = {"controller": emulator.url, "create": "true", **params}
    if blobs is not None:
        query["blobs"] = str(blobs)
    return f"pinecone://{name}-{uuid.uuid4().hex[:8]}?" + "&".join(f"{k}={v}" for k, v in query.items())


def pinecone_rows(location: str) -> list[NativeRow]:
    """Every record of the index at a location, through the ``pinecone`` SDK itself: each
    namespace listed, each page of ids fetched; the text is metadata ``text``."""
    import urllib.parse

    import numpy as np
    from pinecone import Pinecone

    parts = urllib.parse.urlsplit(location)
    params = dict(urllib.parse.parse_qsl(parts.query))
    rows: list[NativeRow] = []
    with Pinecone(api_key=KEY, host=params.get("controller")) as client:
        host = params.get("host") or client.describe_index(parts.netloc).host
        with client.index(host=host) as index:
            names = [ns.name for page in index.list_namespaces() for ns in page.namespaces]
            for name in names:
                for page in index.list(namespace=name):
                    ids = [item.id for item in page.vectors]
                    for vector in index.fetch(ids=ids, namespace=name).vectors.values():
                        text = (vector.metadata or {}).get("text")
                        rows.append(NativeRow(text, np.asarray(vector.values, dtype="<f4").tobytes()))
    return rows


class TestPinecone(ConnectorConformance):
    named_vectors = ()
    null_vectors = False
    same_id_in_namespaces = True
    tricky_refused: ClassVar[dict[str, str]] = {
        "text-long": "metadata_too_large",  # 400,000 bytes of text; Pinecone holds 40 KB
        "cos-zero": "zero_vector",  # Pinecone refuses a dense vector of zeros
    }

    @pytest.fixture
    def new_location(self, emulator: PineconeEmulator, tmp_path: Path) -> Any:
        """Long texts of the shared tests are kept whole in a blob directory; the tricky
        corpus is written within Pinecone's own limits (no blobs), so what exceeds them is
        refused by name, and what lands is all in the index, where its own client sees it."""
        return lambda name: index_url(emulator, name, None if name == "tricky" else tmp_path / "blobs")

    @pytest.fixture
    def native_rows(self) -> Any:
        return pinecone_rows

    @pytest.fixture
    def broken_location(self) -> str:
        from vexchange.testing.servers import free_port

        return f"pinecone://gone?host=http://127.0.0.1:{free_port()}"


class TestPineconeFaults(FaultConformance):
    """429 with Retry-After, 5xx, slow answers, a persistent outage, refused records."""

    write_op, read_op = "upsert", "fetch"

    @pytest.fixture
    def new_location(self, emulator: PineconeEmulator) -> Any:
        return lambda name, **params: index_url(emulator, name, **params)

    def store_key(self, record: Any) -> str:
        from vexchange.connectors.pinecone import store_id

        return store_id(record.id)


def load(tmp_path: Path, target: str, records: list[Any], **options: Any) -> Any:
    source = write_vmig(tmp_path / f"in-{uuid.uuid4().hex[:6]}.vmig.jsonl", records, metric="dot")
    return migrate(source, target, receipt=tmp_path / "r.json", rejects=tmp_path / "r.rejects.jsonl",
                   **options)


def records(n: int, dims: int = 8, **options: Any) -> list[Any]:
    """Sample records with texts that fit in Pinecone's 40 KB of metadata."""
    return [r.replace(text=r.text[:2000]) if r.text else r
            for r in sample_records(n, dims=dims, null_vectors=False, sparse=True, **options)]


def test_requests_stay_within_pinecone_limits(tmp_path: Path, emulator: PineconeEmulator) -> None:
    """384-dim vectors with 20 KB texts: 2 MB per request binds before 1,000 vectors does; the
    emulator refuses any request over a limit, so a clean run shows the split was right."""
    data = [r.replace(text="x" * 20_000) for r in records(400, dims=384)]
    target = index_url(emulator, "limits")
    receipt = load(tmp_path, target, data, batch_size=400)
    assert receipt.counts.written == 400
    assert emulator.faults.count("upsert", 400) == 0
    assert emulator.faults.count("upsert", 200) >= 4


def test_metadata_beyond_40_kb_is_rejected_or_kept_whole_in_a_blob(
        tmp_path: Path, emulator: PineconeEmulator) -> None:
    data = records(5)
    data[2] = data[2].replace(text="é" * 30_000)
    plain = index_url(emulator, "big")
    receipt = load(tmp_path, plain, data, allow_skips=True)
    assert receipt.counts.skipped == {"metadata_too_large": 1} and receipt.counts.written == 4
    rejected = json.loads((tmp_path / "r.rejects.jsonl").read_text().splitlines()[0])
    assert rejected["record"]["text"] == data[2].text and "?blobs=" in rejected["detail"]

    blobs = tmp_path / "blobs"
    kept = index_url(emulator, "blob", blobs)
    assert load(tmp_path, kept, data).counts.written == 5
    ConnectorConformance.assert_same(data, read_all(kept))
    (blob,) = [p for p in blobs.rglob("*") if p.is_file()]
    blob.write_bytes(blob.read_bytes().replace(b"\xc3\xa9", b"e", 1))
    with open_store(kept) as store:
        items = [i for page in store.read(batch_size=10) for i in page.items]
    bad = [i for i in items if not hasattr(i, "vectors")]
    assert len(bad) == 1 and bad[0].reason == "missing_blob" and "hash" in bad[0].detail


def test_namespaces_and_ids_pinecone_cannot_hold_are_mapped_and_restored(
        tmp_path: Path, emulator: PineconeEmulator) -> None:
    base = records(4)
    data = [base[0].replace(namespace="mémoire"), base[1].replace(namespace=""),
            base[2].replace(id="ünïcode-id", id_type="str", namespace=None),
            base[3].replace(id="y" * 600, id_type="str", namespace="__default__")]
    target = index_url(emulator, "names")
    assert load(tmp_path, target, data).counts.written == 4
    ConnectorConformance.assert_same(data, read_all(target))


def test_integers_come_back_as_integers(tmp_path: Path, emulator: PineconeEmulator) -> None:
    """The service (and the emulator) hand metadata numbers back as floats."""
    data = [r.replace(metadata={"n": 3, "big": 2**62 + 1, "f": 3.0, "tags": ["a", "b"], "none": None})
            for r in records(2)]
    target = index_url(emulator, "ints")
    load(tmp_path, target, data)
    back = read_all(target)
    for record in data:
        got = back[(record.namespace, record.id)].metadata
        assert got == record.metadata and type(got["n"]) is int and type(got["f"]) is float


def test_a_missing_index_says_how_to_create_it(tmp_path: Path, emulator: PineconeEmulator) -> None:
    source = write_vmig(tmp_path / "s.vmig.jsonl", records(2))
    target = f"pinecone://absent-{uuid.uuid4().hex[:6]}?controller={emulator.url}"
    with pytest.raises(VexError) as caught:
        migrate(source, target, receipt=tmp_path / "m.json", rejects=tmp_path / "m.rej")
    assert "create=true" in str(caught.value)


def test_4900_vektor_records_to_pinecone(tmp_path: Path, emulator: PineconeEmulator,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """The size of Vex's headline example, through the CLI, with its summary and receipt."""
    from vexchange.cli import main
    from vexchange.testing import vektor_fixture

    db = vektor_fixture.build(tmp_path / "memory.db", n=4900, dims=384)
    target = index_url(emulator, "vektor")
    code = main(["migrate", f"vektor://{db.path}", target, "--receipt", str(tmp_path / "v.json")])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "Traceback" not in out + err and "4,900" in out + err
    receipt = json.loads((tmp_path / "v.json").read_text())
    assert receipt["counts"]["written"] == 4900 and receipt["status"] == "completed"
    assert receipt["versions"]["pinecone"].startswith("10.")  # the SDK that wrote it
    assert KEY not in (tmp_path / "v.json").read_text()
    report = verify(target, against=f"vektor://{db.path}")
    assert report["ok"], report


def test_an_index_vexchange_did_not_write_is_exported_whole(tmp_path: Path,
                                                             emulator: PineconeEmulator) -> None:
    from pinecone import Pinecone

    name = f"foreign-{uuid.uuid4().hex[:6]}"
    host = emulator.create_index(name, dimension=3, metric="cosine")
    index = Pinecone(api_key=KEY).index(host=host)
    index.upsert(vectors=[{"id": f"doc-{i}", "values": [0.5, i + 1.0, -0.25],
                           "metadata": {"text": f"chunk {i}", "year": 2020 + i, "tags": ["a"]}}
                          for i in range(150)], namespace="docs")
    index.upsert(vectors=[{"id": "plain", "values": [1.0, 0.0, 0.0],
                           "sparse_values": {"indices": [3, 9], "values": [0.5, 0.125]}}])
    index.close()
    back = read_all(f"pinecone://{name}?controller={emulator.url}", batch_size=40)
    assert len(back) == 151
    doc = back[("docs", "doc-7")]
    assert doc.text == "chunk 7" and doc.metadata == {"year": 2027.0, "tags": ["a"]}
    assert doc.vectors[""].tolist() == [0.5, 8.0, -0.25] and doc.source_store == "pinecone"
    plain = back[(None, "plain")]
    assert plain.sparse[""].index_array().tolist() == [3, 9] and plain.metadata is None
    with open_store(f"pinecone://{name}?host={host}") as store:
        assert store.count() == 151
        assert store.vector_spaces()[""].metric == "cosine"


def test_query_answers_nearest_first(emulator: PineconeEmulator) -> None:
    """The emulator's query endpoint, through the SDK (documented surface; the connector does
    not need it, users checking a migrated index do)."""
    from pinecone import Pinecone

    host = emulator.create_index(f"query-{uuid.uuid4().hex[:6]}", dimension=2, metric="cosine")
    index = Pinecone(api_key=KEY).index(host=host)
    try:
        index.upsert(vectors=[{"id": "east", "values": [1.0, 0.0], "metadata": {"k": "e"}},
                              {"id": "north", "values": [0.0, 1.0]},
                              {"id": "north-east", "values": [1.0, 1.0]}], namespace="ns")
        found = index.query(vector=[0.9, 0.1], top_k=2, namespace="ns", include_metadata=True)
        assert [m.id for m in found.matches] == ["east", "north-east"]
        assert found.matches[0].metadata == {"k": "e"} and found.matches[0].score > 0.99
    finally:
        index.close()


def test_an_empty_sparse_vector_and_keys_pinecone_cannot_filter_on_come_back_as_they_went_in(
        tmp_path: Path, emulator: PineconeEmulator) -> None:
    """Pinecone keeps no empty sparse vector (the record reads back without one) and refuses
    metadata keys starting with ``$``: both are kept in ``_vex``, and come back exactly."""
    from vexchange.record import SparseVector

    base = records(3)
    data = [base[0].replace(sparse={"bm25": SparseVector(b"", b"", "bm25")}),
            base[1].replace(sparse={"": SparseVector(b"", b"")}),
            base[2].replace(metadata={"$dollar": 1, "": "empty key", "$in": ["a"], "ok": -0.0})]
    target = index_url(emulator, "sparse-empty")
    receipt = load(tmp_path, target, data)
    assert receipt.counts.written == 3 and receipt.counts.skipped == {}, receipt.counts
    ConnectorConformance.assert_strictly_same(data, read_all(target))


def test_the_emulator_refuses_what_pinecone_documents_it_refuses(emulator: PineconeEmulator) -> None:
    """Raw upserts (the SDK checks some of these itself, so it would not send them): a
    metadata key starting with ``$``, a null, a nested object, a list of numbers, more than
    40 KB of metadata, an id over 512 characters, a non-ASCII id; through the SDK, an empty
    sparse vector is not kept."""
    import urllib.error
    import urllib.request

    from pinecone import Pinecone

    host = emulator.create_index(f"limits-{uuid.uuid4().hex[:6]}", dimension=2, metric="dotproduct")

    def upsert(vector: dict[str, Any]) -> int:
        body = json.dumps({"vectors": [vector]}).encode()
        request = urllib.request.Request(f"{host}/vectors/upsert", data=body, method="POST",
                                         headers={"Api-Key": KEY, "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as err:
            return err.code

    dense = [1.0, 0.0]
    for bad in ({"id": "a", "values": dense, "metadata": {"$x": 1}},
                {"id": "a", "values": dense, "metadata": {"n": None}},
                {"id": "a", "values": dense, "metadata": {"o": {"k": 1}}},
                {"id": "a", "values": dense, "metadata": {"l": [1, 2]}},
                {"id": "a", "values": dense, "metadata": {"t": "x" * 41_000}},
                {"id": "y" * 513, "values": dense}, {"id": "ü", "values": dense}):
        assert upsert(bad) == 400, bad
    assert upsert({"id": "y" * 512, "values": dense, "metadata": {"t": "x" * 40_000}}) == 200
    with Pinecone(api_key=KEY).index(host=host) as index:
        index.upsert(vectors=[{"id": "e", "values": dense,
                               "sparse_values": {"indices": [], "values": []}}])
        assert index.fetch(ids=["e"]).vectors["e"].sparse_values is None
