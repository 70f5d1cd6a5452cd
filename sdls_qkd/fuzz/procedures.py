"""Fuzzing kit for the SDLS Extended Procedures: a wired ground/board pair and strategies.

:func:`ep_world` builds a small, realistic on-board manager and ground commander that share
keys (master key, session keys, a management SA and a data SA on configured channels).
Strategies:

* :func:`raw_pdus` — arbitrary octets (the parser's worst case);
* :func:`tagged_pdus` — a valid tag and length field over random data (reaches every handler);
* :func:`structured_commands` — well-formed commands of every procedure with random, often
  wrong, parameters (SPIs, key IDs, states): what a state-machine test needs;
* :func:`mutate` — flip/insert/delete octets of a valid PDU.

``hypothesis`` is imported lazily by the strategy functions, so importing this module costs
nothing in production.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sdls_qkd.framing.channel import TcChannel, TmChannel
from sdls_qkd.procedures.ground import GroundCommander
from sdls_qkd.procedures.key_management import (
    KeyIdList,
    KeyInventoryCommand,
    KeyVerificationCommand,
    OtarCommand,
)
from sdls_qkd.procedures.keys import KeyRing, KeyState
from sdls_qkd.procedures.onboard import OnboardConfig, OnboardSecurityManager
from sdls_qkd.procedures.pdu import EpPacketConfig, Pdu, Procedure
from sdls_qkd.procedures.sa_management import (
    CreateSaCommand,
    Gvcid,
    RekeySaCommand,
    SetArsnCommand,
    SetArsnWindowCommand,
    SpiCommand,
    StartSaCommand,
)
from sdls_qkd.security.sa import SaState, SecurityAssociation, binding_for

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

__all__ = [
    "EpWorld",
    "ep_world",
    "MANAGEMENT_SPI",
    "DATA_SPI",
    "MASTER_KEY_ID",
    "raw_pdus",
    "tagged_pdus",
    "structured_commands",
    "mutate",
]

MANAGEMENT_SPI = 1
DATA_SPI = 5
MASTER_KEY_ID = 1
SCID = 0x2C


def _key(i: int) -> bytes:
    return bytes((i * 7 + j) & 0xFF for j in range(32))


@dataclass
class EpWorld:
    """A ground commander and an on-board manager wired through TC/TM space packets."""

    ground: GroundCommander
    board: OnboardSecurityManager
    clock: list[float]
    tc_data: TcChannel
    tc_mgmt: TcChannel
    tm: TmChannel

    def now(self) -> float:
        return self.clock[0]

    def exchange(self, cmd: Any) -> Any:
        """Send one pending command up, execute it, bring the reply down; returns the
        on-board Outcome (the ground's PendingCommand is updated in place)."""
        outcome = self.board.handle_packet(cmd.packet, via_spi=MANAGEMENT_SPI)
        if outcome is not None and outcome.reply_packet is not None:
            self.ground.receive_packet(outcome.reply_packet)
        return outcome


def ep_world(*, key_source: Any = None, ground_store: Any = None, board_store: Any = None,
             ground_id_map: Any = None, board_id_map: Any = None) -> EpWorld:
    """Board: master key 1 (Active); session keys 129 (Active, in use by SA 1), 130 (Active, in
    use by SA 5), 131 (Active), 132 (Pre-activation); SA 1 = management SA on TC VC 0, SA 5 = data SA on TC VC 1.  The
    ground holds copies of the same keys."""
    tc_mgmt = TcChannel(scid=SCID, vcid=0)
    tc_data = TcChannel(scid=SCID, vcid=1)
    tc_map = TcChannel(scid=SCID, vcid=2, has_segment_header=True, map_id=3)
    tm = TmChannel(scid=SCID, vcid=0)
    packet = EpPacketConfig(command_apid=0x7E, reply_apid=0x7E)
    config = OnboardConfig(packet=packet, channels=(tc_mgmt, tc_data, tc_map, tm),
                           management_spis=frozenset({MANAGEMENT_SPI}))
    ring = KeyRing()
    gring = KeyRing()
    keys = [(MASTER_KEY_ID, KeyState.ACTIVE), (129, KeyState.ACTIVE), (130, KeyState.ACTIVE),
            (131, KeyState.ACTIVE), (132, KeyState.PREACTIVE)]
    for kid, state in keys:
        ring.install(kid, _key(kid), state)
        gring.install(kid, _key(kid), state)
    from sdls_qkd.procedures.qkd_rekey import QkdKeyIdMap

    board = OnboardSecurityManager(config, ring=ring, store=board_store, key_source=key_source,
                                   id_map=board_id_map or QkdKeyIdMap(board_store))
    mgmt = SecurityAssociation(MANAGEMENT_SPI, enc_key=ring.sdls_key(129), sn_length=0,
                               bindings=[binding_for(tc_mgmt)])
    data = SecurityAssociation(DATA_SPI, enc_key=ring.sdls_key(130), sn_length=4,
                               bindings=[binding_for(tc_data)])
    board.sas[MANAGEMENT_SPI] = mgmt
    board.sas[DATA_SPI] = data
    clock = [1000.0]
    ground = GroundCommander(packet, clock=lambda: clock[0], timeout=10.0, keys=gring,
                             store=ground_store,
                             id_map=ground_id_map or QkdKeyIdMap(ground_store))
    return EpWorld(ground, board, clock, tc_data, tc_mgmt, tm)


# --------------------------------------------------------------------------- strategies
def raw_pdus(max_size: int = 96) -> SearchStrategy[bytes]:
    from hypothesis import strategies as st

    return st.binary(max_size=max_size)


def tagged_pdus(max_data: int = 64) -> SearchStrategy[bytes]:
    """A known procedure's command tag, a consistent length field, random data."""
    from hypothesis import strategies as st

    def build(proc: Procedure, data: bytes) -> bytes:
        return Pdu.command(proc, data).pack()

    return st.builds(build, st.sampled_from(list(Procedure)), st.binary(max_size=max_data))


def structured_commands() -> SearchStrategy[Pdu]:
    """Well-formed commands of every procedure with random parameters."""
    from hypothesis import strategies as st

    # weighted towards the SAs and keys that exist, so sequences reach every state
    spis = st.sampled_from([DATA_SPI, DATA_SPI, 7, 7, 7, MANAGEMENT_SPI, 9, 0xFFFF])
    key_ids = st.sampled_from([130, 131, 131, 132, 132, 140, 141, MASTER_KEY_ID, 0xFFFF])
    gvcids = st.sampled_from([Gvcid(0, SCID, 1), Gvcid(0, SCID, 1), Gvcid(0, SCID, 2, 3),
                              Gvcid(0, SCID, 0), Gvcid(0, SCID, 9), Gvcid(1, SCID, 1)])

    def cmd(proc: Procedure, make: Callable[..., Any], *args: Any) -> SearchStrategy[Pdu]:
        return st.builds(lambda *a: Pdu.command(proc, make(*a).pack()), *args)

    create = st.builds(
        lambda spi, aead, iv_len, sn: Pdu.command(Procedure.CREATE_SA, CreateSaCommand(
            spi, True, True, iv_len, len(sn), 0, 16, b"\x01" if aead else b"\x09",
            bytes(iv_len), b"", b"", sn, b"\x00\x05").pack()),
        spis, st.booleans(), st.sampled_from([12, 12, 0]), st.sampled_from([b"", bytes(4)]))
    id_lists = st.lists(key_ids, min_size=1, max_size=2, unique=True).map(tuple)
    masters = st.sampled_from([MASTER_KEY_ID, MASTER_KEY_ID, 2, 130])  # 2: no such key
    return st.one_of(
        cmd(Procedure.KEY_ACTIVATION, KeyIdList, id_lists),
        cmd(Procedure.KEY_DEACTIVATION, KeyIdList, id_lists),
        cmd(Procedure.KEY_DESTRUCTION, KeyIdList, id_lists),
        cmd(Procedure.KEY_INVENTORY, KeyInventoryCommand, key_ids, key_ids),
        st.builds(lambda ids: Pdu.command(Procedure.KEY_VERIFICATION, KeyVerificationCommand(
            tuple((k, bytes(16)) for k in ids)).pack()), id_lists),
        st.builds(lambda mk, ids: Pdu.command(Procedure.OTAR, OtarCommand.seal(
            mk, _key(mk), [(k, _key(k + 1)) for k in ids], bytes(12)).pack()), masters,
            st.lists(st.sampled_from([140, 141, 131, 3]), min_size=1, max_size=2,
                     unique=True)),
        create,
        cmd(Procedure.REKEY_SA, RekeySaCommand, spis, key_ids, st.sampled_from([bytes(12)])),
        cmd(Procedure.START_SA, StartSaCommand, spis,
            st.lists(gvcids, min_size=1, max_size=2, unique=True).map(tuple)),
        *(cmd(p, SpiCommand, spis) for p in (Procedure.STOP_SA, Procedure.EXPIRE_SA,
                                              Procedure.DELETE_SA, Procedure.SA_STATUS,
                                              Procedure.READ_ARSN)),
        cmd(Procedure.SET_ARSN, SetArsnCommand, spis, st.sampled_from([bytes(4), b"\x00\x01"])),
        cmd(Procedure.SET_ARSN_WINDOW, SetArsnWindowCommand, spis,
            st.integers(0, 9), st.just(2)),
        st.sampled_from([Pdu.command(p) for p in (
            Procedure.PING, Procedure.LOG_STATUS, Procedure.DUMP_LOG, Procedure.ERASE_LOG,
            Procedure.SELF_TEST, Procedure.ALARM_FLAG_RESET)]),
    )


def mutate(data: bytes) -> SearchStrategy[bytes]:
    """Small random edits of ``data``: flip octets, truncate, append."""
    from hypothesis import strategies as st

    if not data:
        return st.binary(max_size=8)

    def flip(i: int, v: int) -> bytes:
        i %= len(data)
        return data[:i] + bytes((v,)) + data[i + 1:]

    return st.one_of(
        st.builds(flip, st.integers(0, len(data) - 1), st.integers(0, 255)),
        st.integers(0, len(data)).map(lambda n: data[:n]),
        st.binary(min_size=1, max_size=8).map(lambda extra: data + extra),
    )


_ = SaState  # re-exported for test convenience
