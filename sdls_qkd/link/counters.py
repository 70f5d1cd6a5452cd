"""Durable counters for the counter seam of :mod:`sdls_qkd.security.counters`.

Two :class:`~sdls_qkd.security.counters.CounterSource` implementations backed by a
:class:`~sdls_qkd.store.base.StateStore`.  Both write to the store only once per *block* of
values, never per frame, and both keep one invariant that survives a crash at any instant:

* :class:`ReservedCounter` (sender IV / ARSN): every value ever handed out by ``next()`` is below
  the durably stored *bound*.  The bound is raised (``reserve_counter_block``, a synchronous
  commit) *before* the first value of a new block is handed out.  After a crash the counter
  resumes at the stored bound, so no value is used twice under one key; the cost is up to one
  block of skipped values per crash.
* :class:`ReplayGuardCounter` (receiver anti-replay position): every value ever accepted
  (``commit``) is at or below the durably stored bound; the bound is raised synchronously before
  a value above it is accepted.  After a crash the receiver's position jumps to the stored bound,
  so every frame accepted before the crash is a replay afterwards.  The cost: frames the sender
  emitted between the last accepted value and the bound (at most one block) are rejected after a
  receiver restart.

The stored value of both is that bound (exclusive for the sender: "values below may be used";
inclusive for the receiver: "values up to it may have been accepted").  Store counters never move
backwards, so a stale writer cannot lower a bound either.

Blocks grow geometrically within one run, from ``first_block`` (default 8) to ``block``: a
process that crashes soon after starting skips only a few values.  This matters for liveness:
SDLS anti-replay accepts a counter at most ``window`` above the last accepted one, so a sender
that restarts again and again while none of its frames gets through moves away from its
receiver by the skipped values each time; with small first blocks that takes many barren
restarts instead of two.  (The link configuration keeps ``window >= counter_block``.)
"""

from __future__ import annotations

from typing import Final

from sdls_qkd.errors import CounterExhausted, InvalidConfiguration, UsageError
from sdls_qkd.security.counters import counter_max
from sdls_qkd.store.base import StateStore

__all__ = ["DEFAULT_BLOCK", "FIRST_BLOCK", "ReservedCounter", "ReplayGuardCounter",
           "counter_name"]

#: values reserved per store write once a run is going (a crash skips at most this many)
DEFAULT_BLOCK: Final = 4096
#: the first reservation of a run; each next one doubles, up to the block
FIRST_BLOCK: Final = 8


def counter_name(kind: str, direction: str, spi: int, epoch: int) -> str:
    """The store name of one SA epoch's counter, e.g. ``"iv/uplink/spi=1/epoch=3"``."""
    return f"{kind}/{direction}/spi={spi}/epoch={epoch}"


def _check(width: int, block: int, start: int, name: str) -> int:
    if not isinstance(width, int) or not 1 <= width <= 32:
        raise InvalidConfiguration(f"{name}: width must be 1..32 octets, not {width!r}",
                                   field="width")
    if not isinstance(block, int) or isinstance(block, bool) or block < 1:
        raise InvalidConfiguration(f"{name}: block must be an integer >= 1, not {block!r}",
                                   field="block")
    top = counter_max(width)
    if not isinstance(start, int) or not 0 <= start <= top:
        raise InvalidConfiguration(f"{name}: start does not fit {width} octets", field="start")
    return top


class _DurableCounter:
    """What both durable counters share: the store, the width, the value and its bound.

    On opening, ``value`` starts at the bound stored by an earlier run (or at ``start``), and
    the step of the next store write starts at ``first_block`` and doubles up to ``block``.
    """

    __slots__ = ("_store", "name", "_width", "_max", "_block", "_value", "_bound", "start",
                 "resumed", "writes", "_step")

    def __init__(self, store: StateStore, name: str, width: int, *, block: int, start: int,
                 first_block: int) -> None:
        self._max = _check(width, block, start, name)
        self._store = store
        self.name = name
        self._width = width
        self._block = block
        self._step = max(1, min(first_block, block))
        stored = store.load_counter(name)
        #: the first value of this counter's life (for invocation counts)
        self.start = start
        #: True when an earlier run stored a bound (we resume from it)
        self.resumed = stored is not None
        self._bound = start if stored is None else max(stored, start)
        self._value = self._bound
        #: store writes done by this object (for reports and tests)
        self.writes = 0

    @property
    def width(self) -> int:
        return self._width

    @property
    def value(self) -> int:
        return self._value

    def _raise_bound(self, bound: int) -> None:
        """Store ``bound`` durably before any value below it is used or accepted."""
        self._store.reserve_counter_block(self.name, bound)
        self._bound = bound
        self._step = min(self._step * 2, self._block)
        self.writes += 1


