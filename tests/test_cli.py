"""The CLI is a thin layer: seed forms, URL forms, --json, inspect/validate/verify exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vexchange.cli import main
from vexchange.cli._app import COMMANDS
from vexchange.testing.vektor_fixture import Fixture


def vex(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def test_seed_forms_round_trip(slipstream: Fixture, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m.vmig.jsonl"
    code, stdout, _ = vex(capsys, "export", "--from", "vektor", "--db", str(slipstream.path),
                          "--output", str(out), "--allow-skips")
    assert code == 0 and "export summary" in stdout
    code, _, _ = vex(capsys, "import", "--from", str(out), "--to", "vektor", "--db", str(tmp_path / "c.db"))
    assert code == 0
    code, _, _ = vex(capsys, "migrate", "--from", "vektor", "--db", str(tmp_path / "c.db"),
                     "--to", "jsonl", "--output", str(tmp_path / "again.jsonl"))
    assert code == 0
    assert (tmp_path / "again.jsonl").read_bytes() == out.read_bytes()
    code, stdout, _ = vex(capsys, "verify", f"vektor:{tmp_path / 'c.db'}", "--against",
                          f"vektor:{slipstream.path}", "--json")
    report = json.loads(stdout)
    # the fixture's one unreadable row cannot be in the copy: verify says so, it does not pass
    check = report["checks"][0]
    assert code == 3 and not report["ok"] and check["source_unreadable"] == 1
    assert check["matched"] == slipstream.records - 1 and check["missing"] == 0


def test_url_form_same_kind_migration_and_receipt_verify(
        slipstream: Fixture, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "b.db"
    code, stdout, _ = vex(capsys, "migrate", f"vektor:{slipstream.path}", f"vektor:{target}",
                          "--namespace", "work", "--namespace", "edge", "--json", "--allow-skips")
    receipt = json.loads(stdout)
    assert code == 0 and set(receipt["namespaces"]) == {"work", "edge"}
    assert receipt["counts"]["filtered"] > 0
    code, stdout, _ = vex(capsys, "verify", f"vektor:{target}",
                          "--receipt", str(tmp_path / "b.db.receipt.json"))
    assert code == 0, stdout


def test_limit_since_until(slipstream: Fixture, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = vex(capsys, "export", f"vektor:{slipstream.path}", "-o", str(tmp_path / "l.vmig.jsonl"),
                          "--limit", "7", "--json")
    assert code == 0 and json.loads(stdout)["counts"]["written"] == 7
    code, stdout, _ = vex(capsys, "export", f"vektor:{slipstream.path}", "-o", str(tmp_path / "s.vmig.jsonl"),
                          "--since", "2025-01-01T00:01:00Z", "--until", "2025-01-01T00:02:00Z", "--json",
                          "--allow-skips")  # the unreadable truncated-blob row is still counted
    # ids 2 and 3 have created_at 00:01:14 and 00:01:51
    assert code == 0 and json.loads(stdout)["counts"]["written"] == 2


def test_dry_run_writes_nothing(slipstream: Fixture, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = vex(capsys, "import", "--from", "x.vmig.jsonl", "--to", "vektor")
    assert code == 2
    out = tmp_path / "d.vmig.jsonl"
    code, stdout, _ = vex(capsys, "export", f"vektor:{slipstream.path}", "-o", str(out), "--dry-run",
                          "--json", "--allow-skips")
    assert code == 0 and json.loads(stdout)["status"] == "dry_run" and not out.exists()
    target = tmp_path / "never.db"
    code, _, _ = vex(capsys, "migrate", f"vektor:{slipstream.path}", f"vektor:{target}", "--dry-run",
                     "--quiet", "--allow-skips")
    assert code == 0 and not target.exists()


def test_validate_and_inspect(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.vmig.jsonl"
    bad.write_text('{"id":"1","vector":[1,2]}\n{"id":"1","vector":[1,2]}\n{"id":"2","vector":[1,2,3]}\n'
                   '{"id":"3","metadata":{"deep":{"a":1}}}\n{"id":"4","vector":[1,2],"dims":3}\n')
    code, stdout, _ = vex(capsys, "validate", str(bad), "--json")
    report = json.loads(stdout)
    assert code == 3 and report["error_counts"] == {"duplicate_id": 1, "dims_inconsistent": 1,
                                                    "nested_metadata": 1, "dims_mismatch": 1}
    code, stdout, _ = vex(capsys, "inspect", str(bad), "--json")
    summary = json.loads(stdout)
    assert code == 0 and summary["records"] == 4 and summary["sidecar"] == {"status": "missing"}


def test_help_and_connectors_need_no_extras(capsys: pytest.CaptureFixture[str]) -> None:
    assert vex(capsys, "--help")[0] == 0
    code, stdout, _ = vex(capsys, "connectors", "--json")
    assert code == 0 and json.loads(stdout)["vektor"] == "installed"


def test_secrets_never_reach_receipts(tmp_path: Path) -> None:
    from vexchange.spec import StoreSpec

    spec = StoreSpec.parse("vektor:x.db?api_key=hunter2&token=abc", secrets={"api_key": "s3cret"})
    assert "hunter2" not in spec.redacted() and "abc" not in spec.redacted()
    assert "s3cret" not in repr(spec) and "hunter2" not in repr(spec)


def test_the_quick_start_demo_verifies_its_copy(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """README's first command: a VEKTOR database -> file -> new database; the copy holds every
    readable record exactly and the one unreadable edge case is accounted for by the rejects."""
    code, stdout, _ = vex(capsys, "demo", "--dir", str(tmp_path), "--records", "300", "--json")
    report = json.loads(stdout)
    assert code == 0 and report["verified"], report
    assert report["verify"]["source_unreadable"] == 1 and report["verify"]["matched"] == report["imported"]


_CLI_MODULES = sorted({module for module, _ in COMMANDS.values()})


def test_the_command_table_is_what_the_modules_declare() -> None:
    """``vex --help`` lists the commands from cli/_app.py's COMMANDS without importing their
    modules: each row must name the module that declares the command and its one-line help,
    and every command a module of vexchange.cli declares must have its row."""
    import importlib
    import pkgutil

    import vexchange.cli
    from vexchange.cli._app import cli

    modules = [m.name for m in pkgutil.iter_modules(vexchange.cli.__path__) if not m.name.startswith("_")]
    assert sorted(modules) == _CLI_MODULES  # a new command module is in the table too
    for module in modules:
        importlib.import_module(f"vexchange.cli.{module}")
    declared = {name: cli.commands.loaded(name) for name in cli.commands}
    assert set(declared) == set(COMMANDS)
    for name, (module, line) in COMMANDS.items():
        command = declared[name]
        assert command is not None and command.callback is not None, name
        assert command.callback.__module__ == f"vexchange.cli.{module}", name
        assert command.get_short_help_str(10**6) == line, name
        assert not command.hidden and not command.deprecated, name


@pytest.mark.parametrize("columns", ["50", "80", "200"])
def test_the_lazy_help_is_the_help_of_every_command_loaded(columns: str) -> None:
    import os
    import subprocess
    import sys

    def help_text(imports: str) -> str:
        code = f"import sys\n{imports}\nfrom vexchange.cli import main\nsys.exit(main(['--help']))"
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "COLUMNS": columns})
        assert done.returncode == 0, done.stderr
        return done.stdout

    lazy = help_text("")
    assert lazy == help_text("\n".join(f"import vexchange.cli.{m}" for m in _CLI_MODULES))
    assert "Commands:" in lazy and "  migrate " in lazy


def test_a_command_added_to_the_group_is_listed_and_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """A plugin adding its own command (``cli.add_command``) is shown and run beside the lazy ones."""
    import click

    from vexchange.cli import cli

    @click.command(name="plugin-hello")
    def hello() -> None:
        """Say hello from a plugin."""
        click.echo("hello")

    cli.add_command(hello)
    try:
        code, out, _ = vex(capsys, "--help")
        assert code == 0 and "plugin-hello  Say hello from a plugin." in out and "  export " in out
        assert vex(capsys, "plugin-hello") == (0, "hello\n", "")
    finally:
        del cli.commands["plugin-hello"]
    assert "plugin-hello" not in vex(capsys, "--help")[1]


def test_an_unknown_command_is_a_usage_error_with_a_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = vex(capsys, "migrat")
    assert code == 2 and "No such command 'migrat'" in err and "migrate" in err


@pytest.mark.parametrize("path", [("export",), ("import",), ("migrate",), ("plan",), ("pack", "create"),
                                  ("pack", "unpack"), ("adapter", "apply"), ("doctor",)])
def test_lazy_run_options_are_made_in_place_and_in_order(path: tuple[str, ...]) -> None:
    """``run_options(lazy=True)`` gives the options ``run_options()`` gives, where it gives them:
    the command's own options first, then every run option in declaration order, then the CLI's."""
    import click

    from vexchange.cli import cli, plan
    from vexchange.cli._app import PendingParams
    from vexchange.cli._options import run_options
    from vexchange.engine.options import option_fields

    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]

    @click.command()
    @run_options()
    def eager(**options: object) -> None: ...

    made = [p.name for p in command.params]
    assert not any(isinstance(p, PendingParams) for p in command.params)
    expected = [p.name for p in eager.params]
    assert expected[: len(option_fields())] == [f.name for f, _, _ in option_fields()]
    if path == ("doctor",):  # the options that choose and read records, in their order
        expected = [name for name in expected if name in plan._DOCTOR_OPTIONS]
    start = made.index(expected[0])
    assert made[start:start + len(expected)] == expected


def test_python_m_vexchange_is_vex() -> None:
    """``python -m vexchange`` (src/vexchange/__main__.py) runs the same CLI as the ``vex`` script."""
    import subprocess
    import sys

    from vexchange import __version__

    done = subprocess.run([sys.executable, "-m", "vexchange", "--version"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == f"vex, version {__version__}"


def test_the_written_out_plan_defaults_are_the_libraries() -> None:
    from vexchange import plan_results
    from vexchange.cli import plan

    assert (plan.PLAN_SAMPLE, plan.DOCTOR_SAMPLE) == (plan_results.PLAN_SAMPLE, plan_results.DOCTOR_SAMPLE)
