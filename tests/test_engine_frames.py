"""Engine behaviour per frame kind: TC control frames, length fields, FECF, SA checks, FSR,
Yamcs' behaviour cases, quirk switches, and the fast path agreeing with the reference path."""

from __future__ import annotations

import pytest

from sdls_qkd.errors import (
    AntiReplayFailure,
    FecfError,
    InvalidConfiguration,
    InvalidFrameLength,
    InvalidHeader,
    InvalidKeyState,
    InvalidSaState,
    InvalidSpi,
    MacVerificationFailure,
    SdlsQkdError,
)
from sdls_qkd.framing.channel import TcChannel, TmChannel, UslpChannel
from sdls_qkd.framing.crc import crc16_reference, crc32_uslp_reference
from sdls_qkd.framing.ocf import FrameSecurityReport
from sdls_qkd.security.engine import (
    SUPPORTED_QUIRKS,
    EngineOptions,
    ProcessResult,
    apply_security,
    process_security,
)
from sdls_qkd.security.fsr import FsrTracker
from sdls_qkd.security.layout import PRESETS, default_abm, make_sa
from sdls_qkd.security.sa import KeyState, SaState, SdlsKey, ServiceType

KEY = bytes.fromhex("f8052dfd9b6d6e831f1ec0dc9f433ea75dfd90387abba4acf6e3a1f0ceb0979f")
WRONG = bytes.fromhex("66c01dc166cc1dcb4573021fea413359e69b2b94d1270c17a0db9883f5c888cf")
TC = TcChannel(scid=0x123, vcid=1, has_segment_header=True, map_id=2)


def tc_frame(data: bytes, *, control: bool = False, bypass: bool = True) -> bytes:
    """BD (or BC) frame with segment header and FECF slot, built from the 232.0-B field table."""
    total = 5 + (0 if control else 1) + len(data) + 2
    b0 = (int(bypass) << 5) | (int(control) << 4) | (0x123 >> 8)
    head = bytes([b0, 0x23, (1 << 2) | ((total - 1) >> 8), (total - 1) & 0xFF, 0])
    seg = b"" if control else bytes([0xC0 | 2])
    body = head + seg + data
    return body + crc16_reference(body).to_bytes(2, "big")


def test_tc_apply_inserts_header_and_trailer_rewrites_length_and_fecf() -> None:
    tx = make_sa(9, TC, key=KEY, iv=1)
    frame = tc_frame(b"\x01\x02\x03\x04")
    out = apply_security(frame, TC, tx)
    assert len(out) == len(frame) + 2 + 12 + 16
    assert (((out[2] & 3) << 8) | out[3]) + 1 == len(out)
    assert out[6:8] == b"\x00\x09" and out[8:20] == (1).to_bytes(12, "big")
    assert crc16_reference(out) == 0  # FECF over the protected frame
    rx = make_sa(9, TC, key=KEY)
    result = process_security(out, TC, {9: rx})
    assert result.data == b"\x01\x02\x03\x04" and result.spi == 9
    assert result.iv == (1).to_bytes(12, "big") and result.sn == b""
    assert result.frame == frame  # header/trailer removed, length and FECF as before


def test_tc_control_frames_stay_clear() -> None:
    unlock = bytes.fromhex("31230407 00 00 cd3b".replace(" ", ""))  # worked BC frame (tc-frame.md)
    tx = make_sa(9, TC, key=KEY)
    with pytest.raises(InvalidHeader) as exc:
        apply_security(unlock, TC, tx)
    assert exc.value.field == "control_command_flag"
    result = process_security(unlock, TC, {9: make_sa(9, TC, key=KEY)})
    assert result.spi is None and result.data == b"\x00" and result.frame == unlock


def test_tc_type_ac_and_bad_length_field_are_rejected() -> None:
    bad = bytearray(tc_frame(b"\x00", control=True, bypass=False))
    with pytest.raises(InvalidHeader):
        process_security(bytes(bad), TC, {})
    frame = bytearray(tc_frame(b"abc"))
    frame[3] += 1
    with pytest.raises(InvalidFrameLength) as exc:
        process_security(bytes(frame), TC, {})
    assert exc.value.offset == 2 and "length field" in str(exc.value)


