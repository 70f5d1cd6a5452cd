"""USLP interoperability with ``spacepackets`` (us-irs/spacepackets-py 0.32): one library packs,
the other unpacks; fields and bytes agree, in both directions, for fixed-length, variable-length
and truncated frames.  spacepackets has a 16-bit FECF only, so CRC-32 frames are not exchanged."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdls_qkd.framing.channel import UslpChannel
from sdls_qkd.framing.uslp import (
    BypassFlag,
    ConstructionRule,
    ProtocolControlCommandFlag,
    SourceDestFlag,
    TfdfHeader,
    UslpFrame,
    UslpPrimaryHeader,
)
from sdls_qkd.fuzz.uslp import uslp_channels, uslp_frames

sp = pytest.importorskip("spacepackets.uslp")
from spacepackets.uslp import frame as sp_frame  # noqa: E402
from spacepackets.uslp import header as sp_header  # noqa: E402

KINDS = ["fixed", "variable", "truncated"]


def _sp_properties(ch: UslpChannel) -> tuple[object, object]:
    iz = ch.insert_zone_length
    if ch.frame_length is not None and not ch.truncated:
        return sp_frame.FrameType.FIXED, sp_frame.FixedFrameProperties(
            fixed_len=ch.frame_length, has_insert_zone=iz > 0, has_fecf=ch.has_fecf,
            insert_zone_len=iz or None)
    return sp_frame.FrameType.VARIABLE, sp_frame.VarFrameProperties(
        has_insert_zone=iz > 0, has_fecf=ch.has_fecf,
        truncated_frame_len=ch.frame_length if ch.truncated else 0, insert_zone_len=iz or None)


def _compare(ours: UslpFrame, theirs: sp_frame.TransferFrame, ch: UslpChannel) -> None:
    h, th = ours.header, theirs.header
    assert (th.scid, th.vcid, th.map_id, int(th.src_dest)) == (
        h.scid, h.vcid, h.map_id, int(h.source_dest_flag))
    assert th.truncated() == h.truncated
    if not h.truncated:
        assert th.frame_len == h.frame_length
        assert int(th.bypass_seq_ctrl_flag) == int(h.bypass_flag)
        assert int(th.prot_ctrl_cmd_flag) == int(h.protocol_control_command_flag)
        assert bool(th.op_ctrl_flag) == h.ocf_flag
        assert th.vcf_count_len == h.vc_frame_count_length
        assert (th.vcf_count or 0) == h.vc_frame_count
        assert (bytes(theirs.op_ctrl_field) if theirs.op_ctrl_field is not None else None) == ours.ocf
    t = ours.tfdf_header
    assert int(theirs.tfdf.tfdz_contr_rules) == int(t.construction_rule)
    assert int(theirs.tfdf.uslp_ident) == int(t.upid)
    assert theirs.tfdf.fhp_or_lvop == t.pointer
    assert bytes(theirs.tfdf.tfdz) == ours.tfdz
    assert bytes(theirs.insert_zone or b"") == ours.insert_zone


@settings(max_examples=120, deadline=None)
@given(st.sampled_from(KINDS).flatmap(
    lambda k: uslp_frames(uslp_channels(kind=k, fecf_lengths=(2,)))))
def test_ours_packs_spacepackets_unpacks(case: tuple[UslpChannel, UslpFrame]) -> None:
    ch, frame = case
    data = frame.pack(ch)
    ftype, props = _sp_properties(ch)
    theirs = sp_frame.TransferFrame.unpack(raw_frame=data, frame_type=ftype, frame_properties=props)
    _compare(UslpFrame.unpack(data, ch), theirs, ch)


def _sp_build(ch: UslpChannel, ours: UslpFrame) -> sp_frame.TransferFrame:
    """The same frame built field by field with spacepackets' own classes."""
    h = ours.header
    src = sp_header.SourceOrDestField(int(h.source_dest_flag))
    header: object
    if h.truncated:
        header = sp_header.TruncatedPrimaryHeader(scid=h.scid, src_dest=src, vcid=h.vcid,
                                                  map_id=h.map_id)
    else:
        header = sp_header.PrimaryHeader(
            scid=h.scid, src_dest=src, vcid=h.vcid, map_id=h.map_id, frame_len=0,
            bypass_seq_ctrl_flag=sp_header.BypassSequenceControlFlag(int(h.bypass_flag)),
            prot_ctrl_cmd_flag=sp_header.ProtocolCommandFlag(int(h.protocol_control_command_flag)),
            op_ctrl_flag=h.ocf_flag, vcf_count_len=h.vc_frame_count_length,
            vcf_count=h.vc_frame_count)
    t = ours.tfdf_header
    tfdf = sp_frame.TransferFrameDataField(
        tfdz_cnstr_rules=sp_frame.TfdzConstructionRules(int(t.construction_rule)),
        uslp_ident=int(t.upid), tfdz=ours.tfdz, fhp_or_lvop=t.pointer)
    frame = sp_frame.TransferFrame(header=header, tfdf=tfdf, insert_zone=ours.insert_zone or None,
                                   op_ctrl_field=ours.ocf, has_fecf=ch.has_fecf)
    frame.set_frame_len_in_header()
    return frame


