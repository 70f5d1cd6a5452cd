"""Regression corpus: one input per class of the memory-safety bugs reported against CryptoLib.

CryptoLib (NASA's C SDLS library) has had a run of security advisories in which a frame's own
fields steered memory accesses: a zero or lying frame length, a secondary-header length read
from the frame, an SPI used as a table index, IV/MAC lengths larger than what is left of the
frame, an insert zone longer than the frame.  Python does not overflow buffers, but the same
inputs can still escape as IndexError, struct.error or ValueError, or be accepted: each case
here must be rejected with the typed :mod:`sdls_qkd.errors` exception it names.

Every case is a self-contained text file (``vectors/cve/<name>.hex``): a ``#`` comment header
saying the class, what the input does, the target, the channel and SA (schema objects, test keys)
and the expected error name, then the input as hex.  :func:`write_corpus` writes them
(deterministically), :func:`load_case` reads one back and :func:`run_case` runs it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from sdls_qkd.errors import InvalidConfiguration, SdlsQkdError
from sdls_qkd.framing.channel import (
    AosChannel,
    Channel,
    TcChannel,
    TmChannel,
    UslpChannel,
    channel_from_dict,
)
from sdls_qkd.framing.crc import fecf as fecf_value
from sdls_qkd.security.layout import make_sa
from sdls_qkd.security.sa import SecurityAssociation

__all__ = [
    "CLASSES",
    "TARGETS",
    "CveCase",
    "build_cases",
    "format_case",
    "load_case",
    "parse_case",
    "run_case",
    "write_corpus",
]

#: class name -> what went wrong in CryptoLib (one line each)
CLASSES: Final[dict[str, str]] = {
    "zero-frame-length": "a frame (or length field) of zero octets made length arithmetic "
                         "underflow into a huge size",
    "length-field-exceeds-buffer": "a length field larger than the received buffer was trusted "
                                   "and read past its end",
    "secondary-header-length-overflow": "the TM secondary header length was taken from the "
                                        "frame and used as an offset",
    "spi-beyond-table": "the SPI read from the frame indexed the SA table without a bound check",
    "iv-mac-lengths-do-not-fit": "the SA's IV / SN / MAC lengths were subtracted from a frame "
                                 "too short to hold them",
    "insert-zone-overrun": "the insert zone length reached past the end of a short frame",
}

KEY: Final = bytes(range(0x40, 0x60))  # a test key (32 octets), never a real one


@dataclass(frozen=True)
class CveCase:
    """One regression input and what must happen to it."""

    name: str
    cls: str
    about: str
    target: str
    data: bytes
    expected_error: str
    frame_type: str | None = None
    channel: dict[str, Any] | None = None
    sa: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# =========================================================================== targets
def _channel(case: CveCase) -> Channel:
    if case.frame_type is None or case.channel is None:
        raise InvalidConfiguration(f"case {case.name} has no channel")
    return channel_from_dict(case.frame_type, case.channel)


def _sa(case: CveCase, channel: Channel) -> SecurityAssociation:
    if case.sa is None or case.frame_type is None:
        raise InvalidConfiguration(f"case {case.name} has no SA")
    return SecurityAssociation.from_schema(case.sa, frame_type=case.frame_type, channel=channel)


def _process(case: CveCase) -> Any:
    from sdls_qkd.security.engine import process_security

    channel = _channel(case)
    sa = _sa(case, channel)
    before = sa.snapshot()
    try:
        return process_security(case.data, channel, {sa.spi: sa})
    finally:
        if sa.snapshot() != before:
            raise AssertionError(f"{case.name}: the SA changed on a rejected frame")


def _apply(case: CveCase) -> Any:
    from sdls_qkd.security.engine import apply_security

    channel = _channel(case)
    return apply_security(case.data, channel, _sa(case, channel))


def _parse(case: CveCase) -> Any:
    channel = _channel(case)
    if isinstance(channel, TcChannel):
        from sdls_qkd.framing.tc import TcFrame

        return TcFrame.unpack(case.data, channel)
    if isinstance(channel, TmChannel):
        from sdls_qkd.framing.tm import TmFrame

        return TmFrame.unpack(case.data, channel)
    if isinstance(channel, AosChannel):
        from sdls_qkd.framing.aos import AosFrame

        return AosFrame.unpack(case.data, channel)
    from sdls_qkd.framing.uslp import UslpFrame

    return UslpFrame.unpack(case.data, channel)


def _space_packet(case: CveCase) -> Any:
    from sdls_qkd.framing.space_packet import SpacePacket

    return SpacePacket.unpack(case.data)


def _ep_pdu(case: CveCase) -> Any:
    from sdls_qkd.procedures.pdu import Pdu

    return Pdu.unpack(case.data)


def _dissect(case: CveCase) -> Any:
    """The dissector reports instead of raising: its error is re-raised here."""
    from sdls_qkd.dissect import dissect

    result = dissect(case.data, case.frame_type)
    if result.error is not None:
        raise result.error
    return result


TARGETS: Final[dict[str, Callable[[CveCase], Any]]] = {
    "process_security": _process,
    "apply_security": _apply,
    "frame_parser": _parse,
    "space_packet": _space_packet,
    "ep_pdu": _ep_pdu,
    "dissect": _dissect,
}


def run_case(case: CveCase) -> SdlsQkdError | None:
    """Run a case; returns the library error it raised (None if it was accepted).

    Anything else (IndexError, struct.error, ...) propagates: that is the bug the case guards.
    """
    try:
        target = TARGETS[case.target]
    except KeyError:
        raise InvalidConfiguration(f"unknown target {case.target!r}") from None
    try:
        target(case)
    except SdlsQkdError as exc:
        return exc
    return None


# =========================================================================== frames
def _fecf(body: bytes, channel: Channel) -> bytes:
    if not channel.has_fecf:
        return body
    return body + fecf_value(body, channel.fecf_length).to_bytes(channel.fecf_length, "big")


def _tc_header(channel: TcChannel, length_field: int) -> bytes:
    return bytes([channel.scid >> 8, channel.scid & 0xFF,
                  (channel.vcid << 2) | ((length_field >> 8) & 3), length_field & 0xFF, 0])


def _tc_frame(channel: TcChannel, body: bytes, length_field: int | None = None) -> bytes:
    """TC frame (Type-AD) around ``body``; the length field is right unless given."""
    total = 5 + len(body) + (2 if channel.has_fecf else 0)
    return _fecf(_tc_header(channel, total - 1 if length_field is None else length_field) + body,
                 channel)


def _uslp_header(channel: UslpChannel, length_field: int) -> bytes:
    word = (12 << 28) | (channel.scid << 12) | (channel.vcid << 5) | (channel.map_id << 1)
    return word.to_bytes(4, "big") + length_field.to_bytes(2, "big") + \
        bytes([channel.vc_frame_count_length]) + bytes(channel.vc_frame_count_length)


def _uslp_frame(channel: UslpChannel, body: bytes, length_field: int | None = None) -> bytes:
    """Variable-length USLP frame around ``body``; the length field is right unless given."""
    total = channel.header_length + len(body) + channel.trailer_length
    head = _uslp_header(channel, total - 1 if length_field is None else length_field)
    return _fecf(head + bytes(channel.insert_zone_length) + body, channel)


def _sa_dict(channel: Channel, **kw: Any) -> dict[str, Any]:
    sa = make_sa(kw.pop("spi", 7), channel, key=KEY, **kw)
    return sa.to_schema()


def _sdls_body(spi: int, iv_octets: int, data: bytes, mac_octets: int) -> bytes:
    return spi.to_bytes(2, "big") + bytes(range(1, iv_octets + 1)) + data + \
        bytes([0xA5]) * mac_octets


# =========================================================================== the cases
def build_cases() -> list[CveCase]:
    """Every case, in file-name order (deterministic)."""
    tc = TcChannel(scid=0x123, vcid=3, max_frame_length=1024)
    tc_sa = _sa_dict(tc)
    tm = TmChannel(scid=0x2A, vcid=2, frame_length=64, has_ocf=False)
    tm_sa = _sa_dict(tm)
    tm_sh = TmChannel(scid=0x2A, vcid=2, frame_length=64, secondary_header_length=4)
    aos_iz = AosChannel(scid=0x55, vcid=4, frame_length=96, insert_zone_length=40)
    aos_iz_sa = _sa_dict(aos_iz)
    uslp = UslpChannel(scid=0xBEEF, vcid=5, map_id=1, vc_frame_count_length=1,
                       max_frame_length=2048)
    uslp_sa = _sa_dict(uslp)
    uslp_iz = UslpChannel(scid=0xBEEF, vcid=5, map_id=1, vc_frame_count_length=1,
                          insert_zone_length=40, max_frame_length=2048)
    uslp_iz_sa = _sa_dict(uslp_iz)
    tm_tight = TmChannel(scid=0x2A, vcid=2, frame_length=36, has_ocf=False)
    tm_tight_sa = _sa_dict(tm_tight)  # 6 + 2 + 12 + 16 + 2 = 38 > 36 octets

    def sdls(name: str, cls: str, about: str, target: str, data: bytes, error: str,
             channel: Channel, sa: dict[str, Any] | None) -> CveCase:
        return CveCase(name, cls, about, target, data, error, channel.frame_type,
                       channel.to_dict(), sa)

    good_tc_body = _sdls_body(7, 12, b"\x11" * 8, 16)
    tm_frame = bytearray(64)
    tm_frame[0:2] = ((0x2A << 4) | (2 << 1)).to_bytes(2, "big")
    tm_frame[4:6] = (0x1800 | 0x7FF).to_bytes(2, "big")
    tm_frame[6:8] = (0xFFFF).to_bytes(2, "big")  # SPI 65535
    tm_spi = _fecf(bytes(tm_frame[:62]), tm)
    tm_sh_frame = bytearray(64)
    tm_sh_frame[0:2] = ((0x2A << 4) | (2 << 1)).to_bytes(2, "big")
    tm_sh_frame[4:6] = (0x8000 | 0x1800 | 0x7FF).to_bytes(2, "big")
    tm_sh_frame[6] = 0x3F  # secondary header length field 63: 64 octets, channel says 4
    tm_sh_bytes = _fecf(bytes(tm_sh_frame[:62]), tm_sh)
    aos_short = _fecf(((1 << 14) | (0x55 << 6) | 4).to_bytes(2, "big") + bytes(4)
                      + bytes(20), aos_iz)

    cases = [
        # ---- zero frame length
        sdls("tc-process-empty-frame", "zero-frame-length",
             "ProcessSecurity of a TC frame of zero octets", "process_security", b"",
             "InvalidFrameLength", tc, tc_sa),
        sdls("tc-process-length-field-zero", "zero-frame-length",
             "TC length field 0 (one octet) on a full frame; FECF valid", "process_security",
             _tc_frame(tc, good_tc_body, length_field=0), "InvalidFrameLength", tc, tc_sa),
        sdls("uslp-process-length-field-zero", "zero-frame-length",
             "USLP frame length field 0 (one octet) on a full frame; FECF valid",
             "process_security", _uslp_frame(uslp, good_tc_body, 0),
             "InvalidFrameLength", uslp, uslp_sa),
        sdls("tm-parse-empty-frame", "zero-frame-length", "TM frame parser given zero octets",
             "frame_parser", b"", "InvalidFrameLength", tm, None),
        CveCase("space-packet-empty", "zero-frame-length", "Space Packet parser given zero "
                "octets", "space_packet", b"", "InvalidFrameLength"),
        # ---- length field larger than the buffer
        sdls("tc-process-length-field-1024", "length-field-exceeds-buffer",
             f"TC length field says 1024 octets, {len(_tc_frame(tc, good_tc_body))} given; "
             "FECF valid", "process_security",
             _tc_frame(tc, good_tc_body, length_field=1023), "InvalidFrameLength", tc, tc_sa),
        sdls("tc-apply-length-field-exceeds-buffer", "length-field-exceeds-buffer",
             "ApplySecurity input whose TC length field says 1000 octets, 20 given",
             "apply_security", _tc_header(tc, 999) + bytes(13) + bytes(2),
             "InvalidFrameLength", tc, tc_sa),
        sdls("uslp-process-length-field-65536", "length-field-exceeds-buffer",
             f"USLP frame length field says 65536 octets, {len(_uslp_frame(uslp, good_tc_body))}"
             " given; FECF valid",
             "process_security", _uslp_frame(uslp, good_tc_body, 0xFFFF),
             "InvalidFrameLength", uslp, uslp_sa),
        CveCase("space-packet-length-exceeds-buffer", "length-field-exceeds-buffer",
                "Space Packet data length field says 65536 octets, 10 given", "space_packet",
                bytes([0x08, 0x01, 0xC0, 0x00, 0xFF, 0xFF]) + bytes(10), "InvalidFrameLength"),
        CveCase("ep-pdu-length-exceeds-buffer", "length-field-exceeds-buffer",
                "SDLS-EP PDU length field says 8191 data octets, 4 given", "ep_pdu",
                bytes([0x19, 0xFF, 0xF8]) + bytes(4), "InvalidProcedure"),
        # ---- secondary header length overflow
        sdls("tm-parse-secondary-header-length-63", "secondary-header-length-overflow",
             "TM secondary header length field 63 (64 octets) where the channel has 4; FECF "
             "valid", "frame_parser", tm_sh_bytes, "InvalidHeader", tm_sh, None),
        CveCase("tm-dissect-secondary-header-length-63", "secondary-header-length-overflow",
                "dissector on a 20-octet TM frame whose secondary header claims 64 octets",
                "dissect", bytes(tm_sh_bytes[:6]) + b"\x3f" + bytes(13), "InvalidFrameLength",
                "TM"),
        # ---- SPI beyond the table
        sdls("tc-process-spi-65535", "spi-beyond-table",
             "TC frame with SPI 65535 (table holds SPI 7); FECF valid", "process_security",
             _tc_frame(tc, _sdls_body(0xFFFF, 12, b"\x11" * 8, 16)), "InvalidSpi", tc, tc_sa),
        sdls("tm-process-spi-65535", "spi-beyond-table",
             "TM frame with SPI 65535 (table holds SPI 7); FECF valid", "process_security",
             tm_spi, "InvalidSpi", tm, tm_sa),
        sdls("uslp-process-spi-0", "spi-beyond-table",
             "USLP frame with SPI 0 (reserved; table holds SPI 7); FECF valid",
             "process_security", _uslp_frame(uslp, _sdls_body(0, 12, b"\x11" * 8, 16)),
             "InvalidSpi", uslp, uslp_sa),
        # ---- IV / MAC lengths that do not fit
        sdls("tc-process-iv-cut-short", "iv-mac-lengths-do-not-fit",
             "TC frame ending 4 octets into a 12-octet IV; length field and FECF valid",
             "process_security", _tc_frame(tc, (7).to_bytes(2, "big") + bytes(4)),
             "InvalidFrameLength", tc, tc_sa),
        sdls("tc-process-mac-cut-short", "iv-mac-lengths-do-not-fit",
             "TC frame with SPI and IV but only 10 of 16 MAC octets; length field and FECF "
             "valid", "process_security", _tc_frame(tc, _sdls_body(7, 12, b"", 10)),
             "InvalidFrameLength", tc, tc_sa),
        sdls("tm-process-overhead-exceeds-frame", "iv-mac-lengths-do-not-fit",
             "36-octet TM frame; the SA needs 6 + 2 + 12 + 16 + 2 = 38 octets", "process_security",
             _fecf(bytes([0x02, 0xA4]) + bytes(2) + b"\x1f\xff" + (7).to_bytes(2, "big")
                   + bytes(26), tm_tight), "InvalidFrameLength", tm_tight, tm_tight_sa),
        # ---- insert zone overrun
        sdls("aos-process-insert-zone-overrun", "insert-zone-overrun",
             f"{len(aos_short)}-octet frame on an AOS channel with a 40-octet insert zone "
             "(96-octet frames)",
             "process_security", aos_short, "InvalidFrameLength", aos_iz, aos_iz_sa),
        sdls("aos-parse-insert-zone-overrun", "insert-zone-overrun",
             f"AOS parser: {len(aos_short)}-octet frame, 40-octet insert zone", "frame_parser",
             aos_short,
             "InvalidFrameLength", aos_iz, None),
        sdls("uslp-process-insert-zone-overrun", "insert-zone-overrun",
             "variable USLP frame of 20 octets (length field and FECF valid) on a channel with "
             "a 40-octet insert zone", "process_security",
             _fecf(_uslp_header(uslp_iz, 19) + bytes(10), uslp_iz), "InvalidFrameLength",
             uslp_iz, uslp_iz_sa),
    ]
    return sorted(cases, key=lambda c: c.name)


# =========================================================================== files
_PREFIX: Final = "# "


def format_case(case: CveCase) -> str:
    """The text of a case file: comment header, then the input hex (32 octets per line)."""
    lines = [
        "sdls-qkd CVE-class regression input (vectors/cve; regenerate: sdls-qkd fuzz cve)",
        f"class: {case.cls} -- {CLASSES[case.cls]}",
        f"about: {case.about}",
        f"target: {case.target}",
        f"expected_error: {case.expected_error}",
    ]
    if case.frame_type is not None:
        lines.append(f"frame_type: {case.frame_type}")
    if case.channel is not None:
        lines.append("channel: " + json.dumps(case.channel, sort_keys=True))
    if case.sa is not None:
        lines.append("sa: " + json.dumps(case.sa, sort_keys=True))
    lines.append(f"octets: {len(case.data)}")
    hexlines = [case.data[i:i + 32].hex() for i in range(0, len(case.data), 32)]
    return "\n".join(_PREFIX + line for line in lines) + "\n" + "".join(
        h + "\n" for h in hexlines)


def parse_case(text: str, *, name: str = "<case>") -> CveCase:
    """Read a case file back (InvalidConfiguration names what is wrong)."""
    meta: dict[str, str] = {}
    hexparts: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            key, sep, value = line[1:].strip().partition(": ")
            if sep:
                meta[key] = value
            continue
        hexparts.append(line)
    try:
        data = bytes.fromhex("".join(hexparts))
        cls = meta["class"].split(" -- ")[0]
        case = CveCase(
            name=name, cls=cls, about=meta["about"], target=meta["target"], data=data,
            expected_error=meta["expected_error"], frame_type=meta.get("frame_type"),
            channel=json.loads(meta["channel"]) if "channel" in meta else None,
            sa=json.loads(meta["sa"]) if "sa" in meta else None)
    except (KeyError, ValueError) as exc:
        raise InvalidConfiguration(f"{name}: not a CVE case file ({exc})") from None
    if cls not in CLASSES:
        raise InvalidConfiguration(f"{name}: unknown class {cls!r}")
    if int(meta.get("octets", len(data))) != len(data):
        raise InvalidConfiguration(f"{name}: header says {meta['octets']} octets, hex has "
                                   f"{len(data)}")
    return case


def load_case(path: str | Path) -> CveCase:
    path = Path(path)
    return parse_case(path.read_text(), name=path.stem)


def write_corpus(out_dir: str | Path) -> list[Path]:
    """Write every case as ``<name>.hex`` into ``out_dir``; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for case in build_cases():
        path = out / f"{case.name}.hex"
        path.write_text(format_case(case))
        paths.append(path)
    return paths
