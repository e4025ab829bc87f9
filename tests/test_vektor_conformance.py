"""VEKTOR Slipstream SQLite through the shared conformance suite, read back with sqlite3 itself."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from vexchange.testing.conformance import ConnectorConformance, NativeRow


def vektor_rows(location: str) -> list[NativeRow]:
    """Every row of ``memories``, through Python's sqlite3 (no vexchange code): the content
    column and the vector column (``vector``, or ``embedding`` in the legacy layout)."""
    path = urlsplit(location).path
    db = sqlite3.connect(Path(path).as_uri() + "?mode=ro", uri=True)
    try:
        columns = {row[1] for row in db.execute("PRAGMA table_info(memories)")}
        vector = "vector" if "vector" in columns else "embedding"
        return [NativeRow(text, blob)
                for text, blob in db.execute(f'SELECT content, "{vector}" FROM memories')]
    finally:
        db.close()


class TestVektor(ConnectorConformance):
    """VEKTOR ids are global (``id INTEGER PRIMARY KEY``; the legacy layout's ``id TEXT PRIMARY
    KEY``): the namespace is a column, not part of the key, so twins are ``id_conflict``."""

    same_id_in_namespaces = False
    bulk = 3000

    @pytest.fixture
    def new_location(self, tmp_path: Path) -> Any:
        return lambda name: f"vektor://{tmp_path}/{name}.db"

    @pytest.fixture
    def broken_location(self, tmp_path: Path) -> str:
        garbage = tmp_path / "garbage.db"
        garbage.write_bytes(b"this is not a SQLite database, it only has the name of one" * 20)
        return f"vektor://{garbage}"

    @pytest.fixture
    def native_rows(self) -> Any:
        return vektor_rows


class TestVektorLegacy(TestVektor):
    """The legacy layout (``id TEXT PRIMARY KEY``, ``embedding``, JSON ``metadata``, ISO
    ``created_at``): an existing database is written in the layout it has."""

    @pytest.fixture
    def new_location(self, tmp_path: Path) -> Any:
        from vexchange.testing.vektor_fixture import LEGACY_DDL

        def create(name: str) -> str:
            path = tmp_path / f"{name}.db"
            db = sqlite3.connect(path)
            db.executescript(LEGACY_DDL)
            db.close()
            return f"vektor://{path}"

        return create
