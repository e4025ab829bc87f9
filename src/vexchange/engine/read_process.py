"""Reading a large file source in a second process, one page ahead of the engine.

Why a process and not only the reading thread (read_ahead.py): decoding a page is Python work
under the interpreter lock, and several targets' clients hold that lock while they write
(Qdrant Edge's engine, pymilvus building its gRPC request), so a thread cannot overlap them. A
child process has its own interpreter: it decodes page k+1 while this process writes page k.

How: the child is a fresh ``python -m vexchange.engine.read_process`` (not multiprocessing,
whose "spawn" re-imports the caller's main script). It gets the job on stdin (the connector,
pickled with what it has already checked, such as a pack's hash; the batch size; the cursor)
and writes one frame per page to stdout: one byte of kind (``R`` page of records, ``P`` any
page, ``E`` error, ``D`` done), eight bytes of length, the body. A page of records only
travels as msgpack (msgspec, typed as ``list[MemoryRecord]``: 2 µs a record each way against
8 and 9 for a pickle); the child decodes it once itself and sends it so only when it comes
back equal to what the connector made (a tuple, a NaN, an integer beyond 64 bits, a type
msgpack does not keep: the page goes as a pickle), with the records' digests, which the child
takes (``DigestedPage``: the engine's costliest per-record step, on the child's core). The
child reads ahead of the engine by at most ``_AHEAD_BYTES`` of frames (``_Outbox``), whatever
the record count: memory stays flat. A run hands the child its job before it opens the target's
writer (``StartedRead``), so the child reads while a store's client imports. Pages arrive in
order with their cursors, so checkpoints, resume and counts are exactly as without it; an
error is re-raised here with its type (a ``TransientError`` is still retried). The child
ignores Ctrl-C: the engine stops it, by closing the pipe and killing it, whenever the run ends
early. It only reads files.

When (:func:`reading_mode`, the one place the engine decides how it reads): the process may
use two or more CPUs, the source declares ``read_in_process``, is exactly the class its spec
names in the registry (a wrapper made in this process would not behave the same in the child),
and holds at least :data:`MIN_RECORDS` records by its count; starting the child costs about
0.3 s. Otherwise a source that declares ``read_ahead`` is read on a thread (read_ahead.py).
``VEX_READ_AHEAD=process`` forces the child at any size, ``thread`` the thread, ``off`` neither.
"""

from __future__ import annotations

import collections
import gc
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Generator
from typing import IO, Any, Literal

from ..connectors import _registry
from ..connectors._base import Connector, Page, TablePage
from .._canonical import record_digest
from ..errors import ConnectorError, VexError
from .._vector_text import VectorTexts, vector_texts_of
from ..record import MemoryRecord, SparseVector, Vector
from .checkpoint import SeenIds
from . import reader_start
from .reader_start import read_ahead_mode, usable_cpus

__all__ = ["MIN_RECORDS", "ColumnarPage", "DigestedPage", "StartedRead", "digests_of", "id_keys_of",
           "read_ahead_mode", "read_in_process", "read_tables_here", "reading_mode", "takes_tables"]

MIN_RECORDS = 50_000
"""Below this the child's start-up (about 0.3 s) costs more than the overlap gains."""

_HEADER = 9
_RECORDS, _TABLE, _PAGE, _ERROR, _DONE = b"R", b"T", b"P", b"E", b"D"
_COLLECT_EVERY = 100_000
"""The child's first-generation collection threshold (Python's is 700): a page makes tens of
thousands of containers that all live until it is sent, and collecting them every 700
allocations cost a third of the child's time; cycles are still collected."""
def reading_mode(source: Connector, count: int | None) -> Literal["process", "thread", "main"]:
    """How the engine reads ``source`` (which says it holds ``count`` records): in a child
    process, on a second thread, or on the main thread."""
    mode = read_ahead_mode()
    if mode == "off" or usable_cpus() < 2:
        return "main"
    if mode in ("auto", "process") and _can_run_in_child(source) and (
            mode == "process" or (count is not None and count >= MIN_RECORDS)):
        return "process"
    return "thread" if source.capabilities.read_ahead else "main"


