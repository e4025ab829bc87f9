"""Ed25519 signatures over .vmig.jsonl files, compatible both ways with the published Vex's
``.vmig.sig`` (docs/signing.md).

Vex's scheme (core/sign.js of @vektormemory/vex 0.8.8): each non-blank line, trimmed, is parsed
with ``JSON.parse``, rebuilt with the keys ``id, text, vector, model, dims, namespace, agent_id,
metadata, created_at, source_store, vex_version`` first, then the line's other keys, and
``JSON.stringify``-ed; its hash is ``"blake3:" + hex(BLAKE3(utf8))``. The root is the BLAKE3 of
``JSON.stringify(list of record hashes)``, and Ed25519 signs the root's text. To get the same
bytes, this module reproduces what those two JavaScript functions do to a line (``js_parse``,
``js_stringify``): every number becomes a double and is printed the way JavaScript prints it,
strings escape only what JSON.stringify escapes, a duplicate key keeps its first place and its
last value, array-index keys ("0", "17") come first in numeric order as in any JavaScript
object, and a top-level key named like a property of ``Object.prototype`` is left out (Vex's
``k in obj`` finds the inherited one).

What Vex lacks and vexchange adds: trust (a signature is checked against the public keys the
user trusts, ``--trusted-key`` or a keyring, not only against the key written inside the same
signature), the reasons a check failed, key files written 0600 and only where asked, a signature
file that never replaces a data file and is written atomically, and constant memory: the file
and the signature are read line by line and token by token.

``blake3`` and ``cryptography`` (the ``crypto`` extra) are imported only when a key or a hash is
needed, so ``vex --help`` works without them.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from json.decoder import scanstring  # type: ignore[attr-defined]
from json.encoder import encode_basestring
from pathlib import Path
from typing import IO, Any, Literal, NamedTuple

from ._atomic import AtomicOutput, check_writable
from .connectors.vmig import bounded_lines
from .errors import DecodeError, MissingDependencyError, UsageError, register_secret
from .results import ChangedRecord, KeyReport, SignatureCheck, SignReport

__all__ = [
    "SIG_VERSION", "SigningPlan", "canonical_record", "default_key_path", "default_keyring_path",
    "default_signature_path", "js_number", "js_parse", "js_string", "js_stringify", "keygen",
    "parse_public_key", "plan_signing", "public_key_text", "record_hash", "root_hash", "sign",
    "trusted_keys_from", "verify_signature",
]

SIG_VERSION = "0.4.0"
"""The ``vex_version`` Vex writes into every .vmig.sig (the signature format's version)."""

VEX_ORDER = ("id", "text", "vector", "model", "dims", "namespace", "agent_id", "metadata",
             "created_at", "source_store", "vex_version")
_VEX_KEYS = frozenset(VEX_ORDER)
_OBJECT_PROTOTYPE = frozenset({
    "constructor", "__defineGetter__", "__defineSetter__", "hasOwnProperty", "__lookupGetter__",
    "__lookupSetter__", "isPrototypeOf", "propertyIsEnumerable", "toString", "valueOf", "__proto__",
    "toLocaleString"})
"""``Object.getOwnPropertyNames(Object.prototype)`` in Node 20: Vex's ``if (!(k in obj))`` is
true for these even on an empty object, so a top-level key with one of these names is not
hashed (tests/test_signing.py holds the list to the real Node)."""

_LISTED = 50
_CHUNK = 1 << 16
_MAX_TOKEN = 1 << 20
"""The longest string or number a signature file may hold (Vex's are under 100 characters)."""


# ---------------------------------------------------------------------------------------------
# JavaScript's JSON.parse and JSON.stringify, for one line


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_float=float, parse_int=float, parse_constant=_not_json)


def js_parse(text: str) -> Any:
    """``JSON.parse(text)`` as Python values: every number a float (a double, as in JavaScript:
    ``2**53 + 1`` becomes ``2**53``, ``1e400`` infinity), a duplicate key keeping its first
    place and its last value. ``NaN`` and ``Infinity`` are refused as JavaScript refuses them.
    Raises ValueError (or RecursionError for absurd nesting) on text that is not JSON."""
    return _DECODER.decode(text)


