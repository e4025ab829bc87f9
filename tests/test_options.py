"""One source for every run option: ``RunOptions``'s fields drive the CLI options of every
command that runs, and the keyword parameters and docs of ``migrate``, ``export`` and
``import_``. A new field cannot be forgotten in either place."""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import shutil
import subprocess
import sys
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


def test_a_new_option_reaches_a_function_that_does_not_write_it_out() -> None:
    """``run_options_of`` adds a field the function lacks to its public signature, with its
    type, default and help, and hands it over through ``**more_options``."""
    calls: list[dict[str, Any]] = []

    def run_with_tone(source: str, *, limit: int | None = None, receipt: str | None = None,
                      **more_options: Any) -> None:
        """Like migrate."""
        calls.append({"limit": limit, "receipt": receipt, **more_options})

    wrapped = run_options_of(WithTone)(run_with_tone)
    params = inspect.signature(wrapped).parameters
    names = list(params)
    assert names[:3] == ["source", "limit", "namespaces"] and names[-2:] == ["tone", "receipt"]
    assert params["tone"].default == "calm" and params["tone"].annotation == Literal["calm", "loud"]
    assert params["tone"].kind is inspect.Parameter.KEYWORD_ONLY
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    assert "``tone='calm'``: How the run speaks (a test option)." in (wrapped.__doc__ or "")
    wrapped("s", tone="loud", limit=2)
    assert calls == [{"limit": 2, "receipt": None, "tone": "loud"}]
    with pytest.raises(TypeError, match="tonee"):
        wrapped("s", tonee="loud")  # a misspelt option is refused, never swallowed


def test_a_written_out_option_must_match_its_field() -> None:
    def other_default(source: str, *, tone: str = "loud", **more_options: Any) -> None: ...

    def positional(source: str, tone: str = "calm", **more_options: Any) -> None: ...

    def no_catch_all(source: str, *, tone: str = "calm") -> None: ...

    with pytest.raises(TypeError, match="tone defaults to 'loud', not 'calm'"):
        run_options_of(WithTone)(other_default)
    with pytest.raises(TypeError, match="tone is not a keyword-only parameter"):
        run_options_of(WithTone)(positional)
    with pytest.raises(TypeError, match=r"no keyword parameter limit=None and no \*\*more_options"):
        run_options_of(WithTone)(no_catch_all)
    assert signature_mismatches(vexchange.migrate, WithTone) == ["no keyword parameter tone='calm'"]


_ADD_TONE = """
    tone: Literal["calm", "loud"] = option("calm", "How the run speaks (a test option).")
"""

_CHECK_TONE = r"""
import inspect, json, sys
from pathlib import Path
import vexchange
from vexchange.cli import main

out = {}
for name in ("migrate", "export", "import_"):
    fn = getattr(vexchange, name)
    param = inspect.signature(fn).parameters["tone"]
    out[name] = [param.default, "``tone='calm'``: How the run speaks (a test option)." in fn.__doc__]
work = Path(sys.argv[1])
receipt = vexchange.migrate(str(work / "in.vmig.jsonl"), str(work / "lib.vmig.jsonl"), tone="loud")
out["library receipt"] = receipt.options["tone"]
exported = vexchange.export(str(work / "in.vmig.jsonl"), str(work / "e.vmig.jsonl"))
out["export receipt"] = exported.options["tone"]
try:
    vexchange.migrate(str(work / "in.vmig.jsonl"), str(work / "x.vmig.jsonl"), tonee="loud")
except TypeError as err:
    out["misspelt"] = str(err)
print(json.dumps(out))
"""


def test_a_field_added_to_run_options_alone_is_an_option_of_the_cli_and_of_migrate(
        tmp_path: Path) -> None:
    """The acceptance of the one-source rule, literally: a copy of the package whose
    ``RunOptions`` has one more field and no other change."""
    package = tmp_path / "pkg" / "vexchange"
    shutil.copytree(Path(vexchange.__file__).parent, package,
                    ignore=shutil.ignore_patterns("__pycache__"))
    options_py = package / "engine" / "options.py"
    source = options_py.read_text()
    anchor = "\n    @classmethod\n    def from_arguments("  # the end of RunOptions's fields
    assert source.count(anchor) == 1
    options_py.write_text(source.replace(anchor, _ADD_TONE + anchor))
    write_vmig(tmp_path / "in.vmig.jsonl", list(sample_records(3, dims=4)))
    env = {**os.environ, "PYTHONPATH": str(package.parent)}

    done = subprocess.run([sys.executable, "-c", _CHECK_TONE, str(tmp_path)], env=env,
                          capture_output=True, text=True, check=True)
    seen = json.loads(done.stdout)
    assert seen["migrate"] == seen["export"] == seen["import_"] == ["calm", True]
    assert seen["library receipt"] == "loud" and seen["export receipt"] == "calm"
    assert "tonee" in seen["misspelt"]

    cli_help = subprocess.run([sys.executable, "-m", "vexchange", "migrate", "--help"], env=env,
                              capture_output=True, text=True, check=True,
                              ).stdout.replace("\n", " ")
    assert "--tone [calm|loud]" in cli_help and "How the run speaks (a test option)." in cli_help
    assert "[default: calm]" in cli_help
    subprocess.run([sys.executable, "-m", "vexchange", "migrate", str(tmp_path / "in.vmig.jsonl"),
                    str(tmp_path / "cli.vmig.jsonl"), "--tone", "loud", "--quiet"], env=env, check=True,
                   capture_output=True)
    receipt = json.loads((tmp_path / "cli.vmig.jsonl.receipt.json").read_text())
    assert receipt["options"]["tone"] == "loud"


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


def test_workers_takes_a_number_or_auto_on_the_command_line() -> None:
    seen: list[RunOptions] = []

    @click.command()
    @run_options()
    def runner(**values: Any) -> None:
        seen.append(RunOptions.from_arguments(values))

    for given in (["--workers", "auto"], ["--workers", "3"], []):
        assert CliRunner().invoke(runner, given).exit_code == 0
    assert [o.workers for o in seen] == ["auto", 3, 1]
    for wrong in ("x", "0", "-2", "1.5"):
        assert CliRunner().invoke(runner, ["--workers", wrong]).exit_code == 2


def test_the_option_tables_metrics_are_the_connectors() -> None:
    """engine.options spells the metrics out (so a command's --help need not import the
    connectors); they must stay the connectors' own."""
    from vexchange.connectors._base import METRICS as CONNECTOR_METRICS
    from vexchange.engine.options import METRICS

    assert METRICS == CONNECTOR_METRICS
