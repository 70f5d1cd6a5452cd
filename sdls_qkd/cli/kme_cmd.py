"""``sdls-qkd kme``: a test PKI and an ETSI GS QKD 014 KME pair simulator.

* ``sdls-qkd kme certs DIR`` writes a CA, KME server certificates and SAE client certificates
  (EC P-256) and a ``pki.json`` manifest into DIR.
* ``sdls-qkd kme serve --certs DIR`` serves two KMEs sharing one key stream (KME_A for SAE_A,
  KME_B for SAE_B and SAE_C by default) over HTTPS with mutual TLS until SIGTERM or Ctrl-C.
  One line per KME is printed when it listens: ``KME_A https://127.0.0.1:8443 SAE_A``.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import Any

from sdls_qkd.keys.certs import DEFAULT_HOSTS, DEFAULT_KME_IDS, LocalPki, create_local_pki
from sdls_qkd.keys.kme import KmePair
from sdls_qkd.keys.source import RandomKeySource


def register(subparsers: Any) -> None:
    kme = subparsers.add_parser(
        "kme", help="ETSI GS QKD 014 KME simulator and its test PKI",
        description=__doc__.replace("``", "") if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = kme.add_subparsers(dest="kme_command", metavar="ACTION")

    certs = sub.add_parser("certs", help="create a test CA and KME/SAE certificates in DIR")
    certs.add_argument("directory", metavar="DIR")
    certs.add_argument("--kme", action="append", metavar="ID",
                       help="KME ID (repeat; default KME_A and KME_B)")
    certs.add_argument("--sae", action="append", metavar="ID",
                       help="SAE ID (repeat; default SAE_A, SAE_B, SAE_C)")
    certs.add_argument("--host", action="append", metavar="NAME",
                       help="host name or IP address in the KME certificates (repeat; "
                            f"default {', '.join(DEFAULT_HOSTS)})")
    certs.add_argument("--days", type=int, default=30, help="validity in days (default 30)")
    certs.add_argument("--force", action="store_true", help="overwrite an existing PKI in DIR")
    certs.set_defaults(func=_certs)

    serve = sub.add_parser("serve", help="serve a KME pair sharing one key stream")
    serve.add_argument("--certs", required=True, metavar="DIR",
                       help="directory written by 'sdls-qkd kme certs'")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument("--port-a", type=int, default=8443, help="port of KME A (0: any free)")
    serve.add_argument("--port-b", type=int, default=8444, help="port of KME B (0: any free)")
    serve.add_argument("--kme-a", default=DEFAULT_KME_IDS[0], help="ID of KME A (KME_A)")
    serve.add_argument("--kme-b", default=DEFAULT_KME_IDS[1], help="ID of KME B (KME_B)")
    serve.add_argument("--sae-a", action="append", metavar="ID",
                       help="SAE served by KME A (repeat; default SAE_A)")
    serve.add_argument("--sae-b", action="append", metavar="ID",
                       help="SAE served by KME B (repeat; default SAE_B and SAE_C)")
    serve.add_argument("--key-size", type=int, default=256, help="default key size, bits")
    serve.add_argument("--min-key-size", type=int, default=64, help="bits (64)")
    serve.add_argument("--max-key-size", type=int, default=8192, help="bits (8192)")
    serve.add_argument("--max-key-per-request", type=int, default=128)
    serve.add_argument("--max-key-count", type=int, default=100_000)
    serve.add_argument("--capacity", type=int, default=1 << 24,
                       help="key store of the link in bits (16 Mibit)")
    serve.add_argument("--rate", type=float, default=None,
                       help="key rate of the link in bit/s (default: unlimited)")
    serve.add_argument("--idle-timeout", type=float, default=30.0,
                       help="close keep-alive connections idle this long, s (30)")
    serve.add_argument("--log-level", default="WARNING",
                       choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    serve.set_defaults(func=_serve)
    kme.set_defaults(func=lambda args: (kme.print_help(), 2)[1])


def _certs(args: argparse.Namespace) -> int:
    pki = create_local_pki(
        args.directory,
        kme_ids=args.kme or DEFAULT_KME_IDS,
        sae_ids=args.sae or ("SAE_A", "SAE_B", "SAE_C"),
        hosts=args.host or DEFAULT_HOSTS,
        valid_days=args.days,
        overwrite=args.force,
    )
    print(f"CA    {pki.ca_file}")
    for kme_id, files in pki.kmes.items():
        print(f"KME   {kme_id}: {files.cert_file} {files.key_file}")
    for sae_id, files in pki.saes.items():
        print(f"SAE   {sae_id}: {files.cert_file} {files.key_file}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(message)s")
    pki = LocalPki.load(args.certs)
    source = RandomKeySource(capacity_bits=args.capacity, rate_bps=args.rate)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        pair = KmePair.start(
            pki,
            source=source,
            host=args.host,
            port_a=args.port_a,
            port_b=args.port_b,
            kme_a=args.kme_a,
            kme_b=args.kme_b,
            saes_a=args.sae_a or ("SAE_A",),
            saes_b=args.sae_b or ("SAE_B", "SAE_C"),
            idle_timeout=args.idle_timeout,
            key_size=args.key_size,
            min_key_size=args.min_key_size,
            max_key_size=args.max_key_size,
            max_key_per_request=args.max_key_per_request,
            max_key_count=args.max_key_count,
        )
        with pair:
            for server in (pair.a, pair.b):
                saes = " ".join(sorted(server.kme.config.sae_ids))
                print(f"{server.kme.config.kme_id} {server.url} {saes}", flush=True)
            while not stop.wait(0.5):
                pass
        print("stopped", flush=True)
        return 0
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


if __name__ == "__main__":  # pragma: no cover
    from sdls_qkd.cli import main

    sys.exit(main(["kme", *sys.argv[1:]]))
