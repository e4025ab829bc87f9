"""Typed results (vexchange.results): each result's ``to_dict()``, and so ``--json``, is exactly
the dict the untyped code returned for the same input (keys, values and their order), and the
mapping-style access kept for code that used those dicts reads the same values.

EXPECTED holds what the dict-returning code (before the results were typed) gave for each
scenario, with the temporary directory written as ``<tmp>`` and wall-clock times as ``<time>``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest

from vexchange import migrate, results
from vexchange.checks import inspect, validate, verify
from vexchange.oms.tools import inspect_grains, verify_grains
from vexchange.pack.micropack import Header, micropack, read_micropack
from vexchange.pack.search import Weights, search
from vexchange.record import MemoryRecord, Vector
from vexchange.sidecar import sidecar_path
from vexchange.testing.conformance import write_vmig

T0 = 1_700_000_000_000
NOW = T0 + 10 * 86_400_000
BAD_LINE = b'{"id":"bad","namespace":"work","vector":[1.0,"x"]}\n'


def _records() -> list[MemoryRecord]:
    vec = Vector.from_values
    return [
        MemoryRecord(id="a", namespace="work", text="the user likes tea", metadata={"k": 1},
                     vectors={"": vec([1.0, 0.0, 0.0], "m1")}, created_at=T0, source_store="vektor"),
        MemoryRecord(id="b", namespace="work", text="coffee in the morning",
                     vectors={"": vec([0.6, 0.8, 0.0], "m1")}, created_at=T0 + 86_400_000,
                     extra={"scores": {"elo": 1500}}),
        MemoryRecord(id="c", text="tea is good", vectors={"": vec([0.0, 1.0, 0.0], "m1")},
                     updated_at=T0 + 2 * 86_400_000),
        MemoryRecord(id="d", namespace="home", text="only text"),
    ]


def _files(tmp: Path, name: str) -> dict[str, Path]:
    return {"receipt": tmp / f"{name}.receipt.json", "rejects": tmp / f"{name}.rejects.jsonl"}


def _source(tmp: Path) -> Path:
    return write_vmig(tmp / "src.vmig.jsonl", _records(), metric="cosine")


def _with_bad_line(tmp: Path) -> Path:
    """A hand-edited file: a line that is no record added, its sidecar (whose checksum would no
    longer hold) removed."""
    path = write_vmig(tmp / "bad.vmig.jsonl", _records())
    with open(path, "ab") as handle:
        handle.write(BAD_LINE)
    sidecar_path(path).unlink()
    return path


def inspect_vmig(tmp: Path) -> Any:
    return inspect(_source(tmp))


def inspect_damaged_vmig(tmp: Path) -> Any:
    return inspect(_with_bad_line(tmp))


def inspect_vmig_without_sidecar(tmp: Path) -> Any:
    path = _source(tmp)
    sidecar_path(path).unlink()
    return inspect(path)


def inspect_cartridge(tmp: Path) -> Any:
    migrate(_source(tmp), f"cartridge://{tmp}/m.db", **_files(tmp, "c"))
    return inspect(f"cartridge://{tmp}/m.db")


def validate_problems(tmp: Path) -> Any:
    path = tmp / "problems.vmig.jsonl"
    path.write_bytes(b"\n".join([
        b'{"id":"a","text":"x","vector":[0.1,0.2]}',
        b'{"id":"a","text":"again","vector":[0.1,0.2]}',
        b"{not json",
        b'{"id":"b","vector":[0.1,0.2,0.3]}',
        b'{"id":"c","metadata":{"deep":{"k":1}},"vector":[0.5,0.5]}',
        b'{"id":"d","text":"to be embedded"}',
        b'{"text":"no id"}',
        b'{"id":"e","vector":[1.0,"x"]}',
    ]) + b"\n")
    return validate(path)


def validate_clean(tmp: Path) -> Any:
    return validate(_source(tmp))


def verify_file_alone(tmp: Path) -> Any:
    return verify(_source(tmp))


def verify_all_three(tmp: Path) -> Any:
    source = _source(tmp)
    target = tmp / "out.vmig.jsonl"
    migrate(source, target, **_files(tmp, "o"))
    return verify(target, receipt=tmp / "o.receipt.json", against=source)


def verify_differences(tmp: Path) -> Any:
    source = _with_bad_line(tmp)
    records = _records()
    changed = [records[0].replace(text="changed"), records[1],
               MemoryRecord(id="z", namespace="work", text="extra")]
    migrate(_source(tmp), f"cartridge://{tmp}/m.db", **_files(tmp, "c"))
    target = write_vmig(tmp / "other.vmig.jsonl", changed)
    return verify(target, receipt=tmp / "c.receipt.json", against=source)


def verify_against_namespace(tmp: Path) -> Any:
    source = _source(tmp)
    migrate(source, f"cartridge://{tmp}/m.db", **_files(tmp, "c"))
    return verify(f"cartridge://{tmp}/m.db", against=source, namespaces=["work"])


def _cartridge(tmp: Path) -> Path:
    migrate(_source(tmp), f"cartridge://{tmp}/m.db", **_files(tmp, "c"))
    return tmp / "m.db"


def search_vector(tmp: Path) -> Any:
    return search(_cartridge(tmp), vector=[1.0, 0.2, 0.0], k=3, now_ms=NOW)


def search_keyword(tmp: Path) -> Any:
    return search(_cartridge(tmp), keyword="tea", k=5, now_ms=NOW, weights=Weights(1.0, 0.2, 0.3, 5.0))


def micropack_header(tmp: Path) -> Any:
    return micropack(_source(tmp), tmp / "top.jsonl", vector=[1.0, 0.0, 0.0], k=2)


def micropack_header_unreadable(tmp: Path) -> Any:
    return micropack(_with_bad_line(tmp), tmp / "top.jsonl", vector=[1.0, 0.0, 0.0], k=5,
                     quantization="float16", namespaces=["work"])


def micropack_read(tmp: Path) -> Any:
    micropack(_source(tmp), tmp / "top.jsonl", vector=[1.0, 0.0, 0.0], k=2)
    return read_micropack(tmp / "top.jsonl")[0]


def _grains(tmp: Path) -> Path:
    migrate(_source(tmp), tmp / "g.mg", **_files(tmp, "g"))
    return tmp / "g.mg"


def grains_inspect(tmp: Path) -> Any:
    return inspect_grains(_grains(tmp))


def grains_verify(tmp: Path) -> Any:
    return verify_grains(_grains(tmp))


def grains_verify_damaged(tmp: Path) -> Any:
    path = _grains(tmp)
    data = bytearray(path.read_bytes())
    data[-5] ^= 1
    path.write_bytes(bytes(data))
    return verify_grains(path)


SCENARIOS: dict[str, Callable[[Path], Any]] = {f.__name__: f for f in (
    inspect_vmig, inspect_damaged_vmig, inspect_vmig_without_sidecar, inspect_cartridge,
    validate_problems, validate_clean, verify_file_alone, verify_all_three, verify_differences,
    verify_against_namespace, search_vector, search_keyword, micropack_header,
    micropack_header_unreadable, micropack_read, grains_inspect, grains_verify,
    grains_verify_damaged)}

_TIMES = {"exported_at", "imported_at"}


def plain(value: Any) -> Any:
    """A result as builtins: ``to_dict()`` of a typed result (or of each in a list), else as is."""
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value.to_dict() if isinstance(value, results.Result) else value


def normal(value: Any, tmp: Path) -> Any:
    """``value`` with the temporary directory as ``<tmp>`` and wall-clock times as ``<time>``."""
    if isinstance(value, dict):
        return {k: "<time>" if k in _TIMES and isinstance(v, str) else normal(v, tmp)
                for k, v in value.items()}
    if isinstance(value, list):
        return [normal(v, tmp) for v in value]
    if isinstance(value, str):
        return value.replace(str(tmp.resolve()), "<tmp>").replace(str(tmp), "<tmp>")
    return value



# the SHA-256 of the query [1.0, 0.0, 0.0] as little-endian float64
QUERY_SHA256 = '725c4777db328932b197731b1c986c84913a069a2090deb3667b697624551c8b'


def _orjson_error(line: bytes) -> str:
    """orjson's message for a line that is not JSON (it words it; validate passes it on)."""
    try:
        orjson.loads(line)
    except orjson.JSONDecodeError as err:
        return str(err)
    raise AssertionError(line)


