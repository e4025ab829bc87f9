"""`.mg` container files: the derived file vector, round trips with and without zstd and a
manifest, random access, and hostile files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vexchange.oms import OMSError, encode_grain
from vexchange.oms.container import MgReader, MgWriter, read_mg, write_mg

VECTORS = json.loads((Path(__file__).parent / "data" / "oms-test-vectors.json").read_text())


def _blobs(n: int) -> list[bytes]:
    base = VECTORS["vectors"][0]["input"]
    return [encode_grain({**base, "subject": f"user {i}", "created_at": base["created_at"] + i})
            for i in range(n)]


def test_derived_file_vector_is_read_and_written_byte_for_byte(tmp_path: Path) -> None:
    vector = VECTORS["mg_file_vectors"][0]
    path = tmp_path / "v.mg"
    path.write_bytes(bytes.fromhex(vector["file_hex"]))
    with MgReader(path) as reader:
        assert reader.verify()["grains"] == 2
        assert [g.address for g in reader] == vector["grain_content_addresses"]
        blobs = [reader.blob(i) for i in range(len(reader))]
    again = tmp_path / "again.mg"
    write_mg(again, blobs)
    assert again.read_bytes()[3] & ~0b10 == 0  # only the deduplicated flag may differ
    data = bytearray(again.read_bytes())
    data[3] = 0
    body = bytes(data[:-32])
    import hashlib
    assert body + hashlib.sha256(body).digest() == bytes.fromhex(vector["file_hex"])


@pytest.mark.parametrize("name", ["mg_file_footer_mismatch", "mg_file_bad_magic"])
def test_file_rejections(tmp_path: Path, name: str) -> None:
    vector = next(v for v in VECTORS["negative_vectors"] if v["name"] == name)
    path = tmp_path / "bad.mg"
    path.write_bytes(bytes.fromhex(vector["file_hex"]))
    with pytest.raises(OMSError) as caught, MgReader(path) as reader:
        reader.verify()
    assert caught.value.code == vector["expected_error"]


@pytest.mark.parametrize("compress", [False, True])
def test_round_trip_random_access_and_manifest(tmp_path: Path, compress: bool) -> None:
    blobs = _blobs(300)
    path = tmp_path / "m.mg"
    with MgWriter(path, compress=compress, sorted_by_time=True) as writer:
        for i, blob in enumerate(blobs):
            writer.add(blob, index_state={"verification_status": "verified"} if i == 7 else None)
    with MgReader(path) as reader:
        assert reader.verify()["grains"] == 300
        assert reader.blob(0) == blobs[0] and reader.blob(299) == blobs[299]
        assert reader[123].fields["subject"] == "user 123"
        manifest = reader.manifest()
    assert list(manifest.values()) == [{"vstatus": "verified"}]
    assert not list(tmp_path.glob("*.partial"))


def test_tampering_anywhere_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "m.mg"
    write_mg(path, _blobs(5))
    data = path.read_bytes()
    for position in (5, 20, len(data) // 2, len(data) - 40, len(data) - 1):
        broken = bytearray(data)
        broken[position] ^= 0x01
        path.write_bytes(bytes(broken))
        with pytest.raises(OMSError), MgReader(path) as reader:
            reader.verify()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300))
def test_hostile_files_give_typed_errors(tmp_path: Path, tail: bytes) -> None:
    path = tmp_path / "h.mg"
    path.write_bytes(b"MG\x01" + tail)
    try:
        with MgReader(path) as reader:
            reader.verify()
    except OMSError:
        pass


def test_huge_declared_count_fails_at_once(tmp_path: Path) -> None:
    path = tmp_path / "h.mg"
    path.write_bytes(b"MG\x01\x00\xff\xff\xff\xff\x01\x00" + bytes(6) + bytes(40))
    with pytest.raises(OMSError):
        MgReader(path)
    assert read_mg  # the one-call reader exists
