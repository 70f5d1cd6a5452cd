"""Crash safety of durable link state: real SQLite files, real processes, real SIGKILL.

Children are forked from this (already imported) process so each costs milliseconds; each opens
its SQLite state itself (nothing is shared with the parent) and is killed with SIGKILL at a
random moment: during start-up, a counter-block reservation, a rekey, or a frame.  SIGKILL tests
process crashes; the OS keeps what was written, so power loss is not what this shows (WAL with
``synchronous=FULL`` is what covers that).  Because a process crash does not depend on fsync, the
state files live on a tmpfs (``/dev/shm``) when there is one: the same SQLite files and the same
crash semantics, without ~5 ms of fsync per transaction, so 200 kills fit the time budget.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from _link_child import (
    iter_records,
    load,
    preload_keys,
    read_records,
    receiver_crash_cycles,
    sender_crash_cycles,
    tc_stream,
    write_config,
)

from sdls_qkd.link.endpoint import GroundEnd, SpaceEnd

CYCLES = 200


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory for SQLite state: on tmpfs when available (see the module docstring)."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        path = Path(tempfile.mkdtemp(prefix="sdls-link-", dir=shm))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)
    else:
        yield tmp_path


def test_sender_sigkill_never_repeats_an_iv(state_dir: Path) -> None:
    """Both ends on SQLite, rekeying every 100 frames, killed 200 times: every (key, IV) pair
    emitted across all runs is unique, and no frame is accepted twice."""
    tmp_path = state_dir
    cfg = load(write_config(tmp_path, counter_block=64, rekey={
        "after_frames": 100, "grace_frames": 16, "grace_seconds": 0.05,
        "announce_every_frames": 4},
        ground_state="ground.sqlite", space_state="space.sqlite"))
    preload_keys(cfg, 1_200)
    records = tmp_path / "records.bin"
    stats = sender_crash_cycles(cfg, records, CYCLES, seed=7, max_delay=0.08, max_frames=200)
    assert not stats.failed, stats.errors[:3]
    assert stats.killed >= CYCLES, stats  # 200 real SIGKILLs (children that finished first
    assert stats.finished + stats.killed == stats.cycles, stats  # do not count)
    recs = read_records(records)
    sent = iter_records(recs, b"S")
    accepted = iter_records(recs, b"A")
    dup = [k for k, n in Counter(sent).items() if n > 1]
    assert not dup, f"{len(dup)} (key, IV) pairs emitted twice, e.g. {dup[:3]}"
    assert max(Counter(accepted).values()) == 1, "a frame was accepted twice"
    # liveness: the link did not desynchronise (only frames in flight at a kill are lost)
    assert len(accepted) >= 0.9 * len(sent), (len(accepted), len(sent))
    keys = {fp for fp, _ in sent}
    assert len(sent) > 800 and len(keys) >= 10, (len(sent), len(keys))  # real progress

    # the state survived it all: both ends open cleanly and still talk
    ground, space = GroundEnd.open(cfg), SpaceEnd.open(cfg)
    try:
        assert isinstance(ground, GroundEnd) and isinstance(space, SpaceEnd)
        ok = 0
        for i in range(40):
            for f in ground.send([bytes.fromhex("1100c0000003") + i.to_bytes(4, "big")]) + \
                    ground.poll():
                ok += sum(o.accepted for o in space.receive(f))
        assert ok >= 40
    finally:
        ground.close()
        space.close()


def test_receiver_sigkill_rejects_every_earlier_frame(state_dir: Path) -> None:
    """A space end on SQLite, killed 200 times while receiving: after each restart, replays of
    the frames it accepted before (the last ones and a random sample) are all rejected, and no
    frame of the stream is ever accepted twice."""
    tmp_path = state_dir
    cfg = load(write_config(tmp_path, counter_block=32, rekey={"after_frames": 10 ** 9},
                            space_state="space.sqlite"))
    stream = tc_stream(cfg, 40_000)
    out = receiver_crash_cycles(cfg, stream, tmp_path / "rx.bin", CYCLES, seed=9,
                                max_delay=0.03, per_cycle=100)
    assert out["failed"] == 0, out
    assert out["killed"] >= CYCLES, out         # 200 real SIGKILLs
    assert out["replays"] >= 1_000, out         # replays were really tried after restarts
    assert out["replays_accepted"] == 0, out    # and every one was rejected
    assert out["double_accepts"] == 0, out
    assert out["accepted"] >= 1_000, out        # while the link kept delivering


@pytest.mark.parametrize("damage", ["truncate", "garbage", "foreign-end", "not-sqlite"])
def test_damaged_state_file_is_refused(tmp_path: Path, damage: str) -> None:
    from sdls_qkd.errors import StateCorrupt, StateForeign, StateStoreError

    cfg = load(write_config(tmp_path, ground_state="ground.sqlite",
                            space_state="space.sqlite"))
    ground = GroundEnd.open(cfg)
    ground.send([bytes.fromhex("1100c0000003") + b"abcd"])
    ground.close()
    path = Path(cfg.ground_state)
    data = path.read_bytes()
    expected: type[StateStoreError]
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
        expected = StateCorrupt
    elif damage == "garbage":
        page = 4096
        path.write_bytes(data[:page] + bytes(0x5A for _ in range(len(data) - page)))
        expected = StateCorrupt
    elif damage == "foreign-end":  # the space end's file opened as the ground's
        path.write_bytes(Path(cfg.space_state).read_bytes() if Path(cfg.space_state).exists()
                         else b"")
        space = SpaceEnd.open(cfg)
        space.close()
        path.write_bytes(Path(cfg.space_state).read_bytes())
        expected = StateForeign
    else:
        path.write_bytes(b"this is not a state file at all" * 8)
        expected = StateForeign
    with pytest.raises(expected):
        GroundEnd.open(cfg)
