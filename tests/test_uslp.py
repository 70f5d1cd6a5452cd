"""USLP transfer frames: Yamcs vectors, header and TFDF rules, lengths, FECF 16/32, hostile bytes."""

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
    InvalidConfiguration,
    InvalidFrameLength,
    InvalidHeader,
    LinkError,
    SdlsQkdError,
    UsageError,
)
from sdls_qkd.framing.channel import UslpChannel, channel_from_dict
from sdls_qkd.framing.crc import crc16, crc32_uslp
from sdls_qkd.framing.uslp import (
    NO_POINTER,
    USLP_PRIMARY_HEADER,
    BypassFlag,
    ConstructionRule,
    ProtocolControlCommandFlag,
    SourceDestFlag,
    TfdfHeader,
    Upid,
    UslpCodec,
    UslpFrame,
    UslpPrimaryHeader,
)
from sdls_qkd.fuzz.uslp import mutated_uslp_bytes, uslp_channels, uslp_frames

VECTOR_DIR = Path(__file__).parent.parent / "vectors"
FRAME_VECTORS = json.loads((VECTOR_DIR / "frames_yamcs_aos_uslp.json").read_text())
USLP_VECTORS = [v for v in FRAME_VECTORS["vectors"] if v["frame_type"] == "USLP"]


# --------------------------------------------------------------------------- captured vectors
@pytest.mark.parametrize("vec", USLP_VECTORS, ids=lambda v: v["id"])
def test_yamcs_uslp_vectors(vec: dict[str, Any]) -> None:
    channel = channel_from_dict("USLP", vec["channel"])
    assert isinstance(channel, UslpChannel)
    data = bytes.fromhex(vec["input_hex"])
    frame = UslpFrame.unpack(data, channel)
    got = frame.to_fields()
    for key, value in vec["expected_fields"].items():
        assert got[key] == value, key
    assert frame.pack(channel) == data


def test_yamcs_vector_set() -> None:
    ids = {v["id"] for v in USLP_VECTORS}
    assert ids == {"yamcs-uslp-fixed-tfdz-rule000", "yamcs-uslp-variable-tfdz-rule111"}
    lines = (VECTOR_DIR / "samples" / "uslp_yamcs_fixed_rule000.hex").read_text().splitlines()
    assert lines[0].startswith("# provenance")
    vec = next(v for v in USLP_VECTORS if v["id"] == "yamcs-uslp-fixed-tfdz-rule000")
    assert lines[1] == vec["input_hex"]


YAMCS_FIXED = bytes.fromhex("c00ab820001c8101000000" + "aa" * 16 + "f529")
CH_FIXED = UslpChannel(scid=171, vcid=1, frame_length=29, vc_frame_count_length=1)


def _reseal(data: bytes | bytearray, channel: UslpChannel = CH_FIXED) -> bytes:
    n = channel.fecf_length
    body = bytes(data[:-n])
    crc = crc16(body) if n == 2 else crc32_uslp(body)
    return body + crc.to_bytes(n, "big")


# --------------------------------------------------------------------------- header
def test_header_bits_by_hand() -> None:
    h = UslpPrimaryHeader(scid=0xABCD, vcid=0x2A, map_id=0x9,
                          source_dest_flag=SourceDestFlag.DESTINATION, frame_length=0x1234,
                          bypass_flag=BypassFlag.EXPEDITED,
                          protocol_control_command_flag=ProtocolControlCommandFlag.PROTOCOL_CONTROL,
                          ocf_flag=True,
                          vc_frame_count_length=3, vc_frame_count=0x010203)
    # 1100 | 1010 1011 1100 1101 | 1 | 101010 | 1001 | 0
    assert h.pack() == bytes.fromhex("CABCDD52" "1234" "CB" "010203")
    assert UslpPrimaryHeader.unpack(h.pack()) == h
    t = UslpPrimaryHeader(scid=0xABCD, vcid=0x2A, map_id=0x9, end_of_frame_primary_header_flag=True)
    assert t.pack() == bytes.fromhex("CABCD553") and t.length == 4
    assert UslpPrimaryHeader.unpack(t.pack() + b"junk") == t


