"""The QKD key buffer: matched ends, release-at-most-once, pools, depletion, watermarks, TTL.

Fake KME: :class:`FakeKmePair` is an in-process stand-in for the two ETSI GS QKD 014 KMEs of
one QKD link — one seeded random key stream, handed to the master by ``fetch_new`` and to the
slave by ``fetch_by_ids`` (each ID at most once, like a KME).  It exists so these tests can
drive thousands of operations quickly; the real KME path (HTTPS with mutual TLS, the ETSI
client and KME simulator) is tested by ``tests/test_etsi014_conformance.py`` and
``tests/test_etsi014_client_faults.py``, and :func:`test_both_ends_over_real_etsi014_kmes` runs
both buffers over it once.  State stores are real SQLite files wherever durability is the point.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from uuid import UUID

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    precondition,
    rule,
)

from sdls_qkd.errors import (
    IllegalTransition,
    InvalidConfiguration,
    KeyAlreadyUsed,
    KeyBufferEmpty,
    KeyDestroyed,
    KmeBadRequest,
    KmeProtocolError,
    UnknownKey,
    UsageError,
)
from sdls_qkd.keys.buffer import (
    KEY_TRANSITIONS,
    BufferConfig,
    BufferEvent,
    BufferEventKind,
    DepletionPolicy,
    Extension,
    KeyBuffer,
    KeyFetcher,
    KeyState,
    Purpose,
    Reservation,
)
from sdls_qkd.keys.material import QkdKey
from sdls_qkd.store.memory import MemoryStore
from sdls_qkd.store.sqlite import SqliteStore

K = BufferEventKind


class FakeClock:
    """A wall clock the test moves by hand."""

    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class FakeKmePair:
    """Two KMEs of one QKD link, in process: one random key stream (see module docstring)."""

    def __init__(self, seed: int = 1, clock: FakeClock | None = None) -> None:
        self._rng = random.Random(seed)
        self._clock = clock or FakeClock()
        self._for_slave: dict[UUID, bytes] = {}
        self._lock = threading.Lock()
        self.limit: int | None = None  # keys the link can still deliver (None: unlimited)
        self.master = _MasterFetcher(self)
        self.slave = _SlaveFetcher(self)

    def new(self, count: int, size_bits: int) -> list[QkdKey]:
        with self._lock:
            if self.limit is not None:
                count = min(count, self.limit)
                self.limit -= count
            keys = []
            for _ in range(count):
                key_id = uuid.UUID(int=self._rng.getrandbits(128), version=4)
                material = self._rng.randbytes(size_bits // 8)
                self._for_slave[key_id] = material
                keys.append(QkdKey(key_id, material, "fake-kme/master", self._clock()))
            return keys

    def by_ids(self, key_ids: Sequence[UUID]) -> list[QkdKey]:
        with self._lock:
            missing = [k for k in key_ids if k not in self._for_slave]
            if missing:
                raise KmeBadRequest(f"unknown or already delivered key ID {missing[0]}")
            return [
                QkdKey(k, self._for_slave.pop(k), "fake-kme/slave", self._clock()) for k in key_ids
            ]


class _MasterFetcher:
    def __init__(self, pair: FakeKmePair) -> None:
        self.pair = pair

    def fetch_new(self, count: int, size_bits: int) -> list[QkdKey]:
        return self.pair.new(count, size_bits)

    def fetch_by_ids(self, key_ids: Sequence[UUID]) -> list[QkdKey]:
        raise KmeBadRequest("the master end does not fetch by ID")


class _SlaveFetcher:
    def __init__(self, pair: FakeKmePair) -> None:
        self.pair = pair

    def fetch_new(self, count: int, size_bits: int) -> list[QkdKey]:
        raise KmeBadRequest("the slave end does not fetch new keys")

    def fetch_by_ids(self, key_ids: Sequence[UUID]) -> list[QkdKey]:
        return self.pair.by_ids(key_ids)


def make_pair(
    config: BufferConfig | None = None, clock: FakeClock | None = None
) -> tuple[KeyBuffer, KeyBuffer, FakeKmePair, FakeClock]:
    clock = clock or FakeClock()
    kme = FakeKmePair(clock=clock)
    config = config or BufferConfig(low_watermark=4, high_watermark=12, ttl_s=None)
    ground = KeyBuffer(MemoryStore(), kme.master, config, clock=clock)
    space = KeyBuffer(MemoryStore(), kme.slave, config, clock=clock)
    return ground, space, kme, clock


class Recorder:
    def __init__(self, buffer: KeyBuffer) -> None:
        self.events: list[BufferEvent] = []
        buffer.subscribe(self.events.append)

    def kinds(self) -> list[BufferEventKind]:
        out = [e.kind for e in self.events]
        self.events.clear()
        return out


def one(res: Reservation | Extension) -> Reservation:
    assert isinstance(res, Reservation)
    return res


# =========================================================================== basics
def test_fetchers_satisfy_the_protocol() -> None:
    kme = FakeKmePair()
    assert isinstance(kme.master, KeyFetcher) and isinstance(kme.slave, KeyFetcher)


def test_transition_table_is_the_store_table() -> None:
    assert (KeyState.RESERVED, KeyState.RELEASED) in KEY_TRANSITIONS
    assert not any(src in (KeyState.RELEASED, KeyState.DESTROYED) for src, _ in KEY_TRANSITIONS)


def test_master_and_slave_agree_on_ids_and_bytes() -> None:
    ground, space, _, _ = make_pair()
    announced = ground.refill()
    assert len(announced) == 12
    res = one(ground.reserve(Purpose.REKEY, count=2))
    g_keys = ground.commit(res)
    s_keys = space.commit(space.reserve_ids(res.key_ids, Purpose.REKEY))
    assert [k.key_id for k in g_keys] == [k.key_id for k in s_keys] == list(res.key_ids)
    assert [k.material for k in g_keys] == [k.material for k in s_keys]
    # the material never shows in repr/str of anything handed around
    for obj in (*g_keys, res):
        assert g_keys[0].material.hex() not in repr(obj) and g_keys[0].material.hex() not in str(obj)


def test_reserve_takes_oldest_first_and_rollback_returns_keys() -> None:
    ground, _, _, clock = make_pair()
    first = ground.refill()
    clock.t += 10
    res = one(ground.reserve(Purpose.AUTH))
    assert res.key_ids == (first[0],)
    ground.rollback(res)
    with pytest.raises(IllegalTransition):
        ground.commit(res)  # a rolled-back reservation is closed
    again = one(ground.reserve(Purpose.AUTH))
    assert again.key_ids == (first[0],)
    ground.commit(again)
    with pytest.raises(IllegalTransition):
        ground.commit(again)  # never released twice
    with pytest.raises(IllegalTransition):
        ground.rollback(again)


def test_slave_refuses_keys_already_used_or_unknown() -> None:
    ground, space, _, _ = make_pair()
    ground.refill()
    res = one(ground.reserve(Purpose.AUTH))
    ground.commit(res)
    space.commit(space.reserve_ids(res.key_ids, Purpose.AUTH))
    with pytest.raises(KeyAlreadyUsed):
        space.reserve_ids(res.key_ids, Purpose.AUTH)
    with pytest.raises(KmeBadRequest):
        space.reserve_ids([uuid.uuid4()], Purpose.AUTH)  # the KME never delivered it
    offline = KeyBuffer(MemoryStore(), None, BufferConfig(ttl_s=None))
    with pytest.raises(UnknownKey):
        offline.reserve_ids([uuid.uuid4()], Purpose.AUTH)


def test_slave_sync_prefetches_and_checks_the_answer() -> None:
    ground, space, kme, _ = make_pair()
    ids = ground.refill()
    assert space.sync(ids[:3]) == ids[:3]
    assert space.sync(ids[:3]) == []  # already there
    assert space.status().available == 3

    class Liar:
        def fetch_new(self, count: int, size_bits: int) -> list[QkdKey]:
            return []

        def fetch_by_ids(self, key_ids: Sequence[UUID]) -> list[QkdKey]:
            return [QkdKey(uuid.uuid4(), b"k" * 32, "liar")]

    liar = KeyBuffer(MemoryStore(), Liar(), BufferConfig(ttl_s=None))
    with pytest.raises(KmeProtocolError, match="1 unasked, 1 missing"):
        liar.sync([uuid.uuid4()])
    assert liar.status().available == 0


def test_wrong_key_size_from_the_kme_is_refused() -> None:
    class Short:
        def fetch_new(self, count: int, size_bits: int) -> list[QkdKey]:
            return [QkdKey(uuid.uuid4(), b"k" * 16, "short") for _ in range(count)]

        def fetch_by_ids(self, key_ids: Sequence[UUID]) -> list[QkdKey]:
            return []

    buf = KeyBuffer(MemoryStore(), Short(), BufferConfig(ttl_s=None))
    with pytest.raises(KmeProtocolError, match="128 bits, the buffer holds 256-bit"):
        buf.refill()
    assert buf.status().available == 0


def test_add_keys_checks_size_and_duplicates() -> None:
    buf = KeyBuffer(MemoryStore(), None, BufferConfig(ttl_s=None))
    with pytest.raises(UsageError, match="64 bits"):
        buf.load_preplaced([QkdKey(uuid.uuid4(), b"k" * 8, "preplaced")])
    key = QkdKey(uuid.uuid4(), b"k" * 32, "x")
    with pytest.raises(UsageError, match="twice"):
        buf.add_keys([key, key])
    assert buf.status().available == 0


def test_a_kme_repeating_an_id_is_refused() -> None:
    ground, _, _, _ = make_pair()
    ids = ground.refill()
    ground.commit(one(ground.reserve(Purpose.AUTH)))
    with pytest.raises(KeyAlreadyUsed):
        ground.add_keys([QkdKey(ids[0], b"x" * 32, "replay")])


def test_config_is_validated() -> None:
    with pytest.raises(InvalidConfiguration):
        BufferConfig(low_watermark=10, high_watermark=5)
    with pytest.raises(InvalidConfiguration):
        BufferConfig(key_size_bits=255)
    with pytest.raises(InvalidConfiguration):
        BufferConfig(depletion=DepletionPolicy.EXTEND, max_extensions=0)
    with pytest.raises(InvalidConfiguration):
        BufferConfig(floors={"nonsense": 1})  # type: ignore[dict-item]
    with pytest.raises(InvalidConfiguration):
        BufferConfig(ttl_s=0)
    with pytest.raises(InvalidConfiguration, match="depletion policy"):
        BufferConfig(depletion="reuse")  # type: ignore[arg-type]
    assert BufferConfig(depletion="fallback").depletion is DepletionPolicy.FALLBACK  # type: ignore[arg-type]
    assert BufferConfig(floors={"auth": 2}).floors == {Purpose.AUTH: 2}  # type: ignore[dict-item]


# =========================================================================== purposes and pools
def test_authentication_reserve_is_never_starved() -> None:
    config = BufferConfig(low_watermark=0, high_watermark=10, ttl_s=None,
                          floors={Purpose.AUTH: 3})
    ground, _, _, _ = make_pair(config)
    ground.refill()
    for _ in range(7):
        ground.commit(one(ground.reserve(Purpose.REKEY)))
    with pytest.raises(KeyBufferEmpty, match="3 kept for other purposes"):
        ground.reserve(Purpose.REKEY)
    with pytest.raises(KeyBufferEmpty):
        ground.reserve(Purpose.OTP, count=2)
    for _ in range(3):
        ground.commit(one(ground.reserve(Purpose.AUTH)))
    with pytest.raises(KeyBufferEmpty):
        ground.reserve(Purpose.AUTH)


def test_one_time_pad_takes_several_keys_atomically() -> None:
    ground, space, _, _ = make_pair(BufferConfig(low_watermark=0, high_watermark=6, ttl_s=None))
    ground.refill()
    with pytest.raises(KeyBufferEmpty):
        ground.reserve(Purpose.OTP, count=3)  # 6 - 4 kept for AUTH = 2
    assert ground.status().available == 6  # nothing taken by the refusal
    res = one(ground.reserve(Purpose.OTP, count=2))
    pad = b"".join(k.material for k in ground.commit(res))
    assert pad == b"".join(k.material for k in space.commit(space.reserve_ids(res.key_ids, Purpose.OTP)))
    assert len(pad) == 64


# =========================================================================== depletion policies
def test_fail_closed_is_the_default() -> None:
    buf = KeyBuffer(MemoryStore(), None)
    assert buf.config.depletion is DepletionPolicy.FAIL_CLOSED
    with pytest.raises(KeyBufferEmpty, match="0 available"):
        buf.reserve(Purpose.AUTH)


def test_extend_up_to_the_cap_then_refuse(tmp_path: Path) -> None:
    config = BufferConfig(low_watermark=0, high_watermark=1, ttl_s=None, floors={},
                          depletion=DepletionPolicy.EXTEND, max_extensions=2)
    clock = FakeClock()
    kme = FakeKmePair(clock=clock)
    store = SqliteStore(tmp_path / "g.db")
    ground = KeyBuffer(store, kme.master, config, clock=clock)
    rec = Recorder(ground)
    ground.refill()
    (current,) = ground.commit(one(ground.reserve(Purpose.AUTH)))
    rec.kinds()
    with pytest.raises(KeyBufferEmpty, match="needs the current key"):
        ground.reserve(Purpose.AUTH)
    ext = ground.reserve(Purpose.AUTH, current=current.key_id)
    assert isinstance(ext, Extension) and (ext.key_id, ext.count, ext.cap) == (current.key_id, 1, 2)
    assert rec.kinds() == [K.EXTENDED]
    # the count is durable: a restart does not reset the cap
    store.close()
    store = SqliteStore(tmp_path / "g.db")
    ground = KeyBuffer(store, kme.master, config, clock=clock)
    rec = Recorder(ground)
    ext = ground.reserve(Purpose.AUTH, current=current.key_id)
    assert isinstance(ext, Extension) and ext.count == 2
    assert rec.kinds() == [K.EXTENDED]
    with pytest.raises(KeyBufferEmpty, match="extended 2 times \\(cap 2\\)"):
        ground.reserve(Purpose.AUTH, current=current.key_id)
    assert rec.kinds() == []
    with pytest.raises(KeyBufferEmpty, match="never extended"):
        ground.reserve(Purpose.OTP, current=current.key_id)
    # a fresh key ends the extension regime
    ground.refill()
    assert isinstance(ground.reserve(Purpose.AUTH, current=current.key_id), Reservation)
    store.close()


def test_extend_refuses_keys_not_in_use() -> None:
    config = BufferConfig(low_watermark=0, high_watermark=2, ttl_s=None, floors={},
                          depletion=DepletionPolicy.EXTEND, max_extensions=5)
    ground, space, _, _ = make_pair(config)
    ids = ground.refill()
    with pytest.raises(KeyBufferEmpty, match="not in use"):
        space.sync(ids[:1]) and None
        space.extend(ids[0], Purpose.AUTH)  # still AVAILABLE on the slave
    with pytest.raises(UnknownKey):
        ground.extend(uuid.uuid4(), Purpose.AUTH)
    plain, _, _, _ = make_pair()
    with pytest.raises(InvalidConfiguration):
        plain.extend(ids[0], Purpose.AUTH)


def test_fallback_to_preplaced_keys_is_explicit() -> None:
    config = BufferConfig(low_watermark=0, high_watermark=2, ttl_s=100.0, floors={},
                          depletion=DepletionPolicy.FALLBACK)
    ground, space, _, clock = make_pair(config)
    preplaced = [QkdKey(uuid.uuid4(), bytes([i]) * 32, "preplaced", clock()) for i in range(1, 4)]
    ground.load_preplaced(preplaced)
    space.load_preplaced(preplaced)
    g_rec, s_rec = Recorder(ground), Recorder(space)
    ground.refill()
    # QKD keys are served first, without any fallback
    for _ in range(2):
        res = one(ground.reserve(Purpose.AUTH))
        assert not res.preplaced
        ground.commit(res)
    assert K.FALLBACK not in g_rec.kinds()
    clock.t += 10_000  # pre-placed keys have no TTL
    res = one(ground.reserve(Purpose.AUTH))
    assert res.preplaced and res.key_ids == (preplaced[0].key_id,)
    assert g_rec.kinds() == [K.FALLBACK]
    assert ground.commit(res)[0].material == preplaced[0].material
    s_res = space.reserve_ids(res.key_ids, Purpose.AUTH)
    assert s_res.preplaced and s_rec.kinds() == [K.FALLBACK]
    assert space.commit(s_res)[0].material == preplaced[0].material
    one(ground.reserve(Purpose.AUTH, count=2))
    with pytest.raises(KeyBufferEmpty, match="0 pre-placed keys left"):
        ground.reserve(Purpose.AUTH)
    assert ground.status().preplaced_available == 0


# =========================================================================== watermarks
def test_watermark_events_fire_once_per_crossing() -> None:
    config = BufferConfig(low_watermark=3, high_watermark=6, ttl_s=None, floors={})
    ground, _, kme, _ = make_pair(config)
    rec = Recorder(ground)
    ground.refill()  # 0 -> 6 crosses both marks upwards
    assert rec.kinds() == [K.LOW_WATERMARK_RISING, K.HIGH_WATERMARK_RISING]
    reservations = [one(ground.reserve(Purpose.REKEY)) for _ in range(6)]
    assert rec.kinds() == [K.HIGH_WATERMARK_FALLING, K.LOW_WATERMARK_FALLING, K.EMPTY]
    for res in reservations[:2]:
        ground.commit(res)
    assert rec.kinds() == []  # nothing crosses while staying below
    for res in reservations[2:]:
        ground.rollback(res)  # 0 -> 4 (one at a time): crosses low once
    assert rec.kinds() == [K.LOW_WATERMARK_RISING]
    ground.commit(one(ground.reserve(Purpose.REKEY)))  # 4 -> 3: still at low, no crossing
    assert rec.kinds() == []
    ground.commit(one(ground.reserve(Purpose.REKEY)))  # 3 -> 2
    assert rec.kinds() == [K.LOW_WATERMARK_FALLING]
    kme.limit = 2
    ground.refill()  # the link delivers only 2: 2 -> 4
    assert rec.kinds() == [K.LOW_WATERMARK_RISING]


def test_a_faulty_subscriber_does_not_break_the_buffer() -> None:
    ground, _, _, _ = make_pair()

    def boom(event: BufferEvent) -> None:
        raise RuntimeError("subscriber bug")

    ground.subscribe(boom)
    rec = Recorder(ground)
    assert ground.refill()
    assert rec.kinds()  # later subscribers still hear about it
    ground.unsubscribe(boom)


# =========================================================================== TTL
def test_expired_keys_are_destroyed_never_served() -> None:
    config = BufferConfig(low_watermark=0, high_watermark=4, ttl_s=60.0, floors={})
    ground, space, _, clock = make_pair(config)
    rec = Recorder(ground)
    old = ground.refill()
    clock.t += 30
    res = one(ground.reserve(Purpose.AUTH))  # not yet expired
    clock.t += 31  # 61 s old now
    with pytest.raises(KeyDestroyed, match="expired before commit"):
        ground.commit(res)
    assert K.EXPIRED in rec.kinds()
    with pytest.raises(KeyBufferEmpty):
        ground.reserve(Purpose.AUTH)  # the other three expired too
    status = ground.status()
    assert (status.available, status.destroyed, status.released) == (0, 4, 0)
    # the slave fetched its copy late; it is as old as the master's (created_at from the KME)
    space.add_keys([QkdKey(old[0], b"z" * 32, "late", clock.t - 120)])
    with pytest.raises(KeyDestroyed, match="expired"):
        space.reserve_ids([old[0]], Purpose.AUTH)
    assert ground.expire() == []


def test_ttl_sweep_reports_ids() -> None:
    config = BufferConfig(low_watermark=0, high_watermark=3, ttl_s=10.0)
    ground, _, _, clock = make_pair(config)
    ids = ground.refill()
    clock.t += 9.99
    assert ground.expire() == []
    clock.t += 0.01
    assert sorted(ground.expire()) == sorted(ids)


# =========================================================================== forecast
def test_forecast_math() -> None:
    config = BufferConfig(low_watermark=0, high_watermark=40, ttl_s=None, floors={},
                          rate_window_s=100.0)
    ground, _, _, clock = make_pair(config)
    ground.refill()
    f = ground.forecast(next_pass_at=clock.t + 50)
    assert f.rate_per_s == 0 and f.time_to_empty_s == math.inf and f.lasts_until_pass
    assert f.shortfall == 0
    for _ in range(10):  # 10 keys over the 100 s window: 0.1 key/s
        clock.t += 10
        ground.commit(one(ground.reserve(Purpose.AUTH)))
    f = ground.forecast(next_pass_at=clock.t + 200)
    assert f.available == 30
    assert f.rate_per_s == pytest.approx(0.1)
    assert f.time_to_empty_s == pytest.approx(300.0)  # 30 keys / 0.1 per s
    assert f.needed_until_pass == pytest.approx(20.0) and f.lasts_until_pass and f.shortfall == 0
    f = ground.forecast(next_pass_at=clock.t + 455)
    assert f.needed_until_pass == pytest.approx(45.5)
    assert f.lasts_until_pass is False and f.shortfall == 16  # ceil(45.5 - 30)
    f = ground.forecast(next_pass_at=clock.t - 5)  # a pass already under way
    assert f.needed_until_pass == 0 and f.lasts_until_pass
    clock.t += 95  # the first 9 commits have left the window; one remains
    assert ground.rate_per_s() == pytest.approx(0.01)
    clock.t += 10
    assert ground.forecast().time_to_empty_s == math.inf


# =========================================================================== durability
def test_release_once_survives_restarts(tmp_path: Path) -> None:
    clock = FakeClock()
    kme = FakeKmePair(clock=clock)
    config = BufferConfig(low_watermark=0, high_watermark=4, ttl_s=None, floors={})
    path = tmp_path / "space.db"
    ground = KeyBuffer(MemoryStore(), kme.master, config, clock=clock)
    ids = ground.refill()
    store = SqliteStore(path, end_id="space")
    space = KeyBuffer(store, kme.slave, config, clock=clock)
    space.commit(space.reserve_ids(ids[:1], Purpose.AUTH))
    store.close()
    store = SqliteStore(path, end_id="space")
    space = KeyBuffer(store, kme.slave, config, clock=clock)
    with pytest.raises(KeyAlreadyUsed):
        space.reserve_ids(ids[:1], Purpose.AUTH)
    store.close()


@pytest.mark.parametrize(("orphaned", "state"), [("destroy", KeyState.DESTROYED),
                                                 ("rollback", KeyState.AVAILABLE)])
def test_reservations_open_at_a_crash(tmp_path: Path, orphaned: str, state: KeyState) -> None:
    clock = FakeClock()
    kme = FakeKmePair(clock=clock)
    config = BufferConfig(low_watermark=0, high_watermark=3, ttl_s=None, floors={},
                          orphaned=orphaned)  # type: ignore[arg-type]
    path = tmp_path / "ground.db"
    store = SqliteStore(path)
    ground = KeyBuffer(store, kme.master, config, clock=clock)
    ground.refill()
    res = one(ground.reserve(Purpose.REKEY))
    store.close()  # the process dies before commit
    store = SqliteStore(path)
    ground = KeyBuffer(store, kme.master, config, clock=clock)
    assert ground.recovered == res.key_ids
    row = store.get_key(res.key_ids[0])
    assert row is not None and row.state is state
    with pytest.raises(IllegalTransition):
        ground.commit(res)
    store.close()


CRASHER = """
import os, signal, sys, uuid
from sdls_qkd.keys.buffer import BufferConfig, KeyBuffer, Purpose
from sdls_qkd.keys.material import QkdKey
from sdls_qkd.store.sqlite import SqliteStore

