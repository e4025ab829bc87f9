"""What the conformance tests of the embedded table stores (DuckDB, sqlite-vec, FAISS) share:
registering the connector before its registry row exists, and the killed-run test that then
cannot run (its child process does not see a registration made in this one)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vexchange.connectors import _registry
from vexchange.testing.conformance import ConnectorConformance


def registered(name: str, entry: _registry.Entry) -> Any:
    """An autouse fixture that registers ``entry`` as ``name`` for each test, unless the
    registry's builtins already hold the row. Bind it in the test module:
    ``_registered = registered(NAME, Entry(...))``."""
    missing = name not in _registry._BUILTINS

    @pytest.fixture(autouse=True)
    def _registered(monkeypatch: pytest.MonkeyPatch) -> None:
        if missing:
            monkeypatch.setitem(_registry._BUILTINS, name, entry)

    return _registered


class EmbeddedStoreConformance(ConnectorConformance):
    """The conformance suite for a store that lives in a local file or directory."""

    row_missing = False
    """Set to ``NAME not in _registry._BUILTINS``: the killed run is skipped until the row exists."""

    def test_resume_after_the_process_is_killed(self, tmp_path: Path, new_location: Any) -> None:
        if self.row_missing:
            pytest.skip("the killed run opens the target in a child process: needs the registry row")
        super().test_resume_after_the_process_is_killed(tmp_path, new_location)