@pytest.mark.parametrize("kwargs", [
    {"scid": 1 << 16, "vcid": 0}, {"scid": 0, "vcid": 64}, {"scid": 0, "vcid": 0, "map_id": 16},
    {"scid": 0, "vcid": 0, "vc_frame_count_length": 8},
    {"scid": 0, "vcid": 0, "vc_frame_count_length": 1, "vc_frame_count": 256},
    {"scid": 0, "vcid": 0, "end_of_frame_primary_header_flag": True, "ocf_flag": True},
    {"scid": 0, "vcid": 0, "end_of_frame_primary_header_flag": True, "frame_length": 9},
    {"scid": 0, "vcid": 0, "frame_length": 1 << 16},
])
def test_header_rejects_bad_values(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidConfiguration):
        UslpPrimaryHeader(**kwargs)


def test_header_unpack_errors() -> None:
    with pytest.raises(InvalidFrameLength, match="at least 4 octets, got 3"):
        UslpPrimaryHeader.unpack(b"\xc0\x00\x00")
    with pytest.raises(InvalidHeader, match="TFVN must be 12") as info:
        UslpPrimaryHeader.unpack(b"\x00" * 8)
    assert info.value.field == "tfvn"
    with pytest.raises(InvalidFrameLength, match="at least 7 octets, got 6"):
        UslpPrimaryHeader.unpack(bytes.fromhex("c00ab8200010"))
    with pytest.raises(InvalidFrameLength, match="needs 10 octets, got 9") as info2:
        UslpPrimaryHeader.unpack(bytes.fromhex("c00ab820001c830000"))
    assert info2.value.field == "vc_frame_count"
    with pytest.raises(UsageError):
        UslpPrimaryHeader.unpack(None)  # type: ignore[arg-type]


def test_tfdf_header() -> None:
    assert TfdfHeader(ConstructionRule.PACKETS_SPANNING_FRAMES, Upid.SPACE_PACKETS, 5).pack() == b"\x00\x00\x05"
    t = TfdfHeader(ConstructionRule.MAPA_SDU_START, 5, 0xFFFF)
    assert t.pack() == b"\x25\xff\xff" and t.last_valid_octet_pointer == 0xFFFF
    assert t.first_header_pointer is None and t.upid is Upid.MAPA_SDU
    nos = ConstructionRule.NO_SEGMENTATION
    assert TfdfHeader(nos, 0b11111).pack() == b"\xff" and TfdfHeader(nos, 31).upid is Upid.IDLE
    assert TfdfHeader(ConstructionRule.OCTET_STREAM, 0b10101).upid == 21  # unknown UPID kept as int
    assert TfdfHeader(7, 0).construction_rule is nos  # type: ignore[arg-type]  # ints coerced
    with pytest.raises(InvalidConfiguration, match="needs a pointer"):
        TfdfHeader(ConstructionRule.MAPA_SDU_START, 0)
    with pytest.raises(InvalidConfiguration, match="has no pointer field"):
        TfdfHeader(ConstructionRule.OCTET_STREAM, 0, 3)
    with pytest.raises(InvalidConfiguration):
        TfdfHeader(8, 0)  # type: ignore[arg-type]
    with pytest.raises(InvalidConfiguration):
        TfdfHeader(nos, 32)
    assert TfdfHeader.unpack(b"\x20\x00\x01ab", fixed=True).last_valid_octet_pointer == 1
    with pytest.raises(InvalidHeader, match="last valid octet pointer 2 is past the 2-octet") as e:
        TfdfHeader.unpack(b"\x20\x00\x02ab", fixed=True, offset=8)
    assert e.value.offset == 9
    with pytest.raises(InvalidHeader, match="rule 001 is not allowed in variable-length"):
        TfdfHeader.unpack(b"\x20\x00\x01ab", fixed=False)
    with pytest.raises(InvalidFrameLength, match="needs 3 header octets, got 2"):
        TfdfHeader.unpack(b"\x00\x00", fixed=True)
    with pytest.raises(InvalidFrameLength, match="at least 1 octet"):
        TfdfHeader.unpack(b"", fixed=False)


