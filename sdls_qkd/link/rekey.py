"""Hitless rekeying of one link direction, paced by the QKD key supply.

Each direction (uplink TC, downlink TM) of a link end owns an :class:`SaPair`: two SPIs that
take turns.  One carries traffic (``CURRENT``); the other is either ``IDLE`` or holds the next
epoch's SA, ``ARMED`` ahead of time.  A switch starts the armed SA; on the receiving end the old
one keeps verifying in-flight frames for a grace window (``GRACE``), then is stopped and expired
and its key destroyed.  Slot states and their legal moves are one table, :data:`SLOT_MOVES`;
the SDLS SA state follows (IDLE = UNKEYED, ARMED = KEYED, CURRENT/GRACE = OPERATIONAL).

Key agreement (no key material crosses the link): the ground end is the key-buffer *master*.
It takes the next QKD key from its :class:`~sdls_qkd.keys.buffer.KeyBuffer`, derives the
per-SA, per-direction session key (:func:`~sdls_qkd.keys.kdf.derive_session_key`, context =
SPI, direction, epoch, QKD key ID), installs the SA as ARMED and announces the QKD key ID to the
space end in a control packet (:class:`Announce`, resent until acknowledged).  The space end
(slave) takes exactly that key from its own buffer, derives the same session key, checks the
ground's key check value (KCV), installs it and answers :class:`Ack` with its own KCV (or
:class:`Nack`).  A sender switches only to an SA its peer is known to hold: the ground's uplink
sender after the Ack, the space's downlink sender at once (the ground installed the receiving SA
before announcing it).  A receiver starts an ARMED SA on the first frame that verifies under it.

This is the link's own rekey coordination (:class:`Announce`/:class:`Ack`/:class:`Nack`, user
procedure tags 0x51/0xD1/0xD2).  It is kept behind :class:`SaPair`'s methods
``arm``/``on_announce``/``on_ack``/``on_nack`` so the transport can move to the SDLS EP path
(``procedures.qkd_rekey``) once that installs derived per-SA session keys.

Triggers (:class:`RekeyPolicy`): frames (AES-GCM invocations, counted from the durable IV
counter, so crashes only over-count), octets, time on an injected clock, a fraction of the IV
space, and the hard invocation limit.  When a rekey is due and no next key exists, the key
buffer's depletion policy decides: fail closed (user traffic refused until a key arrives; control
packets still flow until the hard limit), extend (counted extensions of the current key, up to
the buffer's cap), or fallback (the master's buffer serves pre-placed keys when arming).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any, Final
from uuid import UUID

from sdls_qkd.errors import (
    IllegalTransition,
    InvalidConfiguration,
    InvalidProcedure,
    KeyAlreadyUsed,
    KeyBufferEmpty,
    KeyDestroyed,
    KeySupplyError,
    SdlsQkdError,
    StateCorrupt,
    StateForeign,
    UnknownKey,
)
from sdls_qkd.framing.channel import Channel
from sdls_qkd.keys.buffer import DepletionPolicy, Extension, KeyBuffer, Purpose, Reservation
from sdls_qkd.keys.kdf import Direction, SessionContext, derive_session_key
from sdls_qkd.link.counters import DEFAULT_BLOCK, ReplayGuardCounter, ReservedCounter, counter_name
from sdls_qkd.security.counters import CounterSource, counter_max
from sdls_qkd.security.layout import PRESETS, SecurityLayout, default_abm
from sdls_qkd.security.sa import (
    KeyState,
    SaState,
    SdlsKey,
    SecurityAssociation,
    ServiceType,
    binding_for,
)
from sdls_qkd.security.suites import CIPHERS
from sdls_qkd.store.base import StateStore

__all__ = [
    "RekeyPolicy",
    "Usage",
    "SlotState",
    "SLOT_MOVES",
    "ControlTag",
    "NackReason",
    "Announce",
    "Ack",
    "Nack",
    "parse_control",
    "key_check_value",
    "LinkEvent",
    "SaStats",
    "Slot",
    "SaPair",
    "SaShape",
]

#: labels of the key check values (HMAC-SHA-256 over the session key, truncated to 8 octets)
KCV_GROUND: Final = b"sdls-qkd/link kcv ground"
KCV_SPACE: Final = b"sdls-qkd/link kcv space"
KCV_FINGERPRINT: Final = b"sdls-qkd/link key fingerprint"
KCV_LENGTH: Final = 8
_BLOB_MAGIC: Final = b"SDLSQKD-SLOT/1\n"


# --------------------------------------------------------------------------- policy
@dataclass(frozen=True, slots=True)
class Usage:
    """How much one sender SA has been used."""

    #: AES-GCM invocations (IVs consumed; after a crash counted up to the reserved bound)
    invocations: int
    octets: int
    elapsed_s: float
    #: fraction of the IV counter space consumed
    iv_fraction: float


@dataclass(frozen=True)
class RekeyPolicy:
    """When a sender switches to the next key, and how long receivers keep the old one.

    Soft triggers (``None`` disables one) scale with the extensions granted under depletion
    policy EXTEND; the hard limit ``max_invocations`` never does: past it the SA protects no
    further frame.  ``invocation_margin``: the soft "invocation-limit" trigger fires this
    fraction of the hard limit early.
    """

    after_frames: int | None = 1_000_000
    after_octets: int | None = None
    after_seconds: float | None = 86_400.0
    iv_fraction: float | None = 0.5
    #: AES-GCM invocation limit per key (NIST SP 800-38D §8.3: 2^32 for random IVs)
    max_invocations: int = 1 << 32
    invocation_margin: float = 1 / 16
    #: receiver: accepted frames after a switch before the old SA retires (None: time only)
    grace_frames: int | None = 256
    #: receiver: seconds after a switch before the old SA retires (whichever comes first)
    grace_seconds: float | None = 60.0
    #: master: resend an unacknowledged announcement after this many frames sent / seconds
    announce_every_frames: int = 32
    announce_every_seconds: float | None = 5.0

    def __post_init__(self) -> None:
        for name in ("after_frames", "after_octets", "grace_frames"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                      or value < 1):
                raise InvalidConfiguration(f"rekey {name} must be an integer >= 1 or unset, "
                                           f"not {value!r}", field=name)
        for name in ("after_seconds", "grace_seconds", "announce_every_seconds"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int | float) or not value > 0):
                raise InvalidConfiguration(f"rekey {name} must be > 0 or unset, not {value!r}",
                                           field=name)
        if self.iv_fraction is not None and not 0 < self.iv_fraction <= 1:
            raise InvalidConfiguration(f"rekey iv_fraction must be in (0, 1], not "
                                       f"{self.iv_fraction!r}", field="iv_fraction")
        if not isinstance(self.max_invocations, int) or self.max_invocations < 2:
            raise InvalidConfiguration("rekey max_invocations must be an integer >= 2",
                                       field="max_invocations")
        if not 0 <= self.invocation_margin < 1:
            raise InvalidConfiguration("rekey invocation_margin must be in [0, 1)",
                                       field="invocation_margin")
        if not isinstance(self.announce_every_frames, int) or self.announce_every_frames < 1:
            raise InvalidConfiguration("rekey announce_every_frames must be >= 1",
                                       field="announce_every_frames")
        if self.grace_seconds is None:
            # frames alone could wait forever: a blocked peer sends nothing, the old SA would
            # never retire, its SPI never be re-armed, and the peer stay blocked
            raise InvalidConfiguration("grace_seconds must be set (grace_frames may end the "
                                       "grace window earlier): an old SA must retire even "
                                       "when traffic stops", field="grace_seconds")

    @property
    def soft_invocations(self) -> int:
        return max(1, self.max_invocations - math.ceil(self.max_invocations
                                                       * self.invocation_margin))

    def due(self, usage: Usage, extensions: int = 0) -> str | None:
        """The name of the first trigger that fired, or None."""
        scale = 1 + extensions
        if usage.invocations >= self.soft_invocations:
            return "invocation-limit"
        if self.after_frames is not None and usage.invocations >= self.after_frames * scale:
            return "frames"
        if self.after_octets is not None and usage.octets >= self.after_octets * scale:
            return "octets"
        if self.after_seconds is not None and usage.elapsed_s >= self.after_seconds * scale:
            return "time"
        if self.iv_fraction is not None and usage.iv_fraction >= min(1.0, self.iv_fraction
                                                                    * scale):
            return "iv-space"
        return None

    def exhausted(self, usage: Usage) -> bool:
        """The hard limit: the SA may protect no further frame."""
        return usage.invocations >= self.max_invocations

    def remaining(self, usage: Usage, extensions: int = 0) -> dict[str, float]:
        """What is left before each enabled trigger (frames, octets, seconds)."""
        scale = 1 + extensions
        out: dict[str, float] = {"invocations": self.soft_invocations - usage.invocations}
        if self.after_frames is not None:
            out["frames"] = self.after_frames * scale - usage.invocations
        if self.after_octets is not None:
            out["octets"] = self.after_octets * scale - usage.octets
        if self.after_seconds is not None:
            out["seconds"] = self.after_seconds * scale - usage.elapsed_s
        return out


# --------------------------------------------------------------------------- control PDUs
class ControlTag(IntEnum):
    """First octet of a link control packet's data field (user-defined procedure tags)."""

    ANNOUNCE = 0x51
    ACK = 0xD1
    NACK = 0xD2