class ReservedCounter(_DurableCounter):
    """Sender counter that reserves values ahead in the store (a :class:`CounterSource`).

    ``value`` is the value the next frame uses; ``next()`` raises
    :class:`~sdls_qkd.errors.CounterExhausted` at the maximum (no wrap) and, when the value
    reaches the reserved bound, first raises the bound in the store (by ``first_block``, then
    doubling up to ``block``).
    """

    __slots__ = ()

    def __init__(self, store: StateStore, name: str, width: int, *, block: int = DEFAULT_BLOCK,
                 start: int = 1, first_block: int = FIRST_BLOCK) -> None:
        super().__init__(store, name, width, block=block, start=start, first_block=first_block)

    @property
    def maximum(self) -> int:
        return self._max

    @property
    def reserved_until(self) -> int:
        """Values below this may be used without another store write."""
        return self._bound

    def next(self) -> int:
        value = self._value
        if value >= self._max:
            raise CounterExhausted(
                f"{self.name} is at its maximum ({self._width}-octet counter): rekey the SA",
                field=self.name)
        if value >= self._bound:
            self._raise_bound(min(value + self._step, self._max))  # durable before use
        return value

    def commit(self, value: int) -> None:
        if not isinstance(value, int) or not 0 <= value <= self._max:
            raise CounterExhausted(f"{self.name} value does not fit {self._width} octets",
                                   field=self.name)
        if value < self._value:
            raise UsageError(f"{self.name} never moves backwards (at {self._value}, asked "
                             f"{value}): an IV would be used twice", field=self.name)
        self._value = value

    def __repr__(self) -> str:
        return (f"ReservedCounter({self.name!r}, value={self._value}, "
                f"reserved_until={self._bound})")


class ReplayGuardCounter(_DurableCounter):
    """Receiver anti-replay position that survives crashes (a :class:`CounterSource`).

    ``value`` is the last accepted counter (the engine accepts ``value < r <= value + window``).
    ``commit(r)`` with ``r`` above the durable bound first stores ``r + step - 1`` as the new
    bound (``step`` from ``first_block`` doubling up to ``block``); on restart ``value`` starts
    at the stored bound.
    """

    __slots__ = ()

    def __init__(self, store: StateStore, name: str, width: int, *, block: int = DEFAULT_BLOCK,
                 start: int = 0, first_block: int = FIRST_BLOCK) -> None:
        super().__init__(store, name, width, block=block, start=start, first_block=first_block)

    @property
    def persisted_bound(self) -> int:
        return self._bound

    def next(self) -> int:
        """Receivers do not emit values; kept for the protocol (returns the stored value)."""
        if self._value >= self._max:
            raise CounterExhausted(f"{self.name} is at its maximum: rekey the SA",
                                   field=self.name)
        return self._value

    def commit(self, value: int) -> None:
        if not isinstance(value, int) or not 0 <= value <= self._max:
            raise CounterExhausted(f"{self.name} value does not fit {self._width} octets",
                                   field=self.name)
        if value < self._value:
            raise UsageError(f"{self.name}: the anti-replay position never moves backwards "
                             f"(at {self._value}, asked {value})", field=self.name)
        if value > self._bound:
            self._raise_bound(min(value + self._step - 1, self._max))  # durable before accepting
        self._value = value

    def __repr__(self) -> str:
        return f"ReplayGuardCounter({self.name!r}, value={self._value}, bound={self._bound})"
