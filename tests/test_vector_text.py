"""vmig -> vmig writes a vector's text again as it was read, only where that is exact
(src/vexchange/_vector_text.py; issue 19, item 6: skip re-encoding what passes through
unchanged when that is provably exact).

The output is read back here with the standard library's ``json`` and numpy's float32 cast,
not with vexchange: what any float64 reader followed by a cast gets must be the source's bits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import orjson
import pytest

import vexchange
from vexchange._vector_text import vector_texts_of
from vexchange.codecs.vmig import encode_records
from vexchange.connectors.vmig import read_file
from vexchange.record import MemoryRecord, Vector

# vector texts a writer other than vexchange might have written: not the shortest float32 form,
# but every number's float64 lies strictly between two float32 values (or is one)
KEPT = [
    b"[0.10000000149011612,0.5000,1e-3,-0.0]",
    b"[ 0.25 , 1 , 2.5E+2 , 3 ]",
    b"[0.333333333333333314829616256247390992939472198486328125,7,8,9]",
]
# 1 + 2**-24 is a float32 midpoint as a float64: the reader settles it from the decimal text,
# and a float64 reader's cast could round it the other way, so it is formatted anew
MIDPOINT = b"[1.000000059604644775390625,0.5,0.25,0.125]"


def _line(record_id: str, vector: bytes) -> bytes:
    return b'{"id":"' + record_id.encode() + b'","text":"t","vector":' + vector + b',"dims":4}\n'


def _vector_text(line: bytes) -> bytes:
    start = line.index(b'"vector":') + len(b'"vector":')
    return line[start:line.index(b"]", start) + 1]


def _bits(values: list[float]) -> bytes:
    return np.asarray(values, dtype=np.float64).astype(np.float32).tobytes()


def _records(path: Path) -> list[MemoryRecord]:
    return [item for page in read_file(path, batch_size=100) for item in page.items
            if isinstance(item, MemoryRecord)]


@pytest.fixture()
def source(tmp_path: Path) -> Path:
    path = tmp_path / "in.vmig.jsonl"
    lines = [_line(f"k{i}", text) for i, text in enumerate(KEPT)] + [_line("mid", MIDPOINT)]
    path.write_bytes(b"".join(lines))
    return path


@pytest.mark.parametrize("reading", ["off", "process"])
def test_unchanged_vectors_keep_their_text(source: Path, tmp_path: Path, reading: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VEX_READ_AHEAD", reading)
    out = tmp_path / "out.vmig.jsonl"
    receipt = vexchange.migrate(str(source), str(out))
    assert receipt.counts.written == 4
    lines = out.read_bytes().splitlines(keepends=True)
    by_id = {json.loads(line)["id"]: line for line in lines}
    for i, text in enumerate(KEPT):
        line = by_id[f"k{i}"]
        assert _vector_text(line) == text  # as it was, not formatted anew
        assert _bits(json.loads(line)["vector"]) == _bits(json.loads(text))
    mid = by_id["mid"]
    settled = np.array([1.0, 0.5, 0.25, 0.125], dtype=np.float32)  # the tie, to even
    assert _vector_text(mid) == orjson.dumps(settled, option=orjson.OPT_SERIALIZE_NUMPY)
    assert _bits(json.loads(mid)["vector"]) == settled.tobytes()
    # and the records vexchange reads back are the source's
    assert _records(out) == _records(source)


def test_a_vector_made_again_is_formatted_anew(source: Path) -> None:
    """The text is tied to the very bytes object the reader made of it: equal bytes made
    elsewhere (a vector changed and changed back, another record's) are formatted anew."""
    page = next(iter(read_file(source, batch_size=100)))
    texts = vector_texts_of(page)
    assert texts is not None and len(texts) == len(KEPT)  # not the midpoint's
    records = [r for r in page.items if isinstance(r, MemoryRecord)]
    remade = [r.replace(vectors={n: Vector(bytes(bytearray(v.data)), v.model) for n, v in r.vectors.items()})
              for r in records]
    as_read = encode_records(records, texts=texts)
    made_again = encode_records(remade, texts=texts)
    assert [_vector_text(line) for line in as_read[:len(KEPT)]] == KEPT  # type: ignore[arg-type]
    for line in made_again:
        assert isinstance(line, bytes)
        vector = np.asarray(json.loads(line)["vector"], dtype=np.float32)
        assert _vector_text(line) == orjson.dumps(vector, option=orjson.OPT_SERIALIZE_NUMPY)
    assert made_again == encode_records(records)  # no texts: what vexchange always wrote


def test_workers_write_the_same_bytes(source: Path, tmp_path: Path) -> None:
    one, two = tmp_path / "one.vmig.jsonl", tmp_path / "two.vmig.jsonl"
    vexchange.migrate(str(source), str(one))
    vexchange.migrate(str(source), str(two), workers=2)
    assert one.read_bytes() == two.read_bytes()


def test_a_named_vector_in_vector_and_a_refused_line(tmp_path: Path) -> None:
    """A line that holds a named vector in ``vector`` (``vector_name``) keeps its text too;
    a line refused after its vector parsed (dims that do not fit) goes to the rejects whole
    and takes nothing from its neighbours' texts."""
    text = b"[0.10000000149011612,0.5000,1e-3,-0.0]"
    source = tmp_path / "in.vmig.jsonl"
    source.write_bytes(
        b'{"id":"n1","text":"","text_null":true,"vector":' + text + b',"vector_name":"title","dims":4}\n'
        + b'{"id":"bad","text":"t","vector":' + text + b',"dims":5}\n'
        + _line("ok", KEPT[1]))
    out = tmp_path / "out.vmig.jsonl"
    receipt = vexchange.migrate(str(source), str(out), allow_skips=True)
    assert receipt.counts.written == 2 and receipt.counts.skipped == {"dims_mismatch": 1}
    by_id = {json.loads(line)["id"]: line for line in out.read_bytes().splitlines()}
    assert set(by_id) == {"n1", "ok"}
    assert json.loads(by_id["n1"])["vector_name"] == "title"
    assert _vector_text(by_id["n1"]) == text
    assert _vector_text(by_id["ok"]) == KEPT[1]
    assert _records(out) == _records(source)  # the refused line is not among them
