"""``vex grains store ...``, ``vex grains encrypt/decrypt``: the Level 3 commands end to end."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

pytest.importorskip("cryptography")

from vexchange.cli import main
from vexchange.oms.container import MgReader, MgWriter
from vexchange.oms.grain import encode_grain

T0 = 1768471200000


def vex(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def _grain(i: int, **more: object) -> bytes:
    fields = {"type": "belief", "subject": f"s{i % 4}", "relation": "r", "object": f"wombat {i}",
              "confidence": 0.5, "created_at": T0 + i, "namespace": "shared", "user_id": f"u{i % 2}"}
    fields.update(more)
    return encode_grain(fields)


def _mg(path: Path, blobs: list[bytes]) -> Path:
    with MgWriter(path) as writer:
        for blob in blobs:
            writer.add(blob)
    return path


def test_store_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key, store = str(tmp_path / "master.key"), str(tmp_path / "s.db")
    code, out, _ = vex(capsys, "grains", "store", "init", store, "--key-file", key, "--new-key", "--json")
    assert code == 0 and json.loads(out)["backend"] == "sqlite"
    secret = Path(key).read_text().strip()
    mg = _mg(tmp_path / "g.mg", [_grain(i) for i in range(10)])
    code, out, _ = vex(capsys, "grains", "store", "put", store, str(mg), "--key-file", key, "--json")
    assert code == 0 and json.loads(out)["new"] == 10
    code, out, _ = vex(capsys, "grains", "store", "query", store, "--key-file", key, "--subject", "s1")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and sorted(g["fields"]["object"] for g in lines) == ["wombat 1", "wombat 5", "wombat 9"]
    address = lines[0]["address"]
    code, out, _ = vex(capsys, "grains", "store", "get", store, address, "--key-file", key)
    assert code == 0 and json.loads(out)["fields"]["object"] == "wombat 1"
    (tmp_path / "new.bin").write_bytes(_grain(1, object="wombat new", derived_from=[address]))
    code, out, _ = vex(capsys, "grains", "store", "supersede", store, address, str(tmp_path / "new.bin"),
                       "--key-file", key, "--json")
    assert code == 0 and json.loads(out)["superseded"] == address
    (tmp_path / "c.bin").write_bytes(_grain(5, object="wombat no"))
    code, out, _ = vex(capsys, "grains", "store", "contradict", store, lines[1]["address"],
                       str(tmp_path / "c.bin"), "--key-file", key, "--json")
    assert code == 0
    code, out, _ = vex(capsys, "grains", "store", "query", store, "--key-file", key, "--text", "wombat")
    assert code == 0 and len(out.splitlines()) == 10
    code, out, _ = vex(capsys, "grains", "store", "erase", store, "--key-file", key, "--user-id", "u1",
                       "--json")
    assert code == 0 and json.loads(out)["erased"] == 7
    code, out, err = vex(capsys, "grains", "store", "audit", "verify", store, "--key-file", key, "--json")
    assert code == 0 and json.loads(out)["ok"] is True
    assert secret not in out + err
    db = sqlite3.connect(store)
    db.execute("DELETE FROM audit WHERE seq = 2")
    db.commit()
    db.close()
    code, out, _ = vex(capsys, "grains", "store", "audit", "verify", store, "--key-file", key, "--json")
    assert code == 3 and json.loads(out)["ok"] is False


def test_user_mistakes_are_messages(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VEX_OMS_KEY", raising=False)
    code, _, err = vex(capsys, "grains", "store", "init", str(tmp_path / "s.db"))
    assert code == 2 and "no master key" in err
    monkeypatch.setenv("VEX_OMS_KEY", "ab" * 32)
    assert vex(capsys, "grains", "store", "init", str(tmp_path / "s.db"))[0] == 0
    monkeypatch.setenv("VEX_OMS_KEY", "cd" * 32)
    code, _, err = vex(capsys, "grains", "store", "query", str(tmp_path / "s.db"))
    assert code == 2 and "ERR_WRONG_KEY" in err and "cd" * 32 not in err
    code, _, err = vex(capsys, "grains", "store", "get", str(tmp_path / "nope.db"), "0" * 64)
    assert code == 2 and "no Level 3 store" in err


def test_encrypt_decrypt_mg(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VEX_OMS_KEY", "ab" * 32)
    blobs = [_grain(i, context={"pad": "x" * 3000}) for i in range(60)]  # > 2 chunks
    mg = _mg(tmp_path / "g.mg", blobs)
    code, _, _ = vex(capsys, "grains", "encrypt", str(mg), "-o", str(tmp_path / "g.mge"))
    assert code == 0
    sealed = (tmp_path / "g.mge").read_bytes()
    assert b"wombat" not in sealed and b"xxxx" not in sealed
    code, _, _ = vex(capsys, "grains", "decrypt", str(tmp_path / "g.mge"), "-o", str(tmp_path / "back.mg"))
    assert code == 0 and (tmp_path / "back.mg").read_bytes() == mg.read_bytes()
    with MgReader(tmp_path / "back.mg") as reader:
        assert len(reader) == 60
    flipped = sealed[:200] + bytes([sealed[200] ^ 1]) + sealed[201:]
    for name, data in (("cut", sealed[:-100]), ("flip", flipped), ("chunk", sealed[:83 + 65552])):
        (tmp_path / f"{name}.mge").write_bytes(data)
        code, _, err = vex(capsys, "grains", "decrypt", str(tmp_path / f"{name}.mge"), "-o",
                           str(tmp_path / f"{name}.mg"))
        assert code == 3 and "ERR_INTEGRITY" in err, name
        assert not (tmp_path / f"{name}.mg").exists() and not (tmp_path / f"{name}.mg.partial").exists()
    monkeypatch.setenv("VEX_OMS_KEY", "cd" * 32)
    code, _, err = vex(capsys, "grains", "decrypt", str(tmp_path / "g.mge"), "-o", str(tmp_path / "w.mg"))
    assert code == 2 and "ERR_WRONG_KEY" in err
    code, _, err = vex(capsys, "grains", "encrypt", str(mg), "-o", str(mg))
    assert code == 2 and "never overwritten" in err


def test_rotate_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old, new, store = str(tmp_path / "old.key"), str(tmp_path / "new.key"), str(tmp_path / "s.db")
    assert vex(capsys, "grains", "store", "init", store, "--key-file", old, "--new-key")[0] == 0
    mg = _mg(tmp_path / "g.mg", [_grain(i) for i in range(4)])
    assert vex(capsys, "grains", "store", "put", store, str(mg), "--key-file", old)[0] == 0
    code, out, _ = vex(capsys, "grains", "store", "rotate", store, "--key-file", old, "--new-key-file", new,
                       "--create", "--json")
    assert code == 0 and json.loads(out)["user_keys_rewrapped"] == 2
    assert vex(capsys, "grains", "store", "query", store, "--key-file", old)[0] == 2
    code, out, _ = vex(capsys, "grains", "store", "query", store, "--key-file", new)
    assert code == 0 and len(out.splitlines()) == 4


def test_without_the_crypto_extra_a_usage_error_names_it(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = tmp_path / "no_crypto.py"
    script.write_text(
        "import sys, importlib.util\n"
        "real = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda name, *a: None if name == 'cryptography' else real(name, *a)\n"
        "from vexchange.cli import main\n"
        f"sys.exit(main(['grains', 'store', 'init', {str(tmp_path / 's.db')!r}]))\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and 'pip install "vexchange[crypto]"' in done.stderr
    assert "Traceback" not in done.stderr
