"""Fuzz targets: one function per parser and per ProcessSecurity / EP entry point.

Each target takes one fuzzer input and returns normally or raises an :mod:`sdls_qkd.errors`
exception; anything else escaping is a crash (so is an :class:`AssertionError` from the
targets' own invariants: a rejected frame must leave the SA table unchanged).  The same targets
run under atheris (``tools/fuzz/fuzz_*.py``) and under hypothesis
(``tools/fuzz/run_hypothesis.py``, ``tests/test_fuzz_kit.py``).

Input layout: the first octet is a *selector* (channel options, SA configuration, whether to
re-seal the frame so it authenticates), the rest is the frame / packet / PDU.  Seeds for each
target (:func:`seeds`) carry matching selectors.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from sdls_qkd.errors import SdlsQkdError
from sdls_qkd.framing.channel import AosChannel, Channel, TcChannel, TmChannel, UslpChannel

__all__ = ["PARSER_TARGETS", "PROCESS_TARGETS", "TARGETS", "Target", "hypothesis_run", "inputs", "run",
           "seeds"]


@dataclass(frozen=True)
class Target:
    """A named fuzz target."""

    name: str
    kind: str  # "parser" or "process"
    about: str
    fn: Callable[[bytes], None]


def _split(data: bytes) -> tuple[int, bytes]:
    return (data[0], data[1:]) if data else (0, b"")


def _swallow(fn: Callable[[], Any]) -> Any:
    """Call ``fn``; library errors are the expected outcome of bad input."""
    try:
        return fn()
    except SdlsQkdError:
        return None


# =========================================================================== parsers
def _space_packet_stream(data: bytes) -> None:
    from sdls_qkd.framing.space_packet import PacketStreamParser, SpacePacket, split_packets

    sel, body = _split(data)
    _swallow(lambda: SpacePacket.unpack(body))
    _swallow(lambda: split_packets(body))
    parser = PacketStreamParser()
    step = (sel & 0x1F) + 1
    for i in range(0, len(body), step):
        try:
            parser.feed(body[i:i + step])
        except SdlsQkdError:
            parser.reset()
    _swallow(parser.check)


def _ids(body: bytes, frame_type: str) -> tuple[int, int]:
    """(scid, vcid) read from the header so the parser gets past the ID check."""
    if len(body) < 4:
        return 0, 0
    if frame_type == "TC":
        return ((body[0] & 3) << 8) | body[1], body[2] >> 2
    if frame_type == "TM":
        word = (body[0] << 8) | body[1]
        return (word >> 4) & 0x3FF, (word >> 1) & 7
    if frame_type == "AOS":
        word = (body[0] << 8) | body[1]
        return (word >> 6) & 0xFF, word & 0x3F
    word = int.from_bytes(body[:4], "big")
    return (word >> 12) & 0xFFFF, (word >> 5) & 0x3F


def _tc(data: bytes) -> None:
    from sdls_qkd.framing.tc import TcFrame

    sel, body = _split(data)
    scid, vcid = _ids(body, "TC")
    channel = TcChannel(scid=scid, vcid=vcid, has_fecf=bool(sel & 1),
                        has_segment_header=bool(sel & 2))
    frame = _swallow(lambda: TcFrame.unpack(body, channel, check_ids=not sel & 4))
    if frame is not None:
        _swallow(frame.to_fields)
        _swallow(lambda: frame.pack(channel))


def _fixed_length(sel: int, body: bytes, default: int) -> int:
    return len(body) if sel & 0x80 else default


def _tm(data: bytes) -> None:
    from sdls_qkd.framing.tm import TmFrame

    sel, body = _split(data)
    scid, vcid = _ids(body, "TM")
    channel = _swallow(lambda: TmChannel(
        scid=scid, vcid=vcid, frame_length=_fixed_length(sel, body, 64), has_fecf=bool(sel & 1),
        has_ocf=bool(sel & 2), secondary_header_length=(0, 2, 4, 64)[(sel >> 2) & 3]))
    if channel is None:
        return
    frame = _swallow(lambda: TmFrame.unpack(body, channel, check_vcid=not sel & 0x10))
    if frame is not None:
        _swallow(frame.to_fields)
        _swallow(lambda: frame.pack(channel))


def _aos(data: bytes) -> None:
    from sdls_qkd.framing.aos import AosFrame

    sel, body = _split(data)
    scid, vcid = _ids(body, "AOS")
    channel = _swallow(lambda: AosChannel(
        scid=scid, vcid=vcid, frame_length=_fixed_length(sel, body, 64), has_fecf=bool(sel & 1),
        has_ocf=bool(sel & 2), has_fhec=bool(sel & 4), insert_zone_length=(sel >> 3) & 7))
    if channel is None:
        return
    frame = _swallow(lambda: AosFrame.unpack(body, channel, correct_fhec=not sel & 0x40))
    if frame is not None:
        _swallow(frame.to_fields)
        _swallow(lambda: frame.m_pdu(channel))
        _swallow(lambda: frame.b_pdu(channel))
        _swallow(lambda: frame.pack(channel))


def _uslp(data: bytes) -> None:
    from sdls_qkd.framing.uslp import UslpFrame

    sel, body = _split(data)
    scid, vcid = _ids(body, "USLP")
    shape = sel & 3  # 0 variable, 1 fixed, 2 truncated, 3 fixed with 32-bit FECF
    truncated = shape == 2
    channel = _swallow(lambda: UslpChannel(
        scid=scid, vcid=vcid, map_id=(body[3] >> 1) & 0xF if len(body) > 3 else 0,
        frame_length=None if shape == 0 else len(body), truncated=truncated,
        has_fecf=bool(sel & 4), fecf_length=4 if shape == 3 else 2,
        has_ocf=bool(sel & 8) and not truncated, insert_zone_length=(sel >> 4) & 3,
        vc_frame_count_length=(sel >> 6) & 3))
    if channel is None:
        return
    frame = _swallow(lambda: UslpFrame.unpack(body, channel))
    if frame is not None:
        _swallow(frame.to_fields)
        _swallow(lambda: frame.pack(channel))


def _ocf(data: bytes) -> None:
    from sdls_qkd.framing.ocf import Clcw, FrameSecurityReport, ocf_unpack

    _, body = _split(data)
    for fn in (ocf_unpack, Clcw.unpack, FrameSecurityReport.unpack):
        word = _swallow(lambda f=fn: f(body))  # type: ignore[misc]
        if word is not None:
            _swallow(word.pack)


def _ep_pdu(data: bytes) -> None:
    from sdls_qkd.procedures.pdu import EpPacketConfig, Pdu, unwrap_command, unwrap_reply

    sel, body = _split(data)
    pdu = _swallow(lambda: Pdu.unpack(body))
    if pdu is not None:
        _swallow(lambda: pdu.procedure)
        _swallow(pdu.pack)
    offset = 0
    while offset < len(body):
        try:
            _, end = Pdu.unpack_from(body, offset)
        except SdlsQkdError:
            break
        offset = end if end > offset else offset + 1
    config = EpPacketConfig.cryptolib() if sel & 1 else EpPacketConfig()
    _swallow(lambda: unwrap_command(body, config))
    _swallow(lambda: unwrap_reply(body, config))


def _dissect(data: bytes) -> None:
    from sdls_qkd.dissect import KINDS, dissect

    sel, body = _split(data)
    kind = None if sel & 0x80 else KINDS[sel % len(KINDS)]
    result = dissect(body, kind)
    result.to_json()


# =========================================================================== process
#: (frame kind, suite, preset) of the SA configurations each process target cycles through
_PROCESS_CONFIGS: Final[dict[str, tuple[tuple[str, str, str], ...]]] = {
    "TC": (("TC", "AES-256-GCM", "yamcs"), ("TC", "AES-256-CMAC", "cryptolib"),
           ("TC", "AES-256-CBC", "custom"), ("TC", "AES-256-GCM", "custom")),
    "TM": (("TM", "AES-256-GCM", "yamcs"), ("TM", "HMAC-SHA-256", "cryptolib"),
           ("TM", "AES-256-CBC", "custom"), ("TM", "GMAC", "custom")),
    "AOS": (("AOS", "AES-256-GCM", "cryptolib"), ("AOS", "HMAC-SHA-512", "custom"),
            ("AOS", "AES-256-CBC", "cryptolib"), ("AOS", "AES-128-GCM", "custom")),
    "USLP": (("USLP-variable", "AES-256-GCM", "yamcs"), ("USLP-fixed", "AES-256-CMAC", "custom"),
             ("USLP-variable", "AES-256-CBC", "custom"), ("USLP-fixed", "AES-256-GCM-SIV",
                                                           "cryptolib")),
}


@functools.cache
def process_configs(frame_type: str) -> tuple[dict[str, Any], ...]:
    """The generated ``process`` vectors (channel, receiver SA, valid frame) of a target."""
    from sdls_qkd.vectors_generate import generate_vectors

    out = []
    for kind, suite, preset in _PROCESS_CONFIGS[frame_type]:
        vectors = generate_vectors(0, frame_kinds=[kind], suites=[suite], presets=[preset],
                                   negatives=["bad_fecf"])
        out.append(next(v for v in vectors if v["id"].endswith("/process")))
    return tuple(out)


@functools.cache
def _channel_of(frame_type: str, index: int) -> Channel:
    from sdls_qkd.framing.channel import channel_from_dict

    vector = process_configs(frame_type)[index]
    return channel_from_dict(vector["frame_type"], vector["channel"])


def _process(frame_type: str, data: bytes) -> None:
    from sdls_qkd.fuzz.mutators import reseal, reseal_fecf
    from sdls_qkd.security.engine import process_security
    from sdls_qkd.security.sa import SecurityAssociation

    sel, frame = _split(data)
    configs = process_configs(frame_type)
    index = sel % len(configs)
    vector = configs[index]
    channel = _channel_of(frame_type, index)
    sa = SecurityAssociation.from_schema(vector["sa"], frame_type=vector["frame_type"],
                                         channel=channel)
    if sel & 0x08:  # seal whatever the data field holds: reach the checks behind the MAC
        frame = reseal(frame, channel, sa)
    elif sel & 0x04:
        frame = reseal_fecf(frame, channel)
    before = sa.snapshot()
    try:
        result = process_security(frame, channel, {sa.spi: sa})
    except SdlsQkdError:
        if sa.snapshot() != before:
            raise AssertionError("a rejected frame changed the SA") from None
        return
    recovered = result.frame  # the unprotected frame, as the codecs will see it
    _PARSERS[frame_type](bytes([_PARSER_SELECTOR[frame_type](channel)]) + recovered)


def _parser_selector_tc(channel: Channel) -> int:
    assert isinstance(channel, TcChannel)
    return int(channel.has_fecf) | (int(channel.has_segment_header) << 1)


def _parser_selector_tm(channel: Channel) -> int:
    assert isinstance(channel, TmChannel)
    sh = {0: 0, 2: 1, 4: 2, 64: 3}.get(channel.secondary_header_length, 0)
    return 0x80 | int(channel.has_fecf) | (int(channel.has_ocf) << 1) | (sh << 2)


def _parser_selector_aos(channel: Channel) -> int:
    assert isinstance(channel, AosChannel)
    return 0x80 | int(channel.has_fecf) | (int(channel.has_ocf) << 1) | \
        (int(channel.has_fhec) << 2) | (min(channel.insert_zone_length, 7) << 3)


def _parser_selector_uslp(channel: Channel) -> int:
    assert isinstance(channel, UslpChannel)
    shape = 0 if channel.frame_length is None else 2 if channel.truncated else \
        3 if channel.fecf_length == 4 else 1
    return shape | (int(channel.has_fecf) << 2) | (int(channel.has_ocf) << 3) | \
        (min(channel.insert_zone_length, 3) << 4) | (min(channel.vc_frame_count_length, 3) << 6)


_PARSERS: Final[dict[str, Callable[[bytes], None]]] = {"TC": _tc, "TM": _tm, "AOS": _aos,
                                                       "USLP": _uslp}
_PARSER_SELECTOR: Final[dict[str, Callable[[Channel], int]]] = {
    "TC": _parser_selector_tc, "TM": _parser_selector_tm, "AOS": _parser_selector_aos,
    "USLP": _parser_selector_uslp}


def _ep_manager(data: bytes) -> None:
    from sdls_qkd.fuzz.procedures import MANAGEMENT_SPI, ep_world

    sel, body = _split(data)
    world = ep_world()
    before = world.board.state_digest()
    try:
        if sel & 1:
            world.board.handle_pdu(body, via_spi=MANAGEMENT_SPI)
        else:
            world.board.handle_packet(body, via_spi=MANAGEMENT_SPI)
    except SdlsQkdError:
        if world.board.state_digest() != before:
            raise AssertionError("a rejected EP command changed the on-board state") from None


# =========================================================================== registry
TARGETS: Final[dict[str, Target]] = {t.name: t for t in (
    Target("space_packet_stream", "parser", "Space Packet parser and stream splitter",
           _space_packet_stream),
    Target("tc", "parser", "TC transfer frame parser", _tc),
    Target("tm", "parser", "TM transfer frame parser", _tm),
    Target("aos", "parser", "AOS transfer frame parser (FHEC decoder included)", _aos),
    Target("uslp", "parser", "USLP transfer frame parser (fixed, variable, truncated)", _uslp),
    Target("ocf", "parser", "OCF word parser (CLCW, FSR)", _ocf),
    Target("ep_pdu", "parser", "SDLS-EP PDU and EP packet parsers", _ep_pdu),
    Target("dissect", "parser", "frame dissector (sdls-qkd inspect)", _dissect),
    Target("process_tc", "process", "process_security on TC frames",
           functools.partial(_process, "TC")),
    Target("process_tm", "process", "process_security on TM frames",
           functools.partial(_process, "TM")),
    Target("process_aos", "process", "process_security on AOS frames",
           functools.partial(_process, "AOS")),
    Target("process_uslp", "process", "process_security on USLP frames",
           functools.partial(_process, "USLP")),
    Target("ep_manager", "process", "on-board SDLS-EP manager (handle_packet / handle_pdu)",
           _ep_manager),
)}
PARSER_TARGETS: Final = tuple(n for n, t in TARGETS.items() if t.kind == "parser")
PROCESS_TARGETS: Final = tuple(n for n, t in TARGETS.items() if t.kind == "process")


def run(name: str, data: bytes) -> None:
    """Run target ``name`` on one input; library errors are swallowed, anything else raised."""
    with contextlib.suppress(SdlsQkdError):
        TARGETS[name].fn(data)


# =========================================================================== seeds
def seeds(name: str) -> list[bytes]:
    """Valid and edge-case inputs (with selectors) to start fuzzing ``name`` from."""
    from sdls_qkd.fuzz.corpus import target_seeds

    return target_seeds(name)


# =========================================================================== hypothesis driver
def inputs(name: str) -> Any:
    """Hypothesis strategy of inputs for ``name``: random octets, its seeds, seeds with another
    selector, and byte-level mutants of the seeds (flips, cuts, extensions, overwrites)."""
    from hypothesis import strategies as st

    from sdls_qkd.fuzz.security import mutations

    pool = seeds(name)
    seeded = st.sampled_from(pool)
    return st.one_of(
        st.binary(max_size=300),
        seeded,
        st.tuples(st.integers(0, 255), seeded).map(lambda t: bytes([t[0]]) + t[1][1:]),
        seeded.flatmap(lambda s: mutations(s).map(lambda m: (s[:1] + m[1:]) if m else m)),
        seeded.flatmap(mutations),
    )


def hypothesis_run(name: str, examples: int, *, seed: int | None = None) -> int:
    """Run ``name`` on ``examples`` hypothesis examples; returns how many ran.

    A non-library exception propagates (after hypothesis shrank the input); the falsifying
    input is printed by hypothesis.
    """
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as fix_seed

    target = TARGETS[name]
    count = [0]

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(inputs(name))
    def prop(data: bytes) -> None:
        count[0] += 1
        with contextlib.suppress(SdlsQkdError):
            target.fn(data)

    if seed is not None:
        prop = fix_seed(seed)(prop)
    prop()
    return count[0]
