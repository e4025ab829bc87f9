"""``vex migrate ... pinecone://INDEX?bulk_uri=s3://BUCKET/PREFIX --bulk``: Pinecone's own bulk
import instead of upserts. docs/connectors/pinecone.md, "Bulk import".

Why a writer of its own: the run writes the ``pinecone-bulk`` Parquet layout (the same
``PineconeBulkWriter``, so the records map exactly as an upsert maps them) to the object storage
``bulk_uri`` names; ``finish`` then makes the index (``?create=true``), refuses namespaces that
already hold records (Pinecone imports only into new ones), starts the import
(``Index.start_import``), polls ``describe_import`` to its end, and checks it: the records it
imported against the records written, per namespace too, and (``?bulk_verify=true``, the
default) the digests of the imported namespaces read back against the files' digests. Any
difference fails the run: nothing is claimed that the index does not hold.

The import's id is kept in ``<bulk_uri>.import.json`` (a sibling of the prefix, outside what
Pinecone reads) from the moment it starts, so a run interrupted while it polls resumes
(``--resume``) by polling the same import, never by starting a second one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from .._canonical import NamespaceDigest, namespace_key, record_digest
from ..errors import PermanentError, TransientError, UsageError
from ..record import MemoryRecord
from ..spec import StoreSpec
from ._base import Reject, VectorSpace, Writer

if TYPE_CHECKING:
    from .pinecone import PineconeConnector
    from .pinecone_bulk import PineconeBulkConnector, PineconeBulkWriter

__all__ = ["BULK_OPTIONS", "BulkSettings", "PineconeImportWriter"]

BULK_OPTIONS = frozenset({"bulk_uri", "integration_id", "bulk_error_mode", "bulk_endpoint_url",
                          "bulk_region", "bulk_poll", "bulk_timeout", "bulk_verify"})
BULK_SECRETS = {"key": "bulk_key", "secret": "bulk_secret", "token": "bulk_token"}
"""The object-storage secrets of the files, as the pinecone target's secrets name them
(``--target-secret bulk_key=...`` or ``VEX_PINECONE_BULK_KEY``); else the AWS_* variables."""
TERMINAL = ("Completed", "Failed", "Cancelled")
_SCHEMES = ("s3://", "gs://")
_POLL_FAILURES = 5
_COUNT_TRIES = 5
DEFAULT_NAMESPACE = "__default__"


def _seconds(spec: StoreSpec, name: str, default: float, *, zero: bool) -> float:
    text = spec.params.get(name)
    try:
        value = float(text) if text is not None else default
    except ValueError:
        value = -1.0
    if value < 0 or (value == 0 and not zero):
        raise UsageError(f"pinecone ?{name}= must be a number of seconds{', 0 or more' if zero else ''},"
                         f" not {text!r}")
    return value


@dataclass(frozen=True)
class BulkSettings:
    """What ``--bulk`` into a Pinecone index needs, from its URL options."""

    uri: str
    error_mode: str
    integration_id: str | None
    poll: float
    timeout: float
    verify: bool

    @classmethod
    def from_spec(cls, spec: StoreSpec) -> BulkSettings:
        uri = (spec.params.get("bulk_uri") or "").rstrip("/")
        if not uri:
            raise UsageError("--bulk into pinecone needs the object storage Pinecone imports from:"
                             " pinecone://INDEX?bulk_uri=s3://BUCKET/PREFIX",
                             hint="Pinecone imports Parquet files from S3 (or GCS); add ?integration_id="
                                  " for a private bucket (docs/connectors/pinecone.md, Bulk import)")
        if not uri.startswith(_SCHEMES):
            raise UsageError(f"pinecone ?bulk_uri= must be an s3:// or gs:// prefix, not {uri!r}",
                             hint="Pinecone imports from object storage only")
        mode = spec.params.get("bulk_error_mode", "abort").lower()
        if mode not in ("abort", "continue"):
            raise UsageError(f"pinecone ?bulk_error_mode= is abort or continue, not {mode!r}")
        verify = spec.params.get("bulk_verify", "true").lower()
        if verify not in ("true", "false", "1", "0", "yes", "no"):
            raise UsageError(f"pinecone ?bulk_verify= is true or false, not {verify!r}")
        return cls(uri=uri, error_mode=mode, integration_id=spec.params.get("integration_id") or None,
                   poll=_seconds(spec, "bulk_poll", 5.0, zero=False),
                   timeout=_seconds(spec, "bulk_timeout", 0.0, zero=True),
                   verify=verify in ("true", "1", "yes"))

    @property
    def import_uri(self) -> str:
        """The URI Pinecone is given: the prefix, as a directory."""
        return self.uri + "/"

    def files_spec(self, spec: StoreSpec) -> StoreSpec:
        """The ``pinecone-bulk`` location of the files: the prefix, its S3 options, its secrets."""
        params = {target: spec.params[source] for source, target in
                  (("bulk_endpoint_url", "endpoint_url"), ("bulk_region", "region"), ("blobs", "blobs"))
                  if spec.params.get(source)}
        secrets = {name: value for name, key in BULK_SECRETS.items() if (value := spec.secret(key))}
        return StoreSpec("pinecone-bulk", self.uri, params=params, secrets=secrets)


class PineconeImportWriter(Writer):
    """Stages and writes the import files like ``pinecone-bulk``; imports them in ``finish``."""

    sleep = staticmethod(time.sleep)
    """The wait between polls (a test interrupts it)."""

    def __init__(self, store: PineconeConnector, settings: BulkSettings, *, resume: dict[str, Any] | None,
                 dry_run: bool, spaces: dict[str, VectorSpace]) -> None:
        from .pinecone_bulk import PineconeBulkConnector, PineconeBulkWriter

        self.store, self.settings, self.dry_run, self.spaces = store, settings, dry_run, spaces
        self.files: PineconeBulkConnector = PineconeBulkConnector(settings.files_spec(store.spec))
        self.exists = store.exists()
        if not self.exists and not store.create and not dry_run:
            raise UsageError(f"Pinecone has no index {store.index_name!r}",
                             hint="create it, or add ?create=true&cloud=aws&region=us-east-1")
        self.held = store.vector_spaces() if self.exists else {}
        self.inner: PineconeBulkWriter = PineconeBulkWriter(self.files, resume=resume, dry_run=dry_run,
                                                            spaces=spaces)
        dims = self.held.get("", VectorSpace()).dims
        if dims:
            self.inner.state.setdefault("dims", dims)
        self.marker = marker_path(self.files)
        if resume is None and not dry_run and self.files.io.exists(self.marker):
            self.files.io.remove_tree(self.marker)  # an earlier run's import: this run starts its own

    # the Writer contract ---------------------------------------------------------------------

    def target_dims(self) -> dict[str, int]:
        return {name: s.dims for name, s in self.held.items() if s.dims} or self.inner.target_dims()

    def vector_spaces(self) -> dict[str, VectorSpace]:
        return dict(self.held) if self.held else self.inner.vector_spaces()

    def write(self, batch: list[MemoryRecord]) -> list[Reject]:
        """The records into the files; one whose namespace Pinecone would keep under a name
        an import folder cannot have is refused (an upsert keeps it: see ``_folder_refusal``)."""
        refused: list[Reject] = []
        kept: list[MemoryRecord] = []
        for record in batch:
            why = _folder_refusal(record.namespace)
            if why is None:
                kept.append(record)
            else:
                refused.append(Reject(reason="namespace_not_importable", detail=why, id=record.id,
                                      namespace=record.namespace))
        return refused + list(self.inner.write(kept))

    def checkpoint(self) -> dict[str, Any]:
        return self.inner.checkpoint()

    def make_durable(self) -> None:
        self.inner.make_durable()

    def abort(self) -> None:
        """The staged batches stay for ``--resume``; a started import goes on (its id is in
        the marker, which a resumed run polls)."""
        self.inner.abort()

    def finish(self, summary: dict[str, Any]) -> None:
        self.inner.finish(summary)
        if self.dry_run:
            return
        groups = {folder: count for folder, count in self.inner.groups.items() if count}
        uri = self.settings.import_uri
        if not groups:
            self.store.bulk_import = {"id": None, "uri": uri, "status": "nothing to import",
                                      "records_imported": 0}
            return
        import_id = self._started()
        if import_id is None:
            self._ensure_index()
            self._refuse_existing(groups)
            import_id = self._start()
        model = self._poll(import_id)
        self.store.bulk_import = {"id": import_id, "uri": uri, "status": model.status,
                                  "records_imported": model.records_imported,
                                  "error_mode": self.settings.error_mode,
                                  "integration_id": self.settings.integration_id}
        if model.status != "Completed":
            raise PermanentError(f"Pinecone import {import_id} of {uri} ended {model.status}"
                                 + (f": {model.error}" if model.error else ""),
                                 hint="fix the cause, delete the namespaces it created, and run again")
        self._check_counts(import_id, model, groups)
        if self.settings.verify:
            self._check_digests(import_id, groups)
        self.held = self.store.vector_spaces()
        self.files.io.remove_tree(self.marker)

    # the import ------------------------------------------------------------------------------

    def _started(self) -> str | None:
        """The id of the import a resumed run started already, or None."""
        if not self.files.io.exists(self.marker):
            return None
        with self.files.io.open(self.marker, "rb") as handle:
            return str(orjson.loads(handle.read())["id"])

    def _ensure_index(self) -> None:
        if self.exists:
            return
        dims = self.inner.state.get("dims")
        self.store.create_index(VectorSpace(dims=int(dims) if dims else None,
                                            metric=self.spaces.get("", VectorSpace()).metric))
        self.exists = True
        self.held = self.store.vector_spaces()

    def _refuse_existing(self, groups: dict[str, int]) -> None:
        """Pinecone imports only into namespaces that do not exist yet: refused here, before
        the import starts, naming them (the files stay for an import into another index)."""
        held = {(name or DEFAULT_NAMESPACE): int(ns.vector_count or 0)
                for name, ns in (self.store.stats(fresh=True).namespaces or {}).items()}
        taken = sorted(f for f in groups if held.get(f))
        if taken:
            raise UsageError(f"Pinecone imports only into new namespaces; index {self.store.index_name!r}"
                             f" already holds records in {', '.join(repr(t) for t in taken)}",
                             hint="import into another index (or delete those namespaces), or run"
                                  " without --bulk to upsert")

    def _start(self) -> str:
        from .pinecone import _translated

        with _translated("start import"):
            started = self.store.index().start_import(
                uri=self.settings.import_uri, error_mode=self.settings.error_mode,
                integration_id=self.settings.integration_id)
        import_id = str(started.id)
        with self.files.io.open(self.marker, "wb") as handle:
            handle.write(orjson.dumps({"id": import_id, "index": self.store.index_name,
                                       "uri": self.settings.import_uri}))
        return import_id

    def _poll(self, import_id: str) -> Any:
        """``describe_import`` until the import ends; a transient failure is retried, and with
        ``?bulk_timeout=`` an import still running then is cancelled (``cancel_import``)."""
        from .pinecone import _translated

        index = self.store.index()
        deadline = time.monotonic() + self.settings.timeout if self.settings.timeout else None
        failures = 0
        while True:
            try:
                with _translated("describe import"):
                    model = index.describe_import(import_id)
                failures = 0
            except TransientError:
                failures += 1
                if failures >= _POLL_FAILURES:
                    raise
                self.sleep(self.settings.poll)
                continue
            if model.status in TERMINAL:
                return model
            if deadline is not None and time.monotonic() >= deadline:
                with _translated("cancel import"):
                    index.cancel_import(import_id)
                raise PermanentError(f"Pinecone import {import_id} did not finish within"
                                     f" {self.settings.timeout:g} s (status {model.status},"
                                     f" {model.percent_complete or 0:g} % done); it was cancelled",
                                     hint="raise ?bulk_timeout= (0: wait as long as it takes)")
            self.sleep(self.settings.poll)

    def _check_counts(self, import_id: str, model: Any, groups: dict[str, int]) -> None:
        """What the import says it took, and what each namespace holds, against the files."""
        written = sum(groups.values())
        if model.records_imported is not None and int(model.records_imported) != written:
            raise PermanentError(f"Pinecone import {import_id} imported {model.records_imported} of the"
                                 f" {written} records in {self.settings.import_uri}"
                                 f" (error mode {self.settings.error_mode})",
                                 hint="the files stay in the bucket; with ?bulk_error_mode=abort an import"
                                      " fails on the first record Pinecone refuses, naming it")
        for attempt in range(_COUNT_TRIES):  # the service's counts may lag the import a little
            stats = self.store.stats(fresh=True)
            held = {(name or DEFAULT_NAMESPACE): int(ns.vector_count or 0)
                    for name, ns in (stats.namespaces or {}).items()}
            wrong = {f: (n, held.get(f, 0)) for f, n in groups.items() if held.get(f, 0) != n}
            if not wrong:
                return
            if attempt < _COUNT_TRIES - 1:
                self.sleep(self.settings.poll)
        detail = "; ".join(f"{f!r}: {got} of {n}" for f, (n, got) in sorted(wrong.items()))
        raise PermanentError(f"after Pinecone import {import_id}, the namespaces do not hold what was"
                             f" written: {detail}")

    def _check_digests(self, import_id: str, groups: dict[str, int]) -> None:
        """The imported namespaces read back (list + fetch) against the files, by digest."""
        files: dict[str, NamespaceDigest] = {}
        for page in self.files.read(batch_size=1000):
            for item in page.items:
                if isinstance(item, MemoryRecord):
                    key = namespace_key(item.namespace)
                    files.setdefault(key, NamespaceDigest()).add(record_digest(item))
        held: dict[str, NamespaceDigest] = {}
        for folder in sorted(groups):
            namespace = "" if folder == DEFAULT_NAMESPACE else folder
            token: str | None = None
            while True:
                ids, token = self.store._list_ids(namespace, token, 1000)
                for item in self.store._fetch(namespace, ids):
                    if isinstance(item, MemoryRecord):
                        held.setdefault(namespace_key(item.namespace), NamespaceDigest()).add(
                            record_digest(item))
                if not token:
                    break
        differ = sorted(k for k in set(files) | set(held) if files.get(k) != held.get(k))
        if differ:
            raise PermanentError(f"after Pinecone import {import_id}, {len(differ)} namespace(s) differ from"
                                 f" the import files by digest: {', '.join(differ[:5])}",
                                 hint="the files stay in the bucket for a look")


def _folder_refusal(namespace: str | None) -> str | None:
    """Why a namespace cannot be imported into the Pinecone namespace an upsert would write it
    to, or None. An import names its namespaces by folder, and the ``pinecone-bulk`` layout
    gives a name no folder can hold (one with ``/``, or starting with ``.`` or ``_``) a
    ``vx-<sha256>`` folder, where an upsert keeps the name itself: imported, such records would
    sit in another namespace than upserted ones (a search in their namespace, or a later
    upsert, would not find them). So they are refused by name, never moved."""
    from .pinecone import store_namespace as upserted
    from .pinecone_bulk import store_namespace as folder

    if namespace is None:
        return None
    want, got = upserted(namespace), folder(namespace)
    if want == got:
        return None
    return (f"Pinecone keeps namespace {namespace!r} as {want!r}, which an import folder cannot be"
            f" named (the import would put it in {got!r}); write it without --bulk")


def marker_path(files: PineconeBulkConnector) -> Path:
    """Where the import id of the files' prefix is kept."""
    return files.path.with_name(files.path.name + ".import.json")