class NackReason(IntEnum):
    KEY_UNAVAILABLE = 1
    KEY_USED = 2
    KCV_MISMATCH = 3
    STALE_EPOCH = 4
    BAD_SPI = 5


def _direction(value: int) -> Direction:
    try:
        return Direction(value)
    except ValueError:
        raise InvalidProcedure(f"direction must be 1 (uplink) or 2 (downlink), got {value}",
                               field="direction", offset=1) from None


@dataclass(frozen=True, slots=True)
class Announce:
    """Master -> slave: "epoch E of SPI S (direction D) uses QKD key K"; 32 octets."""

    direction: Direction
    spi: int
    epoch: int
    qkd_key_id: UUID
    kcv: bytes

    def pack(self) -> bytes:
        return (bytes([ControlTag.ANNOUNCE, self.direction]) + self.spi.to_bytes(2, "big")
                + self.epoch.to_bytes(4, "big") + self.qkd_key_id.bytes + self.kcv)

    @classmethod
    def unpack(cls, data: bytes) -> Announce:
        if len(data) != 32:
            raise InvalidProcedure(f"rekey announcement must be 32 octets, got {len(data)}",
                                   field="length")
        return cls(_direction(data[1]), int.from_bytes(data[2:4], "big"),
                   int.from_bytes(data[4:8], "big"), UUID(bytes=bytes(data[8:24])),
                   bytes(data[24:32]))