def test_tc_apply_over_the_maximum_is_rejected() -> None:
    small = TcChannel(scid=0x123, vcid=1, has_segment_header=True, map_id=2, max_frame_length=40)
    tx = make_sa(9, small, key=KEY, iv=1)
    with pytest.raises(InvalidFrameLength, match="exceeds the maximum 40"):
        apply_security(tc_frame(bytes(10)), small, tx)
    assert tx.iv == (1).to_bytes(12, "big")


def test_fecf_checked_first_and_quirk_switches() -> None:
    tx = make_sa(9, TC, key=KEY, iv=1)
    out = bytearray(apply_security(tc_frame(b"x"), TC, tx))
    out[-1] ^= 1
    rx = make_sa(9, TC, key=KEY)
    with pytest.raises(FecfError):
        process_security(bytes(out), TC, {9: rx})
    lax = EngineOptions.from_quirks(["fecf_not_checked"])
    assert process_security(bytes(out), TC, {9: rx}, lax).data == b"x"
    given = tc_frame(b"y")[:-2] + b"\xab\xcd"
    blank = apply_security(given, TC, tx, EngineOptions.from_quirks(["fecf_not_computed"]))
    assert blank[-2:] == b"\xab\xcd"  # the slot as given (SCHEMA quirk fecf_not_computed)


def test_uslp_variable_crc32_and_ocf() -> None:
    ch = UslpChannel(scid=0xBEEF, vcid=5, map_id=3, fecf_length=4, has_ocf=True,
                     vc_frame_count_length=2)
    head = ((12 << 28) | (0xBEEF << 12) | (5 << 5) | (3 << 1)).to_bytes(4, "big")
    data, ocf = b"TFDF" * 3, b"\x80\x00\x00\x00"
    total = 9 + len(data) + 4 + 4
    frame = head + (total - 1).to_bytes(2, "big") + bytes([0x08 | 2]) + b"\x00\x07" + data + \
        ocf + bytes(4)
    tx, rx = make_sa(3, ch, key=KEY, iv=1), make_sa(3, ch, key=KEY)
    out = apply_security(frame, ch, tx)
    assert crc32_uslp_reference(out) == 0
    assert int.from_bytes(out[4:6], "big") + 1 == len(out) == total + 30
    assert out[-8:-4] == ocf  # OCF after the security trailer
    assert process_security(out, ch, {3: rx}).data == data


def test_sa_checks_unknown_not_operational_key_state_binding() -> None:
    tm = TmChannel(scid=0x2A, vcid=1, frame_length=80, has_fecf=False)
    tx = make_sa(5, tm, key=KEY, iv=1)
    frame = bytearray(80)
    frame[0:2] = ((0x2A << 4) | (1 << 1)).to_bytes(2, "big")
    out = apply_security(bytes(frame), tm, tx)
    with pytest.raises(InvalidSpi):
        process_security(out, tm, {6: make_sa(6, tm, key=KEY)})
    with pytest.raises(InvalidSaState):
        process_security(out, tm, {5: make_sa(5, tm, key=KEY, state=SaState.KEYED)})
    with pytest.raises(InvalidSpi):
        process_security(out, tm, {5: make_sa(5, tm, key=KEY, state=SaState.NONE)})
    key = SdlsKey(KEY, state=KeyState.DEACTIVATED)
    with pytest.raises(InvalidKeyState):
        process_security(out, tm, {5: make_sa(5, tm, key=key)})
    other = TmChannel(scid=0x2A, vcid=2, frame_length=80, has_fecf=False)
    with pytest.raises(InvalidSpi, match="not bound"):
        process_security(out, tm, {5: make_sa(5, other, key=KEY)})
    with pytest.raises(InvalidSaState):
        apply_security(bytes(frame), tm, make_sa(5, tm, key=KEY, state=SaState.KEYED))


# --------------------------------------------------------------------------- Yamcs cases
YAMCS_TM = TmChannel(scid=16, vcid=4, frame_length=42, has_fecf=False)
YAMCS_IN = bytes.fromhex("010801010101" + "00" * 14 + "454545454545" + "00" * 16)


