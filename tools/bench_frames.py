#!/usr/bin/env python3
"""Frame benchmarks against ``spacepackets`` measured in the same run.

Cases (rates, higher is better):
* ``tm_parse_1115`` — parse + FECF check of a 1115-octet TM frame (OCF, FECF); ours is the
  hot-path ``TmCodec.parse``; baseline ``spacepackets`` ``TmTransferFrame.unpack`` (which checks the
  CRC with fastcrc).  ``tm_unpack_1115`` also reports our dataclass path ``TmFrame.unpack``.
* ``tm_build_1115`` — build the same frame with FECF; baseline spacepackets' header/frame objects
  + ``pack()`` + the fastcrc FECF (spacepackets' pack does not compute it).
* ``packet_extract`` — Space Packets out of a TM frame stream (frames/s: 71 frames, 400 packets
  of 46..345 octets, most spanning two frames).  Ours is ``TmPacketReceiver.receive_raw``: frame
  check (length, FECF, header), frame-count gap detection, FHP handling, reassembly across
  frames, idle packets counted, packets returned as checked octets.  Baseline: the same frame
  check (our ``TmCodec.parse``, faster than spacepackets' own) then
  ``spacepackets.parse_space_packets`` over the concatenated data zones, which returns packet
  octets too.  All sides are first shown to deliver the same packets.
  ``packet_extract_typed`` is our ``receive`` (``SpacePacket`` dataclasses) against the same
  baseline.

Timing: the functions of a case take turns over many short windows and each keeps its best
window (the machine is shared; this compares them under the same load).
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


def rates(fns: dict[str, Callable[[], Any]], calls: int, windows: int) -> dict[str, float]:
    """Best calls/s of each function over ``windows`` short timed loops.

    The functions take turns window by window (``calls`` calls each in all), so ours and the
    baseline see the same machine load; on a shared machine the best window is the one least
    disturbed, and short windows make an undisturbed one likely.
    """
    inner = max(1, calls // windows)
    best = dict.fromkeys(fns, 0.0)
    for _ in range(windows):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            dt = time.perf_counter() - t0
            best[name] = max(best[name], inner / dt)
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


def bench_tm(calls: int, windows: int) -> list[dict[str, Any]]:
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

    unpacked = TmFrame.unpack(frame, CHANNEL)
    assert unpacked.data == sp.data_field and unpacked.ocf == sp.op_ctrl_field
    assert unpacked.header.vc_frame_count == sp.primary_header.vc_frame_count
    r = rates({"ours_parse": lambda: parse(frame),
               "sp_parse": lambda: sp_unpack(frame, FRAME_LENGTH, True),
               "ours_unpack": lambda: TmFrame.unpack(frame, CHANNEL)}, calls, windows)

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
    b = rates({"ours": ours_build, "sp": sp_build}, calls, windows)
    return [
        case("tm_parse_1115", r["ours_parse"], r["sp_parse"], "spacepackets", "frames/s"),
        case("tm_unpack_1115", r["ours_unpack"], r["sp_parse"], "spacepackets", "frames/s"),
        case("tm_build_1115", b["ours"], b["sp"], "spacepackets", "frames/s"),
    ]


def bench_packet_extract(calls: int, windows: int) -> list[dict[str, Any]]:
    try:
        from sdls_qkd.framing import packet_service
    except ImportError:
        print("packet_extract: packet service not available", file=sys.stderr)
        return []
    return packet_service_bench(packet_service, calls, windows)


def packet_service_bench(ps: Any, calls: int, windows: int) -> list[dict[str, Any]]:
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

    def ours_raw() -> list[bytes]:
        # checked frames, frame-count gaps, FHP resync, spanning packets, idle count; packets
        # as checked octets (what spacepackets returns too)
        receiver = ps.TmPacketReceiver(CHANNEL)
        out: list[bytes] = []
        for f in frames:
            out += receiver.receive_raw(f).packets
        return out

    def ours_typed() -> list[Any]:
        receiver = ps.TmPacketReceiver(CHANNEL)
        out: list[Any] = []
        for f in frames:
            out += receiver.receive(f).packets
        return out

    codec = TmCodec(CHANNEL)
    ids = [PacketId(PacketType.TM, False, 0x100 + i) for i in range(4)]

    def theirs() -> list[bytearray]:
        # same frame check as ours (our parser: spacepackets' own is slower), then
        # spacepackets' packet parser over the concatenated zones
        buf = bytearray()
        out: list[bytearray] = []
        for f in frames:
            buf.extend(codec.parse(f).data)
            res = parse_space_packets(buf, ids)
            out += res.tm_list
            del buf[: res.scanned_bytes]
        return out

    # all three deliver the same packets before anything is timed
    want = [p.pack() for p in packets]
    assert ours_raw() == want
    assert [p.pack() for p in ours_typed()] == want
    assert [bytes(p) for p in theirs()] == want
    r = rates({"raw": ours_raw, "typed": ours_typed, "theirs": theirs},
              max(1, calls // n_frames), windows)
    return [case("packet_extract", r["raw"] * n_frames, r["theirs"] * n_frames,
                 "spacepackets", "frames/s"),
            case("packet_extract_typed", r["typed"] * n_frames, r["theirs"] * n_frames,
                 "spacepackets", "frames/s")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (< 30 s)")
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    args = parser.parse_args()
    calls, windows = (150_000, 60) if args.quick else (400_000, 150)
    print(f"python {platform.python_version()}, sdls_qkd {version('sdls_qkd')}, spacepackets "
          f"{version('spacepackets')}, fastcrc {version('fastcrc')}")
    cases = bench_tm(calls, windows) + bench_packet_extract(calls // 5, windows)
    for c in cases:
        print(f"{c['name']:<21} ours {c['ours']:>12,.0f} {c['unit']:<9} "
              f"{c['baseline_name']} {c['baseline']:>12,.0f}  ratio {c['ratio']:.2f}")
    if args.json:
        print(json.dumps({"cases": cases}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
