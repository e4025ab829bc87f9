"""Chroma 1.x, embedded and as a real `chroma run` server, through the conformance suite."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from vexchange.api import migrate
from vexchange.record import MemoryRecord, Vector
from vexchange.testing.conformance import ConnectorConformance, NativeRow, read_all, write_vmig
from vexchange.testing.tricky import strict_form

pytest.importorskip("chromadb")


def chroma_rows(location: str) -> list[NativeRow]:
    """Every row of the collection(s) at a location, through chromadb itself."""
    import urllib.parse

    import chromadb
    import numpy as np
    from chromadb.config import Settings

    parts = urllib.parse.urlsplit(location)
    params = dict(urllib.parse.parse_qsl(parts.query))
    if parts.port:
        client: Any = chromadb.HttpClient(host=parts.hostname, port=parts.port)
        names = [parts.path.strip("/")]
    else:
        # the settings vexchange uses: Chroma keeps one client per path and refuses others
        client = chromadb.PersistentClient(path=parts.path,
                                           settings=Settings(anonymized_telemetry=False))
        names = [params.get("collection", "memories")]
    if params.get("namespaces") == "collections":
        base = names[0]
        names = [c.name for c in client.list_collections()
                 if c.name == base or c.name.startswith(base + "__")]
    rows: list[NativeRow] = []
    for name in names:
        got = client.get_collection(name, embedding_function=None).get(
            include=["documents", "embeddings"])
        for doc, emb in zip(got["documents"], got["embeddings"], strict=False):
            rows.append(NativeRow(doc, np.asarray(emb, dtype="<f4").tobytes()))
    return rows


class _ChromaNative:
    @pytest.fixture
    def native_rows(self) -> Any:
        return chroma_rows


class TestChromaEmbedded(_ChromaNative, ConnectorConformance):
    named_vectors = ()
    null_vectors = False

    @pytest.fixture
    def new_location(self, tmp_path: Path) -> Any:
        return lambda name: f"chroma://{tmp_path}/chroma-{name}?collection=c-{name}"

    @pytest.fixture
    def broken_location(self, tmp_path: Path) -> str:
        blocker = tmp_path / "not-a-dir"
        blocker.write_text("a file where the database directory should be")
        return f"chroma://{blocker}?collection=memories"


class TestChromaServer(_ChromaNative, ConnectorConformance):
    named_vectors = ()
    null_vectors = False
    bulk = 3000

    @pytest.fixture
    def new_location(self, store_servers: Any) -> Any:
        server = store_servers["chroma"]
        run = uuid.uuid4().hex[:10]
        return lambda name: f"chroma://{server.host}:{server.port}/t{run}-{name}"

    @pytest.fixture
    def broken_location(self) -> str:
        from vexchange.testing.servers import free_port

        return f"chroma://127.0.0.1:{free_port()}/memories"


class TestChromaCollectionPerNamespace(_ChromaNative, ConnectorConformance):
    named_vectors = ()
    null_vectors = False
    same_id_in_namespaces = True
    bulk = 2000

    @pytest.fixture
    def new_location(self, tmp_path: Path) -> Any:
        return lambda name: f"chroma://{tmp_path}/chroma-{name}?collection=c-{name}&namespaces=collections"

    @pytest.fixture
    def broken_location(self) -> str:
        from vexchange.testing.servers import free_port

        return f"chroma://127.0.0.1:{free_port()}/memories?namespaces=collections"


def _native_metadata(path: Path, collection: str) -> dict[str, Any]:
    """Each record's metadata as Chroma holds it, by id."""
    import chromadb
    from chromadb.config import Settings

    client = chromadb.PersistentClient(path=str(path), settings=Settings(anonymized_telemetry=False))
    got = client.get_collection(collection, embedding_function=None).get(include=["metadatas"])
    return dict(zip(got["ids"], got["metadatas"], strict=False))


def _record(rid: str, metadata: dict[str, Any]) -> MemoryRecord:
    return MemoryRecord(id=rid, text=f"text of {rid}", metadata=metadata,
                        vectors={"": Vector.from_values([1.0, 2.0, 3.0])})


def _load(tmp_path: Path, target: str, records: list[MemoryRecord], name: str) -> Any:
    source = write_vmig(tmp_path / f"{name}.vmig.jsonl", records, metric="dot")
    return migrate(source, target, receipt=tmp_path / f"{name}.json",
                   rejects=tmp_path / f"{name}.rejects.jsonl")


