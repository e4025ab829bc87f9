"""OMS v1.3 grains against the spec's test vectors (copied into tests/data from the
implementer's digest; the project never reads ../shared at test time)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
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
@example(type_byte=0x0B, fields={"run_id": []})  # a full name the common map compacts: kept as written
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


# ------------------------------------------------------- issue 18: validation gaps, each refused

_NOW = 1768471200000
_COMPLETE = {"type": "action", "created_at": _NOW, "namespace": "shared", "tool_name": "search",
             "input": {"q": "x"}, "content": "3 hits", "is_error": False}
_CALL = {"type": "action", "created_at": _NOW, "namespace": "shared", "action_phase": "call",
         "tool_name": "search", "input": {"q": "x"}, "tool_call_id": "c1"}
_RESULT = {"type": "action", "created_at": _NOW, "namespace": "shared", "action_phase": "result",
           "tool_call_id": "c1", "content": "3 hits", "is_error": False, "derived_from": ["a" * 64]}
_DEFINITION = {"type": "action", "created_at": _NOW, "namespace": "shared", "action_phase": "definition",
               "tool_name": "search", "tool_description": "finds things", "input_schema": {"type": "object"}}


def _blob_of(fields: dict[str, Any], type_byte: int, flags: int = 0) -> bytes:
    """A blob written without the encoder's checks (what another writer might send)."""
    return bytes([1, flags, type_byte, 0xA4, 0xD2, 0x69, 0x68, 0xBA, 0xA0]) + encode_msgpack(fields)


def _refused(code: str, fields: dict[str, Any]) -> None:
    """Refused by the writer and, written raw by someone else, by the reader too."""
    with pytest.raises(OMSError) as caught:
        encode_grain(fields)
    assert caught.value.code == code, str(caught.value)
    from vexchange.oms.fields import compact_map
    from vexchange.oms.grain import TYPE_BYTES as BYTES, type_of

    kind = type_of(fields["type"])[0]
    short = {compact_map(kind).get(k, k): v for k, v in fields.items()}
    with pytest.raises(OMSError) as caught:
        decode_grain(_blob_of(short, BYTES[kind]))
    assert caught.value.code == code, str(caught.value)


@pytest.mark.parametrize("fields", [_COMPLETE, _CALL, _RESULT, _DEFINITION,
                                    {**_COMPLETE, "tool_name": None, "input": None, "content": None,
                                     "is_error": None, "execution_mode": "code_exec", "code": "print(1)"}],
                         ids=["complete", "call", "result", "definition", "codeact-lenient"])
def test_s27_1_every_action_phase_encodes_and_decodes(fields: dict[str, Any]) -> None:
    assert reencode(decode_grain(encode_grain(fields))) == encode_grain(fields)


@pytest.mark.parametrize("fields", [
    {**_COMPLETE, "content": None},                 # complete: content REQUIRED
    {**_COMPLETE, "is_error": None},                # complete: is_error REQUIRED
    {**_COMPLETE, "derived_from": ["a" * 64]},      # complete: derived_from absent
    {**_CALL, "content": "early"},                  # call: content MUST NOT
    {**_CALL, "is_error": False},                   # call: is_error MUST NOT
    {**_CALL, "duration_ms": 5},                    # call: duration_ms MUST NOT
    {**_CALL, "input": None},                       # call: input REQUIRED
    {**_RESULT, "derived_from": None},              # result: derived_from REQUIRED
    {**_RESULT, "tool_call_id": None},              # result: tool_call_id REQUIRED
    {**_RESULT, "tool_name": "search"},             # result: tool_name omitted
    {**_DEFINITION, "input": {"q": "x"}},           # definition: input MUST NOT
    {**_DEFINITION, "content": "x"},                # definition: content MUST NOT
    {**_DEFINITION, "input_schema": None},          # definition: input_schema REQUIRED
    {**_COMPLETE, "action_phase": "later"},         # not a phase
    {**_COMPLETE, "is_error": "false"},             # is_error is a bool
    {**_COMPLETE, "input": "q=x"},                  # input is a map
], ids=["complete-no-content", "complete-no-is_error", "complete-derived_from", "call-content",
        "call-is_error", "call-duration_ms", "call-no-input", "result-no-derived_from",
        "result-no-tool_call_id", "result-tool_name", "definition-input", "definition-content",
        "definition-no-input_schema", "unknown-phase", "string-is_error", "string-input"])
def test_s27_1_action_phase_table_err_schema(fields: dict[str, Any]) -> None:
    _refused("ERR_SCHEMA", fields)


