"""Frame Security Report state (355.0-B-2 §4.2.4): what the receiver reports in the OCF.

The receiver feeds every ProcessSecurity outcome into an :class:`FsrTracker`; ``report()`` gives
the :class:`~sdls_qkd.framing.ocf.FrameSecurityReport` word for the next TM/AOS/USLP OCF.

* The Alarm Flag is sticky: set by any rejected frame, cleared only by :meth:`reset_alarm`
  (SDLS EP "Alarm Flag Reset").
* Bad SN / Bad MAC / Bad SA describe the last processed frame only.
* Last SPI and the 8 LSBs of the ARSN are those of the last frame whose SPI was read.
"""

from __future__ import annotations

from sdls_qkd.errors import (
    AntiReplayFailure,
    InvalidKeyState,
    InvalidSaState,
    InvalidSpi,
    MacVerificationFailure,
    PaddingError,
    SdlsQkdError,
)
from sdls_qkd.framing.ocf import FrameSecurityReport

__all__ = ["FsrTracker"]


class FsrTracker:
    """Mutable FSR state of one receiver (one per physical channel / security manager)."""

    __slots__ = ("alarm_flag", "bad_sn", "bad_mac", "bad_sa", "spi", "last_sn_lsb")

    def __init__(self) -> None:
        self.alarm_flag = False
        self.bad_sn = False
        self.bad_mac = False
        self.bad_sa = False
        self.spi = 0
        self.last_sn_lsb = 0

    def accepted(self, spi: int, sn: bytes) -> None:
        """A frame passed ProcessSecurity."""
        self.bad_sn = self.bad_mac = self.bad_sa = False
        self.spi = spi
        if sn:
            self.last_sn_lsb = sn[-1]

    def rejected(self, error: SdlsQkdError, spi: int | None = None) -> None:
        """A frame was discarded with ``error`` (``spi`` when it could be read)."""
        self.alarm_flag = True
        self.bad_sa = isinstance(error, InvalidSpi | InvalidSaState | InvalidKeyState)
        self.bad_mac = isinstance(error, MacVerificationFailure | PaddingError)
        self.bad_sn = isinstance(error, AntiReplayFailure)
        if spi is not None:
            self.spi = spi

    def reset_alarm(self) -> None:
        """SDLS EP "Alarm Flag Reset"."""
        self.alarm_flag = False

    def report(self) -> FrameSecurityReport:
        """The FSR word to send in the next OCF."""
        return FrameSecurityReport(alarm_flag=self.alarm_flag, bad_sn=self.bad_sn,
                                   bad_mac=self.bad_mac, bad_sa=self.bad_sa, spi=self.spi,
                                   last_sn_lsb=self.last_sn_lsb)

    def __repr__(self) -> str:
        return f"FsrTracker({self.report()!r})"