@dataclass(frozen=True, slots=True)
class Ack:
    """Slave -> master: installed, with the slave's own KCV; 16 octets."""

    direction: Direction
    spi: int
    epoch: int
    kcv: bytes

    def pack(self) -> bytes:
        return (bytes([ControlTag.ACK, self.direction]) + self.spi.to_bytes(2, "big")
                + self.epoch.to_bytes(4, "big") + self.kcv)

    @classmethod
    def unpack(cls, data: bytes) -> Ack:
        if len(data) != 16:
            raise InvalidProcedure(f"rekey acknowledgement must be 16 octets, got {len(data)}",
                                   field="length")
        return cls(_direction(data[1]), int.from_bytes(data[2:4], "big"),
                   int.from_bytes(data[4:8], "big"), bytes(data[8:16]))


@dataclass(frozen=True, slots=True)
class Nack:
    """Slave -> master: the announced epoch cannot be installed; 9 octets."""

    direction: Direction
    spi: int
    epoch: int
    reason: NackReason

    def pack(self) -> bytes:
        return (bytes([ControlTag.NACK, self.direction]) + self.spi.to_bytes(2, "big")
                + self.epoch.to_bytes(4, "big") + bytes([self.reason]))

    @classmethod
    def unpack(cls, data: bytes) -> Nack:
        if len(data) != 9:
            raise InvalidProcedure(f"rekey refusal must be 9 octets, got {len(data)}",
                                   field="length")
        try:
            reason = NackReason(data[8])
        except ValueError:
            raise InvalidProcedure(f"unknown refusal reason {data[8]}", field="reason",
                                   offset=8) from None
        return cls(_direction(data[1]), int.from_bytes(data[2:4], "big"),
                   int.from_bytes(data[4:8], "big"), reason)


def parse_control(data: bytes) -> Announce | Ack | Nack:
    """Decode a control packet's data field; InvalidProcedure for anything else."""
    if not data:
        raise InvalidProcedure("empty control packet", field="tag")
    tag = data[0]
    if tag == ControlTag.ANNOUNCE:
        return Announce.unpack(data)
    if tag == ControlTag.ACK:
        return Ack.unpack(data)
    if tag == ControlTag.NACK:
        return Nack.unpack(data)
    raise InvalidProcedure(f"unknown control tag {tag:#04x}", field="tag", offset=0)


def key_check_value(material: bytes, label: bytes, direction: Direction, spi: int, epoch: int,
                    qkd_key_id: UUID | None) -> bytes:
    """KCV binding the session key to its context (never reveals the key)."""
    key_id = qkd_key_id.bytes if qkd_key_id is not None else bytes(16)
    msg = (label + bytes([direction]) + spi.to_bytes(2, "big") + epoch.to_bytes(4, "big")
           + key_id)
    return hmac.new(material, msg, hashlib.sha256).digest()[:KCV_LENGTH]


# --------------------------------------------------------------------------- slots
class SlotState(StrEnum):
    """Logical state of one SPI of a pair."""

    IDLE = "idle"          # UNKEYED: no key
    ARMED = "armed"        # KEYED: next epoch, waiting for the switch
    CURRENT = "current"    # OPERATIONAL: carries traffic
    GRACE = "grace"        # OPERATIONAL (receiver): old epoch, verifies in-flight frames


#: (from, move) -> to; anything else raises IllegalTransition
SLOT_MOVES: Final[dict[tuple[SlotState, str], SlotState]] = {
    (SlotState.IDLE, "arm"): SlotState.ARMED,
    (SlotState.ARMED, "abandon"): SlotState.IDLE,
    (SlotState.ARMED, "switch-in"): SlotState.CURRENT,
    (SlotState.CURRENT, "switch-out-sender"): SlotState.IDLE,
    (SlotState.CURRENT, "switch-out-receiver"): SlotState.GRACE,
    (SlotState.GRACE, "retire"): SlotState.IDLE,
}


@dataclass(frozen=True)
class LinkEvent:
    """Something the operator should know (rekeys, supply shortage, refusals)."""

    at: float
    kind: str
    direction: str
    detail: str = ""


@dataclass
class SaStats:
    """Traffic of one SA epoch in this process."""

    frames: int = 0
    octets: int = 0
    rejects: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class SaShape:
    """Everything an SA of a pair shares except keys and counters."""

    channel: Channel
    layout: SecurityLayout = field(default_factory=lambda: PRESETS["yamcs"])
    cipher: str = "AES-256-GCM"
    window: int = 2 * DEFAULT_BLOCK
    counter_block: int = DEFAULT_BLOCK

    @property
    def key_length(self) -> int:
        return CIPHERS[self.cipher].key_length


