"""End-to-end: ground and space ends over an in-memory link with loss, duplication and bounded
reordering, rekeying every 1,500 frames from a paced QKD key supply.

Channel (both directions): 3 % loss, 2 % duplication, every copy delayed by 0..4 send slots
(reordering depth 4: no copy is displaced by more than 4 positions).  Receivers resequence
10 frames (2 x depth + 2, enough also for the duplicates).  Every loss is attributed: channel
loss (never delivered), reordering beyond the window (delivered, rejected as a replay although
never accepted, and displaced beyond the resequencer's reach), or SA switch (anything else).
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from pathlib import Path

from _link_child import FakeClock, load, memory_ends, tc_packet, tm_packet, write_config

from sdls_qkd.link.channel_sim import Delivery, LossyChannel
from sdls_qkd.link.endpoint import FrameOutcome, GroundEnd, LinkEnd, SentFrame, SpaceEnd

FRAMES = 20_000          # per direction
AFTER_FRAMES = 1_500
MAX_INVOCATIONS = 2_000  # hard limit per key (tight, so the test can check it)
DEPTH = 4
RESEQ = 2 * DEPTH + 2


class Direction:
    """Bookkeeping of one direction: what was sent, delivered and accepted."""

    def __init__(self, name: str, sender: LinkEnd, receiver: LinkEnd, seed: int) -> None:
        self.name = name
        self.sender = sender
        self.receiver = receiver
        self.channel = LossyChannel(loss=0.03, duplicate=0.02, reorder_depth=DEPTH, seed=seed)
        self.sent: list[tuple[str, int]] = []            # index -> (key fingerprint, IV)
        self.index_of: dict[bytes, int] = {}
        self.delivered: Counter[int] = Counter()
        self.max_delay: dict[int, int] = defaultdict(int)
        self.accepted: Counter[tuple[str, int]] = Counter()
        self.accepted_index: set[int] = set()
        self.rejects: dict[int, list[str]] = defaultdict(list)
        self._protected: list[SentFrame] = []
        sender.audit = self._protected.append  # each frame's key and IV as it is protected

    def transmit(self, frames: list[bytes]) -> None:
        protected, self._protected[:] = list(self._protected), []
        assert [p.frame for p in protected] == frames
        for p in protected:
            assert p.iv is not None
            self.index_of[p.frame] = len(self.sent)
            self.sent.append((p.key_fingerprint.hex(), p.iv))
            self.deliver(self.channel.send(p.frame))

    def deliver(self, copies: list[Delivery]) -> None:
        for copy in copies:
            self.delivered[copy.index] += 1
            self.max_delay[copy.index] = max(self.max_delay[copy.index], copy.delay)
            self.book(self.receiver.receive(copy.frame))

    def book(self, outcomes: list[FrameOutcome]) -> None:
        for o in outcomes:
            index = self.index_of[o.frame]
            if o.accepted:
                assert o.key_fingerprint is not None and o.counter is not None
                self.accepted[(o.key_fingerprint.hex(), o.counter)] += 1
                self.accepted_index.add(index)
            else:
                self.rejects[index].append(o.error or "")

    def attribute(self) -> Counter[str]:
        """Why each frame sent was not accepted."""
        why: Counter[str] = Counter()
        for index in range(len(self.sent)):
            if index in self.accepted_index:
                continue
            if not self.delivered[index]:
                why["channel loss"] += 1
            elif set(self.rejects[index]) == {"AntiReplayFailure"} and \
                    self.max_delay[index] > RESEQ // 2:
                why["reordering beyond the window"] += 1
            else:
                why["switch"] += 1
        return why


def _run(tmp_path: Path) -> tuple[Direction, Direction, GroundEnd, SpaceEnd, FakeClock, int]:
    cfg = load(write_config(tmp_path, counter_block=256, reorder_depth=RESEQ, rekey={
        "after_frames": AFTER_FRAMES, "max_invocations": MAX_INVOCATIONS,
        "invocation_margin": 0.0, "grace_frames": 64, "announce_every_frames": 8}))
    clock = FakeClock()
    ground, space, qkd = memory_ends(cfg, clock, keys=6)
    up = Direction("uplink", ground, space, seed=11)
    down = Direction("downlink", space, ground, seed=12)
    rng = random.Random(5)
    tm_size = space._zone_len - 6 - 7  # noqa: SLF001 - one packet ~ one frame
    i = 0
    while len(up.sent) < FRAMES or len(down.sent) < FRAMES:
        clock.t += 0.01
        if i % 400 == 0:
            qkd.deliver(1)  # the QKD supply: one key per 400 frame pairs (paces the rekeys)
        if len(up.sent) < FRAMES:
            up.transmit(ground.send([tc_packet(i, rng.randrange(8, 300))]) + ground.poll())
        if len(down.sent) < FRAMES:
            down.transmit(space.send([tm_packet(i, tm_size)]) + space.poll())
        i += 1
    # settle: in-flight frames, resequencers, a few clean exchanges so Acks and grace complete
    up.deliver(up.channel.flush())
    down.deliver(down.channel.flush())
    up.book(space.flush_receive())
    down.book(ground.flush_receive())
    return up, down, ground, space, clock, qkd.delivered


def test_lossy_link_20000_frames_with_rekeys(tmp_path: Path) -> None:
    up, down, ground, space, clock, supplied = _run(tmp_path)
    for d in (up, down):
        assert len(d.sent) >= FRAMES
        st = d.channel.stats
        assert st.lost > 300 and st.duplicated > 200 and st.max_delay == DEPTH  # a real mess
        # zero accepted replays: no (key, IV) accepted twice, duplicates all rejected
        assert max(d.accepted.values()) == 1
        # loss attribution: everything lost is the channel's doing; nothing due to a switch
        why = d.attribute()
        assert why["switch"] == 0, (d.name, why)
        assert why["reordering beyond the window"] == 0, (d.name, why)
        assert why["channel loss"] == st.lost
        assert len(d.accepted_index) == len(d.sent) - st.lost
        # every key within its limits; IVs unique per key and within the hard limit
        per_key = Counter(fp for fp, _ in d.sent)
        assert len(per_key) >= 11, f"{d.name}: only {len(per_key)} keys (>= 10 rekeys wanted)"
        assert max(per_key.values()) <= MAX_INVOCATIONS
        assert len(set(d.sent)) == len(d.sent), "a (key, IV) pair was emitted twice"
        assert all(1 <= iv <= MAX_INVOCATIONS for _, iv in d.sent)
    assert supplied >= 22  # the rekeys drew from the paced supply

    # replaying anything seen on the link is rejected, also long after
    for d in (up, down):
        sample = random.Random(1).sample(range(len(d.sent)), 500) + list(
            range(len(d.sent) - 50, len(d.sent)))
        index_frame = {i: f for f, i in d.index_of.items()}
        before = d.receiver.frames_accepted
        for index in sample:
            d.book(d.receiver.receive(index_frame[index]))
        d.book(d.receiver.flush_receive())
        assert d.receiver.frames_accepted == before
        assert max(d.accepted.values()) == 1

    # settle cleanly: no loss, time passes, both ends exchange until every Ack is through
    settled: list[FrameOutcome] = []
    for k in range(200):
        clock.t += 0.5
        for f in ground.send([tc_packet(k)]) + ground.poll():
            settled += space.receive(f)
        for f in space.send([tm_packet(k, 100)]) + space.flush() + space.poll():
            settled += ground.receive(f)
        settled += space.flush_receive() + ground.flush_receive()
    assert settled and all(o.accepted for o in settled)
    assert ground.sa_table() == space.sa_table()
    states = {(row.direction, row.slot) for row in ground.sa_table()}
    assert ("uplink", "current") in states and ("downlink", "current") in states

    # reports: per-SA counters, rejects by reason, buffer level, next rekey
    rep = space.report()
    assert rep.rejects().get("AntiReplayFailure", 0) >= up.channel.stats.duplicated
    assert rep.buffer is not None and rep.buffer.available >= 0
    assert rep.next_rekey[0].direction == "downlink"
    assert sum(sa.frames for sa in rep.sas if sa.direction == "uplink") == space.frames_accepted
    assert sum(sa.frames for sa in rep.sas if sa.direction == "downlink") == space.frames_sent
    kinds = Counter(e.kind for e in ground.events)
    assert kinds["switched"] >= 20 and kinds["retired"] >= 10
    assert "uplink" in rep.format()
