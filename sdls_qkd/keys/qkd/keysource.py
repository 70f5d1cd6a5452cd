"""A KME key source fed by emulated satellite passes (the ``KeySource`` protocol).

Key exists only once a pass is over and post-processed: each scheduled pass adds its final key
at ``end_s + processing_delay_s`` (the pass is emulated lazily, the first time the clock has
passed that moment, so a day of schedule costs nothing until it is needed).  With
``release="progressive"`` the pass's key is instead released in proportion to the elapsed part
of the pass - a model of frame-by-frame post-processing running during the pass.

The clock is injected (``time.monotonic`` by default): a test drives a whole day with a fake
clock in milliseconds.  Bits are handed out first-in first-out and never twice; ``take`` is
all-or-nothing.  Thread-safe: both KMEs of a pair share one source.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Literal

import numpy as np
import numpy.typing as npt

from sdls_qkd.errors import UsageError
from sdls_qkd.keys.qkd.emulator import PassOutput, PassResult, PostProcessingConfig, emulate_pass
from sdls_qkd.keys.qkd.passes import PassSchedule, ScheduledPass

__all__ = ["EmulatorKeySource", "PassRunner"]

Bits = npt.NDArray[np.uint8]

#: turns a scheduled pass into its delivered key (injectable, e.g. to cache results)
PassRunner = Callable[[ScheduledPass], PassOutput]


def _default_runner(config: PostProcessingConfig | None) -> PassRunner:
    def run(sp: ScheduledPass) -> PassOutput:
        return emulate_pass(sp.profile, sp.seed, config)

    return run


class EmulatorKeySource:
    """Key material that follows a satellite pass schedule.

    ``epoch`` is the clock reading at schedule time 0 (default: the clock at construction).
    ``capacity_bits`` bounds the store: key beyond it is dropped (counted in ``dropped_bits``),
    as a full KME key store would.
    """

    def __init__(
        self,
        schedule: PassSchedule,
        *,
        clock: Callable[[], float] = time.monotonic,
        epoch: float | None = None,
        config: PostProcessingConfig | None = None,
        runner: PassRunner | None = None,
        release: Literal["end", "progressive"] = "end",
        processing_delay_s: float = 0.0,
        capacity_bits: int = 1 << 26,
    ) -> None:
        if release not in ("end", "progressive"):
            raise UsageError(f"release must be 'end' or 'progressive', got {release!r}")
        if processing_delay_s < 0:
            raise UsageError(f"processing_delay_s must be >= 0, got {processing_delay_s}")
        if capacity_bits <= 0:
            raise UsageError(f"capacity_bits must be positive, got {capacity_bits}")
        self._schedule = schedule
        self._clock = clock
        self._epoch = clock() if epoch is None else epoch
        self._runner = runner or _default_runner(config)
        self._release = release
        self._delay = processing_delay_s
        self._capacity = capacity_bits
        self._lock = threading.Lock()
        self._chunks: deque[Bits] = deque()  # released, not yet taken
        self._head = 0  # bits of _chunks[0] already taken
        self._level = 0
        self._next = 0  # first pass not fully released
        self._released_of_next = 0  # bits of that pass already released (progressive)
        self._outputs: dict[int, PassOutput] = {}
        #: results of the passes emulated so far, in schedule order
        self.results: list[PassResult] = []
        #: key bits dropped because the store was full
        self.dropped_bits = 0

    def __repr__(self) -> str:
        return (
            f"EmulatorKeySource(passes={len(self._schedule.passes)}, release={self._release!r}, "
            f"capacity_bits={self._capacity})"
        )

    # ------------------------------------------------------------------ internals (lock held)
    def _output(self, i: int) -> PassOutput:
        out = self._outputs.get(i)
        if out is None:
            sp = self._schedule.passes[i]
            if sp.available:
                out = self._runner(sp)
            else:
                out = PassOutput(_unavailable(sp), np.zeros(0, dtype=np.uint8))
            self._outputs[i] = out
            self.results.append(out.result)
        return out

    def _push(self, bits: Bits) -> None:
        room = self._capacity - self._level
        if bits.size > room:
            self.dropped_bits += int(bits.size - room)
            bits = bits[:room]
        if bits.size:
            self._chunks.append(bits)
            self._level += int(bits.size)

    def _advance(self) -> None:
        now = self._clock() - self._epoch
        passes = self._schedule.passes
        while self._next < len(passes):
            sp = passes[self._next]
            ready = sp.end_s + self._delay
            if self._release == "end":
                if now < ready:
                    return
                self._push(self._output(self._next).key)
            else:
                start = sp.start_s + self._delay
                if now < start:
                    return
                key = self._output(self._next).key
                frac = 1.0 if now >= ready else (now - start) / max(ready - start, 1e-9)
                upto = int(key.size * frac)
                self._push(key[self._released_of_next : upto])
                self._released_of_next = upto
                if now < ready:
                    return
                self._released_of_next = 0
            self._outputs.pop(self._next, None)  # key handed over; keep only the result
            self._next += 1

    # ------------------------------------------------------------------ KeySource protocol
    def available_bits(self) -> int:
        """Bits that ``take`` could deliver now (passes that have ended are emulated first)."""
        with self._lock:
            self._advance()
            return self._level

    def take(self, n_bits: int) -> bytes | None:
        """Remove ``n_bits`` bits (FIFO) as octets, MSB first, unused low bits zero; or None."""
        if n_bits <= 0:
            raise UsageError(f"n_bits must be positive, got {n_bits}")
        with self._lock:
            self._advance()
            if n_bits > self._level:
                return None
            parts: list[Bits] = []
            need = n_bits
            while need:
                chunk = self._chunks[0]
                avail = chunk.size - self._head
                use = min(avail, need)
                parts.append(chunk[self._head : self._head + use])
                need -= use
                if use == avail:
                    self._chunks.popleft()
                    self._head = 0
                else:
                    self._head += use
            self._level -= n_bits
        return np.packbits(np.concatenate(parts)).tobytes()


def _unavailable(sp: ScheduledPass) -> PassResult:
    return PassResult(
        profile=sp.profile.name,
        seed=sp.seed,
        duration_s=sp.profile.geometry.duration_s,
        pulses_sent=0,
        detections=0,
        sifted_bits=0,
        raw_key_bits=0,
        qber_x=float("nan"),
        qber_z=float("nan"),
        single_photon_error_upper=float("nan"),
        phase_error_upper=float("nan"),
        frames=0,
        frames_discarded=0,
        ec_leaked_bits=0,
        ec_efficiency=float("nan"),
        ec_round_trips=0,
        verification_bits=0,
        residual_error_bits=0,
        secret_bits=0,
        auth_bits=0,
        final_key_bits=0,
        aborted=sp.reason or "unavailable",
        finite_key=None,
    )
