"""Fuzz properties: the PDU parser, the on-board manager (both modes) and the ground's reply
path raise only :mod:`sdls_qkd.errors` exceptions on random and mutated input."""

from __future__ import annotations

import contextlib
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdls_qkd import errors
from sdls_qkd.fuzz.procedures import (
    MANAGEMENT_SPI,
    ep_world,
    mutate,
    raw_pdus,
    structured_commands,
    tagged_pdus,
)
from sdls_qkd.keys.material import QkdKey
from sdls_qkd.procedures.keys import KeyRing, KeyState
from sdls_qkd.procedures.onboard import OnboardConfig, OnboardSecurityManager
from sdls_qkd.procedures.pdu import Pdu, Procedure, wrap_command, wrap_reply

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

_WORLD = ep_world()


def _cryptolib_manager() -> OnboardSecurityManager:
    ring = KeyRing()
    for kid in (0, 127, 128, 130, 132):
        ring.install(kid, bytes([kid]) * 32, KeyState.ACTIVE)
    return OnboardSecurityManager(OnboardConfig.cryptolib(), ring=ring)


_CRYPTOLIB = _cryptolib_manager()


def _only_library_errors(call: object, *args: object, **kwargs: object) -> None:
    with contextlib.suppress(errors.SdlsQkdError):
        call(*args, **kwargs)  # type: ignore[operator]


@FUZZ
@given(st.one_of(raw_pdus(), tagged_pdus()))
def test_pdu_parser_and_manager_on_random_pdus(data: bytes) -> None:
    _only_library_errors(Pdu.unpack, data)
    _only_library_errors(_WORLD.board.handle_pdu, data, via_spi=MANAGEMENT_SPI)
    _only_library_errors(_CRYPTOLIB.handle_pdu, data, via_spi=0)


@FUZZ
@given(st.data(), structured_commands())
def test_manager_on_mutated_packets(data: st.DataObject, pdu: Pdu) -> None:
    packet = wrap_command(pdu, _WORLD.board.config.packet, 3)
    mutated = data.draw(mutate(packet))
    _only_library_errors(_WORLD.board.handle_packet, mutated, via_spi=MANAGEMENT_SPI)
    cl_packet = bytes.fromhex("1980c0030000197f0b00") + pdu.pack()
    _only_library_errors(_CRYPTOLIB.handle_packet, data.draw(mutate(cl_packet)), via_spi=0,
                         frame_length_field=data.draw(st.integers(0, 1023)))


@FUZZ
@given(st.binary(max_size=80))
def test_manager_on_random_packets(data: bytes) -> None:
    _only_library_errors(_WORLD.board.handle_packet, data, via_spi=MANAGEMENT_SPI)
    _only_library_errors(_CRYPTOLIB.handle_packet, b"\x19\x80" + data, via_spi=0)


@FUZZ
@given(st.sampled_from(sorted(Procedure.__members__.values())), st.binary(max_size=60))
def test_ground_reply_path_on_random_replies(procedure: Procedure, data: bytes) -> None:
    w = ep_world()
    g = w.ground
    senders = {Procedure.KEY_VERIFICATION: lambda: g.verify([130]),
               Procedure.KEY_INVENTORY: lambda: g.inventory(0, 200),
               Procedure.SA_STATUS: lambda: g.sa_status(5),
               Procedure.READ_ARSN: lambda: g.read_arsn(5),
               Procedure.QKD_KEY_CHECK: lambda: g.qkd_key_check(130),
               Procedure.QKD_REKEY: lambda: g.qkd_rekey(QkdKey(uuid.uuid4(), bytes(32)))}
    try:
        cmd = senders.get(procedure, lambda: g.send(procedure))()
    except errors.InvalidConfiguration:  # e.g. a QKD Rekey needs its data: a caller error
        return
    reply = wrap_reply(Pdu.reply(procedure, data), g.packet_config, cmd.sequence_count)
    _only_library_errors(g.receive_packet, reply)
    _only_library_errors(g.receive_packet, data)
