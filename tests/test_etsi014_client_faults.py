"""The ETSI 014 client against faulty KMEs on real loopback sockets.

Each fault becomes a typed ``sdls_qkd.errors`` exception within the configured timeout (plus a
margin for a loaded 2-core machine), and the KME's key pool shows that no key was lost or
released twice.  Fake servers here are real TCP/TLS servers that misbehave on purpose.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdls_qkd.errors import (
    KmeBadRequest,
    KmeConnectionError,
    KmeError,
    KmeProtocolError,
    KmeUnauthorized,
    KmeUnavailable,
    UsageError,
)
from sdls_qkd.keys.certs import LocalPki, create_local_pki
from sdls_qkd.keys.etsi014 import Etsi014Client, Etsi014KeyFetcher, EtsiKey, RetryPolicy
from sdls_qkd.keys.kme import KmePair, KmeServer, server_tls_context
from sdls_qkd.keys.source import RandomKeySource

TIMEOUT = 0.8
MARGIN = 1.5  # scheduling slack on a shared 2-core machine


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LocalPki:
    return create_local_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def foreign_pki(tmp_path_factory: pytest.TempPathFactory) -> LocalPki:
    """Same IDs and host names, another CA."""
    return create_local_pki(tmp_path_factory.mktemp("foreign"))


@pytest.fixture()
def pair(pki: LocalPki) -> Iterator[KmePair]:
    with KmePair.start(pki) as p:
        yield p


def client_for(pki: LocalPki, url: str, sae: str | None = "SAE_A", **kw: Any) -> Etsi014Client:
    kw.setdefault("connect_timeout", TIMEOUT)
    kw.setdefault("read_timeout", TIMEOUT)
    kw.setdefault("retry", RetryPolicy(max_retries=0))
    files = pki.sae(sae) if sae else None
    return Etsi014Client(
        url, ca_file=pki.ca_file,
        cert_file=files.cert_file if files else None,
        key_file=files.key_file if files else None, **kw,
    )


def timed(fn: Callable[[], Any], exc: type[BaseException]) -> tuple[BaseException, float]:
    started = time.monotonic()
    with pytest.raises(exc) as info:
        fn()
    return info.value, time.monotonic() - started


def untouched(pair: KmePair, *, answered: bool = False) -> None:
    """No key was issued or redeemed (and, unless ``answered``, no request was served)."""
    stats = pair.pool.stats()
    assert (stats.issued, stats.redeemed, stats.pending) == (0, 0, 0)
    if not answered:
        for server in (pair.a, pair.b):
            assert "200" not in server.counters


def counted(server: KmeServer, name: str) -> int:
    """A counter of the KME once it is non-zero (a failed handshake is counted after the close
    the client already saw), or 0 after a few seconds."""
    deadline = time.monotonic() + 5
    while server.counters.get(name, 0) == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    return server.counters.get(name, 0)


# --------------------------------------------------------------------------- fake servers
class SilentServer:
    """Accepts TCP connections and never sends a byte (the TLS handshake never completes)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for c in self.held:
            c.close()


class TlsRawServer:
    """Completes mutual TLS, reads the request, then sends ``reply`` (or nothing at all)."""

    def __init__(self, pki: LocalPki, reply: bytes | None) -> None:
        kme = pki.kme("KME_A")
        self.tls = server_tls_context(kme.cert_file, kme.key_file, pki.ca_file)
        self.reply = reply
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            try:
                conn = self.tls.wrap_socket(raw, server_side=True)
                conn.recv(65536)
                if self.reply is not None:
                    conn.sendall(self.reply)
                self.held.append(conn)
            except OSError:
                raw.close()

    def close(self) -> None:
        self.sock.close()
        for c in self.held:
            c.close()


