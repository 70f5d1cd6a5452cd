#!/usr/bin/env python3
"""Benchmark the TM frame codec and the Space Packet parser against ``spacepackets`` 0.32.

Cases (rates, higher is better; the peer is measured in the same run on the same bytes):

* ``tm_parse_fecf_1115``: ``TmCodec.parse`` of a 1115-octet frame with OCF + FECF (FECF checked)
  against ``spacepackets`` ``TmTransferFrame.unpack(data, 1115, True)`` (which checks it too).
* ``tm_frame_unpack_1115``: the typed slow path ``TmFrame.unpack``, same peer.
* ``tm_build_1115``: ``TmCodec.build`` (FECF computed) against spacepackets
  ``TmTransferFrame.pack`` (FECF given, not computed: the peer is favoured).
* ``space_packet_unpack``: ``SpacePacket.unpack`` of a 100-octet packet against
  ``SpacePacketHeader.unpack`` + data slice.
* ``split_packet_octets_stream``: splitting 20 concatenated packets into octets (headers
  checked), against ``parse_space_packets`` (which returns octets too).
* ``split_packets_stream``: the same, decoded into typed ``SpacePacket`` objects.

``--quick`` runs fewer repetitions (same sizes); ``--json`` ends stdout with one JSON line.
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

from spacepackets.ccsds.spacepacket import (
    PacketId,  # noqa: E402
    parse_space_packets,  # noqa: E402
)
from spacepackets.ccsds.spacepacket import PacketType as SpPacketType  # noqa: E402
from spacepackets.ccsds.spacepacket import SpacePacketHeader as SpHeader  # noqa: E402
from spacepackets.ccsds.tm_frame import TmTransferFrame  # noqa: E402

from sdls_qkd.framing.channel import TmChannel  # noqa: E402
from sdls_qkd.framing.crc import CRC16_BACKEND  # noqa: E402
from sdls_qkd.framing.ocf import Clcw  # noqa: E402
from sdls_qkd.framing.space_packet import (  # noqa: E402
    PacketType,
    SpacePacket,
    split_packet_octets,
    split_packets,
)
from sdls_qkd.framing.tm import TmCodec, TmFrame  # noqa: E402


def rates(ours: Callable[[], object], theirs: Callable[[], object], repeat: int,
          number: int) -> tuple[float, float]:
    """Best-of-``repeat`` calls per second over ``number`` calls, for both functions.

    The two are timed alternately, round after round, so that the load of a shared machine
    drifting during the run weighs on both alike.
    """
    best = [float("inf"), float("inf")]
    for _ in range(repeat):
        for i, fn in enumerate((ours, theirs)):
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return number / best[0], number / best[1]


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
    repeat, number = (5, 2000) if args.quick else (9, 20000)

    print(f"python {platform.python_version()}, crc16 backend {CRC16_BACKEND}, "
          f"fastcrc {_version('fastcrc')}, spacepackets {_version('spacepackets')}")
    cases: list[dict[str, object]] = []

    def case(name: str, measured: tuple[float, float], baseline_name: str, unit: str) -> None:
        ours, baseline = measured
        cases.append({"name": name, "ours": ours, "baseline": baseline,
                      "baseline_name": baseline_name, "unit": unit, "ratio": ours / baseline})
        print(f"{name:27s} ours {ours:12,.0f}/s  {baseline_name:34s} {baseline:12,.0f}/s  "
              f"ratio {ours / baseline:6.2f}")

    # ---- TM frames: 1115 octets, OCF + FECF
    ch = TmChannel(scid=758, vcid=0, frame_length=1115, has_ocf=True)
    codec = TmCodec(ch)
    data = bytes(range(256)) * 4 + bytes(ch.data_field_length - 1024)
    ocf = Clcw(vcid=0, report_value=7).pack()
    raw = codec.build(data, mc_frame_count=1, vc_frame_count=2, ocf=ocf)
    # same bytes both ways before timing anything
    sp_frame = TmTransferFrame.unpack(raw, 1115, True)
    assert bytes(sp_frame.pack()) == raw and codec.parse(raw).data == data
    parse = codec.parse
    case("tm_parse_fecf_1115",
         rates(lambda: parse(raw), lambda: TmTransferFrame.unpack(raw, 1115, True), repeat,
               number), "spacepackets TmTransferFrame.unpack", "frames/s")
    case("tm_frame_unpack_1115",
         rates(lambda: TmFrame.unpack(raw, ch), lambda: TmTransferFrame.unpack(raw, 1115, True),
               repeat, number // 4), "spacepackets TmTransferFrame.unpack", "frames/s")
    build = codec.build
    case("tm_build_1115",
         rates(lambda: build(data, mc_frame_count=1, vc_frame_count=2, ocf=ocf), sp_frame.pack,
               repeat, number), "spacepackets TmTransferFrame.pack", "frames/s")

    # ---- Space Packets
    packet = SpacePacket.build(PacketType.TM, 0x42, bytes(94), sequence_count=5).pack()

    def sp_unpack() -> object:
        header = SpHeader.unpack(packet)
        return header, packet[6:header.packet_len]

    case("space_packet_unpack", rates(lambda: SpacePacket.unpack(packet), sp_unpack, repeat,
                                      number), "spacepackets SpacePacketHeader.unpack",
         "packets/s")
    stream = b"".join(SpacePacket.build(PacketType.TM, 0x42, bytes(50 + i), sequence_count=i)
                      .pack() for i in range(20))
    ids = [PacketId(SpPacketType.TM, False, 0x42)]
    assert len(split_packets(stream)[0]) == len(parse_space_packets(stream, ids).tm_list) == 20
    case("split_packet_octets_stream",
         rates(lambda: split_packet_octets(stream), lambda: parse_space_packets(stream, ids),
               repeat, number // 20), "spacepackets parse_space_packets", "streams/s")
    case("split_packets_stream",
         rates(lambda: split_packets(stream), lambda: parse_space_packets(stream, ids), repeat,
               number // 20), "spacepackets parse_space_packets", "streams/s")

    if args.json:
        print(json.dumps({"cases": cases}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
