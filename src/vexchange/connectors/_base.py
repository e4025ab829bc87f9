"""The connector interface: what a store must offer the engine, and what it declares it can hold.

A connector is bound to one store location (``from_spec``). Reading yields ``Page``s of records
and rejects with an opaque resume cursor. Writing goes through a ``Writer``: idempotent upserts
by id, a checkpoint after each acknowledged batch, then ``finish`` (or ``abort``).

Read integrity (docs/engine.md): a reader checks what its format lets it check (a sidecar
checksum, a footer, content ids) while it reads, unless ``verify_reads`` is False, and raises an
``IntegrityError`` before it hands over the page that ends the read when something does not
match; ``verify_source`` makes the same checks over the whole source up front.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple

import msgspec

from .._vector_text import VectorTexts
from ..errors import UsageError
from ..record import MemoryRecord
from ..spec import StoreSpec

__all__ = ["METRICS", "AtPath", "Capabilities", "Connector", "Page", "QueryHit", "Reject", "Shard",
           "TablePage", "VectorSpace", "Writer"]

METRICS = ("cosine", "dot", "euclidean", "manhattan")
"""Distance metrics by their vexchange names; each connector maps them to its store's names."""


class VectorSpace(msgspec.Struct, frozen=True, kw_only=True):
    """What a store declares about one named vector: its size and distance metric.

    Carried from source to target (the target creates collections and indexes with it), and
    into sidecars and receipts, so a metric is never lost in a migration.
    """

    dims: int | None = None
    metric: str | None = None


class Capabilities(msgspec.Struct, frozen=True, kw_only=True):
    """Declared up front; the engine plans from it (every flag here is read by the engine,
    ``verify`` or the conformance suite). Every connector keeps each record's namespace, and
    keeps metadata a store cannot hold natively in its reserved field, so neither is a flag."""

    read: bool
    write: bool
    named_vectors: bool = False
    """More than one vector per record."""
    null_vectors: bool = True
    """A record may have no vector at all."""
    fixed_dims: bool = False
    """All default vectors in one store must share one size."""
    normalises: tuple[str, ...] = ()
    """Metrics for which the store keeps vectors L2-normalised, not as written (Qdrant cosine)."""
    preferred_batch: int | None = None
    """Records per write the store handles best (the default batch size when writing to it)."""
    rounds: tuple[str, ...] = ()
    """Metrics for which the store may change the last bits of vector values while keeping
    their direction and length (Chroma cosine)."""
    read_ahead: bool = False
    """``read`` may run on a second thread, one page ahead of the engine, while the engine
    writes the page before (the read opens everything it uses itself and shares nothing with
    a writer). Decoding the next page then overlaps the target's own work."""
    read_in_process: bool = False
    """``read`` may run in a child process (engine/read_process.py): the connector and its
    pages can be pickled, and reading needs nothing from this process. For large file sources."""
    concurrent_writers: bool | None = None
    """Several processes may write into the store at once, each with its own writer (a
    parallel run, docs/engine.md). None: by kind, True for a server (``takes_path`` False),
    False for a file or an embedded store, which a parallel run fills through one writer."""


class Shard(msgspec.Struct, frozen=True, kw_only=True):
    """One part of a source for a parallel run: a plain, serialisable description (no handle,
    no secret) that any process, or a Ray task, hands back to ``Connector.read_shard``.

    ``kind`` says what ``start`` and ``end`` are: ``whole`` (the source, unsplit), ``rowid``
    (SQLite rowids, ``start`` included, ``end`` excluded, None for no bound), ``bytes`` (file
    offsets at line starts; ``line`` is the number of lines before ``start``), ``index``
    (record positions; for ``index`` shards of a ``.mg`` file, ``line`` is the byte offset in
    its ``.mg.vectors`` file where the vectors of grain ``start`` begin).
    Shards of one plan are in source order: read one after the other, they give exactly
    what ``read`` gives."""

    index: int
    kind: str = "whole"
    start: int | None = None
    end: int | None = None
    line: int = 0
    records: int | None = None
    """Records in the shard, when the plan knows (progress only)."""

    def label(self) -> str:
        """The shard as a person reads it, for errors and the receipt."""
        if self.kind == "whole":
            return f"shard {self.index} (the whole source)"
        low = "start" if self.start is None else self.start
        high = "end" if self.end is None else self.end
        return f"shard {self.index} ({self.kind} {low}..{high})"


