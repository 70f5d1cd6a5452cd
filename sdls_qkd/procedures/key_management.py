"""Key management procedures (355.1-B-1 service group 00): data-field layouts and execution.

Layouts (all big-endian, "baseline" as in sdls-ep.md §3/§4):

=================  ===========================================================================
OTAR               Master Key ID (16) | IV (96) | N x [Key ID (16) | Key (256)] encrypted | MAC (128)
Activation etc.    N x Key ID (16)                        (Deactivation, Destruction alike)
Verification       N x [Key ID (16) | Challenge (128)]
  reply            N x [Key ID (16) | IV (96) | Encrypted challenge (128) | MAC (128)]
Inventory          First Key ID (16) | Last Key ID (16)
  reply            Number of keys (16) | N x [Key ID (16) | Key State (8)]
=================  ===========================================================================

OTAR and verification use AES-256-GCM without AAD (as CryptoLib); the OTAR ciphertext covers
the key blocks including their IDs and its tag is the MAC.

IVs: every GCM encryption here takes its IV from a :class:`GcmIvSequence` — a 32-bit fixed field
naming the encrypting end plus a 64-bit invocation counter (NIST SP 800-38D §8.2.1 deterministic
construction).  The counter never repeats: with a durable store it reserves blocks ahead and
resumes past the reservation after a restart.  Ground (OTAR) and board (verification replies)
use different fixed fields, so even the same key never sees the same IV from both ends.

Execution functions validate everything first and change the key ring only when the whole
command is valid (a rejected command changes nothing).
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sdls_qkd.errors import (
    CounterExhausted,
    IllegalTransition,
    InvalidConfiguration,
    InvalidKeyState,
    InvalidProcedure,
    MacVerificationFailure,
)
from sdls_qkd.procedures.keys import (
    SESSION_KEY_LENGTH,
    KeyEvent,
    KeyRing,
    KeyRole,
    KeyState,
)
from sdls_qkd.procedures.pdu import MAX_DATA_LENGTH

__all__ = [
    "IV_LENGTH",
    "MAC_LENGTH",
    "CHALLENGE_LENGTH",
    "KEY_BLOCK_LENGTH",
    "GROUND_IV_FIXED_FIELD",
    "ONBOARD_IV_FIXED_FIELD",
    "CounterStore",
    "GcmIvSequence",
    "OtarCommand",
    "KeyIdList",
    "KeyVerificationCommand",
    "KeyVerificationEntry",
    "KeyVerificationReply",
    "KeyInventoryCommand",
    "KeyInventoryReply",
    "execute_otar",
    "execute_key_transition",
    "execute_key_verification",
    "execute_key_inventory",
    "MAX_INVENTORY_RANGE",
]

IV_LENGTH: Final = 12
MAC_LENGTH: Final = 16
CHALLENGE_LENGTH: Final = 16
KEY_BLOCK_LENGTH: Final = 2 + SESSION_KEY_LENGTH
_OTAR_OVERHEAD: Final = 2 + IV_LENGTH + MAC_LENGTH
_VERIFY_BLOCK: Final = 2 + CHALLENGE_LENGTH
_VERIFY_REPLY_BLOCK: Final = 2 + IV_LENGTH + CHALLENGE_LENGTH + MAC_LENGTH
#: the inventory reply must fit one PDU: 2 + 3N octets <= 8191
MAX_INVENTORY_RANGE: Final = (MAX_DATA_LENGTH - 2) // 3

#: default fixed fields of the deterministic IVs (ASCII "GND0" / "OBC0")
GROUND_IV_FIXED_FIELD: Final = b"GND0"
ONBOARD_IV_FIXED_FIELD: Final = b"OBC0"


# --------------------------------------------------------------------------- IVs
class CounterStore(Protocol):
    """The part of :class:`sdls_qkd.store.base.StateStore` an IV sequence needs."""

    def reserve_counter_block(self, name: str, upto: int) -> int: ...

    def load_counter(self, name: str) -> int | None: ...


class GcmIvSequence:
    """96-bit GCM IVs: ``fixed_field`` (4 octets) || 64-bit counter that never repeats.

    With a store, values are reserved ``block`` at a time under ``name``; after a restart the
    sequence resumes at the reserved high-water mark, skipping the unused rest of the block, so
    no IV ever repeats.  Without a store the counter lives in memory and starts at a random
    32-bit epoch (``epoch << 32``): restarts then repeat IVs only if two epochs collide
    (probability 2^-32 per pair) — use a store on a real link end.
    """

    def __init__(self, fixed_field: bytes, *, store: CounterStore | None = None,
                 name: str = "ep-iv", block: int = 256) -> None:
        if len(fixed_field) != 4:
            raise InvalidConfiguration("the IV fixed field is 4 octets", field="fixed_field")
        if block < 1:
            raise InvalidConfiguration("block must be >= 1")
        self.fixed_field = bytes(fixed_field)
        self.name = f"{name}/{fixed_field.hex()}"
        self._store = store
        self._block = block
        if store is not None:
            start = store.load_counter(self.name) or 0
        else:
            # No durable counter: start in a random 2^32-IV epoch so that a restart does not
            # replay the previous run's IVs (production ends pass a store: never repeats).
            start = int.from_bytes(os.urandom(4), "big") << 32
        self._next = start
        self._reserved = start

    @property
    def next_counter(self) -> int:
        return self._next

    def next(self) -> bytes:
        """A fresh IV (never returned before by this sequence, also across restarts)."""
        if self._next > 0xFFFF_FFFF_FFFF_FFFF:
            raise CounterExhausted(f"IV sequence {self.name} exhausted")
        if self._store is not None and self._next >= self._reserved:
            upto = min(self._next + self._block, 1 << 64)
            self._store.reserve_counter_block(self.name, upto)
            self._reserved = upto
        value = self._next
        self._next += 1
        return self.fixed_field + value.to_bytes(8, "big")


# --------------------------------------------------------------------------- OTAR
@dataclass(frozen=True, slots=True)
class OtarCommand:
    """OTAR data field: master key ID, IV, the encrypted key blocks, MAC (GCM tag)."""

    master_key_id: int
    iv: bytes
    ciphertext: bytes
    mac: bytes

    def __post_init__(self) -> None:
        if len(self.iv) != IV_LENGTH or len(self.mac) != MAC_LENGTH:
            raise InvalidConfiguration("OTAR IV is 12 octets and MAC 16 octets")
        if not self.ciphertext or len(self.ciphertext) % KEY_BLOCK_LENGTH:
            raise InvalidConfiguration(f"OTAR ciphertext must be N x {KEY_BLOCK_LENGTH} octets")

    @property
    def key_count(self) -> int:
        return len(self.ciphertext) // KEY_BLOCK_LENGTH

    def pack(self) -> bytes:
        return self.master_key_id.to_bytes(2, "big") + self.iv + self.ciphertext + self.mac

    @classmethod
    def unpack(cls, data: bytes, *, strict: bool = True) -> OtarCommand:
        """Strict: exactly 30 + 34N octets, N >= 1.  Lenient (CryptoLib): N = (len-30) // 34 and
        octets after the MAC are ignored."""
        body = len(data) - _OTAR_OVERHEAD
        if body < KEY_BLOCK_LENGTH or (strict and body % KEY_BLOCK_LENGTH):
            raise InvalidProcedure(
                f"OTAR data field must be {_OTAR_OVERHEAD} + N x {KEY_BLOCK_LENGTH} octets "
                f"(N >= 1), got {len(data)}", field="length")
        n = body // KEY_BLOCK_LENGTH
        ct_end = 14 + n * KEY_BLOCK_LENGTH
        return cls(int.from_bytes(data[:2], "big"), bytes(data[2:14]), bytes(data[14:ct_end]),
                   bytes(data[ct_end:ct_end + MAC_LENGTH]))

    @classmethod
    def seal(cls, master_key_id: int, master_key: bytes, keys: Sequence[tuple[int, bytes]],
             iv: bytes) -> OtarCommand:
        """Ground side: wrap ``(key_id, material)`` pairs under the master key."""
        if not keys:
            raise InvalidConfiguration("OTAR needs at least one key")
        plain = bytearray()
        for key_id, material in keys:
            if len(material) != SESSION_KEY_LENGTH:
                raise InvalidConfiguration(f"OTAR keys are {SESSION_KEY_LENGTH} octets")
            plain += key_id.to_bytes(2, "big") + material
        sealed = AESGCM(master_key).encrypt(iv, bytes(plain), None)
        return cls(master_key_id, iv, sealed[:-MAC_LENGTH], sealed[-MAC_LENGTH:])

    def open(self, master_key: bytes) -> list[tuple[int, bytes]]:
        """Decrypt and authenticate; :class:`MacVerificationFailure` if the tag fails."""
        try:
            plain = AESGCM(master_key).decrypt(self.iv, self.ciphertext + self.mac, None)
        except InvalidTag:
            raise MacVerificationFailure(
                f"OTAR MAC does not verify under master key {self.master_key_id}",
                field="mac") from None
        return [(int.from_bytes(plain[i:i + 2], "big"), bytes(plain[i + 2:i + KEY_BLOCK_LENGTH]))
                for i in range(0, len(plain), KEY_BLOCK_LENGTH)]


# --------------------------------------------------------------------------- key ID lists
@dataclass(frozen=True, slots=True)
class KeyIdList:
    """Activation / Deactivation / Destruction data field: N x Key ID (16), N >= 1."""

    key_ids: tuple[int, ...]

    def pack(self) -> bytes:
        return b"".join(k.to_bytes(2, "big") for k in self.key_ids)

    @classmethod
    def unpack(cls, data: bytes, *, strict: bool = True) -> KeyIdList:
        """Strict: N >= 1, even length, no duplicates.  Lenient: N = len // 2 (may be 0)."""
        if strict and (not data or len(data) % 2):
            raise InvalidProcedure(f"key ID list must be N x 2 octets (N >= 1), got {len(data)}",
                                   field="length")
        ids = tuple(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data) - 1, 2))
        if strict and len(set(ids)) != len(ids):
            raise InvalidProcedure("key ID list names a key twice", field="key_id")
        return cls(ids)


