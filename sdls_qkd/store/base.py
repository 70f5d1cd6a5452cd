"""The state-store interface: durable keys, bindings, counters and SA tables.

A leaf module (imports only ``errors``): any layer may import the *interface*; the
implementations (:mod:`sdls_qkd.store.memory`, :mod:`sdls_qkd.store.sqlite`) are injected by
whoever composes the parts (a link end, the CLI, a test).  The sans-I/O core never imports a
store.

What a store keeps:

* **Keys** — one row per QKD (or pre-placed) key ID ever seen, in one of the
  :class:`KeyState` states.  Legal changes are the :data:`KEY_TRANSITIONS` table; a store
  refuses anything else (:class:`~sdls_qkd.errors.IllegalTransition`).  Rows are never deleted:
  a released or destroyed key keeps a tombstone (ID, no material) so the same ID is never
  accepted or served again, also after a restart.  Material is wiped in the same atomic step
  that makes a key ``RELEASED`` or ``DESTROYED``.
* **Bindings** — the one key-derivation context a key was bound to (second binding refused).
* **Counters** — monotonic named integers for "reserve ahead" IV/ARSN blocks and anti-replay
  positions (never move backwards, any size).
* **SAs** — opaque per-SPI blobs the link layer serialises.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable
from uuid import UUID

from sdls_qkd.errors import IllegalTransition, UsageError

__all__ = [
    "KeyState",
    "KEY_TRANSITIONS",
    "WIPING_STATES",
    "NewKey",
    "KeyRecord",
    "StateStore",
    "check_transition",
    "check_counter_name",
    "check_spi",
]


class KeyState(StrEnum):
    """Where a key stands in the key buffer (stored as these strings)."""

    #: in the buffer, material held, free to be reserved
    AVAILABLE = "available"
    #: set aside for one reservation (a purpose); material held, not yet handed out
    RESERVED = "reserved"
    #: committed: material handed out exactly once, then wiped from the store (terminal)
    RELEASED = "released"
    #: erased without being handed out: expired, orphaned by a restart, or erased (terminal)
    DESTROYED = "destroyed"


#: legal (from, to) transitions and what causes them
KEY_TRANSITIONS: dict[tuple[KeyState, KeyState], str] = {
    (KeyState.AVAILABLE, KeyState.RESERVED): "reserve",
    (KeyState.AVAILABLE, KeyState.DESTROYED): "expire or erase",
    (KeyState.RESERVED, KeyState.AVAILABLE): "roll back",
    (KeyState.RESERVED, KeyState.RELEASED): "commit (material handed out once)",
    (KeyState.RESERVED, KeyState.DESTROYED): "expire, erase, or orphaned by a restart",
}

#: entering one of these states wipes the material in the same atomic step
WIPING_STATES = frozenset({KeyState.RELEASED, KeyState.DESTROYED})


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key entering the store (state AVAILABLE)."""

    key_id: UUID
    material: bytes = field(repr=False)
    source: str
    created_at: float
    preplaced: bool = False


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One stored key row.  ``material`` is ``None`` once the key is released or destroyed."""

    key_id: UUID
    state: KeyState
    size_bits: int
    source: str
    created_at: float
    preplaced: bool
    purpose: str | None
    reservation: UUID | None
    extensions: int
    changed_at: float
    note: str
    material: bytes | None = field(default=None, repr=False)


def check_transition(expect: KeyState, to: KeyState) -> None:
    """Refuse a (from, to) pair that is not in :data:`KEY_TRANSITIONS`."""
    if (expect, to) not in KEY_TRANSITIONS:
        raise IllegalTransition(f"key state {expect.value} -> {to.value} is not a legal transition")


def check_counter_name(name: str) -> None:
    """Counter names are short printable strings (e.g. ``"iv/tc/spi=5"``)."""
    if not isinstance(name, str) or not 0 < len(name) <= 200 or not name.isprintable():
        raise UsageError(f"counter name must be 1..200 printable characters, got {name!r}")


def check_spi(spi: int) -> None:
    """An SDLS SPI is a 16-bit field."""
    if not isinstance(spi, int) or not 0 <= spi <= 0xFFFF:
        raise UsageError(f"SPI must be in 0..65535, got {spi!r}", field="spi")


@runtime_checkable
class StateStore(Protocol):
    """Durable state of one link end.  Every method is atomic and thread-safe.

    Errors: :class:`~sdls_qkd.errors.UnknownKey` for an ID never stored,
    :class:`~sdls_qkd.errors.IllegalTransition` when a key is not in the expected state (or the
    pair is not in :data:`KEY_TRANSITIONS`), :class:`~sdls_qkd.errors.KeyAlreadyUsed` for an ID
    stored before or a second binding, :class:`~sdls_qkd.errors.StateStoreError` subclasses
    when the durable state itself is broken.
    """

    # ------------------------------------------------------------------ keys
    def add_keys(self, keys: Sequence[NewKey], *, at: float) -> None:
        """Store new AVAILABLE keys, all or none; an ID seen before (any state) is refused."""
        ...

    def get_key(self, key_id: UUID) -> KeyRecord | None:
        """The row of ``key_id``, or ``None`` if never stored."""
        ...

    def list_keys(
        self,
        states: Collection[KeyState] | None = None,
        *,
        preplaced: bool | None = None,
        created_at_or_before: float | None = None,
        limit: int | None = None,
    ) -> list[KeyRecord]:
        """Rows matching every filter given (``None``: any): in ``states``, pre-placed or not,
        created at or before a time; oldest ``created_at`` first, ties in insertion order; at
        most ``limit`` rows."""
        ...

    def count_keys(
        self, states: Collection[KeyState] | None = None, *, preplaced: bool | None = None
    ) -> int:
        """How many rows :meth:`list_keys` would return with these filters."""
        ...

    def transition(
        self,
        key_ids: Sequence[UUID],
        *,
        expect: KeyState,
        to: KeyState,
        at: float,
        purpose: str | None = None,
        reservation: UUID | None = None,
        note: str = "",
    ) -> None:
        """Move all ``key_ids`` from ``expect`` to ``to`` (all or none).

        Moving to RESERVED records ``purpose`` and ``reservation``; moving out of RESERVED with
        a ``reservation`` given checks that it matches.  Entering RELEASED or DESTROYED wipes
        the material (and a file-backed store purges it from disk before returning).
        """
        ...

    def release(self, key_ids: Sequence[UUID], *, reservation: UUID, at: float) -> list[bytes]:
        """RESERVED (by ``reservation``) -> RELEASED for all keys, returning their material.

        The state change is durable and the material wiped *before* the material is returned:
        a crash at any point can lose a key but never release it twice.
        """
        ...

    def add_extension(self, key_id: UUID, *, cap: int, at: float) -> int | None:
        """Count one more use-extension of a RELEASED key; the new count, or ``None`` at cap."""
        ...

    # ------------------------------------------------------------------ bindings
    def bind(self, key_id: UUID, context: bytes, *, at: float) -> None:
        """Record that ``key_id`` is bound to ``context``; a second binding raises KeyAlreadyUsed."""
        ...

    def binding(self, key_id: UUID) -> bytes | None:
        """The context ``key_id`` is bound to, if any."""
        ...

    # ------------------------------------------------------------------ counters
    def reserve_counter_block(self, name: str, upto: int) -> int:
        """Durably raise counter ``name`` to ``upto``; returns the previous value (0 if new).

        Counters never move backwards: ``upto`` below the stored value raises
        :class:`~sdls_qkd.errors.UsageError` and changes nothing.
        """
        ...

    def load_counter(self, name: str) -> int | None:
        """The stored value of counter ``name``, or ``None`` if never reserved."""
        ...

    # ------------------------------------------------------------------ SA table
    def save_sa(self, spi: int, blob: bytes) -> None:
        """Store (replace) the serialised SA of ``spi``."""
        ...

    def load_sas(self) -> dict[int, bytes]:
        """Every stored SA blob by SPI."""
        ...

    def delete_sa(self, spi: int) -> None:
        """Forget the SA of ``spi`` (no error if absent)."""
        ...

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Release the underlying resources; the store is unusable afterwards."""
        ...
