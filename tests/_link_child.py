"""Helpers for the link tests and crash children (also used by tools/crash_soak.py).

Crash children are *forked* from the (already imported) parent: a child opens its SQLite state,
runs, and writes one fixed-size record per emitted / accepted frame to an append-only file
(``os.write`` of a whole record: a SIGKILL never leaves half a record).  The parent kills it
with SIGKILL at a random moment, reads the records and checks the invariants across restarts.
"""

from __future__ import annotations

import functools
import os
import random
import select
import signal
import struct
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdls_qkd.errors import KeyBufferEmpty
from sdls_qkd.framing.space_packet import PacketType, SpacePacket
from sdls_qkd.keys.buffer import KeyBuffer
from sdls_qkd.keys.material import QkdKey
from sdls_qkd.link.channel_sim import QkdPairSim
from sdls_qkd.link.config import LinkConfig, parse_config
from sdls_qkd.link.endpoint import FrameOutcome, GroundEnd, LinkEnd, SentFrame, SpaceEnd
from sdls_qkd.store.memory import MemoryStore
from sdls_qkd.store.sqlite import SqliteStore

TC_APID = 0x100
TM_APID = 0x200


def write_config(tmp: Path, *, counter_block: int = 256, window: int | None = None,
                 rekey: dict[str, Any] | None = None, keys: dict[str, Any] | None = None,
                 reorder_depth: int = 0, ground_state: str = ":memory:",
                 space_state: str = ":memory:", tm_frame_length: int = 1786) -> Path:
    """A link TOML file (and its two key files) in ``tmp``; returns its path."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "uplink.key").write_bytes(os.urandom(32))
    (tmp / "downlink.key").write_bytes(os.urandom(32))
    window = window if window is not None else 2 * counter_block
    policy = {"after_frames": 1000, "grace_frames": 64, "announce_every_frames": 8,
              "after_seconds": None, "grace_seconds": 30.0, "announce_every_seconds": None}
    policy.update(rekey or {})

    def toml_value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return f'"{v}"'
        return str(v)

    def table(name: str, values: dict[str, Any]) -> str:
        lines = [f"[{name}]"]
        lines += [f"{k} = {toml_value(v)}" for k, v in values.items() if v is not None]
        return "\n".join(lines)

    text = f"""
[link]
scid = 44
counter_block = {counter_block}
reorder_depth = {reorder_depth}

[link.tc]
vcid = 0
has_segment_header = true

[link.tm]
vcid = 1
frame_length = {tm_frame_length}

[ground]
state = "{ground_state}"
[space]
state = "{space_state}"

{table("rekey", policy)}

{table("keys", keys or {})}

[[encryption]]
spi = 1
rekeySpi = 2
link = "tc"
vcId = 0
keyFile = "uplink.key"
seqNumWindow = {window}
verifySeqNum = true

[[encryption]]
spi = 3
rekeySpi = 4
link = "tm"
vcId = 1
keyFile = "downlink.key"
seqNumWindow = {window}
"""
    path = tmp / "link.toml"
    path.write_text(text)
    return path


def load(path: Path) -> LinkConfig:
    import tomllib

    return parse_config(tomllib.loads(path.read_text()), base_dir=path.parent)


class FakeClock:
    def __init__(self, t: float = 1_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def memory_ends(cfg: LinkConfig, clock: Callable[[], float], *, keys: int = 64
                ) -> tuple[GroundEnd, SpaceEnd, QkdPairSim]:
    gs, ss = MemoryStore(), MemoryStore()
    gb = KeyBuffer(gs, None, cfg.keys, clock=clock)
    sb = KeyBuffer(ss, None, cfg.keys, clock=clock)
    qkd = QkdPairSim(gb, sb)
    qkd.deliver(keys)
    ground = GroundEnd(cfg, store=gs, buffer=gb, clock=clock)
    space = SpaceEnd(cfg, store=ss, buffer=sb, clock=clock)
    return ground, space, qkd


def tc_packet(i: int, size: int = 64) -> SpacePacket:
    body = (i.to_bytes(4, "big") * ((size + 3) // 4))[:size]
    return SpacePacket.build(PacketType.TC, TC_APID, body, sequence_count=i % 16384)


def tm_packet(i: int, size: int) -> SpacePacket:
    body = (i.to_bytes(4, "big") * ((size + 3) // 4))[:size]
    return SpacePacket.build(PacketType.TM, TM_APID, body, sequence_count=i % 16384)


def preload_keys(cfg: LinkConfig, count: int) -> None:
    """Put the same ``count`` QKD keys into both ends' SQLite state files."""
    keys = [QkdKey(uuid.uuid4(), os.urandom(32), source="test") for _ in range(count)]
    for path, role in ((cfg.ground_state, "ground"), (cfg.space_state, "space")):
        with SqliteStore(path, end_id=f"{role}/scid={cfg.scid}") as store:
            KeyBuffer(store, None, cfg.keys).add_keys(keys)


