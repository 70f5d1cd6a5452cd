"""AOS transfer frames: Yamcs vector, FHEC in frames, M_PDU/B_PDU, round trips, hostile bytes."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdls_qkd.errors import (
    FecfError,
    FhecError,
    InvalidConfiguration,
    InvalidFrameLength,
    InvalidHeader,
    LinkError,
    SdlsQkdError,
    UsageError,
)
from sdls_qkd.framing.aos import (
    AOS_PRIMARY_HEADER,
    AosCodec,
    AosFrame,
    AosPrimaryHeader,
    BPdu,
    MPdu,
)
from sdls_qkd.framing.channel import AosChannel, channel_from_dict
from sdls_qkd.framing.crc import crc16
from sdls_qkd.framing.fhec import fhec_encode
from sdls_qkd.fuzz.aos import (
    aos_channels,
    aos_frame_bytes,
    aos_frames,
    aos_headers,
    mutated_aos_bytes,
)

VECTOR_DIR = Path(__file__).parent.parent / "vectors"
FRAME_VECTORS = json.loads((VECTOR_DIR / "frames_yamcs_aos_uslp.json").read_text())
AOS_VECTORS = [v for v in FRAME_VECTORS["vectors"] if v["frame_type"] == "AOS"]


def _fields_subset(frame: AosFrame, expected: dict[str, Any], channel: AosChannel) -> None:
    got = frame.to_fields()
    for key, value in expected.items():
        assert got[key] == value, key
    if "first_header_pointer" in expected:
        assert frame.m_pdu(channel).first_header_pointer == expected["first_header_pointer"]


# --------------------------------------------------------------------------- captured vectors
def test_vector_file_is_schema_shaped() -> None:
    assert FRAME_VECTORS["format"] == "sdls-vectors/1"
    assert FRAME_VECTORS["provenance"]["commit"]
    assert AOS_VECTORS
    for v in AOS_VECTORS:
        assert v["kind"] == "frame_decode" and "expected_fields" in v and "input_hex" in v


@pytest.mark.parametrize("vec", AOS_VECTORS, ids=lambda v: v["id"])
def test_yamcs_aos_vector_decodes(vec: dict[str, Any]) -> None:
    channel = channel_from_dict("AOS", vec["channel"])
    assert isinstance(channel, AosChannel)
    data = bytes.fromhex(vec["input_hex"])
    frame = AosFrame.unpack(data, channel)
    _fields_subset(frame, vec["expected_fields"], channel)
    assert frame.pack(channel) == data  # our sender writes the same octets, FECF included
    view = AosCodec(channel).parse(data)
    assert (view.scid, view.vcid, view.vc_frame_count) == (171, 1, 343)
    assert view.data_field == frame.data_field


def test_yamcs_aos_corrupt_octet_10_is_a_crc_error() -> None:
    """Yamcs' test sets octet 10 to 0x0C and expects a CRC error."""
    vec = next(v for v in AOS_VECTORS if v["id"] == "yamcs-aos-frame-01")
    assert "octet 10 is set to 0x0C" in vec["notes"]
    channel = channel_from_dict("AOS", vec["channel"])
    data = bytearray.fromhex(vec["input_hex"])
    data[10] = 0x0C
    with pytest.raises(FecfError) as info:
        AosFrame.unpack(bytes(data), channel)  # type: ignore[arg-type]
    assert info.value.field == "fecf" and info.value.offset == 126
    assert "computed 0x" in str(info.value) and "0x93FD" in str(info.value)
    assert info.value.code == "FecfError"


def test_sample_hex_file_matches_vector() -> None:
    lines = (VECTOR_DIR / "samples" / "aos_yamcs_frame01.hex").read_text().splitlines()
    assert lines[0].startswith("# provenance") and "yamcs" in lines[0]
    vec = next(v for v in AOS_VECTORS if v["id"] == "yamcs-aos-frame-01")
    assert lines[1] == vec["input_hex"]


def test_digest_fhec_example_in_a_frame() -> None:
    """TFVN 01, SCID 0xAB, VCID 5, signaling 0 -> octets 6A C5, FHEC 0x554A (digest)."""
    channel = AosChannel(scid=0xAB, vcid=5, frame_length=20, has_fhec=True, has_fecf=False)
    frame = AosFrame(AosPrimaryHeader(0xAB, 5, 0x010203), bytes(12))
    data = frame.pack(channel)
    assert data[:8] == bytes.fromhex("6AC5010203" "00" "554A")