# --------------------------------------------------------------------------- frame-level checks
def test_fixed_length_errors() -> None:
    with pytest.raises(InvalidFrameLength, match="needs 29 octets, got 28"):
        UslpFrame.unpack(YAMCS_FIXED[:-1], CH_FIXED)
    with pytest.raises(FecfError) as info:
        UslpFrame.unpack(YAMCS_FIXED[:-1] + b"\x00", CH_FIXED)
    assert info.value.offset == 27 and "0xF529" in str(info.value)
    bad = bytearray(YAMCS_FIXED)
    bad[5] = 0x1B  # frame length field 27 -> 28 octets
    with pytest.raises(InvalidFrameLength) as info2:
        UslpFrame.unpack(_reseal(bad), CH_FIXED)
    assert info2.value.field == "frame_length" and info2.value.offset == 4
    assert "Frame Length field says 28 octets (field 27), got 29" in str(info2.value)


def test_header_against_channel() -> None:
    cases = [
        (3, 0x21, "end_of_frame_primary_header_flag"),  # EFPH set
        (6, 0x82, "vc_frame_count_length"),
        (6, 0x89, "ocf_flag"),
        (1, 0x0B, "scid"),
        (2, 0xB9, "vcid"),
        (3, 0x22, "map_id"),
        (0, 0x40, "tfvn"),
    ]
    for offset, value, name in cases:
        bad = bytearray(YAMCS_FIXED)
        bad[offset] = value
        with pytest.raises(InvalidHeader) as info:
            UslpFrame.unpack(_reseal(bad), CH_FIXED)
        assert info.value.field == name, (name, str(info.value))


def test_construction_rule_must_fit_the_frame_kind() -> None:
    bad = bytearray(YAMCS_FIXED)
    bad[8] = 0xE0  # rule 111 in a fixed-length frame
    with pytest.raises(InvalidHeader, match="rule 111 is not allowed in fixed-length") as info:
        UslpFrame.unpack(_reseal(bad), CH_FIXED)
    assert info.value.field == "construction_rule" and info.value.offset == 8
    var = UslpChannel(scid=171, vcid=1, vc_frame_count_length=1)
    with pytest.raises(InvalidHeader, match="rule 000 is not allowed in variable-length"):
        UslpFrame.unpack(YAMCS_FIXED, var)
    frame = UslpFrame.build(var, b"abc", construction_rule=ConstructionRule.PACKETS_SPANNING_FRAMES)
    with pytest.raises(InvalidConfiguration, match="only 011-111"):
        frame.pack(var)


def test_pointer_must_point_into_the_tfdz() -> None:
    for pointer, ok in [(15, True), (16, False), (0xFFFE, False), (NO_POINTER, True)]:
        bad = bytearray(YAMCS_FIXED)
        bad[9:11] = pointer.to_bytes(2, "big")
        data = _reseal(bad)
        if ok:
            assert UslpFrame.unpack(data, CH_FIXED).tfdf_header.pointer == pointer
        else:
            with pytest.raises(InvalidHeader, match=f"first header pointer {pointer} is past the "
                                                    "16-octet TFDZ") as info:
                UslpFrame.unpack(data, CH_FIXED)
            assert info.value.field == "first_header_pointer" and info.value.offset == 9
    lvop = bytearray(YAMCS_FIXED)
    lvop[8] = 0x20
    lvop[9:11] = b"\x00\x10"
    with pytest.raises(InvalidHeader) as info:
        UslpFrame.unpack(_reseal(lvop), CH_FIXED)
    assert info.value.field == "last_valid_octet_pointer"