def takes_tables(source: Connector) -> bool:
    """Whether ``source`` reads pages as tables (``Connector.read_tables``)."""
    return type(source).read_tables is not Connector.read_tables


def _can_run_in_child(source: Connector) -> bool:
    if not source.capabilities.read_in_process:
        return False
    if not (sys.executable and os.path.exists(sys.executable)):  # an embedded interpreter
        return False
    if type(source).child_rebuilds:
        return True
    try:
        return _registry.get(source.spec.scheme) is type(source)
    except VexError:  # not a registered name: read in this process
        return False


class StartedRead:
    """A reading child that has its job (``start_read``) and reads ahead of the engine, up to
    ``_AHEAD_BYTES``, until ``read_in_process`` takes its pages or ``close`` stops it. A run
    starts one before it opens the target's writer, whose client may take a second to import."""

    def __init__(self, source: Connector, *, batch_size: int, after: str | None, tables: bool,
                 vector_text: bool) -> None:
        self.closed = False
        self.job = (batch_size, after, tables, vector_text)
        """What the child reads: batch size, cursor, tables, vector texts (``read_in_process``'s)."""
        job = pickle.dumps({"source": source, "batch_size": batch_size, "after": after,
                            "parent": os.getpid(), "tables": tables, "vector_text": vector_text})
        early = reader_start.take()  # one the CLI started before its imports, else one started now
        self.stderr: IO[bytes] = early.stderr if early is not None else tempfile.TemporaryFile()  # noqa: SIM115 - closed by close
        try:
            self.child = early.process if early is not None else subprocess.Popen(
                reader_start.child_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=self.stderr, env=reader_start.child_env())
        except BaseException:
            self.stderr.close()
            raise
        assert self.child.stdin is not None and self.child.stdout is not None
        try:
            self.child.stdin.write(job)
            self.child.stdin.close()
        except BaseException:
            self.close()
            raise

    def close(self, finished: bool = False) -> None:
        """Stop the child (let it exit when it sent everything) and close its streams; again
        does nothing."""
        if self.closed:
            return
        self.closed = True
        assert self.child.stdout is not None
        self.child.stdout.close()
        try:
            _stop(self.child, finished)
        finally:
            self.stderr.close()


def read_in_process(source: Connector, *, batch_size: int, after: str | None = None,
                    tables: bool = False, vector_text: bool = False,
                    started: StartedRead | None = None) -> Generator[Page, None, None]:
    """``source.read(batch_size=..., after=...)``, decoded in a child process. ``tables``: the
    child reads ``source.read_tables`` where the source has it, and a ``TablePage`` arrives as
    a ``ColumnarPage``, whose records the caller makes only when it needs them
    (``ColumnarPage.with_records``). ``vector_text``: a page arrives with the JSON text its
    vectors were read from, where the source kept it (``vector_texts``, _vector_text.py).
    ``started``: the child already reading this very read (``StartedRead``), taken over here."""
    read = started or StartedRead(source, batch_size=batch_size, after=after, tables=tables,
                                  vector_text=vector_text)
    stdout = read.child.stdout
    assert stdout is not None
    finished = False
    try:
        while True:
            kind, body = _read_frame(stdout)
            if kind in (_RECORDS, _TABLE, _PAGE):
                page = _decode_page(kind, body)
                # nothing follows the last page (no cursor) but the end frame, and the engine
                # asks no more: the child is let exit, not killed
                finished = page.cursor is None
                yield page
            elif kind == _DONE:
                finished = True
                return
            elif kind == _ERROR:
                raise pickle.loads(body)
            else:
                read.stderr.seek(0)
                raise ConnectorError(
                    f"the process reading {source.describe().get('location', 'the source')}"
                    f" stopped unexpectedly: {_tail(read.stderr.read())}",
                    hint="set VEX_READ_AHEAD=thread to read in this process instead")
    finally:
        read.close(finished)


def _stop(child: subprocess.Popen[bytes], finished: bool) -> None:
    """A child that sent everything is let exit; one stopped early is killed (it only reads)."""
    if finished:
        try:
            child.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            pass
    if child.poll() is None:
        child.kill()
    child.wait()