# --------------------------------------------------------------------------- header
@settings(max_examples=150, deadline=None)
@given(aos_headers(), st.integers(0, 3), st.integers(0, 15))
def test_header_struct_equals_construct_layout(h: AosPrimaryHeader, spare: int, cycle: int) -> None:
    h = replace(h, spare=spare, vc_frame_count_cycle=cycle)
    packed = h.pack()
    spec = AOS_PRIMARY_HEADER.build({
        "tfvn": h.tfvn, "scid": h.scid, "vcid": h.vcid, "vc_frame_count": h.vc_frame_count,
        "replay_flag": h.replay_flag, "vc_frame_count_usage_flag": h.vc_frame_count_usage_flag,
        "spare": h.spare, "vc_frame_count_cycle": h.vc_frame_count_cycle})
    assert packed == spec
    parsed = AOS_PRIMARY_HEADER.parse(packed)
    assert AosPrimaryHeader.unpack(packed) == h
    assert parsed.scid == h.scid and parsed.vc_frame_count_cycle == h.vc_frame_count_cycle


def test_header_field_layout_by_hand() -> None:
    h = AosPrimaryHeader(scid=0xFF, vcid=0x3F, vc_frame_count=0xABCDEF, replay_flag=True,
                         vc_frame_count_usage_flag=True, vc_frame_count_cycle=0x9)
    assert h.pack() == bytes.fromhex("7FFF" "ABCDEF" "C9")
    assert h.signaling_field == 0xC9 and h.id_word == 0x7FFF and h.mcid == 0x1FF
    assert h.extended_vc_frame_count == (0x9 << 24) | 0xABCDEF
    assert h.is_idle


def test_cycle_ignored_when_usage_flag_is_zero() -> None:
    """Receiver keeps and ignores the cycle when the flag is 0; the sender refuses to write it."""
    raw = bytes.fromhex("6AC1" "000157" "05")  # usage flag 0, cycle 5
    h = AosPrimaryHeader.unpack(raw)
    assert h.vc_frame_count_cycle == 5 and not h.vc_frame_count_usage_flag
    assert h.extended_vc_frame_count == 343
    channel = AosChannel(scid=171, vcid=1, frame_length=16, has_fecf=False)
    with pytest.raises(InvalidConfiguration, match="vc_frame_count_cycle must be 0"):
        AosFrame(h, bytes(channel.data_field_length)).pack(channel)
    with pytest.raises(InvalidConfiguration, match="spare"):
        AosFrame(replace(h, vc_frame_count_cycle=0, spare=1), bytes(10)).pack(channel)


@pytest.mark.parametrize("kwargs", [{"scid": 256, "vcid": 0}, {"scid": 0, "vcid": 64},
                                    {"scid": 0, "vcid": 0, "vc_frame_count": 1 << 24},
                                    {"scid": 0, "vcid": 0, "vc_frame_count_cycle": 16},
                                    {"scid": -1, "vcid": 0}, {"scid": "1", "vcid": 0}])
def test_header_rejects_out_of_range(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidConfiguration):
        AosPrimaryHeader(**kwargs)


def test_header_errors_name_field_and_offset() -> None:
    with pytest.raises(InvalidFrameLength, match="needs 6 octets, got 5"):
        AosPrimaryHeader.unpack(bytes(5))
    with pytest.raises(InvalidHeader) as info:
        AosPrimaryHeader.unpack(bytes.fromhex("2AC100015700"))  # TFVN 00
    assert info.value.field == "tfvn" and "got 0" in str(info.value)
    with pytest.raises(UsageError):
        AosPrimaryHeader.unpack("6AC100015700")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- frame errors
CH = AosChannel(scid=171, vcid=1, frame_length=40, has_fhec=True, insert_zone_length=3,
                has_ocf=True, has_fecf=True)


def _good() -> bytes:
    return AosFrame(AosPrimaryHeader(171, 1, 7), bytes(range(CH.data_field_length)),
                    insert_zone=b"IZ!", ocf=b"OCF4").pack(CH)