def test_pointer_rule_needs_room() -> None:
    ch = UslpChannel(scid=1, vcid=1, frame_length=11, vc_frame_count_length=0)  # TFDF room 2
    data = _reseal(bytes.fromhex("c0001020000a00") + b"\x00\x00" + b"\0\0", ch)
    with pytest.raises(InvalidFrameLength, match="needs 3 header octets, the frame leaves 2"):
        UslpFrame.unpack(data, ch)


def test_variable_length_limits() -> None:
    ch = UslpChannel(scid=171, vcid=1, vc_frame_count_length=1, max_frame_length=30)
    frame = UslpFrame.build(ch, b"x" * 19)  # 8 + 1 + 19 + 2 = 30
    data = frame.pack(ch)
    assert len(data) == 30 and UslpFrame.unpack(data, ch) == replace(
        frame, header=replace(frame.header, frame_length=29))
    with pytest.raises(InvalidConfiguration, match="31 octets, over the maximum of 30"):
        UslpFrame.build(ch, b"x" * 20).pack(ch)
    with pytest.raises(InvalidFrameLength, match="31 octets exceeds the maximum of 30"):
        UslpFrame.unpack(data + b"\0", ch)
    with pytest.raises(InvalidFrameLength, match="at least 11 octets on this channel, got 10"):
        UslpFrame.unpack(data[:10], ch)
    with pytest.raises(InvalidConfiguration, match="frame_length 5 does not match"):
        replace(frame, header=replace(frame.header, frame_length=5)).pack(ch)


def test_max_size_variable_frame() -> None:
    ch = UslpChannel(scid=1, vcid=2, map_id=3, vc_frame_count_length=0, fecf_length=4)
    tfdz = bytes(65536 - 7 - 1 - 4)
    data = UslpFrame.build(ch, tfdz).pack(ch)
    assert len(data) == 65536 and data[4:6] == b"\xff\xff"
    assert UslpFrame.unpack(data, ch).tfdz == tfdz
    with pytest.raises(InvalidConfiguration, match="65537 octets"):
        UslpFrame.build(ch, tfdz + b"\0").pack(ch)
    with pytest.raises(InvalidFrameLength, match="65537 octets exceeds"):
        UslpFrame.unpack(data + b"\0", ch)


def test_crc32_fecf() -> None:
    ch = UslpChannel(scid=5, vcid=2, map_id=3, fecf_length=4, has_ocf=True, insert_zone_length=3,
                     vc_frame_count_length=7)
    frame = UslpFrame.build(ch, b"hello", vc_frame_count=2**56 - 1, insert_zone=b"IZ!", ocf=b"OCF!")
    data = frame.pack(ch)
    assert data[-4:] == crc32_uslp(data[:-4]).to_bytes(4, "big")
    back = UslpFrame.unpack(data, ch)
    assert back.ocf == b"OCF!" and back.insert_zone == b"IZ!" and back.header.vc_frame_count == 2**56 - 1
    assert back.fecf == int.from_bytes(data[-4:], "big")
    bad = bytearray(data)
    bad[12] ^= 0x40
    with pytest.raises(FecfError, match=r"computed 0x[0-9A-F]{8}, frame carries 0x[0-9A-F]{8}"):
        UslpFrame.unpack(bytes(bad), ch)


def test_truncated_frames() -> None:
    ch = UslpChannel(scid=0xABC, vcid=3, map_id=2, frame_length=12, truncated=True)
    frame = UslpFrame.build(ch, b"abcde", upid=Upid.MAPA_SDU)
    data = frame.pack(ch)
    assert len(data) == 12 and data[3] & 1 and data[4] == 0xE5
    assert UslpFrame.unpack(data, ch) == frame
    assert UslpFrame.unpack(data, ch).to_fields()["frame_length"] is None
    full = UslpChannel(scid=0xABC, vcid=3, map_id=2, frame_length=12, vc_frame_count_length=0)
    with pytest.raises(InvalidHeader, match="flag is 1, channel expects full headers"):
        UslpFrame.unpack(data, full)
    with pytest.raises(InvalidConfiguration, match="no insert zone"):
        UslpFrame.unpack(data, replace(ch, insert_zone_length=1))
    with pytest.raises(InvalidConfiguration, match="6..32 octets, not 33"):
        UslpCodec(replace(ch, frame_length=33))
    bad = bytearray(data)
    bad[4] = 0x00  # rule 000 in a truncated frame
    with pytest.raises(InvalidHeader, match="not allowed in truncated"):
        UslpFrame.unpack(_reseal(bad, ch), ch)
    with pytest.raises(InvalidConfiguration, match="fixed length is 12"):
        UslpFrame.build(ch, b"abcd").pack(ch)


