"""ETSI GS QKD 014 V1.1.1 Key Management Entity simulator over HTTPS with mutual TLS.

Two KMEs at the ends of one QKD link share one key stream (:class:`KeyPool`).  A master SAE asks
its KME for keys (*Get key*, ``enc_keys``): the KME takes fresh material from a
:class:`~sdls_qkd.keys.source.KeySource`, gives the keys and their UUID key IDs to the master
and keeps them, for the slave SAE(s) only, in the shared pool.  The slave asks its own KME for
the same keys by ID (*Get key with key IDs*, ``dec_keys``) and receives each exactly once.
Neither end can fetch a key twice; no endpoint lists keys.

Who calls is decided by the TLS client certificate alone (subject CN, else the first SAN DNS or
URI name), never by the URL or a header.  Answers (clause 5 and 6.5):

* 400 — validation errors: malformed JSON or query, number/size out of the Status limits, size
  not a multiple of 8, unknown fields, unsupported ``extension_mandatory``, unknown slave or
  master SAE ID, unknown, malformed or already retrieved key IDs;
* 401 — the calling SAE is not served by this KME, may not share keys with the named slave, or
  asks for key IDs that were not addressed to it;
* 503 — no key material available now, the pool is full, or an internal fault;
* always a JSON Error body ``{"message": ...}``; 404/405 likewise for paths and methods outside
  the API.

The logic (:class:`Kme`, :class:`KeyPool`) is plain Python and HTTP-free; :class:`KmeServer`
puts one KME on a threaded stdlib HTTP/1.1 server (keep-alive, ``TCP_NODELAY``, one write per
answer, TLS handshake in the connection's thread so a silent client cannot stall the accept
loop); :class:`KmePair` starts two KMEs sharing a pool, e.g. on ephemeral loopback ports.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import json
import logging
import os
import socket
import ssl
import threading
import urllib.parse
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sdls_qkd.errors import InvalidConfiguration, UsageError
from sdls_qkd.keys.certs import LocalPki
from sdls_qkd.keys.etsi014 import API_PREFIX, Etsi014Client, RetryPolicy
from sdls_qkd.keys.source import KeySource, RandomKeySource, octets_for_bits

__all__ = ["KmeConfig", "KeyPool", "Kme", "KmeServer", "KmePair", "KmeRejected", "PoolStats"]

log = logging.getLogger(__name__)

#: largest request body read (a Key IDs list of max_key_per_request UUIDs fits easily)
MAX_REQUEST_OCTETS = 1 << 20

_KEY_REQUEST_FIELDS = frozenset(
    {"number", "size", "additional_slave_SAE_IDs", "extension_mandatory", "extension_optional"}
)
_KEY_IDS_FIELDS = frozenset({"key_IDs"})
_KEY_ID_FIELDS = frozenset({"key_ID", "key_ID_extension"})


class KmeRejected(Exception):
    """A request the KME refuses: becomes an HTTP error answer with a JSON Error body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _bad(message: str) -> KmeRejected:
    return KmeRejected(400, message)


def _unauthorized(message: str) -> KmeRejected:
    return KmeRejected(401, message)