@settings(max_examples=120, deadline=None)
@given(st.sampled_from(KINDS).flatmap(
    lambda k: uslp_frames(uslp_channels(kind=k, fecf_lengths=(2,)))))
def test_spacepackets_packs_ours_unpacks(case: tuple[UslpChannel, UslpFrame]) -> None:
    ch, model = case
    theirs = _sp_build(ch, model)
    ftype, _ = _sp_properties(ch)
    data = bytes(theirs.pack(truncated=model.header.truncated, frame_type=ftype))
    ours = UslpFrame.unpack(data, ch)
    _compare(ours, theirs, ch)
    assert ours.pack(ch) == data  # byte-identical in both directions
    assert model.pack(ch) == data


def test_yamcs_variable_frame_built_by_spacepackets() -> None:
    """The capture's cross-check, re-run: spacepackets builds Yamcs' variable frame byte-exact,
    and so do we."""
    header = sp_header.PrimaryHeader(
        scid=0xAB, src_dest=sp_header.SourceOrDestField.DEST, vcid=1, map_id=0, frame_len=0,
        bypass_seq_ctrl_flag=sp_header.BypassSequenceControlFlag.EXPEDITED_QOS,
        prot_ctrl_cmd_flag=sp_header.ProtocolCommandFlag.USER_DATA, vcf_count_len=1, vcf_count=1)
    tfdf = sp_frame.TransferFrameDataField(
        tfdz_cnstr_rules=sp_frame.TfdzConstructionRules.VpNoSegmentation,
        uslp_ident=sp_frame.UslpProtocolIdentifier.SPACE_PACKETS_ENCAPSULATION_PACKETS,
        tfdz=b"\xaa" * 16)
    frame = sp_frame.TransferFrame(header=header, tfdf=tfdf, has_fecf=True)
    frame.set_frame_len_in_header()
    theirs = bytes(frame.pack(frame_type=sp_frame.FrameType.VARIABLE))
    ch = UslpChannel(scid=0xAB, vcid=1, vc_frame_count_length=1)
    ours = UslpFrame(
        UslpPrimaryHeader(0xAB, 1, 0, SourceDestFlag.DESTINATION, False, None, BypassFlag.EXPEDITED,
                          ProtocolControlCommandFlag.USER_DATA, False, 1, 1),
        TfdfHeader(ConstructionRule.NO_SEGMENTATION), b"\xaa" * 16).pack(ch)
    assert theirs == ours == bytes.fromhex("c00ab820001a8101e0" + "aa" * 16 + "f548")
