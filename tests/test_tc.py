"""TC transfer frames (232.0-B): digest worked frames, Yamcs frames, checks, round trips, fuzz."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings

from sdls_qkd.errors import (
    FecfError,
    InvalidConfiguration,
    InvalidFrameLength,
    InvalidHeader,
    SdlsQkdError,
)
from sdls_qkd.framing.channel import TcChannel
from sdls_qkd.framing.crc import crc16
from sdls_qkd.framing.space_packet import SequenceFlags
from sdls_qkd.framing.tc import (
    SetVr,
    TcFrame,
    TcFrameType,
    TcPrimaryHeader,
    TcSegmentHeader,
    Unlock,
    control_command_unpack,
)
from sdls_qkd.fuzz.tc import mutated_tc_bytes, tc_frames

SAMPLES = Path(__file__).resolve().parent.parent / "vectors" / "samples"
DIGEST = TcChannel(scid=0x123, vcid=1)


def read_sample(name: str) -> bytes:
    lines = (SAMPLES / name).read_text().splitlines()
    assert lines[0].startswith("# provenance")
    return bytes.fromhex("".join(lines[1:]))


# --------------------------------------------------------------------------- worked values
def test_digest_bc_unlock() -> None:
    frame = TcFrame.build(DIGEST, Unlock(), frame_type=TcFrameType.BC)
    assert frame.pack(DIGEST) == bytes.fromhex("3123040700 00 CD3B".replace(" ", ""))
    back = TcFrame.unpack(bytes.fromhex("312304070000CD3B"), DIGEST)
    assert back.frame_type is TcFrameType.BC and back.control_command == Unlock()


def test_digest_bc_set_vr() -> None:
    frame = TcFrame.build(DIGEST, SetVr(5), frame_type=TcFrameType.BC)
    assert frame.pack() == bytes.fromhex("31230409008200052D07")
    back = TcFrame.unpack(bytes.fromhex("31230409008200052D07"), DIGEST)
    assert back.control_command == SetVr(5) and back.fecf == 0x2D07


def test_digest_bd_frame_and_crc() -> None:
    raw = read_sample("tc_digest_bd.hex")
    assert raw == bytes.fromhex("2123040A0001020304AD77")
    frame = TcFrame.build(DIGEST, bytes([1, 2, 3, 4]))
    assert frame.pack(DIGEST) == raw and frame.fecf == 0xAD77
    back = TcFrame.unpack(raw, DIGEST)
    assert back.header == TcPrimaryHeader(scid=0x123, vcid=1, frame_length=10, bypass_flag=True)
    assert back.data == bytes([1, 2, 3, 4])
    assert crc16(raw) == 0  # receiver property of tc-frame.md section 5


@pytest.mark.parametrize(("name", "size"), [("tc_yamcs_cltu01.hex", 256),
                                            ("tc_yamcs_cltu02.hex", 36)])
def test_yamcs_frames(name: str, size: int) -> None:
    raw = read_sample(name)
    assert len(raw) == size
    channel = TcChannel(scid=758, vcid=0)
    frame = TcFrame.unpack(raw, channel)
    assert frame.scid == 758 and frame.vcid == 0 and frame.frame_type is TcFrameType.BD
    assert frame.header.frame_length == size - 1
    assert frame.pack(channel) == raw
    # a CLTU decoder hands over fill octets after the frame: the length field delimits it
    assert TcFrame.frame_octets(raw + b"\x55\x55") == size


def test_to_fields() -> None:
    ch = TcChannel(scid=5, vcid=2, has_segment_header=True, map_id=3)
    frame = TcFrame.build(ch, b"\xab", frame_type=TcFrameType.AD, frame_sequence_number=9,
                          sequence_flags=SequenceFlags.FIRST)
    raw = frame.pack(ch)
    assert raw[:6] == bytes([0x00, 0x05, 0x08, 0x08, 0x09, 0x43])
    fields = TcFrame.unpack(raw, ch).to_fields()
    assert fields == {"tfvn": 0, "scid": 5, "vcid": 2, "bypass_flag": 0,
                      "control_command_flag": 0, "frame_length": 8,
                      "frame_sequence_number": 9, "sequence_flags": 1, "map_id": 3,
                      "data_field_hex": "43ab", "fecf": int.from_bytes(raw[-2:], "big")}


# --------------------------------------------------------------------------- checks
def test_fecf_checked_first() -> None:
    raw = bytearray(bytes.fromhex("2123040A0001020304AD77"))
    raw[0] = 0xE1  # bad version *and* now a bad CRC: the CRC is reported
    with pytest.raises(FecfError, match="TC FECF is 0xad77, computed 0x") as e:
        TcFrame.unpack(bytes(raw), DIGEST)
    assert e.value.field == "fecf" and e.value.offset == 9


def reseal(raw: bytes) -> bytes:
    return raw[:-2] + crc16(raw[:-2]).to_bytes(2, "big")


def test_header_errors() -> None:
    good = bytes.fromhex("2123040A0001020304AD77")
    with pytest.raises(InvalidHeader, match="version must be 0, got 3"):
        TcFrame.unpack(reseal(bytes([0xE1]) + good[1:]), DIGEST)
    with pytest.raises(InvalidHeader, match="illegal type 01"):
        TcFrame.unpack(reseal(bytes([0x11]) + good[1:]), DIGEST)
    with pytest.raises(InvalidFrameLength, match="length field says 12 octets, got 11") as e:
        TcFrame.unpack(reseal(good[:3] + b"\x0b" + good[4:]), DIGEST)
    assert e.value.field == "frame_length"
    with pytest.raises(InvalidHeader, match="SCID 291 is not the channel's 292"):
        TcFrame.unpack(good, TcChannel(scid=0x124, vcid=1))
    assert TcFrame.unpack(good, TcChannel(scid=0x124, vcid=1), check_ids=False).scid == 0x123
    with pytest.raises(InvalidHeader, match="VCID 1 is not the channel's 2"):
        TcFrame.unpack(good, TcChannel(scid=0x123, vcid=2))
    with pytest.raises(InvalidFrameLength, match="needs at least 8 octets, got 7"):
        TcFrame.unpack(good[:7], DIGEST)
    with pytest.raises(InvalidFrameLength, match="over the maximum 10"):
        TcFrame.unpack(good, TcChannel(scid=0x123, vcid=1, max_frame_length=10))
    bad_cmd = reseal(bytes.fromhex("31230409008300050000"))
    with pytest.raises(InvalidHeader, match="not a COP-1 control command") as e2:
        TcFrame.unpack(bad_cmd, DIGEST)
    assert e2.value.field == "control_command" and e2.value.offset == 5


def test_build_errors_and_bc_has_no_segment_header() -> None:
    seg = TcChannel(scid=1, vcid=1, has_segment_header=True, map_id=0)
    bc = TcFrame.build(seg, SetVr(1), frame_type=TcFrameType.BC)
    assert bc.segment_header is None and TcFrame.unpack(bc.pack(seg), seg) == bc
    with pytest.raises(InvalidConfiguration):
        TcFrame.build(seg, b"\x01\x02", frame_type=TcFrameType.BC)
    with pytest.raises(InvalidConfiguration, match="1025 octets is over the maximum 1024"):
        TcFrame.build(DIGEST, bytes(1018))
    assert len(TcFrame.build(DIGEST, bytes(1017)).pack()) == 1024
    with pytest.raises(InvalidConfiguration):
        TcPrimaryHeader(scid=1, vcid=1, frame_length=5, bypass_flag=False,
                        control_command_flag=True)
    frame = TcFrame.build(DIGEST, b"\x01")
    with pytest.raises(InvalidConfiguration, match="requires a segment header"):
        frame.pack(TcChannel(scid=0x123, vcid=1, has_segment_header=True))


def test_control_commands() -> None:
    assert control_command_unpack(b"\x00") == Unlock()
    assert control_command_unpack(b"\x82\x00\xff") == SetVr(255)
    for bad in (b"", b"\x01", b"\x82\x00", b"\x82\x01\x05", b"\x00\x00"):
        with pytest.raises(InvalidHeader):
            control_command_unpack(bad)
    assert TcSegmentHeader.unpack(b"\x7f") == TcSegmentHeader(63, SequenceFlags.FIRST)


# --------------------------------------------------------------------------- properties
@settings(max_examples=200, deadline=None)
@given(tc_frames())
def test_round_trip(case: tuple[TcChannel, TcFrame]) -> None:
    channel, frame = case
    raw = frame.pack(channel)
    assert len(raw) == frame.header.frame_length + 1 <= channel.max_frame_length
    back = TcFrame.unpack(raw, channel)
    assert back == frame
    assert back.pack() == raw


@settings(max_examples=300, deadline=None)
@given(mutated_tc_bytes())
def test_parser_raises_only_library_errors(case: tuple[TcChannel, bytes]) -> None:
    channel, data = case
    try:
        frame = TcFrame.unpack(data, channel)
    except SdlsQkdError:
        return
    assert frame.pack(channel) == data  # whatever is accepted is exactly re-encodable


@settings(max_examples=100, deadline=None)
@given(tc_frames())
def test_fields_round_trip(case: tuple[TcChannel, TcFrame]) -> None:
    """to_fields / from_fields (frame_decode / frame_encode vectors) are inverses."""
    channel, frame = case
    fields = frame.to_fields()
    assert TcFrame.from_fields(fields, channel) == frame
    assert TcFrame.from_fields(fields, channel).pack(channel) == frame.pack(channel)


def test_from_fields_errors() -> None:
    ch = TcChannel(scid=1, vcid=1, has_segment_header=True, map_id=2)
    frame = TcFrame.from_fields({"sequence_flags": 1, "data_field_hex": "41ab"}, ch)
    assert frame.segment_header == TcSegmentHeader(1, SequenceFlags.FIRST)
    assert frame.pack(ch)[3] == 8  # 5 + 1 + 1 + 2 = 9 octets
    for bad in ({"colour": 1}, {"tfvn": 1}, {"data_field_hex": "zz"},
                {"data_field_hex": "41ab", "map_id": 3}, {"frame_length": 99},
                {"data_field_hex": ""}):
        with pytest.raises(InvalidConfiguration):
            TcFrame.from_fields(bad, ch)


def test_every_header_bit_flipped() -> None:
    """Each of the 48 header + segment header bits flipped alone, FECF resealed or not."""
    ch = TcChannel(scid=0x2F6, vcid=5, has_segment_header=True, map_id=7)
    raw = TcFrame.build(ch, bytes(range(20)), frame_type=TcFrameType.AD,
                        frame_sequence_number=200, sequence_flags=SequenceFlags.LAST).pack(ch)
    outcomes = set()
    for bit in range(48):
        mutated = bytearray(raw)
        mutated[bit // 8] ^= 0x80 >> (bit % 8)
        for data in (bytes(mutated), reseal(bytes(mutated))):
            try:
                frame = TcFrame.unpack(data, ch)
            except SdlsQkdError as exc:
                outcomes.add(exc.code)
                continue
            assert frame.pack(ch) == data
            outcomes.add("accepted")
    assert {"FecfError", "InvalidHeader", "InvalidFrameLength", "accepted"} <= outcomes
