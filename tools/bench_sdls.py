#!/usr/bin/env python3
"""Benchmark SDLS ApplySecurity / ProcessSecurity against the bare AES-GCM call.

Every case uses AES-256-GCM (12-octet IV as the anti-replay counter, 16-octet MAC, Yamcs masks),
FECF on, anti-replay on, and measures frames per second.  The baseline of each case is
``cryptography``'s ``AESGCM.encrypt`` / ``decrypt`` on the same data field, IV and AAD, in the
same run (interleaved repetitions, best of each), i.e. the cost of the cryptography alone: the
ratio says how much of that rate the full frame processing keeps.

Cases: tc_apply_1024, tc_process_1024, tm_apply_1786, tm_process_1786, aos_process_1786,
uslp_process_1024 (variable-length USLP).  ``--quick`` repeats less (same frame sizes);
``--json`` ends stdout with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.backends.openssl import backend  # noqa: E402
from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402

from sdls_qkd.framing.channel import (  # noqa: E402
    AosChannel,
    Channel,
    TcChannel,
    TmChannel,
    UslpChannel,
)
from sdls_qkd.framing.crc import CRC16_BACKEND, fecf  # noqa: E402
from sdls_qkd.security.engine import apply_security, process_security  # noqa: E402
from sdls_qkd.security.layout import make_sa  # noqa: E402
from sdls_qkd.security.sa import SecurityAssociation  # noqa: E402

KEY = bytes(range(32))
SPI = 7


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


def unprotected(channel: Channel, size: int) -> bytes:
    """An unprotected frame whose protected form is ``size`` octets (AES-256-GCM, Yamcs layout)."""
    overhead = 2 + 12 + 16
    if isinstance(channel, TcChannel):
        data = bytes(range(256)) * 4
        body_len = size - overhead - channel.header_length - 2
        total = size - overhead
        head = bytes([0x20 | (channel.scid >> 8), channel.scid & 0xFF,
                      (channel.vcid << 2) | ((total - 1) >> 8), (total - 1) & 0xFF, 0, 0xC0])
        return head + data[:body_len] + bytes(2)
    if isinstance(channel, UslpChannel):
        total = size - overhead
        word = (12 << 28) | (channel.scid << 12) | (channel.vcid << 5) | (channel.map_id << 1)
        head = word.to_bytes(4, "big") + (total - 1).to_bytes(2, "big") + b"\x81\x00"
        return head + bytes(total - len(head) - 2) + bytes(2)
    if isinstance(channel, TmChannel):
        head = ((channel.scid << 4) | (channel.vcid << 1)).to_bytes(2, "big") + b"\x00\x00\x18\x00"
    else:
        head = ((1 << 14) | (channel.scid << 6) | channel.vcid).to_bytes(2, "big") + bytes(4)
    frame = bytearray(size)
    frame[:6] = head
    return bytes(frame)


#: frames per batch: both loops of a case run over the same batch (a few MB, cache resident),
#: the receiver's counter is reset between batches outside the timed region
BATCH = 2000


def best_rates(ours: Callable[[int], None], base: Callable[[int], None],
               reset: Callable[[], None], repeat: int, number: int) -> tuple[float, float]:
    """Interleaved best-of-``repeat`` rates (calls per second) of two loops over ``number``
    frames, run batch by batch (``reset(); ours(batch_start)`` then ``base(batch_start)``)."""
    best_ours = best_base = float("inf")
    starts = range(0, number, BATCH)
    for _ in range(repeat):
        t0 = time.perf_counter()
        for start in starts:
            reset()
            ours(start)
        t1 = time.perf_counter()
        for start in starts:
            base(start)
        t2 = time.perf_counter()
        best_ours = min(best_ours, t1 - t0)
        best_base = min(best_base, t2 - t1)
    return number / best_ours, number / best_base


def case_apply(name: str, channel: Channel, size: int, repeat: int,
               number: int) -> dict[str, Any]:
    tx = make_sa(SPI, channel, key=KEY, iv=1)
    frame = unprotected(channel, size)
    sample = apply_security(frame, channel, tx)
    assert len(sample) == size, (name, len(sample))
    aead = AESGCM(KEY)
    plan = tx._last_plan or next(iter(tx._plans.values()))
    data_off = plan.data_off
    data_end = size - channel.trailer_length - 16
    aad = (int.from_bytes(sample[:data_off], "big") & plan.aad_mask).to_bytes(data_off, "big")
    plaintext = frame[data_off:data_end] if channel.frame_type in ("TM", "AOS") else \
        frame[channel.header_length:len(frame) - channel.trailer_length]
    ivs = [i.to_bytes(12, "big") for i in range(2, BATCH + 2)]

    def ours(start: int) -> None:
        for _ in range(BATCH):
            apply_security(frame, channel, tx)

    def base(start: int) -> None:
        for iv in ivs:
            aead.encrypt(iv, plaintext, aad)

    def reset() -> None:
        tx.iv = (2).to_bytes(12, "big")

    return result(name, *best_rates(ours, base, reset, repeat, number))


def case_process(name: str, channel: Channel, size: int, repeat: int,
                 number: int) -> dict[str, Any]:
    tx = make_sa(SPI, channel, key=KEY, iv=1)
    rx = make_sa(SPI, channel, key=KEY)
    frame = unprotected(channel, size)
    frames = [apply_security(frame, channel, tx) for _ in range(BATCH)]
    assert process_security(frames[0], channel, {SPI: rx}).data
    plan = rx._last_plan
    data_off, mask = plan.data_off, plan.aad_mask
    data_end = size - channel.trailer_length
    inputs = [(f[data_off - 12:data_off], f[data_off:data_end],
               (int.from_bytes(f[:data_off], "big") & mask).to_bytes(data_off, "big"))
              for f in frames]
    aead = AESGCM(KEY)
    sas = {SPI: rx}

    def ours(start: int) -> None:
        for f in frames:
            process_security(f, channel, sas)

    def base(start: int) -> None:
        for iv, body, aad in inputs:
            aead.decrypt(iv, body, aad)

    def reset() -> None:
        rx.iv = bytes(12)

    return result(name, *best_rates(ours, base, reset, repeat, number))


def result(name: str, ours: float, baseline: float) -> dict[str, Any]:
    print(f"{name:20s} ours {ours:11,.0f} frames/s   aesgcm {baseline:11,.0f}/s   "
          f"ratio {ours / baseline:5.2f}   ({1e6 / ours:5.2f} us/frame)")
    return {"name": name, "ours": ours, "baseline": baseline, "baseline_name": "aesgcm",
            "unit": "frames/s", "ratio": ours / baseline}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (under 30 s)")
    ap.add_argument("--json", action="store_true", help="last stdout line is a JSON summary")
    args = ap.parse_args(argv)
    repeat, number = (5, 4000) if args.quick else (15, 20000)
    print(f"python {platform.python_version()}, cryptography {_version('cryptography')} "
          f"({backend.openssl_version_text()}), crc16 backend {CRC16_BACKEND} "
          f"fastcrc {_version('fastcrc')}, {os.cpu_count()} CPUs")
    tc = TcChannel(scid=0x123, vcid=1, has_segment_header=True, map_id=0, has_fecf=True)
    tm = TmChannel(scid=0x2A, vcid=1, frame_length=1786, has_fecf=True)
    aos = AosChannel(scid=0x2A, vcid=1, frame_length=1786, has_fecf=True)
    uslp = UslpChannel(scid=0x2A, vcid=1, map_id=0, has_fecf=True, vc_frame_count_length=1)
    assert fecf(b"123456789") == 0x29B1
    cases = [
        case_apply("tc_apply_1024", tc, 1024, repeat, number),
        case_process("tc_process_1024", tc, 1024, repeat, number),
        case_apply("tm_apply_1786", tm, 1786, repeat, number),
        case_process("tm_process_1786", tm, 1786, repeat, number),
        case_process("aos_process_1786", aos, 1786, repeat, number),
        case_process("uslp_process_1024", uslp, 1024, repeat, number),
    ]
    if args.json:
        print(json.dumps({"cases": cases}))
    return 0


if __name__ == "__main__":
    sys.exit(main())


_ = SecurityAssociation  # re-exported for type checkers of callers
