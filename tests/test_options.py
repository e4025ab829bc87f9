"""One source for every run option: ``RunOptions``'s fields drive the CLI options of every
command that runs, and the keyword parameters and docs of ``migrate``, ``export`` and
``import_``. A new field cannot be forgotten in either place."""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path
from typing import Any, Literal

import click
import pytest
from click.testing import CliRunner

import vexchange
from vexchange import api
from vexchange.cli import cli, main
from vexchange.cli._options import run_options
from vexchange.engine.options import (RunOptions, option, option_fields, run_options_of,
                                      signature_mismatches)
from vexchange.sidecar import read_sidecar
from vexchange.testing.conformance import write_vmig
from vexchange.testing.records import sample_records

LIBRARY = {"migrate": api.migrate, "export": api.export, "import_": api.import_}
RUNNING_COMMANDS = [("export",), ("import",), ("migrate",), ("pack", "create"), ("pack", "unpack"),
                    ("adapter", "apply")]


def _command(*path: str) -> click.Command:
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return command


def _param(command: click.Command, name: str) -> click.Option:
    found = [p for p in command.params if p.name == name]
    assert len(found) == 1, f"{command.name} has {len(found)} options named {name}"
    assert isinstance(found[0], click.Option)
    return found[0]


@pytest.mark.parametrize("name", sorted(LIBRARY))
def test_every_option_is_a_keyword_parameter_with_the_same_default(name: str) -> None:
    fn = LIBRARY[name]
    assert signature_mismatches(fn, RunOptions) == []
    params = inspect.signature(fn).parameters
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for field, info, _ in option_fields():
        assert params[field.name].default == field.default
        assert f"``{field.name}={field.default!r}``: {info.help}" in (fn.__doc__ or "")


@pytest.mark.parametrize("path", RUNNING_COMMANDS, ids=" ".join)
def test_every_option_is_a_cli_option_with_the_same_default_and_help(path: tuple[str, ...]) -> None:
    command = _command(*path)
    for field, info, _ in option_fields():
        param = _param(command, field.name)
        assert param.help == info.help
        assert param.default == field.default
        flag = info.flag or "--" + field.name.replace("_", "-")
        assert flag in param.opts


@dataclasses.dataclass
class WithTone(RunOptions):
    """RunOptions with one more option, as a change adding it would declare it."""

    tone: Literal["calm", "loud"] = option("calm", "How the run speaks (a test option).")


def test_a_new_option_appears_in_the_cli_with_its_default_and_help() -> None:
    seen: list[RunOptions] = []

    @click.command()
    @run_options(WithTone)
    def runner(**values: Any) -> None:
        seen.append(WithTone.from_arguments(values))

    shown = CliRunner().invoke(runner, ["--help"], terminal_width=200)
    assert shown.exit_code == 0
    line = next(row for row in shown.output.splitlines() if "--tone" in row)
    assert "[calm|loud]" in line and "How the run speaks (a test option)." in line
    assert "[default: calm]" in line
    assert CliRunner().invoke(runner, []).exit_code == 0
    assert CliRunner().invoke(runner, ["--tone", "loud", "--limit", "3"]).exit_code == 0
    assert [(o.tone, o.limit) for o in seen] == [("calm", None), ("loud", 3)]  # type: ignore[attr-defined]
    assert CliRunner().invoke(runner, ["--tone", "quiet"]).exit_code == 2


def test_a_new_option_must_appear_in_migrate_with_its_default_and_help() -> None:
    """``migrate`` names its options explicitly (type checkers see them); the decorator that
    checks them refuses, at import, a signature without the new option, and documents it."""
    assert signature_mismatches(vexchange.migrate, WithTone) == ["no keyword parameter tone='calm'"]
    with pytest.raises(TypeError, match="tone='calm'"):
        run_options_of(WithTone)(api.migrate)

    def migrate_with_tone(source: str, *, tone: str = "calm", **_: Any) -> None:
        """Like migrate."""

    params = {f.name: inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default)
              for f, _, _ in option_fields(WithTone)}
    migrate_with_tone.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("source", inspect.Parameter.POSITIONAL_OR_KEYWORD), *params.values()])
    documented = run_options_of(WithTone)(migrate_with_tone)
    assert "``tone='calm'``: How the run speaks (a test option)." in (documented.__doc__ or "")
    with pytest.raises(TypeError, match="tone defaults to 'loud'"):
        params["tone"] = params["tone"].replace(default="loud")
        migrate_with_tone.__signature__ = inspect.Signature(list(params.values()))  # type: ignore[attr-defined]
        run_options_of(WithTone)(migrate_with_tone)


def test_the_receipt_options_are_unchanged() -> None:
    assert RunOptions(namespaces=["a"], since=1_700_000_000_000).as_dict() == {
        "namespaces": ["a"], "limit": None, "since": "2023-11-14T22:13:20.000Z", "until": None,
        "batch_size": None, "retries": 3, "dry_run": False, "allow_skips": False, "metric": None,
        "verify": True, "verify_first": False}
    assert list(RunOptions(reembed="all", embed_model="static").as_dict())[-6:] == [
        "reembed", "embed_model", "keep_old_vector", "on_dims_mismatch", "adapter", "force_adapter"]


def test_renamed_cli_flags_keep_their_old_spelling_hidden() -> None:
    for path, new, old in [(("micropack",), "--quantization", "--quantize"),
                           (("micropack",), "--vector-name", "--vector"),
                           (("search",), "--vector-name", "--vector")]:
        command = _command(*path)
        name = new.lstrip("-").replace("-", "_")
        assert {new, old} <= set(_param(command, name).opts)
        shown = CliRunner().invoke(cli, [*path, "--help"]).output
        assert new in shown and f"{old} " not in shown and f"{old}," not in shown


def test_run_files_go_beside_a_file_target_else_in_the_working_directory(tmp_path: Path) -> None:
    assert api.open_store(tmp_path / "out.vmig.jsonl").run_files_base() == tmp_path / "out.vmig.jsonl"
    assert api.open_store("qdrant://localhost:6333/c").run_files_base() is None


def test_an_import_is_recorded_in_the_files_sidecar(tmp_path: Path) -> None:
    source = write_vmig(tmp_path / "in.vmig.jsonl", list(sample_records(5, dims=4)))
    api.import_(source, f"vektor:{tmp_path / 'copy.db'}")
    history = (read_sidecar(source) or {}).get("imports")
    assert isinstance(history, list) and [h["records"] for h in history] == [5]
    api.import_(source, f"vektor:{tmp_path / 'dry.db'}", dry_run=True)
    assert len((read_sidecar(source) or {})["imports"]) == 1


def test_connectors_lists_capabilities(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["connectors", "--json", "--capabilities"]) == 0
    listed = json.loads(capsys.readouterr().out)
    vmig = listed["vmig"]
    assert vmig["installed"] and vmig["read"] and vmig["write"] and vmig["named_vectors"]
    assert listed["jsonl"]["alias_of"] == "vmig" and isinstance(vmig["url_options"], list)
    assert vmig["suffixes"] == [".vmig.jsonl", ".jsonl"] and listed["mg"]["takes_path"]
    assert listed["pgvector"]["url_userinfo"] == "user" and listed["qdrant"]["url_secret"] == "api_key"
    assert main(["connectors"]) == 0
    table = capsys.readouterr().out
    assert all(name in table for name in listed) and "url options" in table
