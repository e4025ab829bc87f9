"""The .vmig.jsonl codec: property tests, float32 exactness, Vex files, sidecars."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

import vexchange
from vexchange._floats import decode_vector
from vexchange.codecs.vmig import decode_object, encode_record
from vexchange.connectors.vmig import read_file
from vexchange.record import MemoryRecord, SparseVector, Vector
from vexchange.sidecar import verify_checksum
from vexchange.testing.tricky import strict_form

scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
                    st.floats(allow_nan=False, allow_infinity=False), st.text())
metadata_values = st.one_of(scalars, st.lists(scalars, max_size=4),
                            st.dictionaries(st.text(max_size=5), scalars, max_size=3))
float32s = st.floats(width=32, allow_nan=False, allow_infinity=False)
vectors = st.lists(float32s, min_size=1, max_size=24).map(lambda v: np.array(v, dtype="<f4").tobytes())
timestamps = st.one_of(st.none(), st.integers(-62_135_596_800_000, 253_402_300_799_999))

records = st.builds(
    MemoryRecord,
    id=st.one_of(st.text(min_size=1), st.integers(-(2**62), 2**62).map(str)),
    text=st.one_of(st.none(), st.text()),
    vectors=st.dictionaries(st.one_of(st.just(""), st.text(min_size=1, max_size=6)),
                            st.builds(Vector, vectors, st.one_of(st.none(), st.text(max_size=8))),
                            max_size=3),
    namespace=st.one_of(st.none(), st.text(max_size=10)),
    metadata=st.one_of(st.none(), st.dictionaries(st.text(max_size=8), metadata_values, max_size=5)),
    created_at=timestamps, updated_at=timestamps,
    source_store=st.one_of(st.none(), st.text(max_size=6)),
    score=st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False),
                    st.integers(-(2**63), 2**63 - 1)),
    sparse=st.dictionaries(st.text(min_size=1, max_size=6), st.builds(
        lambda pairs, model: SparseVector.from_values(list(pairs), list(pairs.values()), model),
        st.dictionaries(st.integers(0, 2**32 - 1), float32s, max_size=8),
        st.one_of(st.none(), st.text(max_size=5))), max_size=2),
)


@settings(max_examples=300, deadline=None)
@given(records)
def test_encode_decode_round_trip(record: MemoryRecord) -> None:
    line = encode_record(record)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    back = decode_object(orjson.loads(line), line)
    expected = record
    assert back == expected
    assert strict_form(back) == strict_form(expected)  # JSON types too: 3 stays 3, not 3.0
    assert encode_record(back) == line  # and the bytes are stable


@settings(max_examples=300, deadline=None)
@given(st.lists(float32s, min_size=1, max_size=64))
def test_float32_text_reads_back_bit_exact(values: list[float]) -> None:
    data = np.array(values, dtype="<f4").tobytes()
    line = encode_record(MemoryRecord(id="x", vectors={"": Vector(data)}))
    obj = json.loads(line)  # any float64 reader
    assert np.array(obj["vector"], dtype=np.float64).astype("<f4").tobytes() == data


def test_the_double_rounding_value_is_exact_both_ways() -> None:
    hazard = np.array([363742205], dtype=np.uint32).view("<f4")  # 7.038531e-26
    data = np.concatenate([hazard, -hazard]).tobytes()
    line = encode_record(MemoryRecord(id="h", vectors={"": Vector(data)}))
    assert b"7.038531e-26" not in line  # the wide form is written instead
    assert np.array(json.loads(line)["vector"]).astype("<f4").tobytes() == data
    # and a file from another writer holding the short form still reads exactly
    short = b'{"id":"h","vector":[7.038531e-26,-7.038531e-26]}'
    assert np.float32(float("7.038531e-26")).view(np.uint32) != 363742205  # naive read is wrong
    assert decode_object(orjson.loads(short), short).vectors[""].data == data


def test_vector_value_checks() -> None:
    for bad in ([], [1, "2"], [True, 1.0], [None], [1e39], "1,2"):
        try:
            decode_vector(bad)
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad!r}")


def test_reads_vex_08_and_03_files(tmp_path: Path) -> None:
    vex = tmp_path / "vex.vmig.jsonl"
    vex.write_bytes(
        b"\xef\xbb\xbf# exported by vex 0.8.8\n"
        b'{"id":12,"text":"int id, epoch seconds","vector":[0.5,0.25],"model":null,"dims":2,'
        b'"namespace":null,"metadata":null,"created_at":1735689600,"source_store":"vektor",'
        b'"modality":"text","score":null,"vex_version":"1.0.0"}\n'
        b"\n"
        b'{"id":"a1b2","text":"only an id and text","vex_version":"1.0.0","future_key":{"x":[1]}}\n'
    )
    got = [r for p in read_file(vex, batch_size=10) for r in p.items]
    assert [r.id for r in got] == ["12", "a1b2"]
    assert got[0].id_type == "int" and got[0].created_at == 1_735_689_600_000
    assert got[1].vectors == {} and got[1].extra == {"future_key": {"x": [1]}}
    out = tmp_path / "out.vmig.jsonl"
    vexchange.migrate(vex, out)
    again = [r for p in read_file(out, batch_size=10) for r in p.items]
    assert again == [r.replace(source_store=r.source_store) for r in got]
    assert b'"future_key":{"x":[1]}' in out.read_bytes()  # unknown keys survive


def test_sidecar_checksum_both_conventions(tmp_path: Path) -> None:
    data = tmp_path / "m.vmig.jsonl"
    data.write_bytes(encode_record(MemoryRecord(id="1", text="t")))
    import hashlib

    meta = tmp_path / "m.vmig.meta.json"
    meta.write_text(json.dumps({"checksum": "sha256:" + hashlib.sha256(data.read_bytes()).hexdigest()}))
    assert verify_checksum(data)["status"] == "ok"
    meta.write_text(json.dumps({"checksum": "sha256:" + hashlib.sha256(data.read_bytes()[:-1]).hexdigest()}))
    assert verify_checksum(data)["status"] == "ok-vex-convention"
    data.write_bytes(data.read_bytes().replace(b'"t"', b'"T"'))
    assert verify_checksum(data)["status"] == "mismatch"
    assert not vexchange.verify(data)["ok"]


def test_sidecar_for_other_names_never_overwrites_data(tmp_path: Path) -> None:
    src = tmp_path / "in.vmig.jsonl"
    src.write_bytes(encode_record(MemoryRecord(id="1", text="t")))
    out = tmp_path / "out.jsonl"
    vexchange.migrate(src, out)
    assert out.read_bytes() == src.read_bytes()
    assert json.loads((tmp_path / "out.jsonl.meta.json").read_text())["record_count"] == 1
    sidecar = tmp_path / "in.vmig.meta.json"
    history = json.loads(sidecar.read_text()) if sidecar.exists() else None
    assert history is None  # no sidecar to update: none is invented


def test_timestamps_keep_milliseconds() -> None:
    from vexchange._time import format_timestamp, parse_timestamp

    for ms in (0, 1, -1, 1_735_689_600_123, 4_102_444_800_000, -62_135_596_800_000):
        assert parse_timestamp(format_timestamp(ms)) == ms
    assert parse_timestamp("2025-01-01T02:00:00.5+02:00") == 1_735_689_600_500
    assert parse_timestamp(1_735_689_600) == parse_timestamp(1_735_689_600_000)
    assert math.isclose(parse_timestamp(1.5) or 0, 1500)


def test_non_finite_metadata_is_refused_not_written_as_null(tmp_path: Path) -> None:
    from vexchange.connectors.vmig import VmigWriter

    writer = VmigWriter(tmp_path / "o.vmig.jsonl", resume=None, dry_run=False)
    bad = [MemoryRecord(id="a", metadata={"x": float("nan")}),
           MemoryRecord(id="b", metadata={"deep": {"y": [1.0, float("inf")]}})]
    refused = writer.write([*bad, MemoryRecord(id="c", metadata={"ok": 1.5})])
    assert [(r.id, r.reason) for r in refused] == [("a", "bad_metadata"), ("b", "bad_metadata")]
    writer.finish({})
    assert (tmp_path / "o.vmig.jsonl").read_bytes().count(b"\n") == 1


def test_rejects_keep_records_that_cannot_be_encoded() -> None:
    from vexchange.engine.run import _record_json

    kept = _record_json(MemoryRecord(id="a", namespace="n", metadata={"x": float("nan")}))
    assert kept["id"] == "a" and "nan" in kept["unencodable"]


def test_fast_line_parser_agrees_with_orjson_on_awkward_lines() -> None:
    from vexchange.codecs.vmig import parse_line

    awkward = [
        b'{"id":"1","vector":[0.5,-2,1e-7],"text":"plain"}',
        b'{"id":"2","vector":null,"metadata":{"vector":[1,2]}}',        # only a nested one
        b'{"id":"3","vector":0,"metadata":{"vector":[1,2]}}',           # placeholder look-alike
        b'{"id":"4","metadata":{"vector":[1]},"vector":[1.5]}',         # two occurrences
        b'{"id":"5", "vector": [1.5, 2.5]}',                           # spaces after the colon
        b'{"id":"6","vector":[],"text":"x"}',                           # empty
        b'{"id":"7","vector":[true,1],"text":"x"}',                     # not numbers
        b'{"id":"8","text":"\\"vector\\":[9]","vector":[3.25]}',        # the key inside a string
        b'{"id":"9","vector":[1,[2]]}',                                 # nested array
        b'{"id":"10","metadata":{"a\\"vector":[1,2]},"vector":[4.5]}',  # the key inside a key
        b'{"id":"11","vector":[4.5],"metadata":{"a\\"vector":[1,2]}}',  # ... after the vector
    ]
    for line in awkward:
        fast, plain = parse_line(line), orjson.loads(line)
        vector = fast.get("vector")
        if isinstance(vector, np.ndarray):
            assert vector.tolist() == plain["vector"], line
            fast = {**fast, "vector": plain["vector"]}
        assert fast == plain, line


def test_unicode_digit_ids_are_strings_everywhere(tmp_path: Path) -> None:
    from vexchange.record import canonical_int

    assert [canonical_int(t) for t in ("42", "-7", "042", "+1", "¹", "٣", "", "-")] == \
        [42, -7, None, None, None, None, None, None]
    src = tmp_path / "a.vmig.jsonl"
    src.write_bytes(encode_record(MemoryRecord(id="¹", text="superscript one")))
    vexchange.import_(src, f"vektor:{tmp_path / 't.db'}")
    out = tmp_path / "b.vmig.jsonl"
    vexchange.export(f"vektor:{tmp_path / 't.db'}", out)
    assert [r.id for p in read_file(out, batch_size=5) for r in p.items] == ["¹"]


def test_an_integer_score_reads_back_an_integer(tmp_path: Path) -> None:
    """``score: 3`` in a file is the integer 3 when read, through the codec and the file
    reader (a float would change the JSON type on the next export)."""
    path = tmp_path / "s.vmig.jsonl"
    path.write_bytes(encode_record(MemoryRecord(id="a", score=3))  # type: ignore[arg-type]
                     + encode_record(MemoryRecord(id="b", score=3.0)))
    (a, b), = [page.items for page in read_file(path, batch_size=10)]
    assert isinstance(a, MemoryRecord) and isinstance(b, MemoryRecord)
    assert type(a.score) is int and a.score == 3
    assert type(b.score) is float and b.score == 3.0
    assert b'"score":3,' in encode_record(a) and b'"score":3.0,' in encode_record(b)