EXPECTED: dict[str, Any] = {'inspect_vmig': {'location': '<tmp>/src.vmig.jsonl',
                  'records': 4,
                  'with_vector': 3,
                  'without_vector': 1,
                  'with_text': 4,
                  'without_text': 0,
                  'unreadable': {},
                  'namespaces': {'work': 2, '(none)': 1, 'home': 1},
                  'models': {'m1': 3},
                  'dims': {'3': 3},
                  'sources': {'(none)': 3, 'vektor': 1},
                  'created_from': '2023-11-14T22:13:20.000Z',
                  'created_to': '2023-11-15T22:13:20.000Z',
                  'sidecar': {'status': 'ok',
                              'record_count': 4,
                              'record_count_matches': True,
                              'exported_at': '<time>',
                              'source_store': 'conformance',
                              'imported_to': None,
                              'imported_at': None}},
 'inspect_damaged_vmig': {'location': '<tmp>/bad.vmig.jsonl',
                          'records': 4,
                          'with_vector': 3,
                          'without_vector': 1,
                          'with_text': 4,
                          'without_text': 0,
                          'unreadable': {'bad_vector': 1},
                          'namespaces': {'work': 2, '(none)': 1, 'home': 1},
                          'models': {'m1': 3},
                          'dims': {'3': 3},
                          'sources': {'(none)': 3, 'vektor': 1},
                          'created_from': '2023-11-14T22:13:20.000Z',
                          'created_to': '2023-11-15T22:13:20.000Z',
                          'sidecar': {'status': 'missing'}},
 'inspect_vmig_without_sidecar': {'location': '<tmp>/src.vmig.jsonl',
                                  'records': 4,
                                  'with_vector': 3,
                                  'without_vector': 1,
                                  'with_text': 4,
                                  'without_text': 0,
                                  'unreadable': {},
                                  'namespaces': {'work': 2, '(none)': 1, 'home': 1},
                                  'models': {'m1': 3},
                                  'dims': {'3': 3},
                                  'sources': {'(none)': 3, 'vektor': 1},
                                  'created_from': '2023-11-14T22:13:20.000Z',
                                  'created_to': '2023-11-15T22:13:20.000Z',
                                  'sidecar': {'status': 'missing'}},
 'inspect_cartridge': {'location': '<tmp>/m.db',
                       'records': 4,
                       'with_vector': 3,
                       'without_vector': 1,
                       'with_text': 4,
                       'without_text': 0,
                       'unreadable': {},
                       'namespaces': {'work': 2, '(none)': 1, 'home': 1},
                       'models': {'m1': 3},
                       'dims': {'3': 3},
                       'sources': {'(none)': 3, 'vektor': 1},
                       'created_from': '2023-11-14T22:13:20.000Z',
                       'created_to': '2023-11-15T22:13:20.000Z'},
 'validate_problems': {'file': '<tmp>/problems.vmig.jsonl',
                       'records': 8,
                       'ok': False,
                       'error_counts': {'duplicate_id': 1,
                                        'bad_json': 1,
                                        'dims_inconsistent': 1,
                                        'nested_metadata': 1,
                                        'missing_id': 1,
                                        'bad_vector': 1},
                       'errors': [{'line': 2,
                                   'id': 'a',
                                   'reason': 'duplicate_id',
                                   'detail': "id 'a' also on line 1"},
                                  {'line': 3,
                                   'id': None,
                                   'reason': 'bad_json',
                                   'detail': _orjson_error(b'{not json')},
                                  {'line': 4,
                                   'id': 'b',
                                   'reason': 'dims_inconsistent',
                                   'detail': '3 dims; line 1 has 2'},
                                  {'line': 5,
                                   'id': 'c',
                                   'reason': 'nested_metadata',
                                   'detail': 'metadata is not flat: deep'},
                                  {'line': 7,
                                   'id': None,
                                   'reason': 'missing_id',
                                   'detail': 'record has no id'},
                                  {'line': 8,
                                   'id': 'e',
                                   'reason': 'bad_vector',
                                   'detail': "vector: vector holds a non-number: 'x'"}],
                       'warnings': {'text_only_reembeddable': 1}},
 'validate_clean': {'file': '<tmp>/src.vmig.jsonl',
                    'records': 4,
                    'ok': True,
                    'error_counts': {},
                    'errors': [],
                    'warnings': {'text_only_reembeddable': 1}},
 'verify_file_alone': {'target': '<tmp>/src.vmig.jsonl',
                       'checks': [{'check': 'checksum',
                                   'ok': True,
                                   'status': 'ok',
                                   'records': 4,
                                   'sidecar_record_count': 4}],
                       'ok': True},
 'verify_all_three': {'target': '<tmp>/out.vmig.jsonl',
                      'checks': [{'check': 'checksum',
                                  'ok': True,
                                  'status': 'ok',
                                  'records': 4,
                                  'sidecar_record_count': 4},
                                 {'check': 'receipt',
                                  'receipt': '<tmp>/o.receipt.json',
                                  'ok': True,
                                  'namespaces': 3,
                                  'differences': []},
                                 {'check': 'against',
                                  'source': '<tmp>/src.vmig.jsonl',
                                  'ok': True,
                                  'matched': 4,
                                  'normalised': 0,
                                  'rounded': 0,
                                  'source_records': 4,
                                  'missing': 0,
                                  'changed': 0,
                                  'extra': 0,
                                  'source_unreadable': 0,
                                  'target_unreadable': 0,
                                  'missing_ids': [],
                                  'changed_ids': [],
                                  'extra_ids': [],
                                  'unreadable': []}],
                      'ok': True},
 'verify_differences': {'target': '<tmp>/other.vmig.jsonl',
                        'checks': [{'check': 'checksum',
                                    'ok': True,
                                    'status': 'ok',
                                    'records': 3,
                                    'sidecar_record_count': 3},
                                   {'check': 'receipt',
                                    'receipt': '<tmp>/c.receipt.json',
                                    'ok': False,
                                    'namespaces': 3,
                                    'differences': [{'namespace': '',
                                                     'expected_count': 1,
                                                     'actual_count': 0,
                                                     'digest_matches': False},
                                                    {'namespace': 'home',
                                                     'expected_count': 1,
                                                     'actual_count': 0,
                                                     'digest_matches': False},
                                                    {'namespace': 'work',
                                                     'expected_count': 2,
                                                     'actual_count': 3,
                                                     'digest_matches': False}]},
                                   {'check': 'against',
                                    'source': '<tmp>/bad.vmig.jsonl',
                                    'ok': False,
                                    'matched': 1,
                                    'normalised': 0,
                                    'rounded': 0,
                                    'source_records': 5,
                                    'missing': 2,
                                    'changed': 1,
                                    'extra': 1,
                                    'source_unreadable': 1,
                                    'target_unreadable': 0,
                                    'missing_ids': ['c', 'd'],
                                    'changed_ids': ['a'],
                                    'extra_ids': ['z'],
                                    'unreadable': [{'side': 'source',
                                                    'id': 'bad',
                                                    'namespace': 'work',
                                                    'reason': 'bad_vector'}]}],
                        'ok': False},
 'verify_against_namespace': {'target': '<tmp>/m.db',
                              'checks': [{'check': 'against',
                                          'source': '<tmp>/src.vmig.jsonl',
                                          'ok': True,
                                          'matched': 2,
                                          'normalised': 0,
                                          'rounded': 0,
                                          'source_records': 2,
                                          'missing': 0,
                                          'changed': 0,
                                          'extra': 0,
                                          'source_unreadable': 0,
                                          'target_unreadable': 0,
                                          'missing_ids': [],
                                          'changed_ids': [],
                                          'extra_ids': [],
                                          'unreadable': []}],
                              'ok': True},
 'search_vector': [{'score': 1.059951,
                    'similarity': 0.980581,
                    'elo': 1200.0,
                    'recency': 0.793701,
                    'namespace': 'work',
                    'id': 'a',
                    'text': 'the user likes tea',
                    'rank': 1},
                   {'score': 0.889981,
                    'similarity': 0.745241,
                    'elo': 1500.0,
                    'recency': 0.812252,
                    'namespace': 'work',
                    'id': 'b',
                    'text': 'coffee in the morning',
                    'rank': 2},
                   {'score': 0.27924,
                    'similarity': 0.196116,
                    'elo': 1200.0,
                    'recency': 0.831238,
                    'namespace': None,
                    'id': 'c',
                    'text': 'tea is good',
                    'rank': 3}],
 'search_keyword': [{'score': 1.098963,
                     'similarity': 1.0,
                     'elo': 1200.0,
                     'recency': 0.329877,
                     'namespace': None,
                     'id': 'c',
                     'text': 'tea is good',
                     'rank': 1},
                    {'score': 0.959984,
                     'similarity': 0.884984,
                     'elo': 1200.0,
                     'recency': 0.25,
                     'namespace': 'work',
                     'id': 'a',
                     'text': 'the user likes tea',
                     'rank': 2}],
 'micropack_header': {'micropack': 1,
                      'vector': '',
                      'dims': 3,
                      'metric': 'cosine',
                      'quantization': 'int8',
                      'k': 2,
                      'records': 2,
                      'source': '<tmp>/src.vmig.jsonl',
                      'query_sha256': QUERY_SHA256},
 'micropack_header_unreadable': {'micropack': 1,
                                 'vector': '',
                                 'dims': 3,
                                 'metric': 'cosine',
                                 'quantization': 'float16',
                                 'k': 5,
                                 'records': 2,
                                 'source': '<tmp>/bad.vmig.jsonl',
                                 'query_sha256': QUERY_SHA256,
                                 'unreadable': 1},
 'micropack_read': {'micropack': 1,
                    'vector': '',
                    'dims': 3,
                    'metric': 'cosine',
                    'quantization': 'int8',
                    'k': 2,
                    'records': 2,
                    'source': '<tmp>/src.vmig.jsonl',
                    'query_sha256': QUERY_SHA256},
 'grains_inspect': {'file': '<tmp>/g.mg',
                    'grains': 4,
                    'types': {'belief': 4},
                    'namespaces': {'work': 2, '(none)': 1, 'home': 1},
                    'compressed': False,
                    'manifest_entries': 0},
 'grains_verify': {'file': '<tmp>/g.mg',
                   'ok': True,
                   'grains': 4,
                   'footer': 'ok',
                   'addresses': 4,
                   'vectors': 'ok'},
 'grains_verify_damaged': {'file': '<tmp>/g.mg',
                           'ok': False,
                           'error': 'ERR_INTEGRITY',
                           'detail': 'ERR_INTEGRITY: <tmp>/g.mg: footer checksum does not match'}}


