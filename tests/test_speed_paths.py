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


def test_help_imports_no_numpy() -> None:
    """``vex --help`` starts without numpy or the engine (start-up as fast as Vex's).
    ``vexchange.api`` may be in ``sys.modules`` as a lazy module (cli/_app.py ``lazy_module``):
    it runs when a command first uses it, and then loads the engine."""
    code = ("import sys\nfrom vexchange.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n"
            "    pass\nheavy = [m for m in ('numpy', 'vexchange.engine.run')"
            " if m in sys.modules]\n"
            "print('HEAVY:' + ','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "HEAVY:"
