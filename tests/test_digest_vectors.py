"""Golden vectors for the canonical record digest (docs/formats/canonical.md, normative): the
canonical bytes, record digests, content ids and a namespace digest of tests/data/digest-vectors.json
must not change, and an independent implementation of the documented form (Python's json and
hashlib, not vexchange's code) gives the same bytes."""

from __future__ import annotations

import base64
import hashlib
import json
import unicodedata
from pathlib import Path
from typing import Any

import pytest

from vexchange._canonical import NamespaceDigest, canonical_bytes, content_id, record_digest
from vexchange.record import MemoryRecord, SparseVector, Vector

VECTORS = json.loads((Path(__file__).parent / "data" / "digest-vectors.json").read_text())


def build(fields: dict[str, Any]) -> MemoryRecord:
    metadata = json.loads(fields["metadata_json"]) if fields["metadata_json"] is not None else None
    return MemoryRecord(
        id=fields["id"], text=fields["text"], namespace=fields["namespace"], metadata=metadata,
        created_at=fields["created_at"], updated_at=fields["updated_at"], score=fields["score"],
        source_store=fields["source_store"], modality=fields["modality"], id_type=fields["id_type"],
        extra=fields["extra"],
        vectors={n: Vector(base64.b64decode(v["float32_le_base64"]), v["model"])
                 for n, v in fields["vectors"].items()},
        sparse={n: SparseVector(base64.b64decode(s["indices_u32_le_base64"]),
                                base64.b64decode(s["values_f32_le_base64"]), s["model"])
                for n, s in fields["sparse"].items()})


def documented_form(record: MemoryRecord) -> bytes:
    """docs/formats/canonical.md, written again from the text alone."""
    text = unicodedata.normalize("NFC", record.text) if record.text is not None else None
    body: list[Any] = ["vxr1", record.id, record.namespace, text, record.metadata,
                       record.created_at, record.updated_at,
                       [[name, vec.model, len(vec.data) // 4, hashlib.sha256(vec.data).hexdigest()]
                        for name, vec in sorted(record.vectors.items())]]
    if record.sparse:
        body.append([[name, sp.model, len(sp.indices) // 4, hashlib.sha256(sp.indices).hexdigest(),
                      hashlib.sha256(sp.values).hexdigest()] for name, sp in sorted(record.sparse.items())])
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@pytest.mark.parametrize("case", VECTORS["records"], ids=lambda c: c["name"])
def test_record_digests_match_the_golden_vectors(case: dict[str, Any]) -> None:
    record = build(case["record"])
    assert canonical_bytes(record).decode() == case["canonical"]
    assert documented_form(record).decode() == case["canonical"]
    assert record_digest(record).hex() == case["digest"]
    assert hashlib.sha256(case["canonical"].encode()).hexdigest() == case["digest"]
    assert content_id(record) == case["content_id"]


def test_what_is_not_content_leaves_the_digest_alone() -> None:
    by_name = {c["name"]: c for c in VECTORS["records"]}
    assert by_name["not-content"]["digest"] == by_name["minimal"]["digest"]


def test_the_namespace_digest_matches_the_golden_vector() -> None:
    spec = VECTORS["namespace_digest"]
    by_name = {c["name"]: c for c in VECTORS["records"]}
    digest = NamespaceDigest()
    for name in reversed(spec["of"]):  # any order gives the same sum
        digest.add(bytes.fromhex(by_name[name]["digest"]))
    assert digest.to_dict() == {"count": spec["count"], "digest": spec["digest"]}
    total = sum(int(by_name[n]["digest"], 16) for n in spec["of"]) % (1 << 256)
    assert f"{total:064x}" == spec["digest"]


def test_adding_a_page_of_digests_at_once_is_adding_them_one_by_one() -> None:
    import random

    rng = random.Random(5)
    digests = [bytes([255]) * 32, bytes(32)] + [rng.randbytes(32) for _ in range(5000)]
    one_by_one, at_once = NamespaceDigest(3, "ff" * 32), NamespaceDigest(3, "ff" * 32)
    for digest in digests:
        one_by_one.add(digest)
    at_once.add_all(digests[:100])
    at_once.add_all([])
    at_once.add_all(digests[100:103])  # a few: big-integer steps, not numpy
    at_once.add_all(digests[103:])
    assert at_once == one_by_one and at_once.count == 3 + len(digests)
    with pytest.raises(ValueError):
        at_once.add_all([b"short"])
