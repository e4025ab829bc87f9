"""The .vmig.jsonl codec: property tests, float32 exactness, Vex files, sidecars."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import orjson
import pytest
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


def vex_validate(obj: dict[str, object]) -> list[str]:
    """Vex 0.8.8's ``validate()`` rules (formats/vmig.js) in Python, for property tests; the
    real Vex runs in tests/test_vex_interop.py. JavaScript truthiness: "", 0 and null are falsy."""
    errors = []
    if not obj.get("id"):
        errors.append("missing id")
    if not obj.get("vex_version"):
        errors.append("missing vex_version")
    if obj.get("text") is None and obj.get("vector") is None:
        errors.append("text and vector cannot both be null")
    vector = obj.get("vector")
    if obj.get("dims") is not None and isinstance(vector, list) and obj["dims"] != len(vector):
        errors.append("dims != vector.length")
    metadata = obj.get("metadata")
    if isinstance(metadata, dict):
        errors += [f"metadata.{k} must be scalar" for k, v in metadata.items() if isinstance(v, (dict, list))]
    return errors


@settings(max_examples=300, deadline=None)
@given(records, st.sampled_from([None, "vex"]))
def test_encode_decode_round_trip(record: MemoryRecord, compat: str | None) -> None:
    line = encode_record(record, compat=compat)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert vex_validate(json.loads(line)) == []  # Vex's validator takes every line we write
    back = decode_object(orjson.loads(line), line)
    expected = record
    assert back == expected
    assert strict_form(back) == strict_form(expected)  # JSON types too: 3 stays 3, not 3.0
    assert encode_record(back, compat=compat) == line  # and the bytes are stable


def test_metadata_lists_of_strings_are_comma_strings_others_json_text() -> None:
    metadata = {"tags": ["a", "b"], "one": ["solo"], "none": [], "comma": ["a,b", "c"], "blank": ["x", ""],
                "nums": [1, 2], "obj": {"k": [1]}, "plain": "a,b"}
    line = encode_record(MemoryRecord(id="m", text="t", metadata=metadata))
    obj = json.loads(line)
    assert obj["metadata"] == {"tags": "a,b", "one": "solo", "none": "", "comma": '["a,b","c"]',
                               "blank": '["x",""]', "nums": "[1,2]", "obj": '{"k":[1]}', "plain": "a,b"}
    assert obj["metadata_lists"] == ["tags", "one", "none"]
    assert obj["metadata_json"] == ["comma", "blank", "nums", "obj"]
    assert decode_object(obj, line).metadata == metadata


def test_a_record_without_text_or_default_vector_still_has_one_of_them() -> None:
    title, body = Vector(np.ones(3, dtype="<f4").tobytes(), "t"), Vector(np.zeros(2, dtype="<f4").tobytes())
    cases = {
        "named": MemoryRecord(id="a", vectors={"title": title}),
        "two": MemoryRecord(id="b", vectors={"title": title, "body": body}),
        "sparse": MemoryRecord(id="c", sparse={"s": SparseVector.from_values([2], [0.5])}),
        "nothing": MemoryRecord(id="d"),
    }
    for name, record in cases.items():
        line = encode_record(record)
        obj = json.loads(line)
        assert vex_validate(obj) == [], name
        assert decode_object(orjson.loads(line), line) == record, name
    named, two = (json.loads(encode_record(cases[k])) for k in ("named", "two"))
    assert (named["vector"], named["model"], named["dims"]) == ([1.0] * 3, "t", 3)
    assert named["vector_name"] == "title"
    assert "vectors" not in named and named["text"] is None
    assert two["vector_name"] == "title" and list(two["vectors"]) == ["body"]
    nothing = json.loads(encode_record(cases["nothing"]))
    assert (nothing["text"], nothing["text_null"], nothing["vector"]) == ("", True, None)
    # beside text, a lone named vector stays named unless compat="vex" (Vex's loaders read `vector`)
    texted = MemoryRecord(id="e", text="t", vectors={"title": title})
    assert "vector_name" not in json.loads(encode_record(texted))
    line = encode_record(texted, compat="vex")
    assert json.loads(line)["vector_name"] == "title" and decode_object(orjson.loads(line), line) == texted
    assert "vector_name" not in json.loads(encode_record(cases["two"].replace(text="t"), compat="vex"))


def test_compat_vex_writes_epoch_seconds_and_keeps_milliseconds() -> None:
    for ms in (1_735_689_600_123, 0, -1, -86_400_000, 253_402_300_799_999, -62_135_596_800_000):
        record = MemoryRecord(id="t", text="x", created_at=ms, updated_at=ms)
        line = encode_record(record, compat="vex")
        obj = json.loads(line)
        assert obj["created_at"] == ms // 1000 and obj["created_at_ms"] == ms
        assert isinstance(obj["updated_at"], str)  # Vex's loaders read created_at only
        assert decode_object(orjson.loads(line), line) == record
    no_time = json.loads(encode_record(MemoryRecord(id="n", text="x"), compat="vex"))
    assert no_time["created_at"] is None and "created_at_ms" not in no_time
    assert "created_at_ms" not in json.loads(encode_record(MemoryRecord(id="d", text="x", created_at=5)))


def test_extension_keys_that_do_not_fit_their_line_are_refused() -> None:
    from vexchange.codecs.vmig import RecordError

    base = {"id": "x", "text": "t", "vex_version": "1.0.0"}
    bad = [
        {**base, "created_at": 1735689600, "created_at_ms": 1735689700000},  # edited seconds
        {**base, "created_at": "2025-01-01T00:00:00.000Z", "created_at_ms": 1735689600000},
        {**base, "vector_name": "title"},                                     # no vector
        {**base, "vector": [1.0], "vector_name": "t", "vectors": {"t": {"vector": [2.0]}}},
        {**base, "text_null": True},                                          # text is not ""
        {**base, "metadata": {"tags": 3}, "metadata_lists": ["tags"]},
        {**base, "metadata": {"tags": "a"}, "metadata_lists": "tags"},
    ]
    for obj in bad:
        try:
            decode_object(obj)
        except RecordError:
            continue
        raise AssertionError(f"accepted {obj!r}")


def test_an_empty_id_is_refused_by_the_writer(tmp_path: Path) -> None:
    from vexchange.connectors.vmig import VmigWriter

    writer = VmigWriter(tmp_path / "o.vmig.jsonl", resume=None, dry_run=False)
    refused = writer.write([MemoryRecord(id="", text="no id"), MemoryRecord(id="ok", text="t")])
    assert [(r.id, r.reason) for r in refused] == [("", "missing_id")]
    writer.finish({})


def test_compat_is_recorded_and_refused_for_targets_that_are_not_vmig_files(tmp_path: Path) -> None:
    from vexchange.errors import UsageError

    src = tmp_path / "in.vmig.jsonl"
    src.write_bytes(encode_record(MemoryRecord(id="1", text="t", created_at=1_735_689_600_123)))
    db = tmp_path / "t.db"
    try:
        vexchange.migrate(src, f"vektor:{db}", compat="vex")
    except UsageError as err:
        assert "--compat vex" in str(err)
    else:
        raise AssertionError("compat accepted for a VEKTOR target")
    assert not db.exists()  # refused before anything was opened
    receipt = vexchange.migrate(src, tmp_path / "c.vmig.jsonl", compat="vex")
    assert receipt.to_dict()["options"]["compat"] == "vex"
    assert b'"created_at":1735689600,' in (tmp_path / "c.vmig.jsonl").read_bytes()
    plain = vexchange.migrate(src, tmp_path / "p.vmig.jsonl")
    assert "compat" not in plain.to_dict()["options"]


def test_vex_empty_export_sidecar_is_ok_only_while_the_file_holds_no_record(tmp_path: Path) -> None:
    data = tmp_path / "e.vmig.jsonl"
    data.write_bytes(b"\n# a comment\n")
    (tmp_path / "e.vmig.meta.json").write_text(json.dumps(
        {"exported_at": "2026-01-01T00:00:00.000Z", "source_store": None, "record_count": 0,
         "checksum": None, "vex_version": "1.0.0"}))
    assert verify_checksum(data)["status"] == "ok-empty" and vexchange.verify(data).ok
    assert [p.items for p in read_file(data, batch_size=5)] == [[]]
    data.write_bytes(encode_record(MemoryRecord(id="1", text="t")))
    assert verify_checksum(data)["status"] == "mismatch" and not vexchange.verify(data).ok
    (tmp_path / "e.vmig.meta.json").write_text(json.dumps({"record_count": 1, "checksum": None}))
    assert verify_checksum(data)["status"] == "no-checksum"  # Vex never writes this; nothing to check


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
    got = [r for p in read_file(vex, batch_size=10) for r in p.items if isinstance(r, MemoryRecord)]
    assert [r.id for r in got] == ["12", "a1b2"]
    assert got[0].id_type == "int" and got[0].created_at == 1_735_689_600_000
    assert got[1].vectors == {} and got[1].extra == {"future_key": {"x": [1]}}
    out = tmp_path / "out.vmig.jsonl"
    vexchange.migrate(vex, out)
    again = [r for p in read_file(out, batch_size=10) for r in p.items]
    assert again == got
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
    path.write_bytes(encode_record(MemoryRecord(id="a", score=3))
                     + encode_record(MemoryRecord(id="b", score=3.0)))
    (a, b), = [page.items for page in read_file(path, batch_size=10)]
    assert isinstance(a, MemoryRecord) and isinstance(b, MemoryRecord)
    assert type(a.score) is int and a.score == 3
    assert type(b.score) is float and b.score == 3.0
    assert b'"score":3,' in encode_record(a) and b'"score":3.0,' in encode_record(b)


# ------------------------------------------------------------- a page at a time


def _page_corpus() -> list[MemoryRecord]:
    from vexchange.testing.tricky import tricky_records

    rng = np.random.default_rng(7)
    hazard = np.array([363742205], dtype=np.uint32).tobytes()
    unaligned = rng.standard_normal(8).astype("<f4").tobytes()
    unaligned = unaligned[:5] + hazard + unaligned[9:]  # the hazard's bytes off the float grid
    extra = [
        MemoryRecord(id="hz", vectors={"": Vector(np.array([1, 363742205], np.uint32).tobytes())}),
        MemoryRecord(id="un", vectors={"": Vector(unaligned)}),
        MemoryRecord(id="old", text="t", created_at=-62_135_596_800_000, updated_at=253_402_300_799_999),
        MemoryRecord(id="pre", text="t", created_at=-1, updated_at=0),
        MemoryRecord(id="", text="an empty id is refused in its place"),
        MemoryRecord(id="nan", text="t", metadata={"x": math.nan}),
    ]
    return tricky_records() + extra + [
        MemoryRecord(id=f"r{i}", text="t", created_at=int(ms), updated_at=int(ms) + 1)
        for i, ms in enumerate(rng.integers(-62_135_596_800_000, 253_402_300_799_998, 40))]


def _one_by_one(records: list[MemoryRecord], compat: str | None) -> list[object]:
    from vexchange.codecs.vmig import RecordError

    out: list[object] = []
    for record in records:
        try:
            out.append(encode_record(record, compat=compat))
        except (RecordError, TypeError) as err:
            out.append((type(err), str(err)))
    return out


@pytest.mark.parametrize("compat", [None, "vex"])
def test_a_page_encodes_to_the_bytes_of_its_records_one_by_one(compat: str | None) -> None:
    from vexchange.codecs.vmig import encode_records

    records = _page_corpus()
    paged = [line if isinstance(line, bytes) else (type(line), str(line))
             for line in encode_records(records, compat=compat)]
    assert paged == _one_by_one(records, compat)
    assert any(not isinstance(line, bytes) for line in paged)  # the refused ones, in place
    for size in (1, 3, 7):  # pages too small for the numpy passes, and pages cut anywhere
        pages = [records[i:i + size] for i in range(0, len(records), size)]
        again = [line if isinstance(line, bytes) else (type(line), str(line))
                 for page in pages for line in encode_records(page, compat=compat)]
        assert again == paged


def test_the_page_screen_finds_the_hazard_wherever_the_byte_search_does() -> None:
    from vexchange._floats import _HAZARD_0, _HAZARD_1, hazard_free

    rng = np.random.default_rng(3)
    clean = [rng.standard_normal(16).astype("<f4").tobytes() for _ in range(20)]
    assert hazard_free(clean) and hazard_free([])
    for needle in (_HAZARD_0, _HAZARD_1):
        for offset in range(0, 9):
            dirty = clean[5][:offset] + needle + clean[5][offset + 4:]
            assert not hazard_free([*clean[:5], dirty, *clean[6:]])
    assert not hazard_free([b"\x00" + _HAZARD_0[:2], _HAZARD_0[2:] + b"\x00"])  # across two: careful


def test_iso_text_of_a_page_is_format_timestamp() -> None:
    from vexchange._time import format_timestamp
    from vexchange.codecs.vmig import _iso_page

    rng = np.random.default_rng(11)
    stamps: list[int | None] = [int(v) for v in rng.integers(-62_135_596_800_000, 253_402_300_800_000, 5000)]
    stamps += [None, -62_135_596_800_001, 253_402_300_800_000, 0, -1]
    for stamp, text in zip(stamps, _iso_page(stamps), strict=True):
        if text is not None:
            assert text == format_timestamp(stamp)  # type: ignore[arg-type]
        else:
            assert stamp is None or not -62_135_596_800_000 <= stamp <= 253_402_300_799_999


def test_a_writer_given_an_iterator_writes_every_record(tmp_path: Path) -> None:
    """The page is walked twice (encoded, then held): an iterator must not come out empty."""
    from vexchange.connectors.vmig import VmigWriter
    from vexchange.testing.records import sample_records

    out = tmp_path / "it.vmig.jsonl"
    writer = VmigWriter(out, resume=None, dry_run=False, spaces={})
    records = list(sample_records(7))
    writer.write(iter(records))  # type: ignore[arg-type]  # the contract is a list; callers slip
    writer.finish({"source": {"connector": "test"}})
    assert [orjson.loads(line)["id"] for line in out.read_bytes().splitlines()] == [r.id for r in records]
