"""Pluggable key-material sources for the KME simulator.

A KME delivers keys that a QKD link distilled.  The simulator does not care how: it asks a
:class:`KeySource` for bits.  :class:`RandomKeySource` stands in for a QKD link with
``os.urandom`` (optionally rate-limited like a real link); the BB84 satellite-pass emulator
implements the same protocol with keys that follow an orbit's key rate.

A source is shared by the two KMEs of a pair (both ends of a QKD link hold the same stream), so
implementations must be thread-safe.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from sdls_qkd.errors import UsageError

__all__ = ["KeySource", "RandomKeySource", "octets_for_bits"]


def octets_for_bits(n_bits: int) -> int:
    """Octets needed to carry ``n_bits`` bits (the last octet may be partly used)."""
    return (n_bits + 7) // 8


@runtime_checkable
class KeySource(Protocol):
    """Where a KME's key material comes from.

    ``take(n_bits)`` removes ``n_bits`` of secret bits from the source and returns them as
    ``octets_for_bits(n_bits)`` octets (unused low-order bits of the last octet are zero), or
    ``None`` if that much material is not available now: then nothing is removed and the KME
    answers 503 (or shows a smaller ``stored_key_count``).  ``take`` is all-or-nothing.

    ``available_bits()`` is how many bits ``take`` could deliver right now.
    """

    def take(self, n_bits: int) -> bytes | None:
        """Remove and return ``n_bits`` bits, or ``None`` when not available (nothing removed)."""
        ...

    def available_bits(self) -> int:
        """Bits that could be taken right now."""
        ...


class RandomKeySource:
    """Key material from ``os.urandom``: a stand-in for a QKD link.

    ``capacity_bits`` bounds the store (like a KME's key storage).  With ``rate_bps=None`` the
    store is always full (the link is infinitely fast); with a rate the store refills at
    ``rate_bps`` bits per second up to the capacity (a token bucket), starting from
    ``initial_bits`` (default: full).
    """

    def __init__(
        self,
        *,
        capacity_bits: int = 1 << 24,
        rate_bps: float | None = None,
        initial_bits: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if capacity_bits <= 0:
            raise UsageError(f"capacity_bits must be positive, got {capacity_bits}")
        if rate_bps is not None and rate_bps <= 0:
            raise UsageError(f"rate_bps must be positive or None, got {rate_bps}")
        start = capacity_bits if initial_bits is None else initial_bits
        if not 0 <= start <= capacity_bits:
            raise UsageError(f"initial_bits must be in 0..{capacity_bits}, got {start}")
        self._capacity = capacity_bits
        self._rate = rate_bps
        self._clock = clock
        self._level = float(start)
        self._stamp = clock()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RandomKeySource(capacity_bits={self._capacity}, rate_bps={self._rate})"

    def _refill(self) -> None:
        if self._rate is None:
            self._level = float(self._capacity)
            return
        now = self._clock()
        self._level = min(float(self._capacity), self._level + (now - self._stamp) * self._rate)
        self._stamp = now

    def available_bits(self) -> int:
        with self._lock:
            self._refill()
            return int(self._level)

    def take(self, n_bits: int) -> bytes | None:
        if n_bits <= 0:
            raise UsageError(f"n_bits must be positive, got {n_bits}")
        with self._lock:
            self._refill()
            if n_bits > self._level:
                return None
            self._level -= n_bits
        material = bytearray(os.urandom(octets_for_bits(n_bits)))
        spare = -n_bits % 8
        if spare:
            material[-1] &= (0xFF << spare) & 0xFF
        return bytes(material)
