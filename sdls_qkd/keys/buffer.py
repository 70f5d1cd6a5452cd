"""The QKD key buffer: the one interface through which the rest of the library gets keys.

Two matched ends hold the same keys under the same UUID key IDs: the **master** (ground) asks
its key fetcher for new keys (:meth:`KeyBuffer.refill`), picks which key serves which purpose
(:meth:`KeyBuffer.reserve`) and tells the peer the ID; the **slave** (space) fetches the
announced IDs (:meth:`KeyBuffer.sync`) and reserves exactly those (:meth:`KeyBuffer.reserve_ids`).

Life of a key (states and transitions: :data:`~sdls_qkd.store.base.KEY_TRANSITIONS`)::

    AVAILABLE --reserve--> RESERVED --commit--> RELEASED   (material handed out once, wiped)
        ^                     |
        +-----roll back-------+
    AVAILABLE / RESERVED --expire, erase, orphaned by a restart--> DESTROYED

Every state change is written to the injected :class:`~sdls_qkd.store.base.StateStore` before
it takes effect; :meth:`KeyBuffer.commit` gets the material from the store in the same atomic
step that marks it RELEASED and wipes it, so a key is released at most once, ever, also across
restarts and crashes.  Reservations left open by a crash are destroyed at the next start
(default) because their IDs may already have been announced to the peer.

Purposes draw from one pool of QKD keys, but each purpose may keep a *floor* that the others
cannot take (by default 4 keys kept for ``AUTH``), so authentication is never starved by rekeys
or one-time pads.  When a purpose finds no key, the :class:`DepletionPolicy` decides: fail
closed (default), extend the current key up to a hard cap, or fall back to pre-placed keys —
each non-default outcome is an explicit :class:`BufferEvent`, never a silent reuse.

Thread-safe: one lock around every operation; the key fetcher (network I/O) runs outside it and
event callbacks run after it is released.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal, Protocol, runtime_checkable
from uuid import UUID

from sdls_qkd.errors import (
    IllegalTransition,
    InvalidConfiguration,
    KeyAlreadyUsed,
    KeyBufferEmpty,
    KeyDestroyed,
    KmeProtocolError,
    SdlsQkdError,
    UnknownKey,
    UsageError,
)
from sdls_qkd.keys.material import QkdKey
from sdls_qkd.store.base import KEY_TRANSITIONS, KeyRecord, KeyState, NewKey, StateStore

__all__ = [
    "KeyFetcher",
    "Purpose",
    "DepletionPolicy",
    "BufferEventKind",
    "BufferEvent",
    "BufferConfig",
    "Reservation",
    "Extension",
    "Forecast",
    "BufferStatus",
    "KeyBuffer",
    "KeyState",
    "KEY_TRANSITIONS",
]

log = logging.getLogger(__name__)


@runtime_checkable
class KeyFetcher(Protocol):
    """Where a key buffer gets QKD keys (an ETSI GS QKD 014 client behind an adapter).

    ``fetch_new`` (master end) delivers up to ``count`` new keys of ``size_bits`` and so learns
    their IDs; ``fetch_by_ids`` (slave end) delivers the keys with exactly the IDs the master
    announced.  Failures are :class:`~sdls_qkd.errors.KmeError` subclasses.
    """

    def fetch_new(self, count: int, size_bits: int) -> list[QkdKey]:
        """Up to ``count`` fresh keys of ``size_bits`` bits each."""
        ...

    def fetch_by_ids(self, key_ids: Sequence[UUID]) -> list[QkdKey]:
        """The keys with these IDs (the peer's KME delivered them to the master)."""
        ...


class Purpose(StrEnum):
    """What a key is reserved for; purposes share one pool, each may keep a floor."""

    #: frame authentication / AEAD session keys (has a reserve by default)
    AUTH = "auth"
    #: over-the-air rekeying (OTAR) and SA rekeys
    REKEY = "rekey"
    #: one-time pad: consumed bit for bit, never extended
    OTP = "otp"


def _purpose(value: Purpose | str) -> Purpose:
    try:
        return Purpose(value)
    except ValueError:
        raise UsageError(f"unknown key purpose {value!r}; one of "
                         f"{', '.join(p.value for p in Purpose)}") from None


class DepletionPolicy(StrEnum):
    """What :meth:`KeyBuffer.reserve` does when a purpose finds no key."""

    #: raise :class:`~sdls_qkd.errors.KeyBufferEmpty` (the default)
    FAIL_CLOSED = "fail-closed"
    #: keep using the caller's current key, counted, up to ``max_extensions`` (never for OTP)
    EXTEND = "extend"
    #: serve pre-placed keys (loaded before launch on both ends)
    FALLBACK = "fallback"


class BufferEventKind(StrEnum):
    """Events delivered to :meth:`KeyBuffer.subscribe` callbacks."""

    #: available QKD keys fell below the low watermark (refill soon)
    LOW_WATERMARK_FALLING = "low-watermark-falling"
    #: available QKD keys rose back to the low watermark
    LOW_WATERMARK_RISING = "low-watermark-rising"
    #: available QKD keys reached the high watermark (stop fetching)
    HIGH_WATERMARK_RISING = "high-watermark-rising"
    #: available QKD keys fell below the high watermark
    HIGH_WATERMARK_FALLING = "high-watermark-falling"
    #: the last available QKD key was taken
    EMPTY = "empty"
    #: keys passed their TTL and were destroyed unused
    EXPIRED = "expired"
    #: depletion policy EXTEND: the current key's use was extended once more
    EXTENDED = "extended"
    #: depletion policy FALLBACK: pre-placed keys were reserved
    FALLBACK = "fallback"


@dataclass(frozen=True, slots=True)
class BufferEvent:
    """Something the operator (or a rekey policy) should know about."""

    kind: BufferEventKind
    #: available QKD keys (not counting pre-placed ones) after the change
    available: int
    at: float
    key_ids: tuple[UUID, ...] = ()
    detail: str = ""


@dataclass(frozen=True)
class BufferConfig:
    """Policy of one key buffer (both ends of a link should use the same)."""

    #: size of every QKD key fetched (bits, a multiple of 8)
    key_size_bits: int = 256
    #: watermarks on available QKD keys; events fire on each crossing
    low_watermark: int = 16
    high_watermark: int = 64
    #: keys each purpose keeps for itself that other purposes cannot take
    floors: Mapping[Purpose, int] = field(default_factory=lambda: {Purpose.AUTH: 4})
    #: QKD keys older than this (seconds since ``QkdKey.created_at``) are destroyed unused;
    #: ``None`` = no TTL.  Pre-placed keys are exempt.
    ttl_s: float | None = 86_400.0
    depletion: DepletionPolicy = DepletionPolicy.FAIL_CLOSED
    #: hard cap on extensions of one key under ``DepletionPolicy.EXTEND``
    max_extensions: int = 0
    #: the consumption rate is keys committed over this trailing window
    rate_window_s: float = 3_600.0
    #: keys asked of the fetcher per request in :meth:`KeyBuffer.refill`
    fetch_batch: int = 32
    #: what a restart does with reservations a crash left open
    orphaned: Literal["destroy", "rollback"] = "destroy"

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "depletion", DepletionPolicy(self.depletion))
        except ValueError:
            raise InvalidConfiguration(f"unknown depletion policy {self.depletion!r}") from None
        if self.key_size_bits <= 0 or self.key_size_bits % 8:
            raise InvalidConfiguration(
                f"key_size_bits must be a positive multiple of 8, got {self.key_size_bits}"
            )
        if not 0 <= self.low_watermark <= self.high_watermark:
            raise InvalidConfiguration(
                f"watermarks need 0 <= low <= high, got low {self.low_watermark} "
                f"high {self.high_watermark}"
            )
        try:
            floors = {Purpose(p): int(n) for p, n in self.floors.items()}
        except ValueError:
            raise InvalidConfiguration(f"floors name unknown purposes: {dict(self.floors)}") from None
        if any(n < 0 for n in floors.values()):
            raise InvalidConfiguration(f"floors must be >= 0, got {floors}")
        object.__setattr__(self, "floors", floors)
        if self.ttl_s is not None and not self.ttl_s > 0:
            raise InvalidConfiguration(f"ttl_s must be positive or None, got {self.ttl_s}")
        if self.max_extensions < 0:
            raise InvalidConfiguration(f"max_extensions must be >= 0, got {self.max_extensions}")
        if self.depletion is DepletionPolicy.EXTEND and self.max_extensions < 1:
            raise InvalidConfiguration("depletion policy EXTEND needs max_extensions >= 1")
        if not self.rate_window_s > 0:
            raise InvalidConfiguration(f"rate_window_s must be positive, got {self.rate_window_s}")
        if self.fetch_batch < 1:
            raise InvalidConfiguration(f"fetch_batch must be >= 1, got {self.fetch_batch}")
        if self.orphaned not in ("destroy", "rollback"):
            raise InvalidConfiguration(f"orphaned must be 'destroy' or 'rollback', got {self.orphaned!r}")


