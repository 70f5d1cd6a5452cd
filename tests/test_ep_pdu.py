"""EP PDU codec and its Space Packet carriage (355.1-B-1 tag/length; 133.0-B-2 packets)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from spacepackets.ccsds.spacepacket import PacketType, SpacePacketHeader

from sdls_qkd import errors
from sdls_qkd.procedures.pdu import (
    EpPacket,
    EpPacketConfig,
    Pdu,
    PduTag,
    PduType,
    Procedure,
    ServiceGroup,
    unwrap_command,
    unwrap_reply,
    wrap_command,
    wrap_reply,
)

# Tag octets as they appear in the CryptoLib capture (commands and replies, sdls-ep.md §3)
CAPTURED_TAGS = {
    0x01: Procedure.OTAR, 0x02: Procedure.KEY_ACTIVATION, 0x03: Procedure.KEY_DEACTIVATION,
    0x04: Procedure.KEY_VERIFICATION, 0x07: Procedure.KEY_INVENTORY, 0x10: Procedure.READ_ARSN,
    0x15: Procedure.SET_ARSN_WINDOW, 0x16: Procedure.REKEY_SA, 0x19: Procedure.EXPIRE_SA,
    0x1A: Procedure.SET_ARSN, 0x1B: Procedure.START_SA, 0x1E: Procedure.STOP_SA,
    0x1F: Procedure.SA_STATUS, 0x31: Procedure.PING, 0x32: Procedure.LOG_STATUS,
    0x33: Procedure.DUMP_LOG, 0x34: Procedure.ERASE_LOG, 0x35: Procedure.SELF_TEST,
    0x37: Procedure.ALARM_FLAG_RESET,
}


@pytest.mark.parametrize(("octet", "procedure"), sorted(CAPTURED_TAGS.items()))
def test_tag_octets_match_capture(octet: int, procedure: Procedure) -> None:
    tag = PduTag.from_int(octet)
    assert tag.pdu_type is PduType.COMMAND and tag.user_flag == 0
    assert tag.procedure is procedure
    reply = PduTag.from_int(octet | 0x80)
    assert reply.pdu_type is PduType.REPLY and reply.procedure is procedure


def test_tag_fields_bit_positions() -> None:
    # 1 0 11 0101: reply, CCSDS, monitoring & control, PID 0101 (self-test)
    tag = PduTag.from_int(0b1011_0101)
    assert (tag.pdu_type, tag.user_flag, tag.service_group, tag.procedure_id) == (
        PduType.REPLY, 0, ServiceGroup.MONITORING_CONTROL, 0b0101)
    assert PduTag.for_procedure(Procedure.QKD_REKEY).to_int() == 0b0100_0001


def test_captured_reply_pdu_decodes() -> None:
    # Inventory reply PDU bytes from the CryptoLib capture, length field in bits
    pdu = Pdu.unpack(bytes.fromhex("87" "0048" "008400008501008602"))
    assert pdu.is_reply and pdu.procedure is Procedure.KEY_INVENTORY
    assert pdu.length_bits == 72 and len(pdu.data) == 9


def test_pack_unpack_and_length_in_bits() -> None:
    pdu = Pdu.command(Procedure.KEY_ACTIVATION, bytes.fromhex("008d008e"))
    assert pdu.pack() == bytes.fromhex("02" "0020" "008d008e")
    assert Pdu.unpack(pdu.pack()) == pdu


@pytest.mark.parametrize("raw", [
    "", "02", "0200",            # truncated header
    "020021008d008e",            # 33 bits: not whole octets
    "020028008d008e",            # announces 5 octets, 4 follow
    "020010008d008e",            # 2 octets announced, 4 present (strict: extra octets)
])
def test_bad_pdus_raise_invalid_procedure(raw: str) -> None:
    with pytest.raises(errors.InvalidProcedure):
        Pdu.unpack(bytes.fromhex(raw))


@pytest.mark.parametrize("octet", [0x00, 0x05, 0x08, 0x12, 0x21, 0x30, 0x36, 0x4F, 0x7F])
def test_reserved_procedures_are_unknown(octet: int) -> None:
    with pytest.raises(errors.InvalidProcedure):
        _ = PduTag.from_int(octet).procedure


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_pdu_parser_raises_only_library_errors(data: bytes) -> None:
    try:
        pdu = Pdu.unpack(data)
    except errors.SdlsQkdError:
        return
    assert pdu.pack() == data


def test_packet_header_agrees_with_spacepackets() -> None:
    pdu = Pdu.command(Procedure.PING)
    cfg = EpPacketConfig(command_apid=0x180, reply_apid=0x80, secondary_header_length=4)
    raw = wrap_command(pdu, cfg, 0x12C7, b"\x19\x7f\x0b\x00")
    hdr = SpacePacketHeader.unpack(raw)
    assert hdr.packet_type is PacketType.TC and hdr.apid == 0x180 and hdr.sec_header_flag
    assert hdr.seq_count == 0x12C7 and hdr.packet_len == len(raw)
    # the CryptoLib capture's Ping command packet, built here and compared octet for octet
    assert raw.hex() == "1980d2c70006197f0b00310000"
    back = unwrap_command(raw, cfg)
    assert back.sequence_count == 0x12C7 and Pdu.unpack(back.pdu) == pdu
    reply = wrap_reply(Pdu.reply(Procedure.PING), cfg, 0x12C7, b"\x19\x7f\x0b\x00")
    rhdr = SpacePacketHeader.unpack(reply)
    assert rhdr.packet_type is PacketType.TM and rhdr.apid == 0x80
    assert unwrap_reply(reply, cfg).pdu == bytes.fromhex("b10000")


@pytest.mark.parametrize(("raw", "field"), [
    ("3080c0000002310000", "packet_version"),
    ("0080c0000002310000", "packet_type"),
    ("1081c0000002310000", "apid"),
    ("1880c0000002310000", "secondary_header_flag"),
    ("108040000002310000", "sequence_flags"),
    ("1080c0000003310000", "packet_data_length"),
    ("1080c000000031", "pdu"),
])
def test_bad_packets_name_the_field(raw: str, field: str) -> None:
    cfg = EpPacketConfig(command_apid=0x80, secondary_header_length=0)
    assert unwrap_command(bytes.fromhex("1080c0000002310000"), cfg).pdu == b"\x31\x00\x00"
    with pytest.raises(errors.InvalidProcedure) as info:
        unwrap_command(bytes.fromhex(raw), cfg)
    assert info.value.field == field


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=48))
def test_packet_parser_raises_only_library_errors(data: bytes) -> None:
    cfg = EpPacketConfig()
    try:
        pkt = unwrap_command(data, cfg)
    except errors.SdlsQkdError:
        return
    assert EpPacket.pack(pkt) == data
