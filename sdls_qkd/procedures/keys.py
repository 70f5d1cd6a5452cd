"""The SDLS key ring: 16-bit key IDs, master vs session keys, key states as a transition table.

Key states (CCSDS 355.1-B-1 §3.3, CryptoLib codes; the enum is :class:`sdls_qkd.security.sa.KeyState`):
Pre-activation 0 -> Active 1 -> Deactivated 2 -> Destroyed 3, plus Corrupted 4.  :data:`KEY_TRANSITIONS` is the whole state
machine; :meth:`KeyRing.transition` refuses anything not in it with
:class:`~sdls_qkd.errors.IllegalTransition`.  A destroyed key's material is erased at once.

Master keys (key-encryption keys for OTAR) and session keys (traffic keys) live in disjoint ID
ranges (``[mission choice]``; CryptoLib: IDs 0..127 are master keys).  A master key can never be
bound to an SA, never be the target of an OTAR upload, and its state is not changed by the
key-management procedures (master keys are installed and retired outside the EP link).

Settled ``[UNCERTAIN]``: Corrupted -> Destroyed is allowed (a corrupted key must be erasable);
nothing else leaves Corrupted.  Any live state may become Corrupted (self-test / integrity
failure).  OTAR writes only into a free slot (absent or Destroyed), never over a live key.

Each live key is an :class:`~sdls_qkd.security.sa.SdlsKey`, the very object an SA holds after
Rekey SA: deactivating a key in the ring is seen at once by the engine's key-state check.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Final

from sdls_qkd.errors import IllegalTransition, InvalidConfiguration, InvalidProcedure
from sdls_qkd.security.sa import KeyState, SdlsKey

__all__ = [
    "KeyState",
    "KeyEvent",
    "KeyRole",
    "KEY_TRANSITIONS",
    "KEY_ID_MAX",
    "SESSION_KEY_LENGTH",
    "KeyEntry",
    "KeyRing",
]

KEY_ID_MAX: Final = 0xFFFF
#: AES-256 keys (the 352.0-B-2 baseline); OTAR blocks carry exactly this much
SESSION_KEY_LENGTH: Final = 32


class KeyEvent(Enum):
    """What moves a key between states."""

    ACTIVATE = "activate"  # Key Activation procedure
    DEACTIVATE = "deactivate"  # Key Deactivation procedure
    DESTROY = "destroy"  # Key Destruction procedure
    CORRUPT = "corrupt"  # integrity failure found on board


class KeyRole(Enum):
    MASTER = "master"
    SESSION = "session"


#: (state, event) -> next state.  Anything absent is illegal.
KEY_TRANSITIONS: Final[Mapping[tuple[KeyState, KeyEvent], KeyState]] = {
    (KeyState.PREACTIVE, KeyEvent.ACTIVATE): KeyState.ACTIVE,
    (KeyState.ACTIVE, KeyEvent.DEACTIVATE): KeyState.DEACTIVATED,
    (KeyState.DEACTIVATED, KeyEvent.DESTROY): KeyState.DESTROYED,
    (KeyState.CORRUPTED, KeyEvent.DESTROY): KeyState.DESTROYED,
    (KeyState.PREACTIVE, KeyEvent.CORRUPT): KeyState.CORRUPTED,
    (KeyState.ACTIVE, KeyEvent.CORRUPT): KeyState.CORRUPTED,
    (KeyState.DEACTIVATED, KeyEvent.CORRUPT): KeyState.CORRUPTED,
}

#: states whose material may be read for cryptography
_MATERIAL_STATES: Final = frozenset({KeyState.PREACTIVE, KeyState.ACTIVE,
                                     KeyState.DEACTIVATED})


@dataclass(slots=True)
class KeyEntry:
    """One slot of the ring: the :class:`SdlsKey` (``None`` once destroyed: material erased)."""

    key_id: int
    key: SdlsKey | None = field(repr=False)

    @property
    def state(self) -> KeyState:
        return KeyState.DESTROYED if self.key is None else self.key.state

    @property
    def material(self) -> bytes | None:
        return None if self.key is None else self.key.secret()

    def set_state(self, state: KeyState) -> None:
        if self.key is None:
            if state is not KeyState.DESTROYED:
                raise IllegalTransition(f"key {self.key_id} is destroyed")
            return
        self.key.state = state
        if state is KeyState.DESTROYED:
            self.key = None  # drop the material (the SdlsKey object held nowhere else)

    def fingerprint(self) -> bytes:
        """A non-secret digest for state comparison (not a key check value)."""
        h = hashlib.sha256(b"sdls-qkd key ring entry")
        h.update(self.key_id.to_bytes(2, "big") + bytes((self.state,)))
        h.update(self.material or b"")
        return h.digest()


class KeyRing:
    """Key ID -> :class:`KeyEntry`, with the master-key ID range and the transition table.

    ``master_key_ids`` is the (inclusive) ID range reserved for master keys.
    """

    def __init__(self, *, master_key_ids: range = range(0, 128)) -> None:
        if master_key_ids.step != 1 or master_key_ids.start < 0 or master_key_ids.stop > 0x10000:
            raise InvalidConfiguration("master_key_ids must be a contiguous range within 0..65535")
        self.master_key_ids = master_key_ids
        self._entries: dict[int, KeyEntry] = {}

    # ------------------------------------------------------------------ queries
    def role(self, key_id: int) -> KeyRole:
        return KeyRole.MASTER if key_id in self.master_key_ids else KeyRole.SESSION

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._entries

    def __iter__(self) -> Iterator[KeyEntry]:
        return iter(sorted(self._entries.values(), key=lambda e: e.key_id))

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key_id: int) -> KeyEntry:
        """The entry, or :class:`InvalidProcedure` naming the unknown key ID."""
        try:
            return self._entries[key_id]
        except KeyError:
            raise InvalidProcedure(f"unknown key ID {key_id}", field="key_id") from None

    def state(self, key_id: int) -> KeyState:
        return self.get(key_id).state

    def sdls_key(self, key_id: int) -> SdlsKey:
        """The live key object (what an SA holds after Rekey SA)."""
        entry = self.get(key_id)
        if entry.key is None:
            raise IllegalTransition(f"key {key_id} is destroyed", field="key_id")
        return entry.key

    def material(self, key_id: int) -> bytes:
        """The key octets of a key whose state still holds material."""
        entry = self.get(key_id)
        if entry.state not in _MATERIAL_STATES or entry.material is None:
            raise IllegalTransition(f"key {key_id} is {entry.state.name}: no usable material",
                                    field="key_id")
        return entry.material

    def ids_in_range(self, first: int, last: int) -> list[int]:
        """Existing key IDs in ``first..last`` (inclusive), ascending."""
        return sorted(k for k in self._entries if first <= k <= last)

    # ------------------------------------------------------------------ changes
    def install(self, key_id: int, material: bytes, state: KeyState = KeyState.PREACTIVE,
                ) -> None:
        """Pre-load a key (configuration, not a procedure).  Overwrites nothing live."""
        self._check_id(key_id)
        if not isinstance(material, bytes) or len(material) not in (16, 32):
            raise InvalidConfiguration(f"key {key_id} must be 16 or 32 octets")
        current = self._entries.get(key_id)
        if current is not None and current.state is not KeyState.DESTROYED:
            raise InvalidConfiguration(f"key {key_id} already exists ({current.state.name})")
        state = KeyState(state)
        self._entries[key_id] = KeyEntry(
            key_id, None if state is KeyState.DESTROYED else SdlsKey(material, key_id=key_id,
                                                                       state=state))

    def slot_free(self, key_id: int) -> bool:
        entry = self._entries.get(key_id)
        return entry is None or entry.state is KeyState.DESTROYED

    def upload(self, key_id: int, material: bytes) -> None:
        """Store an OTAR-uploaded session key in Pre-activation (the slot must be free)."""
        if self.role(key_id) is KeyRole.MASTER:
            raise InvalidProcedure(f"key {key_id} is a master key ID: OTAR uploads session keys "
                                   f"only", field="key_id")
        if not self.slot_free(key_id):
            raise IllegalTransition(f"key {key_id} is {self._entries[key_id].state.name}: OTAR "
                                    f"only fills a free (absent or destroyed) slot",
                                    field="key_id")
        if len(material) != SESSION_KEY_LENGTH:
            raise InvalidProcedure(f"uploaded key must be {SESSION_KEY_LENGTH} octets")
        self._entries[key_id] = KeyEntry(key_id, SdlsKey(bytes(material), key_id=key_id,
                                                         state=KeyState.PREACTIVE))

    def next_state(self, key_id: int, event: KeyEvent) -> KeyState:
        """The state ``event`` would lead to, or :class:`IllegalTransition` (no change)."""
        entry = self.get(key_id)
        try:
            return KEY_TRANSITIONS[(entry.state, event)]
        except KeyError:
            raise IllegalTransition(f"key {key_id} cannot {event.value} from "
                                    f"{entry.state.name}", field="key_id") from None

    def transition(self, key_id: int, event: KeyEvent) -> KeyState:
        """Apply one table transition; destroying erases the material."""
        new = self.next_state(key_id, event)
        self._entries[key_id].set_state(new)
        return new

    def force_state(self, key_id: int, state: KeyState) -> None:
        """Set a state outside the table (CryptoLib-compatible mode and test set-ups only)."""
        self.get(key_id).set_state(KeyState(state))

    # ------------------------------------------------------------------ state capture
    def snapshot(self) -> bytes:
        """A digest of every entry (ID, state, material): equal iff the rings are equal."""
        h = hashlib.sha256()
        for entry in self:
            h.update(entry.fingerprint())
        return h.digest()

    def states(self) -> dict[int, KeyState]:
        return {e.key_id: e.state for e in self}

    def same_material(self, key_id: int, other: bytes) -> bool:
        """Constant-time comparison of a key's material with ``other``."""
        return hmac.compare_digest(self.material(key_id), other)

    def _check_id(self, key_id: int) -> None:
        if not isinstance(key_id, int) or not 0 <= key_id <= KEY_ID_MAX:
            raise InvalidConfiguration(f"key ID must be 0..65535, not {key_id!r}")
