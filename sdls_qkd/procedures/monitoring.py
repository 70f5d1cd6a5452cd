"""Security monitoring & control: the bounded security event log, the FSR alarm flag, self-test.

Every rejected frame and every procedure (accepted or rejected, with the reason) becomes a
:class:`SecurityEvent`.  The log is bounded (``capacity`` events); when full, further events are
counted in ``lost`` and the alarm stays raised, so evidence is never silently overwritten (the
oldest event of an attack is the one that matters).  Dump Log sends the events, Erase Log empties
the log, Log Status reports ``(count, remaining)``.

The FSR Alarm Flag (355.0-B-2 §4.2.4, bit 4 of the Frame Security Report) is sticky: any rejected
frame, rejected procedure, lost event or failed self-test raises it; only the Alarm Flag Reset
procedure clears it.  The per-frame flags (bad SN / bad MAC / bad SA) and the last SPI / SN octet
follow the last frame processed (kept by :class:`sdls_qkd.security.fsr.FsrTracker`).

Self-test runs known-answer tests of every suite the engine offers (AES-256-GCM, AES-256-CBC,
AES-256-CMAC, HMAC-SHA-256/512) from the published test vectors (McGrew-Viega GCM test cases
13/14, NIST SP 800-38A F.2.5, SP 800-38B D.3, RFC 4231 case 2).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sdls_qkd.errors import InvalidConfiguration, InvalidProcedure, SdlsQkdError
from sdls_qkd.framing.ocf import FrameSecurityReport
from sdls_qkd.security.fsr import FsrTracker

__all__ = [
    "EventCode",
    "ErrorCode",
    "error_code",
    "SecurityEvent",
    "SecurityMonitor",
    "LogStatusReply",
    "DumpLogReply",
    "SelfTestResult",
    "SelfTestReply",
    "KnownAnswerTest",
    "KNOWN_ANSWER_TESTS",
    "run_self_test",
]


class EventCode(IntEnum):
    """Event Tag octet of a log entry (mission-defined; 355.1 leaves the values open)."""

    PROCEDURE_EXECUTED = 0x01
    PROCEDURE_REJECTED = 0x02
    FRAME_REJECTED = 0x03
    SELF_TEST_FAILED = 0x04
    KEY_CORRUPTED = 0x05
    LOG_ERASED = 0x06
    ALARM_RESET = 0x07
    #: CryptoLib's placeholder tag (its events carry the four octets "NASA")
    CRYPTOLIB = 0x0A


class ErrorCode(IntEnum):
    """One octet naming the reason of a rejection (the schema error names, numbered)."""

    NONE = 0
    INVALID_SPI = 1
    INVALID_SA_STATE = 2
    INVALID_KEY_STATE = 3
    MAC_VERIFICATION_FAILURE = 4
    ANTI_REPLAY_FAILURE = 5
    FECF_ERROR = 6
    INVALID_FRAME_LENGTH = 7
    INVALID_HEADER = 8
    PADDING_ERROR = 9
    INVALID_PROCEDURE = 10
    ILLEGAL_TRANSITION = 11
    KEY_SUPPLY = 12
    OTHER = 0xFF


_ERROR_BY_CODE: Final = {
    "InvalidSpi": ErrorCode.INVALID_SPI,
    "InvalidSaState": ErrorCode.INVALID_SA_STATE,
    "InvalidKeyState": ErrorCode.INVALID_KEY_STATE,
    "MacVerificationFailure": ErrorCode.MAC_VERIFICATION_FAILURE,
    "AntiReplayFailure": ErrorCode.ANTI_REPLAY_FAILURE,
    "FecfError": ErrorCode.FECF_ERROR,
    "InvalidFrameLength": ErrorCode.INVALID_FRAME_LENGTH,
    "InvalidHeader": ErrorCode.INVALID_HEADER,
    "PaddingError": ErrorCode.PADDING_ERROR,
    "InvalidProcedure": ErrorCode.INVALID_PROCEDURE,
}


def error_code(exc: BaseException) -> ErrorCode:
    """The log octet for an exception (IllegalTransition gets its own code)."""
    from sdls_qkd.errors import IllegalTransition, KeySupplyError

    if isinstance(exc, IllegalTransition):
        return ErrorCode.ILLEGAL_TRANSITION
    if isinstance(exc, KeySupplyError):
        return ErrorCode.KEY_SUPPLY
    if isinstance(exc, SdlsQkdError):
        return _ERROR_BY_CODE.get(exc.code, ErrorCode.OTHER)
    return ErrorCode.OTHER


@dataclass(frozen=True, slots=True)
class SecurityEvent:
    """One log entry: Event Tag (8), Event Length (16, octets), Event Value.

    ``reason`` is the human-readable cause kept on board/ground for operators; it is not sent
    (Dump Log carries the coded value only) and never contains key material.
    """

    code: int
    value: bytes = b""
    reason: str = ""

    def pack(self) -> bytes:
        return bytes((self.code,)) + len(self.value).to_bytes(2, "big") + self.value

    @classmethod
    def unpack_from(cls, buf: bytes, offset: int) -> tuple[SecurityEvent, int]:
        if len(buf) - offset < 3:
            raise InvalidProcedure(f"log event header needs 3 octets, got {len(buf) - offset}",
                                   field="event", offset=offset)
        length = int.from_bytes(buf[offset + 1:offset + 3], "big")
        end = offset + 3 + length
        if end > len(buf):
            raise InvalidProcedure(f"log event announces {length} octets, only "
                                   f"{len(buf) - offset - 3} follow", field="event_length",
                                   offset=offset + 1)
        return cls(buf[offset], bytes(buf[offset + 3:end])), end


class SecurityMonitor:
    """The security log and the FSR state (sticky alarm, last-frame flags) of one link end.

    The FSR flags are kept by :class:`sdls_qkd.security.fsr.FsrTracker` (shared with the frame
    engine's receiver); this class adds the log and raises the same alarm for rejected
    procedures, lost log events and failed self-tests.
    """

    def __init__(self, capacity: int = 64, *, fsr: FsrTracker | None = None) -> None:
        if not 1 <= capacity <= 0xFFFF:
            raise InvalidConfiguration("log capacity must be 1..65535 events")
        self.capacity = capacity
        self._events: list[SecurityEvent] = []
        self.lost = 0
        self.tracker = fsr if fsr is not None else FsrTracker()

    # ------------------------------------------------------------------ log
    @property
    def events(self) -> tuple[SecurityEvent, ...]:
        return tuple(self._events)

    @property
    def remaining(self) -> int:
        return self.capacity - len(self._events)

    @property
    def alarm(self) -> bool:
        return self.tracker.alarm_flag

    def record(self, event: SecurityEvent, *, alarm: bool) -> None:
        """Append an event (or count it lost when full); ``alarm`` raises the FSR alarm."""
        if len(self._events) < self.capacity:
            self._events.append(event)
        else:
            self.lost += 1
            alarm = True
        if alarm:
            self.tracker.alarm_flag = True

    def erase(self) -> None:
        self._events.clear()
        self.lost = 0

    def preload(self, events: Iterable[SecurityEvent]) -> None:
        """Install events without raising the alarm (restoring a log; test set-ups)."""
        for event in events:
            if len(self._events) >= self.capacity:
                raise InvalidConfiguration("preloaded events exceed the log capacity")
            self._events.append(event)

    def reset_alarm(self) -> None:
        self.tracker.reset_alarm()

    # ------------------------------------------------------------------ frames and FSR
    def record_frame(self, spi: int | None, error: SdlsQkdError | None = None, *,
                     sn: bytes = b"") -> None:
        """Note the outcome of one received frame: updates the FSR; a rejection is logged
        (value: SPI (16) + error code (8)) and raises the alarm."""
        if error is None:
            self.tracker.accepted(spi or 0, sn)
            return
        self.tracker.rejected(error, spi)
        code = error_code(error)
        value = (spi or 0).to_bytes(2, "big") + bytes((code,))
        self.record(SecurityEvent(EventCode.FRAME_REJECTED, value,
                                  f"frame on SPI {spi} rejected: {error}"), alarm=True)

    def fsr(self) -> FrameSecurityReport:
        """The Frame Security Report word for the next downlink frame."""
        return self.tracker.report()


# --------------------------------------------------------------------------- reply layouts
@dataclass(frozen=True, slots=True)
class LogStatusReply:
    """Log Status reply: Number of security events (16), Remaining log space (16)."""

    count: int
    remaining: int

    def pack(self) -> bytes:
        return self.count.to_bytes(2, "big") + self.remaining.to_bytes(2, "big")

    @classmethod
    def unpack(cls, data: bytes) -> LogStatusReply:
        if len(data) != 4:
            raise InvalidProcedure(f"Log Status reply needs 4 octets, got {len(data)}",
                                   field="data")
        return cls(int.from_bytes(data[:2], "big"), int.from_bytes(data[2:], "big"))


@dataclass(frozen=True, slots=True)
class DumpLogReply:
    """Dump Log reply: N x [Event Tag (8), Event Length (16), Event Value]."""

    events: tuple[SecurityEvent, ...]

    def pack(self) -> bytes:
        return b"".join(e.pack() for e in self.events)

    @classmethod
    def unpack(cls, data: bytes) -> DumpLogReply:
        events = []
        offset = 0
        while offset < len(data):
            event, offset = SecurityEvent.unpack_from(data, offset)
            events.append(event)
        return cls(tuple(events))


class SelfTestResult(IntEnum):
    OK = 0x00
    FAILED = 0xFF


@dataclass(frozen=True, slots=True)
class SelfTestReply:
    """Self-Test reply: Result (8)."""

    result: SelfTestResult

    def pack(self) -> bytes:
        return bytes((self.result,))

    @classmethod
    def unpack(cls, data: bytes) -> SelfTestReply:
        if len(data) != 1:
            raise InvalidProcedure(f"Self-Test reply needs 1 octet, got {len(data)}", field="data")
        try:
            return cls(SelfTestResult(data[0]))
        except ValueError:
            raise InvalidProcedure(f"Self-Test result {data[0]:#04x} is neither 00 nor FF",
                                   field="result", offset=0) from None


# --------------------------------------------------------------------------- self-test
@dataclass(frozen=True, slots=True)
class KnownAnswerTest:
    """A named check; ``run()`` returns True when the primitive gives the published answer."""

    name: str
    run: Callable[[], bool]


def _h(text: str) -> bytes:
    return bytes.fromhex(text)


_K256 = _h("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4")
_BLOCK = _h("6bc1bee22e409f96e93d7e117393172a")


def _kat_gcm_tc13() -> bool:
    out = AESGCM(bytes(32)).encrypt(bytes(12), b"", None)
    return hmac.compare_digest(out, _h("530f8afbc74536b9a963b4f1c4cb738b"))


def _kat_gcm_tc14() -> bool:
    out = AESGCM(bytes(32)).encrypt(bytes(12), bytes(16), None)
    return hmac.compare_digest(out, _h("cea7403d4d606b6e074ec5d3baf39d18"
                                       "d0d1c8a799996bf0265b98b5d48ab919"))


def _kat_cbc() -> bool:
    enc = Cipher(algorithms.AES(_K256), modes.CBC(_h("000102030405060708090a0b0c0d0e0f"))).encryptor()
    out = enc.update(_BLOCK) + enc.finalize()
    return hmac.compare_digest(out, _h("f58c4c04d6e5f1ba779eabfb5f7bfbd6"))


def _kat_cmac() -> bool:
    c = cmac.CMAC(algorithms.AES(_K256))
    c.update(_BLOCK)
    return hmac.compare_digest(c.finalize(), _h("28a7023f452e8f82bd4bf28d8c37c35c"))


def _kat_hmac256() -> bool:
    out = hmac.new(b"Jefe", b"what do ya want for nothing?", hashlib.sha256).digest()
    return hmac.compare_digest(out, _h("5bdcc146bf60754e6a042426089575c7"
                                       "5a003f089d2739839dec58b964ec3843"))


def _kat_hmac512() -> bool:
    out = hmac.new(b"Jefe", b"what do ya want for nothing?", hashlib.sha512).digest()
    return hmac.compare_digest(out, _h(
        "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
        "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"))


KNOWN_ANSWER_TESTS: Final[tuple[KnownAnswerTest, ...]] = (
    KnownAnswerTest("AES-256-GCM (GCM test case 13)", _kat_gcm_tc13),
    KnownAnswerTest("AES-256-GCM (GCM test case 14)", _kat_gcm_tc14),
    KnownAnswerTest("AES-256-CBC (SP 800-38A F.2.5)", _kat_cbc),
    KnownAnswerTest("AES-256-CMAC (SP 800-38B D.3)", _kat_cmac),
    KnownAnswerTest("HMAC-SHA-256 (RFC 4231 case 2)", _kat_hmac256),
    KnownAnswerTest("HMAC-SHA-512 (RFC 4231 case 2)", _kat_hmac512),
)


def run_self_test(kats: Iterable[KnownAnswerTest] = KNOWN_ANSWER_TESTS) -> Mapping[str, bool]:
    """Run every known-answer test; a test that raises counts as failed."""
    results: dict[str, bool] = {}
    for kat in kats:
        try:
            results[kat.name] = bool(kat.run())
        except Exception:  # noqa: BLE001 - a broken primitive is a failed self-test, not a crash
            results[kat.name] = False
    return results