@dataclass
class Slot:
    """One SPI of a pair: its SA object and the rekey bookkeeping around it."""

    spi: int
    sa: SecurityAssociation
    state: SlotState = SlotState.IDLE
    epoch: int = -1
    qkd_key_id: UUID | None = None
    kcv: bytes = b""
    #: master: the peer acknowledged this epoch (a sender may switch to it)
    acked: bool = False
    started_at: float | None = None
    extensions: int = 0
    grace_since: float | None = None
    grace_frames: int = 0
    stats: SaStats = field(default_factory=SaStats)
    material: bytes | None = field(default=None, repr=False)
    #: neutral fingerprint of the key (the same at both ends; KCVs differ by end)
    fingerprint: bytes = b""
    last_announce_frame: int = -(1 << 62)
    last_announce_at: float = -math.inf

    def move(self, move: str) -> None:
        try:
            self.state = SLOT_MOVES[(self.state, move)]
        except KeyError:
            raise IllegalTransition(f"SPI {self.spi}: {move} is not allowed in slot state "
                                    f"{self.state.value}", field="state") from None

    def encode(self, direction: Direction, role: str) -> bytes:
        """The store blob (holds the session key: the store file is private)."""
        data = {
            "direction": direction.name.lower(), "role": role, "spi": self.spi,
            "state": self.state.value, "epoch": self.epoch,
            "qkd_key_id": str(self.qkd_key_id) if self.qkd_key_id else None,
            "kcv": self.kcv.hex(), "acked": self.acked, "started_at": self.started_at,
            "extensions": self.extensions,
            "key": self.material.hex() if self.material is not None else None,
        }
        return _BLOB_MAGIC + json.dumps(data, sort_keys=True).encode()


def decode_slot(blob: bytes, *, spi: int, direction: Direction, role: str) -> dict[str, Any]:
    """Parse and check a slot blob; StateCorrupt / StateForeign when it cannot be ours."""
    if not blob.startswith(_BLOB_MAGIC):
        raise StateForeign(f"SA {spi} in the state store was not written by a link end")
    try:
        data = json.loads(blob[len(_BLOB_MAGIC):])
        if not isinstance(data, dict):
            raise ValueError("not an object")
        if data["direction"] != direction.name.lower() or data["role"] != role or \
                data["spi"] != spi:
            raise StateForeign(f"SA {spi} in the state store belongs to {data['role']} "
                               f"{data['direction']}, not {role} {direction.name.lower()}")
        state = SlotState(data["state"])
        key = data["key"]
        out = {
            "state": state, "epoch": int(data["epoch"]),
            "qkd_key_id": UUID(data["qkd_key_id"]) if data["qkd_key_id"] else None,
            "kcv": bytes.fromhex(data["kcv"]), "acked": bool(data["acked"]),
            "started_at": None if data["started_at"] is None else float(data["started_at"]),
            "extensions": int(data["extensions"]),
            "material": bytes.fromhex(key) if key is not None else None,
        }
    except StateForeign:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise StateCorrupt(f"SA {spi} in the state store is malformed: {exc}") from None
    if (out["material"] is None) != (state is SlotState.IDLE):
        raise StateCorrupt(f"SA {spi} in the state store: key presence disagrees with state "
                           f"{state.value}")
    return out


