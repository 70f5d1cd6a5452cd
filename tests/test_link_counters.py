"""Durable counters and link state: reserve-ahead IVs, crash-proof anti-replay, SA records."""

from __future__ import annotations

from pathlib import Path

import pytest
from _link_child import FakeClock, load, memory_ends, tc_packet, write_config

from sdls_qkd.errors import (
    AntiReplayFailure,
    CounterExhausted,
    MacVerificationFailure,
    StateCorrupt,
    StateForeign,
    UsageError,
)
from sdls_qkd.framing.channel import TmChannel
from sdls_qkd.framing.crc import crc16
from sdls_qkd.keys.buffer import KeyBuffer
from sdls_qkd.keys.kdf import Direction
from sdls_qkd.link.counters import ReplayGuardCounter, ReservedCounter, counter_name
from sdls_qkd.link.endpoint import GroundEnd, SpaceEnd
from sdls_qkd.link.rekey import SlotState, decode_slot
from sdls_qkd.security.counters import CounterSource
from sdls_qkd.security.engine import apply_security, process_security
from sdls_qkd.security.layout import PRESETS, default_abm
from sdls_qkd.security.sa import SdlsKey, SecurityAssociation, binding_for
from sdls_qkd.store.memory import MemoryStore
from sdls_qkd.store.sqlite import SqliteStore

KEY = bytes(range(32))


def test_reserved_counter_reserves_before_use_and_resumes_past_the_block() -> None:
    store = MemoryStore()
    c = ReservedCounter(store, "iv", 12, block=10, start=1, first_block=10)
    assert isinstance(c, CounterSource)
    used = []
    for _ in range(25):
        v = c.next()
        assert store.load_counter("iv") is not None and v < store.load_counter("iv")  # type: ignore[operator]
        used.append(v)
        c.commit(v + 1)
    assert used == list(range(1, 26))
    assert c.writes == 3  # one store write per block, not per value
    again = ReservedCounter(store, "iv", 12, block=10, start=1)  # "after a crash"
    assert again.resumed and again.next() == 31 > max(used)
    with pytest.raises(UsageError):
        again.commit(5)  # never backwards


def test_reservations_grow_from_a_small_first_block() -> None:
    """A run that dies young skips few values; a long run writes rarely."""
    store = MemoryStore()
    c = ReservedCounter(store, "iv", 12, block=1024, start=1, first_block=8)
    bounds: list[int] = []
    for _ in range(3000):
        v = c.next()
        c.commit(v + 1)
        if not bounds or bounds[-1] != c.reserved_until:
            bounds.append(c.reserved_until)
    assert bounds[:5] == [9, 25, 57, 121, 249]  # steps 8, 16, 32, 64, 128 ...
    assert c.writes == len(bounds) <= 10
    rx = ReplayGuardCounter(store, "rx", 12, block=1024, first_block=8)
    rx.commit(1)
    assert store.load_counter("rx") == 8


def test_reserved_counter_never_wraps() -> None:
    store = MemoryStore()
    c = ReservedCounter(store, "sn", 1, block=100, start=250)
    for v in range(250, 255):
        assert c.next() == v
        c.commit(v + 1)
    with pytest.raises(CounterExhausted):
        c.next()
    assert store.load_counter("sn") == 255


def test_replay_guard_persists_before_accepting() -> None:
    store = MemoryStore()
    c = ReplayGuardCounter(store, "rx", 12, block=8, first_block=8)
    assert c.value == 0
    c.commit(1)
    assert store.load_counter("rx") == 8
    c.commit(8)
    assert c.writes == 1
    c.commit(9)
    assert store.load_counter("rx") == 16 and c.writes == 2
    with pytest.raises(UsageError):
        c.commit(3)
    restarted = ReplayGuardCounter(store, "rx", 12, block=8, first_block=8)
    assert restarted.value == 16 >= 9  # everything accepted before is a replay now


