"""What a link end reports: per-SA traffic and rejections, key-buffer level, next rekey.

Plain frozen dataclasses (no key material anywhere; keys appear as QKD key IDs and 8-octet
fingerprints), with :meth:`LinkReport.to_dict` for JSON and :meth:`LinkReport.format` for a
human-readable table.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sdls_qkd.link.rekey import LinkEvent

__all__ = ["SaReport", "SaRow", "NextRekey", "BufferLevel", "LinkReport"]


@dataclass(frozen=True)
class SaRow:
    """One SA as both ends should agree on it (compare the two ends' tables)."""

    direction: str
    spi: int
    epoch: int
    slot: str
    sa_state: str
    qkd_key_id: str | None
    fingerprint: str


@dataclass(frozen=True)
class SaReport:
    """Traffic of one SA epoch at this end (this process's counts)."""

    direction: str
    role: str
    spi: int
    epoch: int
    slot: str
    sa_state: str
    qkd_key_id: str | None
    frames: int
    octets: int
    rejects: dict[str, int]
    #: sender: AES-GCM invocations counted from the durable IV counter
    invocations: int | None = None
    max_invocations: int | None = None
    extensions: int = 0


@dataclass(frozen=True)
class NextRekey:
    """The sending direction's next switch."""

    direction: str
    armed_epoch: int | None
    #: the peer holds the armed SA (a switch may happen at the next trigger)
    ready: bool
    remaining: dict[str, float]
    blocked: str | None


@dataclass(frozen=True)
class BufferLevel:
    """Key-buffer counts (QKD keys unless said otherwise)."""

    available: int
    reserved: int
    released: int
    destroyed: int
    preplaced_available: int
    low_watermark: int
    high_watermark: int
    depletion: str
    #: keys consumed per second over the buffer's rate window
    rate_per_s: float


@dataclass(frozen=True)
class LinkReport:
    """A snapshot of one link end."""

    end: str
    frames_sent: int
    frames_received: int
    frames_accepted: int
    sas: tuple[SaReport, ...]
    next_rekey: tuple[NextRekey, ...]
    buffer: BufferLevel | None
    #: rejections of frames whose SPI names no SA of this end, by reason
    unknown_spi_rejects: dict[str, int] = field(default_factory=dict)
    control_rejects: int = 0
    events: tuple[LinkEvent, ...] = ()

    def rejects(self) -> dict[str, int]:
        """All rejections by reason."""
        total: dict[str, int] = dict(self.unknown_spi_rejects)
        for sa in self.sas:
            for reason, n in sa.rejects.items():
                total[reason] = total.get(reason, 0) + n
        return total

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self) -> str:
        lines = [f"{self.end}: sent {self.frames_sent} frames, received {self.frames_received}"
                 f" ({self.frames_accepted} accepted)"]
        for sa in self.sas:
            rej = ", ".join(f"{k} {v}" for k, v in sorted(sa.rejects.items())) or "none"
            inv = (f", {sa.invocations}/{sa.max_invocations} invocations"
                   if sa.invocations is not None else "")
            lines.append(f"  {sa.direction:8} {sa.role:8} SPI {sa.spi:5} epoch {sa.epoch:4} "
                         f"{sa.slot:7} {sa.sa_state:11} frames {sa.frames} octets {sa.octets}"
                         f"{inv}; rejects: {rej}")
        for nxt in self.next_rekey:
            left = ", ".join(f"{k} {v:g}" for k, v in nxt.remaining.items())
            lines.append(f"  next {nxt.direction} rekey: armed epoch {nxt.armed_epoch} "
                         f"({'ready' if nxt.ready else 'not confirmed'}); left: {left}"
                         + (f"; BLOCKED: {nxt.blocked}" if nxt.blocked else ""))
        if self.buffer is not None:
            b = self.buffer
            lines.append(f"  key buffer: {b.available} available ({b.low_watermark}/"
                         f"{b.high_watermark} watermarks), {b.reserved} reserved, "
                         f"{b.preplaced_available} pre-placed, policy {b.depletion}, "
                         f"{b.rate_per_s:.3g} keys/s")
        return "\n".join(lines)
