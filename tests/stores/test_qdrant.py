"""Qdrant through qdrant-client's local mode (the same client calls as a server). A Qdrant
server cannot run here; the server path differs only in how the client is built."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vexchange.testing.conformance import ConnectorConformance, NativeRow

pytest.importorskip("qdrant_client")


def _row(payload: dict[str, Any] | None, vector: Any) -> NativeRow:
    """A point as a NativeRow: its ``text`` payload key and its default (unnamed) vector."""
    import numpy as np

    dense = vector.get("") if isinstance(vector, dict) else vector
    text = (payload or {}).get("text")
    return NativeRow(text, None if dense is None else np.asarray(dense, dtype="<f4").tobytes())


def qdrant_rows(location: str) -> list[NativeRow]:
    """Every point of the collection(s) at a local-mode location, through qdrant-client."""
    import urllib.parse

    from qdrant_client import QdrantClient

    parts = urllib.parse.urlsplit(location)
    params = dict(urllib.parse.parse_qsl(parts.query))
    client = QdrantClient(path=parts.path)
    try:
        base = params.get("collection", "memories")
        names = [base]
        if params.get("namespaces") == "collections":
            names = [c.name for c in client.get_collections().collections
                     if c.name == base or c.name.startswith(base + "__")]
        rows: list[NativeRow] = []
        for name in names:
            offset = None
            while True:
                points, offset = client.scroll(name, limit=100, offset=offset, with_payload=True,
                                               with_vectors=True)
                rows.extend(_row(p.payload, p.vector) for p in points)
                if offset is None:
                    break
        return rows
    finally:
        client.close()


def edge_rows(location: str) -> list[NativeRow]:
    """Every point of a Qdrant Edge shard, through qdrant-edge itself."""
    import urllib.parse

    import qdrant_edge as qe

    shard = qe.EdgeShard.load(urllib.parse.urlsplit(location).path)
    try:
        rows: list[NativeRow] = []
        offset = None
        while True:
            points, offset = shard.scroll(qe.ScrollRequest(
                offset=offset, limit=100, with_vector=True, with_payload=True))
            rows.extend(_row(p.payload, p.vector) for p in points)
            if offset is None:
                return rows
    finally:
        shard.close()


class TestQdrantLocal(ConnectorConformance):
    bulk = 3000

    @pytest.fixture
    def native_rows(self) -> Any:
        return qdrant_rows

    @pytest.fixture
    def new_location(self, tmp_path: Path) -> Any:
        return lambda name: f"qdrant://{tmp_path}/qdrant-{name}?collection=c-{name}"

    @pytest.fixture
    def broken_location(self) -> str:
        from vexchange.testing.servers import free_port

        return f"qdrant://127.0.0.1:{free_port()}/memories"


class TestQdrantEdge(ConnectorConformance):
    """The real Qdrant engine (segments, WAL, normalising cosine vectors), in-process."""

    expect_normalised = True

    @pytest.fixture
    def native_rows(self) -> Any:
        return edge_rows

    @pytest.fixture
    def new_location(self, tmp_path: Path) -> Any:
        pytest.importorskip("qdrant_edge")
        return lambda name: f"qdrant-edge://{tmp_path}/edge-{name}"

    @pytest.fixture
    def broken_location(self, tmp_path: Path) -> str:
        (tmp_path / "not-a-shard").mkdir()
        (tmp_path / "not-a-shard" / "stray.txt").write_text("not a shard")
        return f"qdrant-edge://{tmp_path}/not-a-shard"


class TestQdrantCollectionPerNamespace(ConnectorConformance):
    """?namespaces=collections: each namespace in its own collection."""

    same_id_in_namespaces = True
    bulk = 2000

    @pytest.fixture
    def native_rows(self) -> Any:
        return qdrant_rows

    @pytest.fixture
    def new_location(self, tmp_path: Path) -> Any:
        return lambda name: f"qdrant://{tmp_path}/qdrant-{name}?collection=c{name}&namespaces=collections"

    @pytest.fixture
    def broken_location(self) -> str:
        from vexchange.testing.servers import free_port

        return f"qdrant://127.0.0.1:{free_port()}/memories?namespaces=collections"


def test_http_statuses_decide_what_is_retried() -> None:
    """The server path's error handling (no Qdrant server runs here): 429 and 5xx are retried,
    401/403 name the API key, other 4xx name the schema."""
    import httpx
    from qdrant_client.http.exceptions import UnexpectedResponse

    from vexchange.connectors.qdrant import QdrantConnector
    from vexchange.errors import PermanentError, TransientError
    from vexchange.spec import StoreSpec

    store = QdrantConnector(StoreSpec.parse("qdrant://qdrant.example:6333/memories"))

    def failing(status: int) -> Exception:
        with pytest.raises((TransientError, PermanentError)) as caught, store.translated("upsert"):
            raise UnexpectedResponse(status, "reason", b"{}", httpx.Headers())
        return caught.value

    assert isinstance(failing(429), TransientError) and isinstance(failing(503), TransientError)
    assert "VEX_QDRANT_API_KEY" in str(failing(401))
    assert "schema" in str(failing(400))


@pytest.mark.parametrize("kind", ["qdrant", "qdrant-edge"])
@pytest.mark.parametrize("batch_size", [10, 1])
def test_ids_that_map_to_one_point_are_refused_by_name(tmp_path: Path, kind: str,
                                                        batch_size: int) -> None:
    """``plain-id`` becomes the point of its UUIDv5; a record whose id is that UUID would take
    the same point. The second is an id_conflict naming both ids (in one batch or the next,
    and on a re-run), never a silent overwrite; a UUID in upper and lower case stays two points."""
    import orjson

    from vexchange.api import migrate
    from vexchange.connectors._payload import uuid_for
    from vexchange.record import MemoryRecord, Vector
    from vexchange.testing.conformance import read_all, write_vmig

    if kind == "qdrant-edge":
        pytest.importorskip("qdrant_edge")
    lower = "550e8400-e29b-41d4-a716-446655440000"
    ids = ["plain-id", uuid_for("plain-id"), lower, lower.upper()]
    records = [MemoryRecord(id=rid, text=f"text of {rid}", namespace="ns",
                            vectors={"": Vector.from_values([1.0, 2.0, float(i)])})
               for i, rid in enumerate(ids)]
    source = write_vmig(tmp_path / "src.vmig.jsonl", records, metric="dot")
    target = (f"qdrant://{tmp_path}/db?collection=ids" if kind == "qdrant"
              else f"qdrant-edge://{tmp_path}/shard")
    for attempt in ("first", "again"):
        rejects = tmp_path / f"{attempt}.rejects.jsonl"
        receipt = migrate(source, target, batch_size=batch_size, receipt=tmp_path / "r.json",
                          rejects=rejects)
        assert receipt.counts.written == 3 and receipt.counts.skipped == {"id_conflict": 1}
        lines = [orjson.loads(line) for line in rejects.read_bytes().splitlines()]
        assert [line["id"] for line in lines] == [ids[1]], lines
        assert "plain-id" in lines[0]["detail"], lines
    back = read_all(target)
    assert sorted(back) == sorted(("ns", rid) for rid in ids if rid != ids[1])
    assert back[("ns", "plain-id")].text == "text of plain-id"


def test_edge_shard_creation_left_by_a_kill_is_redone(tmp_path: Path) -> None:
    """The engine writes a new shard's segments before its ``edge_config.json``, so vexchange
    creates it beside the target and renames it into place: a run killed mid-create leaves
    only the staging folder, which the next run removes, and an empty target folder is fine."""
    pytest.importorskip("qdrant_edge")
    from vexchange.api import migrate
    from vexchange.record import MemoryRecord, Vector
    from vexchange.testing.conformance import read_all, write_vmig

    records = [MemoryRecord(id=f"m{i}", text=f"t{i}", namespace="ns",
                            vectors={"": Vector.from_values([1.0, float(i), 0.5])}) for i in range(5)]
    source = write_vmig(tmp_path / "src.vmig.jsonl", records, metric="dot")
    (tmp_path / "shard").mkdir()  # empty: made by the user beforehand
    left = tmp_path / ".shard.creating"
    (left / "segments").mkdir(parents=True)
    (left / "segments" / "half-written").write_bytes(b"\0" * 64)
    receipt = migrate(source, f"qdrant-edge://{tmp_path}/shard", receipt=tmp_path / "r.json")
    assert receipt.counts.written == 5
    assert not left.exists() and (tmp_path / "shard" / "edge_config.json").is_file()
    assert len(edge_rows(f"qdrant-edge://{tmp_path}/shard")) == 5
    assert sorted(read_all(f"qdrant-edge://{tmp_path}/shard")) == [("ns", f"m{i}") for i in range(5)]
