"""Finding a connector by name: a builtin table plus the ``vexchange.connectors`` entry points.

Builtins are strings, imported only when used, so ``vex --help`` never imports a vendor SDK.
Third-party packages declare::

    [project.entry-points."vexchange.connectors"]
    mystore = "mypackage:MyStoreConnector"

A plugin may not take a builtin name; such a plugin is ignored (with a logged warning).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import importlib.util
import logging
from dataclasses import dataclass
from functools import lru_cache

from ..errors import MissingDependencyError, UnknownConnectorError
from ._base import Connector

__all__ = ["Entry", "available", "get", "register"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    target: str
    """``module:Class``"""
    extra: str | None = None
    requires: tuple[str, ...] = ()


_BUILTINS: dict[str, Entry] = {
    "chroma": Entry("vexchange.connectors.chroma:ChromaConnector", "chroma", ("chromadb",)),
    "lancedb": Entry("vexchange.connectors.lancedb:LanceDBConnector", "lancedb",
                     ("lancedb", "pyarrow")),
    "pinecone": Entry("vexchange.connectors.pinecone:PineconeConnector", "pinecone", ("pinecone",)),
    "weaviate": Entry("vexchange.connectors.weaviate:WeaviateConnector", "weaviate", ("weaviate",)),
    "redis": Entry("vexchange.connectors.redis:RedisConnector", "redis", ("redis",)),
    "milvus": Entry("vexchange.connectors.milvus:MilvusConnector", "milvus", ("pymilvus",)),
    "pgvector": Entry("vexchange.connectors.pgvector:PgvectorConnector", "pgvector",
                      ("psycopg", "pgvector")),
    "qdrant-edge": Entry("vexchange.connectors.qdrant_edge:QdrantEdgeConnector", "qdrant-edge",
                         ("qdrant_edge",)),
    "qdrant": Entry("vexchange.connectors.qdrant:QdrantConnector", "qdrant", ("qdrant_client",)),
    "mg": Entry("vexchange.connectors.mg:MgConnector"),
    "cartridge": Entry("vexchange.connectors.cartridge:CartridgeConnector"),
    "vectorpack": Entry("vexchange.connectors.vectorpack:VectorPackConnector"),
    "jsonl": Entry("vexchange.connectors.vmig:VmigConnector"),
    "vektor": Entry("vexchange.connectors.vektor:VektorConnector"),
    "vmig": Entry("vexchange.connectors.vmig:VmigConnector"),
}
_REGISTERED: dict[str, Entry] = {}


def register(name: str, target: str, *, replace: bool = False) -> None:
    """Add a connector at run time (tests, notebooks)."""
    if not replace and (name in _BUILTINS or name in _REGISTERED):
        raise ValueError(f"a connector named {name!r} exists; pass replace=True to override it")
    _REGISTERED[name] = Entry(target)


@lru_cache(maxsize=1)
def _plugins() -> dict[str, Entry]:
    found: dict[str, Entry] = {}
    for ep in importlib.metadata.entry_points(group="vexchange.connectors"):
        if ep.name in _BUILTINS:
            log.warning("ignoring plugin connector %r: the name is builtin", ep.name)
            continue
        found[ep.name] = Entry(ep.value)
    return found


def _entries() -> dict[str, Entry]:
    return {**_plugins(), **_BUILTINS, **_REGISTERED}


def available() -> dict[str, Entry]:
    """Every known connector name and its entry, without importing any of them."""
    return dict(sorted(_entries().items()))


def missing_requirement(entry: Entry) -> str | None:
    """The first required module that is not installed, or None."""
    return next((m for m in entry.requires if importlib.util.find_spec(m) is None), None)


def get(name: str) -> type[Connector]:
    """The connector class for a name; clear errors for unknown names or missing extras."""
    entries = _entries()
    entry = entries.get(name)
    if entry is None:
        close = difflib.get_close_matches(name, entries, n=1)
        raise UnknownConnectorError(
            f"no connector named {name!r}; known: {', '.join(sorted(entries))}",
            hint=f"did you mean {close[0]!r}?" if close else None,
        )
    missing = missing_requirement(entry)
    if missing:
        raise MissingDependencyError(name, missing, entry.extra or name)
    module_name, _, attr = entry.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise MissingDependencyError(name, err.name or module_name, entry.extra or name) from err
    cls = getattr(module, attr)
    if not (isinstance(cls, type) and issubclass(cls, Connector)):
        raise TypeError(f"{entry.target} is not a vexchange Connector")
    return cls