def yamcs_pair() -> tuple[bytes, dict[int, object]]:
    tx = make_sa(42, YAMCS_TM, key=KEY, iv=1)
    assert tx.abm[:20].hex() == "000e00000000ffff000000000000000000000000"  # Yamcs mask
    out = apply_security(YAMCS_IN, YAMCS_TM, tx)
    # the derived Yamcs KAT for IV 1 (vectors/sdls_smoke.json has its provenance)
    assert out.hex() == ("010801010101002a0000000000000000000000014dcd05df95e0a66765d5036fea0b"
                         "c17c97ce8d7bf62e")
    return out, {42: make_sa(42, YAMCS_TM, key=KEY)}


def test_yamcs_behaviour_cases() -> None:
    out, sas = yamcs_pair()
    with pytest.raises(MacVerificationFailure):  # wrong key
        process_security(out, YAMCS_TM, {42: make_sa(42, YAMCS_TM, key=WRONG)})
    with pytest.raises(InvalidSpi):  # SPI checked before MAC
        process_security(out, YAMCS_TM, {1: make_sa(1, YAMCS_TM, key=KEY)})
    for pos, flip, error in [(1, 0x04, InvalidSpi), (6, 0x01, InvalidSpi),
                             (21, 0x01, MacVerificationFailure),
                             (27, 0x01, MacVerificationFailure)]:
        tampered = bytearray(out)
        tampered[pos] ^= flip
        with pytest.raises(error):
            process_security(bytes(tampered), YAMCS_TM, sas)  # type: ignore[arg-type]
    tampered = bytearray(out)
    tampered[2] ^= 0x01  # master channel frame count: not authenticated
    assert process_security(bytes(tampered), YAMCS_TM, sas).data == b"E" * 6  # type: ignore[arg-type]


def test_vcid_bit_is_authenticated_when_the_sa_covers_both_channels() -> None:
    """Yamcs: flipping the VCID (0x08 -> 0x0C) is a MAC failure for an SA bound to both VCs."""
    out, _ = yamcs_pair()
    rx = make_sa(42, YAMCS_TM, key=KEY)
    other = TmChannel(scid=16, vcid=6, frame_length=42, has_fecf=False)
    from sdls_qkd.security.sa import binding_for

    rx.bindings = frozenset({binding_for(YAMCS_TM), binding_for(other)})
    tampered = bytearray(out)
    tampered[1] = 0x0C
    with pytest.raises(MacVerificationFailure):
        process_security(bytes(tampered), other, {42: rx})


def test_all_ones_counter_does_not_wrap_unlike_yamcs() -> None:
    out, _ = yamcs_pair()
    rx = make_sa(42, YAMCS_TM, key=KEY, iv=(1 << 96) - 1)
    with pytest.raises(AntiReplayFailure):
        process_security(out, YAMCS_TM, {42: rx})


# --------------------------------------------------------------------------- FSR
def test_fsr_tracks_last_frame_and_sticky_alarm() -> None:
    out, sas = yamcs_pair()
    fsr = FsrTracker()
    assert fsr.report() == FrameSecurityReport()
    process_security(out, YAMCS_TM, sas, fsr=fsr)  # type: ignore[arg-type]
    assert fsr.report() == FrameSecurityReport(spi=42, last_sn_lsb=0)
    with pytest.raises(AntiReplayFailure):
        process_security(out, YAMCS_TM, sas, fsr=fsr)  # type: ignore[arg-type]
    word = FrameSecurityReport.unpack(fsr.report().pack())
    assert word.alarm_flag and word.bad_sn and not word.bad_mac and word.spi == 42
    tampered = bytearray(out)
    tampered[30] ^= 1
    with pytest.raises(MacVerificationFailure):
        process_security(bytes(tampered), YAMCS_TM, sas, fsr=fsr)  # type: ignore[arg-type]
    assert fsr.bad_mac and not fsr.bad_sn
    with pytest.raises(InvalidSpi):
        process_security(out, YAMCS_TM, {}, fsr=fsr)
    assert fsr.bad_sa and fsr.alarm_flag
    fsr.reset_alarm()
    assert not fsr.alarm_flag and fsr.bad_sa
    assert fsr.report().pack()[0] >> 4 == 0b1100  # type 1, version 100


