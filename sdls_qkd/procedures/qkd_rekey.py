"""QKD-native rekeying: a mission-defined EP procedure that installs a QKD key by its ID.

No key material crosses the link.  The ground announces the ETSI GS QKD 014 key ID (a UUID) of a
key both ends can fetch from their own QKD key buffer, and the 16-bit SDLS key ID it will have in
the key ring; both ends prove they hold the same octets with key check values (KCVs) before the
key is ever used.  After that the standard EP flow applies (Key Activation, Stop SA, Expire SA,
Rekey SA, Start SA), with the key-state and SA-state tables enforced as for OTAR'd keys.

PDUs (user flag 1, service group 00 key management):

=================  =====  ========================================================================
QKD Rekey          0x41   SDLS Key ID (16) | QKD Key ID (128, UUID octets, RFC 4122 order) |
                          Ground KCV (64)
  reply            0xC1   SDLS Key ID (16) | On-board KCV (64)
QKD Key Check      0x42   SDLS Key ID (16) | Challenge (128)
  reply            0xC2   SDLS Key ID (16) | Response (128)
=================  =====  ========================================================================

``KCV = HMAC-SHA-256(key, label || SDLS Key ID (16) || QKD Key ID (128))[:8]`` with the label
``b"SDLS-QKD KCV ground"`` for the ground's and ``b"SDLS-QKD KCV onboard"`` for the board's: the
board's reply is not an echo, it proves possession independently.  ``Response =
HMAC-SHA-256(key, b"SDLS-QKD key check" || SDLS Key ID || Challenge)[:16]`` re-confirms a key
already in the ring (e.g. right before Start SA).  HMAC keeps the check off the GCM IV space of
the key, and the 64-bit KCV leaks nothing usable about a 256-bit key.

On board, a QKD Rekey is refused (nothing changes, nothing fetched) unless the SDLS key ID is a
session-key ID with a free slot and the pair (UUID, key ID) agrees with the persistent map; a KCV
mismatch refuses it after the fetch (the fetched key is dropped: fail closed).

The map between QKD key IDs and SDLS key IDs (:class:`QkdKeyIdMap`) lives in the state store's
monotonic counters: an SDLS key ID, once given to a QKD key, names that key forever (IDs are
allocated upwards and never reused, so a stale command can never address a newer key).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Final, Protocol
from uuid import UUID

from sdls_qkd.errors import (
    CounterExhausted,
    InvalidConfiguration,
    InvalidProcedure,
    KeySupplyError,
    MacVerificationFailure,
)
from sdls_qkd.keys.material import QkdKey
from sdls_qkd.procedures.keys import SESSION_KEY_LENGTH, KeyRing, KeyRole

__all__ = [
    "KCV_LENGTH",
    "GROUND_LABEL",
    "ONBOARD_LABEL",
    "CHECK_LABEL",
    "key_check_value",
    "check_response",
    "QkdRekeyCommand",
    "QkdRekeyReply",
    "QkdKeyCheckCommand",
    "QkdKeyCheckReply",
    "QkdKeySource",
    "QkdKeyIdMap",
    "execute_qkd_rekey",
    "execute_qkd_key_check",
    "BufferKeySource",
    "take_rekey_key",
]

KCV_LENGTH: Final = 8
GROUND_LABEL: Final = b"SDLS-QKD KCV ground"
ONBOARD_LABEL: Final = b"SDLS-QKD KCV onboard"
CHECK_LABEL: Final = b"SDLS-QKD key check"


def key_check_value(material: bytes, label: bytes, key_id: int, qkd_key_id: UUID) -> bytes:
    """Truncated HMAC-SHA-256 of a fixed label binding the SDLS and QKD key IDs."""
    msg = label + key_id.to_bytes(2, "big") + qkd_key_id.bytes
    return hmac.new(material, msg, hashlib.sha256).digest()[:KCV_LENGTH]


def check_response(material: bytes, key_id: int, challenge: bytes) -> bytes:
    return hmac.new(material, CHECK_LABEL + key_id.to_bytes(2, "big") + challenge,
                    hashlib.sha256).digest()[:16]


@dataclass(frozen=True, slots=True)
class QkdRekeyCommand:
    key_id: int
    qkd_key_id: UUID
    kcv: bytes

    def pack(self) -> bytes:
        return self.key_id.to_bytes(2, "big") + self.qkd_key_id.bytes + self.kcv

    @classmethod
    def unpack(cls, data: bytes) -> QkdRekeyCommand:
        if len(data) != 2 + 16 + KCV_LENGTH:
            raise InvalidProcedure(f"QKD Rekey data must be 26 octets, got {len(data)}",
                                   field="length")
        return cls(int.from_bytes(data[:2], "big"), UUID(bytes=bytes(data[2:18])),
                   bytes(data[18:]))


@dataclass(frozen=True, slots=True)
class QkdRekeyReply:
    key_id: int
    kcv: bytes

    def pack(self) -> bytes:
        return self.key_id.to_bytes(2, "big") + self.kcv

    @classmethod
    def unpack(cls, data: bytes) -> QkdRekeyReply:
        if len(data) != 2 + KCV_LENGTH:
            raise InvalidProcedure(f"QKD Rekey reply must be 10 octets, got {len(data)}",
                                   field="length")
        return cls(int.from_bytes(data[:2], "big"), bytes(data[2:]))


@dataclass(frozen=True, slots=True)
class QkdKeyCheckCommand:
    key_id: int
    challenge: bytes

    def pack(self) -> bytes:
        return self.key_id.to_bytes(2, "big") + self.challenge

    @classmethod
    def unpack(cls, data: bytes) -> QkdKeyCheckCommand:
        if len(data) != 18:
            raise InvalidProcedure(f"QKD Key Check data must be 18 octets, got {len(data)}",
                                   field="length")
        return cls(int.from_bytes(data[:2], "big"), bytes(data[2:]))


@dataclass(frozen=True, slots=True)
class QkdKeyCheckReply:
    key_id: int
    response: bytes

    def pack(self) -> bytes:
        return self.key_id.to_bytes(2, "big") + self.response

    @classmethod
    def unpack(cls, data: bytes) -> QkdKeyCheckReply:
        if len(data) != 18:
            raise InvalidProcedure(f"QKD Key Check reply must be 18 octets, got {len(data)}",
                                   field="length")
        return cls(int.from_bytes(data[:2], "big"), bytes(data[2:]))


class QkdKeySource(Protocol):
    """Where an end fetches a QKD key by its ID (its own key buffer / KME client)."""

    def fetch(self, key_id: UUID) -> QkdKey:
        """The key with this ID, handed out once; KeySupplyError subclasses when it cannot."""
        ...


class CounterStore(Protocol):
    def reserve_counter_block(self, name: str, upto: int) -> int: ...

    def load_counter(self, name: str) -> int | None: ...


class QkdKeyIdMap:
    """Persistent one-to-one map QKD key ID (UUID) <-> SDLS key ID, through store counters.

    Counters (monotonic, never rewritten): ``{name}/next`` the next index to allocate,
    ``{name}/uuid={uuid}`` = SDLS key ID + 1 and ``{name}/kid={key_id}`` = UUID + 1.  Without a
    store the map lives in memory.  ``id_range`` is where allocated IDs come from (session IDs).
    """

    def __init__(self, store: CounterStore | None = None, *,
                 id_range: range = range(0x8000, 0x10000), name: str = "qkd-key-map") -> None:
        if id_range.step != 1 or id_range.start < 0 or id_range.stop > 0x10000 or not id_range:
            raise InvalidConfiguration("id_range must be a non-empty contiguous part of 0..65535")
        self._store = store
        self.id_range = id_range
        self.name = name
        self._mem: dict[str, int] = {}

    def _load(self, key: str) -> int | None:
        full = f"{self.name}/{key}"
        if self._store is None:
            return self._mem.get(full)
        return self._store.load_counter(full)

    def _save(self, key: str, value: int) -> None:
        full = f"{self.name}/{key}"
        if self._store is None:
            self._mem[full] = max(value, self._mem.get(full, 0))
        else:
            self._store.reserve_counter_block(full, value)

    def key_id_for(self, qkd_key_id: UUID) -> int | None:
        value = self._load(f"uuid={qkd_key_id}")
        return None if not value else value - 1

    def uuid_for(self, key_id: int) -> UUID | None:
        value = self._load(f"kid={key_id}")
        return None if not value else UUID(int=value - 1)

    def check(self, qkd_key_id: UUID, key_id: int) -> None:
        """Refuse a pair that contradicts the map (either side already paired elsewhere)."""
        known = self.key_id_for(qkd_key_id)
        if known is not None and known != key_id:
            raise InvalidProcedure(f"QKD key {qkd_key_id} is already SDLS key {known}",
                                   field="qkd_key_id")
        owner = self.uuid_for(key_id)
        if owner is not None and owner != qkd_key_id:
            raise InvalidProcedure(f"SDLS key ID {key_id} already names QKD key {owner}: "
                                   f"IDs are never reused", field="key_id")

    def record(self, qkd_key_id: UUID, key_id: int) -> None:
        """Store the pair (board side: the ground allocated ``key_id``)."""
        self.check(qkd_key_id, key_id)
        self._save(f"uuid={qkd_key_id}", key_id + 1)
        self._save(f"kid={key_id}", qkd_key_id.int + 1)
        nxt = self._load("next") or self.id_range.start
        if self.id_range.start <= key_id < self.id_range.stop and key_id >= nxt:
            self._save("next", key_id + 1)

    def assign(self, qkd_key_id: UUID) -> int:
        """Ground side: the SDLS key ID of this QKD key, allocating the next free one once."""
        known = self.key_id_for(qkd_key_id)
        if known is not None:
            return known
        nxt = self._load("next") or self.id_range.start
        if nxt >= self.id_range.stop:
            raise CounterExhausted(f"no SDLS key IDs left in {self.id_range.start}.."
                                   f"{self.id_range.stop - 1} for QKD keys")
        self._save("next", nxt + 1)  # reserve first: a crash loses an ID, never reuses one
        self._save(f"uuid={qkd_key_id}", nxt + 1)
        self._save(f"kid={nxt}", qkd_key_id.int + 1)
        return nxt


def execute_qkd_rekey(ring: KeyRing, cmd: QkdRekeyCommand, source: QkdKeySource,
                      id_map: QkdKeyIdMap) -> QkdRekeyReply:
    """On board: fetch, check and install (Pre-activation) the announced QKD key."""
    if ring.role(cmd.key_id) is KeyRole.MASTER:
        raise InvalidProcedure(f"key {cmd.key_id} is a master key ID: QKD keys are session keys",
                               field="key_id")
    if not ring.slot_free(cmd.key_id):
        raise InvalidProcedure(f"key slot {cmd.key_id} is in use ({ring.state(cmd.key_id).name})",
                               field="key_id")
    id_map.check(cmd.qkd_key_id, cmd.key_id)
    qkd_key = source.fetch(cmd.qkd_key_id)
    material = qkd_key.material
    if len(material) != SESSION_KEY_LENGTH:
        raise KeySupplyError(f"QKD key {cmd.qkd_key_id} has {len(material)} octets, SDLS session "
                             f"keys need {SESSION_KEY_LENGTH}")
    expected = key_check_value(material, GROUND_LABEL, cmd.key_id, cmd.qkd_key_id)
    if not hmac.compare_digest(expected, cmd.kcv):
        raise MacVerificationFailure(f"key check value mismatch for QKD key {cmd.qkd_key_id}: "
                                     f"the two ends hold different keys", field="kcv")
    id_map.record(cmd.qkd_key_id, cmd.key_id)  # durable first; the upload cannot fail now
    ring.upload(cmd.key_id, material)
    return QkdRekeyReply(cmd.key_id, key_check_value(material, ONBOARD_LABEL, cmd.key_id,
                                                     cmd.qkd_key_id))


def execute_qkd_key_check(ring: KeyRing, cmd: QkdKeyCheckCommand) -> QkdKeyCheckReply:
    return QkdKeyCheckReply(cmd.key_id, check_response(ring.material(cmd.key_id), cmd.key_id,
                                                       cmd.challenge))


class BufferKeySource:
    """:class:`QkdKeySource` over a :class:`sdls_qkd.keys.buffer.KeyBuffer` (the slave end):
    reserve exactly the announced ID for rekeying and commit it (material handed out once)."""

    def __init__(self, buffer: _Buffer, purpose: str = "rekey") -> None:
        self.buffer = buffer
        self.purpose = purpose

    def fetch(self, key_id: UUID) -> QkdKey:
        reservation = self.buffer.reserve_ids([key_id], self.purpose)
        (key,) = self.buffer.commit(reservation)
        return key


def take_rekey_key(buffer: _Buffer, purpose: str = "rekey") -> QkdKey:
    """Ground (master end): reserve and commit the next QKD key for a rekey."""
    reservation = buffer.reserve(purpose)
    if not hasattr(reservation, "reservation_id"):
        raise KeySupplyError("the key buffer offered an extension of the current key; a QKD "
                             "rekey needs a fresh key")
    (key,) = buffer.commit(reservation)
    return key


class _Buffer(Protocol):
    """The part of KeyBuffer used here (kept structural: the core does not import key supply)."""

    def reserve_ids(self, key_ids: list[UUID], purpose: str) -> object: ...

    def reserve(self, purpose: str) -> object: ...

    def commit(self, reservation: object) -> tuple[QkdKey, ...]: ...