def _read_frame(stream: IO[bytes]) -> tuple[bytes, bytes]:
    """The next frame; ``(b"", b"")`` when the child stopped without finishing one."""
    head = stream.read(_HEADER)
    if len(head) < _HEADER:
        return b"", b""
    size = int.from_bytes(head[1:], "big")
    body = stream.read(size)
    return (head[:1], body) if len(body) == size else (b"", b"")


def _tail(stderr: bytes) -> str:
    lines = stderr.decode("utf-8", "replace").strip().splitlines()
    return lines[-1] if lines else "no message"


def _pickled_error(err: BaseException) -> bytes:
    try:
        return pickle.dumps(err)
    except Exception:  # an exception that cannot travel is described instead
        return pickle.dumps(ConnectorError(f"{type(err).__name__}: {err}"))


class DigestedPage(Page):
    """A page whose records' digests (``record_digest``, in item order) and duplicate-id keys
    (``SeenIds.key``) the child took: the digest is the run's costliest check of a record, and
    the child has a core of its own. The engine uses them for exactly these records
    (``digests_of``, ``id_keys_of``); any other page's it takes itself. ``vector_texts``, when
    set: the JSON text of its vectors that the source kept (_vector_text.py)."""

    digests: list[bytes] | None  # None: the child left them to the engine (``_Pace``)
    keys: list[bytes]
    vector_texts: VectorTexts


def digests_of(page: Page) -> list[bytes] | None:
    """The digests of ``page``'s records, in item order: the reading child's, or taken here
    for a page of the child's whose digests it left to this process (``_Pace``); None for
    any other page."""
    if not isinstance(page, DigestedPage):
        return None
    if page.digests is None:
        page.digests = [record_digest(record) for record in page.items]  # type: ignore[arg-type]
    return page.digests


def id_keys_of(page: Page) -> list[bytes] | None:
    """The duplicate-id keys (``SeenIds.key``) the reading child took of ``page``'s records, or None."""
    return page.keys if isinstance(page, DigestedPage) else None


class ColumnarPage(DigestedPage):
    """A ``TablePage`` as it arrives from the reading child: its Arrow table, with the digests,
    duplicate-id keys and namespaces of the records the source makes of it; ``items`` is
    empty. The engine gives the table to a writer that takes it as it is
    (``Writer.takes_table``); any other use takes ``with_records`` first."""

    digests: list[bytes]  # a table's always come with it
    table: Any
    vectors: dict[str, str]
    namespaces: list[str | None]

    def with_records(self, source: Connector) -> DigestedPage:
        """The page with its records, made by ``source`` from the table as the child made them."""
        items = source.table_records(self.table)
        if len(items) != len(self.digests):
            raise ConnectorError(f"{source.name} made {len(items)} records of a page the reading"
                                 f" process made {len(self.digests)} of")
        page = DigestedPage(items, self.cursor)
        page.digests, page.keys = self.digests, self.keys
        return page


class _Codec:
    """msgpack of a page of records, typed both ways (made on first use: msgspec's typed
    decoder for ``MemoryRecord`` is built once per process)."""

    _made: _Codec | None = None

    def __init__(self) -> None:
        import msgspec

        self.encoder = msgspec.msgpack.Encoder()
        self.decoder = msgspec.msgpack.Decoder(
            tuple[list[MemoryRecord], str | None, list[bytes] | None, list[bytes], _RecordTexts | None])
        self.table_head = msgspec.msgpack.Decoder(
            tuple[str | None, list[bytes], list[bytes], list[str | None], dict[str, str]])
        self.errors: tuple[type[BaseException], ...] = (msgspec.MsgspecError, TypeError, ValueError,
                                                        OverflowError)

    @classmethod
    def get(cls) -> _Codec:
        if cls._made is None:
            cls._made = cls()
        return cls._made


