"""OMS v1.3 grains against the spec's test vectors (copied into tests/data from the
implementer's digest; the project never reads ../shared at test time)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vexchange.oms import (OMSError, content_address, decode_grain, decode_msgpack,
                           encode_grain, encode_msgpack, verify_address)

VECTORS = json.loads((Path(__file__).parent / "data" / "oms-test-vectors.json").read_text())


def _by_name(group: str) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in VECTORS[group]}


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["name"])
def test_spec_vectors_encode_to_their_bytes_and_address(vector: dict[str, Any]) -> None:
    blob = encode_grain(vector["input"])
    expected = vector.get("expected_blob_hex") or vector["oracle_computed"]["blob_hex"]
    assert blob.hex() == expected
    address = vector.get("expected_content_address") or vector["oracle_computed"]["content_address"]
    assert content_address(blob) == address
    header = vector["header"]
    got = {"version": blob[0], "flags": blob[1], "type_byte": blob[2], "ns_hash": blob[3:5].hex(),
           "created_at_sec": int.from_bytes(blob[5:9], "big")}
    assert {k: got[k] for k in header} == header


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["name"])
def test_round_trip_gives_the_same_bytes(vector: dict[str, Any]) -> None:
    blob = encode_grain(vector["input"])
    grain = decode_grain(blob)
    assert grain.fields == vector["input"]
    assert encode_grain(grain.fields) == blob
    verify_address(blob, grain.address)


def test_micro_vectors() -> None:
    micro = _by_name("micro_vectors")
    text = "".join(chr(int(c[2:], 16)) for c in micro["nfc_example"]["input_codepoints"])
    assert encode_msgpack(text).hex() == micro["nfc_example"]["expected_msgpack_hex"]
    float_example = micro["float64_0_9"]
    assert encode_msgpack(float(float_example["value"])).hex() == float_example["expected_msgpack_hex"]
    base = dict(VECTORS["vectors"][0]["input"])
    for name in ("ns_hash_shared", "ns_hash_safety"):
        blob = encode_grain({**base, "namespace": micro[name]["namespace"]})
        assert blob[3:5].hex() == micro[name]["expected_ns_hash"]
    stamp = micro["created_at_sec_1768471200"]
    blob = encode_grain({**base, "created_at": int(stamp["created_at_ms"])})
    assert blob[5:9].hex() == stamp["expected_header_bytes_5_8"]
    dated = decode_grain(encode_grain({**base, "created_at": micro["datetime_example"]["input"]}))
    assert dated.fields["created_at"] == int(micro["datetime_example"]["expected_epoch_ms"])
    with pytest.raises(OMSError) as caught:
        decode_grain(bytes(9) [:0] + b"\x01\x00\x01\xa4\xd2\x69\x68\xba\xa0"
                     + bytes.fromhex(micro["min_blob"]["payload_hex"]))
    assert caught.value.code == "ERR_NO_TYPE"


@pytest.mark.parametrize(
    "vector", [v for v in VECTORS["negative_vectors"] if v["kind"] == "parse_blob"],
    ids=lambda v: v["name"])
def test_every_parse_rejection_raises_its_code(vector: dict[str, Any]) -> None:
    with pytest.raises(OMSError) as caught:
        decode_grain(bytes.fromhex(vector["blob_hex"]),
                     strict_types=vector.get("tolerant_types") is False,
                     cose_wrapped=bool(vector.get("cose_wrapped")))
    assert caught.value.code == vector["expected_error"], str(caught.value)


@pytest.mark.parametrize(
    "vector", [v for v in VECTORS["negative_vectors"] if v["kind"] == "serialize"],
    ids=lambda v: v["name"])
def test_every_serialize_rejection_raises_its_code(vector: dict[str, Any]) -> None:
    fields = vector.get("input") or vector.get("grain")
    if fields is None:
        pytest.skip(f"no input in {vector['name']}")
    fields = {**fields, **{k: float(v) for k, v in vector.get("input_float_specials", {}).items()}}
    with pytest.raises(OMSError) as caught:
        encode_grain(fields)
    assert caught.value.code == vector["expected_error"], str(caught.value)


@pytest.mark.parametrize(
    "vector", [v for v in VECTORS["negative_vectors"] if v["kind"] == "verify_address"],
    ids=lambda v: v["name"])
def test_address_checks(vector: dict[str, Any]) -> None:
    blob = encode_grain(VECTORS["vectors"][0]["input"])
    with pytest.raises(OMSError) as caught:
        verify_address(blob, vector["claimed_address"])
    assert caught.value.code == vector["expected_error"]


def _no_bom(text: str) -> bool:
    return not text.startswith("\ufeff")  # a writer refuses these (§4.4); tested apart


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20).filter(_no_bom),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8).filter(_no_bom), inner, max_size=4),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_canonical_msgpack_round_trips(value: Any) -> None:
    data = encode_msgpack(value)
    again = encode_msgpack(decode_msgpack(data))
    assert again == data


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_hostile_blobs_give_typed_errors(data: bytes) -> None:
    with contextlib.suppress(OMSError):
        decode_grain(b"\x01\x00\x01\x00\x00\x00\x00\x00\x00" + data)


def test_huge_declared_lengths_fail_fast() -> None:
    for payload in (b"\xdf\xff\xff\xff\xff", b"\xdd\xff\xff\xff\xff", b"\xdb\xff\xff\xff\xff",
                    b"\x91" * 10_000 + b"\xc0"):
        with pytest.raises(OMSError):
            decode_msgpack(payload)


from vexchange.oms.grain import TYPE_BYTES, reencode  # noqa: E402

_text = st.text(min_size=1, max_size=12).filter(_no_bom)
_unit = st.floats(0.0, 1.0)
_REQUIRED = {
    "belief": {"subject": _text, "relation": _text, "object": _text, "confidence": _unit},
    "event": {"content": _text},
    "state": {"context": st.dictionaries(st.text(max_size=5).filter(_no_bom), _text, max_size=3)},
    "workflow": {"steps": st.lists(_text, min_size=1, max_size=3), "trigger": _text},
    "action": {"tool_name": _text,
               "input": st.dictionaries(st.text(max_size=5).filter(_no_bom), _text, max_size=2),
               "content": _text, "is_error": st.booleans()},
    "observation": {"observer_id": _text, "observer_type": _text},
    "goal": {"description": _text,
             "goal_state": st.sampled_from(["active", "satisfied", "failed", "suspended"])},
    "reasoning": {},
    "consensus": {"participating_observers": st.lists(_text, max_size=3), "threshold": st.integers(0, 9),
                  "agreement_count": st.integers(0, 9), "dissent_count": st.integers(0, 9)},
    "consent": {"subject_did": _text, "grantee_did": _text, "scope": st.lists(_text, max_size=2),
                "is_withdrawal": st.just(False)},
}
_extras = st.dictionaries(st.sampled_from(["importance", "user_id", "structural_tags", "x-unknown",
                                           "related_to", "embedding_refs"]),
                          st.just(None), max_size=4)


@st.composite
def grains(draw: Any) -> dict[str, Any]:
    kind = draw(st.sampled_from(sorted(TYPE_BYTES)))
    grain: dict[str, Any] = {"type": kind, "created_at": draw(st.integers(0, 4_000_000_000_000)),
                             "namespace": draw(st.text(max_size=8).filter(_no_bom))}
    grain.update({name: draw(strategy) for name, strategy in _REQUIRED[kind].items()})
    for name in draw(_extras):
        grain[name] = {
            "importance": draw(_unit), "user_id": draw(_text),
            "structural_tags": draw(st.lists(st.sampled_from(["pii:email", "reg:gdpr", "x"]), max_size=2)),
            "x-unknown": draw(json_values),
            "related_to": [{"hash": "a" * 64, "relation_type": "supports", "weight": draw(_unit)}],
            "embedding_refs": [{"vector_id": draw(_text), "model": "m", "dimensions": 384}],
        }[name]
    return grain


@settings(max_examples=300, deadline=None)
@given(grains())
def test_round_trip_procedure_holds_for_grains_of_every_type(grain: dict[str, Any]) -> None:
    blob = encode_grain(grain)
    decoded = decode_grain(blob)
    assert reencode(decoded) == blob
    assert encode_grain(decoded.fields) == blob
    assert decoded.address == content_address(blob)


@settings(max_examples=100, deadline=None)
@given(st.integers(0x0B, 0xFF), st.dictionaries(
    # not "type": beside "t" it is the same field twice, which decoding rightly calls corrupt
    st.text(max_size=6).filter(_no_bom).filter(lambda key: key != "type"), json_values, max_size=5))
def test_unknown_types_survive_byte_for_byte(type_byte: int, fields: dict[str, Any]) -> None:
    try:
        payload = encode_msgpack({**fields, "t": "x-future-type"})
    except OMSError as err:  # what a writer must refuse (a string starting with a BOM)
        assert err.code == "ERR_CORRUPT"
        return
    blob = bytes([1, 0, type_byte, 0, 0, 0, 0, 0, 1]) + payload
    grain = decode_grain(blob)
    assert grain.type == f"0x{type_byte:02x}"
    assert reencode(grain) == blob


def test_a_writer_refuses_strings_that_start_with_a_bom() -> None:
    for value in ("\ufeffx", {"\ufeffkey": 1}, ["ok", "\ufeff" + "long" * 20]):
        with pytest.raises(OMSError) as caught:
            encode_msgpack(value)
        assert caught.value.code == "ERR_CORRUPT"