def test_an_update_replaces_the_metadata(tmp_path: Path) -> None:
    """Chroma merges an upsert's metadata into the old one; vexchange's update must not: a key
    the new version lacks is gone, in vexchange's view and in Chroma's own."""
    target = f"chroma://{tmp_path}/db?collection=updates"
    _load(tmp_path, target, [_record("r", {"kept": 1, "stale": "old", "nested": {"a": 1}})], "first")
    new = _record("r", {"kept": 2})
    receipt = _load(tmp_path, target, [new], "second")
    assert receipt.counts.written == 1, receipt.counts
    back = read_all(target)[(None, "r")]
    assert strict_form(back) == strict_form(new), back
    held = _native_metadata(tmp_path / "db", "updates")["r"]
    assert held["kept"] == 2 and "stale" not in held, held
    assert "stale" not in held["_vex"] and "nested" not in held["_vex"], held


def test_keys_chroma_refuses_are_kept_in_vex(tmp_path: Path) -> None:
    """The empty key, ``$``/``#`` keys and ``chroma:document`` would fail Chroma's whole batch;
    they go to ``_vex`` and the records land whole, the other keys stay filterable."""
    target = f"chroma://{tmp_path}/db?collection=keys"
    odd = {"$op": 1, "#field": 2.5, "": "empty", "chroma:document": "doc", "plain": "yes"}
    records = [_record("odd", odd), _record("fine", {"plain": "too"})]
    receipt = _load(tmp_path, target, records, "keys")
    assert (receipt.counts.written, receipt.counts.skipped_total) == (2, 0), receipt.counts
    back = read_all(target)
    assert [strict_form(back[(None, r.id)]) for r in records] == [strict_form(r) for r in records]
    held = _native_metadata(tmp_path / "db", "keys")["odd"]
    assert held["plain"] == "yes" and not set(odd) - {"plain"} & set(held), held


def test_a_record_chroma_refuses_is_a_named_reject(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A refusal the connector cannot foresee (here, faked) fails neither the batch nor the run:
    a key of a kind Chroma newly refuses goes to ``_vex``; a record Chroma refuses whatever its
    metadata is one counted reject naming it, and the rest of the batch lands."""
    from chromadb.api.models.Collection import Collection
    from chromadb.errors import InvalidArgumentError

    real = Collection.upsert

    def picky(self: Any, *, ids: Any, metadatas: Any, **rest: Any) -> Any:
        if "refused-id" in ids or any("new-rule" in (m or {}) for m in metadatas):
            raise InvalidArgumentError("Validation error: metadatas: Invalid metadata at index 0")
        return real(self, ids=ids, metadatas=metadatas, **rest)

    monkeypatch.setattr(Collection, "upsert", picky)
    target = f"chroma://{tmp_path}/db?collection=picky"
    records = [_record("a", {"x": 1}), _record("refused-id", {"x": 2}),
               _record("b", {"new-rule": True, "x": 3}), _record("c", {})]
    receipt = _load(tmp_path, target, records, "picky")
    assert receipt.counts.written == 3 and receipt.counts.skipped == {"refused_by_store": 1}
    lines = (tmp_path / "picky.rejects.jsonl").read_text().splitlines()
    assert len(lines) == 1 and "refused-id" in lines[0] and "'x'" in lines[0], lines
    back = read_all(target)
    kept = [r for r in records if r.id != "refused-id"]
    assert sorted(back) == sorted((None, r.id) for r in kept)
    assert all(strict_form(back[(None, r.id)]) == strict_form(r) for r in kept)


def test_a_collection_the_run_creates_is_not_searched_for_ids_it_cannot_hold(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Into a new collection, only ids sent before can be held: no batch asks Chroma for its
    ids. Into the same collection again, every batch does (an update, a namespace conflict)."""
    from chromadb.api.models.Collection import Collection

    asked: list[int] = []
    original = Collection.get

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("ids") is not None:
            asked.append(len(kwargs["ids"]))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Collection, "get", counting)
    records = [_record(f"r{i}", {"i": i}) for i in range(30)]
    source = write_vmig(tmp_path / "s.vmig.jsonl", records, metric="dot")
    target = f"chroma://{tmp_path}/db?collection=fresh"
    first = migrate(source, target, batch_size=7)
    assert first.counts.written == 30 and not asked
    again = migrate(source, target, batch_size=7)
    assert again.counts.written == 30 and sum(asked) == 30
    assert set(_native_metadata(tmp_path / "db", "fresh")) == {r.id for r in records}
    assert migrate(source, f"chroma://{tmp_path}/db?collection=dry", dry_run=True).counts.written == 30
    import chromadb
    from chromadb.config import Settings

    client = chromadb.PersistentClient(path=str(tmp_path / "db"),
                                       settings=Settings(anonymized_telemetry=False))
    assert "dry" not in [c.name for c in client.list_collections()]  # a dry run creates nothing