# --------------------------------------------------------------------------- verification
@dataclass(frozen=True, slots=True)
class KeyVerificationCommand:
    """N x [Key ID (16), Challenge (128)], N >= 1."""

    challenges: tuple[tuple[int, bytes], ...]

    def pack(self) -> bytes:
        return b"".join(k.to_bytes(2, "big") + c for k, c in self.challenges)

    @classmethod
    def unpack(cls, data: bytes, *, strict: bool = True) -> KeyVerificationCommand:
        if (strict and len(data) % _VERIFY_BLOCK) or len(data) < _VERIFY_BLOCK:
            raise InvalidProcedure(f"key verification data must be N x {_VERIFY_BLOCK} octets "
                                   f"(N >= 1), got {len(data)}", field="length")
        n = len(data) // _VERIFY_BLOCK
        return cls(tuple((int.from_bytes(data[i:i + 2], "big"), bytes(data[i + 2:i + 18]))
                         for i in range(0, n * _VERIFY_BLOCK, _VERIFY_BLOCK)))


@dataclass(frozen=True, slots=True)
class KeyVerificationEntry:
    key_id: int
    iv: bytes
    ciphertext: bytes
    mac: bytes

    def pack(self) -> bytes:
        return self.key_id.to_bytes(2, "big") + self.iv + self.ciphertext + self.mac


