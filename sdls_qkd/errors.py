"""One exception family for the whole package.

Every error raised by a parser, by ``process_security``, by a procedure or by the key supply is a
subclass of :class:`SdlsQkdError`.  The tree says *whose fault* it is:

* :class:`LinkError` — the bytes that came from the link are malformed or hostile (a frame, a
  PDU, a KME answer).  Nothing is wrong with the caller; the input is rejected.
* :class:`UsageError` — the caller misused the API or configured something that cannot work.
* :class:`KeySupplyError` — the QKD key supply cannot give what is asked (empty buffer, KME
  failure).
* :class:`StateStoreError` — durable state is corrupt, foreign or unavailable.

The SDLS-facing classes carry ``code``: the error name of the ``sdls-vectors/1`` schema
(``InvalidSpi``, ``MacVerificationFailure``, ...), so vector tools and peers' status codes map
one to one.  Messages never contain key material.
"""

from __future__ import annotations


class SdlsQkdError(Exception):
    """Root of every exception raised on purpose by sdls_qkd."""

    code: str = "Error"

    def __init__(self, message: str, *, field: str | None = None, offset: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: name of the offending field, when the error is about one field
        self.field = field
        #: octet offset of that field in the input, when known
        self.offset = offset

    def __str__(self) -> str:
        where = []
        if self.field is not None:
            where.append(f"field {self.field}")
        if self.offset is not None:
            where.append(f"octet {self.offset}")
        return f"{self.message} ({', '.join(where)})" if where else self.message


# --------------------------------------------------------------------------- link-side errors
class LinkError(SdlsQkdError):
    """Input from the link (frame, packet, PDU, server answer) is malformed or rejected."""


class FrameError(LinkError):
    """A transfer frame or space packet cannot be parsed."""

    code = "InvalidHeader"


class InvalidFrameLength(FrameError):
    """Too short, a length field inconsistent with the data, or over a managed/standard maximum."""

    code = "InvalidFrameLength"


class InvalidHeader(FrameError):
    """A version, flag or field value that is not allowed."""

    code = "InvalidHeader"


class FecfError(FrameError):
    """The Frame Error Control Field (CRC) does not match."""

    code = "FecfError"


class FhecError(FrameError):
    """The AOS Frame Header Error Control could not correct the header."""

    code = "InvalidHeader"


class SecurityError(LinkError):
    """A frame was rejected by SDLS processing (ProcessSecurity)."""

    code = "SecurityError"


class InvalidSpi(SecurityError):
    """Unknown SPI, an SA in state NONE, or an SA not bound to this channel."""

    code = "InvalidSpi"


class InvalidSaState(SecurityError):
    """The SA is not operational."""

    code = "InvalidSaState"


class InvalidKeyState(SecurityError):
    """The SA's key is not active."""

    code = "InvalidKeyState"


class MacVerificationFailure(SecurityError):
    """The MAC (or AEAD tag) does not verify."""

    code = "MacVerificationFailure"


class AntiReplayFailure(SecurityError):
    """The sequence number / IV is outside the anti-replay window."""

    code = "AntiReplayFailure"


class PaddingError(SecurityError):
    """Pad length or fill octets are inconsistent after decryption."""

    code = "PaddingError"


class InvalidProcedure(LinkError):
    """A malformed or illegal SDLS Extended Procedures PDU or command."""

    code = "InvalidProcedure"


# --------------------------------------------------------------------------- caller-side errors
class UsageError(SdlsQkdError):
    """The API was misused or the configuration cannot work."""

    code = "InvalidConfiguration"


class InvalidConfiguration(UsageError):
    """The SA or channel cannot work as configured."""

    code = "InvalidConfiguration"


class UnsupportedAlgorithm(UsageError):
    """An algorithm identifier that this library does not implement."""

    code = "UnsupportedAlgorithm"


class CounterExhausted(UsageError):
    """An IV or ARSN counter reached its maximum: the SA must be rekeyed (never wraps)."""

    code = "CounterExhausted"


class IllegalTransition(UsageError):
    """A state machine (SA, key) was asked for a transition its table does not allow."""

    code = "InvalidSaState"


# --------------------------------------------------------------------------- key supply
class KeySupplyError(SdlsQkdError):
    """The QKD key supply cannot deliver."""

    code = "KeySupplyError"


class KeyBufferEmpty(KeySupplyError):
    """No key is available under the configured depletion policy (fail closed)."""

    code = "KeyBufferEmpty"


class KeyAlreadyUsed(KeySupplyError):
    """A key was already released or bound once; keys are never released twice."""

    code = "KeyAlreadyUsed"


class KeyDestroyed(KeySupplyError):
    """The key was destroyed unused (expired, orphaned by a restart, or erased); never served."""

    code = "KeyDestroyed"


class UnknownKey(KeySupplyError):
    """No key with this ID is known."""

    code = "UnknownKey"


class KmeError(KeySupplyError):
    """An ETSI GS QKD 014 key management entity answered with an error or not at all."""

    code = "KmeError"


class KmeBadRequest(KmeError):
    """HTTP 400 from the KME: validation error, unknown or already used key ID."""

    code = "KmeBadRequest"


class KmeUnauthorized(KmeError):
    """HTTP 401 from the KME: this SAE is not allowed."""

    code = "KmeUnauthorized"


class KmeUnavailable(KmeError):
    """HTTP 503 from the KME, after retries."""

    code = "KmeUnavailable"


class KmeProtocolError(KmeError):
    """The KME's answer is malformed (bad JSON, wrong fields, wrong key size)."""

    code = "KmeProtocolError"


class KmeConnectionError(KmeError):
    """The KME cannot be reached, timed out, or failed TLS authentication."""

    code = "KmeConnectionError"


# --------------------------------------------------------------------------- durable state
class StateStoreError(SdlsQkdError):
    """Durable state cannot be used."""

    code = "StateStoreError"


class StateCorrupt(StateStoreError):
    """The state file is corrupt or truncated; it is refused, never silently reset."""

    code = "StateCorrupt"


class StateForeign(StateStoreError):
    """The state file belongs to another application, schema or link end."""

    code = "StateForeign"


#: schema error name -> class, for the sdls-vectors/1 tools
BY_CODE: dict[str, type[SdlsQkdError]] = {
    cls.code: cls
    for cls in (
        InvalidSpi,
        InvalidSaState,
        InvalidKeyState,
        InvalidConfiguration,
        MacVerificationFailure,
        AntiReplayFailure,
        FecfError,
        InvalidFrameLength,
        InvalidHeader,
        PaddingError,
        UnsupportedAlgorithm,
        InvalidProcedure,
    )
}


def schema_code(exc: BaseException) -> str:
    """The ``sdls-vectors/1`` error name for an exception of this library."""
    if isinstance(exc, SdlsQkdError):
        return exc.code
    return type(exc).__name__
