"""Security event log, FSR alarm flag and self-test of the on-board manager."""

from __future__ import annotations

import pytest

from sdls_qkd import errors
from sdls_qkd.fuzz.procedures import DATA_SPI, ep_world
from sdls_qkd.procedures.monitoring import (
    KNOWN_ANSWER_TESTS,
    ErrorCode,
    EventCode,
    KnownAnswerTest,
    SecurityMonitor,
    run_self_test,
)
from sdls_qkd.procedures.onboard import OnboardConfig, OnboardSecurityManager
from sdls_qkd.procedures.pdu import Pdu, Procedure


def test_known_answer_tests_pass_on_this_platform() -> None:
    results = run_self_test()
    assert len(results) == len(KNOWN_ANSWER_TESTS) >= 6 and all(results.values())


def test_failed_self_test_replies_ff_logs_and_raises_alarm() -> None:
    broken = (*KNOWN_ANSWER_TESTS, KnownAnswerTest("broken AES", lambda: False),
              KnownAnswerTest("raising AES", lambda: 1 // 0 == 0))
    board = OnboardSecurityManager(OnboardConfig(), self_tests=broken)
    out = board.handle_pdu(Pdu.command(Procedure.SELF_TEST).pack())
    assert out.reply is not None and out.reply.data == b"\xff"
    assert board.monitor.alarm
    failed = [e for e in board.monitor.events if e.code is EventCode.SELF_TEST_FAILED]
    assert failed and "broken AES" in failed[0].reason and "raising AES" in failed[0].reason


def test_log_is_bounded_and_counts_lost_events() -> None:
    board = OnboardSecurityManager(OnboardConfig(log_capacity=3))
    for _ in range(5):
        with pytest.raises(errors.InvalidProcedure):
            board.handle_pdu(b"\x08\x00\x00")  # reserved procedure
    assert len(board.monitor.events) == 3 and board.monitor.lost == 2
    assert board.monitor.remaining == 0 and board.monitor.alarm
    out = board.handle_pdu(Pdu.command(Procedure.LOG_STATUS).pack())
    assert out.reply is not None and out.reply.data == bytes.fromhex("00030000")


def test_rejected_frames_drive_the_fsr_and_the_log() -> None:
    w = ep_world()
    board = w.board
    board.record_frame(DATA_SPI, None, sn=b"\x00\x00\x01\x07")
    fsr = board.monitor.fsr()
    assert not fsr.alarm_flag and fsr.spi == DATA_SPI and fsr.last_sn_lsb == 7
    board.record_frame(DATA_SPI, errors.MacVerificationFailure("MAC does not verify"))
    fsr = board.monitor.fsr()
    assert fsr.alarm_flag and fsr.bad_mac and not fsr.bad_sn
    event = board.monitor.events[-1]
    assert event.code is EventCode.FRAME_REJECTED
    assert event.value == DATA_SPI.to_bytes(2, "big") + bytes((ErrorCode.MAC_VERIFICATION_FAILURE,))
    board.record_frame(DATA_SPI, None)
    assert board.monitor.fsr().alarm_flag and not board.monitor.fsr().bad_mac  # sticky alarm
    dump = w.ground.dump_log()
    w.exchange(dump)
    assert dump.result.events[-1].value == event.value  # the coded value reaches the ground
    w.exchange(w.ground.reset_alarm())
    assert not board.monitor.fsr().alarm_flag
    assert board.monitor.fsr().pack()[0] >> 4 == 0b1100  # type 1, version 100, alarm clear


def test_every_procedure_is_logged_with_its_tag() -> None:
    w = ep_world()
    w.exchange(w.ground.sa_status(DATA_SPI))
    event = w.board.monitor.events[-1]
    assert event.code is EventCode.PROCEDURE_EXECUTED and event.value == b"\x1f"
    assert "SA_STATUS" in event.reason


def test_monitor_capacity_validation() -> None:
    with pytest.raises(errors.InvalidConfiguration):
        SecurityMonitor(0)
