"""EmulatorKeySource: the KME key-source protocol fed by a day of emulated passes (fake clock)."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest

from sdls_qkd.errors import UsageError
from sdls_qkd.keys.qkd.emulator import PassOutput, emulate_pass
from sdls_qkd.keys.qkd.keysource import EmulatorKeySource
from sdls_qkd.keys.qkd.passes import PassProfile, PassSchedule, ScheduledPass, micius_2017, no_qkd
from sdls_qkd.keys.source import KeySource, octets_for_bits

HOUR = 3600.0


class FakeClock:
    """A settable clock: the test moves time, nothing sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def small_micius() -> PassProfile:
    p = micius_2017()
    return dataclasses.replace(
        p, name="micius_small", source=dataclasses.replace(p.source, rep_rate_hz=10e6)
    )


class CachingRunner:
    """Runs the real emulator once per pass seed (the day has repeated seeds across tests)."""

    cache: dict[tuple[str, int], PassOutput] = {}

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, sp: ScheduledPass) -> PassOutput:
        self.calls.append(sp.seed)
        key = (sp.profile.name, sp.seed)
        if key not in self.cache:
            self.cache[key] = emulate_pass(sp.profile, sp.seed)
        return self.cache[key]


def _day(profile: PassProfile) -> PassSchedule:
    # two night passes, one daylight pass (unavailable), one late-evening pass
    return PassSchedule.build(profile, [1 * HOUR, 2.5 * HOUR, 13 * HOUR, 22 * HOUR], seed=9)


def _bits(octets: bytes, n: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(octets, dtype=np.uint8))[:n]


def test_implements_key_source_protocol() -> None:
    src = EmulatorKeySource(_day(small_micius()), clock=FakeClock(), runner=CachingRunner())
    assert isinstance(src, KeySource)
    assert "EmulatorKeySource" in repr(src)


def test_a_day_of_passes_with_fake_clock() -> None:
    clock = FakeClock()
    runner = CachingRunner()
    schedule = _day(small_micius())
    src = EmulatorKeySource(schedule, clock=clock, runner=runner)
    assert src.available_bits() == 0 and src.take(8) is None
    first = schedule.passes[0]
    clock.now = first.end_s - 1.0  # pass running: no key yet
    assert src.available_bits() == 0 and runner.calls == []
    clock.now = first.end_s  # pass over: its key appears at once
    got1 = src.available_bits()
    assert got1 > 10_000 and runner.calls == [first.seed]
    # the store hands out exactly the pass's final key, first in first out
    expected = runner.cache[(first.profile.name, first.seed)].key
    taken = src.take(1001)
    assert taken is not None and len(taken) == octets_for_bits(1001)
    assert np.array_equal(_bits(taken, 1001), expected[:1001])
    assert taken[-1] & 0x7F == 0  # unused low-order bits zero
    more = src.take(3000)
    assert more is not None and np.array_equal(_bits(more, 3000), expected[1001:4001])
    assert src.available_bits() == got1 - 4001
    # all-or-nothing
    assert src.take(got1) is None and src.available_bits() == got1 - 4001
    # end of day: second night pass adds key, the daylight pass none, the evening pass adds key
    clock.now = 24 * HOUR
    total = src.available_bits()
    finals = [r.final_key_bits for r in src.results]
    assert [r.aborted for r in src.results][2] == "daylight"
    assert finals[2] == 0 and all(f > 0 for i, f in enumerate(finals) if i != 2)
    assert total == sum(finals) - 4001
    assert len(runner.calls) == 3  # the daylight pass is never emulated


def test_no_qkd_schedule_gives_nothing() -> None:
    clock = FakeClock()
    src = EmulatorKeySource(PassSchedule.build(no_qkd(), [1 * HOUR, 3 * HOUR], seed=1), clock=clock)
    clock.now = 24 * HOUR
    assert src.available_bits() == 0 and src.take(1) is None
    assert [r.final_key_bits for r in src.results] == [0, 0]


def test_progressive_release_grows_during_the_pass() -> None:
    clock = FakeClock()
    runner = CachingRunner()
    schedule = _day(small_micius())
    src = EmulatorKeySource(schedule, clock=clock, runner=runner, release="progressive")
    sp = schedule.passes[0]
    levels = []
    for frac in (0.0, 0.25, 0.5, 1.0):
        clock.now = sp.start_s + frac * (sp.end_s - sp.start_s)
        levels.append(src.available_bits())
    assert levels[0] == 0 and levels[1] < levels[2] < levels[3]
    assert levels[3] == runner.cache[(sp.profile.name, sp.seed)].result.final_key_bits
    assert levels[1] == pytest.approx(levels[3] / 4, abs=2)


def test_capacity_drops_excess_and_delay_holds_key_back() -> None:
    clock = FakeClock()
    runner = CachingRunner()
    schedule = _day(small_micius())
    src = EmulatorKeySource(
        schedule, clock=clock, runner=runner, capacity_bits=5000, processing_delay_s=60.0
    )
    clock.now = schedule.passes[0].end_s + 59.0
    assert src.available_bits() == 0
    clock.now += 1.0
    assert src.available_bits() == 5000 and src.dropped_bits > 0


def test_concurrent_takes_never_hand_out_a_bit_twice() -> None:
    clock = FakeClock()
    runner = CachingRunner()
    schedule = _day(small_micius())
    src = EmulatorKeySource(schedule, clock=clock, runner=runner)
    clock.now = schedule.passes[0].end_s
    level = src.available_bits()
    out: list[list[bytes]] = [[], []]

    def worker(i: int) -> None:
        while (got := src.take(64)) is not None:
            out[i].append(got)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (len(out[0]) + len(out[1])) == level // 64
    assert src.available_bits() == level % 64
    # every 64-bit piece of the pass key went to exactly one taker
    key = runner.cache[(schedule.passes[0].profile.name, schedule.passes[0].seed)].key
    pieces = [np.packbits(key[i : i + 64]).tobytes() for i in range(0, level - level % 64, 64)]
    assert sorted(out[0] + out[1]) == sorted(pieces)


def test_bad_arguments() -> None:
    sched = _day(small_micius())
    with pytest.raises(UsageError):
        EmulatorKeySource(sched, release="sometimes")  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        EmulatorKeySource(sched, capacity_bits=0)
    with pytest.raises(UsageError):
        EmulatorKeySource(sched, processing_delay_s=-1.0)
    with pytest.raises(UsageError):
        EmulatorKeySource(sched, clock=FakeClock()).take(0)
