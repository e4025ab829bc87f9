"""Full-text search over encrypted grains (docs/formats/oms-level3.md §5.2).

A contentless FTS5 table (it keeps the index, not the documents) whose documents are the
grain's words as blind word tokens (16 hex digits each, in order), never the words: a query's
words are tokenized the same way and matched as an AND
of terms (a quoted query is a phrase). FTS5 ranks by bm25 as usual.
"""

from __future__ import annotations

import sqlite3

__all__ = ["SCHEMA", "add", "match_query", "remove"]

SCHEMA = ("CREATE VIRTUAL TABLE IF NOT EXISTS fts USING fts5(words, content = '', tokenize = 'ascii')",)


def add(db: sqlite3.Connection, gid: int, document: str) -> None:
    if document:
        db.execute("INSERT INTO fts (rowid, words) VALUES (?, ?)", (gid, document))


def remove(db: sqlite3.Connection, gid: int, document: str) -> None:
    """A contentless table forgets a row only when given the document it indexed."""
    if document:
        db.execute("INSERT INTO fts (fts, rowid, words) VALUES ('delete', ?, ?)", (gid, document))


def match_query(tokens: list[str], *, phrase: bool = False) -> str:
    """The FTS5 MATCH expression for word tokens (hex, so no quoting issue)."""
    if phrase:
        return '"' + " ".join(tokens) + '"'
    return " AND ".join(tokens)