def _in(tmp: Path, name: str) -> Path:
    (tmp / name).mkdir()
    return tmp / name


def _results(value: Any) -> list[results.Result]:
    return value if isinstance(value, list) else [value]


@pytest.mark.parametrize("name", SCENARIOS)
def test_to_dict_is_the_dict_the_untyped_code_returned(name: str, tmp_path: Path) -> None:
    got = normal(plain(SCENARIOS[name](tmp_path)), tmp_path)
    # as JSON bytes, so the order of every object's keys is compared too
    assert orjson.dumps(got) == orjson.dumps(EXPECTED[name])


@pytest.mark.parametrize("name", SCENARIOS)
def test_mapping_access_reads_what_the_dicts_held(name: str, tmp_path: Path) -> None:
    for result in _results(SCENARIOS[name](tmp_path)):
        assert isinstance(result, results.Result)
        data = result.to_dict()
        assert list(result) == list(result.keys()) == list(data) and len(result) == len(data)
        assert dict(result) == data and dict(result.items()) == data
        assert list(result.values()) == list(data.values())
        for key, value in data.items():
            assert key in result and result[key] == value and result.get(key) == value
        assert "no-such-key" not in result and result.get("no-such-key", 7) == 7
        with pytest.raises(KeyError):
            result["no-such-key"]


