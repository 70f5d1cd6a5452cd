"""Hypothesis strategies for AOS frames: valid channels and frames, and mutated frame bytes.

Valid structures feed round-trip properties; mutated bytes feed the "only sdls_qkd.errors"
property of the parsers.  Mutations come in two flavours: raw (the FECF no longer matches, so
the parser stops at the CRC) and *resealed* (FECF recomputed after the mutation) so that the
header checks behind the CRC are reached too.

The generic byte mutators (:func:`mutations`) are shared with :mod:`sdls_qkd.fuzz.uslp`.
"""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import strategies as st

from sdls_qkd.framing.aos import AosCodec, AosFrame, AosPrimaryHeader
from sdls_qkd.framing.channel import AosChannel
from sdls_qkd.framing.crc import fecf as compute_fecf

__all__ = [
    "aos_channels",
    "aos_frame_bytes",
    "aos_frames",
    "aos_headers",
    "mutated_aos_bytes",
    "mutations",
    "reseal_fecf",
]


def reseal_fecf(data: bytes, fecf_length: int) -> bytes:
    """``data`` with its last ``fecf_length`` octets replaced by the FECF of the rest."""
    if fecf_length == 0 or len(data) < fecf_length:
        return data
    body = data[:-fecf_length]
    return body + compute_fecf(body, fecf_length).to_bytes(fecf_length, "big")


@st.composite
def aos_channels(draw: st.DrawFn, *, max_frame_length: int = 300) -> AosChannel:
    """Any valid AOS channel (FHEC, insert zone, OCF, FECF on or off)."""
    has_fhec = draw(st.booleans())
    iz = draw(st.sampled_from([0, 0, 1, 4, 7]))
    has_ocf = draw(st.booleans())
    has_fecf = draw(st.booleans())
    minimum = 6 + 2 * has_fhec + iz + 4 * has_ocf + 2 * has_fecf + 1
    length = draw(st.integers(minimum, max(minimum, max_frame_length)))
    return AosChannel(scid=draw(st.integers(0, 0xFF)), vcid=draw(st.integers(0, 63)),
                      frame_length=length, has_fhec=has_fhec, insert_zone_length=iz,
                      has_ocf=has_ocf, has_fecf=has_fecf)


@st.composite
def aos_headers(draw: st.DrawFn, scid: int | None = None, vcid: int | None = None) -> AosPrimaryHeader:
    """Sendable headers (spare 0, cycle 0 when the usage flag is 0)."""
    usage = draw(st.booleans())
    return AosPrimaryHeader(
        scid=draw(st.integers(0, 0xFF)) if scid is None else scid,
        vcid=draw(st.integers(0, 63)) if vcid is None else vcid,
        vc_frame_count=draw(st.integers(0, 0xFFFFFF)),
        replay_flag=draw(st.booleans()),
        vc_frame_count_usage_flag=usage,
        vc_frame_count_cycle=draw(st.integers(0, 15)) if usage else 0)


@st.composite
def aos_frames(draw: st.DrawFn,
               channel: AosChannel | st.SearchStrategy[AosChannel] | None = None,
               ) -> tuple[AosChannel, AosFrame]:
    """(channel, valid frame of that channel); ``channel`` may be fixed, a strategy, or None."""
    if channel is None:
        channel = aos_channels()
    ch = draw(channel) if isinstance(channel, st.SearchStrategy) else channel
    dlen = ch.data_field_length
    return ch, AosFrame(
        header=draw(aos_headers(ch.scid, ch.vcid)),
        data_field=draw(st.binary(min_size=dlen, max_size=dlen)),
        insert_zone=draw(st.binary(min_size=ch.insert_zone_length, max_size=ch.insert_zone_length)),
        ocf=draw(st.binary(min_size=4, max_size=4)) if ch.has_ocf else None)


@st.composite
def aos_frame_bytes(draw: st.DrawFn,
                    channel: AosChannel | st.SearchStrategy[AosChannel] | None = None,
                    ) -> tuple[AosChannel, bytes]:
    """(channel, octets of a valid frame)."""
    ch, frame = draw(aos_frames(channel))
    return ch, frame.pack(ch)


def _flip_many(data: bytes, bits: list[int]) -> bytes:
    b = bytearray(data)
    for bit in bits:
        if bit // 8 < len(b):
            b[bit // 8] ^= 0x80 >> (bit % 8)
    return bytes(b)


def mutations(data: bytes, header_length: int,
              reseal: Callable[[bytes], bytes]) -> st.SearchStrategy[bytes]:
    """Mutants of ``data``: truncations, extensions, any bit of the first ``header_length`` octets
    flipped (alone or a few together), header and random octet overwrites, random bytes; each
    optionally passed through ``reseal`` (recompute FECF/FHEC) to get past the CRC."""
    n = len(data)

    def flip(bit: int) -> bytes:
        b = bytearray(data)
        b[bit // 8] ^= 0x80 >> (bit % 8)
        return bytes(b)

    def overwrite(args: tuple[int, int]) -> bytes:
        pos, val = args
        b = bytearray(data)
        if n:
            b[pos % n] = val
        return bytes(b)

    head = max(min(header_length, n), 1)
    raw = st.one_of(
        st.integers(0, max(n - 1, 0)).map(lambda k: data[:k]),
        st.binary(min_size=1, max_size=8).map(lambda extra: data + extra),
        st.sampled_from(range(8 * head)).map(flip),
        st.lists(st.sampled_from(range(8 * head)), min_size=2, max_size=6).map(
            lambda bits: _flip_many(data, bits)),
        st.tuples(st.sampled_from(range(head)), st.integers(0, 255)).map(overwrite),
        st.tuples(st.integers(0, max(n - 1, 0)), st.integers(0, 255)).map(overwrite),
        st.binary(max_size=n + 4),
    )
    return st.one_of(raw, raw.map(reseal))


@st.composite
def mutated_aos_bytes(draw: st.DrawFn) -> tuple[AosChannel, bytes]:
    """(channel, mutated frame octets) - any of them may be valid or invalid."""
    ch, data = draw(aos_frame_bytes())
    codec = AosCodec(ch)
    draw_fhec_too = draw(st.booleans())

    def reseal(b: bytes) -> bytes:
        if len(b) != ch.frame_length:
            return reseal_fecf(b, 2 if ch.has_fecf else 0)
        buf = bytearray(b)
        if draw_fhec_too:
            codec.seal(buf)
            return bytes(buf)
        return reseal_fecf(bytes(buf), 2 if ch.has_fecf else 0)

    return ch, draw(mutations(data, ch.header_length, reseal))
