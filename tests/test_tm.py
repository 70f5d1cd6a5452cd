"""TM transfer frames (132.0-B): Yamcs vectors, construct layout vs fast codec, checks, fuzzing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdls_qkd.errors import (
    FecfError,
    InvalidConfiguration,
    InvalidFrameLength,
    InvalidHeader,
    SdlsQkdError,
)
from sdls_qkd.framing.channel import TmChannel, channel_from_dict
from sdls_qkd.framing.crc import crc16
from sdls_qkd.framing.ocf import Clcw, FrameSecurityReport
from sdls_qkd.framing.tm import (
    FHP_IDLE,
    FHP_NO_PACKET_START,
    TM_PRIMARY_HEADER_LAYOUT,
    TmCodec,
    TmFrame,
    TmPrimaryHeader,
    TmSecondaryHeader,
)
from sdls_qkd.fuzz.tm import mutated_tm_bytes, tm_frames

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
TM_FILE = json.loads((VECTORS / "frames_yamcs_tm.json").read_text())


def test_vector_file_is_well_formed() -> None:
    assert TM_FILE["format"] == "sdls-vectors/1"
    assert TM_FILE["provenance"]["commit"]
    ids = [v["id"] for v in TM_FILE["vectors"]]
    assert len(ids) == len(set(ids)) == 4  # one frame + three secondary-header cases


@pytest.mark.parametrize("vector", TM_FILE["vectors"], ids=lambda v: v["id"])
def test_yamcs_frame_decode(vector: dict[str, Any]) -> None:
    assert vector["kind"] == "frame_decode" and vector["frame_type"] == "TM"
    channel = channel_from_dict("TM", vector["channel"])
    assert isinstance(channel, TmChannel)
    raw = bytes.fromhex(vector["input_hex"])
    frame = TmFrame.unpack(raw, channel)
    fields = frame.to_fields()
    for key, want in vector["expected_fields"].items():
        assert fields[key] == want, key
    # the fast path agrees
    view = TmCodec(channel).parse(raw)
    assert view.data == frame.data and view.first_header_pointer == frame.first_header_pointer
    assert frame.pack(channel) == raw


def test_yamcs_frame_corrupted_octet_10_is_a_crc_error() -> None:
    vector = next(v for v in TM_FILE["vectors"] if v["id"] == "yamcs-tm-frame-01")
    channel = channel_from_dict("TM", vector["channel"])
    assert isinstance(channel, TmChannel)
    raw = bytearray.fromhex(vector["input_hex"])
    raw[10] = 0x0C  # the mutation of Yamcs' test, which expects a CRC error
    with pytest.raises(FecfError, match=r"TM FECF is 0xbbd6, computed 0x") as e:
        TmCodec(channel).parse(bytes(raw))
    assert e.value.offset == 1113 and e.value.code == "FecfError"
    with pytest.raises(FecfError):
        TmFrame.unpack(bytes(raw), channel)


def test_yamcs_frame_ocf_is_a_clcw() -> None:
    vector = next(v for v in TM_FILE["vectors"] if v["id"] == "yamcs-tm-frame-01")
    channel = channel_from_dict("TM", vector["channel"])
    assert isinstance(channel, TmChannel)
    frame = TmFrame.unpack(bytes.fromhex(vector["input_hex"]), channel)
    assert isinstance(frame.ocf_word, Clcw) and frame.ocf_word.vcid == 0


# --------------------------------------------------------------------------- header layouts
def test_header_bits_by_hand() -> None:
    # tm-frame.md section 2: TFVN 00 | SCID 10 bits | VCID 3 | OCF 1 | MC 8 | VC 8 | status 16
    header = TmPrimaryHeader(scid=0x2AB, vcid=5, mc_frame_count=0x12, vc_frame_count=0x34,
                             ocf_flag=True, secondary_header_flag=True, sync_flag=False,
                             packet_order_flag=False, segment_length_id=3,
                             first_header_pointer=FHP_IDLE)
    # 00 1010101011 101 1 -> 0x2ABB; status 1 0 0 11 11111111110 -> 0x9FFE
    assert header.pack() == bytes.fromhex("2ABB12349FFE")


@settings(max_examples=200, deadline=None)
@given(st.builds(TmPrimaryHeader, scid=st.integers(0, 1023), vcid=st.integers(0, 7),
                 mc_frame_count=st.integers(0, 255), vc_frame_count=st.integers(0, 255),
                 ocf_flag=st.booleans(), secondary_header_flag=st.booleans(),
                 sync_flag=st.booleans(), packet_order_flag=st.booleans(),
                 segment_length_id=st.integers(0, 3),
                 first_header_pointer=st.integers(0, 0x7FF)))
def test_construct_layout_and_struct_agree(header: TmPrimaryHeader) -> None:
    raw = header.pack()
    fields = {f: getattr(header, f) for f in
              ("tfvn", "scid", "vcid", "ocf_flag", "mc_frame_count", "vc_frame_count",
               "secondary_header_flag", "sync_flag", "packet_order_flag", "segment_length_id",
               "first_header_pointer")}
    assert TM_PRIMARY_HEADER_LAYOUT.build(fields) == raw
    parsed = TM_PRIMARY_HEADER_LAYOUT.parse(raw)
    assert {k: parsed[k] for k in fields} == fields
    assert TmPrimaryHeader.unpack(raw) == header


@settings(max_examples=150, deadline=None)
@given(tm_frames())
def test_codec_and_dataclass_give_the_same_bytes(case: tuple[TmChannel, TmFrame]) -> None:
    channel, frame = case
    raw = frame.pack(channel)
    assert len(raw) == channel.frame_length
    codec = TmCodec(channel)
    h = frame.header
    built = codec.build(
        frame.data, mc_frame_count=h.mc_frame_count, vc_frame_count=h.vc_frame_count,
        first_header_pointer=h.first_header_pointer, ocf=frame.ocf,
        secondary_header=frame.secondary_header.pack() if frame.secondary_header else None,
        sync_flag=h.sync_flag, packet_order_flag=h.packet_order_flag,
        segment_length_id=h.segment_length_id)
    assert built == raw
    assert TM_PRIMARY_HEADER_LAYOUT.parse(raw[:6]).first_header_pointer == h.first_header_pointer
    view = codec.parse(raw)
    assert (view.scid, view.vcid, view.mc_frame_count, view.vc_frame_count, view.sync_flag,
            view.packet_order_flag, view.segment_length_id, view.first_header_pointer,
            view.data, view.ocf, view.fecf) == (
        h.scid, h.vcid, h.mc_frame_count, h.vc_frame_count, h.sync_flag, h.packet_order_flag,
        h.segment_length_id, h.first_header_pointer, frame.data, frame.ocf, frame.fecf)
    assert (view.ocf_flag, view.secondary_header_flag) == (h.ocf_flag, h.secondary_header_flag)
    assert view.secondary_header == (frame.secondary_header.pack() if frame.secondary_header
                                     else None)
    assert TmFrame.unpack(raw, channel) == frame


# --------------------------------------------------------------------------- checks
CH = TmChannel(scid=758, vcid=0, frame_length=1115, has_ocf=True)


def good_frame(channel: TmChannel = CH, **kw: Any) -> bytes:
    ocf = Clcw().pack() if channel.has_ocf else None
    return TmCodec(channel).build(bytes(channel.data_field_length), mc_frame_count=1,
                                  vc_frame_count=2, ocf=ocf, **kw)


def reseal(raw: bytes) -> bytes:
    return raw[:-2] + crc16(raw[:-2]).to_bytes(2, "big")


def test_length_messages() -> None:
    raw = good_frame()
    codec = TmCodec(CH)
    with pytest.raises(InvalidFrameLength, match="TM frame needs 1115 octets, got 1114"):
        codec.parse(raw[:-1])
    with pytest.raises(InvalidFrameLength, match="TM frame needs 1115 octets, got 1116"):
        codec.parse(raw + b"\x00")


def test_header_mismatches_name_the_field() -> None:
    raw = good_frame()
    cases = [
        (bytes([raw[0] | 0x40]) + raw[1:], "tfvn", "version must be 0, got 1"),
        (bytes([raw[0] ^ 0x01]) + raw[1:], "scid", "SCID 742 is not the channel's 758"),
        (raw[:1] + bytes([raw[1] | 0x02]) + raw[2:], "vcid", "VCID 1 is not the channel's 0"),
        (raw[:1] + bytes([raw[1] & 0xFE]) + raw[2:], "ocf_flag", "OCF flag is 0"),
        (raw[:4] + bytes([raw[4] | 0x80]) + raw[5:], "secondary_header_flag",
         "secondary header flag is 1"),
    ]
    for mutated, field, message in cases:
        with pytest.raises(InvalidHeader, match=message) as e:
            TmCodec(CH).parse(reseal(mutated))
        assert e.value.field == field
    other_vc = reseal(raw[:1] + bytes([raw[1] | 0x02]) + raw[2:])
    assert TmCodec(CH, check_vcid=False).parse(other_vc).vcid == 1


def test_secondary_header() -> None:
    ch = TmChannel(scid=1, vcid=1, frame_length=64, secondary_header_length=10)
    sh = TmSecondaryHeader(bytes(range(9)))
    assert sh.pack()[0] == 0x09  # length field = total - 1
    frame = TmFrame.build(ch, bytes(ch.data_field_length), secondary_header=sh)
    raw = frame.pack(ch)
    assert raw[6:16] == sh.pack()
    assert TmFrame.unpack(raw, ch).secondary_header == sh
    bad = reseal(raw[:6] + b"\x08" + raw[7:])
    with pytest.raises(InvalidHeader, match="secondary header length is 9 octets, channel says 10"):
        TmCodec(ch).parse(bad)
    # the version bits do not leak into the length (Yamcs issue 1125) and are reported
    v2 = reseal(raw[:6] + b"\x89" + raw[7:])
    got = TmFrame.unpack(v2, ch).secondary_header
    assert got is not None and got.version == 2 and got.length == 10
    with pytest.raises(InvalidHeader):
        TmSecondaryHeader.unpack(bytes(6) + b"\x00")
    with pytest.raises(InvalidFrameLength, match="needs 10 octets, got 3"):
        TmSecondaryHeader.unpack(bytes(6) + b"\x09\x00\x00")


def test_idle_frame_and_fhp_special_values() -> None:
    ch = TmChannel(scid=3, vcid=7, frame_length=100, has_ocf=True)
    fsr = FrameSecurityReport(bad_mac=True, spi=4)
    idle = TmFrame.idle(ch, mc_frame_count=9, ocf=fsr)
    raw = idle.pack(ch)
    assert raw[4:6] == bytes([0x1F, 0xFE])  # sync 0, POF 0, SLID 11, FHP 0x7FE
    back = TmFrame.unpack(raw, ch)
    assert back.is_idle and back.ocf_word == fsr and set(back.data) == {0x55}
    spanning = TmFrame.build(ch, bytes(ch.data_field_length), ocf=fsr,
                             first_header_pointer=FHP_NO_PACKET_START)
    assert spanning.pack(ch)[4:6] == bytes([0x1F, 0xFF]) and not spanning.is_idle


def test_build_errors() -> None:
    with pytest.raises(InvalidConfiguration, match="must be 1103 octets on this channel, not 5"):
        TmFrame.build(CH, b"12345", ocf=Clcw())
    with pytest.raises(InvalidConfiguration, match="requires OCF"):
        TmFrame.build(CH, bytes(1103))
    with pytest.raises(InvalidConfiguration):
        TmCodec(CH).build(bytes(1103), mc_frame_count=256, vc_frame_count=0, ocf=bytes(4))
    with pytest.raises(InvalidConfiguration):
        TmCodec(CH).build(bytes(1103), mc_frame_count=0, vc_frame_count=0)


@settings(max_examples=300, deadline=None)
@given(mutated_tm_bytes())
def test_parsers_raise_only_library_errors(case: tuple[TmChannel, bytes]) -> None:
    channel, data = case
    try:
        view = TmCodec(channel).parse(data)
    except SdlsQkdError as exc:
        with pytest.raises(type(exc)):
            TmFrame.unpack(data, channel)  # both paths reject the same way
        return
    frame = TmFrame.unpack(data, channel)
    assert frame.data == view.data
    assert frame.pack(channel) == data


@settings(max_examples=100, deadline=None)
@given(tm_frames())
def test_fields_round_trip(case: tuple[TmChannel, TmFrame]) -> None:
    """to_fields / from_fields (frame_decode / frame_encode vectors) are inverses."""
    channel, frame = case
    assert TmFrame.from_fields(frame.to_fields(), channel) == frame


def test_from_fields_defaults_and_errors() -> None:
    ch = TmChannel(scid=9, vcid=2, frame_length=40, has_ocf=True, secondary_header_length=3)
    frame = TmFrame.from_fields({"first_header_pointer": FHP_IDLE}, ch)
    raw = frame.pack(ch)
    assert raw[:6] == bytes([0x00, 0x95, 0, 0, 0x9F, 0xFE]) and raw[6] == 0x02
    for bad in ({"colour": 1}, {"tfvn": 1}, {"ocf_flag": 0}, {"secondary_header_hex": "0300"},
                {"data_field_hex": "00"}, {"ocf_hex": 5}):
        with pytest.raises(InvalidConfiguration):
            TmFrame.from_fields(bad, ch)


def test_every_header_bit_flipped() -> None:
    """Each bit of the primary + secondary header flipped alone, FECF resealed or not: both
    parse paths raise the same library error or accept the same frame."""
    ch = TmChannel(scid=758, vcid=3, frame_length=80, has_ocf=True, secondary_header_length=4)
    raw = TmFrame.build(ch, bytes(range(ch.data_field_length)), ocf=Clcw(vcid=3),
                        secondary_header=b"\x01\x02\x03", mc_frame_count=7).pack(ch)
    codec = TmCodec(ch)
    outcomes = set()
    for bit in range(8 * ch.header_length):
        mutated = bytearray(raw)
        mutated[bit // 8] ^= 0x80 >> (bit % 8)
        for data in (bytes(mutated), reseal(bytes(mutated))):
            try:
                view = codec.parse(data)
            except SdlsQkdError as exc:
                outcomes.add(exc.code)
                with pytest.raises(type(exc)):
                    TmFrame.unpack(data, ch)
                continue
            assert TmFrame.unpack(data, ch).pack(ch) == data and view.data
            outcomes.add("accepted")
    assert {"FecfError", "InvalidHeader", "accepted"} <= outcomes