# --------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class KmeConfig:
    """One KME: its ID, the SAEs it serves, its peer, and the limits it announces in Status.

    ``allowed_pairs`` restricts which (master SAE, slave SAE) pairs may share keys; ``None``
    allows any SAE served here to share with any SAE the peer serves.  ``max_SAE_ID_count``
    defaults to the number of peer SAEs minus one (key multicast to all of them).
    ``supported_extensions`` lists the ``extension_mandatory`` names this KME handles (none).
    """

    kme_id: str
    peer_kme_id: str
    sae_ids: frozenset[str]
    peer_sae_ids: frozenset[str]
    key_size: int = 256
    min_key_size: int = 64
    max_key_size: int = 8192
    max_key_per_request: int = 128
    max_key_count: int = 100_000
    max_SAE_ID_count: int | None = None
    allowed_pairs: frozenset[tuple[str, str]] | None = None
    supported_extensions: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not self.sae_ids or not self.peer_sae_ids:
            raise InvalidConfiguration("a KME needs at least one SAE and one peer SAE")
        if self.sae_ids & self.peer_sae_ids:
            raise InvalidConfiguration(
                f"SAEs {sorted(self.sae_ids & self.peer_sae_ids)} cannot be served by both KMEs"
            )
        if not 8 <= self.min_key_size <= self.key_size <= self.max_key_size:
            raise InvalidConfiguration(
                f"key sizes must satisfy 8 <= min {self.min_key_size} <= default "
                f"{self.key_size} <= max {self.max_key_size}"
            )
        if any(s % 8 for s in (self.min_key_size, self.key_size, self.max_key_size)):
            raise InvalidConfiguration("key sizes must be multiples of 8 bits")
        if self.max_key_per_request < 1 or self.max_key_count < 1:
            raise InvalidConfiguration("max_key_per_request and max_key_count must be positive")
        if self.max_SAE_ID_count is not None and self.max_SAE_ID_count < 0:
            raise InvalidConfiguration("max_SAE_ID_count must not be negative")

    @property
    def multicast_limit(self) -> int:
        if self.max_SAE_ID_count is not None:
            return self.max_SAE_ID_count
        return len(self.peer_sae_ids) - 1

    def may_share(self, master: str, slave: str) -> bool:
        return self.allowed_pairs is None or (master, slave) in self.allowed_pairs

    def peer_config(self) -> KmeConfig:
        """The configuration of the other end of the link (same limits, roles swapped)."""
        pairs = None
        if self.allowed_pairs is not None:
            pairs = frozenset((s, m) for m, s in self.allowed_pairs)
        return replace(
            self,
            kme_id=self.peer_kme_id,
            peer_kme_id=self.kme_id,
            sae_ids=self.peer_sae_ids,
            peer_sae_ids=self.sae_ids,
            allowed_pairs=pairs,
        )


# --------------------------------------------------------------------------- the shared pool
@dataclass
class _PendingKey:
    master: str
    slaves: frozenset[str]
    remaining: set[str]
    material: bytes = field(repr=False)


@dataclass(frozen=True)
class PoolStats:
    """Counts only: the pool never lists key IDs or material."""

    issued: int
    redeemed: int
    pending: int


class KeyPool:
    """The key stream shared by the two KMEs of a link (thread-safe).

    ``issue`` takes material from the source and records each new key for its slave SAEs;
    ``redeem`` hands keys to a slave, once per slave, and forgets a key when every slave has it.
    Both are all-or-nothing: a refused request changes nothing.
    """

    def __init__(
        self,
        source: KeySource,
        *,
        max_pending: int = 1_000_000,
        remembered_ids: int = 1_000_000,
    ) -> None:
        self.source = source
        self.max_pending = max_pending
        self._pending: dict[uuid.UUID, _PendingKey] = {}
        # recently finished key IDs, to say "already retrieved" rather than "unknown"
        self._finished: collections.OrderedDict[uuid.UUID, None] = collections.OrderedDict()
        self._remembered = remembered_ids
        self._issued = 0
        self._redeemed = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"KeyPool({self.stats()})"

    def stats(self) -> PoolStats:
        with self._lock:
            return PoolStats(self._issued, self._redeemed, len(self._pending))

    def pending_for(self, slave: str) -> int:
        """How many keys wait for ``slave``."""
        with self._lock:
            return sum(1 for p in self._pending.values() if slave in p.remaining)

    def issue(
        self, master: str, slaves: tuple[str, ...], number: int, size_bits: int
    ) -> list[tuple[uuid.UUID, bytes]]:
        octets = octets_for_bits(size_bits)
        with self._lock:
            if len(self._pending) + number > self.max_pending:
                raise KmeRejected(
                    503, f"key store full: {len(self._pending)} keys wait for their slave SAEs"
                )
            material = self.source.take(number * size_bits)
            if material is None:
                raise KmeRejected(
                    503, f"not enough key material now for {number} keys of {size_bits} bits"
                )
            if len(material) < number * octets:
                raise KmeRejected(503, "key source delivered less material than asked")
            out = []
            for i in range(number):
                key_id = uuid.uuid4()
                chunk = material[i * octets:(i + 1) * octets]
                self._pending[key_id] = _PendingKey(master, frozenset(slaves), set(slaves), chunk)
                out.append((key_id, chunk))
            self._issued += number
            return out

    def redeem(
        self, caller: str, master: str, key_ids: list[uuid.UUID]
    ) -> list[tuple[uuid.UUID, bytes]]:
        with self._lock:
            found = []
            for key_id in key_ids:
                pending = self._pending.get(key_id)
                if pending is None:
                    if key_id in self._finished:
                        raise _bad(f"key_ID {key_id} was already retrieved")
                    raise _bad(f"unknown key_ID {key_id}")
                found.append(pending)
            for key_id, pending in zip(key_ids, found, strict=True):
                if caller not in pending.slaves:
                    raise _unauthorized(f"key_ID {key_id} was not addressed to SAE {caller!r}")
            for key_id, pending in zip(key_ids, found, strict=True):
                if pending.master != master:
                    raise _bad(f"key_ID {key_id} was not issued to master SAE {master!r}")
                if caller not in pending.remaining:
                    raise _bad(f"key_ID {key_id} was already retrieved by SAE {caller!r}")
            out = []
            for key_id, pending in zip(key_ids, found, strict=True):
                pending.remaining.discard(caller)
                out.append((key_id, pending.material))
                if not pending.remaining:
                    del self._pending[key_id]
                    self._finished[key_id] = None
                    if len(self._finished) > self._remembered:
                        self._finished.popitem(last=False)
            self._redeemed += len(out)
            return out


