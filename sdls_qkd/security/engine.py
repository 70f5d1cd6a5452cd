"""ApplySecurity / ProcessSecurity (CCSDS 355.0-B-2 §4) for TC, TM, AOS and USLP frames.

Sans-I/O: bytes in, bytes out, the SA's counters advanced through its counter sources only after
everything succeeded.  Frame layouts (where the security header goes, where the trailer ends) come
from the channel's managed parameters (:mod:`sdls_qkd.framing.channel`); this module reads the few
header fields it needs itself (length fields, GVCID, flags) and does not depend on the frame
codecs.

Order of the receiver's checks: frame length, FECF (checked first), header fields, SPI -> SA
(unknown, NONE, not bound: InvalidSpi; not OPERATIONAL: InvalidSaState; key not ACTIVE:
InvalidKeyState), MAC (MacVerificationFailure), anti-replay window (AntiReplayFailure), padding
(PaddingError).  The sender writes the security header, encrypts, authenticates, rewrites the
length field (TC, variable USLP) and computes the FECF last.

Frames SDLS does not secure: TC control command frames (COP-1, control command flag set) and USLP
frames with the Protocol Control Command flag set (TFDF carrying protocol control information,
e.g. COP directives; 732.1-B primary header bit 49).  ProcessSecurity passes them in clear after
the FECF check (``spi`` None, ``data`` the TC frame data field / the USLP TFDF); ApplySecurity
refuses them with InvalidHeader (they go out on their own, unsecured path).  The USLP rule is the
TC one carried over: 355.0-B-2 secures user data, and a control frame must reach COP even when
the SA state or counters would reject it.  Truncated USLP headers have no such flag.

Hot path: per (channel, SA, options) a :class:`_Plan` holds every offset, the ABM as an int and the
cipher objects; per channel a :class:`_ChannelCtx` holds the frame-type checks.  For the common
configuration (default options, AEAD with a 16-octet MAC, whole IV sent and used as the counter,
one binding, one key) the plan also holds one closure per direction with every constant bound
(``_Plan.fast`` / ``_Plan.fast_apply``); the public functions reach it through the SA's last plan
(SPI -> SA -> plan: no per-call re-planning).  A fast path never raises and never rejects: on
anything unusual it returns None and the reference path below runs and decides (tests hold the
two to the same results and errors: tests/test_engine_fastpath.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from hmac import compare_digest
from operator import itemgetter
from types import SimpleNamespace
from typing import Any, Final

from cryptography.exceptions import InvalidTag

from sdls_qkd.errors import (
    FecfError,
    InvalidConfiguration,
    InvalidFrameLength,
    InvalidHeader,
    InvalidKeyState,
    InvalidSaState,
    InvalidSpi,
    MacVerificationFailure,
    PaddingError,
    SdlsQkdError,
)
from sdls_qkd.framing.channel import (
    TC_MAX_FRAME_LENGTH,
    AosChannel,
    Channel,
    TcChannel,
    TmChannel,
    UslpChannel,
)
from sdls_qkd.framing.crc import crc16, crc32_uslp
from sdls_qkd.security.counters import MemoryCounter
from sdls_qkd.security.fsr import FsrTracker
from sdls_qkd.security.replay import (
    check_window,
    reconstruct,
    reconstruct_static,
    sender_next_static,
)
from sdls_qkd.security.sa import (
    Binding,
    IvMode,
    KeyState,
    SaState,
    SdlsKey,
    SecurityAssociation,
)
from sdls_qkd.security.suites import Suite

__all__ = [
    "SUPPORTED_QUIRKS",
    "EngineOptions",
    "ProcessResult",
    "apply_security",
    "process_security",
]

#: quirk name (sdls-vectors/1) -> EngineOptions field and the value that reproduces it
_QUIRK_SWITCHES: Final[dict[str, tuple[str, bool]]] = {
    "fecf_not_checked": ("check_fecf", False),
    "fecf_not_computed": ("compute_fecf", False),
    "ignore_anti_replay": ("anti_replay", False),
    "ignore_sa_state": ("check_sa_state", False),
    "nontransmitted_iv_not_incremented": ("increment_nontransmitted_iv", False),
    "zero_counter_first_frame": ("accept_zero_counter", True),
    "mask_excludes_data": ("allow_mask_excluding_data", True),
    "cleartext_sa_sends_iv": ("cleartext_sends_fields", True),
    "reserved_mac_without_auth": ("reserved_mac_without_auth", True),
}

#: quirks of SCHEMA.md this engine can reproduce
SUPPORTED_QUIRKS: Final[frozenset[str]] = frozenset(_QUIRK_SWITCHES)

_ACTIVE = KeyState.ACTIVE
_OPERATIONAL = SaState.OPERATIONAL
_NONE = SaState.NONE


@dataclass(frozen=True)
class EngineOptions:
    """Engine switches; the defaults are the strict, standard behaviour.

    Every quirk of ``sdls-vectors/1`` the engine reproduces maps to one switch
    (:meth:`from_quirks`).  ``ep_executed`` is not an engine quirk: executing recovered SDLS-EP
    commands is the procedures layer's job, so a checker composes the two.
    """

    check_fecf: bool = True
    compute_fecf: bool = True
    anti_replay: bool = True
    check_sa_state: bool = True
    increment_nontransmitted_iv: bool = True
    accept_zero_counter: bool = False
    allow_mask_excluding_data: bool = False
    cleartext_sends_fields: bool = False
    reserved_mac_without_auth: bool = False
    #: fixes the IV of an apply call (test vectors, also CBC); counter SAs then advance from it
    iv_override: bytes | None = None

    @classmethod
    def from_quirks(cls, quirks: Iterable[str], **overrides: Any) -> EngineOptions:
        """Options reproducing ``quirks``; InvalidConfiguration names the first unsupported one."""
        kwargs: dict[str, Any] = {}
        for quirk in quirks:
            try:
                name, value = _QUIRK_SWITCHES[quirk]
            except (KeyError, TypeError):
                raise InvalidConfiguration(f"quirk {quirk!r} is not supported; supported: "
                                           f"{sorted(SUPPORTED_QUIRKS)}", field="quirks") from None
            kwargs[name] = value
        kwargs.update(overrides)
        names = {f.name for f in fields(cls)}
        unknown = set(kwargs) - names
        if unknown:
            raise InvalidConfiguration(f"unknown engine options {sorted(unknown)}")
        return cls(**kwargs)

    @property
    def quirks(self) -> frozenset[str]:
        """The quirk names these options reproduce."""
        return frozenset(q for q, (name, value) in _QUIRK_SWITCHES.items()
                         if getattr(self, name) == value)


_DEFAULT_OPTIONS: Final = EngineOptions()


# --------------------------------------------------------------------------- result
class ProcessResult(tuple[Any, ...]):
    """Outcome of ProcessSecurity (immutable).

    ``spi`` (None for a TC COP-1 control frame, passed in clear), ``data`` (the octets between
    security header and trailer, decrypted, padding removed), ``sn`` / ``iv`` (full reconstructed
    ARSN / IV, ``b""`` if none) and ``frame``: the unprotected frame — TC and variable-length
    USLP with the security header and trailer removed and the length field rewritten; fixed-length
    TM/AOS/USLP in the form apply takes (security header and trailer zeroed, data in clear);
    FECF recomputed.  ``frame`` is built on first access.
    """

    __slots__ = ()

    def __new__(cls, spi: int | None, data: bytes, sn: bytes, iv: bytes,
                builder: Callable[..., bytes], *args: Any) -> ProcessResult:
        return tuple.__new__(cls, (spi, data, sn, iv, builder, *args))

    spi: int | None = property(itemgetter(0))  # type: ignore[assignment]
    data: bytes = property(itemgetter(1))  # type: ignore[assignment]
    sn: bytes = property(itemgetter(2))  # type: ignore[assignment]
    iv: bytes = property(itemgetter(3))  # type: ignore[assignment]

    @property
    def frame(self) -> bytes:
        return self[4](*self[5:])

    def __repr__(self) -> str:
        return (f"ProcessResult(spi={self.spi}, data={len(self.data)} octets, sn={self.sn.hex()!r},"
                f" iv={self.iv.hex()!r})")


def _identity(frame: bytes) -> bytes:
    return frame


# --------------------------------------------------------------------------- channel context
def _fecf_ok(frame: bytes, length: int) -> bool:
    """CRC over frame + FECF is zero (no final XOR in either CRC)."""
    if length == 2:
        return crc16(frame) == 0
    return crc32_uslp(frame) == 0


def _fecf_bytes(body: bytes | bytearray, length: int) -> bytes:
    if length == 2:
        return crc16(body).to_bytes(2, "big")
    return crc32_uslp(body).to_bytes(4, "big")


class _ChannelCtx:
    """Per-channel constants and the frame-type header checks."""

    __slots__ = ("channel", "frame_type", "hdr_len", "trailer_len", "fecf_len", "fixed_length",
                 "max_length", "min_length", "secured_min", "check", "ocf_len", "has_fhec")

    def __init__(self, channel: Channel) -> None:
        if not isinstance(channel, TcChannel | TmChannel | AosChannel | UslpChannel):
            raise InvalidConfiguration(f"not a channel: {type(channel).__name__}",
                                       field="channel")
        self.channel = channel
        self.frame_type = channel.frame_type
        self.hdr_len = channel.header_length
        self.trailer_len = channel.trailer_length
        self.fecf_len = channel.fecf_length if channel.has_fecf else 0
        self.ocf_len = 4 if getattr(channel, "has_ocf", False) else 0
        self.has_fhec = bool(getattr(channel, "has_fhec", False))
        fixed = getattr(channel, "frame_length", None)
        self.fixed_length: int | None = fixed
        if isinstance(channel, TcChannel):
            self.max_length = min(channel.max_frame_length, TC_MAX_FRAME_LENGTH)
            self.check = _check_tc
        elif isinstance(channel, TmChannel):
            self.max_length = channel.frame_length
            self.check = _check_tm
        elif isinstance(channel, AosChannel):
            self.max_length = channel.frame_length
            self.check = _check_aos
        elif isinstance(channel, UslpChannel):
            self.max_length = channel.frame_length or channel.max_frame_length
            self.check = _check_uslp
        else:
            raise InvalidConfiguration(f"not a channel: {type(channel).__name__}")
        #: octets needed to read the header fields; a secured frame needs ``secured_min``
        if self.frame_type == "TC":
            self.min_length = 6 + self.fecf_len
        elif self.frame_type == "USLP":
            self.min_length = 4 if getattr(channel, "truncated", False) else 7
        else:
            self.min_length = 6
        self.secured_min = self.hdr_len + self.trailer_len + 2


_CTX: dict[int, _ChannelCtx] = {}
#: one-entry cache in front of _CTX (the common case: one channel, many frames)
_LAST_CTX: list[Any] = [SimpleNamespace(channel=object())]


def _ctx(channel: Channel) -> _ChannelCtx:
    ctx = _CTX.get(id(channel))
    if ctx is None or ctx.channel is not channel:
        if len(_CTX) > 4096:
            _CTX.clear()
        ctx = _ChannelCtx(channel)
        _CTX[id(channel)] = ctx
    _LAST_CTX[0] = ctx
    return ctx


# Header checks: (frame, n, ctx, apply) -> (key_any, key_map, control)
#   key_any: the GVCID as an int; key_map: GVCID + MAP ID (or -1); control: TC control frame.
def _check_tc(frame: bytes, n: int, ctx: _ChannelCtx, apply: bool) -> tuple[int, int, bool]:
    b0 = frame[0]
    if b0 >> 6:
        raise InvalidHeader(f"TC transfer frame version must be 0, got {b0 >> 6}",
                            field="tfvn", offset=0)
    length = (((frame[2] & 3) << 8) | frame[3]) + 1
    if length != n:
        raise InvalidFrameLength(f"TC frame length field says {length} octets, got {n}",
                                 field="frame_length", offset=2)
    if n > ctx.max_length and not apply:  # apply checks its output instead
        raise InvalidFrameLength(f"TC frame of {n} octets exceeds the maximum {ctx.max_length}",
                                 field="frame_length", offset=2)
    bypass = (b0 >> 5) & 1
    control = (b0 >> 4) & 1
    if control and not bypass:
        raise InvalidHeader("TC control command flag set without bypass flag (type AC is invalid)",
                            field="control_command_flag", offset=0)
    key_any = ((((b0 & 3) << 8) | frame[1]) << 6) | (frame[2] >> 2)
    key_map = -1
    if ctx.hdr_len == 6 and not control:
        key_map = (key_any << 6) | (frame[5] & 0x3F)
    return key_any, key_map, bool(control)


def _check_tm(frame: bytes, n: int, ctx: _ChannelCtx, apply: bool) -> tuple[int, int, bool]:
    if n != ctx.fixed_length:
        raise InvalidFrameLength(f"TM frame needs {ctx.fixed_length} octets, got {n}",
                                 field="frame_length")
    b0 = frame[0]
    if b0 >> 6:
        raise InvalidHeader(f"TM transfer frame version must be 0, got {b0 >> 6}",
                            field="tfvn", offset=0)
    return ((b0 << 8) | frame[1]) >> 1, -1, False


def _check_aos(frame: bytes, n: int, ctx: _ChannelCtx, apply: bool) -> tuple[int, int, bool]:
    if n != ctx.fixed_length:
        raise InvalidFrameLength(f"AOS frame needs {ctx.fixed_length} octets, got {n}",
                                 field="frame_length")
    b0 = frame[0]
    if b0 >> 6 != 1:
        raise InvalidHeader(f"AOS transfer frame version must be 1, got {b0 >> 6}",
                            field="tfvn", offset=0)
    return (b0 << 8) | frame[1], -1, False


def _check_uslp(frame: bytes, n: int, ctx: _ChannelCtx, apply: bool) -> tuple[int, int, bool]:
    b0 = frame[0]
    if b0 >> 4 != 12:
        raise InvalidHeader(f"USLP transfer frame version must be 12, got {b0 >> 4}",
                            field="tfvn", offset=0)
    channel: UslpChannel = ctx.channel  # type: ignore[assignment]
    b3 = frame[3]
    if (b3 & 1) != (1 if channel.truncated else 0):
        raise InvalidHeader("USLP end-of-frame-primary-header flag disagrees with the channel",
                            field="end_of_frame_primary_header_flag", offset=3)
    if ctx.fixed_length is not None and n != ctx.fixed_length:
        raise InvalidFrameLength(f"USLP frame needs {ctx.fixed_length} octets, got {n}",
                                 field="frame_length")
    if n > ctx.max_length and not apply:
        raise InvalidFrameLength(f"USLP frame of {n} octets exceeds the maximum {ctx.max_length}",
                                 field="frame_length")
    if not channel.truncated:
        length = ((frame[4] << 8) | frame[5]) + 1
        if length != n:
            raise InvalidFrameLength(f"USLP frame length field says {length} octets, got {n}",
                                     field="frame_length", offset=4)
        b6 = frame[6]
        if (b6 & 7) != channel.vc_frame_count_length:
            raise InvalidHeader(f"USLP VC frame count length {b6 & 7} disagrees with the channel "
                                f"({channel.vc_frame_count_length})",
                                field="vc_frame_count_length", offset=6)
    key_any = (((((b0 & 0xF) << 12) | (frame[1] << 4) | (frame[2] >> 4)) << 6)
               | ((frame[2] & 7) << 3) | (b3 >> 5))
    # Protocol Control Command flag: the TFDF carries protocol control information (COP
    # directives), which SDLS passes in clear like TC control command frames (see module doc)
    control = not channel.truncated and bool(frame[6] & 0x40)
    return key_any, (key_any << 4) | ((b3 >> 1) & 0xF), control


def _binding_keys(binding: Binding) -> tuple[int, int]:
    """The (key_any, key_map) a binding matches; key_map is -1 for "any MAP"."""
    ft = binding.frame_type
    if ft == "TC":
        key = (binding.scid << 6) | binding.vcid
        return key, (-1 if binding.map_id is None else (key << 6) | binding.map_id)
    if ft == "TM":
        return (binding.tfvn << 13) | (binding.scid << 3) | binding.vcid, -1
    if ft == "AOS":
        return (binding.tfvn << 14) | (binding.scid << 6) | binding.vcid, -1
    key = (binding.scid << 6) | binding.vcid
    return key, (-1 if binding.map_id is None else (key << 4) | binding.map_id)


# --------------------------------------------------------------------------- plan
class _Plan:
    """Offsets and masks of one SA on one channel under one set of layout switches."""

    __slots__ = ("channel", "suite", "aead_open", "aead_seal", "spi_bytes", "sec_off", "iv_off",
                 "tiv", "sn_off", "tsn", "pl_off", "pl_len", "data_off", "mac_len", "aad_mask",
                 "abm", "ff_until", "allow_partial_mask", "mac_only", "iv_len", "sn_len",
                 "send_iv", "counter_iv", "guard_iv", "guard_sn", "keys_any", "keys_map", "block",
                 "fixed_data_end", "iv_mode", "full_tag", "opts", "fast", "fast_apply",
                 "rx_channel", "tx_channel")

    def __init__(self, ctx: _ChannelCtx, sa: SecurityAssociation, opts: EngineOptions) -> None:
        suite: Suite = sa.validate()
        self.opts = opts
        self.channel = ctx.channel
        self.suite = suite
        self.aead_open = suite.aead.open if suite.aead is not None else None
        self.aead_seal = suite.aead.seal if suite.aead is not None else None
        self.full_tag = suite.aead is not None and suite.aead.mac_length == 16
        clear = not sa.encrypt and not sa.authenticate
        if clear and not opts.cleartext_sends_fields and (
                sa.transmitted_iv_length or sa.transmitted_sn_length
                or sa.pad_length_field_length):
            raise InvalidConfiguration(
                f"SA {sa.spi} is in clear mode but has IV/SN/pad-length fields "
                "(quirk cleartext_sa_sends_iv reproduces that)", field="iv_length")
        self.tiv = sa.transmitted_iv_length
        self.tsn = sa.transmitted_sn_length
        self.pl_len = sa.pad_length_field_length
        self.iv_len = sa.iv_length
        self.sn_len = sa.sn_length
        if sa.authenticate:
            self.mac_len = sa.mac_length
        elif sa.mac_length:
            if not opts.reserved_mac_without_auth:
                raise InvalidConfiguration(
                    f"SA {sa.spi} does not authenticate but has a {sa.mac_length}-octet MAC "
                    "(quirk reserved_mac_without_auth reproduces that)", field="mac_length")
            self.mac_len = sa.mac_length  # a zeroed, reserved MAC field
        else:
            self.mac_len = 0
        self.sec_off = ctx.hdr_len
        self.spi_bytes = sa.spi.to_bytes(2, "big")
        self.iv_off = self.sec_off + 2
        self.sn_off = self.iv_off + self.tiv
        self.pl_off = self.sn_off + self.tsn
        self.data_off = self.pl_off + self.pl_len
        self.send_iv = suite.needs_iv
        self.counter_iv = suite.needs_iv and sa.iv_mode == IvMode.COUNTER
        self.iv_mode = sa.iv_mode
        # which counters the window guards (SCHEMA "Which counter the window guards")
        # (an ARSN of which no octet is transmitted cannot be checked: it stays as it is)
        self.guard_sn = sa.sn_length > 0 and sa.transmitted_sn_length > 0 and not clear
        self.guard_iv = suite.counter_iv and suite.needs_iv and sa.iv_length > 0
        self.block = suite.block_size
        abm = sa.abm
        self.abm = abm
        head = abm[: self.data_off].ljust(self.data_off, b"\x00")
        self.aad_mask = int.from_bytes(head, "big")
        self.mac_only = suite.aead is None and suite.mac is not None
        fixed = ctx.fixed_length
        self.fixed_data_end: int | None = None
        if fixed is not None:
            end = fixed - ctx.trailer_len - self.mac_len
            if end < self.data_off:
                raise InvalidFrameLength(
                    f"security overhead of SA {sa.spi} ({self.data_off - self.sec_off} + "
                    f"{self.mac_len} octets) does not fit the {fixed}-octet frame",
                    field="frame_length")
            self.fixed_data_end = end
        # how far past the security header the ABM is all-ones (MAC-only suites must cover the
        # whole data field unless quirk mask_excludes_data; checked per frame in masked())
        run = abm[self.data_off:]
        stripped = run.lstrip(b"\xff")
        self.ff_until = self.data_off + len(run) - len(stripped)
        self.allow_partial_mask = opts.allow_mask_excluding_data
        if self.mac_only and fixed is not None and not self.allow_partial_mask \
                and self.ff_until < self.fixed_data_end:  # type: ignore[operator]
            raise InvalidConfiguration(
                f"the ABM of SA {sa.spi} leaves part of the data field unauthenticated "
                "(quirk mask_excludes_data reproduces that)", field="abm")
        keys_any: set[int] = set()
        keys_map: set[int] = set()
        for binding in sa.bindings:
            if binding.frame_type != ctx.frame_type:
                continue
            k_any, k_map = _binding_keys(binding)
            if k_map == -1:
                keys_any.add(k_any)
            else:
                keys_map.add(k_map)
        self.keys_any = frozenset(keys_any)
        self.keys_map = frozenset(keys_map)
        #: the fast paths (None: not covered); ``rx_channel`` / ``tx_channel`` are the channel
        #: when the closure exists, else None (one identity test on the hot path)
        self.fast: Callable[[bytes], ProcessResult | None] | None = \
            _make_plan_fast(ctx, self, sa, opts)
        self.fast_apply: Callable[[bytes], bytes | None] | None = \
            _make_apply_fast(ctx, self, sa, opts)
        self.rx_channel: Channel | None = ctx.channel if self.fast is not None else None
        self.tx_channel: Channel | None = ctx.channel if self.fast_apply is not None else None

    def masked(self, frame: bytes | bytearray, end: int) -> bytes:
        """The authentication payload: frame[0:end] AND the ABM (past the mask: 00)."""
        data_off = self.data_off
        head = (int.from_bytes(frame[:data_off], "big") & self.aad_mask).to_bytes(data_off, "big")
        if end <= data_off:
            return head
        if end <= self.ff_until:
            return head + bytes(frame[data_off:end])
        if not self.allow_partial_mask:
            raise InvalidConfiguration(
                f"the ABM ({len(self.abm)} octets) leaves part of the {end - data_off}-octet "
                "data field unauthenticated (quirk mask_excludes_data reproduces that)",
                field="abm")
        mask = self.abm[data_off:end].ljust(end - data_off, b"\x00")
        body = int.from_bytes(frame[data_off:end], "big") & int.from_bytes(mask, "big")
        return head + body.to_bytes(end - data_off, "big")


def _plan(sa: SecurityAssociation, ctx: _ChannelCtx, opts: EngineOptions) -> _Plan:
    key = (id(ctx.channel), opts.cleartext_sends_fields, opts.reserved_mac_without_auth,
           opts.allow_mask_excluding_data, opts == _DEFAULT_OPTIONS)
    plans = sa._plans
    plan = plans.get(key)
    if plan is None or plan.channel is not ctx.channel or plan.suite is not sa._suite \
            or not sa._validated:
        plan = _Plan(ctx, sa, opts)
        if len(plans) > 64:
            plans.clear()
        plans[key] = plan
    return plan


def _sa_usable(sa: SecurityAssociation | None, spi: int, opts: EngineOptions) -> SecurityAssociation:
    if sa is None:
        raise InvalidSpi(f"no SA with SPI {spi}", field="spi")
    state = sa.state
    if state is not _OPERATIONAL and opts.check_sa_state:
        if state == _NONE:
            raise InvalidSpi(f"SA {spi} is in state NONE", field="spi")
        raise InvalidSaState(f"SA {spi} is {state.name}, not OPERATIONAL", field="spi")
    return sa


def _check_binding(plan: _Plan, key_any: int, key_map: int, spi: int) -> None:
    if key_any in plan.keys_any or (key_map != -1 and key_map in plan.keys_map):
        return
    raise InvalidSpi(f"SA {spi} is not bound to this frame's virtual channel", field="spi")


def _check_keys(sa: SecurityAssociation, spi: int) -> None:
    for key in sa.held_keys():
        if key.state is not _ACTIVE:
            raise InvalidKeyState(f"key {key.key_id!r} of SA {spi} is {key.state.name}, "
                                  "not ACTIVE", field="key_state")


# --------------------------------------------------------------------------- process
def process_security(frame: bytes, channel: Channel, sas: Mapping[int, SecurityAssociation],
                     options: EngineOptions | None = None, *,
                     fsr: FsrTracker | None = None) -> ProcessResult:
    """ProcessSecurity: verify, check anti-replay, decrypt one received frame.

    Raises only :mod:`sdls_qkd.errors`; on any error no SA changes.  ``fsr`` (optional) records
    the outcome for the Frame Security Report.
    """
    if options is None and fsr is None and type(frame) is bytes and type(sas) is dict:
        ctx = _LAST_CTX[0]
        if ctx.channel is not channel:
            ctx = _ctx(channel)
        so = ctx.hdr_len
        try:  # SPI -> SA -> its last plan (a miss of any kind: the reference path decides)
            plan = sas[(frame[so] << 8) | frame[so + 1]]._last_plan
        except (IndexError, KeyError, AttributeError):
            plan = None
        if plan is not None and plan.rx_channel is channel:
            result = plan.fast(frame)
            if result is not None:
                return result
    opts = options or _DEFAULT_OPTIONS
    try:
        # ---- frame structure, FECF (before any security processing)
        if type(frame) is not bytes:
            if not isinstance(frame, bytes | bytearray | memoryview):
                raise InvalidFrameLength("frame must be bytes", field="frame")
            frame = bytes(frame)
        ctx = _LAST_CTX[0]
        if ctx.channel is not channel:
            ctx = _ctx(channel)
        n = len(frame)
        if n < ctx.min_length:
            raise InvalidFrameLength(
                f"{ctx.frame_type} frame needs at least {ctx.min_length} octets, got {n}",
                field="frame_length")
        key_any, key_map, control = ctx.check(frame, n, ctx, False)
        fecf_len = ctx.fecf_len
        if fecf_len and opts.check_fecf and not _fecf_ok(frame, fecf_len):
            raise FecfError(f"{ctx.frame_type} FECF does not match", field="fecf",
                            offset=n - fecf_len)
        if control:  # TC: data after the 5-octet primary header; USLP: the TFDF
            start, end = (5, n - fecf_len) if ctx.frame_type == "TC" else \
                (ctx.hdr_len, n - ctx.trailer_len)
            return _tuple_new(ProcessResult, (None, frame[start:end], b"", b"", _identity, frame))
        if n < ctx.secured_min:
            raise InvalidFrameLength(f"{ctx.frame_type} frame of {n} octets cannot hold a "
                                     f"security header (needs {ctx.secured_min})",
                                     field="frame_length")

        # ---- SPI -> SA
        sec_off = ctx.hdr_len
        spi = (frame[sec_off] << 8) | frame[sec_off + 1]
        try:
            sa = sas.get(spi)
        except Exception:
            sa = None
        if sa is None or sa.state is not _OPERATIONAL:
            sa = _sa_usable(sa, spi, opts)
        enc_key = sa.enc_key
        auth_key = sa.auth_key
        if (enc_key is not None and enc_key.state is not _ACTIVE) or \
                (auth_key is not None and auth_key.state is not _ACTIVE):
            _check_keys(sa, spi)
        plan = sa._last_plan
        if plan is None or plan.channel is not channel or plan.opts is not opts \
                or plan.suite is not sa._suite:
            plan = _plan(sa, ctx, opts)
            sa._last_plan = plan
        if key_any not in plan.keys_any and (key_map == -1 or key_map not in plan.keys_map):
            _check_binding(plan, key_any, key_map, spi)
        data_off = plan.data_off
        mac_len = plan.mac_len
        data_end = n - ctx.trailer_len - mac_len
        if data_end < data_off:
            raise InvalidFrameLength(
                f"{ctx.frame_type} frame of {n} octets is too short for SA {spi} "
                f"(needs at least {n - data_end + data_off})", field="frame_length")
        mac_end = data_end + mac_len

        # ---- counters: full values from the transmitted octets
        window = sa.window
        iv = b""
        iv_val = -1
        iv_len = plan.iv_len
        if iv_len:
            iv_off = plan.iv_off
            tiv = plan.tiv
            if tiv == iv_len:
                iv = frame[iv_off:iv_off + tiv]
            else:
                rx = int.from_bytes(frame[iv_off:iv_off + tiv], "big")
                stored = sa.iv_counter.value
                if opts.increment_nontransmitted_iv:
                    iv_val = reconstruct(stored, rx, tiv, iv_len)
                    # the full IV is the nonce: a value outside the window cannot decrypt, so
                    # it is reported as what it is (a replay / a jump) before the MAC check
                    if iv_val >> (8 * iv_len) or (
                            opts.anti_replay and plan.guard_iv
                            and not stored < iv_val <= stored + window):
                        check_window("IV", stored, iv_val, window, iv_len,
                                     accept_zero=opts.accept_zero_counter)
                else:
                    iv_val = reconstruct_static(stored, rx, tiv, iv_len)
                iv = iv_val.to_bytes(iv_len, "big")
        sn = b""
        sn_val = 0
        sn_len = plan.sn_len
        if sn_len:
            tsn = plan.tsn
            stored_sn = sa.arsn_counter.value
            if tsn:
                sn_off = plan.sn_off
                sn_val = reconstruct(stored_sn, int.from_bytes(frame[sn_off:sn_off + tsn], "big"),
                                     tsn, sn_len)
                if sn_val >> (8 * sn_len):
                    check_window("ARSN", stored_sn, sn_val, window, sn_len)
            else:
                sn_val = stored_sn
            sn = sn_val.to_bytes(sn_len, "big")

        # ---- authenticate and decrypt (MAC before anti-replay: a forgery is "bad MAC")
        aead_open = plan.aead_open
        if aead_open is not None:
            aad = (int.from_bytes(frame[:data_off], "big") & plan.aad_mask).to_bytes(data_off,
                                                                                   "big")
            data = aead_open(iv, aad, frame[data_off:mac_end])
        else:
            data = _open_composite(plan, frame, iv, data_off, data_end, mac_end, spi)

        # ---- anti-replay window
        if opts.anti_replay:
            if plan.guard_sn:
                stored_sn = sa.arsn_counter.value
                if not stored_sn < sn_val <= stored_sn + window:
                    check_window("ARSN", stored_sn, sn_val, window, sn_len,
                                 accept_zero=opts.accept_zero_counter)
            if plan.guard_iv:
                if iv_val == -1:
                    iv_val = int.from_bytes(iv, "big")
                stored = sa.iv_counter.value
                if not stored < iv_val <= stored + window or not opts.increment_nontransmitted_iv:
                    modular = 0 if opts.increment_nontransmitted_iv or plan.tiv == iv_len \
                        else plan.tiv
                    check_window("IV", stored, iv_val, window, iv_len,
                                 accept_zero=opts.accept_zero_counter, modular_octets=modular)

        # ---- padding (block ciphers only: a pad length with a stream cipher is ignored)
        pad = 0
        if plan.block and plan.pl_len:
            pl_off = plan.pl_off
            pad = int.from_bytes(frame[pl_off:pl_off + plan.pl_len], "big")
            if pad > len(data) or pad > plan.block:
                raise PaddingError(f"pad length {pad} exceeds the block size or the data "
                                   f"({len(data)} octets)", field="pad_length", offset=pl_off)
            if pad:
                data = data[:-pad]

        # ---- commit: only now does state change (not when anti-replay/SA state are ignored)
        if opts.anti_replay and sa.state is _OPERATIONAL:
            if plan.guard_sn:
                sa.arsn_counter.commit(sn_val)
            if plan.guard_iv:
                sa.iv_counter.commit(iv_val)
    except SdlsQkdError as exc:
        if fsr is not None:
            fsr.rejected(exc, _spi_of(frame, channel))
        raise
    if fsr is not None:
        fsr.accepted(spi, sn)
    return _tuple_new(ProcessResult, (spi, data, sn, iv, _unprotected, frame, ctx, plan, data,
                                      data_end, pad))


_tuple_new = tuple.__new__


def _spi_of(frame: Any, channel: Channel) -> int | None:
    """The SPI of a rejected frame for the FSR, when it can be read."""
    try:
        off = channel.header_length
        if len(frame) >= off + 2:
            return (frame[off] << 8) | frame[off + 1]
    except Exception:  # noqa: BLE001 - FSR bookkeeping must never mask the real error
        return None
    return None


def _open_composite(plan: _Plan, frame: bytes, iv: bytes, data_off: int, data_end: int,
                    mac_end: int, spi: int) -> bytes:
    """Verify-then-decrypt for MAC suites, ciphers without MAC and clear mode."""
    suite = plan.suite
    if suite.mac is not None:
        expected = suite.mac.compute(iv, plan.masked(frame, data_end))
        if not compare_digest(expected, frame[data_end:mac_end]):
            raise MacVerificationFailure(f"MAC of SA {spi} does not verify", field="mac",
                                         offset=data_end)
    if suite.cipher is not None:
        return suite.cipher.decrypt(iv, frame[data_off:data_end])
    return frame[data_off:data_end]


def _unprotected(frame: bytes, ctx: _ChannelCtx, plan: _Plan, data: bytes, data_end: int,
                 pad: int) -> bytes:
    """The frame as apply takes it back (see ProcessResult.frame)."""
    n = len(frame)
    fecf_len = ctx.fecf_len
    sec_off = plan.sec_off
    if ctx.fixed_length is None:  # TC, variable USLP: remove header/trailer, rewrite length
        tail = frame[data_end + plan.mac_len: n - fecf_len]
        body = bytearray(frame[:sec_off]) + data + tail
        total = len(body) + fecf_len
        if ctx.frame_type == "TC":
            body[2] = (body[2] & 0xFC) | (((total - 1) >> 8) & 3)
            body[3] = (total - 1) & 0xFF
        else:
            body[4:6] = (total - 1).to_bytes(2, "big")
    else:  # fixed length: zero the slots, data in clear
        body = bytearray(frame[:n - fecf_len])
        body[sec_off:plan.data_off] = bytes(plan.data_off - sec_off)
        body[plan.data_off:data_end] = data + bytes(data_end - plan.data_off - len(data))
        body[data_end:data_end + plan.mac_len] = bytes(plan.mac_len)
    if fecf_len:
        body += _fecf_bytes(body, fecf_len)
    return bytes(body)


# --------------------------------------------------------------------------- fast paths
# The fast paths never raise and never decide a rejection: on anything unusual they return None
# and the reference path above runs and raises the precise error.  They cover the common
# configuration (strict default options, AEAD with a full 16-octet tag, the whole IV transmitted
# and used as the anti-replay counter, no SN, no pad length, one binding, one key) and are built
# once per plan (one SA on one channel), with every constant bound in a closure:
#
# * the header is read as ONE integer (``int.from_bytes`` of the octets up to the data field) and
#   checked against ONE mask/value pair covering version, GVCID (+ MAP ID), the flags that route a
#   frame elsewhere (TC control command, USLP protocol control command, truncation, VC frame count
#   length) and the SPI; the IV counter is the low bits of that integer;
# * the AAD is a constant when the ABM covers only bits that pair pins, else one mask of that int;
# * apply builds primary header + security header as one ``int.to_bytes`` and checksums the pieces
#   without joining them first (CRC-16 with a start value), so the frame is copied once.
#
# A plan's closures capture the SA's key and counter objects: anything that replaces them drops
# the SA's plans (SecurityAssociation._drop_plans); SA state, key state and the window are read
# on every call.

def _gvcid_word(ctx: _ChannelCtx, binding: Binding) -> tuple[int, int, int]:
    """(octets, mask, value): the binding, version and routing flags as bits of the first
    octets of a frame (TC: 6 octets incl. segment header; USLP: 7, incl. flag octet 6)."""
    ft = ctx.frame_type
    if ft == "TM":
        return 2, 0xFFFE, (binding.tfvn << 14) | (binding.scid << 4) | (binding.vcid << 1)
    if ft == "AOS":
        return 2, 0xFFFF, (binding.tfvn << 14) | (binding.scid << 6) | binding.vcid
    if ft == "TC":
        # version (00) and control command flag (0) in octet 0, SCID, VCID
        value = (binding.scid << 32) | (binding.vcid << 26)
        mask = 0xD3_FF_FC_00_00_00
        if ctx.hdr_len == 5:  # no segment header
            return 5, mask >> 8, value >> 8
        if binding.map_id is not None:
            mask |= 0x3F
            value |= binding.map_id
        return 6, mask, value
    # USLP (non-truncated): version, SCID, VCID, [MAP], end-of-header flag 0 (octets 0..3);
    # octet 6: protocol control command flag 0, VC frame count length of the channel
    vcf = getattr(ctx.channel, "vc_frame_count_length", 0)
    mask = 0xFF_FF_F7_E1
    value = (binding.tfvn << 28) | (binding.scid << 12) | (binding.vcid << 5)
    if binding.map_id is not None:
        mask |= 0x1E
        value |= binding.map_id << 1
    return 7, (mask << 24) | 0x47, (value << 24) | vcf


def _fast_eligible(ctx: _ChannelCtx, plan: _Plan, sa: SecurityAssociation,
                   opts: EngineOptions) -> tuple[Binding, SdlsKey] | None:
    """The one binding and the one key of a plan the fast paths cover, or None."""
    if opts != _DEFAULT_OPTIONS or plan.suite.aead is None or not plan.full_tag:
        return None
    if not plan.iv_len or plan.tiv != plan.iv_len or plan.sn_len or plan.tsn or plan.pl_len \
            or not plan.counter_iv or not plan.guard_iv or plan.block:
        return None
    if ctx.frame_type == "USLP" and getattr(ctx.channel, "truncated", True):
        return None
    bindings = [b for b in sa.bindings if b.frame_type == ctx.frame_type]
    keys = sa.held_keys()
    if len(bindings) != 1 or len(keys) != 1:
        return None
    if ctx.frame_type == "TC" and ctx.hdr_len != 6 and bindings[0].map_id is not None:
        return None  # a MAP binding without segment header matches nothing: reference decides
    return bindings[0], keys[0]


def _header_pattern(ctx: _ChannelCtx, plan: _Plan, binding: Binding,
                    upto: int) -> tuple[int, int]:
    """(mask, value) over the first ``upto`` octets (sec_off or data_off) of a frame."""
    width, gmask, gval = _gvcid_word(ctx, binding)
    shift = 8 * (upto - width)
    mask, value = gmask << shift, gval << shift
    if upto > plan.sec_off:  # the SPI
        spi_shift = 8 * (upto - plan.sec_off - 2)
        mask |= 0xFFFF << spi_shift
        value |= int.from_bytes(plan.spi_bytes, "big") << spi_shift
    return mask, value


def _length_field(ctx: _ChannelCtx, upto: int) -> tuple[int, int]:
    """(shift, mask) of the frame length field in the first ``upto`` octets read as an int
    (mask 0: the frame type has none)."""
    if ctx.frame_type == "TC":
        return 8 * (upto - 4), 0x3FF
    if ctx.frame_type == "USLP":
        return 8 * (upto - 6), 0xFFFF
    return 0, 0


def _make_plan_fast(ctx: _ChannelCtx, plan: _Plan, sa: SecurityAssociation,
                    opts: EngineOptions) -> Callable[[bytes], ProcessResult | None] | None:
    """The whole ProcessSecurity of the common configuration as one closure, or None."""
    eligible = _fast_eligible(ctx, plan, sa, opts)
    if eligible is None:
        return None
    binding, key = eligible
    # the AEAD's own C-level decrypt (full 16-octet tag): no Python frame in between
    decrypt = plan.suite.aead.native.decrypt  # type: ignore[union-attr]
    iv_off = plan.iv_off
    data_off = plan.data_off  # == iv_off + iv_len: no SN, no pad length
    hmask, hval = _header_pattern(ctx, plan, binding, data_off)
    ivmask = (1 << (8 * plan.iv_len)) - 1
    aad_mask = plan.aad_mask
    const_aad = None if aad_mask & ~hmask else (hval & aad_mask).to_bytes(data_off, "big")
    tail = ctx.trailer_len + 16  # MAC, OCF, FECF
    fecf_len = ctx.fecf_len
    crc: Callable[[bytes], int] | None = crc16 if fecf_len == 2 else \
        (crc32_uslp if fecf_len == 4 else None)
    counter = sa.iv_counter
    direct = type(counter) is MemoryCounter  # written directly; anything else via commit()
    spi = sa.spi
    from_bytes = int.from_bytes
    operational, active = _OPERATIONAL, _ACTIVE
    new, result_type, builder = _tuple_new, ProcessResult, _unprotected
    fixed = ctx.fixed_length
    lshift, lmask = _length_field(ctx, data_off)
    lo = data_off + tail
    hi = ctx.max_length if fixed is None else fixed
    if fixed is not None and fixed < lo:  # pragma: no cover - _Plan refuses such an SA
        return None

    if fixed is not None and not lmask and const_aad is not None and direct \
            and crc is not None:
        data_end = fixed - ctx.trailer_len
        mac_start = data_end - 16

        def fast_fixed(frame: bytes) -> ProcessResult | None:
            """TM / AOS, FECF, constant AAD, in-memory counter: the commonest case."""
            if len(frame) != fixed or crc(frame) or sa.state is not operational \
                    or key.state is not active:
                return None
            w = from_bytes(frame[:data_off], "big")
            if w & hmask != hval:
                return None
            value = w & ivmask
            stored = counter.value
            if not stored < value <= stored + sa.window:
                return None
            iv = frame[iv_off:data_off]
            try:
                data = decrypt(iv, frame[data_off:data_end], const_aad)
            except InvalidTag:
                return None
            counter.value = value  # type: ignore[misc]
            return new(result_type, (spi, data, b"", iv, builder, frame, ctx, plan, data,
                                     mac_start, 0))

        return fast_fixed

    trailer = ctx.trailer_len

    def fast(frame: bytes) -> ProcessResult | None:
        n = len(frame)
        if n < lo or n > hi or (fixed is not None and n != fixed) \
                or (crc is not None and crc(frame)) or sa.state is not operational \
                or key.state is not active:
            return None
        w = from_bytes(frame[:data_off], "big")
        if w & hmask != hval or (lmask and ((w >> lshift) & lmask) + 1 != n):
            return None
        value = w & ivmask
        stored = counter.value
        if not stored < value <= stored + sa.window:
            return None
        iv = frame[iv_off:data_off]
        data_end = n - trailer
        try:
            data = decrypt(iv, frame[data_off:data_end], const_aad if const_aad is not None
                           else (w & aad_mask).to_bytes(data_off, "big"))
        except InvalidTag:
            return None
        if direct:
            counter.value = value  # type: ignore[misc]
        else:
            counter.commit(value)
        return new(result_type, (spi, data, b"", iv, builder, frame, ctx, plan, data,
                                 data_end - 16, 0))

    return fast


try:  # CRC-16 with a start value, to checksum a frame built from pieces without joining first
    from fastcrc import crc16 as _fastcrc16

    _chain: Callable[..., int] = _fastcrc16.ibm_3740
    _CRC16_CHAIN: Callable[..., int] | None = _chain
    if _chain(b"56789", _chain(b"1234")) != 0x29B1:  # pragma: no cover
        _CRC16_CHAIN = None
except (ImportError, TypeError):  # pragma: no cover - fastcrc missing or without ``initial``
    _CRC16_CHAIN = None


def _make_apply_fast(ctx: _ChannelCtx, plan: _Plan, sa: SecurityAssociation,
                     opts: EngineOptions) -> Callable[[bytes], bytes | None] | None:
    """The whole ApplySecurity of the common configuration as one closure, or None.

    Like the process fast path it never raises: anything unusual returns None and the
    reference path decides.
    """
    eligible = _fast_eligible(ctx, plan, sa, opts)
    if eligible is None:
        return None
    binding, key = eligible
    encrypt = plan.suite.aead.native.encrypt  # type: ignore[union-attr]
    sec_off = plan.sec_off
    iv_off = plan.iv_off
    data_off = plan.data_off
    iv_len = plan.iv_len
    hmask, hval = _header_pattern(ctx, plan, binding, sec_off)
    # the security header (SPI, IV) appended to the header int: (header << shift) | word | iv
    shift = 8 * (data_off - sec_off)
    spi_word = int.from_bytes(plan.spi_bytes, "big") << (8 * iv_len)
    full_mask, full_val = _header_pattern(ctx, plan, binding, data_off)
    aad_mask = plan.aad_mask
    # constant AAD only when the mask covers pinned bits and never the length field
    lshift, lmask = _length_field(ctx, sec_off)
    length_bits = (lmask << lshift) << shift
    const_aad = None if aad_mask & (~full_mask | length_bits) else \
        (full_val & aad_mask).to_bytes(data_off, "big")
    counter = sa.iv_counter
    direct = type(counter) is MemoryCounter
    top = (1 << (8 * iv_len)) - 1
    fecf_len = ctx.fecf_len
    trailer = ctx.trailer_len
    chain = _CRC16_CHAIN if fecf_len == 2 else None
    crc: Callable[[bytes], int] | None = crc16 if fecf_len == 2 else \
        (crc32_uslp if fecf_len == 4 else None)
    fixed = ctx.fixed_length
    from_bytes = int.from_bytes
    join = b"".join
    operational, active = _OPERATIONAL, _ACTIVE
    exhausted = SdlsQkdError

    def seal(head: int, plaintext: bytes, tail: bytes) -> bytes | None:
        """Take the next IV, encrypt, append tail and FECF, commit the counter."""
        if direct:
            value = counter.value
            if value >= top:
                return None  # exhausted: the reference path raises CounterExhausted
        else:
            try:
                value = counter.next()
            except exhausted:
                return None
        prefix_int = (head << shift) | spi_word | value
        prefix = prefix_int.to_bytes(data_off, "big")
        sealed = encrypt(prefix[iv_off:], plaintext, const_aad if const_aad is not None
                         else (prefix_int & aad_mask).to_bytes(data_off, "big"))
        if chain is not None:  # CRC-16 over the pieces: the frame is copied once, by join
            if tail:
                body = join((prefix, sealed, tail, chain(tail, chain(sealed, chain(prefix)))
                             .to_bytes(2, "big")))
            else:
                body = join((prefix, sealed, chain(sealed, chain(prefix)).to_bytes(2, "big")))
        else:
            body = join((prefix, sealed, tail))
            if crc is not None:
                body += crc(body).to_bytes(fecf_len, "big")
        if direct:
            counter.value = value + 1  # type: ignore[misc]
        else:
            counter.commit(value + 1)
        return body

    if fixed is not None:
        data_end = fixed - trailer - 16
        if data_end < data_off:  # pragma: no cover - _Plan refuses such an SA
            return None
        mac_end = data_end + 16
        tail_end = fixed - fecf_len
        has_tail = mac_end < tail_end

        def fast_apply_fixed(frame: bytes) -> bytes | None:
            if len(frame) != fixed or sa.state is not operational or key.state is not active:
                return None
            w = from_bytes(frame[:sec_off], "big")
            if w & hmask != hval or (lmask and ((w >> lshift) & lmask) + 1 != fixed):
                return None
            tail = frame[mac_end:tail_end] if has_tail else b""
            return seal(w, frame[data_off:data_end], tail)

        return fast_apply_fixed

    overhead = data_off - sec_off + 16
    hi = ctx.max_length - overhead
    lo = sec_off + trailer
    keep = ~(lmask << lshift)

    def fast_apply(frame: bytes) -> bytes | None:
        n = len(frame)
        if n < lo or n > hi or sa.state is not operational or key.state is not active:
            return None
        w = from_bytes(frame[:sec_off], "big")
        if w & hmask != hval or ((w >> lshift) & lmask) + 1 != n:
            return None
        head = (w & keep) | ((n + overhead - 1) << lshift)
        plaintext = frame[sec_off:n - trailer]
        tail = frame[n - trailer:n - fecf_len]
        return seal(head, plaintext, tail)

    return fast_apply


# --------------------------------------------------------------------------- apply
def apply_security(frame: bytes, channel: Channel, sa: SecurityAssociation,
                   options: EngineOptions | None = None) -> bytes:
    """ApplySecurity: protect one frame with ``sa`` (see SCHEMA "Inputs for apply").

    TC / variable USLP: the unprotected frame (FECF slot included when the channel has one);
    the security header and trailer are inserted and the length field rewritten.  TM / AOS /
    fixed USLP: the fixed-length frame with zeroed slots; they are filled.  The FECF is computed
    last.  The SA's counters advance only on success; a counter at its maximum raises
    CounterExhausted (never wraps).  TC control command frames (COP-1) are not secured: they
    raise InvalidHeader and go out in clear on their own path.
    """
    if options is None and type(frame) is bytes:
        try:
            plan = sa._last_plan
        except AttributeError:  # not an SA: the reference path says so
            plan = None
        if plan is not None and plan.tx_channel is channel:
            out = plan.fast_apply(frame)
            if out is not None:
                return out
    opts = options or _DEFAULT_OPTIONS
    if not isinstance(frame, bytes | bytearray | memoryview):
        raise InvalidFrameLength("frame must be bytes", field="frame")
    frame = bytes(frame)
    if not isinstance(sa, SecurityAssociation):
        raise InvalidConfiguration("sa must be a SecurityAssociation", field="sa")
    ctx = _ctx(channel)
    n = len(frame)
    variable = ctx.fixed_length is None
    min_len = ctx.hdr_len + ctx.fecf_len + (0 if variable else ctx.ocf_len)
    if n < max(min_len, 6 if ctx.frame_type != "USLP" else 4):
        raise InvalidFrameLength(f"{ctx.frame_type} frame needs at least {min_len} octets, "
                                 f"got {n}", field="frame_length")
    if ctx.frame_type == "TC":
        # the input's length field counts the unprotected frame; the maximum applies to output
        key_any, key_map, control = _check_tc(frame, n, ctx, True)
        if control:
            raise InvalidHeader("TC control command frames (COP-1) are not secured by SDLS",
                                field="control_command_flag", offset=0)
    else:
        key_any, key_map, control = ctx.check(frame, n, ctx, True)
        if control:
            raise InvalidHeader("USLP protocol control command frames are not secured by SDLS",
                                field="protocol_control_command_flag", offset=6)
    spi = sa.spi
    _sa_usable(sa, spi, opts)
    _check_keys(sa, spi)
    plan = _plan(sa, ctx, opts)
    if opts is _DEFAULT_OPTIONS:
        sa._last_plan = plan
    _check_binding(plan, key_any, key_map, spi)
    suite = plan.suite
    sec_off = plan.sec_off
    data_off = plan.data_off
    sec_len = data_off - sec_off

    # counter values for this frame (nothing committed yet)
    iv_used: int | None = None
    iv = b""
    if plan.iv_len:
        if opts.iv_override is not None:
            if len(opts.iv_override) != plan.iv_len:
                raise InvalidConfiguration(f"iv_override must be {plan.iv_len} octets",
                                           field="iv")
            iv = bytes(opts.iv_override)
            iv_used = int.from_bytes(iv, "big")
            if plan.counter_iv and iv_used >= (1 << (8 * plan.iv_len)) - 1:
                sa.iv_counter.next()  # raises if the stored one is exhausted too
        elif plan.send_iv and plan.iv_mode == IvMode.RANDOM:
            iv = os.urandom(plan.iv_len)
        elif plan.counter_iv:
            iv_used = sa.iv_counter.next()
            iv = iv_used.to_bytes(plan.iv_len, "big")
        else:
            iv = sa.iv  # transmitted as held (clear mode with quirk, or no IV use)
    sn_used: int | None = None
    sn = b""
    if plan.sn_len:
        if plan.guard_sn:
            sn_used = sa.arsn_counter.next()
            sn = sn_used.to_bytes(plan.sn_len, "big")
        else:
            sn = sa.arsn

    if variable:
        payload = frame[sec_off:n - ctx.trailer_len]
        if ctx.frame_type == "TC" and ctx.hdr_len == 6 and not payload and n < 6:
            raise InvalidFrameLength("TC frame lacks its segment header", field="frame_length")
        plaintext = payload
        pad = 0
        if suite.cipher is not None and plan.block:
            pad = plan.block - (len(plaintext) % plan.block)
            if not plan.pl_len:
                raise InvalidConfiguration(
                    f"SA {spi} pads for {suite.cipher.name} but has no pad length field",
                    field="pad_length_field_length")
            plaintext = plaintext + bytes([pad]) * pad
        total = n + sec_len + len(plaintext) - len(payload) + plan.mac_len
        if total > ctx.max_length:
            raise InvalidFrameLength(
                f"protected {ctx.frame_type} frame of {total} octets exceeds the maximum "
                f"{ctx.max_length}", field="frame_length")
        out = bytearray(total)
        out[:sec_off] = frame[:sec_off]
        if ctx.frame_type == "TC":
            out[2] = (out[2] & 0xFC) | (((total - 1) >> 8) & 3)
            out[3] = (total - 1) & 0xFF
        else:
            out[4:6] = (total - 1).to_bytes(2, "big")
        data_end = data_off + len(plaintext)
    else:
        out = bytearray(frame)
        data_end = plan.fixed_data_end  # type: ignore[assignment]
        plaintext = frame[data_off:data_end]
        pad = 0
        if suite.cipher is not None and plan.block and len(plaintext) % plan.block:
            raise InvalidFrameLength(
                f"{suite.cipher.name} needs a data field that is a multiple of {plan.block} "
                f"octets in a fixed-length frame; it has {len(plaintext)}", field="data")
    mac_end = data_end + plan.mac_len

    # security header
    out[sec_off:sec_off + 2] = plan.spi_bytes
    if plan.tiv:
        out[plan.iv_off:plan.iv_off + plan.tiv] = iv[len(iv) - plan.tiv:]
    if plan.tsn:
        out[plan.sn_off:plan.sn_off + plan.tsn] = sn[len(sn) - plan.tsn:]
    if plan.pl_len:
        out[plan.pl_off:data_off] = pad.to_bytes(plan.pl_len, "big")

    # protect
    if plan.aead_seal is not None:
        aad = (int.from_bytes(out[:data_off], "big") & plan.aad_mask).to_bytes(data_off, "big")
        out[data_off:mac_end] = plan.aead_seal(iv, aad, plaintext)
    else:
        if suite.cipher is not None:
            out[data_off:data_end] = suite.cipher.encrypt(iv, plaintext)
        else:
            out[data_off:data_end] = plaintext
        if suite.mac is not None:
            out[data_end:mac_end] = suite.mac.compute(iv, plan.masked(out, data_end))
        elif plan.mac_len:
            out[data_end:mac_end] = bytes(plan.mac_len)  # reserved MAC field (quirk)
    if variable:
        out[mac_end:] = frame[n - ctx.trailer_len:]  # OCF (USLP) and FECF slot
    if ctx.fecf_len:
        body_end = len(out) - ctx.fecf_len
        if opts.compute_fecf:  # else quirk fecf_not_computed: the slot stays as given
            out[body_end:] = _fecf_bytes(out[:body_end], ctx.fecf_len)

    # commit counters
    if iv_used is not None and plan.counter_iv:
        if opts.increment_nontransmitted_iv:
            sa.iv_counter.commit(iv_used + 1)
        else:
            sa.iv_counter.commit(sender_next_static(iv_used, plan.tiv, plan.iv_len))
    if sn_used is not None:
        sa.arsn_counter.commit(sn_used + 1)
    return bytes(out)