def _reseal(buf: bytearray, channel: AosChannel = CH) -> bytes:
    AosCodec(channel).seal(buf)
    return bytes(buf)


def test_layout_offsets() -> None:
    codec = AosCodec(CH)
    assert (codec.insert_zone_offset, codec.data_offset, codec.ocf_offset, codec.fecf_offset) == (
        8, 11, 34, 38)
    data = _good()
    f = AosFrame.unpack(data, CH)
    assert f.insert_zone == b"IZ!" and f.ocf == b"OCF4" and f.data_field == bytes(range(23))
    assert f.fhec == int.from_bytes(data[6:8], "big") == fhec_encode(0x6AC1, 0)
    assert f.fecf == crc16(data[:38])


@pytest.mark.parametrize("n", [0, 1, 6, 39, 41, 2000])
def test_wrong_length(n: int) -> None:
    data = (_good() * 60)[:n]
    with pytest.raises(InvalidFrameLength) as info:
        AosFrame.unpack(data, CH)
    assert str(info.value).startswith(f"AOS frame needs 40 octets, got {n}")
    assert info.value.field == "frame_length"


def test_wrong_ids_after_reseal() -> None:
    buf = bytearray(_good())
    buf[0:2] = (0x6AC2).to_bytes(2, "big")  # VCID 2
    with pytest.raises(InvalidHeader, match="VCID 2 is not the channel's VCID 1") as info:
        AosFrame.unpack(_reseal(buf), CH)
    assert info.value.field == "vcid"
    buf[0:2] = (0x4AC1).to_bytes(2, "big")  # SCID 0x2B
    with pytest.raises(InvalidHeader, match="SCID 43") as info:
        AosFrame.unpack(_reseal(buf), CH)
    buf[0:2] = (0xEAC1).to_bytes(2, "big")  # TFVN 3
    with pytest.raises(InvalidHeader, match="TFVN") as info:
        AosFrame.unpack(_reseal(buf), CH)
    assert info.value.field == "tfvn"


def test_fecf_error_message() -> None:
    buf = bytearray(_good())
    buf[20] ^= 1
    with pytest.raises(FecfError) as info:
        AosFrame.unpack(bytes(buf), CH)
    assert info.value.offset == 38 and info.value.code == "FecfError"
    assert AosFrame.unpack(bytes(buf), CH, check_fecf=False).data_field[9] == 8


# --------------------------------------------------------------------------- FHEC inside frames
PROTECTED_NIBBLES = [(0, 4), (0, 0), (1, 4), (1, 0), (5, 4), (5, 0), (6, 4), (6, 0), (7, 4), (7, 0)]


@settings(max_examples=120, deadline=None)
@given(st.lists(st.sampled_from(PROTECTED_NIBBLES), min_size=1, max_size=2, unique=True),
       st.lists(st.integers(1, 15), min_size=2, max_size=2), st.booleans())
def test_frame_header_errors_corrected_then_fecf_checked(
        nibbles: list[tuple[int, int]], values: list[int], with_fecf: bool) -> None:
    channel = replace(CH, has_fecf=with_fecf)
    good = AosFrame(AosPrimaryHeader(171, 1, 7, vc_frame_count_usage_flag=True,
                                     vc_frame_count_cycle=3),
                    bytes(channel.data_field_length), insert_zone=b"IZ!", ocf=b"OCF4")
    data = good.pack(channel)
    bad = bytearray(data)
    for (octet, shift), v in zip(nibbles, values, strict=False):
        bad[octet] ^= v << shift
    frame = AosFrame.unpack(bytes(bad), channel)
    assert frame == good
    assert frame.fhec_corrected_symbols == len(nibbles)
    assert frame.pack(channel) == data
    view = AosCodec(channel).parse(bytes(bad))
    assert view.frame == data and view.corrected_symbols == len(nibbles)
    with pytest.raises(FhecError, match="correction disabled"):
        AosFrame.unpack(bytes(bad), channel, correct_fhec=False)


def test_uncorrectable_header_in_frame() -> None:
    data = bytearray(_good())
    data[0] ^= 0x11
    data[1] ^= 0x10  # three symbols
    data[5] ^= 0x01  # four
    with pytest.raises(FhecError) as info:
        AosFrame.unpack(bytes(data), CH)
    assert info.value.field == "fhec" and info.value.offset == 6


