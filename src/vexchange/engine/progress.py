"""Progress reporting: the library calls a Progress; the CLI draws it. The library never prints."""

from __future__ import annotations

from typing import Protocol

__all__ = ["NoProgress", "Progress"]


class Progress(Protocol):
    def start(self, total: int | None) -> None: ...
    def advance(self, done: int, written: int, skipped: int) -> None: ...
    def close(self) -> None: ...


class NoProgress:
    """The default: report nothing."""

    def start(self, total: int | None) -> None:
        pass

    def advance(self, done: int, written: int, skipped: int) -> None:
        pass

    def close(self) -> None:
        pass