# --------------------------------------------------------------------------- the pair
class SaPair:
    """The two SPIs of one direction at one link end, and their rekey state machine.

    ``role`` is ``"sender"`` or ``"receiver"`` of this direction; ``master`` is True at the end
    whose key buffer chooses keys (the ground).  Every slot change is saved to the store
    before it takes effect on the link.
    """

    def __init__(self, *, direction: Direction, role: str, master: bool, spis: tuple[int, int],
                 shape: SaShape, store: StateStore, buffer: KeyBuffer | None,
                 policy: RekeyPolicy, clock: Callable[[], float],
                 events: deque[LinkEvent]) -> None:
        if role not in ("sender", "receiver"):
            raise InvalidConfiguration(f"role must be sender or receiver, not {role!r}")
        if len(set(spis)) != 2:
            raise InvalidConfiguration(f"a rekeyed direction needs two different SPIs, got "
                                       f"{spis}", field="spi")
        self.direction = direction
        self.name = direction.name.lower()
        self.role = role
        self.master = master
        self.spis = spis
        self.shape = shape
        self.store = store
        self.buffer = buffer
        self.policy = policy
        self.clock = clock
        self.events = events
        self.slots: dict[int, Slot] = {}
        self._sas: dict[int, SecurityAssociation] = {}
        self.frames_sent = 0
        self._supply_short = False
        self._blocked_reason: str | None = None
        self._pending_noted = False
        #: every epoch this pair has used (key id, kcv), for reports and tests
        self.history: list[tuple[int, int, UUID | None, bytes]] = []
        #: stats of retired epochs: (spi, epoch) -> stats
        self.past: dict[tuple[int, int], SaStats] = {}
        self.last_arm_attempt = -(1 << 62)
        #: sender hot path: (current slot, IV, octets, time) below which nothing can trigger
        self._gate: tuple[Slot, int, float, float] | None = None

    # ------------------------------------------------------------------ building SAs
    def _counters(self, spi: int, epoch: int) -> tuple[CounterSource | None,
                                                      CounterSource | None]:
        layout = self.shape.layout
        block = self.shape.counter_block
        iv: CounterSource | None
        sn: CounterSource | None
        if self.role == "sender":
            iv = ReservedCounter(self.store, counter_name("iv-tx", self.name, spi, epoch),
                                 layout.iv_length, block=block, start=1) \
                if layout.iv_length else None
            sn = ReservedCounter(self.store, counter_name("sn-tx", self.name, spi, epoch),
                                 layout.sn_length, block=block, start=1) \
                if layout.sn_length else None
        else:
            iv = ReplayGuardCounter(self.store, counter_name("iv-rx", self.name, spi, epoch),
                                    layout.iv_length, block=block) if layout.iv_length else None
            sn = ReplayGuardCounter(self.store, counter_name("sn-rx", self.name, spi, epoch),
                                    layout.sn_length, block=block) if layout.sn_length else None
        return iv, sn

    def _new_sa(self, spi: int, epoch: int) -> SecurityAssociation:
        """An UNKEYED SA of this pair's shape with durable counters for ``epoch``."""
        shape = self.shape
        layout = shape.layout
        iv, sn = self._counters(spi, epoch) if epoch >= 0 else (None, None)
        return SecurityAssociation(
            spi, service=ServiceType.AUTHENTICATED_ENCRYPTION, cipher=shape.cipher,
            iv_length=layout.iv_length, transmitted_iv_length=layout.transmitted_iv_length,
            sn_length=layout.sn_length, transmitted_sn_length=layout.transmitted_sn_length,
            pad_length_field_length=layout.pad_length_field_length,
            mac_length=layout.mac_length,
            abm=default_abm(shape.channel, layout, mac_only=False), window=shape.window,
            state=SaState.UNKEYED, bindings=[binding_for(shape.channel)], iv_counter=iv,
            arsn_counter=sn, validate=False)

    def _keyed_slot(self, spi: int, epoch: int, material: bytes, qkd_key_id: UUID | None,
                    state: SlotState) -> Slot:
        sa = self._new_sa(spi, epoch)
        sa.rekey(SdlsKey(material, key_id=f"{self.name}/spi={spi}/epoch={epoch}"))
        if state in (SlotState.CURRENT, SlotState.GRACE):
            sa.start()
        label = KCV_GROUND if self.master else KCV_SPACE
        slot = Slot(spi, sa, state, epoch, qkd_key_id,
                    key_check_value(material, label, self.direction, spi, epoch, qkd_key_id),
                    material=material,
                    fingerprint=key_check_value(material, KCV_FINGERPRINT, self.direction, spi,
                                                epoch, qkd_key_id))
        return slot

    def _idle_slot(self, spi: int, epoch: int) -> Slot:
        return Slot(spi, self._new_sa(spi, -1), SlotState.IDLE, epoch)

    def _save(self, slot: Slot) -> None:
        self.store.save_sa(slot.spi, slot.encode(self.direction, self.role))

    def _event(self, kind: str, detail: str = "") -> None:
        self.events.append(LinkEvent(self.clock(), kind, self.name, detail))

    # ------------------------------------------------------------------ start / restore
    def restore(self, blobs: dict[int, bytes]) -> bool:
        """Rebuild the slots from stored blobs; False when the store holds none of ours.

        Slot changes that touch both SPIs are written in an order that a crash between the
        two writes leaves recognisable, and this resolves it (see :meth:`_recover`).
        """
        have = [spi for spi in self.spis if spi in blobs]
        if not have:
            return False
        for spi in have:
            rec = decode_slot(blobs[spi], spi=spi, direction=self.direction, role=self.role)
            state: SlotState = rec["state"]
            if state is SlotState.IDLE:
                slot = self._idle_slot(spi, rec["epoch"])
            else:
                slot = self._keyed_slot(spi, rec["epoch"], rec["material"], rec["qkd_key_id"],
                                        state)
                if not hmac.compare_digest(slot.kcv, rec["kcv"]):
                    raise StateCorrupt(f"SA {spi} in the state store: key check value "
                                       "mismatch")
            slot.acked = rec["acked"]
            slot.started_at = rec["started_at"]
            slot.extensions = rec["extensions"]
            if state is SlotState.GRACE:
                slot.grace_since = self.clock()
            self._put(slot)
        self._recover()
        self._event("restored", f"epochs {sorted(s.epoch for s in self.slots.values())}")
        return True

    def _recover(self) -> None:
        """Finish a two-slot change a crash interrupted between its two store writes.

        * first start: the CURRENT slot is written first; a missing partner is IDLE.
        * switch: the new CURRENT is written first; of two CURRENT slots the higher epoch is
          the current one, the other retires (sender: IDLE, key destroyed; receiver: GRACE).
        """
        currents = sorted((s for s in self.slots.values() if s.state is SlotState.CURRENT),
                          key=lambda s: s.epoch)
        if not currents:
            raise StateCorrupt(f"{self.name}: the state store holds no current SA")
        if len(self.slots) == 1:
            (spi,) = [x for x in self.spis if x not in self.slots]
            idle = self._idle_slot(spi, -1)
            self._save(idle)
            self._put(idle)
            self._event("recovered", f"SA {spi} was never written: idle")
        if len(currents) == 2:
            old, new = currents
            if old.epoch == new.epoch:
                raise StateCorrupt(f"{self.name}: two current SAs of epoch {old.epoch}")
            if self.role == "sender":
                old.move("switch-out-sender")
                self._destroy(old)
            else:
                old.move("switch-out-receiver")
                old.grace_since = self.clock()
            self._save(old)
            self._event("recovered", f"switch {old.epoch} -> {new.epoch} completed")

    def initialise(self, material: bytes, qkd_key_id: UUID | None) -> None:
        """First start: epoch 0 on the first SPI with the configured initial key."""
        first, second = self.spis
        cur = self._keyed_slot(first, 0, material, qkd_key_id, SlotState.CURRENT)
        cur.started_at = self.clock()
        cur.acked = True
        idle = self._idle_slot(second, -1)
        for slot in (cur, idle):  # CURRENT first: see _recover
            self._save(slot)
            self._put(slot)
        self.history.append((first, 0, qkd_key_id, cur.kcv))
        self._event("initialised", f"epoch 0 on SPI {first}")

    # ------------------------------------------------------------------ views
    @property
    def current(self) -> Slot:
        for slot in self.slots.values():
            if slot.state is SlotState.CURRENT:
                return slot
        raise StateCorrupt(f"{self.name}: no current SA")

    def slot_in(self, state: SlotState) -> Slot | None:
        for slot in self.slots.values():
            if slot.state is state:
                return slot
        return None

    @property
    def max_epoch(self) -> int:
        return max(s.epoch for s in self.slots.values())

    def _put(self, slot: Slot) -> None:
        self.slots[slot.spi] = slot
        self._sas = {spi: s.sa for spi, s in self.slots.items()}

    def sas(self) -> dict[int, SecurityAssociation]:
        """SPI -> SA, for ``process_security`` (the same dict until a slot is replaced)."""
        return self._sas

    def usage(self, slot: Slot) -> Usage:
        """Invocations from the IV counter (or the ARSN when the SA has no IV counter); the
        space fraction is the larger of the IV's and the ARSN's."""
        fractions = []
        used = 0
        for counter in (slot.sa.arsn_counter, slot.sa.iv_counter):
            if counter.width:
                n = max(0, counter.value - getattr(counter, "start", 1))
                used = n
                fractions.append(n / counter_max(counter.width))
        elapsed = 0.0 if slot.started_at is None else max(0.0, self.clock() - slot.started_at)
        return Usage(used, slot.stats.octets, elapsed, max(fractions, default=0.0))

    # ------------------------------------------------------------------ master: arming
    def arm(self, carrier_frames: int = 0) -> Announce | None:
        """Master: take the next QKD key and install the next epoch as ARMED; its announcement.

        Returns None (and reports a shortage) when the buffer has no key.  Only when the other
        slot is IDLE (a receiver's old SA has retired).
        """
        if not self.master or self.buffer is None:
            raise InvalidConfiguration("only the master end with a key buffer arms SAs")
        idle = self.slot_in(SlotState.IDLE)
        if idle is None or self.slot_in(SlotState.ARMED) is not None:
            return None
        self.last_arm_attempt = carrier_frames
        try:
            res = self.buffer.reserve(Purpose.REKEY)
        except KeyBufferEmpty as exc:
            if not self._supply_short:
                self._supply_short = True
                self._event("supply-short", exc.message)
            return None
        assert isinstance(res, Reservation)  # reserve without ``current`` never extends
        (key,) = self.buffer.commit(res)
        epoch = self.max_epoch + 1
        session = derive_session_key(
            key, SessionContext(idle.spi, self.direction, epoch, key.key_id), self.store,
            length=self.shape.key_length, clock=self.clock)
        slot = self._keyed_slot(idle.spi, epoch, session.material, key.key_id, SlotState.ARMED)
        self._save(slot)
        self._put(slot)
        if self._supply_short:
            self._supply_short = False
            self._event("supply-restored")
        self._event("armed", f"epoch {epoch} on SPI {idle.spi} (QKD key {key.key_id}"
                             f"{', pre-placed' if res.preplaced else ''})")
        return self.announcement(slot)

    def announcement(self, slot: Slot) -> Announce:
        assert slot.qkd_key_id is not None
        return Announce(self.direction, slot.spi, slot.epoch, slot.qkd_key_id, slot.kcv)

    def due_announcements(self, carrier_frames: int) -> list[Announce]:
        """Master: announcements to (re)send now (unacknowledged ARMED slots).

        ``carrier_frames``: frames sent so far on the link that carries them (the uplink).
        """
        slot = self.slot_in(SlotState.ARMED)
        if slot is None or slot.acked or slot.qkd_key_id is None:
            return []
        now = self.clock()
        every_s = self.policy.announce_every_seconds
        if carrier_frames - slot.last_announce_frame >= self.policy.announce_every_frames or \
                (every_s is not None and now - slot.last_announce_at >= every_s):
            slot.last_announce_frame = carrier_frames
            slot.last_announce_at = now
            return [self.announcement(slot)]
        return []

    def on_ack(self, ack: Ack) -> None:
        slot = self.slots.get(ack.spi)
        if slot is None or slot.state is not SlotState.ARMED or slot.epoch != ack.epoch:
            return  # late duplicate
        if slot.acked:
            return
        assert slot.material is not None
        expected = key_check_value(slot.material, KCV_SPACE, self.direction, slot.spi,
                                   slot.epoch, slot.qkd_key_id)
        if not hmac.compare_digest(expected, ack.kcv):
            self._event("kcv-mismatch", f"epoch {slot.epoch}: the space end holds another key")
            self._abandon(slot)
            return
        slot.acked = True
        self._save(slot)
        self._event("acked", f"epoch {slot.epoch} on SPI {slot.spi}")

    def on_nack(self, nack: Nack) -> None:
        slot = self.slots.get(nack.spi)
        if slot is None or slot.state is not SlotState.ARMED or slot.epoch != nack.epoch:
            return
        self._event("nacked", f"epoch {slot.epoch}: {nack.reason.name}")
        self._abandon(slot)

    def _abandon(self, slot: Slot) -> None:
        """ARMED -> IDLE: the epoch is given up, its key destroyed."""
        slot.move("abandon")
        self._destroy(slot)
        self._save(slot)

    def _destroy(self, slot: Slot) -> None:
        sa = slot.sa
        for key in sa.held_keys():
            key.state = KeyState.DESTROYED
        if sa.state is SaState.OPERATIONAL:
            sa.stop()
        if sa.state is SaState.KEYED:
            sa.expire()
        slot.material = None  # (the fingerprint stays: it names the key in reports, no secret)
        self.past[(slot.spi, slot.epoch)] = slot.stats
        slot.stats = SaStats()

    # ------------------------------------------------------------------ slave: announcements
    def on_announce(self, ann: Announce) -> Ack | Nack | None:
        """Slave: install the announced epoch from the own key buffer (idempotent)."""
        slot = self.slots.get(ann.spi)
        if slot is None:
            return Nack(self.direction, ann.spi, ann.epoch, NackReason.BAD_SPI)
        if slot.epoch == ann.epoch and slot.qkd_key_id == ann.qkd_key_id and \
                slot.state is not SlotState.IDLE:
            return Ack(self.direction, slot.spi, slot.epoch, slot.kcv)  # our Ack was lost
        if ann.epoch <= self.max_epoch:
            return Nack(self.direction, ann.spi, ann.epoch, NackReason.STALE_EPOCH)
        if slot.state in (SlotState.CURRENT, SlotState.GRACE):
            return None  # busy: the master resends once the old SA has retired here
        if self.buffer is None:
            return Nack(self.direction, ann.spi, ann.epoch, NackReason.KEY_UNAVAILABLE)
        try:
            res = self.buffer.reserve_ids([ann.qkd_key_id], Purpose.REKEY)
            (key,) = self.buffer.commit(res)
            session = derive_session_key(
                key, SessionContext(ann.spi, self.direction, ann.epoch, key.key_id), self.store,
                length=self.shape.key_length, clock=self.clock)
        except (KeyAlreadyUsed, KeyDestroyed, IllegalTransition) as exc:
            self._event("announce-refused", f"epoch {ann.epoch}: {exc}")
            return Nack(self.direction, ann.spi, ann.epoch, NackReason.KEY_USED)
        except (KeySupplyError, UnknownKey) as exc:
            self._event("announce-refused", f"epoch {ann.epoch}: {exc}")
            return Nack(self.direction, ann.spi, ann.epoch, NackReason.KEY_UNAVAILABLE)
        ground_kcv = key_check_value(session.material, KCV_GROUND, self.direction, ann.spi,
                                     ann.epoch, ann.qkd_key_id)
        if not hmac.compare_digest(ground_kcv, ann.kcv):
            self._event("kcv-mismatch", f"epoch {ann.epoch}: announced key differs")
            return Nack(self.direction, ann.spi, ann.epoch, NackReason.KCV_MISMATCH)
        if slot.state is SlotState.ARMED:  # a newer epoch replaces one never started
            self._abandon(slot)
        new = self._keyed_slot(ann.spi, ann.epoch, session.material, ann.qkd_key_id,
                               SlotState.ARMED)
        new.acked = True
        self._save(new)
        self._put(new)
        self._event("armed", f"epoch {ann.epoch} on SPI {ann.spi} (QKD key {ann.qkd_key_id})")
        return Ack(self.direction, new.spi, new.epoch, new.kcv)

    # ------------------------------------------------------------------ sender
    @property
    def blocked(self) -> str | None:
        """Why user traffic is refused now (fail closed), or None."""
        return self._blocked_reason

    def sender_sa(self, *, control_only: bool = False) -> SecurityAssociation:
        """The SA for the next frame, switching first when a rekey is due and possible.

        Raises KeyBufferEmpty when user traffic must stop (fail closed) or, for control
        frames too, when the hard limit is reached without a next key.
        """
        gate = self._gate
        if gate is not None:  # hot path: below every trigger, nothing to decide
            slot, iv_below, octets_below, time_below = gate
            if slot.sa.iv_counter.value < iv_below and slot.stats.octets < octets_below and (
                    time_below == math.inf or self.clock() < time_below):
                return slot.sa
        cur = self.current
        usage = self.usage(cur)
        reason = self.policy.due(usage, cur.extensions)
        if reason is None:
            self._blocked_reason = None
            self._gate = self._make_gate(cur)
            return cur.sa
        self._gate = None
        armed = self.slot_in(SlotState.ARMED)
        if armed is not None and armed.acked:
            self._switch_sender(cur, armed, reason)
            self._blocked_reason = None
            return armed.sa
        if self.policy.exhausted(usage):
            raise KeyBufferEmpty(f"{self.name} SA {cur.spi} reached its hard limit "
                                 f"({self.policy.max_invocations} invocations) and no next key "
                                 "is ready: refusing to protect more frames")
        if armed is not None:  # the announcement is on its way
            if not self._pending_noted:
                self._pending_noted = True
                self._event("rekey-pending", f"{reason} trigger; epoch {armed.epoch} unconfirmed")
            self._blocked_reason = None
            return cur.sa
        # no next key at all: the depletion policy decides
        policy = self.buffer.config.depletion if self.buffer is not None else \
            DepletionPolicy.FAIL_CLOSED
        if policy is DepletionPolicy.EXTEND and self._extend(cur, reason):
            self._blocked_reason = None
            return cur.sa
        why = (f"{self.name} rekey due ({reason}) and no next key: "
               f"depletion policy {policy.value} refuses user traffic")
        if self._blocked_reason is None:
            self._event("blocked", why)
        self._blocked_reason = why
        if not control_only:
            raise KeyBufferEmpty(why)
        return cur.sa

    def _make_gate(self, cur: Slot) -> tuple[Slot, int, float, float] | None:
        """Absolute values below which no trigger of ``cur`` can fire."""
        policy = self.policy
        scale = 1 + cur.extensions
        counter = cur.sa.iv_counter
        if cur.sa.arsn_counter.width or not counter.width:
            return None  # the slow path watches the ARSN too
        start = getattr(counter, "start", 1)
        limits = [policy.soft_invocations]
        if policy.after_frames is not None:
            limits.append(policy.after_frames * scale)
        if policy.iv_fraction is not None:
            limits.append(math.ceil(min(1.0, policy.iv_fraction * scale)
                                    * counter_max(counter.width)))
        octets = policy.after_octets * scale if policy.after_octets is not None else math.inf
        until = math.inf
        if policy.after_seconds is not None and cur.started_at is not None:
            until = cur.started_at + policy.after_seconds * scale
        return cur, start + min(limits), octets, until

    def _extend(self, cur: Slot, reason: str) -> bool:
        if self.buffer is None or cur.qkd_key_id is None:
            return False
        try:
            ext: Extension = self.buffer.extend(cur.qkd_key_id, Purpose.REKEY)
        except SdlsQkdError as exc:
            self._event("extend-refused", str(exc))
            return False
        cur.extensions += 1
        self._gate = None
        self._save(cur)
        self._event("extended", f"{reason} trigger: epoch {cur.epoch} extended "
                                f"({ext.count} of {ext.cap})")
        return True

    def _switch_sender(self, cur: Slot, armed: Slot, reason: str) -> None:
        self._gate = None
        now = self.clock()
        armed.sa.start()
        armed.move("switch-in")
        armed.started_at = now
        cur.move("switch-out-sender")
        self._destroy(cur)
        self._save(armed)
        self._save(cur)
        self._pending_noted = False
        self.history.append((armed.spi, armed.epoch, armed.qkd_key_id, armed.kcv))
        self._event("switched", f"{reason} trigger: epoch {cur.epoch} -> {armed.epoch} "
                                f"(SPI {cur.spi} -> {armed.spi}); old key destroyed")

    def sent(self, slot_sa: SecurityAssociation, octets: int) -> None:
        slot = self.slots[slot_sa.spi]
        slot.stats.frames += 1
        slot.stats.octets += octets
        self.frames_sent += 1

    # ------------------------------------------------------------------ receiver
    def before_receive(self, spi: int | None) -> Slot | None:
        """Start an ARMED SA tentatively when a frame names it; returns that slot."""
        if spi is None:
            return None
        slot = self.slots.get(spi)
        if slot is not None and slot.state is SlotState.ARMED:
            slot.sa.start()
            return slot
        return None

    def after_receive(self, tentative: Slot | None, spi: int | None, octets: int,
                      error: SdlsQkdError | None) -> None:
        """Book the outcome; promote a tentatively started SA that verified a frame.

        Only accepted frames count towards a grace window: forged or garbled frames cannot
        retire the old SA early.
        """
        target = self.slots.get(spi) if spi is not None else None
        if error is not None:
            if tentative is not None:
                tentative.sa.stop()  # back to KEYED: nothing changed
            if target is not None:
                target.stats.rejects[error.code] += 1
            return
        if target is None:
            return
        for slot in self.slots.values():
            if slot.state is SlotState.GRACE:
                slot.grace_frames += 1
        target.stats.frames += 1
        target.stats.octets += octets
        if tentative is not None:
            now = self.clock()
            old = self.current
            tentative.move("switch-in")
            tentative.started_at = now
            tentative.acked = True
            old.move("switch-out-receiver")
            old.grace_since = now
            old.grace_frames = 0
            self._save(tentative)
            self._save(old)
            self.history.append((tentative.spi, tentative.epoch, tentative.qkd_key_id,
                                 tentative.kcv))
            self._event("switched", f"peer switched: epoch {old.epoch} -> {tentative.epoch}; "
                                    f"epoch {old.epoch} in grace")

    def tick(self) -> None:
        """Retire a receiver's old SA when its grace window has passed."""
        slot = self.slot_in(SlotState.GRACE)
        if slot is None:
            return
        now = self.clock()
        gf, gs = self.policy.grace_frames, self.policy.grace_seconds
        since = slot.grace_since if slot.grace_since is not None else now
        if (gf is not None and slot.grace_frames >= gf) or (gs is not None and now - since >= gs):
            slot.move("retire")
            self._destroy(slot)
            self._save(slot)
            self._event("retired", f"epoch {slot.epoch} on SPI {slot.spi} stopped, expired, "
                                   "key destroyed")

    def epoch_of(self, spi: int) -> int | None:
        slot = self.slots.get(spi)
        return None if slot is None else slot.epoch
