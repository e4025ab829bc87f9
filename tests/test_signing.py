"""vex sign / vex verify --signature (vexchange.signing, docs/signing.md): Vex's .vmig.sig both
ways, against the real Vex 0.8.8 and the real Node (the ``vex_npm`` fixture, never mocked), and
what vexchange adds: trusted keys, reasons, safe key and signature files, signing on export."""

from __future__ import annotations

import json
import math
from decimal import Decimal
import os
import re
import shutil
import stat
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import vexchange
from vexchange import signing
from vexchange.api import open_store
from vexchange.cli import main
from vexchange.errors import DecodeError, UsageError, redact
from vexchange.record import MemoryRecord
from vexchange.testing.records import sample_records
from vexchange.testing.tricky import tricky_records

pytest.importorskip("blake3")
pytest.importorskip("cryptography")


@pytest.fixture(autouse=True)
def _own_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads or writes the developer's ~/.config/vexchange (default key, keyring)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


def write_file(path: Path, records: list[MemoryRecord]) -> Path:
    """``records`` through vexchange's own .vmig.jsonl writer (with its sidecar)."""
    writer = open_store(str(path)).open_writer()
    writer.write(records)
    writer.finish({})
    return path


def corpus_file(path: Path) -> Path:
    samples = sample_records(40, dims=8, sparse=True, named=("title",))
    return write_file(path, [*tricky_records(), *samples])


def key_pair(path: Path) -> str:
    return signing.keygen(path).public_key


# ------------------------------------------------------------------------ JSON as JavaScript


@pytest.mark.parametrize(("value", "shown"), [
    (1e21, "1e+21"), (1e20, "100000000000000000000"), (1e-7, "1e-7"), (1e-6, "0.000001"),
    (-0.0, "0"), (0.0, "0"), (5e-324, "5e-324"), (float(2**53 + 1), "9007199254740992"),
    (1.5e-7, "1.5e-7"), (123456789012345680000.0, "123456789012345680000"),
    (0.1 + 0.2, "0.30000000000000004"),
    (1e300, "1e+300"), (1.7976931348623157e308, "1.7976931348623157e+308"), (-1e-7, "-1e-7"),
    (1e16, "10000000000000000"), (1.25e16, "12500000000000000"), (3.0, "3"), (-2.5, "-2.5"),
    (1e-5, "0.00001"), (1.2345e-5, "0.000012345"), (float("inf"), "null"), (float("nan"), "null"),
])
def test_js_number_prints_as_javascript_does(value: float, shown: str) -> None:
    assert signing.js_number(value) == shown


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_js_number_reads_back_the_same_double_in_javascript_notation(x: float) -> None:
    text = signing.js_number(x)
    assert float(text) == x or (x == 0 and text == "0")
    assert not text.endswith(".0") and "e+0" not in text and "e-0" not in text
    exponent = Decimal(repr(x)).adjusted()  # the exponent of the shortest digits, exactly
    assert ("e" in text) == (x != 0 and not -7 < exponent < 21)


@settings(max_examples=200)
@given(st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20))
def test_js_stringify_of_js_parse_is_stable(value: Any) -> None:
    """Parsing what was printed gives back the same text (a fixed point), as in JavaScript."""
    text = signing.js_stringify(value)
    assert signing.js_stringify(signing.js_parse(text)) == text


def test_js_parse_keeps_a_duplicate_key_in_its_first_place_with_its_last_value() -> None:
    assert signing.js_stringify(signing.js_parse('{"a":1,"b":2,"a":3}')) == '{"a":3,"b":2}'
    reordered = signing.js_stringify(signing.js_parse('{"b":1,"2":2,"1":3,"01":4}'))
    assert reordered == '{"1":3,"2":2,"b":1,"01":4}'
    with pytest.raises(ValueError, match="NaN"):
        signing.js_parse('{"a": NaN}')


def test_canonical_record_puts_vex_keys_first_and_drops_object_prototype_names() -> None:
    line = ('{"zz":1,"metadata":{"b":1,"a":2},"id":"x","toString":5,"__proto__":6,"0":7,'
            '"vex_version":"1.0.0","agent_id":null}')
    assert signing.canonical_record(signing.js_parse(line)) == (
        '{"0":7,"id":"x","agent_id":null,"metadata":{"b":1,"a":2},"vex_version":"1.0.0","zz":1}')


def _node(script: str, *args: str | Path) -> str:
    done = subprocess.run(["node", "-e", script, *map(str, args)], capture_output=True, text=True,
                          timeout=120, check=True)
    return done.stdout