def test_pack_rejects_inconsistent_frames() -> None:
    frame = UslpFrame.build(CH_FIXED, bytes(16), vc_frame_count=1)
    assert frame.pack(CH_FIXED)[:8] == bytes.fromhex("c00ab020001c0101")
    bad = [
        (replace(frame, insert_zone=b"x"), "insert zone must be 0 octets, got 1"),
        (replace(frame, ocf=b"1234"), "has no OCF"),
        (replace(frame, tfdz=bytes(15)), "TFDZ must be 16 octets"),
        (replace(frame, header=replace(frame.header, vcid=2)), "SCID/VCID/MAP ID 171/2/0"),
        (replace(frame, header=replace(frame.header, vc_frame_count_length=2)), "Count Length 2"),
        (replace(frame, header=replace(frame.header, ocf_flag=True)), "OCF flag 1"),
        (replace(frame, header=replace(frame.header, spare=1)), "spare bits"),
        (replace(frame, tfdf_header=TfdfHeader(ConstructionRule.PACKETS_SPANNING_FRAMES, 0, 16)),
         "pointer 16 is past the 16-octet"),
    ]
    for f, msg in bad:
        with pytest.raises(InvalidConfiguration, match=msg):
            f.pack(CH_FIXED)
    with pytest.raises(UsageError):
        UslpCodec(object())  # type: ignore[arg-type]


def test_seal_rewrites_length_and_fecf() -> None:
    ch = UslpChannel(scid=171, vcid=1, vc_frame_count_length=1)
    data = UslpFrame.build(ch, b"payload").pack(ch)
    buf = bytearray(data[:-2] + b"XYZ" + b"\0\0")  # grow the TFDZ, stale length and FECF
    UslpCodec(ch).seal(buf)
    assert UslpFrame.unpack(bytes(buf), ch).tfdz == b"payloadXYZ"
    with pytest.raises(InvalidFrameLength):
        UslpCodec(ch).seal(bytearray(3))


def test_enums() -> None:
    assert [r.has_pointer for r in ConstructionRule] == [True] * 3 + [False] * 5
    assert SourceDestFlag.DESTINATION == 1 and BypassFlag.EXPEDITED == 1
    assert Upid.SDLS == 3 and Upid.IDLE == 31 and Upid.COP_1 == 1


# --------------------------------------------------------------------------- properties
@settings(max_examples=200, deadline=None)
@given(uslp_frames())
def test_round_trip(case: tuple[UslpChannel, UslpFrame]) -> None:
    channel, frame = case
    data = frame.pack(channel)
    if channel.frame_length is not None:
        assert len(data) == channel.frame_length
    back = UslpFrame.unpack(data, channel)
    expected_header = frame.header if frame.header.truncated else replace(
        frame.header, frame_length=len(data) - 1)
    assert back == replace(frame, header=expected_header)
    assert back.pack(channel) == data
    assert UslpPrimaryHeader.unpack(data) == expected_header
    if not expected_header.truncated:  # the struct path and the construct layout agree
        h = expected_header
        spec = USLP_PRIMARY_HEADER.build({"bits": {
            "tfvn": h.tfvn, "scid": h.scid, "source_dest_flag": int(h.source_dest_flag),
            "vcid": h.vcid, "map_id": h.map_id, "end_of_frame_primary_header_flag": False,
            "frame_length": h.frame_length, "bypass_flag": int(h.bypass_flag),
            "protocol_control_command_flag": int(h.protocol_control_command_flag), "spare": 0,
            "ocf_flag": h.ocf_flag, "vc_frame_count_length": h.vc_frame_count_length},
            "vc_frame_count": h.vc_frame_count})
        assert data[:h.length] == spec
        parsed = USLP_PRIMARY_HEADER.parse(data)
        assert (parsed.bits.scid, parsed.bits.map_id, parsed.vc_frame_count) == (
            h.scid, h.map_id, h.vc_frame_count)
    assert TfdfHeader.unpack(back.tfdf, fixed=channel.frame_length is not None
                             and not channel.truncated) == back.tfdf_header
    if channel.has_fecf:  # CRC residue: the receiver's fast check relies on it
        crc = crc16 if channel.fecf_length == 2 else crc32_uslp
        assert crc(data) == 0
    fields = back.to_fields()
    assert bytes.fromhex(fields["data_field_hex"]) == back.tfdf


