"""The end-to-end demonstration behind ``sdls-qkd demo``: QKD keys secure a simulated space link.

Everything the product has is real here: two ETSI GS QKD 014 KMEs on loopback HTTPS with mutual
TLS (certificates made in the state directory), fed by the BB84 satellite-pass emulator; a
:class:`~sdls_qkd.link.endpoint.GroundEnd` and a :class:`~sdls_qkd.link.endpoint.SpaceEnd`, each
with its own QKD key buffer over its own SQLite file; TC frames up and TM frames down under SDLS
(AES-256-GCM) with session keys derived from QKD keys.  Only time is simulated: a
:class:`SimClock` drives the pass schedule and the link ends, so a 273 s Micius pass and the
quarter of an hour after it take seconds.  The demo moves the frames between the ends itself
(that is where the replayed, tampered and wrong-SPI frames come from).

The story (:class:`Demo`):

1. **Pass** — the preset's pass (Micius 2017, Jinan-1, or "no QKD") releases key into the KME
   key store while it lasts (a bounded store, as a real KME has: the rest is dropped and
   counted).  The ground refills its buffer from KME A (``enc_keys``); the link is keyed with
   two of those keys (epoch 0, named by QKD key ID in the link configuration; the space end takes
   them from KME B by ``dec_keys``).  From then on the link ends rekey by themselves every
   ``frames_per_key`` frames: the ground announces each next key's ID over the link (never key
   material), the space end fetches that key from KME B by ID, both check key check values, and
   the senders switch hitlessly.
2. **Attacks** — a replayed, a tampered and a wrong-SPI TC frame reach the space end; each must
   be rejected for its own reason and change no SA state; the genuine frame still passes.
3. **Run-down** — the schedule's next pass is clouded out ("no QKD") and the ground sends a
   burst of commands every tick, consuming keys faster than the (absent) supply, until the
   buffers run dry.  The buffers' depletion policy decides: fail closed (user traffic refused
   with :class:`~sdls_qkd.errors.KeyBufferEmpty`; nothing is ever sent in clear), extend the key
   in use a counted number of times, or fall back to pre-placed keys (an event per use) — and
   then fail closed.

Every expectation is a :class:`Check`; :class:`DemoSummary` is what the CLI prints as tables or
JSON.  No key material is ever printed, logged or put in the summary (QKD key IDs are UUIDs,
not secrets).
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sdls_qkd.errors import KeyBufferEmpty, KmeError, UsageError
from sdls_qkd.framing.channel import TcChannel, TmChannel
from sdls_qkd.framing.crc import crc16
from sdls_qkd.framing.space_packet import PacketType, SpacePacket
from sdls_qkd.keys.buffer import BufferConfig, DepletionPolicy, KeyBuffer
from sdls_qkd.keys.certs import create_local_pki
from sdls_qkd.keys.etsi014 import Etsi014KeyFetcher
from sdls_qkd.keys.kme import KmePair
from sdls_qkd.keys.material import QkdKey
from sdls_qkd.keys.qkd.keysource import EmulatorKeySource
from sdls_qkd.keys.qkd.passes import PRESETS as PASS_PRESETS
from sdls_qkd.keys.qkd.passes import PassSchedule, ScheduledPass
from sdls_qkd.link.config import DirectionConfig, LinkConfig
from sdls_qkd.link.endpoint import FrameOutcome, GroundEnd, LinkEnd, SpaceEnd
from sdls_qkd.link.rekey import LinkEvent, RekeyPolicy
from sdls_qkd.store.base import KeyState
from sdls_qkd.store.sqlite import SqliteStore

__all__ = [
    "PRESET_PROFILES",
    "POLICIES",
    "DemoConfig",
    "DemoEvent",
    "Sample",
    "Check",
    "RekeyRecord",
    "DemoSummary",
    "SimClock",
    "KeySupply",
    "Demo",
    "run_demo",
    "default_state_dir",
    "check_state_dir",
    "plot_timeline",
]

#: ``--preset`` name -> pass profile preset of the emulator
PRESET_PROFILES: dict[str, str] = {"micius": "micius_2017", "jinan1": "jinan1_2025",
                                   "none": "no_qkd"}
#: depletion policies the demo can show
POLICIES: tuple[DepletionPolicy, ...] = tuple(DepletionPolicy)

SCID = 44
UPLINK_SPIS = (1, 2)
DOWNLINK_SPIS = (9, 10)
TM_FRAME_LENGTH = 256
APID_COMMAND = 0x30
APID_HOUSEKEEPING = 0x20
KEY_BITS = 256
#: SPI a wrong-SPI frame names (no SA there)
WRONG_SPI = 0x0BAD
#: the three attacks: check name -> the rejection reason (sdls-vectors/1 error code) expected
ATTACKS: dict[str, str] = {"replayed frame": "AntiReplayFailure",
                           "tampered frame": "MacVerificationFailure",
                           "wrong-SPI frame": "InvalidSpi"}


# --------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class DemoConfig:
    """What one run does; the defaults are the README's demo."""

    state_dir: Path
    preset: str = "micius"
    seed: int = 1
    policy: DepletionPolicy = DepletionPolicy.FAIL_CLOSED
    #: simulated seconds per tick (each tick: commands up, housekeeping down)
    tick_s: float = 15.0
    #: a sender switches to the next key after this many frames (the crypto-period)
    frames_per_key: int = 4
    #: commands the ground sends per tick in the run-down (consume faster than supply)
    rundown_burst: int = 4
    #: KME key store size in 256-bit keys (key beyond it is dropped, as a full store would)
    kme_store_keys: int = 16
    buffer_low: int = 4
    buffer_high: int = 8
    #: pre-placed keys loaded on both ends (policy fallback)
    preplaced_keys: int = 6
    #: extensions of one key allowed (policy extend)
    max_extensions: int = 2
    #: simulated start of the next pass, which the weather loses
    next_pass_s: float = 5_400.0
    max_ticks: int = 300

    def __post_init__(self) -> None:
        if self.preset not in PRESET_PROFILES:
            raise UsageError(f"unknown preset {self.preset!r}; one of {', '.join(PRESET_PROFILES)}")
        try:
            object.__setattr__(self, "policy", DepletionPolicy(self.policy))
        except ValueError:
            raise UsageError(f"unknown policy {self.policy!r}; one of "
                             f"{', '.join(p.value for p in POLICIES)}") from None
        for name in ("frames_per_key", "rundown_burst", "kme_store_keys", "buffer_high",
                     "max_extensions", "max_ticks"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.preplaced_keys < 0:
            raise UsageError(f"preplaced_keys must be >= 0, got {self.preplaced_keys}")
        if not 0 <= self.buffer_low <= self.buffer_high:
            raise UsageError("buffer watermarks need 0 <= low <= high")
        if not self.tick_s > 0:
            raise UsageError(f"tick_s must be positive, got {self.tick_s}")


class SimClock:
    """Simulated mission time in seconds (one float, advanced by the demo's thread only)."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, dt: float) -> None:
        self.now += dt


# --------------------------------------------------------------------------- records
@dataclass(frozen=True)
class DemoEvent:
    """One line of the demo's running commentary."""

    t_s: float
    kind: str  # phase | keys | rekey | frame | check | policy | info
    message: str
    ok: bool = True


@dataclass(frozen=True)
class Sample:
    """Levels at the end of one tick (for the plot)."""

    t_s: float
    ground_keys: int
    space_keys: int
    kme_keys: float
    uplink_open: bool
    downlink_open: bool


@dataclass(frozen=True)
class Check:
    """One expectation of the demo and what happened."""

    name: str
    expected: str
    got: str
    passed: bool


@dataclass(frozen=True)
class RekeyRecord:
    """One switch of a sender to a new epoch (a new session key from a new QKD key)."""

    direction: str
    epoch: int
    spi: int
    t_s: float
    source: str  # "qkd" or "preplaced"


@dataclass
class DemoSummary:
    """Everything the demo reports (JSON-able; no key material, no key IDs)."""

    preset: str
    profile: str
    seed: int
    policy: str
    state_dir: str
    state_files: list[str] = field(default_factory=list)
    frames: dict[str, int] = field(default_factory=dict)
    rekeys: list[RekeyRecord] = field(default_factory=list)
    rejects: dict[str, int] = field(default_factory=dict)
    run_down: dict[str, Any] = field(default_factory=dict)
    key_bits: dict[str, int] = field(default_factory=dict)
    #: HTTP answers of each KME by status code, and connections accepted
    kme_requests: dict[str, dict[str, int]] = field(default_factory=dict)
    passes: list[dict[str, Any]] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    #: simulated start and end of the preset's pass
    pass_window_s: tuple[float, float] = (0.0, 0.0)
    sim_time_s: float = 0.0
    wall_time_s: float = 0.0

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    def rekey_count(self, direction: str | None = None) -> int:
        return sum(1 for r in self.rekeys if direction is None or r.direction == direction)

    def to_dict(self, *, samples: bool = False) -> dict[str, Any]:
        out = asdict(self)
        if not samples:
            out.pop("samples")
        out["passed"] = self.passed
        out["rekey_count"] = {"uplink": self.rekey_count("uplink"),
                              "downlink": self.rekey_count("downlink"),
                              "total": self.rekey_count()}
        return out


# --------------------------------------------------------------------------- key supply
class KeySupply:
    """PKI, pass emulator, KME pair, and one SQLite store + key buffer per end."""

    def __init__(self, config: DemoConfig, clock: SimClock) -> None:
        self.config = config
        base = config.state_dir
        self.pki = create_local_pki(base / "pki")
        profile = PASS_PRESETS[PRESET_PROFILES[config.preset]]()
        self.profile_name = profile.name
        self.schedule = PassSchedule((
            ScheduledPass(0.0, profile, seed=config.seed),
            ScheduledPass(config.next_pass_s, PASS_PRESETS["no_qkd"](), seed=config.seed + 1,
                          available=False, reason="cloud"),
        ))
        self.pass_end_s = self.schedule.passes[0].end_s
        # the pass's key enters the KME store as the pass goes (frame-by-frame post-processing)
        self.source = EmulatorKeySource(self.schedule, clock=clock, epoch=0.0,
                                        release="progressive",
                                        capacity_bits=config.kme_store_keys * KEY_BITS)
        self.buffer_config = BufferConfig(
            key_size_bits=KEY_BITS, low_watermark=config.buffer_low,
            high_watermark=config.buffer_high, depletion=config.policy,
            max_extensions=config.max_extensions if config.policy is DepletionPolicy.EXTEND
            else 0,
            fetch_batch=1, floors={})
        self.stores: list[SqliteStore] = []
        self.kmes: KmePair | None = None
        self.preplaced: list[uuid.UUID] = []
        try:
            self.kmes = KmePair.start(self.pki, source=self.source, key_size=KEY_BITS)
            self.ground_store = self._store("ground.sqlite", f"ground/scid={SCID}")
            self.space_store = self._store("space.sqlite", f"space/scid={SCID}")
            self.ground_buffer = KeyBuffer(
                self.ground_store,
                Etsi014KeyFetcher(self.kmes.client("SAE_A"), peer_sae_id="SAE_B",
                                  source_name="etsi014:KME_A"),
                self.buffer_config)
            self.space_buffer = KeyBuffer(
                self.space_store,
                Etsi014KeyFetcher(self.kmes.client("SAE_B"), peer_sae_id="SAE_A",
                                  source_name="etsi014:KME_B"),
                self.buffer_config)
            if config.policy is DepletionPolicy.FALLBACK and config.preplaced_keys:
                self._preplace(config.preplaced_keys)
        except BaseException:
            self.close()
            raise

    def _store(self, name: str, end_id: str) -> SqliteStore:
        store = SqliteStore(self.config.state_dir / name, end_id=end_id)
        self.stores.append(store)
        return store

    def _preplace(self, count: int) -> None:
        """The same pre-placed keys on both ends, as loaded before launch."""
        keys = [QkdKey(uuid.uuid4(), os.urandom(KEY_BITS // 8), source="preplaced")
                for _ in range(count)]
        self.ground_buffer.load_preplaced(keys)
        self.space_buffer.load_preplaced(keys)
        self.preplaced = [k.key_id for k in keys]

    def kme_keys(self) -> float:
        """Key waiting in the KME store, in 256-bit keys."""
        return self.source.available_bits() / KEY_BITS

    def initial_key_ids(self) -> tuple[uuid.UUID, uuid.UUID] | None:
        """Two keys of the ground buffer for epoch 0 (QKD keys first, else pre-placed ones)."""
        for preplaced in (False, True):
            rows = self.ground_store.list_keys([KeyState.AVAILABLE], preplaced=preplaced,
                                               limit=2)
            if len(rows) == 2:
                return rows[0].key_id, rows[1].key_id
        return None

    def close(self) -> None:
        if self.kmes is not None:
            self.kmes.stop()
            self.kmes = None
        for store in self.stores:
            store.close()
        self.stores.clear()


def link_config(supply: KeySupply, initial: tuple[uuid.UUID, uuid.UUID],
                config: DemoConfig) -> LinkConfig:
    """Both ends' link configuration: channels, SPIs, epoch-0 key IDs, rekey policy."""
    policy = RekeyPolicy(after_frames=config.frames_per_key, after_seconds=None,
                         iv_fraction=None, grace_frames=2, grace_seconds=30.0,
                         announce_every_frames=1, announce_every_seconds=None)
    block = 64
    return LinkConfig(
        scid=SCID,
        tc=TcChannel(scid=SCID, vcid=0, has_segment_header=True),
        tm=TmChannel(scid=SCID, vcid=1, frame_length=TM_FRAME_LENGTH),
        uplink=DirectionConfig(UPLINK_SPIS, 2 * block, initial_qkd_key_id=initial[0]),
        downlink=DirectionConfig(DOWNLINK_SPIS, 2 * block, initial_qkd_key_id=initial[1]),
        counter_block=block, rekey=policy, keys=supply.buffer_config,
        ground_state=str(supply.ground_store.path), space_state=str(supply.space_store.path))


def _refecf(frame: bytes | bytearray) -> bytes:
    """The frame with its 16-bit FECF recomputed (a forged frame must pass the CRC)."""
    body = bytes(frame[:-2])
    return body + crc16(body).to_bytes(2, "big")


def _packet(ptype: PacketType, apid: int, data: bytes, count: int) -> bytes:
    return SpacePacket.build(ptype, apid, data, sequence_count=count % 0x4000).pack()


# --------------------------------------------------------------------------- the scenario
Reporter = Callable[[DemoEvent], None]
TickHook = Callable[[int, float, Sample], None]

#: link-end event kinds told in the commentary (the rest stays in the ends' reports)
_TOLD = {"supply-short", "supply-restored", "blocked", "extended", "extend-refused",
         "buffer-fallback", "buffer-empty", "kcv-mismatch", "nacked", "announce-refused"}


class Demo:
    """One run of the scenario (see the module docstring).  Use :func:`run_demo`."""

    def __init__(self, config: DemoConfig, *, report: Reporter | None = None,
                 on_tick: TickHook | None = None) -> None:
        self.config = config
        self.report = report or (lambda e: None)
        self.on_tick = on_tick or (lambda i, t, s: None)
        self.clock = SimClock()
        self.rejects: Counter[str] = Counter()
        self.frames: Counter[str] = Counter()
        self.rekeys: list[RekeyRecord] = []
        self.checks: list[Check] = []
        self.samples: list[Sample] = []
        self.run_down: dict[str, Any] = {}
        self.ground: GroundEnd | None = None
        self.space: SpaceEnd | None = None
        self._seen: dict[str, int] = {"ground": 0, "space": 0}
        self._armed_told: set[tuple[str, str]] = set()
        self._preplaced: set[uuid.UUID] = set()
        self._last_tc: bytes | None = None
        self._attacked = False
        self._attack_rejects = 0
        self._kme_dry = False
        self._tick = 0
        self._pass_end = 0.0

    # ------------------------------------------------------------------ reporting
    def _say(self, kind: str, message: str, ok: bool = True) -> None:
        self.report(DemoEvent(round(self.clock.now, 3), kind, message, ok))

    def _check(self, name: str, expected: str, got: str, passed: bool) -> None:
        self.checks.append(Check(name, expected, got, passed))
        self._say("check", f"{name}: expected {expected}, got {got}", passed)

    # ------------------------------------------------------------------ run
    def run(self) -> DemoSummary:
        cfg = self.config
        started = time.perf_counter()
        cfg.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        supply = KeySupply(cfg, self.clock)
        try:
            assert supply.kmes is not None
            self._say("keys", f"KME_A {supply.kmes.a.url} (ground SAE_A) and KME_B "
                      f"{supply.kmes.b.url} (space SAE_B): ETSI GS QKD 014 over mutual TLS")
            self._say("phase", f"pass of {supply.profile_name}: emulating decoy-state BB84 "
                      "(sifting, Cascade, privacy amplification, finite-key bound)")
            supply.source.available_bits()  # emulate the pass now; its key is released over time
            for r in supply.source.results:
                self._say("keys", f"{r.profile}: {r.final_key_bits:,} secret bits from "
                          f"{r.sifted_bits:,} sifted, QBER {r.qber_x:.2%}" if not r.aborted
                          else f"{r.profile}: no key ({r.aborted})")
            if supply.preplaced:
                self._say("keys", f"{len(supply.preplaced)} pre-placed keys loaded on both ends "
                          "(policy fallback)")
            initial = self._await_initial_keys(supply)
            if initial is None:
                self._never_keyed(supply)
            else:
                self._open_link(supply, initial)
                try:
                    self._loop(supply)
                finally:
                    self._close_link()
            summary = self._summary(supply)
        finally:
            supply.close()
        summary.wall_time_s = round(time.perf_counter() - started, 3)
        return summary

    def _advance(self) -> bool:
        """One tick of simulated time; True while the pass supplies key."""
        self.clock.advance(self.config.tick_s)
        self._tick += 1
        return self.clock.now < self._pass_end

    def _await_initial_keys(self, supply: KeySupply) -> tuple[uuid.UUID, uuid.UUID] | None:
        self._pass_end = supply.pass_end_s
        while True:
            in_pass = self._advance()
            self._refill(supply)
            initial = supply.initial_key_ids()
            if initial is not None and (supply.ground_buffer.status().available >= 2
                                        or not in_pass):
                return initial
            if not in_pass:
                return None

    def _never_keyed(self, supply: KeySupply) -> None:
        message = ("no QKD key arrived during the pass and no pre-placed key is loaded: the "
                   "link was never keyed, no frame was sent (fail closed)")
        self.run_down.update({"event": KeyBufferEmpty.code, "message": message,
                              "t_s": round(self.clock.now, 3), "uplink_refused": True,
                              "downlink_refused": True})
        self._say("policy", f"{KeyBufferEmpty.code}: {message}")
        self._sample(supply)

    def _open_link(self, supply: KeySupply, initial: tuple[uuid.UUID, uuid.UUID]) -> None:
        config = link_config(supply, initial, self.config)
        self._preplaced = set(supply.preplaced)
        self.ground = GroundEnd(config, store=supply.ground_store, buffer=supply.ground_buffer,
                                clock=self.clock, max_events=1 << 20)
        self.space = SpaceEnd(config, store=supply.space_store, buffer=supply.space_buffer,
                              clock=self.clock, max_events=1 << 20)
        source = "pre-placed" if initial[0] in supply.preplaced else "QKD"
        self._say("rekey", f"link keyed (epoch 0) with {source} keys {str(initial[0])[:8]}… "
                  f"(uplink SPI {UPLINK_SPIS[0]}) and {str(initial[1])[:8]}… (downlink SPI "
                  f"{DOWNLINK_SPIS[0]}), named by key ID in the link configuration; the space "
                  "end fetched them from KME_B (dec_keys)")
        self._say("phase", f"traffic: TC up, TM down under AES-256-GCM; each sender rekeys every "
                  f"{self.config.frames_per_key} frames from the next QKD key")

    def _close_link(self) -> None:
        for end in (self.ground, self.space):
            if end is not None:
                self._events(end)
                end.close()  # the stores are the demo's (own_store=False): nothing closed

    def _loop(self, supply: KeySupply) -> None:
        cfg = self.config
        assert self.ground is not None and self.space is not None
        in_pass = self.clock.now < self._pass_end
        announced_rundown = False
        while self._tick < cfg.max_ticks:
            if not in_pass and not announced_rundown:
                announced_rundown = True
                self._say("phase", "pass over; the next pass is clouded out (no QKD): run-down "
                          f"with no key supply, {cfg.rundown_burst} commands per tick")
            self._refill(supply)
            burst = 1 if in_pass else cfg.rundown_burst
            self._uplink(burst)
            if not self._attacked and self.rekey_count("uplink") >= 2:
                self._attacks()
            self._downlink()
            self._switches()
            self._events(self.ground)
            self._events(self.space)
            self._sample(supply)
            if "uplink_refused" in self.run_down and "downlink_refused" in self.run_down:
                break
            in_pass = self._advance()
        else:
            self._say("info", f"stopped after {cfg.max_ticks} ticks", ok=False)

    def rekey_count(self, direction: str | None = None) -> int:
        return sum(1 for r in self.rekeys if direction is None or r.direction == direction)

    def _sample(self, supply: KeySupply) -> None:
        ground_blocked = "uplink_refused" in self.run_down
        space_blocked = "downlink_refused" in self.run_down
        sample = Sample(round(self.clock.now, 3), supply.ground_buffer.status().available,
                        supply.space_buffer.status().available, round(supply.kme_keys(), 2),
                        self.ground is not None and not ground_blocked,
                        self.space is not None and not space_blocked)
        self.samples.append(sample)
        self.on_tick(self._tick, self.clock.now, sample)

    def _refill(self, supply: KeySupply) -> None:
        buffer = supply.ground_buffer
        if buffer.status().available >= self.config.buffer_low:
            return
        try:
            added = buffer.refill()
        except KmeError as exc:
            if not self._kme_dry:
                self._kme_dry = True
                self._say("keys", f"KME_A has no key for the ground now ({exc.code}); the ground "
                          f"buffer holds {buffer.status().available}")
            return
        if added:
            self._kme_dry = False
            self._say("keys", f"ground fetched {len(added)} keys from KME_A (enc_keys); buffer "
                      f"{buffer.status().available}")

    # ------------------------------------------------------------------ traffic
    def _uplink(self, burst: int) -> None:
        assert self.ground is not None
        frames = self.ground.poll()
        commands = [_packet(PacketType.TC, APID_COMMAND,
                            f"CMD {self._tick:04d}.{i} SET HEATER {i % 2}".encode(), self._tick)
                    for i in range(burst)]
        try:
            frames += self.ground.send(commands)
        except KeyBufferEmpty as exc:
            if "uplink_refused" not in self.run_down:
                self.run_down.update({"event": exc.code, "message": exc.message,
                                      "t_s": round(self.clock.now, 3), "uplink_refused": True,
                                      "rekeys_before": self.rekey_count()})
                self._say("policy", f"{exc.code}: {exc.message}; the command is refused, "
                          "nothing goes out in clear")
        for frame in frames:
            self.frames["tc_sent"] += 1
            if self._deliver(self.space, frame, "TC"):
                self._last_tc = frame

    def _downlink(self) -> None:
        assert self.space is not None and self.ground is not None
        frames = self.space.poll()
        hk = _packet(PacketType.TM, APID_HOUSEKEEPING, f"HK {self._tick:04d} T=21.5C".encode(),
                     self._tick)
        try:
            frames += self.space.send([hk]) + self.space.flush()
        except KeyBufferEmpty as exc:
            if "downlink_refused" not in self.run_down:
                self.run_down["downlink_refused"] = True
                self.run_down["downlink_t_s"] = round(self.clock.now, 3)
                self._say("policy", f"space end: {exc.code}: {exc.message}")
        for frame in frames:
            self.frames["tm_sent"] += 1
            self._deliver(self.ground, frame, "TM")

    def _deliver(self, end: LinkEnd | None, frame: bytes, kind: str) -> bool:
        assert end is not None
        outcomes = end.receive(frame)
        ok = True
        for outcome in outcomes:
            if outcome.accepted:
                self.frames[f"{kind.lower()}_accepted"] += 1
            else:
                ok = False
                assert outcome.error is not None
                self.rejects[outcome.error] += 1
                self._say("frame", f"{kind} frame rejected: {outcome.error}", ok=False)
        return ok and bool(outcomes)

    # ------------------------------------------------------------------ link-end events
    def _switches(self) -> None:
        """New epochs the two senders switched to (from the pairs' histories)."""
        assert self.ground is not None and self.space is not None
        for role, pair in (("ground", self.ground.uplink), ("space", self.space.downlink)):
            done = self.rekey_count(pair.name)
            for spi, epoch, qkd_key_id, _kcv in pair.history[1 + done:]:
                source = "preplaced" if qkd_key_id in self._preplaced else "qkd"
                self.rekeys.append(RekeyRecord(pair.name, epoch, spi, round(self.clock.now, 3),
                                               source))
                self._say("rekey", f"{pair.name} rekey #{self.rekey_count(pair.name)}: the "
                          f"{role} sender switched to epoch {epoch} on SPI {spi} ("
                          + ("pre-placed key)" if source == "preplaced" else
                             f"QKD key {str(qkd_key_id)[:8]}…)"))

    def _events(self, end: LinkEnd) -> None:
        events = list(end.events)
        fresh = events[self._seen[end.role]:]
        self._seen[end.role] = len(events)
        for event in fresh:
            self._on_event(end.role, event)

    def _on_event(self, role: str, event: LinkEvent) -> None:
        kind, direction, detail = event.kind, event.direction, event.detail
        if kind == "armed" and (role, direction) not in self._armed_told:
            self._armed_told.add((role, direction))
            what = ("the key came from KME_A (enc_keys); its ID is announced over the link, "
                    "resent until acknowledged" if role == "ground" else
                    "fetched the announced key from KME_B by ID (dec_keys), derived the session "
                    "key, key check values match, Ack sent")
            self._say("rekey", f"{role} {direction} armed {_short(detail)}: {what}")
        elif kind in _TOLD and not (role == "space" and kind.startswith("buffer-")):
            # (the space buffer follows the ground's choices: empty by design, since it fetches
            # each announced key on demand, and pre-placed when the ground fell back)
            ok = kind not in ("kcv-mismatch", "nacked", "announce-refused")
            if kind == "buffer-fallback":
                self.run_down["fallback_events"] = self.run_down.get("fallback_events", 0) + 1
            if kind == "extended":
                self.run_down["extensions"] = self.run_down.get("extensions", 0) + 1
            self._say("policy" if kind != "supply-restored" else "keys",
                      f"{role} {direction}: {kind} {_short(detail)}".rstrip(), ok)

    # ------------------------------------------------------------------ the three attacks
    def _space_state(self) -> tuple[Any, ...]:
        assert self.space is not None
        return (self.space.sa_table(),
                tuple(sorted((spi, sa.snapshot()) for spi, sa in self.space.uplink.sas().items())))

    def _expect_reject(self, name: str, frame: bytes) -> None:
        assert self.space is not None
        expected = ATTACKS[name]
        before = self._space_state()
        outcomes: list[FrameOutcome] = self.space.receive(frame)
        unchanged = self._space_state() == before
        errors = [o.error for o in outcomes]
        for error in errors:
            if error is not None:
                self.rejects[error] += 1
                self._attack_rejects += 1
        got = ("accepted" if errors == [None] else
               f"rejected: {', '.join(str(e) for e in errors)}"
               + (", state unchanged" if unchanged else ", STATE CHANGED"))
        self._check(name, f"rejected: {expected}, state unchanged", got,
                    errors == [expected] and unchanged)

    def _attacks(self) -> None:
        assert self.ground is not None and self._last_tc is not None
        self._attacked = True
        self._say("phase", "attacks on the uplink: a replayed, a tampered and a wrong-SPI frame")
        self._expect_reject("replayed frame", self._last_tc)
        frames = self.ground.send([_packet(PacketType.TC, APID_COMMAND, b"CMD CHECK FRAME",
                                           self._tick)])
        genuine = frames[-1]
        tampered = bytearray(genuine)
        tampered[-2 - 16 - 1] ^= 0x01  # one bit of the last ciphertext octet (MAC 16, FECF 2)
        self._expect_reject("tampered frame", _refecf(tampered))
        spi_at = self.ground.config.tc.header_length
        wrong = bytearray(genuine)
        wrong[spi_at:spi_at + 2] = WRONG_SPI.to_bytes(2, "big")
        self._expect_reject("wrong-SPI frame", _refecf(wrong))
        accepted = True
        for frame in frames:
            self.frames["tc_sent"] += 1
            accepted = self._deliver(self.space, frame, "TC") and accepted
        self._check("genuine frame after the attacks", "accepted",
                    "accepted" if accepted else "rejected", accepted)
        self._last_tc = genuine

    # ------------------------------------------------------------------ summary
    def _summary(self, supply: KeySupply) -> DemoSummary:
        cfg = self.config
        self._final_checks()
        ground = supply.ground_buffer.status()
        space = supply.space_buffer.status()
        assert supply.kmes is not None
        pool = supply.kmes.pool.stats()
        return DemoSummary(
            preset=cfg.preset, profile=supply.profile_name, seed=cfg.seed,
            policy=cfg.policy.value, state_dir=str(cfg.state_dir),
            state_files=sorted(p.name for p in cfg.state_dir.iterdir() if p.is_file()),
            frames={k: self.frames[k] for k in ("tc_sent", "tc_accepted", "tm_sent",
                                                "tm_accepted")},
            rekeys=list(self.rekeys),
            rejects=dict(sorted(self.rejects.items())),
            run_down=dict(self.run_down),
            key_bits={
                "emulator_produced": sum(r.final_key_bits for r in supply.source.results),
                "kme_store_capacity": cfg.kme_store_keys * KEY_BITS,
                "kme_store_dropped": int(supply.source.dropped_bits),
                "kme_store_left": int(supply.source.available_bits()),
                "kme_delivered": pool.issued * KEY_BITS,
                "kme_b_delivered_by_id": pool.redeemed * KEY_BITS,
                "ground_consumed": ground.released * KEY_BITS,
                "space_consumed": space.released * KEY_BITS,
                "ground_unused": ground.available * KEY_BITS,
                "preplaced_loaded": len(supply.preplaced) * KEY_BITS,
                "preplaced_used": (len(supply.preplaced) - ground.preplaced_available) * KEY_BITS,
            },
            kme_requests={"KME_A": supply.kmes.a.counters, "KME_B": supply.kmes.b.counters},
            passes=[{"profile": r.profile, "final_key_bits": r.final_key_bits,
                     "sifted_bits": r.sifted_bits,
                     "qber": None if r.qber_x != r.qber_x else round(r.qber_x, 5),
                     "aborted": r.aborted} for r in supply.source.results],
            checks=list(self.checks),
            samples=list(self.samples),
            pass_window_s=(supply.schedule.passes[0].start_s, supply.pass_end_s),
            sim_time_s=round(self.clock.now, 3),
        )

    def _final_checks(self) -> None:
        cfg = self.config
        keyed = self.ground is not None
        if cfg.preset == "none" and not keyed:
            self._check("link without any key", "never keyed, nothing sent",
                        f"{self.frames['tc_sent']} TC / {self.frames['tm_sent']} TM frames sent",
                        self.frames["tc_sent"] == 0 and self.frames["tm_sent"] == 0)
        else:
            counts = {d: sum(1 for r in self.rekeys if r.direction == d and r.source == "qkd")
                      for d in ("uplink", "downlink")}
            if cfg.preset != "none":
                self._check("rekeys from QKD keys", ">= 3 per direction",
                            f"{counts['uplink']} uplink, {counts['downlink']} downlink",
                            min(counts.values()) >= 3)
            else:  # no QKD at all: the link lives on pre-placed keys until they run out
                up, down = self.rekey_count("uplink"), self.rekey_count("downlink")
                self._check("rekeys from pre-placed keys", ">= 1 per direction, no QKD key",
                            f"{up} uplink, {down} downlink, {sum(counts.values())} QKD",
                            min(up, down) >= 1 and not sum(counts.values()))
            if not self._attacked:
                self._check("attacks on the uplink", "run after the 2nd uplink rekey",
                            "not run", False)
        rd = self.run_down
        empty = rd.get("event") == KeyBufferEmpty.code
        both = rd.get("uplink_refused") is True and rd.get("downlink_refused") is True
        handled = empty and both
        extra = ""
        if cfg.policy is DepletionPolicy.FALLBACK and cfg.preplaced_keys and keyed:
            fallback = int(rd.get("fallback_events", 0))
            handled = handled and fallback > 0
            extra = f"; {fallback} pre-placed keys served (fallback events)"
        if cfg.policy is DepletionPolicy.EXTEND and keyed:
            extended = int(rd.get("extensions", 0))
            handled = handled and extended > 0
            extra = f"; {extended} counted extensions"
        rd["handled"] = handled
        self._check(f"key run-down, policy {cfg.policy.value}",
                    "KeyBufferEmpty; uplink and downlink refuse traffic",
                    f"{rd.get('event', 'no event')}; uplink "
                    f"{'refused' if rd.get('uplink_refused') else 'STILL OPEN'}, downlink "
                    f"{'refused' if rd.get('downlink_refused') else 'STILL OPEN'}{extra}",
                    handled)
        lost_tc = self.frames["tc_sent"] - self.frames["tc_accepted"]
        lost_tm = self.frames["tm_sent"] - self.frames["tm_accepted"]
        unexpected = sum(self.rejects.values()) - self._attack_rejects
        self._check("hitless rekeys", "every genuine frame accepted, no other reject",
                    f"{lost_tc} TC and {lost_tm} TM frames lost, {unexpected} other rejects",
                    lost_tc == 0 and lost_tm == 0 and unexpected == 0)


def _short(detail: str) -> str:
    """A link-end event detail with QKD key UUIDs shortened to their first 8 digits."""
    out = []
    for word in detail.split(" "):
        bare = word.strip("(),")
        try:
            uuid.UUID(bare)
        except ValueError:
            out.append(word)
            continue
        out.append(word.replace(bare, bare[:8] + "…"))
    return " ".join(out)


def default_state_dir() -> Path:
    """A fresh private directory for one run (kept afterwards for inspection)."""
    return Path(tempfile.mkdtemp(prefix="sdls-qkd-demo-"))


def check_state_dir(path: Path) -> None:
    """The demo starts from fresh state: refuse a directory that already holds files."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"state directory {path} is a file; pass a new or empty directory")
    if path.exists() and any(path.iterdir()):
        raise UsageError(f"state directory {path} is not empty: the demo starts from fresh "
                         "state; pass a new or empty directory")


def run_demo(config: DemoConfig, *, report: Reporter | None = None,
             on_tick: TickHook | None = None) -> DemoSummary:
    """Run the whole demo; the summary's ``passed`` says whether every expectation held."""
    check_state_dir(config.state_dir)
    return Demo(config, report=report, on_tick=on_tick).run()


# --------------------------------------------------------------------------- plot
def plot_timeline(summary: DemoSummary, path: str | os.PathLike[str]) -> None:
    """Key-buffer levels and rekeys over simulated time, as a PNG (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("--plot needs matplotlib: install sdls_qkd[plot]") from None
    t = [s.t_s for s in summary.samples]
    fig, ax = plt.subplots(figsize=(9, 5.2), dpi=110)
    start, end = summary.pass_window_s
    got_key = bool(summary.passes and summary.passes[0]["final_key_bits"])
    ax.axvspan(start, end, color="tab:blue", alpha=0.07,
               label=f"pass: {summary.profile}" + ("" if got_key else " (no key)"))
    ax.step(t, [s.kme_keys for s in summary.samples], where="post", color="tab:gray",
            label="KME key store (256-bit keys)")
    ax.step(t, [s.ground_keys for s in summary.samples], where="post", color="tab:blue",
            linewidth=2, label="ground key buffer (keys)")
    ax.step(t, [s.space_keys for s in summary.samples], where="post", color="tab:purple",
            linestyle=":", label="space key buffer (fetched by ID on demand)")
    labelled: set[tuple[str, str]] = set()
    for r in summary.rekeys:
        colour = {"uplink": "tab:green", "downlink": "tab:olive"}[r.direction]
        if r.source != "qkd":
            colour = "tab:orange"
        tag = (r.direction, r.source)
        ax.axvline(r.t_s, color=colour, alpha=0.45, linewidth=1,
                   linestyle="-" if r.direction == "uplink" else "--",
                   label=None if tag in labelled else
                   f"{r.direction} rekey ({'pre-placed' if r.source != 'qkd' else 'QKD'} key)")
        labelled.add(tag)
    stop = summary.run_down.get("t_s")
    if stop is not None:
        ax.axvline(stop, color="tab:red", linewidth=2,
                   label=f"{summary.run_down.get('event')}: uplink refused")
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("keys")
    ax.set_title(f"sdls-qkd demo: {summary.profile}, policy {summary.policy}, "
                 f"{summary.rekey_count()} rekeys")
    down = summary.run_down.get("downlink_t_s")
    if down is not None:
        ax.axvline(down, color="tab:red", linewidth=1, linestyle="--",
                   label="downlink refused (space end)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, fontsize=7,
              frameon=False)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.fspath(path))
    plt.close(fig)