_NODE_STRINGIFY = """
const fs = require('fs');
const lines = fs.readFileSync(process.argv[1], 'utf8').split('\\n').filter(l => l.length);
process.stdout.write(lines.map(l => JSON.stringify(JSON.parse(l))).join('\\n'));
"""

_HAND_MADE = [
    '{"a":1e21,"b":5e-324,"c":-0.0,"d":9007199254740993,"e":1e-7,"f":0.000001,"g":-0}',
    '{"big":123456789012345678901234567890,"e400":1e400,"neg":-1e400,"tiny":1e-400,"x":1E+2}',
    '{"s":"\\ud800 lone \\udfff and pair \\ud83d\\ude80 raw 🚀 é \\u00e9 \\u2028\\u2029 \\u007f"}',
    '{"c":"\\u0000\\u0001\\u001f\\b\\f\\n\\r\\t\\"\\\\\\/"}',
    '{"k":{"b":1,"2":2,"1":3,"4294967294":4,"4294967295":5,"-1":6,"01":7,"":8,"__proto__":{"x":1}}}',
    '{"a":1,"a":{"z":1},"b":[1.0,2.50,-0.0,1e2]}',
    '[1,"x",null,true,false,{"a":[]}]',
    '{"deep":[[[[[[{"a":[[]]}]]]]]],"empty":{},"list":[]}',
    '  {"padded": true}  ',
]


def _random_doubles(n: int) -> list[float]:
    """Doubles from every part of the range: random bit patterns (deterministic), finite only."""
    import random

    rng = random.Random(17)
    out: list[float] = []
    while len(out) < n:
        x = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        if math.isfinite(x):
            out.append(x)
    out += [rng.uniform(-1, 1) for _ in range(n)]
    return out + [float(rng.randint(-10**22, 10**22)) for _ in range(200)]


def test_js_stringify_of_js_parse_is_nodes_on_tricky_lines(vex_npm: Any, tmp_path: Path) -> None:
    """The writer's lines (tricky corpus, sample records) and hand-made ones through Node's own
    JSON.parse + JSON.stringify, against ours, line by line."""
    path = corpus_file(tmp_path / "c.vmig.jsonl")
    lines = [line for line in path.read_text(encoding="utf-8").split("\n") if line]
    lines += _HAND_MADE
    lines += [json.dumps(_random_doubles(2000)[i:i + 100]) for i in range(0, 4200, 100)]
    source = tmp_path / "lines.txt"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogatepass")
    theirs = _node(_NODE_STRINGIFY, source).split("\n")
    ours = [signing.js_stringify(signing.js_parse(line.strip())) for line in lines]
    assert len(theirs) == len(ours)
    for mine, node in zip(ours, theirs, strict=True):
        assert mine == node


def test_object_prototype_names_are_nodes(vex_npm: Any) -> None:
    names = _node("process.stdout.write(JSON.stringify(Object.getOwnPropertyNames(Object.prototype)))")
    assert set(json.loads(names)) == signing._OBJECT_PROTOTYPE


# ---------------------------------------------------------------------------- sign and verify


def test_signed_file_verifies_and_trust_comes_only_from_a_trusted_key(tmp_path: Path) -> None:
    data = corpus_file(tmp_path / "m.vmig.jsonl")
    public = key_pair(tmp_path / "k.key")
    report = signing.sign(data, tmp_path / "k.key")
    assert report.signature == str(tmp_path / "m.vmig.sig")
    assert report.public_key == public and report.records == len(data.read_text().splitlines())

    unknown = signing.verify_signature(data)
    assert (unknown.status, unknown.valid, unknown.trusted) == ("unknown-key", True, False)
    assert not unknown.ok
    assert "unknown key" in unknown.reasons[0]

    trusted = signing.verify_signature(data, trusted_keys=[public])
    assert (trusted.status, trusted.ok, trusted.signer) == ("trusted", True, "--trusted-key")
    assert not trusted.reasons
    assert signing.verify_signature(data, trusted_keys=[tmp_path / "k.key.pub"]).ok