def js_number(x: float) -> str:
    """``JSON.stringify`` of a double: JavaScript's Number toString (the shortest digits that
    read back the same, fixed notation for exponents -7 < e < 21, ``-0`` as ``0``) and
    ``null`` for infinities and NaN. Python's repr has the same shortest digits, so only its
    notation is changed."""
    r = repr(x)
    if r[-2:] == ".0":  # a whole number in fixed notation: JavaScript prints no ".0"
        return "0" if x == 0 else r[:-2]
    if "e" not in r and "n" not in r:  # fixed notation (-4 <= e < 16 in Python): the same
        return r
    return _js_number_exp(x)


def _js_number_exp(x: float) -> str:
    if x != x or x in (float("inf"), float("-inf")):
        return "null"
    sign = "-" if x < 0 else ""
    mantissa, _, exponent = repr(abs(x)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0").rstrip("0") or "0"
    n = len(whole) + int(exponent or 0)  # the decimal point sits after n digits
    k = len(digits)
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * -n + digits
    e = n - 1
    shown = digits if k == 1 else digits[0] + "." + digits[1:]
    return f"{sign}{shown}e{'+' if e >= 0 else '-'}{abs(e)}"


_FLOAT = frozenset({float})


def _js_floats(values: list[float]) -> str:
    """A list of doubles, printed at once by Python's list repr where that is already what
    JavaScript prints: no exponent, no infinity or NaN, no whole number (``2.0``, ``-0.0``).
    Otherwise (a few vectors in a hundred) number by number. Three times faster on vectors."""
    text = repr(values)
    if "e" in text or "n" in text or ".0," in text or text.endswith(".0]"):
        return "[" + ",".join(map(js_number, values)) + "]"
    return text.replace(", ", ",")


_SURROGATE = re.compile("[\ud800-\udfff]")


def js_string(text: str) -> str:
    """``JSON.stringify`` of a string: ``"``, ``\\`` and control characters escaped (``\\n``,
    ``\\u001f``), everything else as it is, a lone surrogate as ``\\udxxx`` (Node 12+). Python's
    JSON encoder escapes the same set the same way; only lone surrogates need a second look."""
    out: str = encode_basestring(text)
    if _SURROGATE.search(out):
        out = _SURROGATE.sub(lambda m: f"\\u{ord(m[0]):04x}", out)
    return out


def _is_index(key: str) -> bool:
    """A JavaScript array index ("0" to "4294967294", no leading zero): such keys come first,
    in numeric order, in every object."""
    return (key.isascii() and key.isdigit() and (key == "0" or key[0] != "0")
            and len(key) <= 10 and int(key) < 4294967295)


def _object(items: Iterable[tuple[str, Any]]) -> str:
    pairs = list(items)
    if any(_is_index(k) for k, _ in pairs):
        indices = sorted((p for p in pairs if _is_index(p[0])), key=lambda p: int(p[0]))
        pairs = indices + [p for p in pairs if not _is_index(p[0])]
    return "{" + ",".join(js_string(k) + ":" + js_stringify(v) for k, v in pairs) + "}"


def js_stringify(value: Any) -> str:
    """``JSON.stringify(value)`` for what :func:`js_parse` returns (no spaces, keys in the order
    a JavaScript object keeps them)."""
    kind = type(value)
    if kind is float:
        return js_number(value)
    if kind is str:
        return js_string(value)
    if kind is list:
        if set(map(type, value)) <= _FLOAT:  # a vector: the common, long case
            return _js_floats(value)
        return "[" + ",".join(map(js_stringify, value)) + "]"
    if kind is dict:
        return _object(value.items())
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if kind is int:  # not from js_parse; a caller's integer is a double in JavaScript too
        return js_number(float(value))
    raise TypeError(f"not a JSON value: {kind.__name__}")


def canonical_record(obj: Mapping[str, Any]) -> str:
    """Vex's canonical text of one parsed line: its eleven keys first (those present, null
    included), then the others in the line's order, minus names of ``Object.prototype``."""
    items = [(k, obj[k]) for k in VEX_ORDER if k in obj]
    items += [(k, v) for k, v in obj.items() if k not in _VEX_KEYS and k not in _OBJECT_PROTOTYPE]
    return _object(items)


# ---------------------------------------------------------------------------------------------
# Hashes


def _blake3() -> Any:
    try:
        from blake3 import blake3
    except ImportError:
        raise MissingDependencyError("signing", "blake3", "crypto", kind="feature") from None
    return blake3


def _ed25519() -> Any:
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise MissingDependencyError("signing", "cryptography", "crypto", kind="feature") from None
    return ed25519


def record_hash(line: str) -> str:
    """The hash Vex gives one line: ``"blake3:" + hex``. Raises ValueError for a line that is
    not a JSON object."""
    obj = js_parse(line.strip(_JS_SPACE))
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    return "blake3:" + str(_blake3()(canonical_record(obj).encode("utf-8")).hexdigest())


class _Root:
    """BLAKE3 of ``JSON.stringify(hashes)``, fed one hash at a time (``["h1","h2"]``): the root
    needs no list of hashes in memory."""

    def __init__(self) -> None:
        self._hash = _blake3()(b"[")
        self._first = True

    def add(self, record_hash: str) -> None:
        self._hash.update((b'"' if self._first else b',"') + record_hash.encode() + b'"')
        self._first = False

    def hexdigest(self) -> str:
        done = self._hash.copy()
        done.update(b"]")
        return "blake3:" + str(done.hexdigest())


def root_hash(record_hashes: Iterable[str]) -> str:
    """Vex's root over the record hashes, in file order."""
    root = _Root()
    for h in record_hashes:
        root.add(h)
    return root.hexdigest()


_JS_SPACE = ("\t\n\v\f\r \xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
             "\u200a\u2028\u2029\u202f\u205f\u3000\ufeff")
"""What JavaScript's ``String.prototype.trim`` removes (Vex trims each line; a BOM goes too)."""


class _Line(NamedTuple):
    """One record line: its position among records (from 0, Vex's "Record i"), its line number
    (from 1), its hash, or None and why it has none, and its id for messages."""

    position: int
    line_no: int
    hash: str | None
    id: str | None
    problem: str | None


def _hashed_lines(path: Path) -> Iterator[_Line]:
    """Every line Vex counts as a record (not blank after trimming), hashed, streamed: memory
    holds one line. A line that is not UTF-8, a ``#`` comment, not JSON or not an object gets
    no hash and a reason (Vex's own sign and verify stop with an exception on it)."""
    blake3 = _blake3()
    index = 0
    for line_no, raw in bounded_lines(path):
        try:
            text = raw.decode("utf-8").strip(_JS_SPACE)
        except UnicodeDecodeError:
            yield _Line(index, line_no, None, None, "not UTF-8")
            index += 1
            continue
        if not text:
            continue
        yield _hash_line(text, index, line_no, blake3)
        index += 1


def _hash_line(text: str, index: int, line_no: int, blake3: Any) -> _Line:
    if text.startswith("#"):
        return _Line(index, line_no, None, None, "a comment line, which Vex cannot hash")
    try:
        obj = js_parse(text)
        if not isinstance(obj, dict):
            return _Line(index, line_no, None, None, "not a JSON object")
        canonical = canonical_record(obj).encode("utf-8")
    except (ValueError, RecursionError) as err:
        return _Line(index, line_no, None, None, f"not JSON ({str(err)[:120]})")
    rid = obj.get("id")
    shown = rid if isinstance(rid, str) else None if rid is None else js_stringify(rid)
    return _Line(index, line_no, "blake3:" + str(blake3(canonical).hexdigest()),
                 None if shown is None else shown[:200], None)


# ---------------------------------------------------------------------------------------------
# Keys


def _config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "vexchange"


def default_key_path() -> Path:
    """Where ``vex keygen`` writes and ``vex sign`` looks for a key when none is named:
    ``$VEX_SIGNING_KEY``, else ``$XDG_CONFIG_HOME/vexchange/signing.key`` (``~/.config``)."""
    configured = os.environ.get("VEX_SIGNING_KEY")
    return Path(configured) if configured else _config_dir() / "signing.key"


def default_keyring_path() -> Path:
    """The keyring ``vex verify --signature`` reads when it exists: ``$VEX_KEYRING``, else
    ``$XDG_CONFIG_HOME/vexchange/trusted_keys`` (``~/.config``)."""
    configured = os.environ.get("VEX_KEYRING")
    return Path(configured) if configured else _config_dir() / "trusted_keys"


def _b64decode(text: str) -> bytes:
    """Base64 as Node's Buffer reads it: standard or URL-safe alphabet, padding optional."""
    cleaned = text.strip().replace("-", "+").replace("_", "/")
    return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _read_private_key(path: Path) -> bytes:
    """The 32-byte Ed25519 seed in a key file: ``hex:<64 hex>`` (what Vex and ``vex keygen``
    write), ``base64:<...>`` or 64 bare hex digits (what Vex also reads). Its text is registered
    as a secret, and no message quotes it."""
    if not path.is_file():
        raise UsageError(f"no such key file: {path}", hint="make one with: vex keygen PATH")
    try:
        raw = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        raise UsageError(f"cannot read the key file {path}") from None
    register_secret(raw)
    body = raw.removeprefix("hex:").removeprefix("base64:")
    register_secret(body)
    try:
        seed = _b64decode(body) if raw.startswith("base64:") else bytes.fromhex(body)
    except (ValueError, binascii.Error):
        seed = b""
    if len(seed) != 32:
        what = "an Ed25519 public key" if raw.startswith("ed25519:") else "not a private key file"
        raise UsageError(f"{path} is {what}: a private key file holds hex:<64 hex digits> (32 bytes)",
                         hint="make one with: vex keygen PATH (a Vex .vmig.key file works too)")
    return seed


def _public_key(seed: bytes) -> bytes:
    from cryptography.hazmat.primitives import serialization

    private = _ed25519().Ed25519PrivateKey.from_private_bytes(seed)
    raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return bytes(raw)


def public_key_text(raw: bytes) -> str:
    """A public key as Vex writes it in a .vmig.sig: ``ed25519:<base64>``."""
    return "ed25519:" + _b64(raw)


def parse_public_key(text: str) -> bytes:
    """``ed25519:<base64 of 32 bytes>`` → the 32 bytes; ValueError otherwise."""
    if not text.startswith("ed25519:"):
        raise ValueError("a public key is written ed25519:<base64>")
    try:
        raw = _b64decode(text.removeprefix("ed25519:"))
    except (ValueError, binascii.Error):
        raise ValueError("the key after ed25519: is not base64") from None
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, this one is {len(raw)}")
    return raw


def _create_exclusive(path: Path, data: bytes, mode: int) -> None:
    """Write ``path`` whole or not at all, never replacing a file: a temporary file with
    ``mode``, synced, then hard-linked into place (the link fails if ``path`` exists)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".", suffix=".partial")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(tmp, path)
    except FileExistsError:
        raise UsageError(f"{path} exists; vex never overwrites a key file",
                         hint="choose another path, or remove the old key first") from None
    except OSError as err:
        raise UsageError(f"cannot write {path}: {err.strerror or err}") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def keygen(path: str | Path | None = None, *, public_of: str | Path | None = None) -> KeyReport:
    """A new Ed25519 key pair: the private key at ``path`` (default :func:`default_key_path`),
    mode 0600, as ``hex:<64 hex>`` (Vex's .vmig.key format, so Vex can sign with it too), and
    the public key beside it at ``<path>.pub`` as ``ed25519:<base64>``. Neither file may exist
    already. With ``public_of``: only report the public key of that existing private key file
    (a Vex .vmig.key, say), to give to whoever verifies."""
    if public_of is not None:
        if path is not None:
            raise UsageError("give either a path for a new key or --public-of KEY, not both")
        source = Path(public_of)
        return KeyReport(key=str(source), public_key=public_key_text(_public_key(_read_private_key(source))),
                         public_key_file=None)
    target = Path(path) if path is not None else default_key_path()
    pub = target.with_name(target.name + ".pub")
    for existing in (target, pub):
        if existing.exists() or existing.is_symlink():
            raise UsageError(f"{existing} exists; vex never overwrites a key file",
                             hint="choose another path, or remove the old key first")
    if path is None:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    elif not target.parent.is_dir():
        raise UsageError(f"cannot write {target}: directory {target.parent} does not exist")
    seed = os.urandom(32)
    public = public_key_text(_public_key(seed))
    _create_exclusive(target, b"hex:" + seed.hex().encode() + b"\n", 0o600)
    try:
        _create_exclusive(pub, public.encode() + b"\n", 0o644)
    except UsageError:
        target.unlink()  # the pair or nothing
        raise
    return KeyReport(key=str(target), public_key=public, public_key_file=str(pub))


def _read_key_list(path: Path) -> dict[bytes, str]:
    """A keyring file: one trusted public key a line, ``ed25519:<base64>``, then optionally a
    name; blank lines and ``#`` comments skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"cannot read the trusted keys in {path}: {getattr(err, 'strerror', None) or err}") \
            from None
    keys: dict[bytes, str] = {}
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith(("hex:", "base64:")):
            raise UsageError(f"{path} line {number} is a private key, not a public one",
                             hint="trust the public key: vex keygen --public-of KEY prints it")
        key, _, name = text.partition(" ")
        try:
            raw = parse_public_key(key)
        except ValueError as err:
            raise UsageError(f"{path} line {number}: {err}") from None
        keys[raw] = name.strip() or f"{path.name} line {number}"
    return keys


def trusted_keys_from(trusted_keys: Sequence[str | Path] = (),
                      keyring: str | Path | None = None) -> dict[bytes, str]:
    """The public keys trusted, each with a name: every ``trusted_keys`` entry (a key written
    ``ed25519:<base64>``, or a file of them), and the keyring (``keyring``, else
    :func:`default_keyring_path` when that file exists)."""
    keys: dict[bytes, str] = {}
    for entry in trusted_keys:
        text = str(entry)
        if text.startswith("ed25519:"):
            try:
                keys[parse_public_key(text)] = "--trusted-key"
            except ValueError as err:
                raise UsageError(f"--trusted-key {text[:60]}: {err}") from None
        elif Path(text).is_file():
            keys.update(_read_key_list(Path(text)))
        else:
            raise UsageError(f"--trusted-key {text[:200]}: neither a public key (ed25519:<base64>)"
                             " nor a file")
    ring = Path(keyring) if keyring is not None else default_keyring_path()
    if ring.is_file():
        keys.update(_read_key_list(ring))
    elif keyring is not None or os.environ.get("VEX_KEYRING"):
        raise UsageError(f"no such keyring: {ring}")
    return keys


# ---------------------------------------------------------------------------------------------
# Signature files


def default_signature_path(file: str | Path) -> Path:
    """Vex's place for a file's signature: ``x.vmig.jsonl`` → ``x.vmig.sig``. Any other name
    gets ``.sig`` appended (Vex would write the signature over the data file itself)."""
    path = Path(file)
    if path.name.endswith(".vmig.jsonl"):
        return path.with_name(path.name[: -len(".vmig.jsonl")] + ".vmig.sig")
    return path.with_name(path.name + ".sig")


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except OSError:
        return False


def _check_signature_path(sig: Path, data: Path, key: Path | None) -> None:
    """A signature goes only where no data is: a name ending in ``.sig``, not the data file nor
    the key, and if the file exists, it must already be a signature (re-signing replaces it)."""
    if not sig.name.endswith(".sig"):
        raise UsageError(f"the signature file {sig} must end in .sig, so it can never be a data file")
    for other, what in ((data, "the file being signed"), (key, "the key file")):
        if other is not None and _same(sig, other):
            raise UsageError(f"the signature file {sig} is {what}; refusing to overwrite it")
    if sig.is_dir():
        raise UsageError(f"the signature file {sig} is a directory")
    if sig.exists():
        try:
            _read_signature(sig, lambda _: None)
        except _NotSignature:
            raise UsageError(f"{sig} exists and is not a .vmig.sig signature; refusing to overwrite it",
                             hint="give another place with --signature SIG") from None


class _NotSignature(ValueError):
    """The signature file does not parse as JSON (Vex: "Cannot parse signature file")."""


_SCALAR = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?|true|false|null")
_LITERALS: dict[str, Any] = {"true": True, "false": False, "null": None}


class _Tokens:
    """A JSON text read in chunks, a value at a time: a signature's ``record_hashes`` list
    (all of them, O(records)) is handed over one hash at a time, never held."""

    def __init__(self, handle: IO[str]) -> None:
        self.handle = handle
        self.buf = ""
        self.pos = 0
        self.eof = False

    def more(self) -> bool:
        chunk = self.handle.read(_CHUNK)
        if not chunk:
            self.eof = True
            return False
        self.buf = self.buf[self.pos:] + chunk
        self.pos = 0
        return True

    def peek(self) -> str:
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in " \t\n\r":
                self.pos += 1
            if self.pos < len(self.buf) or not self.more():
                return self.buf[self.pos] if self.pos < len(self.buf) else ""

    def take(self, char: str) -> None:
        if self.peek() != char:
            raise _NotSignature(f"expected {char!r}")
        self.pos += 1

    def _bounded(self) -> None:
        if self.eof or len(self.buf) - self.pos > _MAX_TOKEN or not self.more():
            raise _NotSignature("a value is cut off or too long")

    def string(self) -> str:
        if self.peek() != '"':
            raise _NotSignature("expected a string")
        while True:
            try:
                text, end = scanstring(self.buf, self.pos + 1, True)
            except json.JSONDecodeError:
                self._bounded()
                continue
            self.pos = end
            return str(text)

    def value(self, depth: int = 0) -> Any:
        first = self.peek()
        if depth > 100:
            raise _NotSignature("nested too deep")
        if first == '"':
            return self.string()
        if first in "[{" and first:
            closing = "]" if first == "[" else "}"
            self.pos += 1
            items: list[Any] = []
            fields: dict[str, Any] = {}
            if self.peek() == closing:
                self.pos += 1
                return items if first == "[" else fields
            while True:
                if first == "[":
                    items.append(self.value(depth + 1))
                else:
                    key = self.string()
                    self.take(":")
                    fields[key] = self.value(depth + 1)
                if self.peek() == ",":
                    self.pos += 1
                    continue
                self.take(closing)
                return items if first == "[" else fields
        while True:
            match = _SCALAR.match(self.buf, self.pos)
            if match is not None and (match.end() < len(self.buf) or self.eof):
                self.pos = match.end()
                token = match[0]
                return _LITERALS[token] if token in _LITERALS else float(token)
            if match is None and (self.eof or len(self.buf) - self.pos >= 64):
                raise _NotSignature("not JSON")
            self._bounded()


def _read_signature(path: Path, on_hash: Callable[[Any], None]) -> dict[str, Any]:
    """The fields of a .vmig.sig, in any layout JSON allows; each ``record_hashes`` entry goes
    to ``on_hash`` as it is read (in place of the list, the field holds how many there were)."""
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            tokens = _Tokens(handle)
            tokens.take("{")
            fields: dict[str, Any] = {}
            if tokens.peek() == "}":
                tokens.pos += 1
            else:
                while True:
                    key = tokens.string()
                    tokens.take(":")
                    if key == "record_hashes" and tokens.peek() == "[":
                        if key in fields:
                            raise _NotSignature("record_hashes is given twice")
                        fields[key] = _stream_list(tokens, on_hash)
                    else:
                        fields[key] = tokens.value()
                    if tokens.peek() == ",":
                        tokens.pos += 1
                        continue
                    tokens.take("}")
                    break
            if tokens.peek():
                raise _NotSignature("more after the signature's object")
            return fields
    except UnicodeDecodeError:
        raise _NotSignature("not UTF-8") from None


def _stream_list(tokens: _Tokens, on_hash: Callable[[Any], None]) -> int:
    tokens.take("[")
    count = 0
    if tokens.peek() == "]":
        tokens.pos += 1
        return 0
    while True:
        on_hash(tokens.value(1))
        count += 1
        if tokens.peek() == ",":
            tokens.pos += 1
            continue
        tokens.take("]")
        return count


# ---------------------------------------------------------------------------------------------
# Sign


def _data_file(file: str | Path) -> Path:
    path = Path(file)
    if not path.is_file():
        raise UsageError(f"no such file: {path}")
    if not path.name.endswith(".jsonl"):
        raise UsageError(f"{path} is not a .vmig.jsonl file; vex sign signs .vmig.jsonl files")
    return path


def _identity(path: Path) -> tuple[int, int, int, int]:
    st = path.stat()
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _signed_at() -> str:
    """``new Date().toISOString()``: UTC, milliseconds, ``Z``."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class SigningPlan:
    """A signature to make once a file is written (``export(..., sign=KEY)``): the key is read
    and the places checked before the run, so a bad key never fails a finished export."""

    file: Path
    key: Path
    signature: Path
    _seed: bytes

    def sign(self) -> SignReport:
        return _sign(self.file, self._seed, self.signature)


def plan_signing(file: Path | None, key: str | Path, *, signature: str | Path | None = None) -> SigningPlan:
    """Check what signing ``file`` (which may not exist yet) with ``key`` needs: a .vmig.jsonl
    file, a readable private key, a free place for the signature. Raises UsageError."""
    if file is None or not file.name.endswith(".jsonl"):
        raise UsageError("--sign signs a .vmig.jsonl file, and this target is not one"
                         + (f" ({file})" if file is not None else ""),
                         hint="export to a .vmig.jsonl file, then sign it with vex sign FILE --key KEY")
    key_path = Path(key)
    seed = _read_private_key(key_path)
    _blake3()
    sig = Path(signature) if signature is not None else default_signature_path(file)
    _check_signature_path(sig, file, key_path)
    return SigningPlan(file=file, key=key_path, signature=sig, _seed=seed)


def sign(file: str | Path, key: str | Path | None = None, *,
         signature: str | Path | None = None) -> SignReport:
    """Sign a .vmig.jsonl file the way Vex does: a ``.vmig.sig`` beside it (``x.vmig.jsonl`` →
    ``x.vmig.sig``; ``signature`` names another place) that Vex's ``vex verify`` accepts.

    ``key``: a private key file (``vex keygen``, or a Vex ``.vmig.key``); default
    :func:`default_key_path`. No key is ever made or written here. Every record line must be a
    JSON object: blank lines are skipped as Vex skips them, while a ``#`` comment or a line that
    is not JSON is refused (Vex cannot hash it). The signature is written atomically; it never
    replaces the data file, the key, or a file that is not a signature."""
    path = _data_file(file)
    key_path = Path(key) if key is not None else default_key_path()
    if key is None and not key_path.is_file():
        raise UsageError("no signing key: give --key KEY",
                         hint=f"make one with: vex keygen (it writes {key_path})")
    return plan_signing(path, key_path, signature=signature).sign()


def _sign(path: Path, seed: bytes, sig_path: Path) -> SignReport:
    if not path.is_file():
        raise UsageError(f"no such file: {path}")
    ed25519 = _ed25519()
    check_writable(sig_path)  # before any work; the spool below lives in the same folder
    before = _identity(path)
    root = _Root()
    count = 0
    with tempfile.TemporaryFile(dir=sig_path.parent) as spool:
        # the record_hashes list goes to a spool file as it is made: it precedes nothing in
        # memory, and the signature's header (count, root) can still come first, as Vex writes it
        for line in _hashed_lines(path):
            if line.hash is None:
                raise DecodeError(f"cannot sign: {line.problem}", location=f"{path} line {line.line_no}",
                                  hint="a signed file holds only JSON records (Vex's verify cannot read"
                                       " anything else); remove that line, or fix it")
            spool.write(b'\n    "' + line.hash.encode() + b'"' if count == 0
                        else b',\n    "' + line.hash.encode() + b'"')
            root.add(line.hash)
            count += 1
        if _identity(path) != before:
            raise UsageError(f"{path} changed while it was being signed; nothing was signed",
                             hint="sign it again once nothing writes to it")
        root_text = root.hexdigest()
        private = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
        signature = _b64(private.sign(root_text.encode("utf-8")))
        public = public_key_text(_public_key(seed))
        signed_at = _signed_at()
        head = ("{\n"
                f'  "vex_version": "{SIG_VERSION}",\n'
                f'  "signed_at": "{signed_at}",\n'
                f'  "record_count": {count},\n'
                f'  "root_hash": "{root_text}",\n'
                '  "record_hashes": [')
        tail = (("\n  ]" if count else "]")
                + f',\n  "public_key": "{public}",\n  "signature": "{signature}"\n}}')
        out = AtomicOutput(sig_path)
        try:
            out.write(head.encode())
            spool.seek(0)
            while chunk := spool.read(_CHUNK):
                out.write(chunk)
            out.write(tail.encode())
            out.commit()
        except BaseException:
            out.discard()
            raise
    return SignReport(file=str(path), signature=str(sig_path), records=count, root_hash=root_text,
                      public_key=public, signed_at=signed_at)


# ---------------------------------------------------------------------------------------------
# Verify


class _Comparison:
    """The file's hashes against the signature's, one pair at a time, as Vex compares them."""

    def __init__(self, lines: Iterator[_Line]) -> None:
        self.lines = lines
        self.root = _Root()
        self.records = 0
        self.unhashable = 0
        self.listed = 0
        self.changed = 0
        self.first: list[ChangedRecord] = []

    def signed(self, expected: Any) -> None:
        """The next hash of the signature's list."""
        self.listed += 1
        line = next(self.lines, None)
        if line is not None:
            self._count(line)
            if line.hash is None or line.hash != expected:
                self._changed(line, "unreadable" if line.hash is None else "changed")

    def rest(self) -> None:
        """The file's lines beyond the signature's list: not compared (Vex compares the common
        part), but counted, hashed into the root and listed as added."""
        for line in self.lines:
            self._count(line)
            self._changed(line, "unreadable" if line.hash is None else "added")

    def _count(self, line: _Line) -> None:
        self.records += 1
        if line.hash is None:
            self.unhashable += 1
        else:
            self.root.add(line.hash)

    def _changed(self, line: _Line, change: Literal["changed", "added", "unreadable"]) -> None:
        self.changed += change != "added"
        if len(self.first) < _LISTED:
            self.first.append(ChangedRecord(index=line.position, line=line.line_no, id=line.id, change=change,
                                            detail=line.problem))


def _short(value: Any) -> str | None:
    return value[:120] if isinstance(value, str) else None


def verify_signature(file: str | Path, signature: str | Path | None = None, *,
                     trusted_keys: Sequence[str | Path] = (),
                     keyring: str | Path | None = None) -> SignatureCheck:
    """Check a file against its .vmig.sig (default: Vex's place, ``x.vmig.sig``) as Vex does
    (record count, each record's hash, the root, the Ed25519 signature), then whether the key
    that signed it is trusted (``trusted_keys``, the keyring). ``status`` is "trusted",
    "unknown-key" (valid, but nothing says who signed it: anyone can re-sign an edited file with
    a new key) or "invalid"; ``ok`` only for "trusted". ``reasons`` says what failed."""
    path = Path(file)
    if not path.is_file():
        raise UsageError(f"no such file: {path}")
    sig_path = Path(signature) if signature is not None else default_signature_path(path)
    if not sig_path.is_file():
        raise UsageError(f"no signature file {sig_path}",
                         hint=f"sign it with: vex sign {path} --key KEY"
                              " (or name the signature: --signature SIG)")
    trusted = trusted_keys_from(trusted_keys, keyring)
    ed25519 = _ed25519()
    compare = _Comparison(_hashed_lines(path))
    reasons: list[str] = []
    try:
        fields = _read_signature(sig_path, compare.signed)
    except _NotSignature as err:
        reasons.append(f"cannot parse the signature file: {err}")
        fields = {}
    compare.rest()
    _compare_records(compare, fields, reasons)
    public_raw = _check_signature(ed25519, fields, reasons)
    valid = not reasons
    name = trusted.get(public_raw) if valid and public_raw is not None else None
    if valid and name is None:
        reasons.append("the signature is valid, but from an unknown key: "
                       + ("no key is trusted (give --trusted-key KEY or use a keyring)" if not trusted
                          else f"it is none of the {len(trusted)} trusted keys"))
    status: Literal["trusted", "unknown-key", "invalid"] = (
        "invalid" if not valid else "trusted" if name is not None else "unknown-key")
    return SignatureCheck(
        signature=str(sig_path), ok=status == "trusted", status=status, valid=valid,
        trusted=name is not None, public_key=_short(fields.get("public_key")), signer=name,
        signed_at=_short(fields.get("signed_at")), records=compare.records,
        signed_records=_count_field(fields.get("record_count")), changed=compare.changed,
        changed_records=compare.first, reasons=reasons)


def _count_field(value: Any) -> int | None:
    return int(value) if isinstance(value, float) and value.is_integer() and abs(value) < 2**53 else None


def _compare_records(compare: _Comparison, fields: Mapping[str, Any], reasons: list[str]) -> None:
    if not fields:
        return
    expected = fields.get("record_count")
    if not (isinstance(expected, float) and expected == compare.records):
        reasons.append(f"record count: the file has {compare.records}, the signature expects "
                       f"{js_stringify(expected) if expected is not None else 'none'}")
    if compare.changed:
        first = compare.first[0]
        reasons.append(f"{compare.changed} record(s) differ from the signed ones; the first is record "
                       f"{first.index} on line {first.line}" + (f" (id {first.id})" if first.id else ""))
    if not isinstance(fields.get("record_hashes"), int):
        reasons.append("the signature holds no record_hashes list")
    if compare.unhashable:
        reasons.append(f"the root hash cannot be computed: {compare.unhashable} line(s) are not JSON records")
    elif compare.root.hexdigest() != fields.get("root_hash"):
        reasons.append(f"root hash mismatch: computed {compare.root.hexdigest()}, signed "
                       f"{_short(fields.get('root_hash'))}")


def _check_signature(ed25519: Any, fields: Mapping[str, Any], reasons: list[str]) -> bytes | None:
    """The Ed25519 check of the signed root (the one in the signature, as Vex checks it) with
    the public key in the signature; returns that key when it is a key at all."""
    from cryptography.exceptions import InvalidSignature

    if not fields:
        return None
    try:
        raw = parse_public_key(str(fields.get("public_key")))
    except ValueError as err:
        reasons.append(f"bad public key in the signature: {err}")
        return None
    root, sig = fields.get("root_hash"), fields.get("signature")
    try:
        signature = _b64decode(sig) if isinstance(sig, str) else b""
        ed25519.Ed25519PublicKey.from_public_bytes(raw).verify(
            signature, (root if isinstance(root, str) else "").encode("utf-8"))
    except (ValueError, binascii.Error):
        reasons.append("bad signature: the signature field is not a base64 Ed25519 signature")
    except InvalidSignature:
        reasons.append("bad signature: the Ed25519 signature does not match the signed root and public key")
    return raw