def test_each_command_returns_its_type(tmp_path: Path) -> None:
    assert type(inspect_cartridge(_in(tmp_path, "i"))) is results.InspectReport
    assert isinstance(inspect_vmig(_in(tmp_path, "v")).sidecar, results.SidecarState)
    report = validate_problems(_in(tmp_path, "p"))
    assert type(report) is results.ValidateReport and isinstance(report.errors[0], results.ValidateError)
    checks = verify_differences(_in(tmp_path, "d"))
    assert type(checks) is results.VerifyReport and not checks.ok
    kinds = [results.ChecksumCheck, results.ReceiptCheck, results.AgainstCheck]
    assert [type(c) for c in checks.checks] == kinds
    assert all(isinstance(c, results.VerifyCheck) for c in checks.checks)
    assert isinstance(checks.checks[1].differences[0], results.NamespaceDifference)
    assert isinstance(checks.checks[2].unreadable[0], results.UnreadableEntry)
    assert all(type(hit) is results.SearchHit for hit in search_vector(_in(tmp_path, "s")))
    assert type(micropack_header(_in(tmp_path, "m"))) is Header
    assert type(micropack_read(_in(tmp_path, "r"))) is Header
    assert type(grains_inspect(_in(tmp_path, "g"))) is results.GrainsInspectReport
    assert type(grains_verify(_in(tmp_path, "h"))) is results.GrainsVerifyReport