@dataclass(frozen=True, slots=True)
class KeyVerificationReply:
    """N x [Key ID (16), IV (96), Encrypted Challenge (128), MAC (128)]."""

    entries: tuple[KeyVerificationEntry, ...]

    def pack(self) -> bytes:
        return b"".join(e.pack() for e in self.entries)

    @classmethod
    def unpack(cls, data: bytes) -> KeyVerificationReply:
        if not data or len(data) % _VERIFY_REPLY_BLOCK:
            raise InvalidProcedure(f"key verification reply must be N x {_VERIFY_REPLY_BLOCK} "
                                   f"octets, got {len(data)}", field="length")
        out = []
        for i in range(0, len(data), _VERIFY_REPLY_BLOCK):
            b = data[i:i + _VERIFY_REPLY_BLOCK]
            out.append(KeyVerificationEntry(int.from_bytes(b[:2], "big"), bytes(b[2:14]),
                                            bytes(b[14:30]), bytes(b[30:46])))
        return cls(tuple(out))

    def check(self, command: KeyVerificationCommand,
              key_of: Callable[[int], bytes]) -> dict[int, bool]:
        """Ground side: True per key whose reply decrypts under our copy to our challenge."""
        if [e.key_id for e in self.entries] != [k for k, _ in command.challenges]:
            raise InvalidProcedure("verification reply does not answer the command's key IDs",
                                   field="key_id")
        result: dict[int, bool] = {}
        for entry, (_, challenge) in zip(self.entries, command.challenges, strict=True):
            try:
                plain = AESGCM(key_of(entry.key_id)).decrypt(entry.iv, entry.ciphertext
                                                             + entry.mac, None)
                ok = hmac.compare_digest(plain, challenge)
            except InvalidTag:
                ok = False
            result[entry.key_id] = result.get(entry.key_id, True) and ok
        return result


