"""vex backup / vex sync: encrypted, incremental snapshots that restore anywhere, exactly.

Repositories are made with a cheap Argon2id (8 MiB, one pass) so that the tests stay fast; the
parameters come from the header, so nothing else differs from the default cost."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from vexchange.backup import backup_diff, backup_init, backup_pull, backup_push, backup_status
from vexchange.backup._crypto import key_material
from vexchange.backup._layout import Repository
from vexchange.errors import IntegrityError, UsageError
from vexchange.record import MemoryRecord
from vexchange.testing.conformance import ConnectorConformance, read_all, write_vmig
from vexchange.testing.records import sample_records
from vexchange.testing.tricky import tricky_records
from vexchange.testing.vektor_fixture import build

PASSPHRASE = "correct horse battery staple 7"
FAST: dict[str, Any] = {"kdf_memory_mib": 8, "kdf_iterations": 1, "kdf_lanes": 1}
same = ConnectorConformance.assert_same

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


@pytest.fixture(autouse=True)
def _passphrase(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VEX_BACKUP_PASSPHRASE", PASSPHRASE)


def bare(tmp_path: Path, name: str = "remote.git") -> str:
    path = tmp_path / name
    subprocess.run(["git", "init", "--quiet", "--bare", str(path)], check=True)
    backup_init(str(path), **FAST)
    return str(path)


def directory(tmp_path: Path, name: str = "backup-dir") -> str:
    backup_init(str(tmp_path / name), **FAST)
    return str(tmp_path / name)


def repo_of(root: Path) -> Repository:
    return Repository(root, key_material(passphrase=PASSPHRASE))


_OTHER_MACHINE = textwrap.dedent("""
    import sys
    machine_files = {"/etc/machine-id", "/var/lib/dbus/machine-id", "/etc/hostname"}
    def hook(event, args):
        if event == "open" and str(args[0]) in machine_files:
            raise RuntimeError(f"the backup read {args[0]}")
        if event == "socket.gethostname":
            raise RuntimeError("the backup asked for the host name")
    sys.addaudithook(hook)
    from vexchange.backup import backup_pull
    repository, *targets = sys.argv[1:]
    for target in targets:
        receipt = backup_pull(repository, target)
        assert receipt.status == "completed", receipt.status
    print("restored", len(targets))
