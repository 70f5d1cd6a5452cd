#!/usr/bin/env python3
"""Benchmark the AOS and USLP frame codecs.

Cases (rates in frames per second, higher is better):

* AOS 1786-octet frames with FHEC + OCF + FECF: ``AosCodec.parse`` (the SDLS hot path),
  ``AosFrame.unpack`` and ``AosCodec.pack``, each against the *floor* of the same run: the bare
  fastcrc CRC-16 over the frame, which every receiver must compute anyway.
* USLP fixed-length 1024-octet frames: ``UslpFrame.unpack`` / ``pack`` against the peer
  ``spacepackets`` 0.32 (``TransferFrame.unpack`` / ``pack``) on the same frames.
* FHEC: decoding a header with 2 symbol errors, against encoding (the no-error fast path).

``--quick`` runs fewer repetitions (same frame sizes); ``--json`` ends stdout with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sdls_qkd.framing.aos import AosCodec, AosFrame, AosPrimaryHeader  # noqa: E402
from sdls_qkd.framing.channel import AosChannel, UslpChannel  # noqa: E402
from sdls_qkd.framing.crc import CRC16_BACKEND, crc16  # noqa: E402
from sdls_qkd.framing.fhec import fhec_decode, fhec_encode  # noqa: E402
from sdls_qkd.framing.uslp import UslpFrame  # noqa: E402


def rate(fn: Callable[[], object], repeat: int, number: int) -> float:
    """Best-of-``repeat`` calls per second over ``number`` calls."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, time.perf_counter() - t0)
    return number / best


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (under 30 s)")
    ap.add_argument("--json", action="store_true", help="last stdout line is a JSON summary")
    args = ap.parse_args(argv)
    repeat, number = (3, 3000) if args.quick else (7, 20000)

    print(f"python {platform.python_version()}, crc16 backend {CRC16_BACKEND}, "
          f"fastcrc {_version('fastcrc')}, spacepackets {_version('spacepackets')}, "
          f"construct {_version('construct')}")
    cases: list[dict[str, object]] = []

    def case(name: str, ours: float, baseline: float, baseline_name: str) -> None:
        cases.append({"name": name, "ours": ours, "baseline": baseline,
                      "baseline_name": baseline_name, "unit": "frames/s",
                      "ratio": ours / baseline})
        print(f"{name:34s} ours {ours:12,.0f}/s  {baseline_name:28s} {baseline:12,.0f}/s  "
              f"ratio {ours / baseline:6.3f}")

    # ---- AOS
    aos = AosChannel(scid=0xAB, vcid=5, frame_length=1786, has_fhec=True, has_ocf=True)
    codec = AosCodec(aos)
    frame = AosFrame(AosPrimaryHeader(0xAB, 5, 12345), bytes(range(256)) * 6 + bytes(
        aos.data_field_length - 1536), ocf=b"\x01\x02\x03\x04")
    raw = codec.pack(frame)
    assert AosFrame.unpack(raw, aos) == frame
    body = memoryview(raw)[:-2]
    floor = rate(lambda: crc16(body), repeat, number)
    case("aos_parse_1786", rate(lambda: codec.parse(raw), repeat, number), floor, "crc16 floor")
    case("aos_unpack_1786", rate(lambda: codec.unpack(raw), repeat, number), floor, "crc16 floor")
    case("aos_pack_1786", rate(lambda: codec.pack(frame), repeat, number), floor, "crc16 floor")

    # ---- USLP vs spacepackets
    try:
        from spacepackets.uslp import frame as sp_frame
    except ImportError:  # pragma: no cover
        sp_frame = None
    uslp = UslpChannel(scid=0xABC, vcid=3, map_id=1, frame_length=1024, vc_frame_count_length=2)
    uframe = UslpFrame.build(uslp, bytes(1024 - 9 - 3 - 2), vc_frame_count=77)
    uraw = uframe.pack(uslp)
    if sp_frame is not None:
        props = sp_frame.FixedFrameProperties(fixed_len=1024, has_insert_zone=False, has_fecf=True)
        theirs = sp_frame.TransferFrame.unpack(uraw, sp_frame.FrameType.FIXED, props)
        theirs.has_fecf = True  # spacepackets 0.32 unpack leaves has_fecf False
        assert bytes(theirs.pack(frame_type=sp_frame.FrameType.FIXED)) == uraw
        case("uslp_unpack_fixed_1024", rate(lambda: UslpFrame.unpack(uraw, uslp), repeat, number),
             rate(lambda: sp_frame.TransferFrame.unpack(uraw, sp_frame.FrameType.FIXED, props),
                  repeat, number), "spacepackets unpack")
        case("uslp_pack_fixed_1024", rate(lambda: uframe.pack(uslp), repeat, number),
             rate(lambda: theirs.pack(frame_type=sp_frame.FrameType.FIXED), repeat, number),
             "spacepackets pack")

    # ---- FHEC
    good = fhec_encode(0x6AC5, 0x00)
    case("fhec_correct_2_symbols",
         rate(lambda: fhec_decode(0x6A05, 0x00, good ^ 0x0F00), repeat, number),
         rate(lambda: fhec_encode(0x6AC5, 0x00), repeat, number), "fhec encode (no error)")

    if args.json:
        print(json.dumps({"cases": cases}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
