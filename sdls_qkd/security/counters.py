"""The counter seam: how an SA's IV and ARSN advance.

An SA never does ``self.iv += 1`` itself.  It asks a :class:`CounterSource` for the value to use
(``next``), and tells it the value that is now stored once a frame was protected or accepted
(``commit``).  Nothing changes between the two, so a rejected frame leaves the counter untouched.

The default :class:`MemoryCounter` holds the value in memory.  A durable store implements the same
small protocol and may *reserve* blocks of values ahead (write "up to N" to disk, hand out values
from memory, write again when the block runs out): after a crash it resumes past the reserved block,
so no IV is ever used twice under a key.  This module does no I/O.

Counters are unsigned integers of a fixed width in octets.  A counter at its maximum never wraps:
``next`` raises :class:`~sdls_qkd.errors.CounterExhausted` (the SA must be rekeyed).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from sdls_qkd.errors import CounterExhausted, InvalidConfiguration

__all__ = ["CounterSource", "MemoryCounter", "counter_max"]


def counter_max(width: int) -> int:
    """Largest value of a counter of ``width`` octets."""
    return (1 << (8 * width)) - 1


@runtime_checkable
class CounterSource(Protocol):
    """One monotonic counter of ``width`` octets (an IV or an ARSN)."""

    @property
    def width(self) -> int:
        """Octets of the counter (0: the SA has no such counter)."""
        ...

    @property
    def value(self) -> int:
        """The stored value: sender, the value the next frame uses; receiver, the last accepted."""
        ...

    def next(self) -> int:
        """The value the sender uses for its next frame (the stored one), without committing.

        Raises CounterExhausted when using it would leave no successor (stored value at its
        maximum): the counter never wraps.
        """
        ...

    def commit(self, value: int) -> None:
        """Store ``value`` (sender: used value + 1; receiver: accepted value)."""
        ...


class MemoryCounter:
    """In-memory :class:`CounterSource` (the default)."""

    __slots__ = ("value", "_width", "_max", "name")

    def __init__(self, width: int, value: int = 0, *, name: str = "counter") -> None:
        if not isinstance(width, int) or not 0 <= width <= 32:
            raise InvalidConfiguration(f"{name} width must be 0..32 octets, not {width!r}",
                                       field=name)
        self._width = width
        self._max = counter_max(width)
        self.name = name
        if not isinstance(value, int) or not 0 <= value <= self._max:
            raise InvalidConfiguration(f"{name} value does not fit {width} octets", field=name)
        #: the stored value (a plain attribute: read on every frame; write through commit())
        self.value = value

    @property
    def width(self) -> int:
        return self._width

    @property
    def maximum(self) -> int:
        return self._max

    def next(self) -> int:
        value = self.value
        if value >= self._max:
            raise CounterExhausted(
                f"{self.name} is at its maximum ({self._width}-octet counter): rekey the SA",
                field=self.name)
        return value

    def commit(self, value: int) -> None:
        if not 0 <= value <= self._max:
            raise CounterExhausted(f"{self.name} value does not fit {self._width} octets",
                                   field=self.name)
        self.value = value

    def __repr__(self) -> str:
        return f"MemoryCounter(width={self._width}, value={self.value:#x})"