""")


def _can_replace_machine_id() -> bool:
    if sys.platform != "linux" or shutil.which("unshare") is None or not Path("/etc/machine-id").exists():
        return False
    done = subprocess.run(["unshare", "-m", "--propagation", "private", "true"], capture_output=True,
                          check=False)
    return done.returncode == 0


def pull_on_another_machine(tmp_path: Path, remote: str, targets: list[str]) -> str:
    """A second clone in another directory, pulled by a process with another HOME, whose Python
    cannot open any machine-id file or ask the host name (an audit hook), and where Linux lets
    us, with another /etc/machine-id mounted over the real one."""
    machine = tmp_path / "other-machine"
    (machine / "home").mkdir(parents=True)
    clone = machine / "clone"
    subprocess.run(["git", "clone", "--quiet", "--branch", "main", remote, str(clone)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOME", "XDG_"))}
    env.update(HOME=str(machine / "home"), VEX_BACKUP_PASSPHRASE=PASSPHRASE)
    command = [sys.executable, "-c", _OTHER_MACHINE, str(clone), *targets]
    if _can_replace_machine_id():
        fake = machine / "machine-id"
        fake.write_text("0123456789abcdef0123456789abcdef\n")
        script = 'mount --bind "$0" /etc/machine-id && exec "$@"'
        command = ["unshare", "-m", "--propagation", "private", "sh", "-c", script, str(fake), *command]
    done = subprocess.run(command, env=env, cwd=machine, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_vektor_backup_restores_on_another_machine(tmp_path: Path) -> None:
    db = build(tmp_path / "memory.db", n=120, dims=16).path
    source = f"vektor:{db}"
    remote = bare(tmp_path)
    pushed = backup_push(source, remote)
    assert pushed.created and pushed.added == 120 and pushed.skipped == 0
    new_db = tmp_path / "other-machine" / "restored.db"
    vmig = tmp_path / "other-machine" / "restored.vmig.jsonl"
    out = pull_on_another_machine(tmp_path, remote, [f"vektor:{new_db}", str(vmig)])
    assert "restored 2" in out
    expected = list(read_all(source).values())
    same(expected, read_all(f"vektor:{new_db}"), strict=True)
    same(expected, read_all(vmig), strict=True)


@pytest.mark.parametrize("where", ["git", "dir"])
def test_the_tricky_corpus_comes_back_exactly(tmp_path: Path, where: str) -> None:
    records = tricky_records(dims=8, named=("title",))
    source = write_vmig(tmp_path / "tricky.vmig.jsonl", records)
    remote = bare(tmp_path) if where == "git" else directory(tmp_path)
    assert backup_push(str(source), remote).records == len(records)
    receipt = backup_pull(remote, str(tmp_path / "back.vmig.jsonl"))
    assert receipt.status == "completed"
    same(records, read_all(tmp_path / "back.vmig.jsonl"), strict=True)
    assert backup_status(str(source), remote).in_sync


def _edited(records: list[MemoryRecord]) -> tuple[list[MemoryRecord], dict[str, set[str]]]:
    changed = {r.id for r in records[:3]}
    removed = {r.id for r in records[3:7]}
    kept = [r.replace(text=f"{r.text} (edited)") if r.id in changed else r
            for r in records if r.id not in removed]
    added = [MemoryRecord(id=f"new-{i}", text=f"a new memory {i}", namespace="fresh") for i in range(2)]
    return kept + added, {"changed": changed, "removed": removed, "added": {r.id for r in added}}


@pytest.mark.parametrize("where", ["git", "dir"])
def test_an_incremental_snapshot_holds_only_what_changed(tmp_path: Path, where: str) -> None:
    records = [r for r in sample_records(200, dims=8) if isinstance(r, MemoryRecord)]
    source = tmp_path / "memory.vmig.jsonl"
    write_vmig(source, records)
    remote = bare(tmp_path) if where == "git" else directory(tmp_path)
    first = backup_push(str(source), remote)
    assert (first.snapshot, first.added) == (1, len(records))
    assert not backup_push(str(source), remote).created  # nothing changed: no snapshot

    edited, ids = _edited(records)
    source.unlink()
    source.with_name("memory.vmig.meta.json").unlink(missing_ok=True)
    write_vmig(source, edited)
    status = backup_status(str(source), remote)
    assert (status.added, status.changed, status.removed, status.in_sync) == (2, 3, 4, False)
    diff = backup_diff(str(source), remote)
    assert {r.id for r in diff.added} == ids["added"]
    assert {r.id for r in diff.changed} == ids["changed"]
    assert {r.id for r in diff.removed} == ids["removed"]

    second = backup_push(str(source), remote)
    assert (second.snapshot, second.added, second.changed, second.removed) == (2, 2, 3, 4)
    assert second.records == len(edited) and second.data_chunks == 1
    assert second.data_bytes < first.data_bytes / 10
    root = Path(remote) if where == "dir" else _clone(tmp_path, remote)
    manifest, _ = repo_of(root).manifest(2)
    assert [(c["records"], c["tombstones"]) for c in manifest.data] == [(5, 4)]
    assert backup_status(str(source), remote).in_sync

    backup_pull(remote, str(tmp_path / "latest.vmig.jsonl"))
    same(edited, read_all(tmp_path / "latest.vmig.jsonl"), strict=True)
    backup_pull(remote, str(tmp_path / "first.vmig.jsonl"), snapshot=1)
    same(records, read_all(tmp_path / "first.vmig.jsonl"), strict=True)


def _clone(tmp_path: Path, remote: str) -> Path:
    clone = tmp_path / f"inspect-{len(list(tmp_path.iterdir()))}"
    subprocess.run(["git", "clone", "--quiet", "--branch", "main", remote, str(clone)], check=True)
    return clone


def _small_chunked(tmp_path: Path) -> tuple[Path, Path]:
    records = [r for r in sample_records(60, dims=8) if isinstance(r, MemoryRecord)]
    source = write_vmig(tmp_path / "memory.vmig.jsonl", records)
    remote = Path(directory(tmp_path))
    assert backup_push(str(source), str(remote), chunk_bytes=2000).data_chunks > 2
    return source, remote


def _refused(tmp_path: Path, remote: Path, error: type[Exception], words: str) -> None:
    target = tmp_path / "restored.db"
    with pytest.raises(error, match=words):
        backup_pull(str(remote), f"vektor:{target}")
    assert not target.exists()  # checked before anything was written


def test_a_flipped_byte_is_found_before_anything_is_written(tmp_path: Path) -> None:
    _, remote = _small_chunked(tmp_path)
    chunk = remote / "snapshots" / "000001" / "data-000001.vxb"
    data = bytearray(chunk.read_bytes())
    data[40] ^= 0x01
    chunk.write_bytes(bytes(data))
    _refused(tmp_path, remote, IntegrityError, "not the chunk")


def test_swapped_or_replayed_chunks_are_found(tmp_path: Path) -> None:
    _, remote = _small_chunked(tmp_path)
    snap = remote / "snapshots" / "000001"
    a, b = snap / "data-000000.vxb", snap / "data-000001.vxb"
    saved_a, saved_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(saved_b)
    b.write_bytes(saved_a)
    _refused(tmp_path, remote, IntegrityError, "not the chunk")
    a.write_bytes(saved_a)
    b.write_bytes(saved_b)
    # the manifest too: a chunk that matches its listed hash but sits in another place
    manifest, _ = repo_of(remote).manifest(1)
    manifest.data[0], manifest.data[1] = manifest.data[1], manifest.data[0]
    a.write_bytes(saved_b)
    b.write_bytes(saved_a)
    repo = repo_of(remote)
    (snap / "manifest.vxb").write_bytes(repo.sealer.seal(manifest.to_json(), repo.ad(1, "manifest", 0)))
    _refused(tmp_path, remote, IntegrityError, "does not authenticate")


def test_a_removed_chunk_or_snapshot_is_found(tmp_path: Path) -> None:
    _, remote = _small_chunked(tmp_path)
    (remote / "snapshots" / "000001" / "data-000002.vxb").unlink()
    _refused(tmp_path, remote, IntegrityError, "missing")


def test_a_wrong_passphrase_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, remote = _small_chunked(tmp_path)
    monkeypatch.setenv("VEX_BACKUP_PASSPHRASE", "not the passphrase")
    _refused(tmp_path, remote, UsageError, "passphrase or key file is not")
    key = tmp_path / "backup.key"
    key.write_bytes(os.urandom(32))
    monkeypatch.delenv("VEX_BACKUP_PASSPHRASE")
    with pytest.raises(UsageError, match="passphrase or key file is not"):
        backup_status(str(tmp_path / "memory.vmig.jsonl"), str(remote), key_file=key)


def test_a_key_file_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VEX_BACKUP_PASSPHRASE")
    key = tmp_path / "backup.key"
    key.write_bytes(os.urandom(32))
    records = [r for r in sample_records(20, dims=4) if isinstance(r, MemoryRecord)]
    source = write_vmig(tmp_path / "m.vmig.jsonl", records)
    backup_init(str(tmp_path / "kb"), key_file=key, **FAST)
    backup_push(str(source), str(tmp_path / "kb"), key_file=key)
    backup_pull(str(tmp_path / "kb"), str(tmp_path / "back.vmig.jsonl"), key_file=key)
    same(records, read_all(tmp_path / "back.vmig.jsonl"), strict=True)
    with pytest.raises(UsageError, match="no passphrase"):
        backup_status(str(source), str(tmp_path / "kb"))


def _vex(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vexchange", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=120, check=False)


def test_the_cli_and_vex_sync_keep_the_passphrase_out_of_everything(tmp_path: Path) -> None:
    db = build(tmp_path / "memory.db", n=30, dims=8).path
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(remote)], check=True)
    env = {**os.environ, "VEX_BACKUP_PASSPHRASE": PASSPHRASE}
    runs = [
        _vex("sync", "init", "--repo", str(remote), "--kdf-memory", "8", "--kdf-iterations", "1",
             env=env, cwd=tmp_path),
        _vex("sync", "push", "--db", str(db), "--repo", str(remote), env=env, cwd=tmp_path),
        _vex("backup", "status", f"vektor:{db}", str(remote), "--json", env=env, cwd=tmp_path),
        _vex("sync", "diff", "--db", str(db), "--repo", str(remote), env=env, cwd=tmp_path),
        _vex("sync", "pull", "--db", str(tmp_path / "new.db"), "--repo", str(remote), env=env, cwd=tmp_path),
    ]
    for done in runs:
        assert done.returncode == 0, done.stderr
    assert '"in_sync": true' in runs[2].stdout
    wrong = _vex("backup", "pull", str(remote), str(tmp_path / "x.vmig.jsonl"),
                 env={**env, "VEX_BACKUP_PASSPHRASE": "wrong passphrase"}, cwd=tmp_path)
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr and "vex: error:" in wrong.stderr
    token = _vex("sync", "push", "--db", str(db), "--repo", str(remote), "--token", "ghp_abcdef123456",
                 env=env, cwd=tmp_path)
    assert token.returncode == 2 and "no vexchange equivalent" in token.stderr
    runs += [wrong, token]
    assert all(PASSPHRASE not in r.stdout + r.stderr and "ghp_abcdef123456" not in r.stdout + r.stderr
               for r in runs)
    clone = _clone(tmp_path, str(remote))
    log = subprocess.run(["git", "log", "-p", "--all"], cwd=clone, capture_output=True, check=True).stdout
    assert PASSPHRASE.encode() not in log
    for path in [*clone.rglob("*"), *tmp_path.glob("*.json"), *tmp_path.glob("*.jsonl")]:
        if path.is_file():
            assert PASSPHRASE.encode() not in path.read_bytes(), path
    header = (clone / "vexbackup.json").read_text()
    assert "argon2id" in header and "salt" in header
    contents = [*[r.text for r in read_all(f"vektor:{db}").values()][:5], "vektor-mcp", "default"]
    for path in clone.rglob("*"):  # nothing plaintext names a record, an id or a namespace
        if path.is_file() and ".git" not in path.parts:
            assert not any(c and c.encode() in path.read_bytes() for c in contents), path


def test_a_tampered_chunk_through_the_cli_is_exit_3(tmp_path: Path) -> None:
    _, remote = _small_chunked(tmp_path)
    chunk = remote / "snapshots" / "000001" / "data-000000.vxb"
    chunk.write_bytes(chunk.read_bytes()[:-1] + bytes([chunk.read_bytes()[-1] ^ 1]))
    done = _vex("backup", "pull", str(remote), str(tmp_path / "out.vmig.jsonl"),
                env={**os.environ, "VEX_BACKUP_PASSPHRASE": PASSPHRASE}, cwd=tmp_path)
    assert done.returncode == 3 and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "out.vmig.jsonl").exists()


def test_unreadable_source_rows_are_rejected_and_keep_their_backed_up_version(tmp_path: Path) -> None:
    fixture = build(tmp_path / "memory.db", n=20, dims=8, edge_cases=True)
    remote = directory(tmp_path)
    pushed = backup_push(f"vektor:{fixture.path}", remote)
    assert pushed.skipped >= 1 and pushed.rejects_file and Path(pushed.rejects_file).exists()
    assert pushed.records == fixture.records - pushed.skipped