def test_engine_with_durable_counters_across_a_restart(tmp_path: Path) -> None:
    """apply/process through the counter seam with SQLite: IVs after a restart never repeat,
    replays after a receiver restart are rejected, a rejected frame writes nothing."""
    channel = TmChannel(scid=44, vcid=1, frame_length=256)
    frame = bytes([0x02, 0xC2]) + bytes(254)
    tx_path, rx_path = tmp_path / "tx.sqlite", tmp_path / "rx.sqlite"

    def sa_with(counter: CounterSource) -> SecurityAssociation:
        # make_sa takes no counter source (yet): the same SA built by hand
        return SecurityAssociation(
            1, enc_key=SdlsKey(KEY), window=64, bindings=[binding_for(channel)],
            abm=default_abm(channel, PRESETS["yamcs"], mac_only=False), iv_counter=counter)

    sent: list[bytes] = []
    ivs: list[int] = []
    for _run in range(3):
        with SqliteStore(tx_path, end_id="tx") as store:
            sa = sa_with(ReservedCounter(store, "iv", 12, block=16, start=1))
            for _ in range(5):
                out = apply_security(frame, channel, sa)
                sent.append(out)
                ivs.append(int.from_bytes(out[8:20], "big"))
    assert len(set(ivs)) == len(ivs) == 15
    assert ivs[5] == 9 and ivs[10] == 17  # each restart resumes past its (first) block

    accepted: list[bytes] = []
    for part in (sent[:7], sent[7:]):
        with SqliteStore(rx_path, end_id="rx") as store:
            rx = sa_with(ReplayGuardCounter(store, "iv", 12, block=4))
            sas = {1: rx}
            for old in accepted:  # everything accepted before the restart is a replay
                with pytest.raises(AntiReplayFailure):
                    process_security(old, channel, sas)
            before = (store.load_counter("iv"), rx.iv_counter.value)
            forged = bytearray(part[0])
            forged[100] ^= 1
            with pytest.raises(MacVerificationFailure):
                process_security(bytes(forged[:-2]) + crc16(bytes(forged[:-2])).to_bytes(2, "big"),
                                 channel, sas)
            assert (store.load_counter("iv"), rx.iv_counter.value) == before  # nothing written
            for f in part:
                try:
                    process_security(f, channel, sas)
                    accepted.append(f)
                except AntiReplayFailure:
                    pass  # frames inside the jumped-over block after the restart
    assert len(accepted) >= 8


def test_counter_names_are_per_sa_epoch() -> None:
    assert counter_name("iv-tx", "uplink", 5, 3) == "iv-tx/uplink/spi=5/epoch=3"


# --------------------------------------------------------------------------- SA records
def _ends(tmp_path: Path) -> tuple[GroundEnd, SpaceEnd, FakeClock]:
    cfg = load(write_config(tmp_path, rekey={"after_frames": 20, "grace_frames": 4,
                                             "announce_every_frames": 2}))
    clock = FakeClock()
    ground, space, _ = memory_ends(cfg, clock, keys=16)
    return ground, space, clock


def _pump(ground: GroundEnd, space: SpaceEnd, n: int) -> None:
    for i in range(n):
        for f in ground.send([tc_packet(i)]) + ground.poll():
            assert all(o.accepted for o in space.receive(f))
        for f in space.send([]) + space.flush() + space.poll():
            assert all(o.accepted for o in ground.receive(f))


def test_restart_restores_sa_tables_and_keeps_talking(tmp_path: Path) -> None:
    ground, space, clock = _ends(tmp_path)
    _pump(ground, space, 70)
    table = ground.sa_table()
    assert table == space.sa_table()
    cfg = ground.config
    g2 = GroundEnd(cfg, store=ground.store, buffer=KeyBuffer(ground.store, None, cfg.keys,
                                                             clock=clock), clock=clock)
    s2 = SpaceEnd(cfg, store=space.store, buffer=KeyBuffer(space.store, None, cfg.keys,
                                                           clock=clock), clock=clock)
    assert g2.sa_table() == table == s2.sa_table()
    _pump(g2, s2, 70)
    assert g2.sa_table() == s2.sa_table() != table


def test_crash_between_the_two_writes_of_a_switch_is_completed(tmp_path: Path) -> None:
    ground, space, clock = _ends(tmp_path)
    _pump(ground, space, 5)
    cur = ground.uplink.current
    before = ground.store.load_sas()[cur.spi]  # the old SA as CURRENT, before the switch
    _pump(ground, space, 20)
    assert ground.uplink.current.spi != cur.spi
    ground.store.save_sa(cur.spi, before)  # as if the crash came between the two writes
    cfg = ground.config
    g2 = GroundEnd(cfg, store=ground.store, buffer=KeyBuffer(ground.store, None, cfg.keys,
                                                             clock=clock), clock=clock)
    assert g2.uplink.current.epoch == 1
    assert g2.uplink.slots[cur.spi].state is SlotState.IDLE
    assert g2.uplink.slots[cur.spi].sa.held_keys() == ()  # the old key is gone
    assert any(e.kind == "recovered" for e in g2.events)


def test_foreign_or_corrupt_sa_records_are_refused(tmp_path: Path) -> None:
    ground, _, _ = _ends(tmp_path)
    store = ground.store
    blob = store.load_sas()[1]
    with pytest.raises(StateForeign):
        decode_slot(blob, spi=1, direction=Direction.UPLINK, role="receiver")
    with pytest.raises(StateForeign):
        decode_slot(b"something else", spi=1, direction=Direction.UPLINK, role="sender")
    with pytest.raises(StateCorrupt):
        decode_slot(blob[:-5], spi=1, direction=Direction.UPLINK, role="sender")
    store.save_sa(1, blob.replace(b'"state": "current"', b'"state": "idle"'))
    with pytest.raises(StateCorrupt):
        GroundEnd(ground.config, store=store, buffer=None)
    store.save_sa(1, blob)
    store.save_sa(77, blob)
    with pytest.raises(StateForeign):
        GroundEnd(ground.config, store=store, buffer=None)
