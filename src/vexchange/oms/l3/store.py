"""The Level 3 grain store (docs/formats/oms-level3.md): the Level 2 ``GrainStore`` rules over
encrypted envelopes, with blind, triple and full-text indexes, an audit chain and a policy engine.

The backend primitives (``_load``, ``_save``, ``_set_index``, ``_remove``, ``addresses``,
``transaction``) seal and open envelopes, so every Level 2 rule of the base class applies
unchanged; the public operations are wrapped to run the compliance preset and write each
decision to the audit trail in the same transaction as the change it allows. A denial rolls
the change back and is then logged on its own.
"""

from __future__ import annotations

import builtins
import contextlib
import hmac
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import orjson

from ...errors import UsageError
from ..errors import OMSError
from ..grain import Grain, decode_grain
from ..store import GrainStore, Request
from . import fts, hexastore
from .audit import AuditTrail
from .backends import DirBlobs, SqliteBlobs
from .blind import BlindIndex
from .envelope import open_attachment, open_envelope, parse, seal, seal_attachment
from .errors import EnvelopeSwapError, NonceReuseError, PolicyDeniedError, TamperedError
from .keys import KEY_BYTES, MasterKey, new_data_key, unwrap, wrap
from .keys import WRAP_AAD as _AAD
from .policy import ConsentState, Decision, PolicyEngine

__all__ = ["FORMAT", "Level3Store"]

FORMAT = b"vexchange-oms-l3/1"
INDEX_FILE = "index.sqlite"
_T = TypeVar("_T")
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB)",
    "CREATE TABLE IF NOT EXISTS user_keys (token BLOB PRIMARY KEY, key_id BLOB NOT NULL UNIQUE,"
    " wrapped BLOB NOT NULL, created_ms INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS grains (id INTEGER PRIMARY KEY AUTOINCREMENT, address TEXT NOT NULL UNIQUE,"
    " key_id BLOB NOT NULL, nonce BLOB NOT NULL, user_token BLOB NOT NULL, envelope BLOB,"
    " state TEXT, current INTEGER NOT NULL DEFAULT 1, UNIQUE (key_id, nonce))",
    "CREATE INDEX IF NOT EXISTS grains_user ON grains (user_token)",
    "CREATE TABLE IF NOT EXISTS blind (token BLOB NOT NULL, gid INTEGER NOT NULL, PRIMARY KEY (token, gid))"
    " WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS consent_withdrawn (address TEXT PRIMARY KEY)",
    "CREATE TABLE IF NOT EXISTS attachments (gid INTEGER NOT NULL, sealed BLOB NOT NULL)",
    "CREATE INDEX IF NOT EXISTS attachments_gid ON attachments (gid)",
    *hexastore.SCHEMA,
    *fts.SCHEMA,
)
_DENIALS = ("ERR_INVALIDATION_DENIED", "ERR_POLICY_DENIED")


def _now_ms() -> int:
    return int(time.time() * 1000)