def _encode_table_page(page: TablePage) -> tuple[bytes, list[Any]]:
    """A ``T`` frame: the length of a msgpack head (cursor, the records' digests, duplicate-id
    keys and namespaces, the vector columns), the head, then the table as an Arrow IPC stream
    (its buffers as they are: no per-record work but the keys)."""
    import pyarrow as pa

    head = _Codec.get().encoder.encode((page.cursor, page.digests, _id_keys(page), page.namespaces,
                                        page.vectors))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, page.table.schema) as out:
        out.write_table(page.table)
    return _TABLE, [len(head).to_bytes(4, "big"), head, sink.getvalue()]


def _decode_table(body: bytes) -> ColumnarPage:
    import pyarrow as pa

    size = int.from_bytes(body[:4], "big")
    cursor, digests, keys, namespaces, vectors = _Codec.get().table_head.decode(body[4:4 + size])
    table = pa.ipc.open_stream(pa.py_buffer(body).slice(4 + size)).read_all()
    return _columnar(table, vectors, digests, keys, namespaces, cursor)


def _id_keys(page: TablePage) -> list[bytes]:
    key = SeenIds.key
    return [key(ns, rid) for ns, rid in zip(page.namespaces, page.ids, strict=True)]


def _columnar(table: Any, vectors: dict[str, str], digests: list[bytes], keys: list[bytes],
              namespaces: list[str | None], cursor: str | None) -> ColumnarPage:
    page = ColumnarPage([], cursor)
    page.table, page.vectors, page.namespaces = table, vectors, namespaces
    page.digests, page.keys = digests, keys
    return page


def read_tables_here(source: Connector, *, batch_size: int,
                     after: str | None = None) -> Generator[Page, None, None]:
    """``source.read_tables`` in this process, each ``TablePage`` as the ``ColumnarPage`` the
    reading child would send (for a run read on a thread or the main thread)."""
    for page in source.read_tables(batch_size=batch_size, after=after):
        if isinstance(page, TablePage):
            yield _columnar(page.table, page.vectors, page.digests, _id_keys(page), page.namespaces,
                            page.cursor)
        else:
            yield page


_RecordTexts = list[tuple[str, bytes] | None]
"""Per record of a page: the name of the vector the source kept the text of, and the text."""


def _texts_by_record(items: list[MemoryRecord], texts: VectorTexts | None) -> _RecordTexts | None:
    """For each record, the name of its vector that ``texts`` has the source text of, and that
    text (None for a record with none); None for a page with none."""
    if texts is None:
        return None
    out: list[tuple[str, bytes] | None] = []
    for record in items:
        found = None
        for name, vec in record.vectors.items():
            text = texts.get(vec.data)
            if text is not None:
                found = (name, text)
                break
        out.append(found)
    return out


def _texts_of_records(records: list[MemoryRecord], texts: _RecordTexts) -> VectorTexts:
    """:func:`_texts_by_record` undone on the decoded records: their vectors' bytes -> text."""
    out = VectorTexts()
    for record, entry in zip(records, texts, strict=True):
        if entry is not None:
            out.add(record.vectors[entry[0]].data, entry[1])
    return out


def _encode_page(page: Page, vector_text: bool = False, digests_here: bool = True) -> tuple[bytes, bytes]:
    """The frame kind and body of a page: msgpack when it holds only records that come back
    from it equal (surely by their types, :func:`_plain`, else by decoding it here and
    comparing), else a pickle. ``vector_text``: with the JSON text of the vectors the
    source kept it of (``vector_texts``), for a msgpack page. ``digests_here``: with the
    records' digests (else the engine takes them, ``digests_of``)."""
    items = page.items
    if items and all(type(item) is MemoryRecord for item in items):
        codec = _Codec.get()
        try:
            digests = ([record_digest(record) for record in items]  # type: ignore[arg-type]
                       if digests_here else None)
            key = SeenIds.key
            keys = [key(record.namespace, record.id) for record in items]  # type: ignore[arg-type]
            texts = _texts_by_record(items, vector_texts_of(page)) if vector_text else None  # type: ignore[arg-type]
            body = codec.encoder.encode((items, page.cursor, digests, keys, texts))
            if all(map(_plain, items)) or codec.decoder.decode(body)[0] == items:  # type: ignore[arg-type]
                return _RECORDS, body
        except codec.errors:
            pass
    return _PAGE, pickle.dumps((items, page.cursor), protocol=5)


