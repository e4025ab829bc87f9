"""New vectors on the way into real stores: re-embedding from text into a target of another
size (PostgreSQL + pgvector), keeping the old vector beside the new one (LanceDB), and
translating with a trained adapter; the receipt says what was re-embedded or adapted."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("static_model")
pytest.importorskip("psycopg")

from vexchange import migrate
from vexchange.adapters import train_adapter
from vexchange.cli import main
from vexchange.embed import get_embedder
from vexchange.embed.minilm import MODEL_ID
from vexchange.record import MemoryRecord, Vector
from vexchange.testing.conformance import read_all, write_vmig

pytest.importorskip("lancedb")


def memories(n: int, embedder: Any, *, start: int = 0, no_text: int = 0) -> list[MemoryRecord]:
    from vexchange.adapters.corpus import sentences

    texts = sentences(start + n, seed=5)[start:]
    vectors = embedder.embed(texts)
    return [MemoryRecord(id=f"m{start + i}", text=None if i < no_text else text,
                         namespace="agent", metadata={"i": i},
                         vectors={"": Vector(vec.astype("<f4").tobytes(), embedder.model)})
            for i, (text, vec) in enumerate(zip(texts, vectors, strict=False))]


@pytest.fixture(scope="module")
def minilm() -> Any:
    return get_embedder("minilm")


@pytest.fixture(scope="module")
def static() -> Any:
    return get_embedder("static")


def pg_table(store_servers: Any) -> str:
    server = store_servers["postgres"]
    return (f"pgvector://{server.host}:{server.port}/postgres"
            f"?table=reembed_{uuid.uuid4().hex[:8]}&user=postgres")


def test_reembed_into_a_target_of_another_size(tmp_path: Path, store_servers: Any, minilm: Any,
                                               static: Any, capsys: pytest.CaptureFixture[str]) -> None:
    target = pg_table(store_servers)
    existing = memories(20, minilm)  # the target holds 384-dim MiniLM vectors
    migrate(write_vmig(tmp_path / "existing.vmig.jsonl", existing, metric="cosine"), target,
            receipt=tmp_path / "e.json", rejects=tmp_path / "e.rej")
    incoming = memories(40, static, start=20, no_text=3)  # 64-dim static vectors
    source = write_vmig(tmp_path / "incoming.vmig.jsonl", incoming, metric="cosine")

    plain = migrate(source, target, dry_run=True, receipt=tmp_path / "d.json",
                    rejects=tmp_path / "d.rej")
    assert plain.counts.skipped == {"dims_mismatch": 40}

    code = main(["migrate", str(source), target, "--on-dims-mismatch", "reembed",
                 "--embed-model", "minilm", "--receipt", str(tmp_path / "r.json"),
                 "--rejects", str(tmp_path / "r.rej")])
    out = capsys.readouterr().out
    assert code == 4  # three records had no text: skipped, so exit 4 without --allow-skips
    assert "reembedded  37" in out and MODEL_ID in out
    receipt = json.loads((tmp_path / "r.json").read_text())
    assert receipt["counts"]["written"] == 37 and receipt["counts"]["reembedded"] == 37
    assert receipt["counts"]["skipped"] == {"no_text": 3}
    assert receipt["embedding"]["embedder"] == {"embedder": "minilm", "model": MODEL_ID,
                                                "dims": 384, "metric": "cosine"}
    rejected = [json.loads(line) for line in (tmp_path / "r.rej").read_text().splitlines()]
    assert {r["id"] for r in rejected} == {"m20", "m21", "m22"} and rejected[0]["record"]["vector"]

    back = read_all(target)
    assert len(back) == 57
    texts = [r.text or "" for r in incoming[3:]]
    want = minilm.embed(texts)
    for record, vec in zip(incoming[3:], want, strict=False):
        got = back[("agent", record.id)].vectors[""]
        assert got.dims == 384 and got.model == MODEL_ID
        assert float(got.array() @ vec) > 0.9999


def test_reembed_all_keeps_the_old_vector_by_name(tmp_path: Path, minilm: Any, static: Any) -> None:
    records = memories(25, static)
    source = write_vmig(tmp_path / "s.vmig.jsonl", records, metric="cosine")
    target = f"lancedb://{tmp_path}/lance?table=mem"
    receipt = migrate(source, target, reembed="all", embed_model="minilm", keep_old_vector="static64",
                      receipt=tmp_path / "r.json", rejects=tmp_path / "r.rej")
    assert receipt.counts.reembedded == 25 and receipt.counts.written == 25
    back = read_all(target)
    for record in records:
        got = back[("agent", record.id)]
        assert got.vectors[""].dims == 384
        assert got.vectors["static64"] == record.vectors[""]  # the old vector, bit for bit


def test_adapter_translates_vectors_during_migrate(tmp_path: Path, store_servers: Any,
                                                   minilm: Any, static: Any) -> None:
    card = train_adapter(tmp_path / "static-minilm.npz", from_model="static", to_model="minilm",
                         size=2000)
    records = memories(30, static, start=3000)
    source = write_vmig(tmp_path / "s.vmig.jsonl", records, metric="cosine")
    target = pg_table(store_servers)
    receipt = migrate(source, target, adapter=tmp_path / "static-minilm.npz",
                      receipt=tmp_path / "r.json", rejects=tmp_path / "r.rej")
    assert receipt.counts.adapted == 30 and receipt.counts.written == 30
    assert receipt.embedding is not None
    assert receipt.embedding["adapter"]["weights_sha256"] == card["weights_sha256"]
    back = read_all(target)
    truth = minilm.embed([r.text or "" for r in records])
    got = np.stack([back[("agent", r.id)].vectors[""].array() for r in records])
    assert got.shape == (30, 384)
    assert float(np.mean(np.sum(got * truth, axis=1))) > 0.6  # near the real MiniLM vectors