class Level3Store(GrainStore):
    """Open (or, with ``create``, make) a Level 3 store at ``path``: a SQLite file, or a
    directory (``index.sqlite`` and one envelope file per grain). ``durability`` "full" fsyncs
    every commit (an acknowledged grain survives power loss); "normal" survives a killed
    process only."""

    def __init__(self, path: str | Path, key: MasterKey, *, create: bool = False,
                 preset: str | None = None, directory: bool | None = None,
                 durability: str = "full") -> None:
        self.path = Path(path)
        is_dir = self.path.is_dir() if directory is None else directory
        if not create and not (self.path / INDEX_FILE if is_dir else self.path).is_file():
            raise UsageError(f"no Level 3 store at {self.path}", hint="create one with vex grains store init")
        if create and self.path.exists() and (not is_dir or (self.path / INDEX_FILE).exists()):
            raise UsageError(f"{self.path} exists: a store is never created over a file")
        if is_dir:
            self.path.mkdir(parents=True, exist_ok=True)
        self.blobs: SqliteBlobs | DirBlobs = DirBlobs(self.path) if is_dir else SqliteBlobs()
        self.db = sqlite3.connect(str(self.path / INDEX_FILE if is_dir else self.path), isolation_level=None)
        try:
            self._start(key, create, preset, durability)
        except BaseException:
            self.db.close()
            self.blobs.close()
            raise

    def _start(self, key: MasterKey, create: bool, preset: str | None, durability: str) -> None:
        if not create:
            self._check_format()  # before any pragma changes someone else's SQLite file
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute(f"PRAGMA synchronous = {'FULL' if durability == 'full' else 'NORMAL'}")
        self.db.execute("PRAGMA secure_delete = ON")  # erased bytes are zeroed, not left in free pages
        self._depth = 0
        self._keys: dict[bytes, bytes] = {}  # key id -> data key
        self._user_keys: dict[bytes, tuple[bytes, bytes]] = {}  # user token -> (key id, data key)
        self._decoded: dict[str, Grain] = {}
        if create:
            self._create(key, preset or "none")
        self._open(key)
        self.policy = PolicyEngine(self._meta_text("preset"))
        self.recovery = self._recover()

    # ------------------------------------------------------------------ creation and keys

    def _create(self, key: MasterKey, preset: str) -> None:
        PolicyEngine(preset)  # refuses an unknown preset before anything is written
        salt = os.urandom(32)
        secrets = os.urandom(3 * KEY_BYTES)
        with self._tx():
            for statement in _SCHEMA:
                self.db.execute(statement)
            rows = {"format": FORMAT, "salt": salt, "check": key.check_value(salt),
                    "store_keys": wrap(key.kek(salt), secrets, _AAD["store"]), "preset": preset.encode(),
                    "clean": b"1"}
            self.db.executemany("INSERT INTO meta (name, value) VALUES (?, ?)", rows.items())
            AuditTrail(self.db, secrets[2 * KEY_BYTES:]).append("init", rule=f"{preset}:init",
                                                                reason="store created")

    def _meta(self, name: str) -> bytes:
        row = self.db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise TamperedError(f"{self.path}: the store's meta table has no {name!r}")
        return bytes(row[0])

    def _meta_text(self, name: str) -> str:
        return self._meta(name).decode()

    def _check_format(self) -> None:
        try:
            row = self.db.execute("SELECT value FROM meta WHERE name = 'format'").fetchone()
        except sqlite3.DatabaseError:
            row = None
        if row is None:
            raise UsageError(f"{self.path} is not a Level 3 store (vex grains store init makes one)")
        if bytes(row[0]) != FORMAT:
            raise UsageError(f"{self.path}: store format {bytes(row[0])!r}, this version reads {FORMAT!r}")

    def _open(self, key: MasterKey) -> None:
        self._salt = self._meta("salt")
        key.verify(self._salt, self._meta("check"), str(self.path))
        self._master = key
        secrets = unwrap(key.kek(self._salt), self._meta("store_keys"), _AAD["store"])
        self.index = BlindIndex(secrets[:KEY_BYTES], secrets[KEY_BYTES:2 * KEY_BYTES])
        self.audit = AuditTrail(self.db, secrets[2 * KEY_BYTES:])

    def _data_key(self, key_id: bytes) -> bytes:
        if key_id not in self._keys:
            row = self.db.execute("SELECT token, wrapped FROM user_keys WHERE key_id = ?",
                                  (key_id,)).fetchone()
            if row is None:
                raise TamperedError("an envelope names a data key the store does not hold (erased?)")
            self._keys[key_id] = unwrap(self._master.kek(self._salt, bytes(row[0])), bytes(row[1]),
                                        _AAD["user"] + key_id)
        return self._keys[key_id]

    def user_token(self, user_id: str | None) -> bytes:
        return self.index.token("user_id", user_id or "")

    def _user_key(self, token: bytes) -> tuple[bytes, bytes]:
        if token not in self._user_keys:
            row = self.db.execute("SELECT key_id FROM user_keys WHERE token = ?", (token,)).fetchone()
            if row is None:
                key_id, data_key = new_data_key()
                wrapped = wrap(self._master.kek(self._salt, token), data_key, _AAD["user"] + key_id)
                self.db.execute("INSERT INTO user_keys (token, key_id, wrapped, created_ms)"
                                " VALUES (?, ?, ?, ?)", (token, key_id, wrapped, _now_ms()))
                self._keys[key_id] = data_key
            else:
                key_id = bytes(row[0])
            self._user_keys[token] = (key_id, self._data_key(key_id))
        return self._user_keys[token]

    def rotate(self, new_key: MasterKey) -> int:
        """Re-wrap every key under ``new_key`` (no payload is re-encrypted). Returns how many
        user keys were re-wrapped."""
        secrets = unwrap(self._master.kek(self._salt), self._meta("store_keys"), _AAD["store"])
        count = 0
        with self._tx():
            rows = self.db.execute("SELECT token, key_id, wrapped FROM user_keys").fetchall()
            for token, key_id, wrapped in rows:
                token, aad = bytes(token), _AAD["user"] + bytes(key_id)
                data_key = unwrap(self._master.kek(self._salt, token), bytes(wrapped), aad)
                self.db.execute("UPDATE user_keys SET wrapped = ? WHERE token = ?",
                                (wrap(new_key.kek(self._salt, token), data_key, aad), token))
                count += 1
            self.db.execute("UPDATE meta SET value = ? WHERE name = 'store_keys'",
                            (wrap(new_key.kek(self._salt), secrets, _AAD["store"]),))
            self.db.execute("UPDATE meta SET value = ? WHERE name = 'check'",
                            (new_key.check_value(self._salt),))
            self.audit.append("rotate", rule="keys:rotate", reason=f"{count} user keys re-wrapped")
        self._master = new_key
        self._checkpoint()
        return count

    # ------------------------------------------------------------------ transactions

    def _tx(self) -> Any:
        store = self

        class _Tx:
            def __enter__(self) -> None:
                if store._depth == 0:
                    store.db.execute("BEGIN IMMEDIATE")
                store._depth += 1

            def __exit__(self, kind: Any, err: Any, tb: Any) -> None:
                store._depth -= 1
                if store._depth:
                    return
                if kind is None:
                    store.db.execute("COMMIT")
                    store.blobs.commit()
                else:
                    store.db.execute("ROLLBACK")
                    store.blobs.rollback()
                    store._user_keys.clear()  # a key made in the rolled-back transaction is gone
                    store._decoded.clear()

        return _Tx()

    def transaction(self) -> Any:
        """Re-entrant: only the outermost level begins and commits (supersede inside put)."""
        return self._tx()

    def _purge(self) -> None:
        """After an erasure: FTS5 keeps a deleted row's terms in its index segments until they
        are merged, so merge them all (``optimize``), then empty the WAL. Costs a rewrite of
        the full-text index: erasure is rare, and must leave nothing of what it erased."""
        with self._tx():
            self.db.execute("INSERT INTO fts (fts) VALUES ('optimize')")
        self._checkpoint()

    def _checkpoint(self) -> None:
        """Move the WAL into the main file and empty it, so overwritten key material and erased
        envelopes leave the WAL too."""
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # ------------------------------------------------------------------ recovery

    def _recover(self) -> dict[str, Any]:
        """After an unclean close: drop index rows of vanished grains and envelopes no row
        names, count grains whose envelope is missing, and log what was done."""
        clean = self._meta("clean") == b"1"
        report: dict[str, Any] = {"clean": clean, "orphan_index_rows": 0, "orphan_blobs": 0,
                                  "missing_blobs": 0}
        with self._tx():
            if not clean:
                for table, column in (("blind", "gid"), ("triples", "gid"), ("attachments", "gid")):
                    cursor = self.db.execute(
                        f"DELETE FROM {table} WHERE {column} NOT IN (SELECT id FROM grains)")
                    report["orphan_index_rows"] += max(cursor.rowcount, 0)
                report.update(self.blobs.reconcile(self.db))
                self.audit.append("recover", decision="allow" if not report["missing_blobs"] else "deny",
                                  rule="store:recover", reason=orjson.dumps(report).decode())
            self.db.execute("UPDATE meta SET value = ? WHERE name = 'clean'", (b"0",))
        return report

    def close(self) -> None:
        with self._tx():
            self.db.execute("UPDATE meta SET value = ? WHERE name = 'clean'", (b"1",))
        self._checkpoint()
        self.db.close()
        self.blobs.close()

    def __enter__(self) -> Level3Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ backend primitives

    def _row(self, address: str) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self.db.execute(
            "SELECT key_id, envelope, state FROM grains WHERE address = ?", (address,)).fetchone()
        return row

    def _open_row(self, address: str, key_id: Any, stored: Any) -> bytes:
        envelope = self.blobs.read(address, stored)
        if envelope is None:
            raise TamperedError(f"the envelope of {address} is missing")
        clear = parse(envelope)
        if not hmac.compare_digest(clear.address, address):
            raise EnvelopeSwapError(f"the envelope stored under {address} holds grain {clear.address}")
        if clear.key_id != bytes(key_id):
            raise TamperedError(f"the envelope of {address} names another key than its row")
        return open_envelope(envelope, self._data_key(bytes(key_id)), address=address)

    def _load(self, address: str) -> tuple[bytes, dict[str, Any]] | None:
        row = self._row(address)
        if row is None:
            return None
        return self._open_row(address, row[0], row[1]), orjson.loads(row[2]) if row[2] else {}

    def _save(self, address: str, blob: bytes) -> None:
        grain = self._decoded.pop(address, None) or decode_grain(blob)
        fields = grain.fields
        user_token = self.user_token(fields.get("user_id"))
        key_id, data_key = self._user_key(user_token)
        envelope = seal(blob, data_key, key_id, address=address)
        try:
            cursor = self.db.execute(
                "INSERT INTO grains (address, key_id, nonce, user_token, envelope) VALUES (?, ?, ?, ?, ?)",
                (address, key_id, parse(envelope).nonce, user_token, envelope if self.blobs.in_row else None))
        except sqlite3.IntegrityError:
            if self._row(address) is not None:
                return
            raise NonceReuseError(f"nonce reuse under key {key_id.hex()} refused: the envelope is not"
                                  " written") from None
        gid = cursor.lastrowid
        assert gid is not None
        if not self.blobs.in_row:
            self.blobs.write(address, envelope)
        tokens = dict.fromkeys(("subject", "relation", "object"))
        blind_rows = []
        for name, token in self.index.grain_tokens(fields):
            blind_rows.append((token, gid))
            if name in tokens:
                tokens[name] = token
        self.db.executemany("INSERT OR IGNORE INTO blind (token, gid) VALUES (?, ?)", blind_rows)
        hexastore.add(self.db, gid, tokens["subject"], tokens["relation"], tokens["object"])
        fts.add(self.db, gid, self.index.document(fields))

    def _set_index(self, address: str, **fields: Any) -> None:
        row = self.db.execute("SELECT state FROM grains WHERE address = ?", (address,)).fetchone()
        if row is None:
            return
        state = orjson.loads(row[0]) if row[0] else {}
        state.update(fields)
        state = {name: value for name, value in state.items() if value is not None}
        current = not state.get("superseded_by") and not state.get("contradicted")
        self.db.execute("UPDATE grains SET state = ?, current = ? WHERE address = ?",
                        (orjson.dumps(state), int(current), address))

    def _remove(self, address: str) -> None:
        row = self.db.execute("SELECT id, key_id, envelope FROM grains WHERE address = ?",
                              (address,)).fetchone()
        if row is None:
            return
        gid = row[0]
        # the grain's own tokens find its blind rows (keyed by token), and the contentless FTS
        # table needs the words it indexed to forget them. An unreadable envelope: its blind
        # rows go by a scan, its FTS postings stay, matched to no grain (ids are never reused)
        try:
            fields = decode_grain(self._open_row(address, row[1], row[2])).fields
        except OMSError:
            self.db.execute("DELETE FROM blind WHERE gid = ?", (gid,))
        else:
            fts.remove(self.db, gid, self.index.document(fields))
            self.db.executemany("DELETE FROM blind WHERE token = ? AND gid = ?",
                                [(token, gid) for _, token in self.index.grain_tokens(fields)])
        self.db.execute("DELETE FROM attachments WHERE gid = ?", (gid,))
        hexastore.remove(self.db, gid)
        self.db.execute("DELETE FROM grains WHERE id = ?", (gid,))
        self.blobs.remove(address)

    def addresses(self) -> Iterator[str]:
        for (address,) in self.db.execute("SELECT address FROM grains ORDER BY id").fetchall():
            yield address

    def __len__(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM grains").fetchone()[0])

    # ------------------------------------------------------------------ audited operations

    def _audited(self, op: str, address: str | None, user: bytes | None, action: Callable[[], _T],
                 decisions: builtins.list[Decision]) -> _T:
        """Run ``action`` and log ``decisions`` in one transaction. A denial (policy or Level 2)
        rolls the change back and is logged (:meth:`_log_denial`). The grain decoded for the
        policy is dropped whatever happens (``_save`` takes it when it writes)."""
        try:
            with self._tx():
                result = action()
                for decision in decisions:
                    self.audit.append(op, address=address, user=user, rule=decision.rule,
                                      reason=decision.reason)
                return result
        except OMSError as err:
            if err.code in _DENIALS:
                self._log_denial(op, address, user, err)
            raise
        finally:
            if self._depth == 0:
                self._decoded.clear()

    def _log_denial(self, op: str, address: str | None, user: bytes | None, err: OMSError) -> None:
        """Inside an outer transaction the entry goes with it (kept if the caller goes on and
        commits, gone with a rollback, when the outer level logs again); at the outer level it
        is written on its own, after the rollback."""
        rule = getattr(err, "rule", None) or ("l2:invalidation" if err.code == _DENIALS[0] else op)
        with self._tx():
            self.audit.append(op, address=address, user=user, decision="deny", rule=rule, reason=err.code)

    def _consent(self, address: str) -> ConsentState:
        found = self._load(address)
        if found is None:
            return ConsentState(False, False, (), None)
        grain = decode_grain(found[0])
        withdrawn = self.db.execute("SELECT 1 FROM consent_withdrawn WHERE address = ?",
                                    (address,)).fetchone() is not None
        scope = grain.fields.get("scope")
        return ConsentState(grain.type == "consent" and not grain.fields.get("is_withdrawal"), withdrawn,
                            tuple(s for s in scope if isinstance(s, str)) if isinstance(scope, list) else (),
                            grain.fields.get("basis"))

    def _deny(self, decision: Decision) -> PolicyDeniedError:
        err = PolicyDeniedError(f"{decision.rule}: {decision.reason}")
        err.rule = decision.rule  # type: ignore[attr-defined]
        return err

    def _write_decision(self, blob: bytes) -> tuple[Grain, Decision]:
        grain = decode_grain(blob)
        self._decoded[grain.address] = grain
        return grain, self.policy.on_write(grain.type, grain.sensitivity, grain.fields, self._consent)

    def put(self, blob: bytes, **request: Any) -> str:
        """Store a grain (validated, Level 2 rules, policy-checked, audited); idempotent."""
        grain, decision = self._write_decision(blob)

        def action() -> str:
            if not decision.allow:
                raise self._deny(decision)
            stored = GrainStore.put(self, blob, **request)
            self._after_put(grain)
            return stored

        return self._audited("put", grain.address, self.user_token(grain.fields.get("user_id")), action,
                             [decision])

    def put_many(self, blobs: Iterable[bytes]) -> builtins.list[str]:
        """Several puts in one transaction: all are acknowledged together, or none is."""
        try:
            with self._tx():
                return [self.put(blob) for blob in blobs]
        except OMSError as err:
            if err.code in _DENIALS and self._depth == 0:
                self._log_denial("put_many", None, None, err)
            raise
        finally:
            if self._depth == 0:
                self._decoded.clear()

    def _after_put(self, grain: Grain) -> None:
        """A Consent withdrawal marks its prior consent withdrawn; under a cascading preset the
        grains it was the basis of are erased (holds and retention still apply)."""
        prior = grain.fields.get("prior_consent")
        if grain.type != "consent" or not grain.fields.get("is_withdrawal") or not isinstance(prior, str):
            return
        self.db.execute("INSERT OR IGNORE INTO consent_withdrawn (address) VALUES (?)", (prior,))
        if not self.policy.preset.cascade_withdrawal:
            return
        token = self.index.token("processing_basis", prior)
        rows = self.db.execute("SELECT g.address FROM blind b JOIN grains g ON g.id = b.gid"
                               " WHERE b.token = ?", (token,)).fetchall()
        for (dependent,) in rows:
            with contextlib.suppress(OMSError):  # held or retained: kept (the refusal is logged)
                self.delete(dependent, reason="consent_cascade")

    def get(self, address: str) -> Grain | None:
        grain = GrainStore.get(self, address)
        if self.policy.audit_reads:
            decision = self.policy.on_read()
            with self._tx():
                self.audit.append("get", address=address, rule=decision.rule,
                                  reason="found" if grain is not None else "not found")
        return grain

    def supersede(self, old_address: str, new_blob: bytes, **request: Any) -> str:
        """Level 2 supersession (the policies covering the old grain and the new one's parents),
        with the new grain under the preset's write rules; audited."""
        return self._replace("supersede", GrainStore.supersede, old_address, new_blob, request)

    def contradict(self, address: str, new_blob: bytes, **request: Any) -> str:
        """Level 2 contradiction: ``new_blob`` is written and the grain at ``address`` marked
        contradicted (no longer current); audited."""
        return self._replace("contradict", GrainStore.contradict, address, new_blob, request)

    def _replace(self, op: str, method: Callable[..., str], address: str, new_blob: bytes,
                 request: dict[str, Any]) -> str:
        grain, decision = self._write_decision(new_blob)

        def action() -> str:
            if not decision.allow:
                raise self._deny(decision)
            stored = method(self, address, new_blob, **request)
            self._after_put(grain)
            return stored

        return self._audited(op, address, self.user_token(grain.fields.get("user_id")), action,
                             [decision, Decision(True, "l2:invalidation", f"{op} by {grain.address}")])

    def delete(self, address: str, *, reason: str = "erasure request", now_s: float | None = None) -> None:
        """Compliance erasure of one grain: refused under a hold or a retention rule."""
        found = self._load(address)
        if found is None:
            return
        grain = decode_grain(found[0])
        decision = self.policy.on_erase(grain.sensitivity, grain.fields, _now_ms())
        user = self.user_token(grain.fields.get("user_id"))

        def action() -> None:
            if not decision.allow:
                raise self._deny(decision)
            GrainStore.delete(self, address, now_s=now_s)

        self._audited("delete", address, user, action, [decision._replace(reason=reason)])
        if self._depth == 0:
            self._purge()

    def erase(self, user_id: str) -> int:
        """Crypto-erasure of one data subject: every grain of ``user_id`` and its data key go,
        in one transaction, unless a hold or retention rule covers any of them (then nothing
        goes). Returns the number of grains erased."""
        token = self.user_token(user_id)
        rows = self.db.execute("SELECT address FROM grains WHERE user_token = ? ORDER BY id",
                               (token,)).fetchall()
        decisions = [Decision(True, f"{self.policy.preset.name}:erase",
                              f"{len(rows)} grains and the user key")]

        def action() -> int:
            for (address,) in rows:
                found = self._load(address)
                if found is None:
                    continue
                grain = decode_grain(found[0])
                self.check_request(grain, Request(), erase=True)
                decision = self.policy.on_erase(grain.sensitivity, grain.fields, _now_ms())
                if not decision.allow:
                    raise self._deny(decision)
                self._remove(address)
            self.db.execute("DELETE FROM user_keys WHERE token = ?", (token,))
            return len(rows)

        count = self._audited("erase", None, token, action, decisions)
        key = self._user_keys.pop(token, None)
        if key is not None:
            self._keys.pop(key[0], None)
        if count:
            self._purge()
        return count

    # ------------------------------------------------------------------ queries

    def query(self, *, subject: Any = None, relation: Any = None, object: Any = None,
              namespace: str | None = None, user_id: str | None = None, type: str | None = None,
              tag: str | None = None, text: str | None = None, phrase: bool = False,
              current_only: bool = True, limit: int | None = None) -> Iterator[Grain]:
        """Grains matching every given equality (blind tokens) and ``text`` (FTS words), in
        write order; ``current_only`` skips superseded and contradicted grains."""
        token = self.index.token
        joins: builtins.list[str] = []
        clauses: builtins.list[str] = []
        params: builtins.list[Any] = []
        order = "g.id"  # then the driving index's own gid column: walked in order, no sort
        triple = hexastore.pattern(*(None if v is None else token(n, v) for n, v in
                                     (("subject", subject), ("relation", relation), ("object", object))))
        if triple is not None:  # the triple index drives the query
            joins.append("JOIN triples t ON t.gid = g.id")
            order = "t.gid"
            clauses.append(triple[0])
            params += triple[1]
        blind = [token(name, value) for name, value in (("namespace", namespace), ("user_id", user_id),
                                                         ("type", type), ("tag", tag)) if value is not None]
        for tok in blind:
            if not joins:  # else a point lookup per candidate on (token, gid)
                joins.append("JOIN blind b ON b.gid = g.id")
                order = "b.gid"
                clauses.append("b.token = ?")
            else:
                clauses.append("EXISTS (SELECT 1 FROM blind WHERE token = ? AND gid = g.id)")
            params.append(tok)
        if text is not None:
            words = self.index.words(text)
            if not words:
                return
            if not joins:  # FTS5 yields its matches in rowid order: it drives
                joins.append("JOIN fts ON fts.rowid = g.id")
                order = "fts.rowid"
                clauses.append("fts MATCH ?")
            else:
                clauses.append("g.id IN (SELECT rowid FROM fts WHERE fts MATCH ?)")
            params.append(fts.match_query(words, phrase=phrase))
        if current_only:
            clauses.append("g.current = 1")
        sql = "SELECT g.address, g.key_id, g.envelope FROM grains g " + " ".join(joins)
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += f" ORDER BY {order}" + ("" if limit is None else f" LIMIT {int(limit)}")
        for address, key_id, stored in self.db.execute(sql, params):
            yield decode_grain(self._open_row(address, key_id, stored))

    def put_attachments(self, address: str, attachments: dict[str, bytes]) -> None:
        """Keep data a grain references but does not hold (the vectors of its
        ``embedding_refs``), sealed under the grain's data key; erased with the grain."""
        row = self.db.execute("SELECT id, key_id FROM grains WHERE address = ?", (address,)).fetchone()
        if row is None:
            raise UsageError(f"no grain {address} to attach data to")
        key_id = bytes(row[1])
        with self._tx():
            self.db.execute("DELETE FROM attachments WHERE gid = ?", (row[0],))
            self.db.executemany("INSERT INTO attachments (gid, sealed) VALUES (?, ?)", [
                (row[0], seal_attachment(data, self._data_key(key_id), key_id, address=address, name=name))
                for name, data in attachments.items()])

    def attachments(self, address: str) -> dict[str, bytes]:
        row = self.db.execute("SELECT id, key_id FROM grains WHERE address = ?", (address,)).fetchone()
        if row is None:
            return {}
        key = self._data_key(bytes(row[1]))
        return dict(open_attachment(bytes(sealed), key, address=address) for (sealed,) in self.db.execute(
            "SELECT sealed FROM attachments WHERE gid = ? ORDER BY rowid", (row[0],)).fetchall())

    def scan(self, *, after: int = 0, limit: int = 1000,
             current_only: bool = True) -> builtins.list[tuple[int, Grain]]:
        """(row id, grain) of up to ``limit`` grains after row id ``after``, in write order: a
        resumable cursor for readers."""
        rows = self.db.execute(
            "SELECT id, address, key_id, envelope FROM grains WHERE id > ?"
            + (" AND current = 1" if current_only else "") + " ORDER BY id LIMIT ?",
            (after, limit)).fetchall()
        return [(gid, decode_grain(self._open_row(address, key_id, stored)))
                for gid, address, key_id, stored in rows]

    def verify_audit(self, *, expect_head: str | None = None) -> dict[str, Any]:
        return self.audit.verify(expect_head=expect_head)
