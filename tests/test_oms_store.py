"""The invalidation policy (every supersede rejection vector) and the Store protocol, in
memory and in SQLite."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from vexchange.oms import OMSError, encode_grain
from vexchange.oms.store import MemoryGrainStore, SqliteGrainStore, check_invalidation

VECTORS = json.loads((Path(__file__).parent / "data" / "oms-test-vectors.json").read_text())
BASE = VECTORS["vectors"][0]["input"]


def _new(old_address: str, **changes: Any) -> bytes:
    return encode_grain({**BASE, "object": "new", "created_at": BASE["created_at"] + 1000,
                         "derived_from": [old_address], **changes})


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    return MemoryGrainStore() if request.param == "memory" else SqliteGrainStore(tmp_path / "g.db")


@pytest.mark.parametrize(
    "vector", [v for v in VECTORS["negative_vectors"] if v["kind"] == "supersede"],
    ids=lambda v: v["name"])
def test_every_supersede_rejection(vector: dict[str, Any], store: Any) -> None:
    old = store.put(encode_grain(vector["old_grain"]))
    with pytest.raises(OMSError) as caught:
        store.supersede(old, _new(old), signer_did=vector.get("signer_did"))
    assert caught.value.code == vector["expected_error"]
    assert store.index_state(old) == {}  # nothing changed


def test_allowed_supersessions_update_the_index(store: Any) -> None:
    old = store.put(encode_grain({**BASE, "invalidation_policy": {"mode": "soft_locked"}}))
    new = store.supersede(old, _new(old), justification="user corrected it", now_s=1_800_000_000)
    assert store.index_state(old) == {"superseded_by": new, "system_valid_to": 1_800_000_000_000}
    assert [g.address for g in store.list(current_only=True)] == [new]
    assert store.put(_new(old)) == new and store.exists(new)  # idempotent


def test_quorum_delegated_timed_and_hold(store: Any) -> None:
    dids = ["did:a", "did:b", "did:c"]
    check_invalidation({"mode": "quorum", "authorized": dids, "threshold": 2}, cosigners=["did:a", "did:c"])
    with pytest.raises(OMSError):
        check_invalidation({"mode": "quorum", "authorized": dids, "threshold": 2},
                           cosigners=["did:a", "did:x"])
    check_invalidation({"mode": "delegated", "authorized": dids}, signer_did="did:b")
    timed = {"mode": "timed", "locked_until": 1000, "fallback_mode": "open"}
    with pytest.raises(OMSError):
        check_invalidation(timed, now_s=999)
    check_invalidation(timed, now_s=1001)
    with pytest.raises(OMSError):
        check_invalidation({**timed, "fallback_mode": "bogus"}, now_s=1001)
    held = store.put(encode_grain({**BASE, "invalidation_policy": {"mode": "hold"}}))
    with pytest.raises(OMSError):
        store.delete(held)
    free = store.put(encode_grain({**BASE, "object": "free"}))
    store.delete(free)
    assert not store.exists(free)


def test_protected_ancestor_scope_blocks_descendants(store: Any) -> None:
    soft_subtree = {"mode": "soft_locked", "scope": "subtree"}
    root = store.put(encode_grain({**BASE, "invalidation_policy": soft_subtree}))
    child = store.put(encode_grain({**BASE, "object": "child", "derived_from": [root],
                                    "supersession_justification": "a reviewed refinement"}))
    with pytest.raises(OMSError):  # the child is in the root's subtree: it needs a justification too
        store.supersede(child, _new(child))
    assert store.index_state(child) == {}
    locked = store.put(encode_grain({**BASE, "object": "locked", "invalidation_policy": {"mode": "locked"}}))
    with pytest.raises(OMSError):  # and a locked grain takes no child at all
        store.put(encode_grain({**BASE, "object": "x", "derived_from": [locked]}))