# --------------------------------------------------------------------------- the KME logic
def _as_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"{name} must be an integer, got {json.dumps(value)[:40]}")
    return value


def _extension_names(value: Any, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(e, dict) for e in value):
        raise _bad(f"{name} must be an array of objects of name/value pairs")
    return [str(k) for e in value for k in e]


def _key_container(keys: Iterable[tuple[uuid.UUID, bytes]]) -> dict[str, Any]:
    return {
        "keys": [
            {"key_ID": str(key_id), "key": base64.b64encode(material).decode("ascii")}
            for key_id, material in keys
        ]
    }


class Kme:
    """One KME's answers to the three ETSI 014 methods, without HTTP (requests as dicts)."""

    def __init__(self, config: KmeConfig, pool: KeyPool) -> None:
        self.config = config
        self.pool = pool

    def __repr__(self) -> str:
        return f"Kme({self.config.kme_id!r}, saes={sorted(self.config.sae_ids)})"

    def authorize(self, caller: str | None) -> str:
        """The caller's SAE ID if this KME serves it, else 401."""
        if caller is None:
            raise _unauthorized("the client certificate carries no SAE ID")
        if caller not in self.config.sae_ids:
            raise _unauthorized(f"SAE {caller!r} is not served by KME {self.config.kme_id!r}")
        return caller

    def _check_slave(self, master: str, slave: str) -> None:
        if slave not in self.config.peer_sae_ids:
            raise _bad(
                f"unknown slave SAE {slave!r}: KME {self.config.peer_kme_id!r} does not serve it"
            )
        if not self.config.may_share(master, slave):
            raise _unauthorized(f"SAE {master!r} may not share keys with SAE {slave!r}")

    def status(self, caller: str | None, slave: str) -> dict[str, Any]:
        master = self.authorize(caller)
        self._check_slave(master, slave)
        cfg = self.config
        stored = min(self.pool.source.available_bits() // cfg.key_size, cfg.max_key_count)
        return {
            "source_KME_ID": cfg.kme_id,
            "target_KME_ID": cfg.peer_kme_id,
            "master_SAE_ID": master,
            "slave_SAE_ID": slave,
            "key_size": cfg.key_size,
            "stored_key_count": stored,
            "max_key_count": cfg.max_key_count,
            "max_key_per_request": cfg.max_key_per_request,
            "max_key_size": cfg.max_key_size,
            "min_key_size": cfg.min_key_size,
            "max_SAE_ID_count": cfg.multicast_limit,
        }

    def get_key(self, caller: str | None, slave: str, request: Mapping[str, Any]) -> dict[str, Any]:
        """*Get key*: ``request`` is a Key request (the GET form is converted to one)."""
        master = self.authorize(caller)
        self._check_slave(master, slave)
        cfg = self.config
        unknown = set(request) - _KEY_REQUEST_FIELDS
        if unknown:
            raise _bad(f"unknown Key request fields {sorted(unknown)}")
        number = _as_int(request.get("number", 1), "number")
        if not 1 <= number <= cfg.max_key_per_request:
            raise _bad(f"number must be in 1..{cfg.max_key_per_request} (max_key_per_request), "
                       f"got {number}")
        size = _as_int(request.get("size", cfg.key_size), "size")
        if not cfg.min_key_size <= size <= cfg.max_key_size:
            raise _bad(f"size must be in {cfg.min_key_size}..{cfg.max_key_size} bits, got {size}")
        if size % 8:
            raise _bad(f"size must be a multiple of 8 bits (keys are whole octets), got {size}")
        extra = request.get("additional_slave_SAE_IDs", [])
        if not isinstance(extra, list) or not all(isinstance(s, str) for s in extra):
            raise _bad("additional_slave_SAE_IDs must be an array of strings")
        if len(extra) > cfg.multicast_limit:
            raise _bad(f"{len(extra)} additional_slave_SAE_IDs exceed max_SAE_ID_count "
                       f"{cfg.multicast_limit}")
        slaves = (slave, *extra)
        if len(set(slaves)) != len(slaves):
            raise _bad("slave SAE IDs must be distinct")
        for other in extra:
            self._check_slave(master, other)
        if "extension_mandatory" in request:
            names = _extension_names(request["extension_mandatory"], "extension_mandatory")
            unsupported = [n for n in names if n not in cfg.supported_extensions]
            if unsupported:
                raise _bad(f"unsupported extension_mandatory parameters {unsupported}")
        if "extension_optional" in request:
            _extension_names(request["extension_optional"], "extension_optional")  # ignored
        keys = self.pool.issue(master, slaves, number, size)
        log.info("%s: %d keys of %d bits for %s -> %s", cfg.kme_id, number, size, master,
                 ",".join(slaves))
        return _key_container(keys)

    def get_key_with_ids(
        self, caller: str | None, master: str, request: Mapping[str, Any]
    ) -> dict[str, Any]:
        """*Get key with key IDs*: ``request`` is a Key IDs object."""
        slave = self.authorize(caller)
        if master not in self.config.peer_sae_ids:
            raise _bad(f"unknown master SAE {master!r}: KME {self.config.peer_kme_id!r} "
                       "does not serve it")
        unknown = set(request) - _KEY_IDS_FIELDS
        if unknown:
            raise _bad(f"unknown Key IDs fields {sorted(unknown)}")
        entries = request.get("key_IDs")
        if not isinstance(entries, list) or not entries:
            raise _bad("key_IDs must be a non-empty array")
        if len(entries) > self.config.max_key_per_request:
            raise _bad(f"{len(entries)} key IDs exceed max_key_per_request "
                       f"{self.config.max_key_per_request}")
        ids = []
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict) or "key_ID" not in entry:
                raise _bad(f"key_IDs[{index}] must be an object with key_ID")
            if set(entry) - _KEY_ID_FIELDS:
                raise _bad(f"unknown fields in key_IDs[{index}]: {sorted(set(entry) - _KEY_ID_FIELDS)}")
            ids.append(_parse_key_id(entry["key_ID"]))
        if len(set(ids)) != len(ids):
            raise _bad("key_IDs must be distinct")
        keys = self.pool.redeem(slave, master, ids)
        log.info("%s: %d keys of %s delivered to %s", self.config.kme_id, len(keys), master, slave)
        return _key_container(keys)


