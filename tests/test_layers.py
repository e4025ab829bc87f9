"""Imports run downward: the core (records, errors, JSON, files), then codecs, formats,
embedders, connectors and packs, then the engine, then the public functions (api, checks,
the demo), then the CLI. Nothing in the product imports the test kit (vexchange.testing).
Read from the source with ast, so a lazy import inside a function counts too."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "vexchange"
LEVEL = {"engine": 3, "api": 4, "checks": 4, "demo": 4, "backup": 4, "convert": 4, "plan": 4, "doctor": 4,
         "ui": 4, "cli": 5, "__main__": 6}
"""Top-level module or package -> its level; everything else is level 1 (or the core)."""


def _imports(path: Path) -> list[str]:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    package = parts[:-1]  # a module's package; for an __init__, the package itself
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names = [module] if node.module else [f"{module}.{alias.name}" for alias in node.names]
            found.extend(n for n in names if n.startswith("vexchange"))
        elif isinstance(node, ast.Import):
            found.extend(a.name for a in node.names if a.name.startswith("vexchange"))
    return found


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_imports_run_downward_and_the_product_never_imports_the_test_kit() -> None:
    upward = []
    for path in SRC.rglob("*.py"):
        module = ".".join(path.relative_to(SRC.parent).with_suffix("").parts).removesuffix(".__init__")
        here = _top(module)
        if here in ("", "testing"):  # the package's own __init__ re-exports; the kit may use anything
            continue
        for target in _imports(path):
            there = _top(target)
            if there == "testing" or (there != here and LEVEL.get(there, 1) > LEVEL.get(here, 1)):
                upward.append(f"{module} -> {target}")
    assert not upward, upward