# --------------------------------------------------------------------------- inventory
@dataclass(frozen=True, slots=True)
class KeyInventoryCommand:
    first: int
    last: int

    def pack(self) -> bytes:
        return self.first.to_bytes(2, "big") + self.last.to_bytes(2, "big")

    @classmethod
    def unpack(cls, data: bytes, *, strict: bool = True) -> KeyInventoryCommand:
        if len(data) != 4 and (strict or len(data) < 4):
            raise InvalidProcedure(f"key inventory data must be 4 octets, got {len(data)}",
                                   field="length")
        first, last = int.from_bytes(data[:2], "big"), int.from_bytes(data[2:4], "big")
        if first > last:
            raise InvalidProcedure(f"inventory range {first}..{last} is empty (first > last)",
                                   field="last_key_id", offset=2)
        if not strict and last - first + 1 > MAX_INVENTORY_RANGE:
            raise InvalidProcedure(f"inventory range {first}..{last} spans more than "
                                   f"{MAX_INVENTORY_RANGE} IDs (the reply would not fit a PDU)",
                                   field="last_key_id", offset=2)
        return cls(first, last)


@dataclass(frozen=True, slots=True)
class KeyInventoryReply:
    entries: tuple[tuple[int, KeyState], ...]

    def pack(self) -> bytes:
        return len(self.entries).to_bytes(2, "big") + b"".join(
            k.to_bytes(2, "big") + bytes((s,)) for k, s in self.entries)

    @classmethod
    def unpack(cls, data: bytes) -> KeyInventoryReply:
        if len(data) < 2:
            raise InvalidProcedure("key inventory reply needs 2 octets", field="length")
        n = int.from_bytes(data[:2], "big")
        if len(data) != 2 + 3 * n:
            raise InvalidProcedure(f"key inventory reply of {n} keys needs {2 + 3 * n} octets, "
                                   f"got {len(data)}", field="length")
        out = []
        for i in range(2, len(data), 3):
            try:
                state = KeyState(data[i + 2])
            except ValueError:
                raise InvalidProcedure(f"key state {data[i + 2]} is not defined",
                                       field="key_state", offset=i + 2) from None
            out.append((int.from_bytes(data[i:i + 2], "big"), state))
        return cls(tuple(out))