@dataclass(frozen=True, slots=True)
class Reservation:
    """Keys set aside for one purpose; finish with :meth:`KeyBuffer.commit` or ``rollback``."""

    reservation_id: UUID
    purpose: Purpose
    key_ids: tuple[UUID, ...]
    #: the keys are pre-placed ones (depletion policy FALLBACK)
    preplaced: bool


@dataclass(frozen=True, slots=True)
class Extension:
    """Depletion policy EXTEND: no new key; keep using ``key_id`` (use ``count`` of ``cap``)."""

    key_id: UUID
    purpose: Purpose
    count: int
    cap: int


@dataclass(frozen=True, slots=True)
class Forecast:
    """How long the available QKD keys last at the measured consumption rate."""

    now: float
    available: int
    #: keys committed per second over the trailing rate window
    rate_per_s: float
    #: seconds until empty at that rate (``math.inf`` when nothing is being consumed)
    time_to_empty_s: float
    next_pass_at: float | None
    #: keys the rate consumes between now and the next pass
    needed_until_pass: float | None
    #: whether the available keys last until the next pass
    lasts_until_pass: bool | None
    #: whole keys missing to reach the next pass (0 if they last)
    shortfall: int


@dataclass(frozen=True, slots=True)
class BufferStatus:
    """Counts of keys by state (QKD keys and pre-placed keys separately)."""

    available: int
    reserved: int
    released: int
    destroyed: int
    preplaced_available: int


