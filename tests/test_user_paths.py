"""User-facing paths of the connectors and formats added with the stores and OMS: every one
ends in a clear message and an exit code, never a traceback or a file that looks complete."""

from __future__ import annotations

from pathlib import Path

import pytest

from vexchange import UsageError, migrate
from vexchange.cli import main
from vexchange.connectors import _registry
from vexchange.testing.conformance import ConnectorConformance, _Interrupting, read_all, write_vmig
from vexchange.testing.records import sample_records

ROOT = Path(__file__).resolve().parents[1]


def test_every_missing_extra_names_a_real_pip_line() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for name, entry in _registry.available().items():
        if entry.requires:
            assert entry.extra in extras, f"{name}: extra {entry.extra!r} is not in pyproject"
            assert entry.extra in extras["all"][0], f"{name}: not in the all extra"


def test_an_interrupted_mg_export_leaves_no_mg_file_and_resumes(tmp_path: Path) -> None:
    from vexchange import open_store

    records = list(sample_records(100))
    source = write_vmig(tmp_path / "s.vmig.jsonl", records)
    target = tmp_path / "m.mg"
    options = {"batch_size": 10, "receipt": tmp_path / "r.json", "rejects": tmp_path / "r.rej"}
    with pytest.raises(KeyboardInterrupt):
        migrate(_Interrupting(open_store(source), pages=3), target, **options)
    assert {p.name for p in tmp_path.glob("m.mg*")} == {"m.mg.grains.partial", "m.mg.vectors.partial"}
    assert migrate(source, target, resume=True, **options).counts.written == 100
    ConnectorConformance.assert_same(records, read_all(target))


def test_a_missing_vector_file_is_named(tmp_path: Path) -> None:
    source = write_vmig(tmp_path / "s.vmig.jsonl", list(sample_records(5)))
    assert main(["migrate", str(source), str(tmp_path / "m.mg"), "--quiet"]) == 0
    (tmp_path / "m.mg.vectors").unlink()
    code = main(["migrate", str(tmp_path / "m.mg"), str(tmp_path / "b.vmig.jsonl"), "--quiet"])
    assert code == 2
    assert not (tmp_path / "b.vmig.jsonl").exists()


def test_grains_commands_refuse_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["grains", "encode", str(bad), "-o", str(tmp_path / "x.mg")]) == 2
    assert main(["grains", "encode", str(tmp_path / "absent.json"), "-o", str(tmp_path / "x.mg")]) == 2
    assert main(["grains", "verify", str(tmp_path / "absent.mg")]) == 2
    (tmp_path / "not.mg").write_bytes(b"hello, not a grain file at all" * 3)
    assert main(["grains", "inspect", str(tmp_path / "not.mg")]) != 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and "not JSON" in err and "no such file" in err


def test_bad_secret_and_metric_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write_vmig(tmp_path / "s.vmig.jsonl", list(sample_records(3)))
    out = str(tmp_path / "o.vmig.jsonl")
    assert main(["migrate", str(source), out, "--target-secret", "no-equals-sign"]) == 2
    assert main(["migrate", str(source), out, "--metric", "hamming"]) == 2
    with pytest.raises(UsageError, match="unknown metric"):
        migrate(source, out, metric="hamming")
    assert "Traceback" not in capsys.readouterr().err


def test_a_metric_the_target_lacks_stops_before_any_write(tmp_path: Path) -> None:
    pytest.importorskip("chromadb")
    from vexchange import CapabilityError

    source = write_vmig(tmp_path / "s.vmig.jsonl", list(sample_records(3, named=())), metric="manhattan")
    with pytest.raises(CapabilityError, match="manhattan"):
        migrate(source, f"chroma://{tmp_path}/c?collection=mem", receipt=tmp_path / "r.json")


@pytest.mark.parametrize("url", ["pgvector://127.0.0.1:1/db?tabel=foo",
                                 "chroma:///tmp/none?colection=foo"])
def test_an_unknown_url_option_is_a_usage_error_naming_the_known_ones(url: str) -> None:
    from vexchange import open_store
    from vexchange.errors import UsageError

    with pytest.raises(UsageError) as caught:
        open_store(url)
    text = str(caught.value)
    assert "does not know the URL option" in text and "it reads:" in text
    assert "did you mean" in (caught.value.hint or "")