# --------------------------------------------------------------------------- execution
def execute_otar(ring: KeyRing, cmd: OtarCommand, *, strict: bool = True) -> list[int]:
    """Unwrap and store the uploaded keys in Pre-activation; returns their IDs.

    Checks, all before any change: the master key exists, is a master key and is Active
    (:class:`InvalidKeyState` otherwise); the MAC verifies; every uploaded ID is a session-key ID
    whose slot is free; no ID twice.  Lenient mode (CryptoLib) skips the master-range and
    free-slot checks and overwrites.
    """
    mk = ring.get(cmd.master_key_id)
    if strict and ring.role(cmd.master_key_id) is not KeyRole.MASTER:
        raise InvalidProcedure(f"key {cmd.master_key_id} is not a master key", field="key_id")
    if mk.state is not KeyState.ACTIVE:
        raise InvalidKeyState(f"master key {cmd.master_key_id} is {mk.state.name}, not ACTIVE",
                              field="key_id")
    blocks = cmd.open(ring.material(cmd.master_key_id))
    ids = [k for k, _ in blocks]
    if len(set(ids)) != len(ids):
        raise InvalidProcedure("OTAR uploads the same key ID twice", field="key_id")
    for key_id, _ in blocks:
        if ring.role(key_id) is KeyRole.MASTER:
            raise InvalidProcedure(f"OTAR cannot upload master key ID {key_id}", field="key_id")
        if strict and not ring.slot_free(key_id):
            raise IllegalTransition(f"key {key_id} is {ring.state(key_id).name}: OTAR only "
                                    f"fills a free (absent or destroyed) slot", field="key_id")
    for key_id, material in blocks:
        if not strict and key_id in ring and not ring.slot_free(key_id):
            ring.force_state(key_id, KeyState.DESTROYED)
        ring.upload(key_id, material)
    return ids


def execute_key_transition(ring: KeyRing, key_ids: Iterable[int], event: KeyEvent, *,
                           in_use: Callable[[int], str | None] = lambda _k: None) -> None:
    """Activate / deactivate / destroy every listed key, all or none.

    Refused (nothing changes): an unknown ID (:class:`InvalidProcedure`), a master key
    (its state is not changed over the link), a transition outside the table
    (:class:`IllegalTransition`), or deactivating / destroying a key that ``in_use`` reports
    as bound to a keyed or operational SA.
    """
    ids = list(key_ids)
    for key_id in ids:
        ring.get(key_id)
        if ring.role(key_id) is KeyRole.MASTER:
            raise InvalidProcedure(f"master key {key_id} cannot change state over the link",
                                   field="key_id")
        ring.next_state(key_id, event)
        if event is not KeyEvent.ACTIVATE:
            user = in_use(key_id)
            if user is not None:
                raise IllegalTransition(f"key {key_id} is in use by {user}: expire that SA first",
                                        field="key_id")
    for key_id in ids:
        ring.transition(key_id, event)


def execute_key_verification(ring: KeyRing, cmd: KeyVerificationCommand,
                             iv_source: Callable[[int], bytes], *,
                             strict: bool = True) -> KeyVerificationReply:
    """Encrypt each challenge under the addressed key, one fresh IV per key.

    Strict: the key must hold material (Pre-activation, Active or Deactivated; a key is
    verified before it is activated).  ``iv_source(i)`` gives the IV for entry ``i``.
    """
    keys = []
    for key_id, _ in cmd.challenges:
        entry = ring.get(key_id)
        if strict:
            keys.append(ring.material(key_id))
        else:
            keys.append(entry.material if entry.material is not None else bytes(32))
    out = []
    for i, ((key_id, challenge), key) in enumerate(zip(cmd.challenges, keys, strict=True)):
        iv = iv_source(i)
        sealed = AESGCM(key).encrypt(iv, challenge, None)
        out.append(KeyVerificationEntry(key_id, iv, sealed[:-MAC_LENGTH], sealed[-MAC_LENGTH:]))
    return KeyVerificationReply(tuple(out))


def execute_key_inventory(ring: KeyRing, cmd: KeyInventoryCommand, *,
                          strict: bool = True) -> KeyInventoryReply:
    """Strict: every existing key with ``first <= id <= last``, nothing outside the range.
    Lenient (CryptoLib): every ID of the range, absent ones reported as state 0."""
    if strict:
        ids = ring.ids_in_range(cmd.first, cmd.last)
        if len(ids) > MAX_INVENTORY_RANGE:
            raise InvalidProcedure(f"{len(ids)} keys in {cmd.first}..{cmd.last}: more than one "
                                   f"reply holds ({MAX_INVENTORY_RANGE}); narrow the range",
                                   field="last_key_id", offset=2)
        return KeyInventoryReply(tuple((k, ring.state(k)) for k in ids))
    states = ring.states()
    return KeyInventoryReply(tuple((k, states.get(k, KeyState.PREACTIVE))
                                   for k in range(cmd.first, cmd.last + 1)))