class KeyBuffer:
    """A thread-safe QKD key buffer over an injected state store and key fetcher."""

    def __init__(
        self,
        store: StateStore,
        fetcher: KeyFetcher | None = None,
        config: BufferConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._fetcher = fetcher
        self.config = config if config is not None else BufferConfig()
        self._clock = clock
        self._lock = threading.RLock()
        self._refill_lock = threading.Lock()
        self._subscribers: list[Callable[[BufferEvent], None]] = []
        self._commits: deque[tuple[float, int]] = deque()
        #: IDs of reservations a crash left open, handled at this start
        self.recovered: tuple[UUID, ...] = self._recover()
        self._level = self._available_count()

    def __repr__(self) -> str:
        return f"KeyBuffer(available={self._level}, depletion={self.config.depletion.value})"

    # ------------------------------------------------------------------ events
    def subscribe(self, callback: Callable[[BufferEvent], None]) -> None:
        """Call ``callback(event)`` for every :class:`BufferEvent` (outside the buffer lock)."""
        with self._lock:
            self._subscribers.append(callback)

    def unsubscribe(self, callback: Callable[[BufferEvent], None]) -> None:
        """Stop calling ``callback``."""
        with self._lock:
            self._subscribers.remove(callback)

    @contextmanager
    def _op(self) -> Iterator[list[BufferEvent]]:
        """Run one operation under the lock; track watermarks; dispatch events afterwards."""
        events: list[BufferEvent] = []
        subscribers: list[Callable[[BufferEvent], None]] = []
        try:
            with self._lock:
                subscribers = list(self._subscribers)
                try:
                    yield events
                finally:
                    self._track_level(events)
        finally:  # also when the operation raised: an expiry before KeyBufferEmpty is news
            self._dispatch(events, subscribers)

    @staticmethod
    def _dispatch(
        events: list[BufferEvent], subscribers: list[Callable[[BufferEvent], None]]
    ) -> None:
        for event in events:
            log.info("key buffer: %s (%d available) %s", event.kind.value, event.available,
                     event.detail)
            for callback in subscribers:
                try:
                    callback(event)
                except Exception:  # a faulty subscriber must not break the key supply
                    log.exception("key buffer event callback failed")

    def _event(
        self, events: list[BufferEvent], kind: BufferEventKind, key_ids: Iterable[UUID] = (),
        detail: str = "",
    ) -> None:
        events.append(BufferEvent(kind, self._available_count(), self._clock(), tuple(key_ids),
                                  detail))

    def _track_level(self, events: list[BufferEvent]) -> None:
        before, now = self._level, self._available_count()
        self._level = now
        at = self._clock()
        marks = (
            (self.config.low_watermark, BufferEventKind.LOW_WATERMARK_FALLING,
             BufferEventKind.LOW_WATERMARK_RISING),
            (self.config.high_watermark, BufferEventKind.HIGH_WATERMARK_FALLING,
             BufferEventKind.HIGH_WATERMARK_RISING),
        )
        for mark, falling, rising in marks:
            if before >= mark > now:
                events.append(BufferEvent(falling, now, at, detail=f"below {mark}"))
            elif before < mark <= now:
                events.append(BufferEvent(rising, now, at, detail=f"reached {mark}"))
        if before > 0 and now == 0:
            events.append(BufferEvent(BufferEventKind.EMPTY, now, at))

    # ------------------------------------------------------------------ bookkeeping
    def _available(self, *, preplaced: bool = False, limit: int | None = None) -> list[KeyRecord]:
        return self._store.list_keys([KeyState.AVAILABLE], preplaced=preplaced, limit=limit)

    def _available_count(self, *, preplaced: bool = False) -> int:
        return self._store.count_keys([KeyState.AVAILABLE], preplaced=preplaced)

    def _recover(self) -> tuple[UUID, ...]:
        orphans = self._store.list_keys([KeyState.RESERVED])
        if not orphans:
            return ()
        ids = [r.key_id for r in orphans]
        to = KeyState.DESTROYED if self.config.orphaned == "destroy" else KeyState.AVAILABLE
        self._store.transition(ids, expect=KeyState.RESERVED, to=to, at=self._clock(),
                               note="orphaned by a restart")
        log.warning("key buffer: %d reservation(s) left open by a restart -> %s", len(ids), to.value)
        return tuple(ids)

    def _is_expired(self, row: KeyRecord, now: float) -> bool:
        ttl = self.config.ttl_s
        return ttl is not None and not row.preplaced and now - row.created_at >= ttl

    def _expire(self, events: list[BufferEvent]) -> list[UUID]:
        if self.config.ttl_s is None:
            return []
        now = self._clock()
        expired = [
            r.key_id
            for r in self._store.list_keys([KeyState.AVAILABLE], preplaced=False,
                                           created_at_or_before=now - self.config.ttl_s + 1e-6)
            if self._is_expired(r, now)
        ]
        if expired:
            self._store.transition(expired, expect=KeyState.AVAILABLE, to=KeyState.DESTROYED,
                                   at=now, note="expired")
            self._event(events, BufferEventKind.EXPIRED, expired,
                        f"{len(expired)} key(s) older than {self.config.ttl_s} s destroyed")
        return expired

    def _check_keys(
        self, keys: Sequence[QkdKey], what: str, error: type[SdlsQkdError] = KmeProtocolError
    ) -> None:
        """Fetcher answers that break the contract are KME faults; ``add_keys`` ones usage."""
        size = self.config.key_size_bits
        for key in keys:
            if not isinstance(key, QkdKey):
                raise error(f"{what}: expected QkdKey, got {type(key).__name__}")
            if key.size_bits != size:
                raise error(f"{what}: key {key.key_id} has {key.size_bits} bits, "
                            f"the buffer holds {size}-bit keys")
        if len({k.key_id for k in keys}) != len(keys):
            raise error(f"{what}: the same key ID was delivered twice")

    def _store_keys(self, keys: Sequence[QkdKey], *, preplaced: bool = False) -> list[UUID]:
        self._store.add_keys(
            [NewKey(k.key_id, k.material, k.source, k.created_at, preplaced) for k in keys],
            at=self._clock(),
        )
        return [k.key_id for k in keys]

    # ------------------------------------------------------------------ filling
    def add_keys(self, keys: Sequence[QkdKey]) -> list[UUID]:
        """Put keys delivered by other means into the buffer (IDs never seen before)."""
        self._check_keys(keys, "add_keys", UsageError)
        with self._op():
            return self._store_keys(keys)

    def load_preplaced(self, keys: Sequence[QkdKey]) -> list[UUID]:
        """Load pre-placed keys (the same list on both ends), served only by FALLBACK."""
        self._check_keys(keys, "load_preplaced", UsageError)
        with self._op():
            return self._store_keys(keys, preplaced=True)

    def refill(self) -> list[UUID]:
        """Master end: fetch new keys up to the high watermark; returns their IDs for the peer."""
        fetcher = self._require_fetcher()
        size = self.config.key_size_bits
        added: list[UUID] = []
        with self._refill_lock:
            with self._op() as events:
                self._expire(events)
                need = self.config.high_watermark - self._available_count()
            while need > 0:
                ask = min(need, self.config.fetch_batch)
                keys = fetcher.fetch_new(ask, size)  # network I/O: outside the buffer lock
                if len(keys) > ask:
                    raise KmeProtocolError(f"asked for {ask} keys, the fetcher delivered {len(keys)}")
                self._check_keys(keys, "fetch_new")
                if not keys:
                    break
                with self._op():
                    added += self._store_keys(keys)
                need -= len(keys)
        return added

    def sync(self, key_ids: Sequence[UUID]) -> list[UUID]:
        """Slave end: fetch the announced IDs not yet in the buffer; returns those fetched."""
        wanted = list(dict.fromkeys(key_ids))
        with self._lock:
            unknown = [k for k in wanted if self._store.get_key(k) is None]
        if not unknown:
            return []
        keys = self._require_fetcher().fetch_by_ids(unknown)  # outside the buffer lock
        self._check_keys(keys, "fetch_by_ids")
        got = {k.key_id for k in keys}
        if got != set(unknown) or len(keys) != len(unknown):
            raise KmeProtocolError(
                f"asked for {len(unknown)} keys by ID, the fetcher delivered {len(keys)} "
                f"({len(got - set(unknown))} unasked, {len(set(unknown) - got)} missing)"
            )
        with self._op():
            fresh = [k for k in keys if self._store.get_key(k.key_id) is None]  # raced sync
            return self._store_keys(fresh)

    def _require_fetcher(self) -> KeyFetcher:
        if self._fetcher is None:
            raise UsageError("this key buffer has no key fetcher")
        return self._fetcher

    # ------------------------------------------------------------------ reserving
    def _floor_of_others(self, purpose: Purpose) -> int:
        return sum(n for p, n in self.config.floors.items() if p is not purpose)

    def reserve(
        self, purpose: Purpose, count: int = 1, *, current: UUID | None = None
    ) -> Reservation | Extension:
        """Master end: set aside ``count`` of the oldest available keys for ``purpose``.

        If the pool (minus the floors other purposes keep) cannot serve, the depletion policy
        decides: :class:`~sdls_qkd.errors.KeyBufferEmpty`, an :class:`Extension` of
        ``current`` (the caller's key in use), or a :class:`Reservation` of pre-placed keys.
        """
        purpose = _purpose(purpose)
        if count < 1:
            raise UsageError(f"count must be >= 1, got {count}")
        with self._op() as events:
            self._expire(events)
            available = self._available_count()
            spare = available - self._floor_of_others(purpose)
            if count <= spare:
                pool = self._available(limit=count)
                return self._reserve_rows(pool, purpose, preplaced=False)
            why = (f"no {purpose.value} key: {available} available, "
                   f"{self._floor_of_others(purpose)} kept for other purposes, {count} asked")
            policy = self.config.depletion
            if policy is DepletionPolicy.EXTEND:
                if purpose is Purpose.OTP:
                    raise KeyBufferEmpty(f"{why}; a one-time pad is never extended")
                if current is None:
                    raise KeyBufferEmpty(f"{why}; policy extend needs the current key ID")
                return self._extend(events, current, purpose)
            if policy is DepletionPolicy.FALLBACK:
                left = self._available_count(preplaced=True)
                if left < count:
                    raise KeyBufferEmpty(f"{why}; {left} pre-placed keys left")
                res = self._reserve_rows(self._available(preplaced=True, limit=count), purpose,
                                         preplaced=True)
                self._event(events, BufferEventKind.FALLBACK, res.key_ids,
                            f"{why}; serving pre-placed keys ({left - count} left)")
                return res
            raise KeyBufferEmpty(why)

    def _reserve_rows(self, rows: Sequence[KeyRecord], purpose: Purpose, *,
                      preplaced: bool) -> Reservation:
        res = Reservation(uuid.uuid4(), purpose, tuple(r.key_id for r in rows), preplaced)
        self._store.transition(res.key_ids, expect=KeyState.AVAILABLE, to=KeyState.RESERVED,
                               at=self._clock(), purpose=purpose.value,
                               reservation=res.reservation_id, note="reserved")
        return res

    def extend(self, key_id: UUID, purpose: Purpose) -> Extension:
        """Count one more use-extension of ``key_id`` (policy EXTEND only; the slave's path)."""
        purpose = _purpose(purpose)
        if self.config.depletion is not DepletionPolicy.EXTEND:
            raise InvalidConfiguration(
                f"extending a key needs depletion policy extend, not {self.config.depletion.value}"
            )
        if purpose is Purpose.OTP:
            raise KeyBufferEmpty("a one-time pad is never extended")
        with self._op() as events:
            return self._extend(events, key_id, purpose)

    def _extend(self, events: list[BufferEvent], key_id: UUID, purpose: Purpose) -> Extension:
        cap = self.config.max_extensions
        row = self._store.get_key(key_id)
        if row is None:
            raise UnknownKey(f"cannot extend key {key_id}: not known to this buffer")
        if row.state is not KeyState.RELEASED:
            raise KeyBufferEmpty(f"cannot extend key {key_id}: it is {row.state.value}, not in use")
        count = self._store.add_extension(key_id, cap=cap, at=self._clock())
        if count is None:
            raise KeyBufferEmpty(f"key {key_id} was already extended {cap} times (cap {cap}); "
                                 "refusing further use")
        self._event(events, BufferEventKind.EXTENDED, (key_id,),
                    f"key in use extended ({count} of {cap})")
        return Extension(key_id, purpose, count, cap)

    def reserve_ids(self, key_ids: Sequence[UUID], purpose: Purpose) -> Reservation:
        """Slave end: reserve exactly the keys the master chose (fetching unknown IDs first)."""
        purpose = _purpose(purpose)
        ids = list(key_ids)
        if not ids or len(set(ids)) != len(ids):
            raise UsageError("reserve_ids needs at least one key ID and no ID twice")
        if self._fetcher is not None:
            self.sync(ids)
        with self._op() as events:
            self._expire(events)
            rows = []
            for key_id in ids:
                row = self._store.get_key(key_id)
                if row is None:
                    raise UnknownKey(f"key {key_id} is not in the buffer")
                self._check_servable(row)
                rows.append(row)
            preplaced = any(r.preplaced for r in rows)
            res = self._reserve_rows(rows, purpose, preplaced=preplaced)
            if preplaced:
                self._event(events, BufferEventKind.FALLBACK, res.key_ids,
                            "the peer chose pre-placed keys")
            return res

    @staticmethod
    def _check_servable(row: KeyRecord) -> None:
        if row.state is KeyState.AVAILABLE:
            return
        if row.state is KeyState.DESTROYED:
            raise KeyDestroyed(f"key {row.key_id} was destroyed ({row.note or 'erased'}); "
                               "it is never served")
        raise KeyAlreadyUsed(f"key {row.key_id} is {row.state.value}; a key is served once")

    # ------------------------------------------------------------------ finishing
    def commit(self, reservation: Reservation) -> tuple[QkdKey, ...]:
        """Release the reserved keys' material, exactly once (durably recorded first).

        A key that passed its TTL while reserved is destroyed instead, the rest of the
        reservation is rolled back, and :class:`~sdls_qkd.errors.KeyDestroyed` is raised.
        """
        with self._op() as events:
            now = self._clock()
            rows = self._reserved_rows(reservation)
            expired = [r.key_id for r in rows if self._is_expired(r, now)]
            if expired:
                self._store.transition(expired, expect=KeyState.RESERVED, to=KeyState.DESTROYED,
                                       at=now, reservation=reservation.reservation_id,
                                       note="expired")
                rest = [r.key_id for r in rows if r.key_id not in expired]
                if rest:
                    self._store.transition(rest, expect=KeyState.RESERVED, to=KeyState.AVAILABLE,
                                           at=now, reservation=reservation.reservation_id,
                                           note="rolled back")
                self._event(events, BufferEventKind.EXPIRED, expired, "expired while reserved")
                raise KeyDestroyed(f"{len(expired)} reserved key(s) expired before commit")
            materials = self._store.release(list(reservation.key_ids),
                                            reservation=reservation.reservation_id, at=now)
            self._commits.append((now, len(rows)))
            return tuple(
                QkdKey(r.key_id, m, source=r.source, created_at=r.created_at)
                for r, m in zip(rows, materials, strict=True)
            )

    def rollback(self, reservation: Reservation) -> None:
        """Return the reserved keys to the pool (they were never handed out)."""
        with self._op():
            self._reserved_rows(reservation)
            self._store.transition(list(reservation.key_ids), expect=KeyState.RESERVED,
                                   to=KeyState.AVAILABLE, at=self._clock(),
                                   reservation=reservation.reservation_id, note="rolled back")

    def _reserved_rows(self, reservation: Reservation) -> list[KeyRecord]:
        rows = []
        for key_id in reservation.key_ids:
            row = self._store.get_key(key_id)
            if row is None:
                raise UnknownKey(f"key {key_id} is not in the buffer")
            if row.state is not KeyState.RESERVED or row.reservation != reservation.reservation_id:
                raise IllegalTransition(
                    f"reservation {reservation.reservation_id} is no longer open "
                    f"(key {key_id} is {row.state.value})"
                )
            rows.append(row)
        return rows

    def destroy(self, key_ids: Sequence[UUID], *, note: str = "erased") -> None:
        """Erase unused keys (AVAILABLE or RESERVED), e.g. on suspected compromise."""
        with self._op():
            now = self._clock()
            for key_id in key_ids:
                row = self._store.get_key(key_id)
                if row is None:
                    raise UnknownKey(f"key {key_id} is not in the buffer")
                if row.state in (KeyState.AVAILABLE, KeyState.RESERVED):
                    self._store.transition([key_id], expect=row.state, to=KeyState.DESTROYED,
                                           at=now, note=note)

    def expire(self) -> list[UUID]:
        """Destroy available QKD keys past their TTL now; returns their IDs."""
        with self._op() as events:
            return self._expire(events)

    # ------------------------------------------------------------------ reporting
    def status(self) -> BufferStatus:
        """Counts of keys by state."""
        with self._op() as events:
            self._expire(events)

            def count(state: KeyState, preplaced: bool = False) -> int:
                return self._store.count_keys([state], preplaced=preplaced)

            return BufferStatus(
                available=count(KeyState.AVAILABLE),
                reserved=count(KeyState.RESERVED),
                released=count(KeyState.RELEASED),
                destroyed=count(KeyState.DESTROYED),
                preplaced_available=count(KeyState.AVAILABLE, preplaced=True),
            )

    def rate_per_s(self) -> float:
        """Keys committed per second (demand, pre-placed included) over ``rate_window_s``."""
        with self._lock:
            now = self._clock()
            window = self.config.rate_window_s
            while self._commits and self._commits[0][0] <= now - window:
                self._commits.popleft()
            return sum(n for _, n in self._commits) / window

    def forecast(self, next_pass_at: float | None = None) -> Forecast:
        """Time to empty at the measured rate, and whether the keys last to the next pass.

        ``next_pass_at`` is the (wall-clock, same clock as the buffer's) start of the next
        pass that can refill the buffer, as the caller's schedule knows it.
        """
        with self._op() as events:
            self._expire(events)
            available = self._available_count()
            now = self._clock()
        rate = self.rate_per_s()
        tte = available / rate if rate > 0 else math.inf
        if next_pass_at is None:
            return Forecast(now, available, rate, tte, None, None, None, 0)
        needed = rate * max(0.0, next_pass_at - now)
        shortfall = max(0, math.ceil(needed - available - 1e-9))
        return Forecast(now, available, rate, tte, next_pass_at, needed, needed <= available,
                        shortfall)
