#!/usr/bin/env python3
"""Frame benchmarks against ``spacepackets`` measured in the same run.

Cases (rates, higher is better):
* ``tm_parse_1115`` — parse + FECF check of a 1115-octet TM frame (OCF, FECF); ours is the
  hot-path ``TmCodec.parse``; baseline ``spacepackets`` ``TmTransferFrame.unpack`` (which checks the
  CRC with fastcrc).  ``tm_unpack_1115`` also reports our dataclass path ``TmFrame.unpack``.
* ``tm_build_1115`` — build the same frame with FECF; baseline spacepackets' header/frame objects
  + ``pack()`` + the fastcrc FECF (spacepackets' pack does not compute it).
* ``packet_extract`` — Space Packets out of a TM frame stream (frames/s); ours is the packet
  service's extractor, baseline ``spacepackets.parse_space_packets`` over the same data zones.

``--quick`` runs fewer repetitions of the same problem; ``--json`` prints one JSON object last.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sdls_qkd.framing.channel import TmChannel  # noqa: E402
from sdls_qkd.framing.crc import crc16  # noqa: E402
from sdls_qkd.framing.tm import TmCodec, TmFrame  # noqa: E402

FRAME_LENGTH = 1115
CHANNEL = TmChannel(scid=758, vcid=0, frame_length=FRAME_LENGTH, has_ocf=True, has_fecf=True)


def rate(fn: Callable[[], Any], inner: int, repeats: int) -> float:
    """Best calls/s over ``repeats`` timed loops of ``inner`` calls."""
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        dt = time.perf_counter() - t0
        best = max(best, inner / dt)
    return best


def case(name: str, ours: float, baseline: float, baseline_name: str, unit: str) -> dict[str, Any]:
    return {"name": name, "ours": round(ours, 1), "baseline": round(baseline, 1),
            "baseline_name": baseline_name, "unit": unit, "ratio": round(ours / baseline, 3)}


def sample_frame() -> bytes:
    codec = TmCodec(CHANNEL)
    data = bytes(range(256)) * 5
    data = data[: codec.data_end - codec.data_start]
    return codec.build(data, mc_frame_count=1, vc_frame_count=2, first_header_pointer=0,
                       ocf=b"\x01\x00\x00\x00")


def bench_tm(inner: int, repeats: int) -> list[dict[str, Any]]:
    from spacepackets.ccsds.tm_frame import (
        MasterChannelId,
        TmFramePrimaryHeader,
        TmTransferFrame,
        TransferFrameDataFieldStatus,
    )

    frame = sample_frame()
    codec = TmCodec(CHANNEL)
    parse = codec.parse
    sp_unpack = TmTransferFrame.unpack
    # both sides agree on the frame before we time anything
    sp = sp_unpack(frame, FRAME_LENGTH, True)
    view = parse(frame)
    assert sp.data_field == view.data and sp.op_ctrl_field == view.ocf

    ours_parse = rate(lambda: parse(frame), inner, repeats)
    sp_parse = rate(lambda: sp_unpack(frame, FRAME_LENGTH, True), inner, repeats)
    ours_unpack = rate(lambda: TmFrame.unpack(frame, CHANNEL), inner, repeats)

    data = view.data
    ocf = view.ocf
    build = codec.build

    def ours_build() -> bytes:
        return build(data, mc_frame_count=1, vc_frame_count=2, first_header_pointer=0, ocf=ocf)

    def sp_build() -> bytes:
        header = TmFramePrimaryHeader(
            MasterChannelId(0, 758), 0, True, 1, 2,
            TransferFrameDataFieldStatus(False, False, False, 3, 0))
        body = TmTransferFrame(FRAME_LENGTH, header, None, data, ocf, b"\x00\x00").pack()[:-2]
        return body + crc16(body).to_bytes(2, "big")

    assert ours_build() == frame and sp_build() == frame
    ours_b = rate(ours_build, inner, repeats)
    sp_b = rate(sp_build, inner, repeats)
    return [
        case("tm_parse_1115", ours_parse, sp_parse, "spacepackets", "frames/s"),
        case("tm_unpack_1115", ours_unpack, sp_parse, "spacepackets", "frames/s"),
        case("tm_build_1115", ours_b, sp_b, "spacepackets", "frames/s"),
    ]


def bench_packet_extract(inner: int, repeats: int) -> list[dict[str, Any]]:
    try:
        from sdls_qkd.framing import packet_service
    except ImportError:
        print("packet_extract: packet service not available", file=sys.stderr)
        return []
    return packet_service_bench(packet_service, inner, repeats)


def packet_service_bench(ps: Any, inner: int, repeats: int) -> list[dict[str, Any]]:
    """Frames/s of packet extraction; the same packets through spacepackets' parser."""
    from spacepackets.ccsds.spacepacket import PacketId, PacketType, parse_space_packets

    from sdls_qkd.framing.space_packet import PacketType as OurPacketType
    from sdls_qkd.framing.space_packet import SpacePacket

    packets = [SpacePacket.build(OurPacketType.TM, 0x100 + (i % 4),
                                 bytes([i % 251]) * (40 + (i * 37) % 300),
                                 sequence_count=i % 16384)
               for i in range(400)]
    sender = ps.TmPacketSender(CHANNEL)
    for p in packets:
        sender.put(p)
    frames = sender.frames(flush=True, ocf=b"\x01\x00\x00\x00")
    n_frames = len(frames)

    def ours() -> int:
        receiver = ps.TmPacketReceiver(CHANNEL)
        count = 0
        for f in frames:
            count += len(receiver.receive(f).packets)
        return count

    codec = TmCodec(CHANNEL)
    ids = [PacketId(PacketType.TM, False, 0x100 + i) for i in range(4)]

    def theirs() -> int:
        # same frame check as ours (our parser: spacepackets' own is 2-3x slower), then
        # spacepackets' packet parser over the concatenated zones
        buf = bytearray()
        count = 0
        for f in frames:
            buf.extend(codec.parse(f).data)
            res = parse_space_packets(buf, ids)
            count += len(res.tm_list)
            del buf[: res.scanned_bytes]
        return count

    assert ours() == len(packets), ours()
    assert theirs() == len(packets), theirs()
    loops = max(1, inner // n_frames)
    o = rate(ours, loops, repeats) * n_frames
    t = rate(theirs, loops, repeats) * n_frames
    return [case("packet_extract", o, t, "spacepackets", "frames/s")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (< 30 s)")
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    args = parser.parse_args()
    inner, repeats = (20_000, 3) if args.quick else (50_000, 7)
    print(f"python {platform.python_version()}, sdls_qkd {version('sdls_qkd')}, spacepackets "
          f"{version('spacepackets')}, fastcrc {version('fastcrc')}")
    cases = bench_tm(inner, repeats) + bench_packet_extract(inner // 10, repeats)
    for c in cases:
        print(f"{c['name']:<18} ours {c['ours']:>12,.0f} {c['unit']:<9} "
              f"{c['baseline_name']} {c['baseline']:>12,.0f}  ratio {c['ratio']:.2f}")
    if args.json:
        print(json.dumps({"cases": cases}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
