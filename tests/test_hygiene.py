"""House rules that keep holding only if a test holds them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import vexchange

ROOT = Path(__file__).resolve().parents[1]


def test_strict_typing() -> None:
    from mypy import api

    out, err, status = api.run(["--config-file", str(ROOT / "pyproject.toml"),
                                str(ROOT / "src" / "vexchange")])
    assert status == 0, out + err


def test_import_loads_no_connector_module() -> None:
    """Connectors load lazily through the registry, so a vendor SDK never loads with the package."""
    code = ("import sys, vexchange, vexchange.cli; "
            "print(sorted(m for m in sys.modules if m.startswith('vexchange.connectors.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(eval(out.stdout))  # our own printed list
    assert loaded <= {"vexchange.connectors._base", "vexchange.connectors._registry",
                      "vexchange.connectors.vmig"}, loaded


def test_public_api_is_pinned() -> None:
    assert vexchange.__all__ == [
        "CapabilityError", "ConnectorError", "DecodeError", "IntegrityError", "MemoryRecord",
        "MigrationError", "Receipt", "StoreSpec", "TransientError", "UsageError", "Vector",
        "VexError", "__version__", "convert", "export", "import_", "inspect", "migrate", "open_store",
        "validate", "verify",
    ]


def test_ruff_is_clean() -> None:
    """pyproject's [tool.ruff] rules (E, F, B, UP, SIM, RUF; 110 columns) over the whole tree."""
    out = subprocess.run([sys.executable, "-m", "ruff", "check", str(ROOT)], capture_output=True,
                         text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