_STR_OR_NONE = frozenset({str, type(None)})
_INT_OR_NONE = frozenset({int, type(None)})
_JSON_SCALARS = frozenset({str, float, bool, type(None)})
_INT_RANGE = (-(1 << 63), 1 << 64)  # what msgpack holds: int64 and uint64
_DEPTH = 64


def _plain(record: MemoryRecord) -> bool:
    """Whether msgpack gives ``record`` back exactly, by the types of what it holds: every
    field of the type it is declared with (the typed decoder would convert or refuse anything
    else), metadata and ``extra`` of JSON types with integers that msgpack holds. A record
    that fails this is not refused: its page is decoded and compared (``_encode_page``).
    Costs about 1.8 µs a record against 3 or more for decoding and comparing."""
    return (type(record.id) is str and type(record.text) in _STR_OR_NONE
            and type(record.namespace) in _STR_OR_NONE and type(record.created_at) in _INT_OR_NONE
            and type(record.updated_at) in _INT_OR_NONE and type(record.source_store) in _STR_OR_NONE
            and type(record.modality) in _STR_OR_NONE and type(record.score) in (float, type(None))
            and record.id_type in ("str", "int") and type(record.vectors) is dict
            and all(type(name) is str and type(vec) is Vector and type(vec.data) is bytes
                    and type(vec.model) in _STR_OR_NONE for name, vec in record.vectors.items())
            and (record.metadata is None or _plain_value(record.metadata, 0))
            and type(record.extra) is dict and (not record.extra or _plain_value(record.extra, 0))
            and type(record.sparse) is dict and all(
                type(name) is str and type(sp) is SparseVector and type(sp.indices) is bytes
                and type(sp.values) is bytes and type(sp.model) in _STR_OR_NONE
                for name, sp in record.sparse.items()))


def _plain_value(value: Any, depth: int) -> bool:
    """A JSON value of exactly JSON's Python types, that msgpack encodes and gives back as it is."""
    kind = type(value)
    if kind in _JSON_SCALARS:
        return True
    if kind is int:
        return bool(_INT_RANGE[0] <= value < _INT_RANGE[1])
    if depth >= _DEPTH:
        return False
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                return False
            kind = type(item)
            if kind in _JSON_SCALARS or (kind is int and _INT_RANGE[0] <= item < _INT_RANGE[1]):
                continue
            if not _plain_value(item, depth + 1):
                return False
        return True
    if kind is list:
        return all(_plain_value(item, depth + 1) for item in value)
    return False


def _decode_page(kind: bytes, body: bytes) -> Page:
    if kind == _TABLE:
        return _decode_table(body)
    if kind == _RECORDS:
        records, cursor, digests, keys, texts = _Codec.get().decoder.decode(body)
        page = DigestedPage(list(records), cursor)  # typed as the page items are
        page.digests, page.keys = digests, keys
        if texts is not None:
            page.vector_texts = _texts_of_records(records, texts)
        return page
    items, cursor = pickle.loads(body)
    return Page(items, cursor)


def _child_main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when reading stops
    gc.set_threshold(_COLLECT_EVERY, *gc.get_threshold()[1:])
    job: dict[str, Any] = pickle.load(sys.stdin.buffer)
    from .parallel import die_with

    die_with(job["parent"])  # a reader left behind by a killed run would hold its source open
    outbox = _Outbox(sys.stdout.buffer, _AHEAD_BYTES)
    try:
        try:
            source: Connector = job["source"]
            try:
                as_tables = bool(job.get("tables")) and takes_tables(source)
                pace = _Pace()
                frames = _frames(source.read_tables if as_tables else source.read,
                                 batch_size=job["batch_size"], after=job["after"],
                                 vector_text=bool(job.get("vector_text")), pace=pace)
                for kind, body in frames:
                    pace.digests_here = outbox.put(kind, body)
            finally:
                source.close()
            outbox.put(_DONE, b"")
        except BrokenPipeError:
            raise
        except BaseException as err:  # every failure goes to the parent
            outbox.put(_ERROR, _pickled_error(err))
        outbox.close()
    except BrokenPipeError:  # the parent stopped reading: nothing is left to do
        os._exit(0)


