#!/usr/bin/env python3
"""Benchmark of the QKD key supply.

Cases (rates, higher is better; ratio = ours / baseline):

* ``etsi014_fetch`` — ETSI GS QKD 014 *Get key* (POST enc_keys, 1 key of 256 bits) from our KME
  simulator with our client over loopback mutual TLS with keep-alive: fetches per second at the
  median latency (1000 / median ms).  Baseline ``https_get``: a bare stdlib HTTPS GET of a tiny
  body (``http.server`` + ``ssl`` server, ``http.client`` client) over the same kind of
  connection (mutual TLS, keep-alive, TCP_NODELAY), measured in the same run, interleaved.
  Goal: median <= 2 ms.
* ``pass_emulation_micius`` — from ``tools/_bench_qkd.py`` (BB84 pass emulation) when present.

``--quick`` takes fewer samples (same request), ``--json`` ends stdout with one JSON line.
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import json
import platform
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import cryptography  # noqa: E402

import sdls_qkd  # noqa: E402
from sdls_qkd.keys.certs import LocalPki, create_local_pki  # noqa: E402
from sdls_qkd.keys.kme import KmePair, server_tls_context  # noqa: E402


class _TinyHandler(BaseHTTPRequestHandler):
    """The floor: the plainest stdlib HTTP/1.1 handler answering a tiny JSON body."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    body = b'{"ok":true}'

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


class _BaselineServer:
    def __init__(self, pki: LocalPki) -> None:
        kme = pki.kme("KME_A")
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _TinyHandler)
        self.httpd.daemon_threads = True
        tls = server_tls_context(kme.cert_file, kme.key_file, pki.ca_file)
        self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _baseline_client(pki: LocalPki, port: int) -> Callable[[], None]:
    sae = pki.sae("SAE_A")
    ctx = ssl.create_default_context(cafile=str(pki.ca_file))
    ctx.load_cert_chain(str(sae.cert_file), str(sae.key_file))
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def get() -> None:
        conn.request("GET", "/api/v1/keys/SAE_B/status")
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200

    return get


def _latencies(fn: Callable[[], Any], n: int) -> list[float]:
    out = []
    clock = time.perf_counter
    for _ in range(n):
        t0 = clock()
        fn()
        out.append(clock() - t0)
    return out


def _summary(samples: list[float]) -> dict[str, float]:
    ms = sorted(s * 1e3 for s in samples)
    return {
        "median_ms": statistics.median(ms),
        "p90_ms": ms[int(0.9 * (len(ms) - 1))],
        "p99_ms": ms[int(0.99 * (len(ms) - 1))],
        "n": len(ms),
    }


def case_etsi014_fetch(quick: bool) -> dict[str, Any]:
    rounds, per_round, warmup = (4, 100, 30) if quick else (8, 400, 100)
    with tempfile.TemporaryDirectory() as tmp:
        pki = create_local_pki(tmp)
        baseline = _BaselineServer(pki)
        try:
            with KmePair.start(pki) as pair, pair.client("SAE_A") as client:
                get = _baseline_client(pki, baseline.port)

                def fetch() -> None:
                    client.enc_keys("SAE_B", 1, 256)

                _latencies(fetch, warmup)
                _latencies(get, warmup)
                ours: list[float] = []
                base: list[float] = []
                for _ in range(rounds):  # interleaved, so drift hits both alike
                    ours += _latencies(fetch, per_round)
                    base += _latencies(get, per_round)
                connections = pair.a.counters["connections"]
        finally:
            baseline.close()
    o, b = _summary(ours), _summary(base)
    print(f"etsi014_fetch: median {o['median_ms']:.3f} ms, p90 {o['p90_ms']:.3f}, "
          f"p99 {o['p99_ms']:.3f} ({o['n']} fetches, {connections} TLS connection)",
          file=sys.stderr)
    print(f"https_get    : median {b['median_ms']:.3f} ms, p90 {b['p90_ms']:.3f}, "
          f"p99 {b['p99_ms']:.3f}", file=sys.stderr)
    print(f"goal median <= 2 ms: {'met' if o['median_ms'] <= 2.0 else 'NOT met'}",
          file=sys.stderr)
    ours_rate = 1000.0 / o["median_ms"]
    base_rate = 1000.0 / b["median_ms"]
    return {
        "name": "etsi014_fetch",
        "ours": round(ours_rate, 1),
        "baseline": round(base_rate, 1),
        "baseline_name": "https_get",
        "unit": "fetches/s at median latency",
        "ratio": round(ours_rate / base_rate, 3),
        "median_ms": round(o["median_ms"], 3),
        "baseline_median_ms": round(b["median_ms"], 3),
    }


def _qkd_case(quick: bool) -> dict[str, Any] | None:
    path = Path(__file__).with_name("_bench_qkd.py")
    if not path.exists():
        print("pass_emulation_micius: skipped (tools/_bench_qkd.py not present)", file=sys.stderr)
        return None
    spec = importlib.util.spec_from_file_location("_bench_qkd", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fn = getattr(module, "case_pass_emulation_micius", None)
    if fn is None:
        print("pass_emulation_micius: skipped (_bench_qkd.py has no case_pass_emulation_micius)",
              file=sys.stderr)
        return None
    result: dict[str, Any] = fn(quick)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples (< 30 s)")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args(argv)
    print(f"python {platform.python_version()}, {ssl.OPENSSL_VERSION}, "
          f"cryptography {cryptography.__version__}, sdls_qkd {sdls_qkd.__version__}",
          file=sys.stderr)
    cases = [case_etsi014_fetch(args.quick)]
    qkd = _qkd_case(args.quick)
    if qkd is not None:
        cases.append(qkd)
    for case in cases:
        print(f"{case['name']}: ours {case['ours']} vs {case['baseline_name']} "
              f"{case['baseline']} {case['unit']} (ratio {case['ratio']})")
    if args.json:
        print(json.dumps({"cases": cases}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
