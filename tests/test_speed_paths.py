"""The fast paths of the write side give exactly what the plain code gives (issue 19, item 6)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vexchange._floats import _HAZARD_BYTES, vector_json
from vexchange._time import format_timestamp
from vexchange.codecs.vmig import _iso

_MOMENTS = [0, 1, 999, 1000, 86_399_999, 86_400_000, 1_735_689_637_000, 1_735_689_637_123, -1, -999,
            -1000, -86_400_001, -62_135_596_800_000, 253_402_300_799_999, 951_782_400_000,  # 2000-02-29
            4_107_542_400_000]  # 2100-03-01


@pytest.mark.parametrize("ms", _MOMENTS)
def test_iso_is_format_timestamp(ms: int) -> None:
    assert _iso(ms) == format_timestamp(ms)
    assert _iso(ms) == format_timestamp(ms)  # the second time from the day kept


@pytest.mark.parametrize("ms", [-62_135_596_800_001, 253_402_300_800_000])
def test_iso_refuses_what_format_timestamp_refuses(ms: int) -> None:
    with pytest.raises(ValueError):
        format_timestamp(ms)
    with pytest.raises(ValueError):
        _iso(ms)


def test_iso_many_days() -> None:
    for ms in range(-10 * 86_400_000, 20_000 * 86_400_000, 3_600_000 * 7 + 12_345):
        assert _iso(ms) == format_timestamp(ms)


def test_hazard_still_written_exactly() -> None:
    for hazard in _HAZARD_BYTES:
        assert not hasattr(vector_json(b"\0\0\0\0" + hazard), "dtype")  # a Fragment, float64 text
    assert hasattr(vector_json(b"\0\0\0\0" * 2), "dtype")


def _loaded_after(*args: str) -> set[str]:
    """The modules in ``sys.modules`` after ``vex ARGS`` ran in a fresh interpreter."""
    code = ("import sys\nfrom vexchange.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n"
            "    pass\nprint('LOADED:' + ','.join(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True,
                         timeout=60).stdout
    return set(out.strip().splitlines()[-1].removeprefix("LOADED:").split(","))


_HEAVY = ("numpy", "vexchange.engine.run", "vexchange.connectors._registry", "vexchange.api")


@pytest.mark.parametrize("args", [("--help",), ("--version",), ()])
def test_help_imports_no_numpy(args: tuple[str, ...]) -> None:
    """``vex --help`` and ``vex --version`` (start-up as fast as Vex's) import click and the
    command table, not one command's module, nor the spec, the errors or numpy: the lazy group
    (cli/_app.py) imports a command's module when that command runs."""
    loaded = _loaded_after(*args)
    assert not {m for m in loaded if m.startswith("vexchange.cli.") and m != "vexchange.cli._app"}
    assert not loaded & {*_HEAVY, "vexchange.spec", "vexchange.errors", "msgspec", "orjson"}


@pytest.mark.parametrize("command", ["export", "import", "migrate", "verify", "inspect", "validate",
                                     "connectors", "pack", "grains", "sign", "plan", "convert"])
def test_a_commands_help_imports_only_its_module(command: str) -> None:
    """``vex CMD --help`` imports CMD's module (and what it imports), no other command's, and
    neither numpy nor the engine's run loop nor the API: ``vexchange.api`` may be in
    ``sys.modules`` as a lazy module (cli/_app.py ``lazy_module``) that no attribute read ran."""
    from vexchange.cli._app import COMMANDS

    loaded = _loaded_after(command, "--help")
    own = COMMANDS[command][0]
    others = {f"vexchange.cli.{m}" for m, _ in COMMANDS.values()} - {f"vexchange.cli.{own}"}
    shared: set[str] = set()  # location() and run_command() are in cli/_running.py
    assert f"vexchange.cli.{own}" in loaded
    assert not loaded & (others - shared)
    assert not loaded & {"numpy", "vexchange.engine.run"}
    if command not in ("export", "import", "migrate", "plan"):  # their help lists the run options
        assert "vexchange.engine.options" not in loaded