def test_the_signature_file_is_laid_out_as_vex_writes_it(tmp_path: Path) -> None:
    data = write_file(tmp_path / "m.vmig.jsonl", list(sample_records(3, dims=4)))
    key_pair(tmp_path / "k.key")
    signing.sign(data, tmp_path / "k.key")
    text = (tmp_path / "m.vmig.sig").read_text()
    fields = json.loads(text)
    assert list(fields) == ["vex_version", "signed_at", "record_count", "root_hash", "record_hashes",
                            "public_key", "signature"]
    assert text == json.dumps(fields, indent=2, ensure_ascii=False)  # JSON.stringify(sig, null, 2)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", fields["signed_at"])
    assert fields["root_hash"] == signing.root_hash(fields["record_hashes"])
    assert fields["record_hashes"] == [signing.record_hash(line) for line in data.read_text().splitlines()]


def test_tampering_is_reported_with_its_reasons(tmp_path: Path) -> None:
    data = corpus_file(tmp_path / "m.vmig.jsonl")
    public = key_pair(tmp_path / "k.key")
    signing.sign(data, tmp_path / "k.key")
    lines = data.read_text(encoding="utf-8").split("\n")
    lines[3] = lines[3].replace('"tricky"', '"TRICKY"', 1)
    data.write_text("\n".join(lines), encoding="utf-8")
    check = signing.verify_signature(data, trusted_keys=[public])
    assert (check.status, check.valid, check.trusted, check.changed) == ("invalid", False, False, 1)
    assert [(c.index, c.line, c.change) for c in check.changed_records] == [(3, 4, "changed")]
    assert any("record(s) differ" in r for r in check.reasons)
    assert any("root hash mismatch" in r for r in check.reasons)

    data.write_text("\n".join([*lines[:-2], lines[-1]]), encoding="utf-8")  # a record removed
    assert any(r.startswith("record count") for r in signing.verify_signature(data).reasons)


def test_a_forged_signature_and_a_re_signed_file(tmp_path: Path) -> None:
    data = corpus_file(tmp_path / "m.vmig.jsonl")
    public = key_pair(tmp_path / "k.key")
    signing.sign(data, tmp_path / "k.key")
    sig = tmp_path / "m.vmig.sig"
    fields = json.loads(sig.read_text())
    other = tmp_path / "other.sig"
    other.write_text(json.dumps({**fields, "signature": fields["signature"][::-1]}))
    bad = signing.verify_signature(data, other, trusted_keys=[public])
    assert bad.status == "invalid" and any(r.startswith("bad signature") for r in bad.reasons)

    # anyone can edit the file and sign it again with a key of their own: Vex calls it VALID
    data.write_text(data.read_text().replace("tricky record", "edited record"))
    key_pair(tmp_path / "mallory.key")
    signing.sign(data, tmp_path / "mallory.key")
    again = signing.verify_signature(data, trusted_keys=[public])
    assert (again.valid, again.trusted, again.status) == (True, False, "unknown-key")
    assert "none of the 1 trusted keys" in again.reasons[0]


def test_a_signature_in_any_json_layout_verifies_streamed(tmp_path: Path) -> None:
    data = corpus_file(tmp_path / "m.vmig.jsonl")
    public = key_pair(tmp_path / "k.key")
    signing.sign(data, tmp_path / "k.key")
    fields = json.loads((tmp_path / "m.vmig.sig").read_text())
    reordered = dict(reversed(list(fields.items())))
    compact = tmp_path / "compact.sig"
    compact.write_text(json.dumps(reordered, separators=(",", ":")).replace('"blake3:', '"\\u0062lake3:'))
    assert signing.verify_signature(data, compact, trusted_keys=[public]).ok
    for broken in ('{"record_hashes": [', "[]", "", '{"a": 1} x', '{"record_hashes":[],"record_hashes":[]}'):
        (tmp_path / "bad.sig").write_text(broken)
        check = signing.verify_signature(data, tmp_path / "bad.sig")
        assert check.status == "invalid", broken


def test_empty_file_signs_and_verifies(tmp_path: Path) -> None:
    data = tmp_path / "e.vmig.jsonl"
    data.write_text("\n\n")
    public = key_pair(tmp_path / "k.key")
    signing.sign(data, tmp_path / "k.key")
    assert '"record_hashes": [],' in (tmp_path / "e.vmig.sig").read_text()
    assert signing.verify_signature(data, trusted_keys=[public]).ok