def _parse_key_id(value: Any) -> uuid.UUID:
    if not isinstance(value, str):
        raise _bad("key_ID must be a string (UUID)")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise _bad(f"key_ID {value[:64]!r} is not a UUID") from None


# --------------------------------------------------------------------------- HTTP front end
def caller_sae_id(cert: Mapping[str, Any] | None) -> str | None:
    """The SAE ID of a verified peer certificate: subject CN, else the first SAN DNS/URI."""
    if not cert:
        return None
    for rdn in cert.get("subject", ()):
        for name, value in rdn:
            if name == "commonName" and value:
                return str(value)
    for kind, value in cert.get("subjectAltName", ()):
        if kind in ("DNS", "URI") and value:
            return str(value)
    return None


def _single(query: dict[str, list[str]], name: str) -> str | None:
    values = query.pop(name, None)
    if values is None:
        return None
    if len(values) != 1:
        raise _bad(f"query parameter {name} given {len(values)} times")
    return values[0]


def _query_int(query: dict[str, list[str]], name: str) -> int | None:
    text = _single(query, name)
    if text is None:
        return None
    if not text.isascii() or not text.isdigit() or len(text) > 12:
        raise _bad(f"query parameter {name} must be a decimal integer, got {text[:20]!r}")
    return int(text)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "sdls-qkd-kme"
    sys_version = ""
    server: _HttpServer

    #: SAE ID of the verified client certificate, read once per connection
    caller: str | None = None

    def setup(self) -> None:
        super().setup()
        conn = self.connection
        self.caller = caller_sae_id(conn.getpeercert() if isinstance(conn, ssl.SSLSocket) else None)
        # an idle keep-alive connection ends after idle_timeout (http.server then closes it)
        self.connection.settimeout(self.server.idle_timeout)

    # all answers are JSON, written in one write (header and body together)
    def _send_json(self, status: int, obj: Any, *, close: bool = False) -> None:
        body = json.dumps(obj, separators=(",", ":")).encode()
        if close:
            self.close_connection = True
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Error"
        head = (
            f"HTTP/1.1 {status} {reason}\r\n"
            f"Server: {self.server_version}\r\n"
            f"Date: {self.date_time_string()}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Cache-Control: no-store\r\n"
            + ("Connection: close\r\n" if self.close_connection else "")
            + "\r\n"
        )
        self.server.count(status)  # before the write: a client that got it sees it counted
        self.wfile.write(head.encode("latin-1") + body)
        log.debug("%s %s %s -> %d", self.client_address[0], self.command, self.path, status)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Protocol-level errors of http.server (bad request line, unsupported method...)."""
        if not message:
            try:
                message = HTTPStatus(code).phrase
            except ValueError:
                message = "error"
        # the request could not be parsed: its end is unknown, so the connection ends too
        self._send_json(code, {"message": message}, close=True)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.client_address[0], *args)

    def _reject(self, status: int, message: str) -> None:
        self._send_json(status, {"message": message})

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise _bad("Transfer-Encoding is not supported: send Content-Length")
        length_text = self.headers.get("Content-Length", "0")
        if not length_text.isdigit():
            self.close_connection = True
            raise _bad(f"invalid Content-Length {length_text[:20]!r}")
        length = int(length_text)
        if length > MAX_REQUEST_OCTETS:
            self.close_connection = True
            raise _bad(f"request body of {length} octets exceeds {MAX_REQUEST_OCTETS}")
        raw = self.rfile.read(length) if length else b""
        if len(raw) != length:
            self.close_connection = True
            raise _bad(f"request body ended after {len(raw)} of {length} octets")
        return raw

    @staticmethod
    def _parse_json(raw: bytes) -> Any:
        if not raw.strip():
            return {}
        try:
            obj = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise _bad(f"request body is not JSON: {type(exc).__name__}") from None
        if not isinstance(obj, dict):
            raise _bad(f"request body must be a JSON object, got {type(obj).__name__}")
        return obj

    def _route(self, method: str) -> dict[str, Any]:
        # read the body first: whatever the answer, the connection stays in step
        raw = b""
        if method == "POST":
            raw = self._read_body()
        else:
            self._skip_body()
        parts = urllib.parse.urlsplit(self.path)
        kme = self.server.kme
        prefix = API_PREFIX + "/"
        if not parts.path.startswith(prefix):
            raise KmeRejected(404, f"no such resource {parts.path[:80]!r}")
        segments = parts.path[len(prefix):].split("/")
        if len(segments) != 2 or not segments[0] or segments[1] not in (
            "status", "enc_keys", "dec_keys"
        ):
            raise KmeRejected(404, f"no such resource {parts.path[:80]!r}")
        sae_id = urllib.parse.unquote(segments[0], errors="strict")
        operation = segments[1]
        if method == "POST" and operation == "status":
            raise KmeRejected(405, "Get status takes GET")
        # who calls comes first: an SAE this KME does not serve learns nothing more than 401
        caller = kme.authorize(self.caller)
        body = self._parse_json(raw) if method == "POST" else None
        try:
            query = urllib.parse.parse_qs(
                parts.query, keep_blank_values=True, strict_parsing=bool(parts.query),
                errors="strict",
            )
        except (ValueError, UnicodeDecodeError):
            raise _bad("malformed query string") from None
        if method == "POST" and parts.query:
            raise _bad("POST takes its parameters in the body, not the query")
        if operation == "status":
            if query:
                raise _bad(f"Get status takes no query parameters, got {sorted(query)}")
            return kme.status(caller, sae_id)
        if operation == "enc_keys":
            if body is None:
                body = {}
                number, size = _query_int(query, "number"), _query_int(query, "size")
                if number is not None:
                    body["number"] = number
                if size is not None:
                    body["size"] = size
                if query:
                    raise _bad(f"unknown query parameters {sorted(query)} (GET takes number, size)")
            return kme.get_key(caller, sae_id, body)
        if body is None:
            key_id = _single(query, "key_ID")
            if query:
                raise _bad(f"unknown query parameters {sorted(query)} (GET takes key_ID)")
            if key_id is None:
                raise _bad("Get key with key IDs by GET needs the key_ID query parameter")
            body = {"key_IDs": [{"key_ID": key_id}]}
        return kme.get_key_with_ids(caller, sae_id, body)

    def _dispatch(self, method: str) -> None:
        try:
            answer = self._route(method)
        except KmeRejected as exc:
            self._reject(exc.status, exc.message)
            return
        except UnicodeDecodeError:
            self._reject(400, "the URL is not valid UTF-8 after percent-decoding")
            return
        except Exception:  # a fault of the simulator: 503, logged, never a stack trace out
            log.exception("%s: internal error on %s %s", self.server.kme.config.kme_id,
                          method, self.path[:80])
            self._reject(503, "internal error of the KME")
            return
        self._send_json(200, answer)

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def _skip_body(self) -> None:
        """Skip a body we do not use, so the next request parses; close if we cannot."""
        length = self.headers.get("Content-Length", "0")
        if self.command == "HEAD" or self.headers.get("Transfer-Encoding") or (
            not length.isdigit() or int(length) > MAX_REQUEST_OCTETS
        ):
            self.close_connection = True
        elif int(length):
            self.rfile.read(int(length))

    def _not_allowed(self) -> None:
        self._skip_body()
        self._reject(405, f"method {self.command} is not allowed (use GET or POST)")

    do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _not_allowed  # noqa: N815


class _HttpServer(ThreadingHTTPServer):
    """Threaded HTTP server; TLS is negotiated in each connection's own thread."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        kme: Kme,
        tls: ssl.SSLContext,
        *,
        idle_timeout: float,
        handshake_timeout: float,
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.kme = kme
        self.tls = tls
        self.idle_timeout = idle_timeout
        self.handshake_timeout = handshake_timeout
        self.counters: collections.Counter[str] = collections.Counter()
        self._live: set[socket.socket] = set()
        self._live_lock = threading.Lock()
        super().__init__(address, _Handler)

    def count(self, what: int | str) -> None:
        with self._live_lock:
            self.counters[str(what)] += 1

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = self.socket.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, addr

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self._live_lock:
            self._live.add(request)
            self.counters["connections"] += 1
        tls_sock: ssl.SSLSocket | None = None
        try:
            request.settimeout(self.handshake_timeout)
            try:
                tls_sock = self.tls.wrap_socket(request, server_side=True)
            except (OSError, ValueError) as exc:
                self.count("tls_failures")
                log.info("%s: TLS handshake with %s failed: %s", self.kme.config.kme_id,
                         client_address[0], getattr(exc, "reason", None) or exc)
                return
            with self._live_lock:
                self._live.discard(request)
                self._live.add(tls_sock)
            super().process_request_thread(tls_sock, client_address)
        finally:
            with self._live_lock:
                self._live.discard(request)
                if tls_sock is not None:
                    self._live.discard(tls_sock)
            request.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s ended with an error", client_address[0], exc_info=True)

    def close_live_connections(self) -> None:
        with self._live_lock:
            live = list(self._live)
        for sock in live:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def server_tls_context(
    cert_file: str | os.PathLike[str],
    key_file: str | os.PathLike[str],
    ca_file: str | os.PathLike[str],
) -> ssl.SSLContext:
    """TLS >= 1.2 server context requiring a client certificate signed by ``ca_file``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(os.fspath(cert_file), os.fspath(key_file))
        ctx.load_verify_locations(cafile=os.fspath(ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise InvalidConfiguration(f"cannot load the KME's TLS credentials: {exc}") from None
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class KmeServer:
    """One KME on an HTTPS port (``port=0``: an ephemeral port; see :attr:`url`)."""

    def __init__(
        self,
        kme: Kme,
        *,
        cert_file: str | os.PathLike[str],
        key_file: str | os.PathLike[str],
        ca_file: str | os.PathLike[str],
        host: str = "127.0.0.1",
        port: int = 0,
        idle_timeout: float = 30.0,
        handshake_timeout: float = 5.0,
    ) -> None:
        self.kme = kme
        tls = server_tls_context(cert_file, key_file, ca_file)
        try:
            self._httpd = _HttpServer(
                (host, port), kme, tls, idle_timeout=idle_timeout,
                handshake_timeout=handshake_timeout,
            )
        except OSError as exc:
            raise InvalidConfiguration(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        self.host = host
        self.port: int = self._httpd.server_address[1]
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"KmeServer({self.kme.config.kme_id!r}, {self.url!r})"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    @property
    def counters(self) -> dict[str, int]:
        """Answers by HTTP status, ``connections`` accepted, ``tls_failures`` (a snapshot)."""
        with self._httpd._live_lock:
            return dict(self._httpd.counters)

    def start(self) -> KmeServer:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                name=f"kme-{self.kme.config.kme_id}", daemon=True,
            )
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until :meth:`stop` (from another thread or a signal)."""
        self._httpd.serve_forever(poll_interval=0.05)

    def stop(self) -> None:
        """Stop accepting, close open connections, release the port."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.close_live_connections()
        self._httpd.server_close()

    def __enter__(self) -> KmeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class KmePair:
    """Two KMEs sharing one key pool: the two ends of a simulated QKD link.

    ``KmePair.start(pki)`` serves KME_A (for SAE_A) and KME_B (for SAE_B and SAE_C) on
    ephemeral loopback ports; use it as a context manager.
    """

    def __init__(self, a: KmeServer, b: KmeServer, pool: KeyPool, pki: LocalPki) -> None:
        self.a = a
        self.b = b
        self.pool = pool
        self.pki = pki

    def __repr__(self) -> str:
        return f"KmePair({self.a!r}, {self.b!r})"

    @classmethod
    def start(
        cls,
        pki: LocalPki,
        *,
        source: KeySource | None = None,
        host: str = "127.0.0.1",
        port_a: int = 0,
        port_b: int = 0,
        kme_a: str = "KME_A",
        kme_b: str = "KME_B",
        saes_a: Iterable[str] = ("SAE_A",),
        saes_b: Iterable[str] = ("SAE_B", "SAE_C"),
        idle_timeout: float = 30.0,
        handshake_timeout: float = 5.0,
        max_pending: int = 1_000_000,
        **limits: Any,
    ) -> KmePair:
        """Start both KMEs; ``limits`` are further :class:`KmeConfig` fields (key_size...)."""
        pool = KeyPool(source or RandomKeySource(), max_pending=max_pending)
        config_a = KmeConfig(kme_a, kme_b, frozenset(saes_a), frozenset(saes_b), **limits)
        config_b = config_a.peer_config()
        servers = []
        try:
            for config in (config_a, config_b):
                files = pki.kme(config.kme_id)
                servers.append(
                    KmeServer(
                        Kme(config, pool),
                        cert_file=files.cert_file,
                        key_file=files.key_file,
                        ca_file=pki.ca_file,
                        host=host,
                        port=port_a if config is config_a else port_b,
                        idle_timeout=idle_timeout,
                        handshake_timeout=handshake_timeout,
                    ).start()
                )
        except BaseException:
            for s in servers:
                s.stop()
            raise
        return cls(servers[0], servers[1], pool, pki)

    def server_for(self, sae_id: str) -> KmeServer:
        """The KME that serves ``sae_id``."""
        for server in (self.a, self.b):
            if sae_id in server.kme.config.sae_ids:
                return server
        raise UsageError(f"no KME of this pair serves SAE {sae_id!r}")

    def client(self, sae_id: str, *, kme: KmeServer | None = None, **options: Any) -> Etsi014Client:
        """A client for ``sae_id`` (its certificate) of its own KME (or ``kme``)."""
        server = kme or self.server_for(sae_id)
        files = self.pki.sae(sae_id)
        options.setdefault("retry", RetryPolicy(max_retries=0))
        return Etsi014Client(
            server.url,
            ca_file=self.pki.ca_file,
            cert_file=files.cert_file,
            key_file=files.key_file,
            expected_kme_id=server.kme.config.kme_id,
            **options,
        )

    def stop(self) -> None:
        self.a.stop()
        self.b.stop()

    def __enter__(self) -> KmePair:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