def test_absent_keys_are_absent_and_nested_reads_are_plain(tmp_path: Path) -> None:
    cartridge = inspect_cartridge(_in(tmp_path, "c"))
    assert cartridge.sidecar is None and "sidecar" not in cartridge and cartridge.get("sidecar") is None
    missing = inspect_vmig_without_sidecar(_in(tmp_path, "m")).sidecar
    assert missing is not None and missing.record_count is results.UNSET
    assert missing.to_dict() == {"status": "missing"}
    failed = grains_verify_damaged(_in(tmp_path, "g"))
    assert failed.grains is results.UNSET and "grains" not in failed and failed.error == "ERR_INTEGRITY"
    report = verify_all_three(_in(tmp_path, "v"))
    # the old dicts' nested reads: plain dicts and lists, the kind of check under "check"
    assert type(report["checks"][2]) is dict and report["checks"][2]["matched"] == 4
    assert [c["check"] for c in report["checks"]] == ["checksum", "receipt", "against"]
    assert report.checks[2]["check"] == "against" and report.checks[2].matched == 4


def test_results_are_frozen(tmp_path: Path) -> None:
    report = verify_file_alone(tmp_path)
    with pytest.raises(AttributeError):
        report.ok = False
    with pytest.raises(TypeError):
        report["ok"] = False