# --------------------------------------------------------------------------- records
_REC = struct.Struct(">c8s12s")  # kind, key fingerprint, IV


def _record(fd: int, kind: bytes, fp: str, iv: int) -> None:
    os.write(fd, _REC.pack(kind, bytes.fromhex(fp), iv.to_bytes(12, "big")))


def read_records(path: Path) -> list[tuple[bytes, bytes, int]]:
    data = path.read_bytes() if path.exists() else b""
    usable = len(data) - len(data) % _REC.size
    return [(k, fp, int.from_bytes(iv, "big")) for k, fp, iv in _REC.iter_unpack(data[:usable])]


def _accepted_key(o: FrameOutcome) -> tuple[str, int]:
    assert o.key_fingerprint is not None and o.counter is not None
    return o.key_fingerprint.hex(), o.counter


def run_duplex(ground: GroundEnd, space: SpaceEnd, frames: int, fd: int | None, seed: int,
               tm_size: int = 200) -> None:
    """Both ends in one process, perfect channel; records 'S'ent and 'A'ccepted frames."""
    rng = random.Random(seed)
    if fd is not None:  # record each frame's key and IV at the moment it is protected
        def audit(sent: SentFrame) -> None:
            assert sent.iv is not None
            _record(fd, b"S", sent.key_fingerprint.hex(), sent.iv)

        ground.audit = space.audit = audit

    def send(end: LinkEnd, packet: SpacePacket) -> list[bytes]:
        try:
            frames = end.send([packet])
        except KeyBufferEmpty:  # fail closed while a rekey is due without a key: keep polling
            frames = []
        return frames + end.poll()

    for i in range(frames):
        tc = send(ground, tc_packet(rng.randrange(1 << 30), rng.randrange(8, 200)))
        for f in tc:
            for o in space.receive(f):
                if o.accepted and fd is not None:
                    _record(fd, b"A", *_accepted_key(o))
        tm = send(space, tm_packet(i, tm_size))
        for f in tm:
            for o in ground.receive(f):
                if o.accepted and fd is not None:
                    _record(fd, b"A", *_accepted_key(o))


@dataclass
class CrashStats:
    cycles: int = 0
    killed: int = 0
    finished: int = 0
    failed: int = 0
    records: int = 0
    errors: list[str] = field(default_factory=list)


