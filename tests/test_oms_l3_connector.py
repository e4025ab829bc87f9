"""Migrating into and out of a Level 3 store like any other target (connectors/oms_store.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("cryptography")

from vexchange import migrate
from vexchange.connectors.oms_store import OmsStoreConnector
from vexchange.oms.grain import encode_grain
from vexchange.oms.l3.keys import MasterKey
from vexchange.oms.memory import grain_from_record
from vexchange.oms.l3.store import Level3Store
from vexchange.spec import StoreSpec
from vexchange.testing.conformance import ConnectorConformance, read_all, write_vmig
from vexchange.testing.records import sample_records


def _store(path: Path, key_file: Path, **params: str) -> OmsStoreConnector:
    return OmsStoreConnector(StoreSpec("oms-store", path=str(path), params={"key_file": str(key_file),
                                                                             **params}))


@pytest.mark.parametrize("directory", ["", "1"])
def test_records_round_trip_through_an_encrypted_store(tmp_path: Path, directory: str) -> None:
    key_file = tmp_path / "k"
    key_file.write_text("ab" * 32)
    records = list(sample_records(40, named=("title",), sparse=True))
    source = write_vmig(tmp_path / "s.vmig.jsonl", records)
    target = tmp_path / ("m.l3" if not directory else "m-dir")
    receipt = migrate(source, _store(target, key_file, directory=directory))
    assert receipt.counts.written == 40, receipt.counts
    ConnectorConformance.assert_same(records, read_all(_store(target, key_file)))
    migrate(source, _store(target, key_file))  # a retried run: upserts, nothing doubled
    changed = [r.replace(text="changed text") if i == 5 else r for i, r in enumerate(records)]
    migrate(write_vmig(tmp_path / "c.vmig.jsonl", changed), _store(target, key_file))
    ConnectorConformance.assert_same(changed, read_all(_store(target, key_file)))
    with Level3Store(target, MasterKey(bytes.fromhex("ab" * 32))) as store:
        assert len(store) == 41  # the changed record superseded its grain
        assert store.verify_audit()["ok"]
    out = tmp_path / "back.vmig.jsonl"
    migrate(_store(target, key_file), out)
    ConnectorConformance.assert_same(changed, read_all(out))


def test_policy_refusals_are_rejects(tmp_path: Path) -> None:
    key_file = tmp_path / "k"
    key_file.write_text("ab" * 32)
    records = list(sample_records(6, namespaces=False))
    source = write_vmig(tmp_path / "s.vmig.jsonl", records)
    target = tmp_path / "m.l3"
    first = records[2]
    with Level3Store(target, MasterKey(bytes.fromhex("ab" * 32)), create=True) as store:
        fields = grain_from_record(first.replace(text="an earlier, locked version"))
        store.put(encode_grain({**fields, "invalidation_policy": {"mode": "locked"}}))
    receipt = migrate(source, _store(target, key_file), allow_skips=True)
    assert receipt.counts.written == 5 and receipt.counts.skipped == {"err_invalidation_denied": 1}
    with Level3Store(target, MasterKey(bytes.fromhex("ab" * 32))) as store:
        entries = [bytes(e) for (e,) in store.db.execute("SELECT entry FROM audit")]
        assert sum(b'"decision":"deny"' in e for e in entries) == 1
        assert store.verify_audit()["ok"]