def test_lines_vex_cannot_hash_are_refused_when_signing_and_fail_a_verify(tmp_path: Path) -> None:
    data = corpus_file(tmp_path / "m.vmig.jsonl")
    key_pair(tmp_path / "k.key")
    signing.sign(data, tmp_path / "k.key")
    original = data.read_text(encoding="utf-8")
    for bad, why in (("# a comment", "comment"), ("not json", "not JSON"), ("[1, 2]", "not a JSON object")):
        data.write_text(original + bad + "\n", encoding="utf-8")
        with pytest.raises(DecodeError, match=why):
            signing.sign(data, tmp_path / "k.key", signature=tmp_path / "x.sig")
        assert not (tmp_path / "x.sig").exists()
        check = signing.verify_signature(data)
        assert check.status == "invalid" and check.changed_records[-1].change == "unreadable"
    data.write_bytes(original.encode() + b'{"id": "\xff"}\n')
    with pytest.raises(DecodeError, match="UTF-8"):
        signing.sign(data, tmp_path / "k.key")


def test_the_signature_never_replaces_data(tmp_path: Path) -> None:
    data = corpus_file(tmp_path / "m.jsonl")
    key_pair(tmp_path / "k.key")
    assert signing.sign(data, tmp_path / "k.key").signature == str(tmp_path / "m.jsonl.sig")
    before = data.read_bytes()
    for target in (data, tmp_path / "k.key", tmp_path / "m.vmig.meta.json", tmp_path / "x.json"):
        with pytest.raises(UsageError):
            signing.sign(data, tmp_path / "k.key", signature=target)
    (tmp_path / "notes.sig").write_text("my notes")
    with pytest.raises(UsageError, match=r"not a \.vmig\.sig"):
        signing.sign(data, tmp_path / "k.key", signature=tmp_path / "notes.sig")
    assert (tmp_path / "notes.sig").read_text() == "my notes" and data.read_bytes() == before
    assert not list(tmp_path.glob("*.partial"))
    with pytest.raises(UsageError, match="does not exist"):
        signing.sign(data, tmp_path / "k.key", signature=tmp_path / "no" / "m.sig")
    with pytest.raises(UsageError, match=r"not a \.vmig\.jsonl"):
        signing.sign(tmp_path / "k.key.pub", tmp_path / "k.key")


def test_keys_are_private_never_overwritten_and_never_shown(tmp_path: Path) -> None:
    made = signing.keygen(tmp_path / "k.key")
    key_text = (tmp_path / "k.key").read_text().strip()
    assert re.fullmatch(r"hex:[0-9a-f]{64}", key_text)
    assert stat.S_IMODE((tmp_path / "k.key").stat().st_mode) == 0o600
    assert (tmp_path / "k.key.pub").read_text() == made.public_key + "\n"
    assert key_text not in repr(made) and key_text[4:] not in repr(made)
    with pytest.raises(UsageError, match="never overwrites"):
        signing.keygen(tmp_path / "k.key")
    assert (tmp_path / "k.key").read_text().strip() == key_text
    assert signing.keygen(public_of=tmp_path / "k.key").public_key == made.public_key
    # once read, the key's text is masked wherever it might appear
    assert key_text[4:] not in redact(f"oops {key_text[4:]}")

    (tmp_path / "bad.key").write_text("hex:abc")
    with pytest.raises(UsageError) as err:
        signing.sign(corpus_file(tmp_path / "m.vmig.jsonl"), tmp_path / "bad.key")
    assert "abc" not in str(err.value)
    signing.sign(tmp_path / "m.vmig.jsonl", tmp_path / "k.key")
    with pytest.raises(UsageError, match="private key, not a public one"):
        signing.verify_signature(tmp_path / "m.vmig.jsonl", trusted_keys=[tmp_path / "k.key"])


def test_default_key_and_keyring_places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made = signing.keygen()
    assert made.key == str(tmp_path / "config" / "vexchange" / "signing.key")
    assert stat.S_IMODE((tmp_path / "config" / "vexchange").stat().st_mode) == 0o700
    data = corpus_file(tmp_path / "m.vmig.jsonl")
    signing.sign(data)  # the default key
    assert signing.verify_signature(data).status == "unknown-key"
    ring = tmp_path / "config" / "vexchange" / "trusted_keys"
    ring.write_text(f"# people I trust\n{made.public_key} alice@example\n")
    check = signing.verify_signature(data)
    assert (check.status, check.signer) == ("trusted", "alice@example")
    monkeypatch.setenv("VEX_KEYRING", str(tmp_path / "missing"))
    with pytest.raises(UsageError, match="no such keyring"):
        signing.verify_signature(data)


