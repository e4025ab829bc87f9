"""OMS Level 3 store: envelopes, keys, blind index, hexastore, FTS, audit chain, policy, recovery.
docs/formats/oms-level3.md."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("cryptography")

from vexchange.oms.errors import OMSError
from vexchange.oms.grain import encode_grain
from vexchange.oms.l3 import envelope as envelope_module
from vexchange.oms.l3.errors import (
    EnvelopeSwapError,
    NonceReuseError,
    PolicyDeniedError,
    TamperedError,
    WrongKeyError,
)
from vexchange.oms.l3.keys import MasterKey
from vexchange.oms.l3.store import Level3Store

T0 = 1768471200000


def belief(i: int, **more: Any) -> bytes:
    fields: dict[str, Any] = {"type": "belief", "subject": f"patient-{i % 7}", "relation": "takes",
                              "object": f"zebrafinch medicine {i}", "confidence": 0.5, "created_at": T0 + i,
                              "namespace": "clinic:alpha", "user_id": f"person-{i % 3}",
                              "structural_tags": ["topic:care"]}
    fields.update(more)
    return encode_grain(fields)


def consent(i: int, **more: Any) -> bytes:
    fields: dict[str, Any] = {"type": "consent", "subject_did": "did:key:zSubject",
                              "grantee_did": "did:key:zApp",
                              "scope": ["store", "retrieve"], "is_withdrawal": False, "created_at": T0 + i,
                              "namespace": "clinic:alpha", "basis": "explicit_consent", "user_id": "person-0"}
    fields.update(more)
    return encode_grain(fields)


@pytest.fixture
def key() -> MasterKey:
    return MasterKey(bytes(range(32)))


@pytest.fixture(params=["file", "dir"])
def store(request: pytest.FixtureRequest, tmp_path: Path, key: MasterKey) -> Any:
    path = tmp_path / ("store.db" if request.param == "file" else "store")
    s = Level3Store(path, key, create=True, directory=request.param == "dir")
    yield s
    s.db.close()
    s.blobs.close()


def test_round_trip_and_queries(store: Level3Store) -> None:
    blobs = [belief(i) for i in range(30)]
    addresses = store.put_many(blobs)
    assert len(store) == 30
    for address in addresses:
        grain = store.get(address)
        assert grain is not None and grain.address == address
    assert {g.fields["object"] for g in store.query(subject="patient-1")} == {
        f"zebrafinch medicine {i}" for i in range(30) if i % 7 == 1}
    assert len(list(store.query(relation="takes", object="zebrafinch medicine 8"))) == 1
    assert len(list(store.query(subject="patient-1", object="zebrafinch medicine 8"))) == 1
    assert len(list(store.query(user_id="person-2"))) == 10
    assert len(list(store.query(namespace="clinic:alpha", tag="topic:care", type="belief"))) == 30
    assert [g.fields["object"] for g in store.query(text="Medicine 12")] == ["zebrafinch medicine 12"]
    assert len(list(store.query(text="zebrafinch"))) == 30
    assert list(store.query(text="nothing-here")) == []


def test_current_only_follows_supersession_and_contradiction(store: Level3Store) -> None:
    a, b = store.put(belief(1)), store.put(belief(2))
    new = store.supersede(a, belief(1, object="replacement", derived_from=[a]))
    store.contradict(b, belief(2, object="contradiction"))
    current = {g.fields["object"] for g in store.query(subject="patient-1")}
    assert current == {"replacement"}
    assert {g.fields["object"] for g in store.query(subject="patient-1", current_only=False)} == {
        "zebrafinch medicine 1", "replacement"}
    assert list(store.query(text="zebrafinch")) == []
    assert store.index_state(a)["superseded_by"] == new
    assert store.index_state(b)["contradicted"] is True


def test_wrong_key_refused(tmp_path: Path, key: MasterKey) -> None:
    Level3Store(tmp_path / "s.db", key, create=True).close()
    with pytest.raises(WrongKeyError):
        Level3Store(tmp_path / "s.db", MasterKey(bytes(32)))


def _envelope_row(store: Level3Store, address: str) -> bytes:
    envelope = store.blobs.read(address, store.db.execute(
        "SELECT envelope FROM grains WHERE address = ?", (address,)).fetchone()[0])
    assert envelope is not None
    return envelope


def _write_envelope(store: Level3Store, address: str, envelope: bytes) -> None:
    if store.blobs.in_row:
        store.db.execute("UPDATE grains SET envelope = ? WHERE address = ?", (envelope, address))
    else:
        path = store.path / "grains" / address[:2] / (address + ".vxl3")
        path.write_bytes(envelope)


def test_tampered_ciphertext_refused(store: Level3Store) -> None:
    address = store.put(belief(1))
    envelope = bytearray(_envelope_row(store, address))
    envelope[-20] ^= 1
    _write_envelope(store, address, bytes(envelope))
    with pytest.raises(TamperedError):
        store.get(address)
    envelope = bytearray(_envelope_row(store, address))
    envelope[-20] ^= 1
    envelope[60] ^= 0x40  # the clear header's sensitivity bits: authenticated too
    _write_envelope(store, address, bytes(envelope))
    with pytest.raises(TamperedError):
        store.get(address)


def test_swapped_envelope_refused(store: Level3Store) -> None:
    a, b = store.put(belief(1)), store.put(belief(2))
    ea, eb = _envelope_row(store, a), _envelope_row(store, b)
    _write_envelope(store, a, eb)
    _write_envelope(store, b, ea)
    with pytest.raises(EnvelopeSwapError):
        store.get(a)


def test_nonce_reuse_refused(store: Level3Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(envelope_module, "_new_nonce", lambda: b"\x07" * 12)
    store.put(belief(0))  # person-0
    with pytest.raises(NonceReuseError):
        store.put(belief(3))  # person-0 again: same data key, same nonce
    assert len(store) == 1
    assert store.verify_audit()["ok"]


@pytest.mark.parametrize("directory", [False, True])
def test_no_plaintext_in_the_sqlite_file(tmp_path: Path, key: MasterKey, directory: bool) -> None:
    path = tmp_path / ("s.db" if not directory else "s.dbdir")
    store = Level3Store(path, key, create=True, directory=directory)
    a = store.put_many([belief(i) for i in range(20)])
    store.supersede(a[0], belief(0, object="quokkaberry", derived_from=[a[0]]))
    secrets = [b"zebrafinch", b"quokkaberry", b"patient-", b"person-", b"clinic:alpha", b"topic:care",
               b"takes"]

    def leaks() -> list[bytes]:
        data = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p.name != "k")
        assert len(data) > 4096
        return [s for s in secrets if s in data or s.decode().encode("utf-16-le") in data]

    assert leaks() == []  # while open: main file, WAL and shm
    store.close()
    assert leaks() == []


def test_audit_chain_detects_edit_removal_reorder_and_cut(tmp_path: Path, key: MasterKey) -> None:
    path = tmp_path / "s.db"
    with Level3Store(path, key, create=True) as store:
        for i in range(6):
            store.put(belief(i))
        assert store.verify_audit()["ok"]
        head = store.verify_audit()["head"]

    def tampered(change: str) -> dict[str, Any]:
        copy = tmp_path / f"{change}.db"
        copy.write_bytes(path.read_bytes())
        db = sqlite3.connect(copy)
        if change == "edit":
            entry = db.execute("SELECT entry FROM audit WHERE seq = 3").fetchone()[0]
            edited = bytes(entry).replace(b"allow", b"deny!")
            db.execute("UPDATE audit SET entry = ? WHERE seq = 3", (edited,))
        elif change == "remove":
            db.execute("DELETE FROM audit WHERE seq = 3")
        elif change == "reorder":
            r3 = db.execute("SELECT entry, mac FROM audit WHERE seq = 3").fetchone()
            r4 = db.execute("SELECT entry, mac FROM audit WHERE seq = 4").fetchone()
            db.execute("UPDATE audit SET entry = ?, mac = ? WHERE seq = 3", r4)
            db.execute("UPDATE audit SET entry = ?, mac = ? WHERE seq = 4", r3)
        elif change == "renumber":  # remove 3, move the rest down one
            db.execute("DELETE FROM audit WHERE seq = 3")
            db.execute("UPDATE audit SET seq = seq - 1 WHERE seq > 3")
        elif change == "cut":
            db.execute("DELETE FROM audit WHERE seq = (SELECT max(seq) FROM audit)")
        db.commit()
        db.close()
        with Level3Store(copy, key) as opened:
            return opened.verify_audit()

    for change in ("edit", "remove", "reorder", "renumber", "cut"):
        report = tampered(change)
        assert not report["ok"], change
        assert report["error"]
    with Level3Store(path, key) as store:
        assert store.verify_audit(expect_head=head)["ok"]  # opening and closing log nothing
        assert store.verify_audit(expect_head="00" * 32)["ok"] is False  # a rolled-back store


def test_crypto_erasure_of_one_user(tmp_path: Path, key: MasterKey) -> None:
    path = tmp_path / "s.db"
    store = Level3Store(path, key, create=True)
    addresses = store.put_many([belief(i) for i in range(9)] + [belief(10, object="only okapi here")])
    word = store.index.word_token("okapi").encode()
    tokens = [store.index.token("object", "only okapi here"), store.user_token("person-1")]
    wrapped = store.db.execute("SELECT wrapped FROM user_keys WHERE token = ?",
                               (store.user_token("person-1"),)).fetchone()[0]
    envelope = _envelope_row(store, addresses[1])
    assert store.erase("person-1") == 4
    assert store.get(addresses[1]) is None
    assert len(list(store.query(user_id="person-1"))) == 0
    assert len(store) == 6
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir())  # while open: WAL included
    assert bytes(wrapped) not in data and envelope[67:] not in data
    assert word not in data and tokens[0] not in data  # no FTS term or blind token left
    store.close()
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert bytes(wrapped) not in data and envelope[67:] not in data and word not in data
    with Level3Store(path, key) as store:
        entries = [bytes(e) for (e,) in store.db.execute("SELECT entry FROM audit")]
        assert any(b'"op":"erase"' in e for e in entries)
        assert store.verify_audit()["ok"]


def test_erasure_refused_under_a_hold(store: Level3Store) -> None:
    store.put(belief(1, invalidation_policy={"mode": "hold"}))
    store.put(belief(4))
    with pytest.raises(OMSError) as raised:
        store.erase("person-1")
    assert raised.value.code == "ERR_INVALIDATION_DENIED"
    assert len(list(store.query(user_id="person-1"))) == 2
    last = bytes(store.db.execute("SELECT entry FROM audit ORDER BY seq DESC LIMIT 1").fetchone()[0])
    assert b'"decision":"deny"' in last and b'"op":"erase"' in last


def test_level2_rules_apply_and_denials_are_audited(store: Level3Store) -> None:
    locked = store.put(belief(1, invalidation_policy={"mode": "locked"}))
    with pytest.raises(OMSError) as raised:
        store.supersede(locked, belief(1, object="x", derived_from=[locked]))
    assert raised.value.code == "ERR_INVALIDATION_DENIED"
    assert len(store) == 1
    last = bytes(store.db.execute("SELECT entry FROM audit ORDER BY seq DESC LIMIT 1").fetchone()[0])
    assert b'"decision":"deny"' in last and b'"op":"supersede"' in last
    assert store.verify_audit()["ok"]


def test_rotation_rewraps_without_reencrypting(tmp_path: Path, key: MasterKey) -> None:
    path = tmp_path / "s.db"
    store = Level3Store(path, key, create=True)
    a = store.put_many([belief(i) for i in range(6)])
    before = _envelope_row(store, a[0])
    new_key = MasterKey(os.urandom(32))
    assert store.rotate(new_key) == 3
    assert _envelope_row(store, a[0]) == before
    store.close()
    with pytest.raises(WrongKeyError):
        Level3Store(path, key)
    with Level3Store(path, new_key) as store:
        assert store.get(a[0]) is not None
        assert len(list(store.query(subject="patient-1"))) == 1
        assert store.verify_audit()["ok"]


def test_gdpr_preset(tmp_path: Path, key: MasterKey) -> None:
    store = Level3Store(tmp_path / "s.db", key, create=True, preset="gdpr")
    with pytest.raises(PolicyDeniedError):
        store.put(belief(1, structural_tags=["pii:name"], user_id=None))
    with pytest.raises(PolicyDeniedError):
        store.put(belief(1, structural_tags=["pii:name"]))  # no processing_basis
    c = store.put(consent(1, basis="legitimate_interest"))
    pii = store.put(belief(1, structural_tags=["pii:name"], processing_basis=c))
    with pytest.raises(PolicyDeniedError):  # special category needs explicit consent
        store.put(belief(2, structural_tags=["phi:diagnosis"], processing_basis=c))
    store.put(belief(5, structural_tags=["topic:x"]))  # not personal data: no consent needed
    store.put(consent(2, is_withdrawal=True, prior_consent=c))
    assert store.get(pii) is None  # the cascade erased it
    with pytest.raises(PolicyDeniedError):
        store.put(belief(3, structural_tags=["pii:name"], processing_basis=c))
    entries = [bytes(e) for (e,) in store.db.execute("SELECT entry FROM audit ORDER BY seq")]
    assert sum(b'"decision":"deny"' in e for e in entries) == 4
    assert any(b"consent_cascade" in e for e in entries)
    assert store.verify_audit()["ok"]
    store.close()


def test_hipaa_preset_keeps_phi_and_audits_reads(tmp_path: Path, key: MasterKey) -> None:
    store = Level3Store(tmp_path / "s.db", key, create=True, preset="hipaa")
    with pytest.raises(PolicyDeniedError):
        store.put(belief(1, structural_tags=["phi:dx"], user_id=None))
    import time

    recent = store.put(belief(1, structural_tags=["phi:dx"], created_at=int(time.time() * 1000)))
    with pytest.raises(PolicyDeniedError):
        store.delete(recent)
    old = store.put(belief(2, structural_tags=["phi:dx"]))  # 2026-01: younger than 6 years too
    with pytest.raises(PolicyDeniedError):
        store.erase("person-2")
    assert store.get(old) is not None
    entries = [bytes(e) for (e,) in store.db.execute("SELECT entry FROM audit ORDER BY seq")]
    assert any(b'"op":"get"' in e for e in entries)
    store.close()


def test_ccpa_needs_a_subject_for_personal_data(tmp_path: Path, key: MasterKey) -> None:
    with Level3Store(tmp_path / "s.db", key, create=True, preset="ccpa") as store:
        with pytest.raises(PolicyDeniedError):
            store.put(belief(1, structural_tags=["pii:email"], user_id=None))
        store.put(belief(1, structural_tags=["pii:email"]))
        assert store.erase("person-1") == 1


def test_recovery_after_an_unclean_close(tmp_path: Path, key: MasterKey) -> None:
    root = tmp_path / "store"
    store = Level3Store(root, key, create=True, directory=True)
    store.put(belief(1))
    store.db.close()  # no close(): as if killed (which also drops the lock)
    store.blobs.close()
    orphan = root / "grains" / "ab" / ("ab" + "0" * 62 + ".vxl3")
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"half")
    (root / "grains" / "ab" / "x.vxl3.tmp").write_bytes(b"partial")
    with Level3Store(root, key) as store:
        assert store.recovery["clean"] is False
        assert store.recovery["orphan_blobs"] == 2 and store.recovery["missing_blobs"] == 0
        assert not orphan.exists()
        assert len(store) == 1 and store.verify_audit()["ok"]
    with Level3Store(root, key) as store:
        assert store.recovery["clean"] is True


def test_a_directory_store_is_open_in_one_process_at_a_time(tmp_path: Path, key: MasterKey) -> None:
    from vexchange.errors import UsageError

    with Level3Store(tmp_path / "d", key, create=True, directory=True), \
            pytest.raises(UsageError, match="open in another process"):
        Level3Store(tmp_path / "d", key)
    with pytest.raises(WrongKeyError):
        Level3Store(tmp_path / "d", MasterKey(bytes(32)))
    Level3Store(tmp_path / "d", key).close()  # a failed open left no lock behind


def test_refusals_of_paths(tmp_path: Path, key: MasterKey) -> None:
    from vexchange.errors import UsageError

    with pytest.raises(UsageError):
        Level3Store(tmp_path / "none.db", key)
    Level3Store(tmp_path / "s.db", key, create=True).close()
    with pytest.raises(UsageError):
        Level3Store(tmp_path / "s.db", key, create=True)
    with pytest.raises(UsageError):
        Level3Store(tmp_path / "t.db", key, create=True, preset="sox")
    (tmp_path / "text.db").write_bytes(b"not a database at all, just text" * 100)
    with pytest.raises(UsageError):
        Level3Store(tmp_path / "text.db", key)
    other = sqlite3.connect(tmp_path / "other.db")
    other.execute("CREATE TABLE t (x)")
    other.commit()
    other.close()
    with pytest.raises(UsageError):
        Level3Store(tmp_path / "other.db", key)
    assert sqlite3.connect(tmp_path / "other.db").execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_attachments_are_sealed_checked_and_erased(store: Level3Store) -> None:
    a, b = store.put(belief(1)), store.put(belief(2))
    store.put_attachments(a, {"v#": b"\x00\x01vector-a", "title": b"vector-t"})
    store.put_attachments(b, {"v#": b"vector-b"})
    assert store.attachments(a) == {"v#": b"\x00\x01vector-a", "title": b"vector-t"}
    rows = store.db.execute("SELECT rowid, sealed FROM attachments ORDER BY rowid").fetchall()
    assert all(b"vector" not in bytes(sealed) for _, sealed in rows)
    flipped = bytearray(rows[0][1])
    flipped[-1] ^= 1
    store.db.execute("UPDATE attachments SET sealed = ? WHERE rowid = ?", (bytes(flipped), rows[0][0]))
    with pytest.raises(TamperedError):
        store.attachments(a)
    store.db.execute("UPDATE attachments SET sealed = ? WHERE rowid = ?", (rows[2][1], rows[0][0]))
    with pytest.raises(EnvelopeSwapError):
        store.attachments(a)
    store.erase("person-1")
    assert store.db.execute("SELECT count(*) FROM attachments").fetchone()[0] == 1
    assert store.attachments(b) == {"v#": b"vector-b"}
