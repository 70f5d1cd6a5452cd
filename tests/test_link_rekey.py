"""Rekey policy, handshake and depletion behaviour of the link ends (lossless link)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from _link_child import FakeClock, load, memory_ends, tc_packet, tm_packet, write_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdls_qkd.errors import InvalidConfiguration, InvalidProcedure, KeyBufferEmpty
from sdls_qkd.keys.buffer import KeyBuffer
from sdls_qkd.keys.kdf import Direction
from sdls_qkd.keys.material import QkdKey
from sdls_qkd.link.endpoint import FrameOutcome, GroundEnd, SpaceEnd
from sdls_qkd.link.rekey import (
    Ack,
    Announce,
    Nack,
    NackReason,
    RekeyPolicy,
    SlotState,
    Usage,
    parse_control,
)
from sdls_qkd.store.memory import MemoryStore


# --------------------------------------------------------------------------- policy
def test_each_trigger_fires_and_extensions_scale_only_soft_limits() -> None:
    p = RekeyPolicy(after_frames=100, after_octets=10_000, after_seconds=60.0, iv_fraction=0.25,
                    max_invocations=1_000, invocation_margin=0.1)
    assert p.due(Usage(10, 100, 1.0, 0.0)) is None
    assert p.due(Usage(100, 0, 0.0, 0.0)) == "frames"
    assert p.due(Usage(0, 10_000, 0.0, 0.0)) == "octets"
    assert p.due(Usage(0, 0, 60.0, 0.0)) == "time"
    assert p.due(Usage(0, 0, 0.0, 0.3)) == "iv-space"
    assert p.due(Usage(900, 0, 0.0, 0.0)) == "invocation-limit"
    assert p.due(Usage(150, 0, 0.0, 0.0), extensions=1) is None  # extended once: 200 frames
    assert p.due(Usage(900, 0, 0.0, 0.0), extensions=5) == "invocation-limit"  # never scaled
    assert not p.exhausted(Usage(999, 0, 0, 0)) and p.exhausted(Usage(1_000, 0, 0, 0))
    assert p.remaining(Usage(40, 0, 0.0, 0.0))["frames"] == 60


@pytest.mark.parametrize("kwargs", [
    {"after_frames": 0}, {"after_seconds": -1.0}, {"iv_fraction": 1.5}, {"max_invocations": 1},
    {"grace_frames": 10, "grace_seconds": None}, {"announce_every_frames": 0},
])
def test_policy_refuses_nonsense(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidConfiguration):
        RekeyPolicy(**kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- control PDUs
def test_control_pdus_round_trip_and_reject_bad_input() -> None:
    kid = uuid.uuid4()
    for msg in (Announce(Direction.UPLINK, 2, 7, kid, bytes(range(8))),
                Ack(Direction.DOWNLINK, 4, 9, b"12345678"),
                Nack(Direction.UPLINK, 1, 3, NackReason.KCV_MISMATCH)):
        assert parse_control(msg.pack()) == msg
    for bad in (b"", b"\x51" + bytes(30), b"\xd1\x03" + bytes(14), b"\xd2\x01" + bytes(6) + b"\x09",
                b"\x77" + bytes(8)):
        with pytest.raises(InvalidProcedure):
            parse_control(bad)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40))
def test_control_parser_raises_only_invalid_procedure(data: bytes) -> None:
    try:
        msg = parse_control(data)
    except InvalidProcedure:
        return
    assert msg.pack() == data  # what parses re-encodes to the same octets


# --------------------------------------------------------------------------- helpers
def _ends(tmp_path: Path, *, keys: int = 16, clock: FakeClock | None = None,
          rekey: dict[str, object] | None = None, buffer_keys: dict[str, object] | None = None,
          ) -> tuple[GroundEnd, SpaceEnd, FakeClock]:
    policy: dict[str, object] = {"after_frames": 30, "grace_frames": 4,
                                 "announce_every_frames": 2}
    policy.update(rekey or {})
    cfg = load(write_config(tmp_path, rekey=policy, keys=buffer_keys))
    clock = clock or FakeClock()
    ground, space, _ = memory_ends(cfg, clock, keys=keys)
    return ground, space, clock


def _exchange(ground: GroundEnd, space: SpaceEnd, n: int, *, clock: FakeClock | None = None,
              step: float = 0.0) -> list[FrameOutcome]:
    out: list[FrameOutcome] = []
    for i in range(n):
        if clock is not None:
            clock.t += step
        for f in ground.send([tc_packet(i)]) + ground.poll():
            out += space.receive(f)
        for f in space.send([tm_packet(i, 50)]) + space.flush() + space.poll():
            out += ground.receive(f)
    return out


def test_time_trigger_uses_the_injected_clock(tmp_path: Path) -> None:
    ground, space, clock = _ends(tmp_path, rekey={"after_frames": None, "after_seconds": 10.0,
                                                   "grace_frames": None, "grace_seconds": 3.0})
    out = _exchange(ground, space, 9, clock=clock, step=1.0)
    assert all(o.accepted for o in out)
    assert ground.uplink.current.epoch == 0 and space.downlink.current.epoch == 0
    out = _exchange(ground, space, 20, clock=clock, step=1.0)
    assert all(o.accepted for o in out)
    assert ground.uplink.current.epoch == 2 and space.downlink.current.epoch == 2
    assert ground.sa_table() == space.sa_table()


def test_fail_closed_blocks_user_traffic_until_keys_arrive(tmp_path: Path) -> None:
    ground, space, clock = _ends(tmp_path, keys=0)
    out = _exchange(ground, space, 30)
    assert all(o.accepted for o in out)
    with pytest.raises(KeyBufferEmpty, match="fail-closed"):
        ground.send([tc_packet(99)])
    rep = ground.report()
    assert rep.next_rekey[0].blocked and rep.buffer is not None and rep.buffer.available == 0
    kinds = {e.kind for e in ground.events}
    assert {"supply-short", "blocked"} <= kinds
    # a QKD pass delivers keys: the master arms, announces, the space acks, traffic resumes
    # (4 keys stay reserved for the AUTH purpose by the buffer's floors: deliver 8)
    keys = [QkdKey(uuid.uuid4(), os.urandom(32)) for _ in range(8)]
    assert ground.buffer is not None and space.buffer is not None
    ground.buffer.add_keys(keys)
    space.buffer.add_keys(keys)
    clock.t += 10
    for f in ground.poll():
        assert all(o.accepted for o in space.receive(f))
    for f in space.poll():
        assert all(o.accepted for o in ground.receive(f))
    out = _exchange(ground, space, 5)
    assert all(o.accepted for o in out)
    assert ground.uplink.current.epoch == 1 and ground.uplink.blocked is None
    assert "supply-restored" in {e.kind for e in ground.events}


def test_hard_limit_stops_even_control_frames_without_a_confirmed_key(tmp_path: Path) -> None:
    ground, space, _ = _ends(tmp_path, rekey={"after_frames": 5, "max_invocations": 8,
                                              "invocation_margin": 0.0})
    sent = 0
    with pytest.raises(KeyBufferEmpty, match="hard limit"):
        for i in range(20):  # the space never answers: the announcement stays unconfirmed
            sent += len(ground.send([tc_packet(i)]))
    assert 5 <= sent <= 8  # never more than max_invocations frames under the key
    assert ground.uplink.usage(ground.uplink.current).invocations <= 8


def test_extend_policy_counts_extensions_then_fails_closed(tmp_path: Path) -> None:
    """Depletion policy EXTEND: the current QKD-derived key is used on, counted, up to the cap."""
    kid_up, kid_down = uuid.uuid4(), uuid.uuid4()
    path = write_config(tmp_path, rekey={"after_frames": 10, "grace_frames": 4,
                                         "announce_every_frames": 2},
                        keys={"depletion": "extend", "max_extensions": 2})
    text = path.read_text().replace('keyFile = "uplink.key"', f'qkdKeyId = "{kid_up}"')
    path.write_text(text.replace('keyFile = "downlink.key"', f'qkdKeyId = "{kid_down}"'))
    cfg = load(path)
    clock = FakeClock()
    keys = [QkdKey(kid_up, os.urandom(32)), QkdKey(kid_down, os.urandom(32))]
    ends = []
    for cls in (GroundEnd, SpaceEnd):
        store = MemoryStore()
        buffer = KeyBuffer(store, None, cfg.keys, clock=clock)
        buffer.add_keys(keys)
        ends.append(cls(cfg, store=store, buffer=buffer, clock=clock))
    ground, space = ends
    assert isinstance(ground, GroundEnd) and isinstance(space, SpaceEnd)
    out = _exchange(ground, space, 30)  # 3 x 10 frames: two extensions
    assert all(o.accepted for o in out)
    assert ground.uplink.current.extensions == 2
    assert [e.kind for e in ground.events].count("extended") >= 2
    with pytest.raises(KeyBufferEmpty):
        ground.send([tc_packet(1)])
    assert ground.report().sas[0].extensions == 2


def test_fallback_policy_uses_preplaced_keys(tmp_path: Path) -> None:
    ground, space, _ = _ends(tmp_path, keys=0, buffer_keys={"depletion": "fallback"})
    pre = [QkdKey(uuid.uuid4(), os.urandom(32), source="preplaced") for _ in range(6)]
    assert ground.buffer is not None and space.buffer is not None
    ground.buffer.load_preplaced(pre)
    space.buffer.load_preplaced(pre)
    out = _exchange(ground, space, 70)
    assert all(o.accepted for o in out)
    assert ground.uplink.current.epoch >= 2
    assert any(e.kind == "buffer-fallback" for e in ground.events)
    assert ground.sa_table() == space.sa_table()


def test_refused_announcement_is_abandoned_and_the_next_key_used(tmp_path: Path) -> None:
    ground, space, _ = _ends(tmp_path, keys=12)
    assert ground.buffer is not None and space.buffer is not None
    first = ground.buffer.status().available
    # the space lost the oldest key (the one the ground will take first)
    oldest = space.buffer._store.list_keys(limit=1)[0].key_id  # noqa: SLF001
    space.buffer.destroy([oldest])
    out = _exchange(ground, space, 70)
    assert all(o.accepted for o in out)
    kinds = [e.kind for e in ground.events]
    assert "nacked" in kinds
    assert ground.uplink.current.epoch >= 2 and ground.uplink.current.qkd_key_id != oldest
    assert ground.buffer.status().available < first
    assert ground.sa_table() == space.sa_table()


def test_kcv_mismatch_is_refused(tmp_path: Path) -> None:
    """Both buffers hold a key under one ID but with different octets: never used."""
    cfg = load(write_config(tmp_path, rekey={"after_frames": 30, "grace_frames": 4,
                                             "announce_every_frames": 2}))
    clock = FakeClock()
    ground, space, _ = memory_ends(cfg, clock, keys=0)
    kid = uuid.uuid4()
    assert ground.buffer is not None and space.buffer is not None
    ground.buffer.add_keys([QkdKey(kid, os.urandom(32))])  # the oldest: taken first
    space.buffer.add_keys([QkdKey(kid, os.urandom(32))])
    floor = [QkdKey(uuid.uuid4(), os.urandom(32)) for _ in range(4)]  # the AUTH floor
    ground.buffer.add_keys(floor)
    space.buffer.add_keys(floor)
    out = _exchange(ground, space, 10)
    assert all(o.accepted for o in out)
    assert "kcv-mismatch" in {e.kind for e in space.events}
    assert "nacked" in {e.kind for e in ground.events}
    assert space.uplink.slot_in(SlotState.ARMED) is None


def test_stale_and_misdirected_control_messages(tmp_path: Path) -> None:
    ground, space, _ = _ends(tmp_path)
    _exchange(ground, space, 3)
    cur = space.uplink.current
    stale = Announce(Direction.UPLINK, cur.spi, cur.epoch, uuid.uuid4(), bytes(8))
    reply = space.uplink.on_announce(stale)
    assert isinstance(reply, Nack) and reply.reason is NackReason.STALE_EPOCH
    bad_spi = Announce(Direction.UPLINK, 999, 50, uuid.uuid4(), bytes(8))
    reply = space.uplink.on_announce(bad_spi)
    assert isinstance(reply, Nack) and reply.reason is NackReason.BAD_SPI
    assert space.report().control_rejects == 0
    space._on_control(Ack(Direction.UPLINK, 1, 1, bytes(8)))  # noqa: SLF001 - space takes no Acks
    assert space.control_rejects == 1


def test_ack_with_a_wrong_kcv_abandons_the_epoch(tmp_path: Path) -> None:
    ground, _, _ = _ends(tmp_path)
    ground.poll()  # arms both directions; nobody answers
    armed = ground.uplink.slot_in(SlotState.ARMED)
    assert armed is not None and not armed.acked
    ground.uplink.on_ack(Ack(Direction.UPLINK, armed.spi, armed.epoch, bytes(8)))
    assert ground.uplink.slots[armed.spi].state is SlotState.IDLE
    assert ground.uplink.slots[armed.spi].sa.held_keys() == ()
    assert "kcv-mismatch" in {e.kind for e in ground.events}


def test_forged_frame_on_the_armed_spi_changes_nothing(tmp_path: Path) -> None:
    ground, space, _ = _ends(tmp_path)
    _exchange(ground, space, 5)
    armed = space.uplink.slot_in(SlotState.ARMED)
    assert armed is not None
    frame = bytearray(ground.send([tc_packet(1)])[0])
    before = space.sa_table()
    off = space.rx.shape.channel.header_length
    frame[off:off + 2] = armed.spi.to_bytes(2, "big")  # claim the next epoch
    from sdls_qkd.framing.crc import crc16
    forged = bytes(frame[:-2]) + crc16(bytes(frame[:-2])).to_bytes(2, "big")
    (outcome,) = space.receive(forged)
    assert outcome.error == "MacVerificationFailure"
    assert space.sa_table() == before and armed.state is SlotState.ARMED
    assert armed.sa.state.name == "KEYED"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_hostile_frames_are_rejected_without_state_change(tmp_path: Path, data: st.DataObject
                                                          ) -> None:
    ground, space, _ = _ends(tmp_path / str(uuid.uuid4()))
    _exchange(ground, space, 3)
    good = ground.send([tc_packet(5)])[0]
    mutated = bytearray(good)
    for _ in range(data.draw(st.integers(1, 4))):
        mutated[data.draw(st.integers(0, len(mutated) - 1))] ^= data.draw(st.integers(1, 255))
    frame = data.draw(st.one_of(st.just(bytes(mutated)), st.binary(max_size=300)))
    before = space.sa_table()
    outcomes = space.receive(frame)
    assert all(not o.accepted for o in outcomes) or frame == good
    assert space.sa_table() == before


def test_blocked_sender_is_released_when_the_old_sa_retires_by_time(tmp_path: Path) -> None:
    """The space's downlink key is due, but the ground still holds the previous downlink SA in
    its grace window (frames alone would never end it: a blocked sender sends nothing).  The
    grace window's clock retires it, the ground arms the next key, and the link recovers."""
    ground, space, clock = _ends(tmp_path, rekey={"after_frames": 10, "grace_frames": 1000,
                                                   "grace_seconds": 5.0})
    blocked = False
    for i in range(40):
        for f in ground.send([tc_packet(i)]) + ground.poll():
            assert all(o.accepted for o in space.receive(f))
        try:
            frames = space.send([tm_packet(i, 50)]) + space.flush()
        except KeyBufferEmpty:
            blocked = True
            frames = []
        for f in frames + space.poll():
            assert all(o.accepted for o in ground.receive(f))
    assert blocked and space.downlink.blocked is not None
    assert ground.downlink.slot_in(SlotState.GRACE) is not None
    clock.t += 6.0
    for _ in range(3):
        for f in ground.poll():
            assert all(o.accepted for o in space.receive(f))
        for f in space.poll():
            assert all(o.accepted for o in ground.receive(f))
    frames = space.send([tm_packet(99, 50)]) + space.flush()
    assert frames and all(o.accepted for f in frames for o in ground.receive(f))
    assert space.downlink.blocked is None