# ------------------------------------------------------------------------ the CLI and exports


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = corpus_file(tmp_path / "m.vmig.jsonl")
    assert main(["keygen", str(tmp_path / "k.key")]) == 0
    public = (tmp_path / "k.key.pub").read_text().strip()
    assert main(["sign", str(data), "--key", str(tmp_path / "k.key")]) == 0
    assert main(["verify", str(data), "--signature"]) == 5
    assert "VALID, but from an unknown key" in capsys.readouterr().out
    assert main(["verify", str(data), "--signature", "--trusted-key", public]) == 0
    assert main(["verify", str(data), f"--signature={tmp_path / 'm.vmig.sig'}", "--trusted-key",
                 str(tmp_path / "k.key.pub"), "--json"]) == 0
    capsys.readouterr()
    data.write_text(data.read_text().replace("tricky", "TRICKY", 1))
    (tmp_path / "m.vmig.meta.json").unlink()  # its checksum would fail the verify too
    assert main(["verify", str(data), "--signature", "--trusted-key", public]) == 3
    out = capsys.readouterr().out
    assert "TAMPERED" in out and "record(s) differ" in out
    assert main(["sign", str(data), "--keyFile", str(tmp_path / "k.key")]) == 0  # Vex's flag name
    assert main(["verify", str(data), "--sigFile", str(tmp_path / "m.vmig.sig"),
                 "--trusted-key", public]) == 0
    assert main(["verify", str(data), "--trusted-key", public]) == 2  # keys without --signature


