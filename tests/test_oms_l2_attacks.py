"""Level 2 under attack (issue 18): each way around the invalidation policy (§23) and the Store
protocol (§17.2, §28.4) that the first Level 2 let through, in every store, refused with its
§19 code and leaving the store as it was."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from vexchange.oms import OMSError, content_address, encode_grain
from vexchange.oms.store import GrainStore, MemoryGrainStore, SqliteGrainStore

VECTORS = json.loads((Path(__file__).parent / "data" / "oms-test-vectors.json").read_text())
BASE = {**VECTORS["vectors"][0]["input"], "namespace": "shared"}
OWNER, ATTACKER = "did:key:owner", "did:key:attacker"
DENIED = "ERR_INVALIDATION_DENIED"


def grain(name: str, *, parents: tuple[str, ...] = (), policy: dict[str, Any] | None = None,
          **more: Any) -> bytes:
    return encode_grain({**BASE, "object": name, "derived_from": list(parents) or None,
                         "invalidation_policy": policy, **more})


def refused(code: str, call: Any, *args: Any, **kwargs: Any) -> OMSError:
    with pytest.raises(OMSError) as caught:
        call(*args, **kwargs)
    assert caught.value.code == code, str(caught.value)
    return caught.value


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    return MemoryGrainStore() if request.param == "memory" else SqliteGrainStore(tmp_path / "g.db")


def snapshot(store: GrainStore) -> dict[str, dict[str, Any]]:
    return {address: store.index_state(address) for address in store.addresses()}


# ------------------------------------------------------------------ §23.7 bypass 3: chain injection


@pytest.mark.parametrize("scope", ["grain", "subtree", "lineage"])
def test_23_7_put_of_a_grain_derived_from_a_protected_grain_is_denied_for_every_scope(
        store: Any, scope: str) -> None:
    """§17.2, §23.7: derived_from is how a grain supersedes (§23.1), so `put` of a child of a
    locked (or owner-only) grain is the supersession it must not let through."""
    for policy in ({"mode": "locked", "scope": scope},
                   {"mode": "delegated", "authorized": [OWNER], "scope": scope}):
        root = store.put(grain(f"root-{policy['mode']}", policy=policy))
        before = snapshot(store)
        refused(DENIED, store.put, grain("injected", parents=(root,)))
        assert snapshot(store) == before  # nothing written
    owned = store.put(grain("owned", policy={"mode": "delegated", "authorized": [OWNER], "scope": scope}))
    assert store.exists(store.put(grain("by the owner", parents=(owned,)), signer_did=OWNER))


@pytest.mark.parametrize("scope", ["grain", "subtree", "lineage"])
def test_23_6_superseding_a_descendant_of_a_protected_grain(store: Any, scope: str) -> None:
    """§23.6: the owner derives a child (subtree) or a successor (lineage) of a protected grain;
    an attacker then supersedes that descendant, which names only the descendant. Denied for
    subtree and lineage scopes (the whole ancestry is walked, not just what the new grain names);
    a grain-scoped policy protects the grain alone, so there it is allowed."""
    policy = {"mode": "delegated", "authorized": [OWNER], "scope": scope}
    root = store.put(grain("root", policy=policy))
    if scope == "lineage":
        child = store.supersede(root, grain("successor", parents=(root,)), signer_did=OWNER)
    else:
        child = store.put(grain("child", parents=(root,)), signer_did=OWNER)
    grandchild = store.put(grain("grandchild", parents=(child,)), signer_did=OWNER) \
        if scope == "subtree" else child
    attack = grain("attack", parents=(grandchild,))
    if scope == "grain":
        assert store.supersede(grandchild, attack, signer_did=ATTACKER) == content_address(attack)
        return
    before = snapshot(store)
    error = refused(DENIED, store.supersede, grandchild, attack, signer_did=ATTACKER)
    assert root in str(error)  # names the policy that covers it
    assert snapshot(store) == before and not store.exists(content_address(attack))
    refused(DENIED, store.contradict, grandchild, attack, signer_did=ATTACKER)
    assert store.supersede(grandchild, attack, signer_did=OWNER) == content_address(attack)


def test_23_6_a_child_planted_before_its_locked_root_cannot_be_superseded(store: Any) -> None:
    """An address is known before its grain is stored, so a child can be put first; once the
    locked subtree root arrives, the child is inside it."""
    root_blob = grain("root", policy={"mode": "locked", "scope": "subtree"})
    child = store.put(grain("planted", parents=(content_address(root_blob),)))
    store.put(root_blob)
    refused(DENIED, store.supersede, child, grain("attack", parents=(child,)))
    refused(DENIED, store.put, grain("attack 2", parents=(child,)))


def test_23_6_lineage_protects_the_predecessors_of_a_locked_successor(store: Any) -> None:
    """A lineage-scoped policy on a successor covers the chain it closes: contradicting (or
    deleting under a hold) the grain it replaced is refused."""
    first = store.put(grain("first"))
    store.supersede(first, grain("second", parents=(first,), policy={"mode": "hold", "scope": "lineage"}))
    refused(DENIED, store.contradict, first, grain("contra"))
    refused(DENIED, store.delete, first)
    assert store.exists(first)


def test_23_6_a_subtree_hold_blocks_erasure_of_descendants(store: Any) -> None:
    root_blob = grain("held", policy={"mode": "hold", "scope": "subtree"})
    child = store.put(grain("child", parents=(content_address(root_blob),)))
    store.put(root_blob)
    refused(DENIED, store.delete, child)
    assert store.exists(child)


def test_23_6_unknown_scope_fails_closed(store: Any) -> None:
    root_blob = grain("root", policy={"mode": "locked", "scope": "galaxy"})
    child = store.put(grain("child", parents=(content_address(root_blob),)))
    store.put(root_blob)
    refused(DENIED, store.supersede, child, grain("attack", parents=(child,)))


# ---------------------------------------------------------------------------- §23.1 contradiction


def test_23_1_contradiction_has_its_index_state_and_obeys_the_policy(store: Any) -> None:
    claim = store.put(grain("the sky is green"))
    evidence = grain("the sky is blue", related_to=[{"hash": claim, "relation_type": "contradicts"}])
    assert store.contradict(claim, evidence, now_s=1_800_000_000) == content_address(evidence)
    assert store.index_state(claim) == {"contradicted": True, "system_valid_to": 1_800_000_000_000}
    assert [g.address for g in store.list(current_only=True)] == [content_address(evidence)]
    assert store.get(claim) is not None  # still readable
    locked = store.put(grain("locked", policy={"mode": "locked"}))
    refused(DENIED, store.contradict, locked, grain("no"))
    assert store.index_state(locked) == {} and not store.exists(content_address(grain("no")))
    refused(DENIED, store.contradict, claim, grain("the sky is green"))  # itself
    soft = store.put(grain("soft", policy={"mode": "soft_locked"}))
    refused(DENIED, store.contradict, soft, grain("unjustified"))
    store.contradict(soft, grain("justified", supersession_justification="measured twice"))
    assert store.index_state(soft)["contradicted"] is True


def test_23_1_a_superseded_then_contradicted_grain_keeps_both(store: Any) -> None:
    old = store.put(grain("old"))
    new = store.supersede(old, grain("new", parents=(old,)), now_s=100)
    store.contradict(old, grain("refuted"), now_s=200)
    assert store.index_state(old) == {"superseded_by": new, "system_valid_to": 100_000, "contradicted": True}


# ----------------------------------------------------------- §23.2 justification carried by the grain


def test_23_2_soft_locked_justification_is_read_from_the_superseding_grain(store: Any) -> None:
    old = store.put(grain("soft", policy={"mode": "soft_locked"}))
    refused(DENIED, store.supersede, old, grain("blank", parents=(old,), supersession_justification="  "))
    new = grain("fixed", parents=(old,), supersession_justification="the user corrected it")
    assert store.supersede(old, new) == content_address(new)  # no keyword argument needed
    assert store.index_state(old)["superseded_by"] == content_address(new)


# --------------------------------------------------------------------- self-supersession and cycles


def test_28_4_a_grain_cannot_supersede_itself_or_an_ancestor_close_a_cycle(store: Any) -> None:
    blob = grain("me")
    me = store.put(blob)
    refused(DENIED, store.supersede, me, blob)
    refused(DENIED, store.contradict, me, blob)
    child = store.put(grain("child", parents=(me,)))
    refused(DENIED, store.supersede, child, blob)  # the parent would replace its own child
    assert snapshot(store) == {me: {}, child: {}}


def test_28_4_a_superseded_grain_is_not_superseded_again(store: Any) -> None:
    old = store.put(grain("old"))
    first = store.supersede(old, grain("first", parents=(old,)))
    assert store.supersede(old, grain("first", parents=(old,))) == first  # a retry: no change
    refused(DENIED, store.supersede, old, grain("fork", parents=(old,)))
    assert store.index_state(old)["superseded_by"] == first


# ------------------------------------------------------------- §5, §20.4: get verifies the address


def _tamper(store: Any, address: str, blob: bytes) -> None:
    if isinstance(store, MemoryGrainStore):
        store._blobs[address] = blob
    else:
        store.db.execute("UPDATE grains SET blob = ? WHERE address = ?", (blob, address))


def test_5_get_checks_the_blob_hashes_to_the_address(store: Any) -> None:
    address = store.put(grain("true"))
    _tamper(store, address, grain("swapped"))
    refused("ERR_INTEGRITY", store.get, address)
    refused("ERR_INTEGRITY", lambda: list(store.list()))
    refused("ERR_HASH_FORMAT", store.get, address.upper())
    refused("ERR_HASH_LENGTH", store.get, address[:63])


def test_20_4_the_address_comparison_is_constant_time(store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import hmac

    address = store.put(grain("true"))
    compared: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert store.get(address) is not None
    assert (address, content_address(grain("true"))) in compared


# ----------------------------------------------------------------- §28.4: supersession is atomic


class _FailOnce:
    """Fails the first index write after setting its first field: a crash between the two."""

    def __init__(self, store: Any) -> None:
        self.real = store._set_index
        self.armed = True

    def __call__(self, address: str, **fields: Any) -> None:
        if self.armed:
            self.armed = False
            first = next(iter(fields))
            self.real(address, **{first: fields[first]})
            raise OSError("disk gone between two index writes")
        self.real(address, **fields)


@pytest.mark.parametrize("operation", ["supersede", "contradict"])
def test_28_4_a_failed_write_leaves_no_half_state(store: Any, operation: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    old = store.put(grain("old"))
    monkeypatch.setattr(store, "_set_index", _FailOnce(store))
    new = grain("new", parents=(old,))
    with pytest.raises(OSError):
        getattr(store, operation)(old, new)
    assert store.index_state(old) == {} and not store.exists(content_address(new))
    assert list(store.addresses()) == [old]
    assert getattr(store, operation)(old, new) == content_address(new)  # and it can be done again


def test_28_4_concurrent_supersessions_of_one_grain_give_one_winner() -> None:
    store = MemoryGrainStore()
    old = store.put(grain("old"))
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def race(n: int) -> None:
        barrier.wait()
        try:
            store.supersede(old, grain(f"successor {n}", parents=(old,)))
            outcomes.append("won")
        except OMSError as err:
            outcomes.append(err.code)

    threads = [threading.Thread(target=race, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == [DENIED] * 3 + ["won"]
    assert len(list(store.addresses())) == 2


def test_23_7_related_to_replaces_is_advisory_and_touches_no_index(store: Any) -> None:
    """§23.7 bypass 2: a `replaces` link is not a supersession, even of a locked grain."""
    locked = store.put(grain("locked", policy={"mode": "locked"}))
    store.put(grain("claims to replace it", related_to=[{"hash": locked, "relation_type": "replaces"}]))
    assert store.index_state(locked) == {}
    assert locked in [g.address for g in store.list(current_only=True)]
