#!/usr/bin/env python3
"""Crash soak for link ends with durable SQLite state: many more SIGKILLs than the tests.

Two phases (the same harness as ``tests/test_link_crash.py``, from ``tests/_link_child.py``):

* **sender**: both ends in one forked child, rekeying, killed with SIGKILL at random moments;
  across all runs no (key, IV) pair may be emitted twice and no frame accepted twice.
* **receiver**: a forked space end fed a TC stream, killed at random; after each restart the
  frames it accepted before are replayed and must all be rejected.

Exit status 0 when every invariant held, 1 otherwise.  ``--disk`` keeps the state on the real
disk (fsync costs included) instead of a tmpfs.  ``--quick`` runs 200 + 200 cycles.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from _link_child import (  # type: ignore[import-not-found,unused-ignore]  # noqa: E402
    iter_records,
    load,
    preload_keys,
    read_records,
    receiver_crash_cycles,
    sender_crash_cycles,
    tc_stream,
    write_config,
)


def _sender(base: Path, cycles: int, seed: int, max_delay: float) -> dict[str, object]:
    cfg = load(write_config(base / "sender", counter_block=64, rekey={
        "after_frames": 100, "grace_frames": 16, "grace_seconds": 0.05,
        "announce_every_frames": 4},
        ground_state="ground.sqlite", space_state="space.sqlite"))
    preload_keys(cfg, 40 + cycles * 6)
    records = base / "sender" / "records.bin"
    t0 = time.monotonic()
    stats = sender_crash_cycles(cfg, records, cycles, seed=seed, max_delay=max_delay,
                                max_frames=400)
    recs = read_records(records)
    sent = iter_records(recs, b"S")
    accepted = iter_records(recs, b"A")
    repeated = sum(1 for n in Counter(sent).values() if n > 1)
    double = sum(1 for n in Counter(accepted).values() if n > 1)
    return {"cycles": stats.cycles, "killed": stats.killed, "failed": stats.failed,
            "errors": stats.errors[:5], "frames_sent": len(sent), "frames_accepted": len(accepted),
            "keys_used": len({fp for fp, _ in sent}), "repeated_key_iv": repeated,
            "accepted_twice": double, "seconds": round(time.monotonic() - t0, 1),
            "accepted_fraction": round(len(accepted) / max(1, len(sent)), 4),
            "ok": repeated == 0 and double == 0 and stats.failed == 0
            and stats.killed >= cycles}


def _receiver(base: Path, cycles: int, seed: int, max_delay: float) -> dict[str, object]:
    cfg = load(write_config(base / "receiver", counter_block=32,
                            rekey={"after_frames": 10 ** 9}, space_state="space.sqlite"))
    t0 = time.monotonic()
    stream = tc_stream(cfg, cycles * 280)
    out = receiver_crash_cycles(cfg, stream, base / "receiver" / "rx.bin", cycles, seed=seed,
                                max_delay=max_delay, per_cycle=120)
    out["seconds"] = round(time.monotonic() - t0, 1)
    out["ok"] = (out["replays_accepted"] == 0 and out["double_accepts"] == 0
                 and out["failed"] == 0 and out["killed"] >= cycles)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=2_000, help="SIGKILLs per phase")
    parser.add_argument("--quick", action="store_true", help="200 cycles per phase")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--disk", action="store_true", help="state on disk, not on tmpfs")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    parser.add_argument("--max-delay", type=float, default=0.15,
                        help="longest life of a child before its SIGKILL (seconds)")
    args = parser.parse_args(argv)
    cycles = 200 if args.quick else args.cycles
    shm = Path("/dev/shm")
    where = None if args.disk or not shm.is_dir() else str(shm)
    base = Path(tempfile.mkdtemp(prefix="crash-soak-", dir=where))
    try:
        sender = _sender(base, cycles, args.seed, args.max_delay)
        print(f"sender:   {sender}")
        receiver = _receiver(base, cycles, args.seed + 1, args.max_delay / 3)
        print(f"receiver: {receiver}")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    ok = bool(sender["ok"]) and bool(receiver["ok"])
    print("all invariants held" if ok else "INVARIANT VIOLATED")
    if args.json:
        print(json.dumps({"sender": sender, "receiver": receiver, "ok": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