def test_s27_1_legacy_tool_call_grains_predate_the_phase_table() -> None:
    legacy = {"t": "tool_call", "ca": _NOW, "tn": "search", "args": {"q": "x"}, "res": "ok", "ok": True}
    assert decode_grain(_blob_of(legacy, 0x05)).fields["args"] == {"q": "x"}


_CONSENSUS = {"type": "consensus", "created_at": _NOW, "participating_observers": ["did:a", "did:b"],
              "threshold": 2, "agreement_count": 2, "dissent_count": 0}


@pytest.mark.parametrize("name", ["agreement_count", "dissent_count", "threshold"])
def test_s19_3_negative_consensus_counts_err_range(name: str) -> None:
    _refused("ERR_RANGE", {**_CONSENSUS, name: -1})


@pytest.mark.parametrize("value", ["2", 2.0, True])
def test_s8_9_consensus_counts_are_integers_err_schema(value: Any) -> None:
    _refused("ERR_SCHEMA", {**_CONSENSUS, "agreement_count": value})


_OBSERVATION = {"type": "observation", "created_at": _NOW, "observer_id": "cam-1", "observer_type": "camera"}


@pytest.mark.parametrize("value", [7, ["camera"], {"kind": "camera"}, True])
def test_s8_6_observer_type_must_be_a_string_err_schema(value: Any) -> None:
    _refused("ERR_SCHEMA", {**_OBSERVATION, "observer_type": value})


def test_s8_6_empty_observer_type_err_empty_and_unknown_values_pass() -> None:
    _refused("ERR_EMPTY", {**_OBSERVATION, "observer_type": ""})
    assert decode_grain(encode_grain({**_OBSERVATION, "observer_type": "acme:thermal-v2"}))


@pytest.mark.parametrize(("fields", "code"), [
    ({"type": "workflow", "created_at": _NOW, "trigger": "deploy", "steps": []}, "ERR_EMPTY"),
    ({"type": "workflow", "created_at": _NOW, "trigger": "deploy", "steps": "build"}, "ERR_SCHEMA"),
    ({"type": "workflow", "created_at": _NOW, "trigger": "deploy", "steps": [1, 2]}, "ERR_SCHEMA"),
    ({"type": "belief", "created_at": _NOW, "subject": 1, "relation": "r", "object": "o", "confidence": 0.5},
     "ERR_SCHEMA"),
    ({"type": "belief", "created_at": _NOW, "subject": "s", "relation": "r", "object": 3, "confidence": 0.5},
     "ERR_SCHEMA"),
    ({"type": "consent", "created_at": _NOW, "subject_did": "did:a", "grantee_did": "did:b",
      "scope": "store", "is_withdrawal": False}, "ERR_SCHEMA"),
    ({"type": "consent", "created_at": _NOW, "subject_did": "did:a", "grantee_did": "did:b",
      "scope": ["store"], "is_withdrawal": "no"}, "ERR_SCHEMA"),
    ({"type": "state", "created_at": _NOW, "context": ["not", "a", "map"]}, "ERR_SCHEMA"),
], ids=["s8.4-empty-steps", "s8.4-string-steps", "s8.4-int-steps", "s8.1-int-subject", "s8.1-int-object",
        "s8.10-string-scope", "s8.10-string-withdrawal", "s8.3-list-context"])
def test_s8_required_fields_have_their_types(fields: dict[str, Any], code: str) -> None:
    _refused(code, fields)


def test_s13_4_tuple_structural_tags_give_a_blob_the_decoder_accepts() -> None:
    blob = encode_grain({**VECTORS["vectors"][0]["input"], "structural_tags": ("pii:email", "reg:gdpr")})
    assert decode_grain(blob).sensitivity == 2
    as_list = {**VECTORS["vectors"][0]["input"], "structural_tags": ["pii:email", "reg:gdpr"]}
    assert encode_grain(as_list) == blob


@pytest.mark.parametrize("tags", ["pii:email", [1], {"pii:email": True}])
def test_s13_2_structural_tags_are_an_array_of_strings_err_schema(tags: Any) -> None:
    _refused("ERR_SCHEMA", {**VECTORS["vectors"][0]["input"], "structural_tags": tags})


@pytest.mark.parametrize("bit", [1, 2, 5], ids=["encrypted", "compressed", "cbor"])
def test_s3_opaque_payload_flag_bits_on_decode_err_corrupt(bit: int) -> None:
    blob = bytearray(encode_grain(VECTORS["vectors"][0]["input"]))
    blob[1] |= 1 << bit
    with pytest.raises(OMSError) as caught:
        decode_grain(bytes(blob))
    assert caught.value.code == "ERR_CORRUPT" and f"bit {bit}" in str(caught.value)


