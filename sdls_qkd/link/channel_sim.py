"""An in-memory lossy link for tests and simulations: loss, duplication, bounded reordering.

:class:`LossyChannel` carries frames one way.  Each frame sent is lost with probability
``loss``, otherwise delivered, plus (probability ``duplicate``) a second copy; every copy gets a
random delay of 0..``reorder_depth`` *send slots*, so no copy is displaced by more than
``reorder_depth`` positions from where it was sent (the bound the tests state).  Deterministic
for a given ``seed``.  Every delivered copy is a :class:`Delivery` carrying the index of the
frame as sent, so a test can attribute each loss.

:class:`QkdPairSim` plays the QKD link: it delivers the same fresh keys into both ends' key
buffers (what two KMEs fed by one QKD link do), at the pace the test chooses.
"""

from __future__ import annotations

import heapq
import os
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from sdls_qkd.errors import InvalidConfiguration
from sdls_qkd.keys.buffer import KeyBuffer
from sdls_qkd.keys.material import QkdKey

__all__ = ["Delivery", "ChannelStats", "LossyChannel", "QkdPairSim"]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One copy of a frame leaving the channel."""

    index: int
    frame: bytes
    duplicate: bool
    #: send slots between sending and delivery
    delay: int


@dataclass
class ChannelStats:
    sent: int = 0
    lost: int = 0
    duplicated: int = 0
    delivered: int = 0
    max_delay: int = 0
    lost_indices: set[int] = field(default_factory=set)


class LossyChannel:
    """One direction of a simulated link."""

    def __init__(self, *, loss: float = 0.0, duplicate: float = 0.0, reorder_depth: int = 0,
                 seed: int = 0) -> None:
        for name, p in (("loss", loss), ("duplicate", duplicate)):
            if not 0 <= p < 1:
                raise InvalidConfiguration(f"{name} probability must be in [0, 1), not {p}")
        if reorder_depth < 0:
            raise InvalidConfiguration("reorder_depth must be >= 0")
        self.loss = loss
        self.duplicate = duplicate
        self.reorder_depth = reorder_depth
        self._rng = random.Random(seed)
        self._heap: list[tuple[int, int, int, bytes, bool, int]] = []
        self._slot = 0
        self._tie = 0
        self.stats = ChannelStats()

    def _queue(self, index: int, frame: bytes, duplicate: bool) -> None:
        delay = self._rng.randint(0, self.reorder_depth) if self.reorder_depth else 0
        heapq.heappush(self._heap, (self._slot + delay, self._tie, index, frame, duplicate,
                                    delay))
        self._tie += 1

    def send(self, frame: bytes) -> list[Delivery]:
        """Send one frame; returns the copies that leave the channel in this send slot."""
        index = self.stats.sent
        self.stats.sent += 1
        if self._rng.random() < self.loss:
            self.stats.lost += 1
            self.stats.lost_indices.add(index)
        else:
            self._queue(index, frame, False)
            if self._rng.random() < self.duplicate:
                self.stats.duplicated += 1
                self._queue(index, frame, True)
        out = self._release(self._slot)
        self._slot += 1
        return out

    def _release(self, upto: int) -> list[Delivery]:
        out = []
        while self._heap and self._heap[0][0] <= upto:
            _, _, index, frame, dup, delay = heapq.heappop(self._heap)
            out.append(Delivery(index, frame, dup, delay))
            self.stats.max_delay = max(self.stats.max_delay, delay)
        self.stats.delivered += len(out)
        return out

    def flush(self) -> list[Delivery]:
        """Everything still in flight."""
        out = self._release(1 << 62)
        return out


class QkdPairSim:
    """Delivers identical QKD keys to both ends' key buffers."""

    def __init__(self, ground: KeyBuffer, space: KeyBuffer, *, key_bits: int = 256,
                 clock_s: float | None = None) -> None:
        self.ground = ground
        self.space = space
        self.key_bits = key_bits
        self.clock_s = clock_s
        self.delivered = 0

    def deliver(self, count: int) -> Sequence[QkdKey]:
        """``count`` fresh keys (random IDs and material) into both buffers."""
        keys = [QkdKey(uuid.uuid4(), os.urandom(self.key_bits // 8), source="qkd-sim",
                       **({"created_at": self.clock_s} if self.clock_s is not None else {}))
                for _ in range(count)]
        if keys:
            self.ground.add_keys(keys)
            self.space.add_keys(keys)
        self.delivered += len(keys)
        return keys