@pytest.mark.parametrize("name,kind", [
    ("inspect_vmig", results.InspectReport), ("inspect_cartridge", results.InspectReport),
    ("validate_problems", results.ValidateReport), ("verify_differences", results.VerifyReport),
    ("verify_all_three", results.VerifyReport), ("micropack_header_unreadable", Header),
    ("grains_verify", results.GrainsVerifyReport), ("grains_verify_damaged", results.GrainsVerifyReport),
])
def test_json_decodes_back_to_the_same_result(name: str, kind: type[results.Result], tmp_path: Path) -> None:
    """The tagged union of checks, and the UNSET fields, survive a JSON round trip."""
    result = SCENARIOS[name](tmp_path)
    assert msgspec.json.decode(msgspec.json.encode(result), type=kind) == result
    hits = search_keyword(_in(tmp_path, "s"))
    assert msgspec.json.decode(msgspec.json.encode(hits), type=list[results.SearchHit]) == hits


def test_the_micropack_header_line_is_the_result(tmp_path: Path) -> None:
    header = micropack_header_unreadable(tmp_path)
    line = (tmp_path / "top.jsonl").read_bytes().splitlines()[0]
    assert list(orjson.loads(line).items()) == list(header.to_dict().items())


@pytest.mark.parametrize("args,name", [
    (["inspect", "{tmp}/src.vmig.jsonl"], "inspect_vmig"),
    (["validate", "{tmp}/problems.vmig.jsonl"], "validate_problems"),
    (["verify", "{tmp}/other.vmig.jsonl", "--receipt", "{tmp}/c.receipt.json", "--against",
      "{tmp}/bad.vmig.jsonl"], "verify_differences"),
    (["search", "cartridge://{tmp}/m.db", "--keyword", "tea", "--k", "3"], "search_vector"),
    (["grains", "verify", "{tmp}/g.mg"], "grains_verify"),
])
def test_json_output_is_to_dict(args: list[str], name: str, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    from vexchange.cli import main

    result = SCENARIOS[name](tmp_path)
    if name == "search_vector":  # the CLI's search has no --now: compare with the same query now
        result = search(tmp_path / "m.db", keyword="tea", k=3)
    main([arg.format(tmp=tmp_path) for arg in args] + ["--json"])
    printed = orjson.loads(capsys.readouterr().out)
    assert orjson.dumps(printed) == orjson.dumps(plain(result))  # the keys' order too


def test_docs_describe_every_field_of_every_result() -> None:
    """docs/results.md has a row for every field (a new field without its row fails here)."""
    text = (Path(__file__).parents[1] / "docs" / "results.md").read_text(encoding="utf-8")
    kinds = [k for k in vars(results).values()
             if isinstance(k, type) and issubclass(k, results.Result) and k is not results.Result]
    for kind in [*kinds, Header]:
        assert f"`{kind.__name__}`" in text, kind
        for field in msgspec.structs.fields(kind):
            assert f"| `{field.name}` |" in text, (kind.__name__, field.name)
    for tag in ("checksum", "receipt", "against"):
        assert f'`check: "{tag}"`' in text