def test_fsr_reports_arsn_lsb() -> None:
    tm = TmChannel(scid=1, vcid=1, frame_length=100, has_fecf=True)
    tx = make_sa(7, tm, key=KEY, preset="cryptolib", iv=1, arsn=0x1234)
    rx = make_sa(7, tm, key=KEY, preset="cryptolib", arsn=0x1233)
    frame = bytearray(100)
    frame[0:2] = ((1 << 4) | (1 << 1)).to_bytes(2, "big")
    fsr = FsrTracker()
    result = process_security(apply_security(bytes(frame), tm, tx), tm, {7: rx}, fsr=fsr)
    assert result.sn == (0x1234).to_bytes(4, "big") and fsr.report().last_sn_lsb == 0x34


# --------------------------------------------------------------------------- options, layouts
def test_engine_options_from_quirks() -> None:
    assert EngineOptions.from_quirks([]) == EngineOptions()
    opts = EngineOptions.from_quirks(sorted(SUPPORTED_QUIRKS))
    assert opts.quirks == SUPPORTED_QUIRKS
    with pytest.raises(InvalidConfiguration, match="ep_executed"):
        EngineOptions.from_quirks(["ep_executed"])
    with pytest.raises(InvalidConfiguration):
        EngineOptions.from_quirks(["no_such_quirk"])


def test_process_result_is_immutable() -> None:
    out, sas = yamcs_pair()
    result = process_security(out, YAMCS_TM, sas)  # type: ignore[arg-type]
    assert isinstance(result, ProcessResult)
    with pytest.raises(AttributeError):
        result.spi = 1
    assert "octets" in repr(result)


def test_fast_path_agrees_with_reference_path() -> None:
    """options=None takes the fast path; an equal but distinct options object the reference."""
    tm = TmChannel(scid=0x2A, vcid=1, frame_length=300, has_fecf=True, has_ocf=True)
    tx = make_sa(5, tm, key=KEY, iv=1)
    frames = []
    for i in range(4):
        frame = bytearray(300)
        frame[0:2] = ((0x2A << 4) | (1 << 1) | 1).to_bytes(2, "big")
        frame[30:40] = bytes([i]) * 10
        frames.append(apply_security(bytes(frame), tm, tx))
    fast_rx, slow_rx = make_sa(5, tm, key=KEY), make_sa(5, tm, key=KEY)
    for f in frames:
        a = process_security(f, tm, {5: fast_rx})
        b = process_security(f, tm, {5: slow_rx}, EngineOptions())
        assert (a.spi, a.data, a.sn, a.iv, a.frame) == (b.spi, b.data, b.sn, b.iv, b.frame)
        assert fast_rx.snapshot() == slow_rx.snapshot()
    assert fast_rx._last_plan.fast is not None  # the fast path was in use
    for bad in (frames[0], frames[3][:-1], bytes(300)):
        errors = []
        for rx, opts in ((fast_rx, None), (slow_rx, EngineOptions())):
            with pytest.raises(SdlsQkdError) as exc:
                process_security(bad, tm, {5: rx}, opts)
            errors.append(type(exc.value))
        assert errors[0] is errors[1]


def test_mask_must_cover_the_data_for_mac_only_suites() -> None:
    tm = TmChannel(scid=1, vcid=1, frame_length=64, has_fecf=False)
    sa = make_sa(3, tm, key=KEY, service=ServiceType.AUTHENTICATION, mac_algorithm="AES-256-CMAC",
                 abm=b"\xff" * 20)
    frame = bytearray(64)
    frame[0:2] = ((1 << 4) | (1 << 1)).to_bytes(2, "big")
    with pytest.raises(InvalidConfiguration, match="mask_excludes_data"):
        apply_security(bytes(frame), tm, sa)
    lax = EngineOptions.from_quirks(["mask_excludes_data"])
    assert len(apply_security(bytes(frame), tm, sa, lax)) == 64


def test_layout_presets_and_default_masks() -> None:
    assert PRESETS["yamcs"].security_header_length == 14
    tm = TmChannel(scid=1, vcid=1, frame_length=64, secondary_header_length=4)
    abm = default_abm(tm, PRESETS["yamcs"], mac_only=False)
    assert abm == bytes.fromhex("000e00000000") + bytes(4) + b"\xff\xff" + bytes(12)
    mac = make_sa(3, tm, key=KEY, service=ServiceType.AUTHENTICATION,
                  mac_algorithm="HMAC-SHA-256")
    assert mac.iv_length == 0 and mac.sn_length == 4 and mac.abm[-1] == 0xFF
    clear = make_sa(4, tm, service=ServiceType.CLEAR, cipher=None)
    assert clear.security_header_length == 2 and clear.mac_length == 0


