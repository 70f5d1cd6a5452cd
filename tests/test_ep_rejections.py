"""Rejected EP commands: a typed error, a log entry with the reason, the alarm, and no change.

Wrong state, wrong length, unknown key ID / SPI, out-of-range or duplicate ID lists, the
management SA as target, master keys where session keys belong, bad MACs.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sdls_qkd import errors
from sdls_qkd.fuzz.procedures import DATA_SPI, MANAGEMENT_SPI, MASTER_KEY_ID, EpWorld, ep_world
from sdls_qkd.procedures.key_management import (
    KeyIdList,
    KeyInventoryCommand,
    KeyVerificationCommand,
    OtarCommand,
)
from sdls_qkd.procedures.keys import KEY_TRANSITIONS, KeyEvent, KeyRing, KeyState
from sdls_qkd.procedures.monitoring import ErrorCode, EventCode
from sdls_qkd.procedures.pdu import Pdu, PduTag, Procedure
from sdls_qkd.procedures.sa_management import (
    CreateSaCommand,
    Gvcid,
    RekeySaCommand,
    SetArsnCommand,
    SetArsnWindowCommand,
    SpiCommand,
    StartSaCommand,
)
from sdls_qkd.security.sa import SaState

SCID = 0x2C


def _key(i: int) -> bytes:
    return bytes((i * 7 + j) & 0xFF for j in range(32))


def _unkeyed_world() -> EpWorld:
    """SA 5 taken down to Unkeyed (its key 130 no longer in use)."""
    w = ep_world()
    for cmd in (w.ground.stop_sa(DATA_SPI), w.ground.expire_sa(DATA_SPI)):
        w.exchange(cmd)
    return w


def _keyed_world() -> EpWorld:
    """SA 5 stopped (Keyed)."""
    w = ep_world()
    w.exchange(w.ground.stop_sa(DATA_SPI))
    return w


def cmd(proc: Procedure, data: bytes = b"") -> Callable[[EpWorld], Pdu]:
    return lambda _w: Pdu.command(proc, data)


spi5 = SpiCommand(DATA_SPI).pack()
create9 = CreateSaCommand(9, True, True, 12, 0, 0, 16, b"\x01", bytes(12), b"", b"", b"",
                          b"\x00\x05").pack()

# (id, world factory, command, expected error)
CASES: list[tuple[str, Callable[[], EpWorld], Callable[[EpWorld], Pdu], type[Exception]]] = [
    # ---- wrong SA state (SA 5 is Operational, then Unkeyed)
    ("rekey-operational", ep_world, cmd(Procedure.REKEY_SA, RekeySaCommand(
        DATA_SPI, 131, bytes(12)).pack()), errors.IllegalTransition),
    ("start-operational", ep_world, cmd(Procedure.START_SA, StartSaCommand(
        DATA_SPI, (Gvcid(0, SCID, 1),)).pack()), errors.IllegalTransition),
    ("expire-operational", ep_world, cmd(Procedure.EXPIRE_SA, spi5), errors.IllegalTransition),
    ("delete-operational", ep_world, cmd(Procedure.DELETE_SA, spi5), errors.IllegalTransition),
    ("create-existing", ep_world, cmd(Procedure.CREATE_SA, CreateSaCommand(
        DATA_SPI, True, True, 12, 0, 0, 16, b"\x01", bytes(12), b"", b"", b"",
        b"\x00\x05").pack()), errors.IllegalTransition),
    ("stop-unkeyed", _unkeyed_world, cmd(Procedure.STOP_SA, spi5), errors.IllegalTransition),
    ("start-unkeyed", _unkeyed_world, cmd(Procedure.START_SA, StartSaCommand(
        DATA_SPI, (Gvcid(0, SCID, 1),)).pack()), errors.IllegalTransition),
    ("expire-unkeyed", _unkeyed_world, cmd(Procedure.EXPIRE_SA, spi5), errors.IllegalTransition),
    # ---- wrong key state
    ("activate-active", ep_world, cmd(Procedure.KEY_ACTIVATION, KeyIdList((131,)).pack()),
     errors.IllegalTransition),
    ("destroy-active", ep_world, cmd(Procedure.KEY_DESTRUCTION, KeyIdList((131,)).pack()),
     errors.IllegalTransition),
    ("deactivate-preactive", ep_world, cmd(Procedure.KEY_DEACTIVATION, KeyIdList((132,)).pack()),
     errors.IllegalTransition),
    ("deactivate-in-use", ep_world, cmd(Procedure.KEY_DEACTIVATION, KeyIdList((130,)).pack()),
     errors.IllegalTransition),
    ("activate-list-partly-bad", ep_world, cmd(Procedure.KEY_ACTIVATION,
                                               KeyIdList((132, 131)).pack()),
     errors.IllegalTransition),
    ("rekey-with-key-of-another-sa", _unkeyed_world, cmd(Procedure.REKEY_SA, RekeySaCommand(
        DATA_SPI, 129, bytes(12)).pack()), errors.IllegalTransition),
    ("rekey-with-preactive-key", _unkeyed_world, cmd(Procedure.REKEY_SA, RekeySaCommand(
        DATA_SPI, 132, bytes(12)).pack()), errors.InvalidKeyState),
    ("otar-over-live-key", ep_world, lambda _w: Pdu.command(Procedure.OTAR, OtarCommand.seal(
        MASTER_KEY_ID, _key(MASTER_KEY_ID), [(131, bytes(32))], bytes(12)).pack()),
     errors.IllegalTransition),
    # ---- wrong lengths
    ("activate-odd-length", ep_world, cmd(Procedure.KEY_ACTIVATION, b"\x00\x84\x00"),
     errors.InvalidProcedure),
    ("activate-empty", ep_world, cmd(Procedure.KEY_ACTIVATION), errors.InvalidProcedure),
    ("verify-short", ep_world, cmd(Procedure.KEY_VERIFICATION, b"\x00\x82" + bytes(15)),
     errors.InvalidProcedure),
    ("inventory-5-octets", ep_world, cmd(Procedure.KEY_INVENTORY, bytes(5)),
     errors.InvalidProcedure),
    ("otar-extra-octet", ep_world, lambda _w: Pdu.command(Procedure.OTAR, OtarCommand.seal(
        MASTER_KEY_ID, _key(MASTER_KEY_ID), [(140, bytes(32))], bytes(12)).pack() + b"\x00"),
     errors.InvalidProcedure),
    ("stop-3-octets", ep_world, cmd(Procedure.STOP_SA, spi5 + b"\x00"), errors.InvalidProcedure),
    ("status-1-octet", ep_world, cmd(Procedure.SA_STATUS, b"\x05"), errors.InvalidProcedure),
    ("rekey-short-iv", _unkeyed_world, cmd(Procedure.REKEY_SA, RekeySaCommand(
        DATA_SPI, 131, bytes(11)).pack()), errors.InvalidProcedure),
    ("set-arsn-wrong-length", ep_world, cmd(Procedure.SET_ARSN, SetArsnCommand(
        DATA_SPI, bytes(3)).pack()), errors.InvalidProcedure),
    ("set-window-wrong-length", ep_world, cmd(Procedure.SET_ARSN_WINDOW, spi5 + b"\x05"),
     errors.InvalidProcedure),
    ("start-partial-gvcid", ep_world, cmd(Procedure.START_SA, spi5 + b"\x00\x02\xc0"),
     errors.InvalidProcedure),
    ("create-trailing", ep_world, cmd(Procedure.CREATE_SA, create9 + b"\x00"),
     errors.InvalidProcedure),
    ("create-truncated", ep_world, cmd(Procedure.CREATE_SA, create9[:-1]),
     errors.InvalidProcedure),
    ("ping-with-data", ep_world, cmd(Procedure.PING, b"\x00"), errors.InvalidProcedure),
    ("qkd-rekey-short", ep_world, cmd(Procedure.QKD_REKEY, bytes(25)), errors.InvalidProcedure),
    # ---- unknown IDs
    ("activate-unknown-key", ep_world, cmd(Procedure.KEY_ACTIVATION, KeyIdList((999,)).pack()),
     errors.InvalidProcedure),
    ("verify-unknown-key", ep_world, cmd(Procedure.KEY_VERIFICATION, KeyVerificationCommand(
        ((999, bytes(16)),)).pack()), errors.InvalidProcedure),
    ("rekey-unknown-key", _unkeyed_world, cmd(Procedure.REKEY_SA, RekeySaCommand(
        DATA_SPI, 999, bytes(12)).pack()), errors.InvalidProcedure),
    ("otar-unknown-master", ep_world, lambda _w: Pdu.command(Procedure.OTAR, OtarCommand.seal(
        99, _key(99), [(140, bytes(32))], bytes(12)).pack()), errors.InvalidProcedure),
    ("stop-unknown-spi", ep_world, cmd(Procedure.STOP_SA, SpiCommand(77).pack()),
     errors.InvalidSpi),
    ("start-unconfigured-gvcid", _keyed_world, lambda w: Pdu.command(
        Procedure.START_SA, StartSaCommand(DATA_SPI, (Gvcid(0, SCID, 9),)).pack()),
     errors.InvalidProcedure),
    ("start-wrong-map-id", _keyed_world, lambda w: Pdu.command(
        Procedure.START_SA, StartSaCommand(DATA_SPI, (Gvcid(0, SCID, 2, 4),)).pack()),
     errors.InvalidProcedure),
    ("reserved-tag", ep_world, lambda _w: Pdu(PduTag.from_int(0x08), b""), errors.InvalidProcedure),
    ("reply-to-board", ep_world, lambda _w: Pdu.reply(Procedure.PING), errors.InvalidProcedure),
    # ---- ranges and lists
    ("inventory-first-after-last", ep_world, cmd(Procedure.KEY_INVENTORY, KeyInventoryCommand(
        200, 100).pack()), errors.InvalidProcedure),
    ("activate-duplicate-ids", ep_world, cmd(Procedure.KEY_ACTIVATION, KeyIdList(
        (132, 132)).pack()), errors.InvalidProcedure),
    ("otar-uploads-master-id", ep_world, lambda _w: Pdu.command(Procedure.OTAR, OtarCommand.seal(
        MASTER_KEY_ID, _key(MASTER_KEY_ID), [(3, bytes(32))], bytes(12)).pack()),
     errors.InvalidProcedure),
    ("start-duplicate-gvcid", _keyed_world, cmd(Procedure.START_SA, StartSaCommand(
        DATA_SPI, (Gvcid(0, SCID, 1), Gvcid(0, SCID, 1))).pack()), errors.InvalidProcedure),
    # ---- protection rules
    ("stop-management-sa", ep_world, cmd(Procedure.STOP_SA, SpiCommand(MANAGEMENT_SPI).pack()),
     errors.InvalidProcedure),
    ("set-arsn-management-sa", ep_world, cmd(Procedure.SET_ARSN, SpiCommand(
        MANAGEMENT_SPI).pack()), errors.InvalidProcedure),
    ("rekey-with-master-key", _unkeyed_world, cmd(Procedure.REKEY_SA, RekeySaCommand(
        DATA_SPI, MASTER_KEY_ID, bytes(12)).pack()), errors.InvalidProcedure),
    ("deactivate-master-key", ep_world, cmd(Procedure.KEY_DEACTIVATION, KeyIdList(
        (MASTER_KEY_ID,)).pack()), errors.InvalidProcedure),
    ("otar-bad-mac", ep_world, lambda _w: Pdu.command(Procedure.OTAR, OtarCommand.seal(
        MASTER_KEY_ID, bytes(32), [(140, bytes(32))], bytes(12)).pack()),
     errors.MacVerificationFailure),
    ("window-zero", ep_world, cmd(Procedure.SET_ARSN_WINDOW, SetArsnWindowCommand(
        DATA_SPI, 0).pack()), errors.InvalidProcedure),
    ("qkd-rekey-without-source", ep_world, cmd(Procedure.QKD_REKEY, bytes(26)),
     errors.InvalidProcedure),
]


@pytest.mark.parametrize(("world", "build", "error"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_rejected_command_changes_nothing(world: Callable[[], EpWorld],
                                          build: Callable[[EpWorld], Pdu],
                                          error: type[Exception]) -> None:
    w = world()
    w.exchange(w.ground.reset_alarm())
    before = w.board.state_digest()
    n_events = len(w.board.monitor.events)
    pdu = build(w)
    with pytest.raises(errors.SdlsQkdError) as info:
        w.board.handle_pdu(pdu.pack(), via_spi=MANAGEMENT_SPI)
    assert isinstance(info.value, error), repr(info.value)
    assert w.board.state_digest() == before
    events = w.board.monitor.events
    assert len(events) == n_events + 1
    assert events[-1].code is EventCode.PROCEDURE_REJECTED
    assert events[-1].value[1] != ErrorCode.NONE and events[-1].reason
    assert w.board.monitor.fsr().alarm_flag


def test_the_same_commands_through_packets_are_rejected_too() -> None:
    w = ep_world()
    before = w.board.state_digest()
    with pytest.raises(errors.IllegalTransition):
        w.exchange(w.ground.start_sa(DATA_SPI, [Gvcid(0, SCID, 1)]))
    with pytest.raises(errors.InvalidProcedure):
        w.board.handle_packet(b"\x10\x7e\xc0\x00\x00\x05\x31\x00\x00", via_spi=MANAGEMENT_SPI)
    assert w.board.state_digest() == before


def test_command_on_the_spi_that_carried_it_is_refused() -> None:
    w = ep_world()
    with pytest.raises(errors.InvalidProcedure, match="protects the EP channel"):
        w.board.handle_pdu(Pdu.command(Procedure.STOP_SA, spi5).pack(), via_spi=DATA_SPI)
    assert w.board.sas[DATA_SPI].state is SaState.OPERATIONAL


def test_inventory_honours_its_range() -> None:
    w = ep_world()
    inv = w.ground.inventory(131, 131)
    w.exchange(inv)
    assert inv.result == {131: KeyState.ACTIVE}
    inv = w.ground.inventory(133, 139)
    w.exchange(inv)
    assert inv.result == {}


def test_key_transition_table_is_the_only_path() -> None:
    ring = KeyRing()
    ring.install(200, bytes(32))
    for event in KeyEvent:
        legal = (KeyState.PREACTIVE, event) in KEY_TRANSITIONS
        if not legal:
            with pytest.raises(errors.IllegalTransition):
                ring.transition(200, event)
            assert ring.state(200) is KeyState.PREACTIVE
    assert ring.transition(200, KeyEvent.ACTIVATE) is KeyState.ACTIVE
    assert ring.transition(200, KeyEvent.DEACTIVATE) is KeyState.DEACTIVATED
    assert ring.transition(200, KeyEvent.DESTROY) is KeyState.DESTROYED
    assert ring.get(200).material is None
    with pytest.raises(errors.IllegalTransition):
        ring.transition(200, KeyEvent.ACTIVATE)


def test_keys_never_appear_in_repr_or_errors() -> None:
    w = ep_world()
    secret = w.board.ring.material(131)
    text = repr(w.board.ring.get(131)) + repr(w.board.sas[DATA_SPI])
    assert secret.hex() not in text and repr(secret) not in text
    try:
        w.board.handle_pdu(Pdu.command(Procedure.OTAR, OtarCommand.seal(
            MASTER_KEY_ID, bytes(32), [(140, secret)], bytes(12)).pack()).pack(), via_spi=1)
    except errors.SdlsQkdError as exc:
        assert secret.hex() not in str(exc)
    assert all(secret.hex() not in e.reason for e in w.board.monitor.events)


def test_corrupted_key_can_only_be_destroyed() -> None:
    """A corrupted key must be erasable and nothing else (355.1 key states; spec digest 4.x)."""
    ring = KeyRing()
    ring.install(201, bytes(range(32)))
    assert ring.transition(201, KeyEvent.ACTIVATE) is KeyState.ACTIVE
    assert ring.transition(201, KeyEvent.CORRUPT) is KeyState.CORRUPTED
    for event in (KeyEvent.ACTIVATE, KeyEvent.DEACTIVATE, KeyEvent.CORRUPT):
        with pytest.raises(errors.IllegalTransition):
            ring.transition(201, event)
        assert ring.state(201) is KeyState.CORRUPTED
    assert ring.transition(201, KeyEvent.DESTROY) is KeyState.DESTROYED
    assert ring.get(201).material is None