def test_vc_frame_count_is_not_fhec_protected() -> None:
    channel = replace(CH, has_fecf=False)
    data = bytearray(AosFrame(AosPrimaryHeader(171, 1, 7), bytes(channel.data_field_length),
                              insert_zone=b"IZ!", ocf=b"OCF4").pack(channel))
    data[4] ^= 0xFF
    frame = AosFrame.unpack(bytes(data), channel)
    assert frame.header.vc_frame_count == 7 ^ 0xFF and frame.fhec_corrected_symbols == 0


# --------------------------------------------------------------------------- M_PDU / B_PDU
def test_mpdu_pointer_rules() -> None:
    zone = bytes(10)
    for fhp in (0, 9, MPdu.FHP_IDLE, MPdu.FHP_NO_PACKET_START):
        m = MPdu.unpack(MPdu(fhp, zone).pack())
        assert m.first_header_pointer == fhp and m.packet_zone == zone
    assert MPdu(0x7FF, zone).no_packet_start and MPdu(0x7FE, zone).idle
    with pytest.raises(InvalidHeader) as info:
        MPdu.unpack(b"\x00\x0a" + zone, offset=11)
    assert info.value.field == "first_header_pointer" and info.value.offset == 11
    assert "pointer 10 is past the 10-octet packet zone" in str(info.value)
    with pytest.raises(InvalidConfiguration):
        MPdu(10, zone).pack()
    with pytest.raises(InvalidFrameLength, match="at least 3 octets, got 2"):
        MPdu.unpack(b"\x00\x00")
    assert MPdu.unpack(b"\xf8\x00\x00").spare == 0x1F  # spare kept on receipt


def test_bpdu_pointer_rules() -> None:
    data = bytes(4)  # 32 bits
    assert BPdu(BPdu.BDP_ALL_VALID, data).valid_bits == 32
    assert BPdu(BPdu.BDP_IDLE, data).valid_bits == 0
    assert BPdu(0, data).valid_bits == 1 and BPdu(31, data).valid_bits == 32
    for bdp in (0, 31, 0x3FFE, 0x3FFF):
        assert BPdu.unpack(BPdu(bdp, data).pack()) == BPdu(bdp, data)
    assert BPdu(0x3FFF, data).pack() == b"\x3f\xff" + data
    with pytest.raises(InvalidHeader, match="pointer 32 is past the 32-bit zone"):
        BPdu.unpack(b"\x00\x20" + data)
    with pytest.raises(InvalidConfiguration):
        BPdu(32, data).pack()


def test_mpdu_from_frame() -> None:
    ch = AosChannel(scid=1, vcid=2, frame_length=30, has_fecf=True)
    f = AosFrame(AosPrimaryHeader(1, 2), MPdu(MPdu.FHP_IDLE, bytes(20)).pack())
    g = AosFrame.unpack(f.pack(ch), ch)
    assert g.m_pdu(ch).idle
    with pytest.raises(InvalidHeader, match="pointer 2046 is past the 160-bit zone") as info:
        g.b_pdu(ch)  # the same octets read as a B_PDU point past its zone
    assert info.value.offset == 6


# --------------------------------------------------------------------------- properties
@settings(max_examples=150, deadline=None)
@given(aos_frames())
def test_round_trip(case: tuple[AosChannel, AosFrame]) -> None:
    channel, frame = case
    data = frame.pack(channel)
    assert len(data) == channel.frame_length
    back = AosFrame.unpack(data, channel)
    assert back == frame
    assert back.pack(channel) == data
    if channel.has_fecf:  # CRC residue: the receiver's fast check relies on it
        assert crc16(data) == 0 and back.fecf == crc16(data[:-2])
    codec = AosCodec(channel)
    assert codec.pack(frame) == data
    view = codec.parse(data)
    assert view.data_field == frame.data_field and view.signaling_field == frame.header.signaling_field
    assert (view.replay_flag, view.vc_frame_count_usage_flag, view.vc_frame_count_cycle) == (
        frame.header.replay_flag, frame.header.vc_frame_count_usage_flag,
        frame.header.vc_frame_count_cycle)
    buf = bytearray(data)
    buf[6:8] = b"\0\0" if channel.has_fhec else buf[6:8]
    if channel.has_fecf:
        buf[-2:] = b"\0\0"
    codec.seal(buf)
    assert bytes(buf) == data


