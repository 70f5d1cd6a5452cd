"""In-memory state store: the reference semantics of :class:`~sdls_qkd.store.base.StateStore`.

Nothing survives the process; use it for tests, simulations and ground tools that keep no
durable state.  Every operation validates first and mutates afterwards, under one lock, so a
refused call changes nothing.  (Python cannot zero ``bytes``: wiping drops the last reference.)
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Collection, Sequence
from uuid import UUID

from sdls_qkd.errors import IllegalTransition, KeyAlreadyUsed, UnknownKey, UsageError
from sdls_qkd.store.base import (
    WIPING_STATES,
    KeyRecord,
    KeyState,
    NewKey,
    check_counter_name,
    check_spi,
    check_transition,
)

__all__ = ["MemoryStore"]


class MemoryStore:
    """A :class:`~sdls_qkd.store.base.StateStore` held in dictionaries."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._keys: dict[UUID, KeyRecord] = {}
        self._bindings: dict[UUID, bytes] = {}
        self._counters: dict[str, int] = {}
        self._sas: dict[int, bytes] = {}
        self._closed = False

    def __repr__(self) -> str:
        return f"MemoryStore(keys={len(self._keys)}, sas={len(self._sas)})"

    def _check_open(self) -> None:
        if self._closed:
            raise UsageError("the state store is closed")

    # ------------------------------------------------------------------ keys
    def add_keys(self, keys: Sequence[NewKey], *, at: float) -> None:
        with self._lock:
            self._check_open()
            seen: set[UUID] = set()
            for key in keys:
                if key.key_id in self._keys or key.key_id in seen:
                    raise KeyAlreadyUsed(f"key {key.key_id} was stored before; IDs are never reused")
                if not key.material:
                    raise UsageError(f"key {key.key_id} has no material")
                seen.add(key.key_id)
            for key in keys:
                self._keys[key.key_id] = KeyRecord(
                    key_id=key.key_id,
                    state=KeyState.AVAILABLE,
                    size_bits=len(key.material) * 8,
                    source=key.source,
                    created_at=key.created_at,
                    preplaced=key.preplaced,
                    purpose=None,
                    reservation=None,
                    extensions=0,
                    changed_at=at,
                    note="",
                    material=key.material,
                )

    def get_key(self, key_id: UUID) -> KeyRecord | None:
        with self._lock:
            self._check_open()
            return self._keys.get(key_id)

    def list_keys(
        self,
        states: Collection[KeyState] | None = None,
        *,
        preplaced: bool | None = None,
        created_at_or_before: float | None = None,
        limit: int | None = None,
    ) -> list[KeyRecord]:
        with self._lock:
            self._check_open()
            rows = [
                r
                for r in self._keys.values()
                if (states is None or r.state in states)
                and (preplaced is None or r.preplaced is preplaced)
                and (created_at_or_before is None or r.created_at <= created_at_or_before)
            ]
        rows.sort(key=lambda r: r.created_at)  # stable: ties stay in insertion order
        return rows if limit is None else rows[: max(limit, 0)]

    def count_keys(
        self, states: Collection[KeyState] | None = None, *, preplaced: bool | None = None
    ) -> int:
        with self._lock:
            self._check_open()
            return sum(
                1
                for r in self._keys.values()
                if (states is None or r.state in states)
                and (preplaced is None or r.preplaced is preplaced)
            )

    def _rows_in(
        self, key_ids: Sequence[UUID], expect: KeyState, reservation: UUID | None
    ) -> list[KeyRecord]:
        if len(set(key_ids)) != len(key_ids):
            raise UsageError("the same key ID is listed twice")
        rows = []
        for key_id in key_ids:
            row = self._keys.get(key_id)
            if row is None:
                raise UnknownKey(f"no key {key_id} in the store")
            if row.state is not expect:
                raise IllegalTransition(
                    f"key {key_id} is {row.state.value}, expected {expect.value}"
                )
            if reservation is not None and expect is KeyState.RESERVED and row.reservation != reservation:
                raise IllegalTransition(f"key {key_id} is reserved by another reservation")
            rows.append(row)
        return rows

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
        check_transition(expect, to)
        with self._lock:
            self._check_open()
            rows = self._rows_in(key_ids, expect, reservation)
            for row in rows:
                self._keys[row.key_id] = self._moved(row, to, at, purpose, reservation, note)

    @staticmethod
    def _moved(
        row: KeyRecord,
        to: KeyState,
        at: float,
        purpose: str | None,
        reservation: UUID | None,
        note: str,
    ) -> KeyRecord:
        if to is KeyState.RESERVED:
            return dataclasses.replace(
                row, state=to, purpose=purpose, reservation=reservation, changed_at=at, note=note
            )
        if to is KeyState.AVAILABLE:
            return dataclasses.replace(
                row, state=to, purpose=None, reservation=None, changed_at=at, note=note
            )
        assert to in WIPING_STATES
        return dataclasses.replace(row, state=to, changed_at=at, note=note, material=None)

    def release(self, key_ids: Sequence[UUID], *, reservation: UUID, at: float) -> list[bytes]:
        with self._lock:
            self._check_open()
            rows = self._rows_in(key_ids, KeyState.RESERVED, reservation)
            out = []
            for row in rows:
                assert row.material is not None
                out.append(row.material)
                self._keys[row.key_id] = self._moved(
                    row, KeyState.RELEASED, at, row.purpose, reservation, "committed"
                )
            return out

    def add_extension(self, key_id: UUID, *, cap: int, at: float) -> int | None:
        with self._lock:
            self._check_open()
            row = self._keys.get(key_id)
            if row is None:
                raise UnknownKey(f"no key {key_id} in the store")
            if row.state is not KeyState.RELEASED:
                raise IllegalTransition(
                    f"only a released key in use can be extended; key {key_id} is {row.state.value}"
                )
            if row.extensions >= cap:
                return None
            self._keys[key_id] = dataclasses.replace(
                row, extensions=row.extensions + 1, changed_at=at
            )
            return row.extensions + 1

    # ------------------------------------------------------------------ bindings
    def bind(self, key_id: UUID, context: bytes, *, at: float) -> None:
        with self._lock:
            self._check_open()
            if key_id in self._bindings:
                raise KeyAlreadyUsed(f"key {key_id} is already bound to a derivation context")
            self._bindings[key_id] = bytes(context)

    def binding(self, key_id: UUID) -> bytes | None:
        with self._lock:
            self._check_open()
            return self._bindings.get(key_id)

    # ------------------------------------------------------------------ counters
    def reserve_counter_block(self, name: str, upto: int) -> int:
        check_counter_name(name)
        if not isinstance(upto, int) or upto < 0:
            raise UsageError(f"counter {name}: value must be a non-negative int, got {upto!r}")
        with self._lock:
            self._check_open()
            previous = self._counters.get(name, 0)
            if upto < previous:
                raise UsageError(
                    f"counter {name} never moves backwards: stored {previous}, asked {upto}"
                )
            self._counters[name] = upto
            return previous

    def load_counter(self, name: str) -> int | None:
        check_counter_name(name)
        with self._lock:
            self._check_open()
            return self._counters.get(name)

    # ------------------------------------------------------------------ SA table
    def save_sa(self, spi: int, blob: bytes) -> None:
        check_spi(spi)
        with self._lock:
            self._check_open()
            self._sas[spi] = bytes(blob)

    def load_sas(self) -> dict[int, bytes]:
        with self._lock:
            self._check_open()
            return dict(self._sas)

    def delete_sa(self, spi: int) -> None:
        check_spi(spi)
        with self._lock:
            self._check_open()
            self._sas.pop(spi, None)

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        with self._lock:
            self._closed = True
            for key_id, row in list(self._keys.items()):
                self._keys[key_id] = dataclasses.replace(row, material=None)