def _fork(target: Callable[[int], None]) -> tuple[int, int]:
    """Fork a child running ``target(ready_fd)``; returns (pid, read end of the ready pipe).

    The child writes one octet to ``ready_fd`` once its state is open."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        code = 0
        try:
            target(w)
        except BaseException as exc:  # noqa: BLE001 - report and exit, never return to pytest
            try:
                os.write(2, f"crash child failed: {type(exc).__name__}: {exc}\n".encode())
            finally:
                code = 3
        os._exit(code)
    os.close(w)
    return pid, r


def _kill_after(pid: int, ready: int, delay: float, *, from_start: bool) -> tuple[bool, int]:
    """SIGKILL the child ``delay`` seconds after its fork (``from_start``) or after it said it
    is ready (then start-up cannot eat the whole life of every child on a loaded machine).
    Returns (killed, status)."""
    try:
        if not from_start:
            select.select([ready], [], [], 5.0)
        deadline = time.monotonic() + delay
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return False, status
            if time.monotonic() >= deadline:
                os.kill(pid, signal.SIGKILL)
                _, status = os.waitpid(pid, 0)
                return True, status
            time.sleep(0.0005)
    finally:
        os.close(ready)  # only now: the child's "ready" write never meets a closed pipe


def _sender_child(cfg: LinkConfig, records: Path, frames: int, seed: int, ready: int) -> None:
    fd = os.open(records, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    ground = GroundEnd.open(cfg)
    space = SpaceEnd.open(cfg)
    assert isinstance(ground, GroundEnd) and isinstance(space, SpaceEnd)
    os.write(ready, b"r")
    run_duplex(ground, space, frames, fd, seed)
    ground.close()
    space.close()


def _receiver_child(cfg: LinkConfig, stream: list[bytes], todo: list[int], log: Path,
                    ready: int) -> None:
    rec = struct.Struct(">IB")
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    space = SpaceEnd.open(cfg)
    os.write(ready, b"r")
    for index in todo:
        outcomes = space.receive(stream[index])
        os.write(fd, rec.pack(index, 1 if outcomes[0].accepted else 0))
    space.close()


#: a child may finish before its kill time; cycles go on until the kills asked for are done,
#: up to this many cycles per kill
MAX_CYCLES_PER_KILL = 4


def sender_crash_cycles(cfg: LinkConfig, records: Path, kills: int, *, seed: int = 1,
                        max_delay: float = 0.06, max_frames: int = 300) -> CrashStats:
    """Fork children running both ends on SQLite state and SIGKILL each at a random moment,
    until ``kills`` children have been killed (children that finish first do not count)."""
    rng = random.Random(seed)
    stats = CrashStats()
    c = 0
    while stats.killed < kills and c < MAX_CYCLES_PER_KILL * kills:
        c += 1
        frames = rng.randrange(1, max_frames)
        child_seed = rng.randrange(1 << 30)

        pid, ready = _fork(functools.partial(_sender_child, cfg, records, frames, child_seed))
        # a quarter of the kills count from the fork (they hit start-up and recovery too)
        killed, status = _kill_after(pid, ready, rng.uniform(0, max_delay),
                                     from_start=rng.random() < 0.25)
        stats.cycles += 1
        if killed:
            stats.killed += 1
        elif os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
            stats.finished += 1
        else:
            stats.failed += 1
            stats.errors.append(f"cycle {c}: status {status}")
    stats.records = len(read_records(records))
    return stats


def receiver_crash_cycles(cfg: LinkConfig, stream: list[bytes], log: Path, kills: int, *,
                          seed: int = 2, max_delay: float = 0.03, replay_sample: int = 24,
                          per_cycle: int = 120) -> dict[str, Any]:
    """Feed a TC frame stream to a forked SpaceEnd on SQLite state, SIGKILL it at random,
    until ``kills`` children have been killed (or the stream is used up).

    Each child first gets replays of frames accepted in earlier runs (the last ones accepted
    and a random sample), then new frames.  It logs (index, accepted) per frame processed.
    """
    rng = random.Random(seed)
    rec = struct.Struct(">IB")
    accepted: list[int] = []          # stream indices accepted, over all runs, in order
    accepted_set: set[int] = set()
    next_index = 0
    out: dict[str, Any] = {"cycles": 0, "killed": 0, "replays": 0, "replays_accepted": 0,
                           "double_accepts": 0, "new_rejected": 0, "failed": 0}
    while out["killed"] < kills and out["cycles"] < MAX_CYCLES_PER_KILL * kills:
        if next_index >= len(stream):
            break
        replays = accepted[-replay_sample // 2:] + rng.sample(
            accepted, min(len(accepted), replay_sample // 2))
        todo = [(i, True) for i in replays] + [
            (i, False) for i in range(next_index, min(len(stream), next_index + per_cycle))]
        if log.exists():
            log.unlink()

        pid, ready = _fork(functools.partial(_receiver_child, cfg, stream,
                                             [i for i, _ in todo], log))
        killed, status = _kill_after(pid, ready, rng.uniform(0, max_delay),
                                     from_start=rng.random() < 0.25)
        out["cycles"] += 1
        out["killed"] += int(killed)
        if not killed and not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
            out["failed"] += 1
        data = log.read_bytes() if log.exists() else b""
        seen = list(rec.iter_unpack(data[: len(data) - len(data) % rec.size]))
        replay_set = set(replays)
        for index, ok in seen:
            if index in replay_set and index in accepted_set:
                out["replays"] += 1
                out["replays_accepted"] += ok
            if ok:
                if index in accepted_set:
                    out["double_accepts"] += 1
                accepted_set.add(index)
                accepted.append(index)
            elif index >= next_index:
                out["new_rejected"] += 1
        new_seen = [i for i, _ in seen if i >= next_index]
        if new_seen:
            next_index = max(new_seen) + 1
    out["accepted"] = len(accepted_set)
    out["stream_used"] = next_index
    return out


def tc_stream(cfg: LinkConfig, count: int, *, seed: int = 3) -> list[bytes]:
    """``count`` protected TC frames from an in-memory ground end (one key epoch)."""
    store = MemoryStore()
    ground = GroundEnd(cfg, store=store, buffer=KeyBuffer(store, None, cfg.keys))
    rng = random.Random(seed)
    out: list[bytes] = []
    while len(out) < count:
        out += ground.send([tc_packet(len(out), rng.randrange(8, 120))])
    return out[:count]


def iter_records(records: Iterable[tuple[bytes, bytes, int]], kind: bytes
                 ) -> list[tuple[bytes, int]]:
    return [(fp, iv) for k, fp, iv in records if k == kind]
