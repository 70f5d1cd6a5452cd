#!/usr/bin/env python3
"""Benchmark a link end's durable state: protected TM frames per second.

Case (rates, higher is better; both measured in the same run, alternately, on the same work):

* ``durable_tm_1786``: a :class:`~sdls_qkd.link.endpoint.SpaceEnd` protecting 1786-octet TM
  frames with AES-256-GCM (packet service, SDLS apply, rekey-trigger checks) whose state lives in
  an SQLite file on disk (WAL, ``synchronous=FULL``; IVs reserved ``counter_block`` at a time)
  against ``memory_state``: the same end with an in-memory store.  The goal is ratio >= 0.8:
  durability must not cost the hot path more than 20 %.

Each round sends ``--frames`` packets (default 8192: two IV reservations per round at the
default block of 4096) that fill one frame each; rounds alternate between the two ends so that
the load of a shared machine weighs on both alike, and each rate is the median over its rounds.
``--quick`` runs fewer rounds (same sizes); ``--json`` ends stdout with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sdls_qkd.framing.space_packet import PacketType, SpacePacket  # noqa: E402
from sdls_qkd.keys.buffer import KeyBuffer  # noqa: E402
from sdls_qkd.link.config import LinkConfig, parse_config  # noqa: E402
from sdls_qkd.link.counters import DEFAULT_BLOCK  # noqa: E402
from sdls_qkd.link.endpoint import SpaceEnd  # noqa: E402
from sdls_qkd.store.memory import MemoryStore  # noqa: E402
from sdls_qkd.store.sqlite import SqliteStore  # noqa: E402


def _config(tmp: Path, counter_block: int) -> LinkConfig:
    (tmp / "up.key").write_bytes(os.urandom(32))
    (tmp / "down.key").write_bytes(os.urandom(32))
    return parse_config({
        "link": {"scid": 44, "counter_block": counter_block,
                 "tc": {"vcid": 0, "has_segment_header": True},
                 "tm": {"vcid": 1, "frame_length": 1786}},
        "rekey": {"after_frames": 10 ** 12, "after_seconds": None},
        "encryption": [
            {"spi": 1, "rekeySpi": 2, "link": "tc", "keyFile": "up.key"},
            {"spi": 3, "rekeySpi": 4, "link": "tm", "keyFile": "down.key"},
        ],
    }, base_dir=tmp)


def _packets(end: SpaceEnd, count: int) -> list[bytes]:
    size = end._zone_len - 6  # noqa: SLF001 - one packet fills one frame's packet zone
    return [SpacePacket.build(PacketType.TM, 0x42, (i % 251).to_bytes(1, "big") * size,
                              sequence_count=i % 16384).pack() for i in range(count)]


def _round(end: SpaceEnd, packets: list[bytes]) -> float:
    start = time.perf_counter()
    sent = 0
    for packet in packets:
        sent += len(end.send((packet,)))
    elapsed = time.perf_counter() - start
    if sent != len(packets):
        raise SystemExit(f"expected {len(packets)} frames, got {sent}")
    return sent / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, same sizes")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    parser.add_argument("--frames", type=int, default=8192, help="frames per round")
    parser.add_argument("--counter-block", type=int, default=DEFAULT_BLOCK)
    args = parser.parse_args(argv)
    rounds = 9 if args.quick else 31

    with tempfile.TemporaryDirectory(prefix="bench-link-") as tmpdir:
        tmp = Path(tmpdir)
        cfg = _config(tmp, args.counter_block)
        disk = SqliteStore(tmp / "space.sqlite", end_id="space/scid=44")
        durable = SpaceEnd(cfg, store=disk, buffer=KeyBuffer(disk, None, cfg.keys))
        mem = MemoryStore()
        memory = SpaceEnd(cfg, store=mem, buffer=KeyBuffer(mem, None, cfg.keys))
        packets = _packets(durable, args.frames)
        _round(durable, packets[:500])
        _round(memory, packets[:500])
        mem_rates, disk_rates = [], []
        for _ in range(rounds):  # alternate, so machine load drifts onto both alike
            mem_rates.append(_round(memory, packets))
            disk_rates.append(_round(durable, packets))
        best_memory = statistics.median(mem_rates)
        best_durable = statistics.median(disk_rates)
        writes = durable.tx.current.sa.iv_counter
        disk.close()

    print(f"python {platform.python_version()}, cryptography {metadata.version('cryptography')},"
          f" SQLite {sqlite3.sqlite_version}, {platform.machine()}")
    print(f"{args.frames} TM frames of 1786 octets per round, median of {rounds} rounds each, "
          f"counter block {args.counter_block} ({getattr(writes, 'writes', '?')} reservations "
          "in the last end's life)")
    ratio = best_durable / best_memory
    print(f"durable_tm_1786: {best_durable:,.0f} frames/s (SQLite state)  vs  memory_state "
          f"{best_memory:,.0f} frames/s  ratio {ratio:.3f}  (goal >= 0.8)")
    if args.json:
        print(json.dumps({"cases": [{
            "name": "durable_tm_1786", "ours": best_durable, "baseline": best_memory,
            "baseline_name": "memory_state", "unit": "frames/s", "ratio": ratio}]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