_AHEAD_BYTES = 32 << 20
"""How far ahead of the engine the child may read, in frame bytes (about 18,000 records of 384
dimensions, what the child decodes in about a second): the engine opens the target's writer
after it has sent the job (a store's client may take a second to import, LanceDB's does), and
the child fills this meanwhile. A child that reads faster than the engine writes holds this
much at most, whatever the record count."""


class _Outbox:
    """The child's frames, written to the engine by a thread, up to ``budget`` bytes of them
    held here: the child reads on while the engine is busy elsewhere (opening the writer, a
    slow write), and a frame the engine has not taken yet tells ``_Pace`` that it is the
    slower of the two. The pipe's write lets the interpreter lock go, so the thread costs the
    reading nothing. Frames go out in order; a broken pipe (the engine stopped reading) ends
    the process, as it did when the main thread wrote."""

    def __init__(self, out: IO[bytes], budget: int) -> None:
        self._out, self._budget = out, budget
        self._frames: collections.deque[tuple[bytes, bytes | list[Any], int] | None] = collections.deque()
        self._held = 0  # bytes put and not yet written to the pipe in full
        self._ready = threading.Condition()
        self._thread = threading.Thread(target=self._send, name="vex-child-out", daemon=True)
        self._thread.start()

    def put(self, kind: bytes, body: bytes | list[Any]) -> bool:
        """Queue a frame (waiting while ``budget`` is held); whether the engine had yet to take
        an earlier one, that is, whether it is behind this child."""
        size = sum(len(memoryview(part)) for part in ([body] if isinstance(body, bytes) else body))
        with self._ready:
            behind = self._held > 0
            while self._held and self._held + size > self._budget:
                self._ready.wait()
            self._frames.append((kind, body, size))
            self._held += size
            self._ready.notify_all()
        return behind

    def close(self) -> None:
        """Every frame written and flushed, then the thread gone."""
        with self._ready:
            self._frames.append(None)
            self._ready.notify_all()
        self._thread.join()

    def _send(self) -> None:
        out = self._out
        while True:
            with self._ready:
                while not self._frames:
                    self._ready.wait()
                frame = self._frames.popleft()
            if frame is None:
                out.flush()
                return
            kind, body, size = frame
            try:
                _write_frame(out, kind, body)
                if not self._frames:
                    out.flush()  # a small last page is not left in the buffer
            except BrokenPipeError:  # the parent stopped reading: nothing is left to do
                os._exit(0)
            with self._ready:
                self._held -= size
                self._ready.notify_all()


class _Pace:
    """Which process takes the digests of the next page of records (the costliest per-record
    step of a run, about 3.4 µs a record): this child, unless the engine had taken every
    frame before it when the last page was put out (``_Outbox.put``). A frame still held
    says the engine is the slower of the two (a store client that holds the interpreter
    lock while it writes, the writer still opening), and the child keeps the digests; none
    held says the engine waits for this child (a ``.vmig.jsonl`` into VEKTOR), and the
    engine takes them. The digests are the same either way."""

    digests_here = True


def _frames(read: Any, *, batch_size: int, after: str | None, vector_text: bool = False,
            pace: _Pace | None = None) -> Generator[tuple[bytes, Any], None, None]:
    for page in read(batch_size=batch_size, after=after):
        if isinstance(page, TablePage):
            yield _encode_table_page(page)
        else:
            yield _encode_page(page, vector_text, pace is None or pace.digests_here)


def _write_frame(out: IO[bytes], kind: bytes, body: bytes | list[Any]) -> None:
    """One frame; a body in parts (bytes-like) is written part by part, not joined."""
    parts = [body] if isinstance(body, bytes) else body
    out.write(kind + sum(len(memoryview(part)) for part in parts).to_bytes(_HEADER - 1, "big"))
    for part in parts:
        out.write(part)


if __name__ == "__main__":
    _child_main()