class Reject(msgspec.Struct, kw_only=True):
    """A record that was not written, and why. Goes to the rejects file and the receipt's counts."""

    reason: str
    detail: str
    id: str | None = None
    namespace: str | None = None
    location: str | None = None
    record: Any = None
    """The record as a JSON-ready object (or the raw input line), so nothing is lost."""


class Page(NamedTuple):
    items: list[MemoryRecord | Reject]
    cursor: str | None
    """Opaque position after this page; ``read(after=cursor)`` continues from here."""


class TablePage(NamedTuple):
    """A page of vexchange's own Parquet layout (connectors/parquet.py) as its Arrow ``table``,
    with what the engine needs of its records without making them: their ``digests``
    (``record_digest``), ``ids`` and ``namespaces``, in row order; ``vectors`` names each
    vector's column (vector name -> column name). Every row is a record with every vector
    and no sparse one. A writer of that layout takes the table as it is
    (``Writer.takes_table``); else the engine has the source make the records
    (``Connector.table_records``). Only ``Connector.read_tables`` gives these."""

    table: Any
    vectors: dict[str, str]
    digests: list[bytes]
    ids: list[str]
    namespaces: list[str | None]
    cursor: str | None


class QueryHit(NamedTuple):
    """One hit of ``Connector.query``: the record's vexchange id (the original, not a store id
    made from it), the store's own score, and the record's namespace."""

    id: str
    score: float
    namespace: str | None = None


class Writer(ABC):
    """A write session into one store. Writes are upserts by id, so a batch may be retried."""

    def target_dims(self) -> dict[str, int]:
        """Vector sizes the target already fixes, by vector name ({} when it fixes none)."""
        return {}

    @abstractmethod
    def write(self, batch: list[MemoryRecord]) -> list[Reject]:
        """Write a batch; return the records the store refused, each with its reason."""

    def vector_spaces(self) -> dict[str, VectorSpace]:
        """Dims and metric per vector name as the target holds them now (for the receipt)."""
        return {}

    def checkpoint(self) -> dict[str, Any]:
        """State to keep after an acknowledged batch, handed back as ``resume`` to continue."""
        return {}

    def make_durable(self) -> None:
        """Put on the disk what the last ``checkpoint`` describes, so that it survives the
        process being killed. The engine calls it before it saves a checkpoint, which it does
        about once a second, not after every batch. A writer whose ``checkpoint`` already
        leaves its output on the disk needs nothing here (the default)."""
        return None

    @abstractmethod
    def finish(self, summary: dict[str, Any]) -> None:
        """Make the output complete and visible (commit, rename, write the sidecar)."""

    @abstractmethod
    def abort(self) -> None:
        """Stop after a failure; keep what was acknowledged so the run can resume."""

    def delete(self, keys: list[tuple[str | None, str]]) -> None:
        """Delete the records ``(namespace, id)`` from the target, in one transaction where
        the store has them; an id the target holds in another namespace, or does not hold,
        is left alone (never an error: a deletion repeated after a crash finds nothing).
        An incremental run propagates the source's deletions through this
        (docs/engine.md, "Incremental runs"). By default a store cannot delete."""
        raise NotImplementedError("this target cannot delete records")

    def write_with_texts(self, batch: list[MemoryRecord], texts: VectorTexts) -> list[Reject]:
        """``write``, told the JSON text some of the batch's vectors were read from (by their
        bytes, ``_vector_text.py``), which a writer of JSON may write again as it was instead
        of formatting the floats. Only JSON writers override this; the engine calls it only on
        those (:func:`writes_vector_texts`), and has a reading child send the texts along."""
        return self.write(batch)

    def takes_table(self, table: Any) -> bool:
        """Whether ``write_table`` takes this Arrow table (a ``TablePage``'s) as it is, with
        no record of it refused. Asked before the write and without side effects; the engine
        encodes the records as usual when it is False (the default)."""
        return False

    def write_table(self, table: Any) -> None:
        """Write the rows of a table that ``takes_table`` accepted: the same as ``write`` of
        the records they were made from, upserts by id, so it may be retried too."""
        raise NotImplementedError("this target takes records, not tables")

    def can_delete(self) -> bool:
        """Whether ``delete`` is implemented (an incremental run asks before it deletes)."""
        return type(self).delete is not Writer.delete


def writes_vector_texts(writer: Writer) -> bool:
    """Whether ``writer`` writes vectors' source text again (``Writer.write_with_texts``)."""
    # getattr: a wrapper that is not a Writer (a test's, a plugin's) writes records only
    return getattr(type(writer), "write_with_texts", Writer.write_with_texts) is not Writer.write_with_texts