def test_s4_3_an_integral_confidence_is_written_as_float64() -> None:
    protected = next(v for v in VECTORS["vectors"] if v["name"].startswith("v6_protected"))
    assert protected["input"]["confidence"] == 1.0
    blob = encode_grain({**protected["input"], "confidence": 1})
    assert content_address(blob) == protected["expected_content_address"]
    assert bytes.fromhex("a163cb3ff0000000000000") in blob
    weighted = encode_grain({**VECTORS["vectors"][0]["input"],
                             "related_to": [{"hash": "a" * 64, "relation_type": "supports", "weight": 1}]})
    assert bytes.fromhex("a177cb3ff0000000000000") in weighted
    assert decode_grain(weighted).fields["related_to"][0]["weight"] == 1.0


@pytest.mark.parametrize("where", ["value", "key", "namespace", "nested"])
def test_s4_4_a_lone_surrogate_err_corrupt(where: str) -> None:
    base = dict(VECTORS["vectors"][0]["input"])
    fields = {"value": {**base, "object": "x\ud800y"}, "key": {**base, "x\udfff": 1},
              "namespace": {**base, "namespace": "\ud83d"},
              "nested": {**base, "context": {"k": ["\ud800"]}}}[where]
    with pytest.raises(OMSError) as caught:
        encode_grain(fields)
    assert caught.value.code == "ERR_CORRUPT"
    with pytest.raises(OMSError):
        encode_msgpack(fields)


def test_s6_11_delegation_keys_are_compacted_on_goal_and_belief_only() -> None:
    delegation = {"authorized_namespaces": ["ops"], "authorized_types": [1], "delegation_depth": 0}
    goal = {"type": "goal", "created_at": _NOW, "description": "ship", "goal_state": "active", **delegation}
    event = {"type": "event", "created_at": _NOW, "content": "hi", **delegation}
    assert {"ans", "atypes", "ddepth"} <= set(decode_msgpack(encode_grain(goal)[9:]))
    assert {"ans", "atypes", "ddepth"} <= set(decode_msgpack(encode_grain({**VECTORS["vectors"][0]["input"],
                                                                           **delegation})[9:]))
    payload = decode_msgpack(encode_grain(event)[9:])
    assert set(delegation) <= set(payload) and "ans" not in payload
    assert decode_grain(encode_grain(event)).fields["authorized_types"] == [1]
    raw = _blob_of({"t": "event", "ca": _NOW, "content": "hi", "ans": ["x"]}, 0x02)
    assert decode_grain(raw).fields["ans"] == ["x"]
    with pytest.raises(OMSError) as caught:  # §4.1: two names of one key on a Goal
        encode_grain({**goal, "ans": ["other"]})
    assert caught.value.code == "ERR_CORRUPT"


def test_memory_shapes_refuse_what_the_spec_rejects(tmp_path: Path) -> None:
    from vexchange.errors import UsageError
    from vexchange.oms.shapes import grains_from_jsonl

    log = tmp_path / "calls.jsonl"
    log.write_text(json.dumps({"tool": "search", "input": {"q": "x"}, "call_id": "c1",
                               "timestamp": 1768471200}))
    (call,) = [decode_grain(b) for b in grains_from_jsonl(log, "tool_call")]
    assert call.fields["action_phase"] == "call" and "is_error" not in call.fields
    for shape, line, why in (
            ("tool_call", {"tool": "t", "output": "o", "is_error": "false"}, "is_error"),
            ("tool_call", {"tool": "t", "is_error": True}, "needs its output"),
            ("runbook", {"trigger": "deploy", "steps": []}, "steps"),
            ("runbook", {"trigger": "deploy", "steps": "build, ship"}, "steps")):
        log.write_text(json.dumps({**line, "timestamp": 1768471200}))
        with pytest.raises(UsageError, match=why):
            list(grains_from_jsonl(log, shape))


def test_s17_the_conformance_level_is_declared() -> None:
    from vexchange.oms import CONFORMANCE_LEVEL, SPEC_VERSION, conformance

    assert (CONFORMANCE_LEVEL, SPEC_VERSION) == (3, "1.3")
    assert conformance()["oms_conformance"] == CONFORMANCE_LEVEL


def test_the_cli_offers_every_shape_and_shows_the_conformance_level() -> None:
    from click.testing import CliRunner

    from vexchange.cli import cli
    from vexchange.cli.grains import SHAPE_CHOICES
    from vexchange.oms.shapes import SHAPE_NAMES

    assert tuple(SHAPE_CHOICES) == SHAPE_NAMES
    shown = CliRunner().invoke(cli, ["grains", "conformance", "--json"])
    assert shown.exit_code == 0 and '"oms_conformance": 3' in shown.output
