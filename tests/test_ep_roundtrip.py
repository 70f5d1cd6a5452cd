"""Every EP procedure round-trips: ground -> TC packet -> on-board manager -> TM reply -> ground.

Strict mode.  Commands without a reply in the standard are confirmed by a later query (Key
Inventory, SA Status, Read ARSN, Log Status), as an operator would.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from sdls_qkd import errors
from sdls_qkd.framing.tc import TcFrame
from sdls_qkd.fuzz.procedures import DATA_SPI, MANAGEMENT_SPI, MASTER_KEY_ID, SCID, ep_world
from sdls_qkd.keys.buffer import KeyBuffer
from sdls_qkd.keys.material import QkdKey
from sdls_qkd.procedures.ground import CommandState
from sdls_qkd.procedures.key_management import GcmIvSequence
from sdls_qkd.procedures.keys import KeyState
from sdls_qkd.procedures.monitoring import EventCode, SelfTestResult
from sdls_qkd.procedures.pdu import Procedure
from sdls_qkd.procedures.qkd_rekey import BufferKeySource, QkdKeyIdMap, take_rekey_key
from sdls_qkd.procedures.sa_management import CreateSaCommand, Gvcid
from sdls_qkd.security.engine import apply_security, process_security
from sdls_qkd.security.sa import SaState, SecurityAssociation, binding_for
from sdls_qkd.store.memory import MemoryStore
from sdls_qkd.store.sqlite import SqliteStore


def test_monitoring_and_control_round_trip() -> None:
    w = ep_world()
    g = w.ground
    ping = g.ping()
    w.exchange(ping)
    assert ping.state is CommandState.COMPLETED and ping.result is None
    st = g.log_status()
    w.exchange(st)
    assert (st.result.count, st.result.remaining) == (1, 63)  # the ping was logged
    dump = g.dump_log()
    w.exchange(dump)
    assert [e.code for e in dump.result.events] == [EventCode.PROCEDURE_EXECUTED] * 2
    assert dump.result.events[0].value == bytes((Procedure.PING,))
    test = g.self_test()
    w.exchange(test)
    assert test.result.result is SelfTestResult.OK
    erase = g.erase_log()
    assert w.exchange(erase).reply is None and erase.state is CommandState.SENT
    st = g.log_status()
    w.exchange(st)
    assert st.result.count == 1  # only the erase itself is in the fresh log
    # a rejected command raises the alarm; Alarm Flag Reset clears it
    with pytest.raises(errors.InvalidSpi):
        w.exchange(g.sa_status(77))
    assert w.board.monitor.fsr().alarm_flag
    w.exchange(g.reset_alarm())
    assert not w.board.monitor.fsr().alarm_flag


def test_key_management_round_trip() -> None:
    w = ep_world()
    g = w.ground
    for kid in (140, 141):
        g.keys.install(kid, bytes([kid]) * 32)
    otar = g.otar(MASTER_KEY_ID, [140, 141])
    assert w.exchange(otar).reply is None
    inv = g.inventory(140, 141)
    w.exchange(inv)
    assert inv.result == {140: KeyState.PREACTIVE, 141: KeyState.PREACTIVE}
    ver = g.verify([140, 141])
    w.exchange(ver)
    assert ver.state is CommandState.COMPLETED and ver.result == {140: True, 141: True}
    w.exchange(g.activate([140]))
    w.exchange(g.deactivate([140]))
    w.exchange(g.destroy([140]))
    inv = g.inventory(0, 0xFFFF)
    w.exchange(inv)
    assert inv.result[140] is KeyState.DESTROYED and inv.result[141] is KeyState.PREACTIVE
    assert w.board.ring.get(140).material is None  # destruction erased the material


def test_verification_detects_a_wrong_key() -> None:
    w = ep_world()
    w.ground.keys.force_state(131, KeyState.DESTROYED)
    w.ground.keys.install(131, bytes(32), KeyState.ACTIVE)  # the ground's copy differs
    ver = w.ground.verify([131, 130])
    w.exchange(ver)
    assert ver.state is CommandState.FAILED and ver.result == {131: False, 130: True}


def test_verification_ivs_are_fresh_across_replies_and_restarts(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "board.db", end_id="board")
    w = ep_world(board_store=store)
    seen: set[bytes] = set()
    for _ in range(3):
        out = w.exchange(w.ground.verify([130, 131]))
        reply = out.reply.data
        ivs = {reply[i + 2:i + 14] for i in range(0, len(reply), 46)}
        assert len(ivs) == 2 and not ivs & seen
        seen |= ivs
    store.close()
    # a restart resumes past the reserved block: no IV is ever repeated
    store2 = SqliteStore(tmp_path / "board.db", end_id="board")
    again = GcmIvSequence(b"OBC0", store=store2, name="ep-verify-iv")
    assert again.next() not in seen
    store2.close()


def test_sa_management_round_trip() -> None:
    w = ep_world()
    g = w.ground
    create = CreateSaCommand(spi=9, est=True, ast=True, transmitted_iv_length=12,
                             transmitted_sn_length=4, pad_length_field_length=0, mac_length=16,
                             ecs=b"\x01", iv=bytes(12), acs=b"", abm=b"\xff" * 8,
                             arsn=bytes(4), arsnw=b"\x00\x10")
    w.exchange(g.create_sa(create))

    def status() -> SaState:
        cmd = g.sa_status(9)
        w.exchange(cmd)
        return cmd.result.state

    assert status() is SaState.UNKEYED
    w.exchange(g.rekey_sa(9, 131, bytes(11) + b"\x07"))
    assert status() is SaState.KEYED
    assert w.board.sas[9].enc_key is w.board.ring.sdls_key(131)
    w.exchange(g.start_sa(9, [Gvcid(0, SCID, 1)]))
    assert status() is SaState.OPERATIONAL
    assert w.board.sas[9].binds(binding_for(w.tc_data))
    w.exchange(g.set_arsn(9, bytes.fromhex("00000100")))
    read = g.read_arsn(9)
    w.exchange(read)
    assert read.result.arsn == bytes.fromhex("00000100")
    w.exchange(g.set_arsn_window(9, 64))
    assert w.board.sas[9].window == 64
    w.exchange(g.stop_sa(9))
    assert status() is SaState.KEYED
    w.exchange(g.expire_sa(9))
    assert status() is SaState.UNKEYED and w.board.sas[9].enc_key is None
    w.exchange(g.delete_sa(9))
    with pytest.raises(errors.InvalidSpi):
        w.exchange(g.sa_status(9))


def test_start_sa_resolves_map_ids_and_tfvn0_ambiguity() -> None:
    w = ep_world()
    g = w.ground
    w.exchange(g.stop_sa(DATA_SPI))
    w.exchange(g.start_sa(DATA_SPI, [Gvcid(0, SCID, 2, 3)]))  # TC VC 2 with MAP 3
    assert {b.map_id for b in w.board.sas[DATA_SPI].bindings} == {3}
    # VC 0 is both a TC and a TM channel: an SA with no frame type yet cannot pick one
    w.exchange(g.create_sa(CreateSaCommand(11, True, True, 12, 0, 0, 16, b"\x01", bytes(12),
                                           b"", b"", b"", b"\x00\x05")))
    w.exchange(g.rekey_sa(11, 131, bytes(12)))
    with pytest.raises(errors.InvalidProcedure, match="ambiguous"):
        w.exchange(g.start_sa(11, [Gvcid(0, SCID, 0)]))


def test_reply_matching_and_timeouts() -> None:
    w = ep_world()
    g = w.ground
    first, second = g.ping(), g.log_status()
    out2 = w.board.handle_packet(second.packet, via_spi=MANAGEMENT_SPI)
    out1 = w.board.handle_packet(first.packet, via_spi=MANAGEMENT_SPI)
    g.receive_packet(out2.reply_packet)  # out of order: matched by sequence count
    g.receive_packet(out1.reply_packet)
    assert first.state is second.state is CommandState.COMPLETED
    with pytest.raises(errors.InvalidProcedure, match="no command pending"):
        g.receive_packet(out1.reply_packet)  # duplicate
    late = g.self_test()
    w.clock[0] += 9.9
    assert g.poll() == []
    w.clock[0] += 0.2
    assert g.poll() == [late] and late.state is CommandState.TIMED_OUT
    out = w.board.handle_packet(late.packet, via_spi=MANAGEMENT_SPI)
    with pytest.raises(errors.InvalidProcedure):
        g.receive_packet(out.reply_packet)  # a reply after its timeout is not accepted


# --------------------------------------------------------------------------- QKD rekey
def _buffers(n: int = 8, *, tamper: bool = False) -> tuple[KeyBuffer, KeyBuffer]:
    """Two real key buffers holding the same QKD keys (as two KMEs would deliver them)."""
    keys = [QkdKey(uuid.UUID(int=i + 1), bytes([i + 1]) * 32, source="test") for i in range(n)]
    ground = KeyBuffer(MemoryStore())
    board = KeyBuffer(MemoryStore())
    ground.add_keys(keys)
    if tamper:
        keys = [QkdKey(k.key_id, bytes(32), source="test") for k in keys]
    board.add_keys(keys)
    return ground, board


def test_qkd_rekey_switches_the_data_sa_without_key_material_on_the_link() -> None:
    gbuf, bbuf = _buffers()
    w = ep_world(key_source=BufferKeySource(bbuf))
    g = w.ground
    qkey = take_rekey_key(gbuf)
    announce = g.qkd_rekey(qkey)
    kid = g.id_map.key_id_for(qkey.key_id)
    assert kid is not None and qkey.material not in announce.packet
    w.exchange(announce)
    assert announce.state is CommandState.COMPLETED and announce.result is True
    assert kid in g.confirmed_keys
    assert w.board.ring.state(kid) is KeyState.PREACTIVE
    assert w.board.id_map.key_id_for(qkey.key_id) == kid
    # the standard switch, every state table enforced
    for cmd in (g.activate([kid]), g.stop_sa(DATA_SPI), g.expire_sa(DATA_SPI),
                g.rekey_sa(DATA_SPI, kid, bytes(12))):
        w.exchange(cmd)
    check = g.qkd_key_check(kid)
    w.exchange(check)
    assert check.result is True
    w.exchange(g.start_sa(DATA_SPI, [Gvcid(0, SCID, 1)], require_confirmed=kid))
    for cmd in (g.deactivate([130]), g.destroy([130])):
        w.exchange(cmd)
    board_sa = w.board.sas[DATA_SPI]
    assert board_sa.state is SaState.OPERATIONAL
    assert board_sa.enc_key is not None and board_sa.enc_key.secret() == qkey.material
    assert w.board.ring.state(130) is KeyState.DESTROYED
    # real traffic under the QKD key: the ground protects a frame, the board accepts it
    inv = g.inventory(kid, kid)
    w.exchange(inv)
    g.sync_key_states(inv.result)
    # the board stores the last accepted IV/ARSN (0 after the rekey): the sender starts at 1
    ground_sa = SecurityAssociation(DATA_SPI, enc_key=g.keys.sdls_key(kid), sn_length=4,
                                    iv=1, arsn=1, bindings=[binding_for(w.tc_data)])
    frame = TcFrame.build(w.tc_data, b"\x01\x02\x03\x04hello").pack()
    protected = apply_security(frame, w.tc_data, ground_sa)
    result = process_security(protected, w.tc_data, w.board.sas)
    assert result.data == b"\x01\x02\x03\x04hello"


def test_qkd_key_mismatch_stops_the_switch() -> None:
    gbuf, bbuf = _buffers(tamper=True)
    w = ep_world(key_source=BufferKeySource(bbuf))
    g = w.ground
    qkey = take_rekey_key(gbuf)
    announce = g.qkd_rekey(qkey)
    kid = g.id_map.key_id_for(qkey.key_id)
    before = w.board.state_digest()
    with pytest.raises(errors.MacVerificationFailure, match="key check value"):
        w.exchange(announce)
    assert w.board.state_digest() == before and kid not in w.board.ring
    assert w.board.monitor.fsr().alarm_flag
    w.clock[0] += 11
    assert g.poll() == [announce]
    with pytest.raises(errors.MacVerificationFailure, match="Start SA withheld"):
        g.start_sa(DATA_SPI, [Gvcid(0, SCID, 1)], require_confirmed=kid)


def test_qkd_key_id_map_persists_and_never_reuses(tmp_path: Path) -> None:
    path = tmp_path / "ground.db"
    store = SqliteStore(path, end_id="ground")
    m = QkdKeyIdMap(store, id_range=range(0x8000, 0x8003))
    a, b = uuid.uuid4(), uuid.uuid4()
    ka = m.assign(a)
    assert m.assign(a) == ka and m.assign(b) == ka + 1
    store.close()
    store = SqliteStore(path, end_id="ground")
    m = QkdKeyIdMap(store, id_range=range(0x8000, 0x8003))
    assert m.key_id_for(a) == ka and m.uuid_for(ka + 1) == b
    assert m.assign(uuid.uuid4()) == ka + 2
    with pytest.raises(errors.CounterExhausted):
        m.assign(uuid.uuid4())
    with pytest.raises(errors.InvalidProcedure):
        m.check(uuid.uuid4(), ka)  # an ID once given names that QKD key forever
    store.close()


def test_ep_command_through_a_protected_tc_frame() -> None:
    """Ground: EP packet -> TC frame -> ApplySecurity with the management SA.  Board:
    ProcessSecurity -> data field -> on-board manager with the SPI that protected it."""
    w = ep_world()
    g = w.ground
    ground_mgmt = SecurityAssociation(MANAGEMENT_SPI, enc_key=g.keys.sdls_key(129), iv=1,
                                      bindings=[binding_for(w.tc_mgmt)])
    cmd = g.sa_status(DATA_SPI)
    frame = TcFrame.build(w.tc_mgmt, cmd.packet).pack()
    protected = apply_security(frame, w.tc_mgmt, ground_mgmt)
    assert cmd.packet not in protected  # encrypted on the link
    result = process_security(protected, w.tc_mgmt, w.board.sas)
    assert result.spi == MANAGEMENT_SPI and result.data == cmd.packet
    w.board.record_frame(result.spi, None, sn=result.sn)
    outcome = w.board.handle_packet(result.data, via_spi=result.spi)
    g.receive_packet(outcome.reply_packet)
    assert cmd.result.state is SaState.OPERATIONAL
    # a replayed command frame is rejected by the engine, reported to the FSR and the log
    with pytest.raises(errors.AntiReplayFailure) as info:
        process_security(protected, w.tc_mgmt, w.board.sas)
    w.board.record_frame(MANAGEMENT_SPI, info.value)
    assert w.board.monitor.fsr().bad_sn and w.board.monitor.fsr().alarm_flag
