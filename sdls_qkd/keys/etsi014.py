"""ETSI GS QKD 014 V1.1.1 client: keys from a Key Management Entity over HTTPS with mutual TLS.

The REST API (clause 5) has three methods under ``https://{KME_hostname}/api/v1/keys/``:

* ``{slave_SAE_ID}/status`` (GET) — *Get status*, the Status data format (clause 6.1);
* ``{slave_SAE_ID}/enc_keys`` (GET ``?number=&size=`` or POST a Key request, clause 6.2) —
  *Get key*: the master SAE receives new keys and their key IDs in a Key container (6.3);
* ``{master_SAE_ID}/dec_keys`` (GET ``?key_ID=`` or POST Key IDs, clause 6.4) — *Get key with
  key IDs*: the slave SAE receives the same keys from its own KME by ID.

Errors are HTTP 400 (bad request, unknown or used key ID), 401 (SAE not authorised) and 503
(server error) with an Error body ``{"message", "details"}`` (6.5).  They become
:class:`~sdls_qkd.errors.KmeBadRequest`, :class:`~sdls_qkd.errors.KmeUnauthorized` and
:class:`~sdls_qkd.errors.KmeUnavailable` (after retries with backoff; 503 is the only status
retried); an answer that does not follow the data formats is
:class:`~sdls_qkd.errors.KmeProtocolError`; no answer, a timeout or a TLS failure is
:class:`~sdls_qkd.errors.KmeConnectionError`.

One keep-alive connection is reused (``http.client`` over ``ssl``, ``TCP_NODELAY`` set so a
request is one write and Nagle's algorithm cannot add ~40 ms).  The KME's certificate is
verified against the given CA and the expected host name; optionally its subject CN must equal
the expected KME ID.  Key material never appears in ``repr``, logs or exception messages.

:class:`Etsi014KeyFetcher` adapts a client to the key buffer's ``KeyFetcher`` protocol.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import json
import logging
import os
import socket
import ssl
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sdls_qkd.errors import (
    KmeBadRequest,
    KmeConnectionError,
    KmeError,
    KmeProtocolError,
    KmeUnauthorized,
    KmeUnavailable,
    UsageError,
)
from sdls_qkd.keys.material import QkdKey

__all__ = [
    "API_PREFIX",
    "KmeStatus",
    "EtsiKey",
    "KeyContainer",
    "RetryPolicy",
    "RawResponse",
    "Etsi014Client",
    "Etsi014KeyFetcher",
    "parse_status",
    "parse_key_container",
]

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1/keys"
#: an answer larger than this is refused (a KME is not a bulk-transfer service)
MAX_RESPONSE_OCTETS = 16 * 1024 * 1024
#: error messages from the KME are quoted at most this long
_MAX_QUOTED = 300

_STATUS_STR_FIELDS = ("source_KME_ID", "target_KME_ID", "master_SAE_ID", "slave_SAE_ID")
_STATUS_INT_FIELDS = (
    "key_size",
    "stored_key_count",
    "max_key_count",
    "max_key_per_request",
    "max_key_size",
    "min_key_size",
    "max_SAE_ID_count",
)


# --------------------------------------------------------------------------- data formats
@dataclass(frozen=True)
class KmeStatus:
    """Status data format (ETSI GS QKD 014 clause 6.1); sizes in bits."""

    source_KME_ID: str
    target_KME_ID: str
    master_SAE_ID: str
    slave_SAE_ID: str
    key_size: int
    stored_key_count: int
    max_key_count: int
    max_key_per_request: int
    max_key_size: int
    min_key_size: int
    max_SAE_ID_count: int
    status_extension: Any = field(default=None, compare=False)


@dataclass(frozen=True)
class EtsiKey:
    """One key of a Key container (clause 6.3): a UUID key ID and the key octets.

    The octets are excluded from ``repr``; ``size_bits`` is the decoded length x 8.
    """

    key_id: uuid.UUID
    key: bytes = field(repr=False)
    key_id_extension: Any = field(default=None, compare=False)
    key_extension: Any = field(default=None, compare=False, repr=False)

    @property
    def size_bits(self) -> int:
        return len(self.key) * 8


@dataclass(frozen=True)
class KeyContainer:
    """Key container data format (clause 6.3)."""

    keys: tuple[EtsiKey, ...]
    key_container_extension: Any = field(default=None, compare=False)

    @property
    def key_ids(self) -> list[uuid.UUID]:
        return [k.key_id for k in self.keys]


@dataclass(frozen=True)
class RawResponse:
    """An HTTP answer as received (for conformance tools); the body is hidden from ``repr``."""

    status: int
    content_type: str
    body: bytes = field(repr=False)

    def json(self) -> Any:
        """The body parsed as JSON, or :class:`KmeProtocolError`."""
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise KmeProtocolError(
                f"KME answer (HTTP {self.status}) is not JSON: {type(exc).__name__} at "
                f"{getattr(exc, 'pos', '?')}"
            ) from None


def _expect(obj: Mapping[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
    if name not in obj:
        raise KmeProtocolError(f"{where} lacks the mandatory field {name!r}", field=name)
    value = obj[name]
    # bool is an int in Python, never a valid count or string here
    if isinstance(value, bool) or not isinstance(value, kind):
        raise KmeProtocolError(
            f"{where} field {name!r} must be {getattr(kind, '__name__', kind)}, "
            f"got {type(value).__name__}",
            field=name,
        )
    return value


def parse_status(obj: Any) -> KmeStatus:
    """Validate a decoded Status object; :class:`KmeProtocolError` if it is malformed."""
    if not isinstance(obj, dict):
        raise KmeProtocolError(f"Status must be a JSON object, got {type(obj).__name__}")
    values: dict[str, Any] = {}
    for name in _STATUS_STR_FIELDS:
        values[name] = _expect(obj, name, str, "Status")
    for name in _STATUS_INT_FIELDS:
        value = _expect(obj, name, int, "Status")
        if value < 0:
            raise KmeProtocolError(f"Status field {name!r} is negative ({value})", field=name)
        values[name] = value
    if values["min_key_size"] > values["max_key_size"]:
        raise KmeProtocolError(
            f"Status min_key_size {values['min_key_size']} exceeds max_key_size "
            f"{values['max_key_size']}",
            field="min_key_size",
        )
    return KmeStatus(**values, status_extension=obj.get("status_extension"))


def _parse_uuid(text: Any, where: str, name: str) -> uuid.UUID:
    if not isinstance(text, str):
        raise KmeProtocolError(f"{where} {name} must be a string, got {type(text).__name__}",
                               field=name)
    try:
        return uuid.UUID(text)
    except ValueError:
        raise KmeProtocolError(f"{where} {name} {text[:64]!r} is not a UUID", field=name) from None


def parse_key_container(obj: Any, *, expected_octets: int | None = None) -> KeyContainer:
    """Validate a decoded Key container; :class:`KmeProtocolError` if it is malformed.

    Key values must be strict base64 of ``expected_octets`` octets when that is given (else
    non-empty and all of one length); key IDs must be UUIDs, unique in the container.
    """
    if not isinstance(obj, dict):
        raise KmeProtocolError(f"Key container must be a JSON object, got {type(obj).__name__}")
    entries = _expect(obj, "keys", list, "Key container")
    keys: list[EtsiKey] = []
    seen: set[uuid.UUID] = set()
    for index, entry in enumerate(entries):
        where = f"Key container keys[{index}]"
        if not isinstance(entry, dict):
            raise KmeProtocolError(f"{where} must be a JSON object, got {type(entry).__name__}")
        key_id = _parse_uuid(entry.get("key_ID"), where, "key_ID")
        if key_id in seen:
            raise KmeProtocolError(f"{where} repeats key_ID {key_id}", field="key_ID")
        seen.add(key_id)
        encoded = _expect(entry, "key", str, where)
        try:
            material = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            # never quote the value: it is (or was meant to be) secret
            raise KmeProtocolError(f"{where} key is not valid base64", field="key") from None
        if not material:
            raise KmeProtocolError(f"{where} key is empty", field="key")
        if expected_octets is not None and len(material) != expected_octets:
            raise KmeProtocolError(
                f"{where} key has {len(material)} octets, {expected_octets} were requested",
                field="key",
            )
        if keys and len(material) != len(keys[0].key):
            raise KmeProtocolError(
                f"{where} key has {len(material)} octets, keys[0] has {len(keys[0].key)}",
                field="key",
            )
        keys.append(
            EtsiKey(key_id, material, entry.get("key_ID_extension"), entry.get("key_extension"))
        )
    return KeyContainer(tuple(keys), obj.get("key_container_extension"))


# --------------------------------------------------------------------------- transport
@dataclass(frozen=True)
class RetryPolicy:
    """Retries of a request the KME answered with 503: exponential backoff, capped."""

    max_retries: int = 3
    initial_backoff: float = 0.05
    multiplier: float = 2.0
    max_backoff: float = 1.0

    def __post_init__(self) -> None:
        if self.max_retries < 0 or self.initial_backoff < 0 or self.multiplier < 1:
            raise UsageError(f"invalid retry policy {self}")

    def delays(self) -> Iterator[float]:
        """The pause before each retry, in seconds."""
        delay = self.initial_backoff
        for _ in range(self.max_retries):
            yield min(delay, self.max_backoff)
            delay *= self.multiplier


class _KmeConnection(http.client.HTTPSConnection):
    """HTTPS connection with separate connect (TCP + TLS handshake) and read timeouts."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: ssl.SSLContext,
        server_hostname: str,
        connect_timeout: float,
        read_timeout: float,
    ) -> None:
        super().__init__(host, port, timeout=connect_timeout, context=tls)
        self._tls = tls
        self._server_hostname = server_hostname
        self._read_timeout = read_timeout

    def connect(self) -> None:
        raw = socket.create_connection((self.host, self.port), self.timeout)
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # the TLS handshake runs under the connect timeout
            self.sock = self._tls.wrap_socket(raw, server_hostname=self._server_hostname)
        except BaseException:
            raw.close()
            raise
        self.sock.settimeout(self._read_timeout)

    # http.client writes the head and the body of a request separately: two TLS records, two
    # segments.  Collect them and write once (one record, one segment, no Nagle/delayed-ACK
    # interplay even where TCP_NODELAY is unavailable).
    _outgoing: list[bytes] | None = None

    def request(  # type: ignore[override]
        self,
        method: str,
        url: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._outgoing = []
        try:
            super().request(method, url, body, dict(headers or {}))
            data = b"".join(self._outgoing)
        finally:
            self._outgoing = None
        if self.sock is None:
            self.connect()
        assert self.sock is not None
        self.sock.sendall(data)

    def send(self, data: Any) -> None:
        if self._outgoing is not None and isinstance(data, bytes | bytearray):
            self._outgoing.append(bytes(data))
            return
        super().send(data)


_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


class Etsi014Client:
    """A client of one KME for one SAE (the SAE's identity is its client certificate).

    ``base_url`` is ``https://host:port`` (optionally with a path prefix before ``/api/v1``).
    ``ca_file`` is the CA that signed the KME's certificate; ``cert_file``/``key_file`` are the
    SAE's client certificate and key.  ``server_hostname`` is the name the KME certificate must
    carry (default: the URL's host); ``expected_kme_id``, when given, must equal the
    certificate's subject CN.  ``connect_timeout`` bounds TCP connect plus TLS handshake,
    ``read_timeout`` each wait for the answer.  Thread-safe (requests are serialised on one
    keep-alive connection).
    """

    def __init__(
        self,
        base_url: str,
        *,
        ca_file: str | os.PathLike[str] | None = None,
        cert_file: str | os.PathLike[str] | None = None,
        key_file: str | os.PathLike[str] | None = None,
        server_hostname: str | None = None,
        expected_kme_id: str | None = None,
        connect_timeout: float = 3.0,
        read_timeout: float = 5.0,
        retry: RetryPolicy | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme != "https" or not parts.hostname:
            raise UsageError(f"KME URL must be https://host[:port][/prefix], got {base_url!r}")
        if parts.query or parts.fragment:
            raise UsageError(f"KME URL must not carry a query or fragment: {base_url!r}")
        if connect_timeout <= 0 or read_timeout <= 0:
            raise UsageError("connect_timeout and read_timeout must be positive")
        self.base_url = base_url.rstrip("/")
        self._host = parts.hostname
        self._port = parts.port or 443
        self._prefix = parts.path.rstrip("/") + API_PREFIX
        self._server_hostname = server_hostname or parts.hostname
        self._expected_kme_id = expected_kme_id
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.retry = retry or RetryPolicy()
        if ssl_context is None:
            if ca_file is None:
                raise UsageError("ca_file is needed to verify the KME (or pass ssl_context)")
            ssl_context = self.make_ssl_context(ca_file, cert_file, key_file)
        self._tls = ssl_context
        self._conn: _KmeConnection | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Etsi014Client({self.base_url!r}, server_hostname={self._server_hostname!r})"

    @staticmethod
    def make_ssl_context(
        ca_file: str | os.PathLike[str],
        cert_file: str | os.PathLike[str] | None,
        key_file: str | os.PathLike[str] | None,
    ) -> ssl.SSLContext:
        """TLS >= 1.2 client context that verifies the KME and presents the SAE certificate."""
        try:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=os.fspath(ca_file))
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            if cert_file is not None:
                ctx.load_cert_chain(os.fspath(cert_file),
                                    None if key_file is None else os.fspath(key_file))
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(f"cannot load TLS credentials: {exc}") from None
        return ctx

    # ----------------------------------------------------------------- connection management
    def close(self) -> None:
        """Close the keep-alive connection (a later request opens a new one)."""
        with self._lock:
            self._drop()

    def __enter__(self) -> Etsi014Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _open(self) -> _KmeConnection:
        conn = _KmeConnection(
            self._host,
            self._port,
            tls=self._tls,
            server_hostname=self._server_hostname,
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
        )
        conn.connect()
        if self._expected_kme_id is not None:
            sock = conn.sock
            assert isinstance(sock, ssl.SSLSocket)
            cn = _subject_cn(sock.getpeercert())
            if cn != self._expected_kme_id:
                conn.close()
                raise KmeConnectionError(
                    f"KME at {self._where()} presents identity {cn!r}, expected "
                    f"{self._expected_kme_id!r}"
                )
        return conn

    def _where(self) -> str:
        return f"{self._host}:{self._port}"

    def _once(self, method: str, path: str, body: bytes | None) -> RawResponse:
        """One request/answer on the keep-alive connection (one silent reconnect if stale)."""
        headers = {"Accept": "application/json", "Host": self._server_hostname}
        if body is not None:
            headers["Content-Type"] = "application/json"
        for attempt in (0, 1):
            reused = self._conn is not None
            try:
                if self._conn is None:
                    self._conn = self._open()
                conn = self._conn
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                length = resp.getheader("Content-Length")
                if length is not None and length.isdigit() and int(length) > MAX_RESPONSE_OCTETS:
                    self._drop()
                    raise KmeProtocolError(
                        f"KME answer of {length} octets exceeds {MAX_RESPONSE_OCTETS}"
                    )
                data = resp.read(MAX_RESPONSE_OCTETS + 1)
                if len(data) > MAX_RESPONSE_OCTETS:
                    self._drop()
                    raise KmeProtocolError(f"KME answer exceeds {MAX_RESPONSE_OCTETS} octets")
                if resp.will_close:
                    self._drop()
                ctype = (resp.getheader("Content-Type") or "").split(";")[0].strip().lower()
                return RawResponse(resp.status, ctype, data)
            except KmeError:
                self._drop()
                raise
            except _STALE as exc:
                self._drop()
                if reused and attempt == 0:
                    # the KME closed an idle keep-alive connection: open a new one, once
                    log.debug("KME %s closed the idle connection (%s); reconnecting",
                              self._where(), type(exc).__name__)
                    continue
                raise KmeConnectionError(
                    f"KME at {self._where()} closed the connection without an answer "
                    f"({type(exc).__name__})"
                ) from None
            except TimeoutError:
                self._drop()
                raise KmeConnectionError(
                    f"KME at {self._where()} timed out (connect {self.connect_timeout} s, "
                    f"read {self.read_timeout} s) on {method} {path}"
                ) from None
            except ssl.SSLCertVerificationError as exc:
                self._drop()
                raise KmeConnectionError(
                    f"KME at {self._where()} failed TLS authentication: "
                    f"{exc.verify_message or exc.reason} (expected {self._server_hostname!r})"
                ) from None
            except ssl.SSLError as exc:
                self._drop()
                raise KmeConnectionError(
                    f"TLS failure with KME at {self._where()}: {exc.reason or exc}"
                ) from None
            except OSError as exc:
                self._drop()
                raise KmeConnectionError(
                    f"cannot reach KME at {self._where()}: {exc.strerror or type(exc).__name__}"
                ) from None
            except http.client.HTTPException as exc:
                self._drop()
                raise KmeProtocolError(
                    f"KME at {self._where()} sent a malformed HTTP answer ({type(exc).__name__})"
                ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def raw_request(self, method: str, path: str, body: bytes | None = None) -> RawResponse:
        """Send one request (no retry, no status mapping): a sharp tool for conformance tests.

        ``path`` is relative to the API prefix, e.g. ``"SAE_B/status"``, or absolute when it
        starts with ``/``.
        """
        full = path if path.startswith("/") else f"{self._prefix}/{path}"
        with self._lock:
            return self._once(method, full, body)

    def _call(self, method: str, path: str, payload: Any | None = None) -> Any:
        """Request with 503 retries and status mapping; the decoded JSON of a 200 answer."""
        body = None if payload is None else json.dumps(payload).encode()
        full = f"{self._prefix}/{path}"
        delays = self.retry.delays()
        started = time.monotonic()
        while True:
            with self._lock:
                resp = self._once(method, full, body)
            if resp.status == 200:
                log.debug("%s %s -> 200 in %.1f ms", method, full,
                          (time.monotonic() - started) * 1e3)
                if resp.content_type not in ("application/json", ""):
                    raise KmeProtocolError(
                        f"KME answered {method} {full} with Content-Type {resp.content_type!r}, "
                        "not application/json"
                    )
                return resp.json()
            message = _error_message(resp)
            if resp.status == 503:
                delay = next(delays, None)
                if delay is not None:
                    log.debug("%s %s -> 503 (%s); retry in %.3f s", method, full, message, delay)
                    time.sleep(delay)
                    continue
                raise KmeUnavailable(
                    f"KME at {self._where()} answered 503 to {method} {full} after "
                    f"{self.retry.max_retries} retries: {message}"
                )
            what = f"KME at {self._where()} answered {resp.status} to {method} {full}: {message}"
            if resp.status == 400:
                raise KmeBadRequest(what)
            if resp.status == 401:
                raise KmeUnauthorized(what)
            raise KmeProtocolError(f"{what} (not a status of ETSI GS QKD 014)")

    # ----------------------------------------------------------------- the three API methods
    def status(self, slave_sae_id: str) -> KmeStatus:
        """*Get status* for keys shared with ``slave_sae_id``."""
        return parse_status(self._call("GET", f"{_quote(slave_sae_id)}/status"))

    def enc_keys(
        self,
        slave_sae_id: str,
        number: int | None = None,
        size: int | None = None,
        *,
        additional_slave_sae_ids: Sequence[str] = (),
        extension_mandatory: Sequence[Mapping[str, Any]] | None = None,
        extension_optional: Sequence[Mapping[str, Any]] | None = None,
        method: str = "POST",
    ) -> KeyContainer:
        """*Get key* (master SAE): ``number`` new keys of ``size`` bits shared with the slave(s).

        ``None`` leaves the KME defaults (1 key; the Status ``key_size``).  ``method="GET"``
        carries only ``number`` and ``size`` (the spec's GET form).
        """
        _check_count("number", number)
        _check_count("size", size)
        path = f"{_quote(slave_sae_id)}/enc_keys"
        if method == "GET":
            if additional_slave_sae_ids or extension_mandatory or extension_optional:
                raise UsageError(
                    "the GET form of Get key carries only number and size; use POST"
                )
            query = {k: v for k, v in (("number", number), ("size", size)) if v is not None}
            data = self._call("GET", path + (f"?{urllib.parse.urlencode(query)}" if query else ""))
        elif method == "POST":
            request: dict[str, Any] = {}
            if number is not None:
                request["number"] = number
            if size is not None:
                request["size"] = size
            if additional_slave_sae_ids:
                request["additional_slave_SAE_IDs"] = list(additional_slave_sae_ids)
            if extension_mandatory is not None:
                request["extension_mandatory"] = [dict(e) for e in extension_mandatory]
            if extension_optional is not None:
                request["extension_optional"] = [dict(e) for e in extension_optional]
            data = self._call("POST", path, request)
        else:
            raise UsageError(f"method must be 'GET' or 'POST', got {method!r}")
        expected = None if size is None else (size + 7) // 8
        container = parse_key_container(data, expected_octets=expected)
        wanted = 1 if number is None else number
        if len(container.keys) != wanted:
            raise KmeProtocolError(
                f"KME delivered {len(container.keys)} keys, {wanted} were requested",
                field="keys",
            )
        return container

    def dec_keys(
        self,
        master_sae_id: str,
        key_ids: Sequence[uuid.UUID | str],
        *,
        method: str = "POST",
    ) -> KeyContainer:
        """*Get key with key IDs* (slave SAE): the keys the master received, in ``key_ids`` order.

        ``method="GET"`` sends ``?key_ID=`` and takes exactly one key ID.
        """
        ids = [k if isinstance(k, uuid.UUID) else _as_uuid(k) for k in key_ids]
        if not ids:
            raise UsageError("dec_keys needs at least one key ID")
        if len(set(ids)) != len(ids):
            raise UsageError("dec_keys key IDs must be distinct")
        path = f"{_quote(master_sae_id)}/dec_keys"
        if method == "GET":
            if len(ids) != 1:
                raise UsageError(f"the GET form of Get key with key IDs takes one key ID, got {len(ids)}")
            data = self._call("GET", f"{path}?{urllib.parse.urlencode({'key_ID': str(ids[0])})}")
        elif method == "POST":
            data = self._call("POST", path, {"key_IDs": [{"key_ID": str(i)} for i in ids]})
        else:
            raise UsageError(f"method must be 'GET' or 'POST', got {method!r}")
        container = parse_key_container(data)
        by_id = {k.key_id: k for k in container.keys}
        if set(by_id) != set(ids):
            missing = len(set(ids) - set(by_id))
            extra = len(set(by_id) - set(ids))
            raise KmeProtocolError(
                f"KME answered with other key IDs than requested ({missing} missing, "
                f"{extra} not requested)",
                field="key_ID",
            )
        return KeyContainer(tuple(by_id[i] for i in ids), container.key_container_extension)


def _quote(sae_id: str) -> str:
    if not isinstance(sae_id, str) or not sae_id:
        raise UsageError(f"SAE ID must be a non-empty string, got {sae_id!r}")
    return urllib.parse.quote(sae_id, safe="")


def _check_count(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise UsageError(f"{name} must be a positive integer, got {value!r}")


def _as_uuid(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(text))
    except ValueError:
        raise UsageError(f"key ID {str(text)[:64]!r} is not a UUID") from None


def _subject_cn(cert: Mapping[str, Any] | None) -> str | None:
    for rdn in (cert or {}).get("subject", ()):
        for name, value in rdn:
            if name == "commonName":
                return str(value)
    return None


def _error_message(resp: RawResponse) -> str:
    """The Error ``message`` of a KME answer, shortened and made printable."""
    try:
        obj = json.loads(resp.body)
        text = obj.get("message") if isinstance(obj, dict) else None
    except (ValueError, UnicodeDecodeError):
        text = None
    if not isinstance(text, str):
        return f"(no Error message; {len(resp.body)} octets of {resp.content_type or 'unknown type'})"
    text = text[:_MAX_QUOTED]
    return "".join(c if c.isprintable() else "?" for c in text)


# --------------------------------------------------------------------------- KeyFetcher adapter
class Etsi014KeyFetcher:
    """The key buffer's ``KeyFetcher`` over an :class:`Etsi014Client`.

    At the master end ``fetch_new(count, size_bits)`` calls *Get key* for ``peer_sae_id`` (the
    slave); at the slave end ``fetch_by_ids(key_ids)`` calls *Get key with key IDs* for
    ``peer_sae_id`` (the master).  Requests are split at the KME's ``max_key_per_request``
    (read once from *Get status* at the master end, or given).

    ``fetch_new`` delivers *up to* ``count`` keys: if a later chunk fails, the keys of the
    earlier chunks are returned (the KME released them; dropping them would waste them) and the
    caller may ask again.  ``fetch_by_ids`` delivers exactly the asked IDs or raises; keys of
    chunks fetched before a failure are kept aside and handed out when asked for again, so a
    retried sync loses nothing (the KME releases each key only once).
    """

    def __init__(
        self,
        client: Etsi014Client,
        *,
        peer_sae_id: str,
        max_keys_per_request: int | None = None,
        source_name: str | None = None,
    ) -> None:
        _quote(peer_sae_id)
        if max_keys_per_request is not None and max_keys_per_request < 1:
            raise UsageError(f"max_keys_per_request must be positive, got {max_keys_per_request}")
        self.client = client
        self.peer_sae_id = peer_sae_id
        self._chunk = max_keys_per_request
        #: keys released by the KME in a fetch_by_ids that failed later, kept for the retry
        self._stash: dict[uuid.UUID, QkdKey] = {}
        self.source_name = source_name or f"etsi014:{client.base_url}"

    def __repr__(self) -> str:
        return f"Etsi014KeyFetcher({self.client!r}, peer_sae_id={self.peer_sae_id!r})"

    def _chunk_size(self, *, master: bool) -> int:
        if self._chunk is None:
            try:
                # at the slave end this asks about keys towards the master: the same KME limits
                self._chunk = self.client.status(self.peer_sae_id).max_key_per_request
            except (KmeBadRequest, KmeUnauthorized):
                if master:
                    raise
                self._chunk = 0  # this KME will not tell a slave: one request for all IDs
        return self._chunk or 1 << 30

    def _to_qkd(self, key: EtsiKey) -> QkdKey:
        return QkdKey(key.key_id, key.key, source=self.source_name)

    def fetch_new(self, count: int, size_bits: int) -> list[QkdKey]:
        """``count`` new keys of ``size_bits`` bits (a multiple of 8) from the master's KME."""
        if count < 1:
            raise UsageError(f"count must be positive, got {count}")
        if size_bits < 8 or size_bits % 8:
            raise UsageError(f"size_bits must be a positive multiple of 8, got {size_bits}")
        chunk = max(1, self._chunk_size(master=True))
        keys: list[QkdKey] = []
        while len(keys) < count:
            n = min(chunk, count - len(keys))
            try:
                container = self.client.enc_keys(self.peer_sae_id, n, size_bits)
            except KmeError:
                if keys:
                    log.warning("KME failed after %d of %d keys; returning those", len(keys), count)
                    return keys
                raise
            keys.extend(self._to_qkd(k) for k in container.keys)
        return keys

    def fetch_by_ids(self, key_ids: Sequence[uuid.UUID]) -> list[QkdKey]:
        """The keys with these IDs from the slave's KME, in the given order."""
        ids = list(key_ids)
        if not ids:
            return []
        if len(set(ids)) != len(ids):
            raise UsageError("fetch_by_ids key IDs must be distinct")
        got: dict[uuid.UUID, QkdKey] = {i: self._stash.pop(i) for i in ids if i in self._stash}
        missing = [i for i in ids if i not in got]
        chunk = self._chunk_size(master=False) if missing else 1
        for start in range(0, len(missing), chunk):
            try:
                container = self.client.dec_keys(self.peer_sae_id, missing[start:start + chunk])
            except KmeError:
                if got:
                    # released by the KME already: keep them for the retry
                    self._stash.update(got)
                    log.warning("KME failed after %d of %d keys by ID; %d kept for a retry",
                                len(got), len(ids), len(got))
                raise
            got.update((k.key_id, self._to_qkd(k)) for k in container.keys)
        return [got[i] for i in ids]