keys = [QkdKey(uuid.UUID(h), bytes.fromhex(m), "test") for h, m in zip(sys.argv[2::2], sys.argv[3::2])]
buf = KeyBuffer(SqliteStore(sys.argv[1], end_id="space"), None,
                BufferConfig(ttl_s=None, floors={}))
buf.add_keys(keys)
done = buf.commit(buf.reserve(Purpose.AUTH))   # key 0: released
buf.reserve(Purpose.REKEY)                      # key 1: reserved, never committed
print(done[0].key_id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)            # no close, no cleanup
"""


def test_a_killed_process_never_releases_a_key_twice(tmp_path: Path) -> None:
    """A real process is SIGKILLed after one commit and one open reservation."""
    path = tmp_path / "space.db"
    keys = [QkdKey(uuid.uuid4(), os.urandom(32), "test") for _ in range(3)]
    args = [a for k in keys for a in (str(k.key_id), k.material.hex())]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-c", CRASHER, str(path), *args], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert done.stdout.strip() == str(keys[0].key_id)
    blob = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert keys[0].material not in blob  # wiped before it was handed out
    store = SqliteStore(path, end_id="space")
    buf = KeyBuffer(store, None, BufferConfig(ttl_s=None, floors={}))
    assert buf.recovered == (keys[1].key_id,)
    with pytest.raises(KeyAlreadyUsed):
        buf.reserve_ids([keys[0].key_id], Purpose.AUTH)
    with pytest.raises(KeyDestroyed, match="orphaned"):
        buf.reserve_ids([keys[1].key_id], Purpose.AUTH)
    (last,) = buf.commit(buf.reserve_ids([keys[2].key_id], Purpose.AUTH))
    assert (last.key_id, last.material) == (keys[2].key_id, keys[2].material)
    store.close()
    blob = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert not any(k.material in blob for k in keys)


def test_destroy_erases_unused_keys_only() -> None:
    ground, _, _, _ = make_pair()
    ids = ground.refill()
    used = one(ground.reserve(Purpose.AUTH))
    ground.commit(used)
    ground.destroy([ids[1], ids[2], used.key_ids[0]], note="suspected compromise")
    status = ground.status()
    assert (status.destroyed, status.released) == (2, 1)
    with pytest.raises(UnknownKey):
        ground.destroy([uuid.uuid4()])


def test_usage_errors() -> None:
    ground, _, _, _ = make_pair()
    with pytest.raises(UsageError):
        ground.reserve(Purpose.AUTH, count=0)
    with pytest.raises(UsageError):
        ground.reserve_ids([], Purpose.AUTH)
    with pytest.raises(UsageError, match="unknown key purpose 'bogus'"):
        ground.reserve("bogus")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="no key fetcher"):
        KeyBuffer(MemoryStore()).refill()


# =========================================================================== threads
def test_concurrent_reservations_never_share_a_key() -> None:
    config = BufferConfig(low_watermark=0, high_watermark=400, ttl_s=None, floors={},
                          fetch_batch=100)
    ground, _, _, _ = make_pair(config)
    ground.refill()
    got: list[QkdKey] = []
    lock = threading.Lock()

    def worker(purpose: Purpose) -> None:
        for i in range(50):
            try:
                res = one(ground.reserve(purpose))
            except KeyBufferEmpty:
                return
            if i % 5 == 0:
                ground.rollback(res)
                continue
            keys = ground.commit(res)
            with lock:
                got.extend(keys)

    threads = [threading.Thread(target=worker, args=(p,)) for p in list(Purpose) * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 9 * 40
    assert len({k.key_id for k in got}) == len({k.material for k in got}) == len(got)
    assert ground.status().released == len(got)


# =========================================================================== real KMEs
def test_both_ends_over_real_etsi014_kmes(tmp_path: Path) -> None:
    """The whole path once: two buffers on SQLite, ETSI 014 clients, our KME pair over mTLS."""
    from etsi014_conformance import local_target

    from sdls_qkd.keys.etsi014 import Etsi014KeyFetcher

    config = BufferConfig(low_watermark=2, high_watermark=5, ttl_s=3600.0, floors={})
    with local_target(tmp_path / "pki") as target, target.master() as mc, target.slave() as sc:
        g_store = SqliteStore(tmp_path / "ground.db", end_id="ground")
        s_store = SqliteStore(tmp_path / "space.db", end_id="space")
        ground = KeyBuffer(g_store, Etsi014KeyFetcher(mc, peer_sae_id=target.slave_sae), config)
        space = KeyBuffer(s_store, Etsi014KeyFetcher(sc, peer_sae_id=target.master_sae), config)
        announced = ground.refill()
        assert len(announced) == 5
        res = one(ground.reserve(Purpose.REKEY, count=2))
        g_keys = ground.commit(res)
        s_keys = space.commit(space.reserve_ids(res.key_ids, Purpose.REKEY))
        assert [(k.key_id, k.material) for k in g_keys] == [(k.key_id, k.material) for k in s_keys]
        assert all(len(k.material) == 32 for k in g_keys)
        with pytest.raises(KeyAlreadyUsed):
            space.reserve_ids(res.key_ids[:1], Purpose.REKEY)
        g_store.close()
        s_store.close()


# =========================================================================== stateful property
class MatchedEnds(RuleBasedStateMachine):
    """Random reserve/commit/rollback/expire/restart on both ends of a link, SQLite-backed.

    Invariants: no key (ID or bytes) is released twice by either end, across restarts; both
    ends hold the same bytes for every ID both released; every released or destroyed key's
    bytes are gone from the SQLite files (main file and WAL).
    """

    ground_res = Bundle("ground_res")
    space_res = Bundle("space_res")

    def __init__(self) -> None:
        super().__init__()
        # tmpfs when there is one: the same SQLite code, without waiting on disk fsyncs
        shm = Path("/dev/shm")
        self.dir = Path(tempfile.mkdtemp(prefix="kb-", dir=shm if shm.is_dir() else None))
        self.clock = FakeClock()
        self.kme = FakeKmePair(seed=7, clock=self.clock)
        self.config = BufferConfig(low_watermark=2, high_watermark=6, ttl_s=2000.0,
                                   floors={Purpose.AUTH: 1}, fetch_batch=4)
        self.stores: dict[str, SqliteStore] = {}
        self.buffers: dict[str, KeyBuffer] = {}
        for end in ("ground", "space"):
            self._open(end)
        self.released: dict[str, dict[UUID, bytes]] = {"ground": {}, "space": {}}
        self.all_material: dict[UUID, bytes] = {}
        self.announced: list[UUID] = []
        self.generation = {"ground": 0, "space": 0}
        self.space_open: set[UUID] = set()  # keys the slave holds in open reservations

    def _open(self, end: str) -> None:
        fetcher = self.kme.master if end == "ground" else self.kme.slave
        self.stores[end] = SqliteStore(self.dir / f"{end}.db", end_id=end)
        self.buffers[end] = KeyBuffer(self.stores[end], fetcher, self.config, clock=self.clock)

    def _released(self, end: str, keys: Sequence[QkdKey]) -> None:
        seen = self.released[end]
        for key in keys:
            assert key.key_id not in seen, f"{end} released {key.key_id} twice"
            assert key.material not in seen.values(), f"{end} released the same bytes twice"
            seen[key.key_id] = key.material

    @initialize()
    def first_pass(self) -> None:
        self.refill()

    @rule()
    def refill(self) -> None:
        ids = self.buffers["ground"].refill()
        self.announced += ids
        for row in self.stores["ground"].list_keys([KeyState.AVAILABLE]):
            if row.material is not None:
                self.all_material[row.key_id] = row.material

    @rule(target=ground_res, purpose=st.sampled_from(list(Purpose)), count=st.integers(1, 2))
    def ground_reserve(self, purpose: Purpose, count: int) -> tuple[int, Reservation | None]:
        try:
            res = one(self.buffers["ground"].reserve(purpose, count))
        except KeyBufferEmpty:
            return (self.generation["ground"], None)
        return (self.generation["ground"], res)

    @rule(item=consumes(ground_res), commit=st.booleans())
    def ground_finish(self, item: tuple[int, Reservation | None], commit: bool) -> None:
        generation, res = item
        if res is None:
            return
        buf = self.buffers["ground"]
        if generation != self.generation["ground"]:
            # opened before a restart: orphaned and destroyed, never released
            with pytest.raises(IllegalTransition):
                buf.commit(res)
            return
        if not commit:
            buf.rollback(res)
            return
        with contextlib.suppress(KeyDestroyed):  # expired while reserved
            self._released("ground", buf.commit(res))

    @rule(purpose=st.sampled_from(list(Purpose)), count=st.integers(1, 2))
    def ground_use(self, purpose: Purpose, count: int) -> None:
        """Reserve and commit at once: the common path."""
        buf = self.buffers["ground"]
        with contextlib.suppress(KeyBufferEmpty):
            self._released("ground", buf.commit(one(buf.reserve(purpose, count))))

    @rule(purpose=st.sampled_from(list(Purpose)))
    def rekey_both_ends(self, purpose: Purpose) -> None:
        """The normal flow: the master commits a key, the slave commits the same ID."""
        ground = self.buffers["ground"]
        try:
            keys = ground.commit(one(ground.reserve(purpose)))
        except KeyBufferEmpty:
            return
        self._released("ground", keys)
        space = self.buffers["space"]
        self._released("space", space.commit(space.reserve_ids([keys[0].key_id], purpose)))

    @rule(data=st.data())
    def space_follows(self, data: st.DataObject) -> None:
        """The slave reserves what the master released (maybe twice: must be refused)."""
        done = list(self.released["ground"])
        if not done:
            return
        key_id = data.draw(st.sampled_from(done))
        buf = self.buffers["space"]
        if key_id in self.released["space"] or key_id in self.space_open:
            with pytest.raises(KeyAlreadyUsed):
                buf.reserve_ids([key_id], Purpose.AUTH)
            return
        try:
            res = buf.reserve_ids([key_id], Purpose.AUTH)
        except KeyDestroyed:
            return  # expired on the slave, or orphaned by a slave restart
        if data.draw(st.integers(0, 3)):
            self._released("space", buf.commit(res))
        else:
            buf.rollback(res)

    @rule(data=st.data())
    def space_prefetch(self, data: st.DataObject) -> None:
        if self.announced:
            ids = data.draw(st.lists(st.sampled_from(self.announced), max_size=3, unique=True))
            self.buffers["space"].sync(ids)

    @rule(target=space_res, data=st.data())
    def space_reserve_open(self, data: st.DataObject) -> tuple[int, Reservation | None]:
        """The slave holds a reservation open across other steps (maybe a restart)."""
        candidates = [k for k in self.released["ground"]
                      if k not in self.released["space"] and k not in self.space_open]
        if not candidates:
            return (self.generation["space"], None)
        try:
            res = self.buffers["space"].reserve_ids([data.draw(st.sampled_from(candidates))],
                                                    Purpose.REKEY)
        except KeyDestroyed:
            return (self.generation["space"], None)
        self.space_open.update(res.key_ids)
        return (self.generation["space"], res)

    @rule(item=consumes(space_res))
    def space_commit_open(self, item: tuple[int, Reservation | None]) -> None:
        generation, res = item
        if res is None:
            return
        if generation != self.generation["space"]:
            with pytest.raises(IllegalTransition):
                self.buffers["space"].commit(res)
            return
        self.space_open.difference_update(res.key_ids)
        self._released("space", self.buffers["space"].commit(res))

    @rule(seconds=st.sampled_from([1.0, 60.0, 400.0]))
    def time_passes(self, seconds: float) -> None:
        self.clock.t += seconds

    @rule(end=st.sampled_from(["ground", "space"]))
    def restart(self, end: str) -> None:
        self.stores[end].close()
        self._open(end)
        self.generation[end] += 1
        if end == "space":
            self.space_open.clear()  # orphaned: destroyed at the restart

    @invariant()
    def ends_agree(self) -> None:
        g, s = self.released["ground"], self.released["space"]
        for key_id, material in s.items():
            assert g[key_id] == material, f"ends disagree on the bytes of {key_id}"

    @invariant()
    def store_counts_match(self) -> None:
        for end in ("ground", "space"):
            released = self.stores[end].list_keys([KeyState.RELEASED])
            assert {r.key_id for r in released} == set(self.released[end])

    @precondition(lambda self: bool(self.released["ground"]) or bool(self.released["space"]))
    @invariant()
    def wiped_bytes_are_gone_from_disk(self) -> None:
        for end in ("ground", "space"):
            blob = b"".join(p.read_bytes() for p in self.dir.glob(f"{end}.db*"))
            for row in self.stores[end].list_keys([KeyState.RELEASED, KeyState.DESTROYED]):
                material = self.all_material.get(row.key_id)
                if material is not None:
                    assert material not in blob, f"{end}: bytes of {row.key_id} still on disk"

    def teardown(self) -> None:
        for store in self.stores.values():
            store.close()
        shutil.rmtree(self.dir, ignore_errors=True)


MatchedEnds.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_matched_ends = MatchedEnds.TestCase