class Connector(ABC):
    """A store at one location that can be read, written, or both."""

    name: ClassVar[str]
    extra: ClassVar[str | None] = None
    capabilities: ClassVar[Capabilities]
    url_options: ClassVar[frozenset[str] | None] = None
    """The URL query options (``?table=...``) this connector reads. Any other is a usage error
    that names these, so a typo (``?tabel=``) never writes into a default table. None: the
    connector does not declare them and nothing is checked (a plugin written before this)."""
    suffixes: ClassVar[tuple[str, ...]] = ()
    """File suffixes (lower case, with the dot: ``(".mg",)``) that make a bare path this
    connector's: ``vex migrate memory.mg ...`` means ``mg:memory.mg``. The longest suffix that
    matches wins; a builtin's suffix beats a plugin's, and a plugin is imported to ask only when
    no builtin's matches. () for a store that is not one file (the default)."""
    writer_takes: ClassVar[frozenset[str]] = frozenset()
    """What this connector's writer takes besides records: ``"tables"`` (``Writer.takes_table``),
    ``"vector_text"`` (``Writer.write_with_texts``). Declared so that a run can give its reading
    child the job before the writer opens (a store's client may take a second to import: the
    child reads meanwhile); the run checks the writer once it is open and, where it takes
    other than declared, stops that read and starts the right one."""
    takes_path: ClassVar[bool] = False
    """The location is a file or directory path (``name:///abs/path`` or ``name:relative/path``),
    never a host: ``name://somewhere/x`` is refused rather than read as the host ``somewhere``."""
    url_userinfo: ClassVar[Literal["user", "token"] | None] = None
    """What a URL's ``user:password@`` means: "user" (the store has users: the URL's user is the
    spec's ``user``, its password the ``password`` secret), "token" (the store's token is
    ``user:password``, Milvus), or None (refused, naming ``url_secret`` to pass instead)."""
    url_secret: ClassVar[str | None] = None
    """The secret a store without users takes (``api_key``, ``token``): named in the refusal of
    a URL's userinfo, so the user knows how to pass it instead."""

    child_rebuilds: ClassVar[bool] = False
    """A connector the engine itself makes (the parts of a parallel run) that a reading child
    rebuilds exactly by unpickling it, though no URL scheme names it; a registered connector
    needs nothing here (engine/read_process.py, ``reading_mode``)."""

    read_checks: ClassVar[tuple[str, ...]] = ()
    """What ``read`` checks as it goes, by name ("sidecar checksum", "footer", ...); () for
    a store whose format records nothing to check against. The engine calls
    ``verify_source`` (``--verify-first``) only when this names something."""
    verify_reads: bool = True
    """Whether ``read`` makes the ``read_checks``. Set by the engine (False with
    ``--no-verify``) before it reads; an attribute, so it travels with the connector to a child
    process that reads (engine/read_process.py). A check must fail before the page whose
    cursor is None is yielded, so a run never finishes on a source that did not pass."""

    def __init__(self, spec: StoreSpec) -> None:
        self.spec = spec

    @classmethod
    def from_spec(cls, spec: StoreSpec) -> Connector:
        """Validate and bind a parsed spec. No I/O happens here."""
        return cls(spec)

    def describe(self) -> dict[str, Any]:
        """Where and what this store is, for receipts and sidecars; never holds a secret."""
        return {"connector": self.name, "location": self.spec.redacted()}

    def same_location(self, other: Connector) -> bool:
        """True when both connectors point at the same store (refused as source and target)."""
        return self.describe() == other.describe()

    def count(self) -> int | None:
        """Records in the store, when cheap to know (drives the progress bar)."""
        return None

    def vector_spaces(self) -> dict[str, VectorSpace]:
        """Size and metric of each named vector, as the store declares them ({} when unknown)."""
        return {}

    def read(self, *, batch_size: int, after: str | None = None) -> Iterator[Page]:
        raise NotImplementedError(f"{self.name} cannot be read")

    def read_tables(self, *, batch_size: int, after: str | None = None) -> Iterator[Page | TablePage]:
        """The pages of ``read``, with each page that can be one as a ``TablePage`` instead
        (the same rows, cursor and digests): for a target that takes tables, no records are
        made. Only a connector that overrides it is asked (the reading child, when the
        engine's writer takes tables)."""
        raise NotImplementedError(f"{self.name} reads no tables")

    def table_records(self, table: Any) -> list[MemoryRecord | Reject]:
        """The items ``read`` makes of a ``TablePage``'s table, for a target that does not
        take the table."""
        raise NotImplementedError(f"{self.name} reads no tables")

    def shard_plan(self, max_shards: int) -> list[Shard]:
        """How a parallel run may split this source: at most ``max_shards`` shards, in source
        order, that together hold every record once. The same source state gives the same
        plan (the engine writes it into the run's checkpoint and never asks again on
        resume). By default one shard, the whole source: a source that cannot be split."""
        return [Shard(index=0)]

    def read_shard(self, shard: Shard, *, batch_size: int, after: str | None = None) -> Iterator[Page]:
        """Pages of one shard of ``shard_plan``, like ``read`` (the cursor resumes within the
        shard; None after its last page). The whole-source shard is ``read``. A shard read
        makes the ``read_checks`` that hold per record; a check over the whole source (a
        file's checksum) is ``shard_checks``'s, made once before the shards are read."""
        if shard.kind != "whole":
            raise NotImplementedError(f"{self.name} has no {shard.kind} shards")
        return self.read(batch_size=batch_size, after=after)

    # -------------------------------------------------------------------- search

    def query(self, vector: Any, k: int, *, namespace: str | None = None,
              vector_name: str = "") -> list[QueryHit]:
        """The ``k`` nearest records to ``vector`` (a float32 numpy array) by the store's own
        query API and index (approximate where the store's is), best first, for ``verify
        --search`` (docs/search-check.md). ``namespace``: only records of that namespace; None
        searches the whole store (the check filters the hits it gets). ``score`` is the store's
        own (a similarity or a distance): only the order is compared. By default a store has no
        query API."""
        raise NotImplementedError(f"{self.name} has no query API")

    def query_metric(self, vector_name: str = "") -> str | None:
        """The metric ``query`` ranks by when the store fixes it whatever it declares (``vex
        search`` on a cartridge: cosine); None (the default): the declared metric."""
        return None

    def can_query(self) -> bool:
        """Whether ``query`` is implemented."""
        return type(self).query is not Connector.query

    # -------------------------------------------------------------- incremental runs

    def change_mark(self) -> str | None:
        """For an incremental run: an opaque high-water mark of the source's ``updated_at``
        now (the newest change it holds, never later than its clock), kept in the receipt and
        handed back to ``read_changed`` by the next run; None when the source keeps no
        ``updated_at`` it can select by (the default: the run then compares every record's
        digest with the state it keeps)."""
        return None

    def read_changed(self, mark: str, *, batch_size: int, after: str | None = None) -> Iterator[Page]:
        """Pages, like ``read``, of at least every record changed since ``mark`` (a value
        ``change_mark`` gave): those whose ``updated_at`` is at or after it, less a margin
        the connector chooses for writers whose changes become visible late, and every
        record without an ``updated_at``. It may give more (the engine drops what its digest
        says is unchanged), never less. Only called when ``change_mark`` is not None."""
        raise NotImplementedError(f"{self.name} cannot select records by updated_at")

    def list_ids(self, *, batch_size: int) -> Iterator[list[tuple[str | None, str]]]:
        """Every ``(namespace, id)`` the source holds now, readable or not, in pages: what
        an incremental run that read only the changed records compares with its state to
        find deletions. By default a source cannot list them (deletions are then not
        propagated, and the receipt says so)."""
        raise NotImplementedError(f"{self.name} cannot list its ids")

    def can_list_ids(self) -> bool:
        return type(self).list_ids is not Connector.list_ids

    def keeps_records(self) -> bool:
        """Whether a new writer into this store adds to what it holds (upserts), so that an
        incremental run can write only what changed. A file written whole by every run (a
        ``.vmig.jsonl``, a cartridge, a ``.mg``) cannot: by default True for a server
        (``takes_path`` False) and False for a path, which a connector that upserts into an
        existing file or directory (VEKTOR) overrides."""
        return not self.takes_path

    def shard_checks(self) -> dict[str, Any]:
        """The checks a shard read cannot make alone (a checksum over the whole file), made
        by the coordinator of a parallel run before the workers read, when ``verify_reads``;
        raises IntegrityError on a mismatch. By default ``verify_source`` (every check over a
        whole read); a format whose shard reads check each record overrides it."""
        return self.verify_source() if self.read_checks else {}

    def takes_concurrent_writers(self) -> bool:
        """Whether the workers of a parallel run may each open a writer into this store."""
        flag = self.capabilities.concurrent_writers
        return (not self.takes_path) if flag is None else flag

    @contextmanager
    def parallel_writes(self) -> Iterator[None]:
        """Held by the coordinator of a parallel run for as long as its workers write into
        this store (``takes_concurrent_writers``), the ids repeated across shards written
        again included. A store whose writers finish something together holds that back
        here until every shard is written: pgvector builds a table's indexes with the writer
        that finishes last, and a worker that finished before a peer had even opened its
        writer took itself for the last one. Exits by an exception when the run failed.
        By default nothing."""
        yield

    def verify_source(self) -> dict[str, Any]:
        """Make every ``read_checks`` check over the whole source, before any record is
        released (``--verify-first``; the engine also calls it when a run stops reading early,
        at ``--limit``, so what it wrote was checked too). Returns what was checked; raises
        ``IntegrityError`` when something does not match. By default: a whole read, whose
        checks fail at its end; a format with a cheaper whole check (a file's hash) overrides it."""
        if not self.read_checks:
            return {}
        for _ in self.read(batch_size=1000):
            pass
        return {check: "ok" for check in self.read_checks}

    def open_writer(self, *, resume: dict[str, Any] | None = None, dry_run: bool = False,
                    spaces: dict[str, VectorSpace] | None = None) -> Writer:
        """A write session. ``spaces`` is what the source declares (dims, metric per vector);
        a connector that creates collections or indexes uses it, and ignores it otherwise."""
        raise NotImplementedError(f"{self.name} cannot be written")

    def accept_bulk(self, bulk: bool) -> None:
        """Called by the engine before a run into this store plans anything, with the run's
        ``bulk`` option (``--bulk``: load through the store's server-side bulk import). A
        connector with one (``pinecone``) switches its writer to it; by default ``--bulk`` is
        refused (a UsageError naming the option) rather than ignored."""
        if bulk:
            raise UsageError(f"--bulk loads a store through its server-side bulk import; the target is a"
                             f" {self.name} store, which vexchange imports into with upserts only",
                             hint="leave --bulk out (the records are upserted, and checked the same way)")

    def accept_compat(self, compat: str | None) -> None:
        """Called by the engine before a run into this store plans anything, with the run's
        ``compat`` option (``--compat vex``: write what the published Vex's loaders take). Only
        a format Vex reads can honour it, so by default any mode is refused (a UsageError that
        names the option) rather than ignored; the vmig connector overrides this."""
        if compat is not None:
            raise UsageError(
                f"--compat {compat} (compat={compat!r}) shapes .vmig.jsonl files for the published"
                f" Vex; the target is a {self.name} store, which it cannot apply to",
                hint="write a .vmig.jsonl file with --compat vex, or leave the option out")

    def run_files_base(self) -> Path | None:
        """Where a run into this store keeps its receipt, rejects and checkpoint: beside the
        returned path (``<path>.receipt.json``, ``<path>.rejects.jsonl``), or None for the
        working directory, under a name made from the whole target (``describe()`` and the
        namespaces selected), so runs into two collections of one store never share them.

        A file or directory connector returns its path (the ``AtPath`` mixin does)."""
        return None

    def sidecar_state(self, records: int) -> Any:
        """For ``inspect``: the state of a sidecar file that describes this store (a
        ``results.SidecarState``), given the records and unreadable entries counted; None for
        a store that has none (the default)."""
        return None

    def file_check(self) -> Any:
        """For ``verify`` with nothing to compare against: the store's own check of itself (a
        ``results.ChecksumCheck`` for a file with a checksum in its sidecar), or None (the
        default: such a store needs ``--receipt`` or ``--against``)."""
        return None

    def after_run_as_source(self, *, target: str, written: int) -> None:
        """Called when a run that read this store has finished (not a dry run), with where the
        records went (the target's redacted location) and how many were written: a format
        that keeps a history beside its file (vmig's sidecar ``imports``) records it here.
        By default nothing happens."""
        return None

    def can_read(self) -> bool:
        """Declared readable and has the code to read (the engine plans from this)."""
        return self.capabilities.read and type(self).read is not Connector.read

    def can_write(self) -> bool:
        """Declared writable and has the code to write."""
        return self.capabilities.write and type(self).open_writer is not Connector.open_writer

    def close(self) -> None:  # noqa: B027 - optional: a store with nothing to release keeps it
        """Release connections and file handles."""

    def __enter__(self) -> Connector:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AtPath:
    """For a connector whose location is one file or directory (``self.path``): a run's
    receipt, rejects and checkpoint go beside it. Put it before ``Connector`` in the bases."""

    path: Path

    def run_files_base(self) -> Path | None:
        return self.path