@settings(max_examples=350, deadline=None)
@given(mutated_uslp_bytes())
def test_mutated_bytes_raise_only_link_errors(case: tuple[UslpChannel, bytes]) -> None:
    channel, data = case
    try:
        frame = UslpFrame.unpack(data, channel)
    except SdlsQkdError as exc:
        assert isinstance(exc, LinkError), repr(exc)
        assert str(exc)
        return
    assert (frame.header.scid, frame.header.vcid) == (channel.scid, channel.vcid)
    if frame.header.spare:  # reserved bits are kept on receipt but never sent
        with pytest.raises(InvalidConfiguration, match="spare"):
            frame.pack(channel)
    else:
        assert frame.pack(channel) == data  # anything accepted is exactly what we would send


@settings(max_examples=200, deadline=None)
@given(uslp_channels(max_frame_length=40), st.binary(max_size=80))
def test_random_bytes_raise_only_link_errors(channel: UslpChannel, data: bytes) -> None:
    for parse in (lambda: UslpFrame.unpack(data, channel),
                  lambda: UslpFrame.unpack(data, channel, check_fecf=False),
                  lambda: UslpPrimaryHeader.unpack(data),
                  lambda: TfdfHeader.unpack(data, fixed=True, offset=9),
                  lambda: TfdfHeader.unpack(data, fixed=False)):
        try:
            parse()
        except SdlsQkdError as exc:
            assert isinstance(exc, LinkError), repr(exc)


@settings(max_examples=100, deadline=None)
@given(uslp_frames())
def test_fields_round_trip(case: tuple[UslpChannel, UslpFrame]) -> None:
    """to_fields / from_fields (the schema's frame_decode / frame_encode keys) are inverses."""
    channel, frame = case
    data = frame.pack(channel)
    back = UslpFrame.unpack(data, channel)
    rebuilt = UslpFrame.from_fields(back.to_fields(), channel)
    assert rebuilt == back and rebuilt.pack(channel) == data


def test_from_fields_defaults_and_errors() -> None:
    f = UslpFrame.from_fields({"vc_frame_count": 1, "bypass_flag": 1, "source_dest_flag": 1}, CH_FIXED)
    assert f.tfdf_header.first_header_pointer == 0 and len(f.pack(CH_FIXED)) == 29
    var = UslpChannel(scid=1, vcid=2, vc_frame_count_length=0)
    g = UslpFrame.from_fields({"data_field_hex": "e0aabb"}, var)
    assert g.tfdz == b"\xaa\xbb" and g.pack(var) == UslpFrame.build(var, b"\xaa\xbb").pack(var)
    for bad in ({"colour": 1}, {"tfvn": 1}, {"data_field_hex": "00"}, {"bypass_flag": 2},
                {"data_field_hex": "e0", "upid": 3}, {"construction_rule": 9},
                {"data_field_hex": 5}):
        with pytest.raises(InvalidConfiguration):
            UslpFrame.from_fields(bad, var)