def test_verify_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = corpus_file(tmp_path / "m.vmig.jsonl")
    public = key_pair(tmp_path / "k.key")
    signing.sign(data, tmp_path / "k.key")
    capsys.readouterr()
    assert main(["verify", str(data), "--signature", "--trusted-key", public, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    check = report["checks"][-1]
    assert (check["check"], check["status"], check["signer"]) == ("signature", "trusted", "--trusted-key")
    assert report["ok"] is True


def test_export_signs_the_finished_file(tmp_path: Path) -> None:
    source = corpus_file(tmp_path / "src.vmig.jsonl")
    public = key_pair(tmp_path / "k.key")
    receipt = vexchange.export(source, tmp_path / "out.vmig.jsonl", sign=tmp_path / "k.key")
    assert receipt.counts.written == len(source.read_text().splitlines())
    assert signing.verify_signature(tmp_path / "out.vmig.jsonl", trusted_keys=[public]).ok
    assert "hex:" not in (tmp_path / "out.vmig.jsonl.receipt.json").read_text()
    key_hex = (tmp_path / "k.key").read_text().strip()[4:]
    for written in tmp_path.iterdir():
        if written.is_file() and written.name != "k.key":
            assert key_hex not in written.read_text(errors="replace"), written
    report = vexchange.verify(tmp_path / "out.vmig.jsonl", signature=True, trusted_keys=[public])
    assert report.ok and [type(c).__name__ for c in report.checks] == ["ChecksumCheck", "SignatureCheck"]

    vexchange.migrate(source, tmp_path / "dry.vmig.jsonl", sign=tmp_path / "k.key", dry_run=True)
    assert not (tmp_path / "dry.vmig.sig").exists()


def test_sign_on_a_target_that_is_not_a_vmig_file_is_refused_before_the_run(tmp_path: Path) -> None:
    source = corpus_file(tmp_path / "src.vmig.jsonl")
    key_pair(tmp_path / "k.key")
    target = tmp_path / "copy.db"
    with pytest.raises(UsageError, match="not one"):
        vexchange.migrate(source, f"vektor://{target}", sign=tmp_path / "k.key")
    assert not target.exists() and not list(tmp_path.glob("copy.db*"))
    with pytest.raises(UsageError, match="no such key file"):
        vexchange.export(source, tmp_path / "out.vmig.jsonl", sign=tmp_path / "nokey")
    assert not (tmp_path / "out.vmig.jsonl").exists()


def test_cli_export_with_sign(tmp_path: Path) -> None:
    source = corpus_file(tmp_path / "src.vmig.jsonl")
    public = key_pair(tmp_path / "k.key")
    out = tmp_path / "out.vmig.jsonl"
    assert main(["migrate", str(source), str(out), "--sign", str(tmp_path / "k.key"), "--quiet"]) == 0
    assert signing.verify_signature(out, trusted_keys=[public]).ok


# -------------------------------------------------------------------- against the real Vex


def _vex_sign(vex_npm: Any, path: Path, *key: str) -> None:
    done = vex_npm.run("sign", path.name, *key, cwd=path.parent)
    # Vex's sign writes its files and then crashes drawing its summary: exit 1 on success
    assert done.returncode == 1 and "Cannot read properties of undefined" in done.stdout + done.stderr
    assert signing.default_signature_path(path).exists()


def _vex_verify(vex_npm: Any, path: Path) -> bool:
    done = vex_npm.run("verify", path.name, cwd=path.parent)
    if done.returncode == 0:
        assert "VALID" in done.stdout
        return True
    return False


def test_a_file_vex_signs_verifies_here(vex_npm: Any, tmp_path: Path) -> None:
    data = corpus_file(tmp_path / "m.vmig.jsonl")
    _vex_sign(vex_npm, data)  # no key: Vex makes one and writes it beside the file
    vex_key = tmp_path / "m.vmig.key"
    assert vex_key.exists()
    sig = json.loads((tmp_path / "m.vmig.sig").read_text())
    ours = [line.hash for line in signing._hashed_lines(data)]
    assert ours == sig["record_hashes"]  # every record hashed as Vex hashes it

    unknown = signing.verify_signature(data)
    assert (unknown.status, unknown.valid) == ("unknown-key", True)
    public = signing.keygen(public_of=vex_key).public_key
    assert public == sig["public_key"]
    assert signing.verify_signature(data, trusted_keys=[public]).ok


def test_a_file_signed_here_verifies_in_vex_byte_for_byte_as_vex_signs(vex_npm: Any, tmp_path: Path) -> None:
    data = corpus_file(tmp_path / "m.vmig.jsonl")
    key_pair(tmp_path / "k.key")
    signing.sign(data, tmp_path / "k.key")
    assert _vex_verify(vex_npm, data)
    ours = (tmp_path / "m.vmig.sig").read_text()
    (tmp_path / "m.vmig.sig").unlink()
    _vex_sign(vex_npm, data, "--keyFile", str(tmp_path / "k.key"))  # Vex reads our key file
    theirs = (tmp_path / "m.vmig.sig").read_text()
    stamp = re.compile(r'"signed_at": "[^"]*"')
    assert stamp.sub("", ours) == stamp.sub("", theirs)  # Ed25519 is deterministic: same bytes


def test_an_empty_file_both_ways(vex_npm: Any, tmp_path: Path) -> None:
    data = tmp_path / "e.vmig.jsonl"
    data.write_text("")
    key_pair(tmp_path / "k.key")
    signing.sign(data, tmp_path / "k.key")
    assert _vex_verify(vex_npm, data)
    (tmp_path / "e.vmig.sig").unlink()
    _vex_sign(vex_npm, data, "--keyFile", str(tmp_path / "k.key"))
    assert signing.verify_signature(data).valid


def test_a_tampered_file_fails_in_both(vex_npm: Any, tmp_path: Path) -> None:
    data = corpus_file(tmp_path / "m.vmig.jsonl")
    public = key_pair(tmp_path / "k.key")
    signing.sign(data, tmp_path / "k.key")
    copy = tmp_path / "vex" / "m.vmig.jsonl"
    copy.parent.mkdir()
    shutil.copy(data, copy)
    _vex_sign(vex_npm, copy)
    for path in (data, copy):
        edited = path.read_text(encoding="utf-8").replace("meta-numbers", "meta-NUMBERS")
        path.write_text(edited, encoding="utf-8")
        assert not _vex_verify(vex_npm, path)
        assert main(["verify", str(path), "--signature", "--trusted-key", public]) == 3


def test_a_re_signed_tampered_file_passes_vex_but_not_the_original_trusted_key(vex_npm: Any,
                                                                              tmp_path: Path) -> None:
    data = corpus_file(tmp_path / "m.vmig.jsonl")
    public = key_pair(tmp_path / "k.key")
    signing.sign(data, tmp_path / "k.key")
    forged = data.read_text(encoding="utf-8").replace("tricky record", "forged record")
    data.write_text(forged, encoding="utf-8")
    os.unlink(tmp_path / "m.vmig.sig")
    os.unlink(tmp_path / "m.vmig.meta.json")  # the forger drops the sidecar, whose checksum would tell
    _vex_sign(vex_npm, data)  # a fresh key, made and used by whoever edited the file
    assert _vex_verify(vex_npm, data)  # Vex: VALID
    check = signing.verify_signature(data, trusted_keys=[public])
    assert (check.valid, check.trusted, check.ok) == (True, False, False)
    assert main(["verify", str(data), "--signature", "--trusted-key", public]) == 5