def test_cbc_uses_random_ivs_by_default_and_clear_mode_sends_spi_only() -> None:
    cbc = make_sa(8, TC, key=KEY, service=ServiceType.ENCRYPTION, cipher="AES-256-CBC")
    one = apply_security(tc_frame(b"same"), TC, cbc)
    two = apply_security(tc_frame(b"same"), TC, cbc)
    assert one[8:24] != two[8:24] and cbc.iv == bytes(16)  # random, not a counter
    assert one[24] == 12  # pad length: 4 data octets padded to one block
    rx = make_sa(8, TC, key=KEY, service=ServiceType.ENCRYPTION, cipher="AES-256-CBC")
    assert process_security(one, TC, {8: rx}).data == b"same"
    clear = make_sa(4, TC, service=ServiceType.CLEAR, cipher=None)
    out = apply_security(tc_frame(b"abc"), TC, clear)
    assert out[6:8] == b"\x00\x04" and out[8:11] == b"abc"
    assert process_security(out, TC, {4: clear}).data == b"abc"


def test_non_bytes_input_is_a_clear_error() -> None:
    with pytest.raises(InvalidFrameLength):
        process_security("not bytes", TC, {})  # type: ignore[arg-type]
    out, sas = yamcs_pair()
    assert process_security(bytearray(out), YAMCS_TM, sas).data == b"E" * 6  # type: ignore[arg-type]


def test_security_header_positions_per_frame_kind() -> None:
    """SPI right after primary header + FHEC + insert zone (AOS), secondary header (TM),
    insert zone (USLP, truncated header too); trailer right before OCF/FECF."""
    from sdls_qkd.framing.channel import AosChannel

    aos = AosChannel(scid=0xAB, vcid=5, frame_length=100, has_fhec=True, insert_zone_length=4,
                     has_ocf=True)
    frame = bytearray(100)
    frame[0:2] = bytes.fromhex("6ac5")
    frame[6:8] = bytes.fromhex("554a")  # FHEC of 6AC5/00 (aos-frame.md worked example)
    frame[8:12] = b"IZIZ"
    frame[-6:-2] = b"OCF!"
    out = apply_security(bytes(frame), aos, make_sa(0x0102, aos, key=KEY, iv=1))
    assert out[12:14] == b"\x01\x02" and out[8:12] == b"IZIZ" and out[-6:-2] == b"OCF!"
    assert make_sa(0x0102, aos, key=KEY).abm[:14] == bytes.fromhex(
        "003f00000000" "0000" "00000000" "ffff")  # VCID; FHEC and insert zone masked out

    tm = TmChannel(scid=1, vcid=2, frame_length=90, secondary_header_length=3, has_ocf=True)
    frame = bytearray(90)
    frame[0:2] = ((1 << 4) | (2 << 1) | 1).to_bytes(2, "big")
    frame[4] = 0x80
    frame[6:9] = b"\x02SH"
    out = apply_security(bytes(frame), tm, make_sa(0x0A0B, tm, key=KEY, iv=1))
    assert out[9:11] == b"\x0a\x0b" and out[6:9] == b"\x02SH"

    trunc = UslpChannel(scid=0x1234, vcid=3, map_id=1, truncated=True, frame_length=60,
                        has_fecf=True)
    frame = bytearray(60)
    frame[0:4] = ((12 << 28) | (0x1234 << 12) | (3 << 5) | (1 << 1) | 1).to_bytes(4, "big")
    frame[34:40] = b"TFDF!!"
    tx, rx = make_sa(9, trunc, key=KEY, iv=1), make_sa(9, trunc, key=KEY)
    out = apply_security(bytes(frame), trunc, tx)
    assert out[4:6] == b"\x00\x09" and crc16_reference(out) == 0
    assert process_security(out, trunc, {9: rx}).data == bytes(frame[18:42])