class CannedKme:
    """A real HTTPS server (mutual TLS, KME_A's certificate) giving canned answers."""

    def __init__(self, pki: LocalPki) -> None:
        self.answers: list[tuple[int, str, bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                if length:
                    self.rfile.read(length)
                status, ctype, body = outer.answers.pop(0)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        kme = pki.kme("KME_A")
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        tls = server_tls_context(kme.cert_file, kme.key_file, pki.ca_file)
        self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class FlakySource(RandomKeySource):
    """Key material that is unavailable for the first ``failures`` requests."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def take(self, n_bits: int) -> bytes | None:
        if self.failures > 0:
            self.failures -= 1
            return None
        return super().take(n_bits)


# --------------------------------------------------------------------------- unreachable KMEs
def test_kme_down_is_connection_error(pki: LocalPki) -> None:
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    with client_for(pki, f"https://127.0.0.1:{port}") as client:
        exc, elapsed = timed(lambda: client.enc_keys("SAE_B", 1), KmeConnectionError)
    assert elapsed < TIMEOUT + MARGIN
    assert "cannot reach" in str(exc)


def test_kme_that_accepts_and_never_answers_times_out(pki: LocalPki) -> None:
    silent = SilentServer()
    try:
        with client_for(pki, f"https://127.0.0.1:{silent.port}") as client:
            exc, elapsed = timed(lambda: client.enc_keys("SAE_B", 1), KmeConnectionError)
    finally:
        silent.close()
    assert "timed out" in str(exc)
    assert TIMEOUT * 0.9 <= elapsed < TIMEOUT + MARGIN


def test_kme_that_completes_tls_and_never_answers_times_out(pki: LocalPki) -> None:
    mute = TlsRawServer(pki, reply=None)
    try:
        with client_for(pki, f"https://127.0.0.1:{mute.port}", read_timeout=0.5) as client:
            exc, elapsed = timed(lambda: client.status("SAE_B"), KmeConnectionError)
    finally:
        mute.close()
    assert "timed out" in str(exc)
    assert 0.45 <= elapsed < 0.5 + MARGIN


def test_kme_that_speaks_no_http_is_protocol_error(pki: LocalPki) -> None:
    babbler = TlsRawServer(pki, reply=b"SSH-2.0-OpenSSH_9.0\r\n\r\n")
    try:
        with client_for(pki, f"https://127.0.0.1:{babbler.port}") as client:
            _, elapsed = timed(lambda: client.status("SAE_B"), KmeProtocolError)
    finally:
        babbler.close()
    assert elapsed < TIMEOUT + MARGIN


# --------------------------------------------------------------------------- TLS authentication
def test_server_certificate_from_another_ca(pki: LocalPki, foreign_pki: LocalPki) -> None:
    with KmePair.start(foreign_pki) as impostor, client_for(pki, impostor.a.url) as client:
        exc, elapsed = timed(lambda: client.enc_keys("SAE_B", 1), KmeConnectionError)
        assert "certificate" in str(exc)
        assert elapsed < TIMEOUT + MARGIN
        untouched(impostor)


def test_server_certificate_for_another_host(pair: KmePair, pki: LocalPki) -> None:
    with client_for(pki, pair.a.url, server_hostname="kme.ground.example") as client:
        exc, elapsed = timed(lambda: client.enc_keys("SAE_B", 1), KmeConnectionError)
    assert "kme.ground.example" in str(exc) and elapsed < TIMEOUT + MARGIN
    untouched(pair)


def test_server_with_another_kme_identity(pair: KmePair, pki: LocalPki) -> None:
    # KME_B's certificate is valid for the host, but this SAE expects to talk to KME_A
    with client_for(pki, pair.b.url, sae="SAE_B", expected_kme_id="KME_A") as client:
        exc, _ = timed(lambda: client.enc_keys("SAE_A", 1), KmeConnectionError)
    assert "KME_B" in str(exc)
    untouched(pair)


def test_client_without_certificate_is_refused(pair: KmePair, pki: LocalPki) -> None:
    with client_for(pki, pair.a.url, sae=None) as client:
        _, elapsed = timed(lambda: client.enc_keys("SAE_B", 1), KmeConnectionError)
    assert elapsed < TIMEOUT + MARGIN
    untouched(pair)
    assert counted(pair.a, "tls_failures") >= 1


def test_client_certificate_from_another_ca_is_refused(pair: KmePair, pki: LocalPki,
                                                       foreign_pki: LocalPki) -> None:
    sae = foreign_pki.sae("SAE_A")
    with Etsi014Client(pair.a.url, ca_file=pki.ca_file, cert_file=sae.cert_file,
                       key_file=sae.key_file, connect_timeout=TIMEOUT,
                       read_timeout=TIMEOUT) as client:
        timed(lambda: client.enc_keys("SAE_B", 1), KmeConnectionError)
    untouched(pair)


def test_server_certificate_cannot_act_as_sae(pair: KmePair, pki: LocalPki) -> None:
    # a KME certificate (EKU serverAuth only) named like an SAE is no client certificate
    fake = pki.authority().issue("SAE_A", server_hosts=["localhost"], server=True)
    files = fake.write(pki.directory / "fake.crt", pki.directory / "fake.key")
    with Etsi014Client(pair.a.url, ca_file=pki.ca_file, cert_file=files.cert_file,
                       key_file=files.key_file, connect_timeout=TIMEOUT,
                       read_timeout=TIMEOUT) as client:
        timed(lambda: client.enc_keys("SAE_B", 1), KmeConnectionError)
    untouched(pair)


def test_sae_identity_from_san_when_no_cn(pair: KmePair, pki: LocalPki) -> None:
    issued = pki.authority().issue(None, san_names=["SAE_A"], client=True)
    files = issued.write(pki.directory / "san.crt", pki.directory / "san.key")
    with Etsi014Client(pair.a.url, ca_file=pki.ca_file, cert_file=files.cert_file,
                       key_file=files.key_file) as client:
        assert client.status("SAE_B").master_SAE_ID == "SAE_A"


def test_unlisted_sae_with_valid_certificate_is_401(pair: KmePair, pki: LocalPki) -> None:
    issued = pki.authority().issue("SAE_Z", client=True)
    files = issued.write(pki.directory / "z.crt", pki.directory / "z.key")
    with Etsi014Client(pair.a.url, ca_file=pki.ca_file, cert_file=files.cert_file,
                       key_file=files.key_file) as client, \
            pytest.raises(KmeUnauthorized, match="SAE_Z"):
        client.enc_keys("SAE_B", 1)
    untouched(pair)


# --------------------------------------------------------------------------- 503 and retries
def test_503_is_retried_with_backoff_then_unavailable(pki: LocalPki) -> None:
    policy = RetryPolicy(max_retries=3, initial_backoff=0.05, multiplier=2.0)
    with KmePair.start(pki, source=FlakySource(failures=1_000)) as pair, \
            client_for(pki, pair.a.url, retry=policy) as client:
        exc, elapsed = timed(lambda: client.enc_keys("SAE_B", 2), KmeUnavailable)
        assert pair.a.counters["503"] == 4  # 1 try + 3 retries
        assert 0.05 + 0.1 + 0.2 <= elapsed < 0.35 + 4 * TIMEOUT + MARGIN
        assert "503" in str(exc)
        untouched(pair)


def test_503_then_success_delivers_each_key_once(pki: LocalPki) -> None:
    policy = RetryPolicy(max_retries=3, initial_backoff=0.01)
    with KmePair.start(pki, source=FlakySource(failures=2)) as pair, \
            client_for(pki, pair.a.url, retry=policy) as master, \
            client_for(pki, pair.b.url, sae="SAE_B") as slave:
        keys = master.enc_keys("SAE_B", 3, 256)
        assert pair.a.counters["503"] == 2 and pair.a.counters["200"] == 1
        stats = pair.pool.stats()
        assert (stats.issued, stats.pending) == (3, 3)  # the 503s issued nothing
        got = slave.dec_keys("SAE_A", keys.key_ids)
        assert [k.key for k in got.keys] == [k.key for k in keys.keys]
        assert pair.pool.stats().pending == 0
        with pytest.raises(KmeBadRequest, match="already retrieved"):
            slave.dec_keys("SAE_A", keys.key_ids[:1])


def test_400_and_401_are_not_retried(pair: KmePair, pki: LocalPki) -> None:
    policy = RetryPolicy(max_retries=3, initial_backoff=0.2)
    with client_for(pki, pair.b.url, sae="SAE_B", retry=policy) as slave:
        _, elapsed = timed(lambda: slave.dec_keys("SAE_A", [uuid.uuid4()]), KmeBadRequest)
        assert elapsed < 0.2 and pair.b.counters["400"] == 1
    with client_for(pki, pair.b.url, sae="SAE_A", retry=policy) as stranger:
        _, elapsed = timed(lambda: stranger.enc_keys("SAE_B", 1), KmeUnauthorized)
        assert elapsed < 0.2 and pair.b.counters["401"] == 1


def test_empty_link_shows_zero_stored_keys_and_503(pki: LocalPki) -> None:
    source = RandomKeySource(capacity_bits=4096, rate_bps=1.0, initial_bits=0)
    with KmePair.start(pki, source=source) as pair, client_for(pki, pair.a.url) as client:
        assert client.status("SAE_B").stored_key_count == 0
        timed(lambda: client.enc_keys("SAE_B", 1), KmeUnavailable)
        untouched(pair, answered=True)


# --------------------------------------------------------------------------- malformed answers
KEY_ID = str(uuid.uuid4())
SECRET = base64.b64encode(b"\x5a" * 16).decode()


def _container(*entries: dict[str, Any]) -> bytes:
    return json.dumps({"keys": list(entries)}).encode()


MALFORMED = {
    "not-json": (200, "application/json", b"{keys: oops"),
    "json-array": (200, "application/json", b"[]"),
    "html": (200, "text/html", b"<html>keys</html>"),
    "no-keys": (200, "application/json", b"{}"),
    "key-id-not-uuid": (200, "application/json", _container({"key_ID": "k1", "key": SECRET})),
    "bad-base64": (200, "application/json", _container({"key_ID": KEY_ID, "key": "%%%="})),
    "wrong-size": (200, "application/json", _container({"key_ID": KEY_ID, "key": SECRET})),
    "two-keys": (200, "application/json", _container(
        {"key_ID": KEY_ID, "key": SECRET * 2}, {"key_ID": str(uuid.uuid4()), "key": SECRET * 2})),
    "dup-ids": (200, "application/json", _container(
        {"key_ID": KEY_ID, "key": SECRET}, {"key_ID": KEY_ID, "key": SECRET})),
    "status-500": (500, "application/json", b'{"message": "boom"}'),
    "status-404": (404, "text/plain", b"not found"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_key_container_is_protocol_error(pki: LocalPki, case: str) -> None:
    fake = CannedKme(pki)
    fake.answers.append(MALFORMED[case])
    try:
        with client_for(pki, f"https://127.0.0.1:{fake.port}",
                        server_hostname="localhost") as client:
            exc, elapsed = timed(lambda: client.enc_keys("SAE_B", 1, 256), KmeProtocolError)
    finally:
        fake.close()
    assert elapsed < TIMEOUT + MARGIN
    assert SECRET not in str(exc) and SECRET[:12] not in repr(exc)


@pytest.mark.parametrize("status_obj", [
    {"source_KME_ID": "KME_A"},
    {"source_KME_ID": "KME_A", "target_KME_ID": "KME_B", "master_SAE_ID": "SAE_A",
     "slave_SAE_ID": "SAE_B", "key_size": "256", "stored_key_count": 1, "max_key_count": 1,
     "max_key_per_request": 1, "max_key_size": 256, "min_key_size": 64, "max_SAE_ID_count": 0},
    {"source_KME_ID": "KME_A", "target_KME_ID": "KME_B", "master_SAE_ID": "SAE_A",
     "slave_SAE_ID": "SAE_B", "key_size": 256, "stored_key_count": 1, "max_key_count": 1,
     "max_key_per_request": True, "max_key_size": 256, "min_key_size": 64, "max_SAE_ID_count": 0},
], ids=["missing-fields", "string-int", "bool-int"])
def test_malformed_status_is_protocol_error(pki: LocalPki, status_obj: dict[str, Any]) -> None:
    fake = CannedKme(pki)
    fake.answers.append((200, "application/json", json.dumps(status_obj).encode()))
    try:
        with client_for(pki, f"https://127.0.0.1:{fake.port}") as client:
            timed(lambda: client.status("SAE_B"), KmeProtocolError)
    finally:
        fake.close()


def test_dec_keys_answer_with_other_ids_is_protocol_error(pki: LocalPki) -> None:
    fake = CannedKme(pki)
    fake.answers.append((200, "application/json", _container({"key_ID": KEY_ID, "key": SECRET})))
    try:
        with client_for(pki, f"https://127.0.0.1:{fake.port}", sae="SAE_B") as client:
            timed(lambda: client.dec_keys("SAE_A", [uuid.uuid4()]), KmeProtocolError)
    finally:
        fake.close()


def test_error_without_json_body_keeps_its_type(pki: LocalPki) -> None:
    fake = CannedKme(pki)
    fake.answers += [(400, "text/plain", b"nope"), (401, "text/html", b"<b>no</b>"),
                     (503, "text/plain", b"busy")]
    try:
        with client_for(pki, f"https://127.0.0.1:{fake.port}") as client:
            timed(lambda: client.enc_keys("SAE_B"), KmeBadRequest)
            timed(lambda: client.enc_keys("SAE_B"), KmeUnauthorized)
            timed(lambda: client.enc_keys("SAE_B"), KmeUnavailable)
    finally:
        fake.close()


# --------------------------------------------------------------------------- connection reuse
def test_idle_connection_closed_by_kme_is_reopened(pki: LocalPki) -> None:
    with KmePair.start(pki, idle_timeout=0.2) as pair, client_for(pki, pair.a.url) as client:
        client.status("SAE_B")
        time.sleep(0.5)  # the KME closes the idle keep-alive connection
        client.status("SAE_B")
        assert pair.a.counters["connections"] == 2 and pair.a.counters["200"] == 2


def test_kme_stop_closes_kept_alive_connections(pki: LocalPki) -> None:
    pair = KmePair.start(pki)
    client = client_for(pki, pair.a.url)
    client.status("SAE_B")
    pair.stop()
    timed(lambda: client.status("SAE_B"), KmeConnectionError)
    client.close()


# --------------------------------------------------------------------------- secrecy and usage
def test_key_material_never_in_repr_or_str(pair: KmePair, pki: LocalPki) -> None:
    with client_for(pki, pair.a.url) as client:
        container = client.enc_keys("SAE_B", 2, 256)
    for key in container.keys:
        for text in (repr(key), str(key), repr(container), str(container)):
            assert key.key.hex() not in text
            assert base64.b64encode(key.key).decode() not in text
    assert "key=" not in repr(EtsiKey(uuid.uuid4(), b"\x01" * 32))


def test_client_refuses_misuse(pki: LocalPki) -> None:
    with pytest.raises(UsageError):
        Etsi014Client("http://127.0.0.1:1", ca_file=pki.ca_file)
    with pytest.raises(UsageError):
        Etsi014Client("https://127.0.0.1:1")  # no CA to verify the KME
    client = client_for(pki, "https://127.0.0.1:1")
    with pytest.raises(UsageError):
        client.enc_keys("SAE_B", 0)
    with pytest.raises(UsageError):
        client.enc_keys("SAE_B", 1, method="GET", extension_optional=[{"x": 1}])
    with pytest.raises(UsageError):
        client.dec_keys("SAE_A", [uuid.uuid4(), uuid.uuid4()], method="GET")
    with pytest.raises(UsageError):
        client.dec_keys("SAE_A", ["not-a-uuid"])


# --------------------------------------------------------------------------- KeyFetcher adapter
def test_fetcher_master_and_slave_ends_share_keys(pki: LocalPki) -> None:
    with KmePair.start(pki, max_key_per_request=4) as pair, \
            client_for(pki, pair.a.url) as master, \
            client_for(pki, pair.b.url, sae="SAE_B") as slave:
        master_end = Etsi014KeyFetcher(master, peer_sae_id="SAE_B")
        slave_end = Etsi014KeyFetcher(slave, peer_sae_id="SAE_A")  # learns 4 from status
        sent = master_end.fetch_new(10, 256)  # three requests of at most 4 keys
        assert len(sent) == 10 and pair.a.counters["200"] == 1 + 3  # status + 3 enc_keys
        assert all(k.size_bits == 256 for k in sent)
        received = slave_end.fetch_by_ids([k.key_id for k in reversed(sent)])
        assert [k.key_id for k in received] == [k.key_id for k in reversed(sent)]
        assert [k.material for k in received] == [k.material for k in reversed(sent)]
        assert pair.pool.stats().pending == 0
        with pytest.raises(KmeBadRequest):
            slave_end.fetch_by_ids([sent[0].key_id])
        with pytest.raises(UsageError):
            master_end.fetch_new(1, 250)


def test_fetcher_returns_keys_of_chunks_before_a_failure(pki: LocalPki) -> None:
    source = RandomKeySource(capacity_bits=6 * 256, rate_bps=1e-3)
    with KmePair.start(pki, source=source, max_key_per_request=4) as pair, \
            client_for(pki, pair.a.url) as master:
        fetcher = Etsi014KeyFetcher(master, peer_sae_id="SAE_B")
        got = fetcher.fetch_new(8, 256)  # 4 keys, then 503 for the next 4 (only 2 left)
        assert len(got) == 4 and pair.pool.stats().pending == 4
        with pytest.raises(KmeError):
            fetcher.fetch_new(4, 256)


# --------------------------------------------------------------------------- simulator robustness
def test_internal_fault_of_the_kme_is_503_and_it_keeps_serving(pki: LocalPki) -> None:
    class BrokenSource(RandomKeySource):
        def take(self, n_bits: int) -> bytes | None:
            raise RuntimeError("QKD post-processing crashed")

    with KmePair.start(pki, source=BrokenSource()) as pair, client_for(pki, pair.a.url) as client:
        resp = client.raw_request("POST", "SAE_B/enc_keys", b"{}")
        assert resp.status == 503 and resp.json() == {"message": "internal error of the KME"}
        assert client.status("SAE_B").master_SAE_ID == "SAE_A"  # same connection, still up
        untouched(pair, answered=True)


def test_full_key_store_is_503(pki: LocalPki) -> None:
    with KmePair.start(pki, max_pending=3) as pair, client_for(pki, pair.a.url) as client:
        client.enc_keys("SAE_B", 3)
        timed(lambda: client.enc_keys("SAE_B", 1), KmeUnavailable)
        assert pair.pool.stats().issued == 3


def test_random_source_rate_limit_and_octets() -> None:
    now = [0.0]
    source = RandomKeySource(capacity_bits=1000, rate_bps=100.0, initial_bits=0,
                             clock=lambda: now[0])
    assert source.available_bits() == 0 and source.take(8) is None
    now[0] = 2.0
    assert source.available_bits() == 200
    assert source.take(256) is None  # all or nothing: nothing removed
    part = source.take(13)
    assert part is not None and len(part) == 2 and part[1] & 0x07 == 0  # 3 spare bits zero
    assert source.available_bits() == 187
    now[0] = 100.0
    assert source.available_bits() == 1000  # capped at the capacity
    with pytest.raises(UsageError):
        source.take(0)
    with pytest.raises(UsageError):
        RandomKeySource(capacity_bits=10, initial_bits=11)


def test_kme_config_refuses_impossible_limits() -> None:
    from sdls_qkd.errors import InvalidConfiguration
    from sdls_qkd.keys.kme import KmeConfig

    a, b = frozenset({"SAE_A"}), frozenset({"SAE_B"})
    with pytest.raises(InvalidConfiguration):
        KmeConfig("K1", "K2", a, a)
    with pytest.raises(InvalidConfiguration):
        KmeConfig("K1", "K2", a, b, key_size=100)
    with pytest.raises(InvalidConfiguration):
        KmeConfig("K1", "K2", a, b, min_key_size=512, key_size=256)


def test_allowed_pairs_restrict_who_shares_with_whom(pki: LocalPki) -> None:
    with KmePair.start(pki, allowed_pairs=frozenset({("SAE_A", "SAE_B")})) as pair, \
            client_for(pki, pair.a.url) as a, \
            client_for(pki, pair.b.url, sae="SAE_C") as c:
        a.enc_keys("SAE_B", 1)
        timed(lambda: a.enc_keys("SAE_C", 1), KmeUnauthorized)
        timed(lambda: c.enc_keys("SAE_A", 1), KmeUnauthorized)  # the reverse pair is (B, A)
        assert pair.pool.stats().issued == 1


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=4),
    max_leaves=12,
)
key_request_like = st.dictionaries(
    st.sampled_from(["number", "size", "additional_slave_SAE_IDs", "extension_mandatory",
                     "extension_optional", "other"]),
    json_values | st.integers(0, 300), max_size=5,
)
key_ids_like = st.one_of(
    st.dictionaries(st.sampled_from(["key_IDs", "x"]), json_values, max_size=2),
    st.builds(lambda ids: {"key_IDs": [{"key_ID": i} for i in ids]},
              st.lists(st.uuids().map(str) | st.text(max_size=40), max_size=4)),
)


@settings(max_examples=60, deadline=None)
@given(request=key_request_like, caller=st.sampled_from(["SAE_A", "SAE_B", None]),
       slave=st.sampled_from(["SAE_B", "SAE_C", "SAE_A", "nobody"]))
def test_kme_get_key_answers_only_400_401_or_keys(request: dict[str, Any], caller: str | None,
                                                  slave: str) -> None:
    from sdls_qkd.keys.kme import KeyPool, Kme, KmeConfig, KmeRejected

    pool = KeyPool(RandomKeySource())
    kme = Kme(KmeConfig("KME_A", "KME_B", frozenset({"SAE_A"}), frozenset({"SAE_B", "SAE_C"})),
              pool)
    try:
        answer = kme.get_key(caller, slave, request)
    except KmeRejected as exc:
        assert exc.status in (400, 401) and exc.message
        assert pool.stats().issued == 0  # a refused request takes no key
    else:
        assert len(answer["keys"]) == pool.stats().issued >= 1


@settings(max_examples=60, deadline=None)
@given(request=key_ids_like, caller=st.sampled_from(["SAE_B", "SAE_C", "SAE_A"]))
def test_kme_get_key_with_ids_answers_only_400_401(request: dict[str, Any], caller: str) -> None:
    from sdls_qkd.keys.kme import KeyPool, Kme, KmeConfig, KmeRejected

    pool = KeyPool(RandomKeySource())
    config = KmeConfig("KME_A", "KME_B", frozenset({"SAE_A"}), frozenset({"SAE_B", "SAE_C"}))
    master_kme, slave_kme = Kme(config, pool), Kme(config.peer_config(), pool)
    issued = master_kme.get_key("SAE_A", "SAE_B", {"number": 2})
    if isinstance(request.get("key_IDs"), list) and request["key_IDs"]:
        request["key_IDs"].append({"key_ID": issued["keys"][0]["key_ID"]})
    before = pool.stats()
    try:
        slave_kme.get_key_with_ids(caller, "SAE_A", request)
    except KmeRejected as exc:
        assert exc.status in (400, 401) and exc.message
        assert pool.stats() == before  # nothing consumed
    else:
        assert caller == "SAE_B" and pool.stats().redeemed >= 1


@settings(max_examples=80, deadline=None)
@given(obj=json_values)
def test_client_parsers_raise_only_protocol_errors(obj: Any) -> None:
    from sdls_qkd.keys.etsi014 import parse_key_container, parse_status

    for parse in (parse_status, parse_key_container,
                  lambda o: parse_key_container({"keys": o}),
                  lambda o: parse_key_container({"keys": [o]}, expected_octets=32)):
        try:
            parse(obj)
        except KmeProtocolError as exc:
            assert str(exc)


@pytest.fixture(scope="module")
def shared_pair(pki: LocalPki) -> Iterator[KmePair]:
    with KmePair.start(pki) as p:
        yield p


@settings(max_examples=60, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST"]),
    sae=st.sampled_from(["SAE_B", "SAE_A", "%53AE_B", "%FF", "a%2Fb", ""]),
    operation=st.sampled_from(["status", "enc_keys", "dec_keys", "x", "enc_keys/x"]),
    query=st.sampled_from(["", "?number=2", "?size=12", "?key_ID=1", "?number=%FF", "?&&=",
                           "?number=1&number=1", "?key_ID=" + str(uuid.UUID(int=7))]),
    body=st.binary(max_size=60) | json_values.map(lambda v: json.dumps(v).encode()),
)
def test_kme_http_never_crashes(shared_pair: KmePair, pki: LocalPki, method: str, sae: str,
                                operation: str, query: str, body: bytes) -> None:
    with client_for(pki, shared_pair.a.url) as client:
        resp = client.raw_request(method, f"{sae}/{operation}{query}", body)  # GET too
        assert resp.content_type == "application/json"
        obj = resp.json()
        if resp.status != 200:
            assert resp.status in (400, 401, 404, 405), resp.status
            assert isinstance(obj["message"], str) and obj["message"]
        client.status("SAE_B")  # the connection is still in step


def test_silent_client_does_not_block_the_kme(pki: LocalPki) -> None:
    # a peer that opens TCP and never starts TLS holds only its own thread, until the timeout
    with KmePair.start(pki, handshake_timeout=1.5) as pair:
        silent = socket.create_connection(("127.0.0.1", pair.a.port))
        try:
            with client_for(pki, pair.a.url) as client:
                client.enc_keys("SAE_B", 1, 256)
                # served while the silent peer's handshake is still pending
                assert pair.a.counters.get("tls_failures", 0) == 0
            silent.settimeout(5.0)
            assert silent.recv(1) == b""  # the KME gave up on the silent peer
            assert counted(pair.a, "tls_failures") == 1
        finally:
            silent.close()


def test_key_buffers_of_both_ends_fill_over_etsi014(pki: LocalPki) -> None:
    """End to end: the master buffer refills from KME_A, the slave buffer syncs from KME_B."""
    from sdls_qkd.keys.buffer import BufferConfig, KeyBuffer, KeyFetcher, Purpose, Reservation
    from sdls_qkd.store.memory import MemoryStore

    config = BufferConfig(low_watermark=2, high_watermark=8, fetch_batch=4)
    with KmePair.start(pki, max_key_per_request=3) as pair, \
            client_for(pki, pair.a.url) as master, \
            client_for(pki, pair.b.url, sae="SAE_B") as slave:
        master_fetcher: KeyFetcher = Etsi014KeyFetcher(master, peer_sae_id="SAE_B")
        slave_fetcher: KeyFetcher = Etsi014KeyFetcher(slave, peer_sae_id="SAE_A")
        ground = KeyBuffer(MemoryStore(), master_fetcher, config)
        space = KeyBuffer(MemoryStore(), slave_fetcher, config)
        announced = ground.refill()
        assert len(announced) == 8 and pair.pool.stats().pending == 8
        assert sorted(space.sync(announced)) == sorted(announced)
        assert pair.pool.stats().pending == 0
        chosen = ground.reserve(Purpose.AUTH, 2)
        assert isinstance(chosen, Reservation)
        ground_keys = ground.commit(chosen)
        space_keys = space.commit(space.reserve_ids(chosen.key_ids, Purpose.AUTH))
        assert [k.material for k in ground_keys] == [k.material for k in space_keys]
        assert all(k.source.startswith("etsi014:") for k in ground_keys)


def test_fetch_by_ids_keeps_released_keys_for_a_retry(pki: LocalPki) -> None:
    with KmePair.start(pki, max_key_per_request=2) as pair, \
            client_for(pki, pair.a.url) as master, \
            client_for(pki, pair.b.url, sae="SAE_B") as slave:
        sent = Etsi014KeyFetcher(master, peer_sae_id="SAE_B").fetch_new(3, 256)
        slave_end = Etsi014KeyFetcher(slave, peer_sae_id="SAE_A")
        bogus = uuid.uuid4()
        ids = [k.key_id for k in sent]
        with pytest.raises(KmeBadRequest):  # chunk 1 (2 keys) succeeds, chunk 2 has a bogus ID
            slave_end.fetch_by_ids([*ids[:2], bogus, ids[2]])
        again = slave_end.fetch_by_ids(ids)  # the first two come from the stash
        assert [k.material for k in again] == [k.material for k in sent]
        assert pair.pool.stats().pending == 0