@settings(max_examples=300, deadline=None)
@given(mutated_aos_bytes())
def test_mutated_bytes_raise_only_link_errors(case: tuple[AosChannel, bytes]) -> None:
    channel, data = case
    try:
        frame = AosFrame.unpack(data, channel)
    except SdlsQkdError as exc:
        assert isinstance(exc, LinkError), repr(exc)
        assert str(exc)
        return
    assert frame.header.scid == channel.scid and len(frame.data_field) == channel.data_field_length


@settings(max_examples=200, deadline=None)
@given(aos_channels(max_frame_length=60), st.binary(max_size=70))
def test_random_bytes_raise_only_link_errors(channel: AosChannel, data: bytes) -> None:
    for parse in (lambda: AosFrame.unpack(data, channel), lambda: AosPrimaryHeader.unpack(data),
                  lambda: MPdu.unpack(data), lambda: BPdu.unpack(data),
                  lambda: AosCodec(channel, correct_fhec=False).parse(data)):
        try:
            parse()
        except SdlsQkdError as exc:
            assert isinstance(exc, LinkError), repr(exc)


@settings(max_examples=60, deadline=None)
@given(aos_frame_bytes(AosChannel(scid=3, vcid=4, frame_length=1786, has_fhec=True, has_ocf=True)))
def test_full_size_frames(case: tuple[AosChannel, bytes]) -> None:
    channel, data = case
    assert AosFrame.unpack(data, channel).pack(channel) == data


def test_pack_checks_against_channel() -> None:
    h = AosPrimaryHeader(171, 1)
    good = AosFrame(h, bytes(CH.data_field_length), insert_zone=b"IZ!", ocf=b"OCF4")
    for bad, msg in [(replace(good, data_field=b"x"), "data field must be 23 octets, got 1"),
                     (replace(good, insert_zone=b""), "insert zone must be 3 octets, got 0"),
                     (replace(good, ocf=None), "requires OCF"),
                     (replace(good, ocf=b"12345"), "OCF must be 4 octets, got 5"),
                     (replace(good, header=AosPrimaryHeader(171, 2)), "SCID/VCID 171/2")]:
        with pytest.raises(InvalidConfiguration, match=msg):
            bad.pack(CH)
    with pytest.raises(InvalidFrameLength):
        AosCodec(CH).seal(bytearray(10))
    with pytest.raises(UsageError):
        AosCodec(object())  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        AosFrame.unpack(12, CH)  # type: ignore[arg-type]


def test_bytearray_and_memoryview_inputs() -> None:
    data = _good()
    assert AosFrame.unpack(bytearray(data), CH) == AosFrame.unpack(memoryview(data), CH)


@settings(max_examples=100, deadline=None)
@given(aos_frames())
def test_fields_round_trip(case: tuple[AosChannel, AosFrame]) -> None:
    """to_fields / from_fields (the schema's frame_decode / frame_encode keys) are inverses."""
    channel, frame = case
    fields = AosFrame.unpack(frame.pack(channel), channel).to_fields()
    assert AosFrame.from_fields(fields, channel) == frame
    assert fields["fecf"] == (crc16(frame.pack(channel)[:-2]) if channel.has_fecf else None)


def test_from_fields_defaults_and_errors() -> None:
    ch = AosChannel(scid=9, vcid=3, frame_length=20, has_fecf=True)
    f = AosFrame.from_fields({"vc_frame_count": 5, "first_header_pointer": 0x7FF}, ch)
    assert f.header == AosPrimaryHeader(9, 3, 5) and f.m_pdu().no_packet_start
    assert len(f.pack(ch)) == 20
    for bad in ({"colour": 1}, {"tfvn": 0}, {"data_field_hex": "zz"}, {"scid": 300},
                {"data_field_hex": "0000" + "00" * 10, "first_header_pointer": 1}):
        with pytest.raises(InvalidConfiguration):
            AosFrame.from_fields(bad, ch)
