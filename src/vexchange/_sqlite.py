"""Opening a SQLite file vexchange reads but may not have written: read-only, tables only, bounded.

A VEKTOR database, a cartridge, the cartridge inside a VectorPack can come from anyone, and
SQLite runs what the file's schema says: a view named like the table a reader selects from can
hold a recursive CTE that never ends, and a damaged page raises ``sqlite3.DatabaseError`` in
the middle of a read. So every reader opens through :func:`open_readonly`:

* URI ``mode=ro`` (and ``immutable=1`` only for a file nothing changes while it is read): no
  write ever happens, so no trigger ever fires; ``trusted_schema=OFF`` and ``query_only`` on
  top, and ``cell_size_check`` so more damage is found as damage;
* :func:`require_tables`: each table a reader uses must be a real table in ``sqlite_master``;
  a view in its place is refused before any query runs;
* a progress handler stops a statement that runs longer than ``time_limit()`` seconds
  (``VEX_SQLITE_SECONDS``, default 60): the clock starts at each execute and each fetch call
  (a fetch returns a bounded number of rows); rows iterated one by one share their statement's
  clock, so even an endless stream of rows is stopped;
* with ``translate=True``, every ``sqlite3.DatabaseError`` of that connection becomes a
  :class:`DamagedDatabaseError`, a DecodeError naming the file (and still a
  ``sqlite3.DatabaseError``, so code that catches those to list problems goes on doing so).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

from .errors import DecodeError, UsageError

__all__ = [
    "DEFAULT_SECONDS",
    "DamagedDatabaseError",
    "GuardedConnection",
    "error_kind",
    "open_readonly",
    "require_tables",
    "time_limit",
]

DEFAULT_SECONDS = 60.0
"""The longest one call into SQLite may run while reading (a page of records takes
milliseconds; ``PRAGMA integrity_check`` of a large file some seconds)."""
_STEPS = 10_000
"""SQLite virtual-machine steps between two looks at the clock."""


def time_limit() -> float:
    """``VEX_SQLITE_SECONDS`` when set to a positive number, else ``DEFAULT_SECONDS``."""
    raw = os.environ.get("VEX_SQLITE_SECONDS", "").strip()
    try:
        value = float(raw) if raw else DEFAULT_SECONDS
    except ValueError:
        raise UsageError(f"VEX_SQLITE_SECONDS must be a number of seconds, not {raw!r}") from None
    if not value > 0:
        raise UsageError(f"VEX_SQLITE_SECONDS must be positive, not {raw!r}")
    return value


class DamagedDatabaseError(DecodeError, sqlite3.DatabaseError):
    """SQLite could not read the file (damaged, not a database, or a query stopped by the time
    bound). A DecodeError for the CLI, and a ``sqlite3.DatabaseError`` for code that already
    turns those into a list of problems (``vex pack verify``)."""


class GuardedConnection(sqlite3.Connection):
    """A connection whose every call into SQLite is time-bounded (and, with ``translate``,
    whose errors are DamagedDatabaseErrors). Made by :func:`open_readonly` only."""

    where: str = ""
    translate: bool = False
    limit: float = DEFAULT_SECONDS
    deadline: float = 0.0

    def arm(self) -> None:
        self.deadline = time.monotonic() + self.limit

    def _expired(self) -> int:
        return 1 if time.monotonic() > self.deadline else 0

    def cursor(self, factory: Any = None) -> Any:  # factory ignored: always a guarded cursor
        return super().cursor(GuardedCursor)

    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Any:
        return self.cursor().executemany(sql, parameters)

    def executescript(self, script: str, /) -> Any:
        return self.cursor().executescript(script)

    def failure(self, err: sqlite3.Error) -> BaseException:
        """What to raise for an error of this connection."""
        text = str(err)
        if text == "interrupted" and time.monotonic() > self.deadline:
            text = (f"a query ran longer than {self.limit:g} s and was stopped (a view or a crafted"
                    " schema, or a damaged file); raise VEX_SQLITE_SECONDS for a very large file")
            if not self.translate:
                return sqlite3.OperationalError(text)
        if not self.translate or not isinstance(err, sqlite3.DatabaseError) or isinstance(
                err, DamagedDatabaseError) or "locked" in text or "busy" in text:
            return err if text == str(err) else sqlite3.OperationalError(text)
        return DamagedDatabaseError(f"SQLite cannot read it: {text}", location=self.where,
                                    hint="the file is damaged or not what it claims to be")


class GuardedCursor(sqlite3.Cursor):
    """Arms the connection's deadline before each execute or fetch and translates errors."""

    def _run(self, method: Any, *args: Any) -> Any:
        conn = cast(GuardedConnection, self.connection)
        conn.arm()
        try:
            return method(self, *args)
        except sqlite3.Error as err:
            failure = conn.failure(err)
            if failure is err:
                raise
            raise failure from None

    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        return self._run(sqlite3.Cursor.execute, sql, parameters)

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Any:
        return self._run(sqlite3.Cursor.executemany, sql, parameters)

    def executescript(self, script: str, /) -> Any:
        return self._run(sqlite3.Cursor.executescript, script)

    def fetchone(self) -> Any:
        return self._run(sqlite3.Cursor.fetchone)

    def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._run(sqlite3.Cursor.fetchmany, self.arraysize if size is None else size)  # type: ignore[no-any-return]

    def fetchall(self) -> list[Any]:
        return self._run(sqlite3.Cursor.fetchall)  # type: ignore[no-any-return]

    def __next__(self) -> Any:
        """The statement's clock goes on (no re-arm): iterating is bounded as a whole."""
        try:
            return sqlite3.Cursor.__next__(self)
        except sqlite3.Error as err:
            failure = cast(GuardedConnection, self.connection).failure(err)
            if failure is err:
                raise
            raise failure from None


def open_readonly(path: Path, *, immutable: bool = False, writable: bool = False,
                  translate: bool = True, limit: float | None = None) -> GuardedConnection:
    """Open an existing SQLite file for reading (``writable`` only for a command that changes
    it on purpose, ``vex feedback``): read-only URI, hardened pragmas, the time bound.
    ``immutable`` only where nothing may change the file while it is read (a pack's cartridge,
    hash-checked): SQLite then skips locking and never looks for a journal."""
    mode = "rw" if writable else "ro"
    uri = f"{path.resolve().as_uri()}?mode={mode}" + ("&immutable=1" if immutable and not writable else "")
    try:
        db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False,
                             factory=GuardedConnection)
    except sqlite3.Error as err:
        if not translate:
            raise
        raise DamagedDatabaseError(f"SQLite cannot open it: {err}", location=str(path)) from None
    db.where, db.translate = str(path), translate
    db.limit = time_limit() if limit is None else limit
    db.arm()
    db.set_progress_handler(db._expired, _STEPS)
    pragmas = ["PRAGMA trusted_schema = OFF", "PRAGMA cell_size_check = ON"]
    if not writable:
        pragmas.append("PRAGMA query_only = ON")
    for pragma in pragmas:
        db.execute(pragma)
    return db


def require_tables(db: sqlite3.Connection, names: Iterable[str], where: str, *,
                   optional: Iterable[str] = ()) -> set[str]:
    """Refuse (DecodeError) a file where a table a reader uses is a view, a trigger's name or
    missing (``optional`` ones may be missing); returns the optional tables present. Asked of
    ``sqlite_master`` before any query touches them, so a view is never run."""
    kinds = {str(name).lower(): kind for name, kind in
             db.execute("SELECT name, type FROM sqlite_master").fetchall()}
    present = set()
    for name in [*names, *optional]:
        kind = kinds.get(name.lower())
        if kind is None and name in optional:
            continue
        if kind is None:
            raise DecodeError(f"it has no table {name!r}", location=where)
        if kind != "table":
            raise DecodeError(f"{name!r} is a {kind}, not a table; vexchange reads only tables"
                              " (a view could run any query)", location=where)
        present.add(name)
    return present & set(optional)


_PRIMARY = {5: "busy", 6: "busy", 8: "readonly", 14: "cantopen", 26: "notadb"}
"""SQLite primary result codes (the low byte of an extended code) by what a caller does about
them: SQLITE_BUSY and SQLITE_LOCKED may pass, the others will not."""
_BY_TEXT = (("locked", "busy"), ("busy", "busy"), ("readonly", "readonly"),
            ("unable to open", "cantopen"), ("not a database", "notadb"))


def error_kind(err: sqlite3.Error) -> str | None:
    """"busy", "readonly", "cantopen", "notadb" or None for an SQLite error, chosen by its
    result code (``sqlite_errorcode``, Python 3.11+), never by its message where the code is
    known. Python 3.10 has no code on the exception: there only, the message decides."""
    code = getattr(err, "sqlite_errorcode", None)
    if isinstance(code, int):
        return _PRIMARY.get(code & 0xFF)
    text = str(err)
    return next((kind for word, kind in _BY_TEXT if word in text), None)
