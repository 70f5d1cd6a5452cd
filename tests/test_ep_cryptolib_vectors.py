"""CryptoLib's SDLS-EP vectors in the CryptoLib-compatible mode (vectors/cryptolib_ep.json).

Replies are compared byte for byte with what CryptoLib 1.5 produced; error vectors must raise
the mapped error class; "ignored" data is not EP for CryptoLib; "accepted" commands must be
executed (with the preconditions the file states, as the capture lacks them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sdls_qkd import errors
from sdls_qkd.procedures.keys import KeyRing, KeyState
from sdls_qkd.procedures.onboard import (
    EpMode,
    OnboardConfig,
    OnboardSecurityManager,
    preload_cryptolib_log,
)
from sdls_qkd.procedures.pdu import EpPacketConfig
from sdls_qkd.procedures.sa_management import SaMeta
from sdls_qkd.security.sa import SaState, SdlsKey, SecurityAssociation

DOC = json.loads((Path(__file__).parent.parent / "vectors" / "cryptolib_ep.json").read_text())
VECTORS = {v["id"]: v for v in DOC["vectors"]}


def _ring(pre: dict[str, Any]) -> KeyRing:
    ring = KeyRing(master_key_ids=range(0, 128))
    for k in DOC["cryptolib_key_ring"]:
        ring.install(k["key_id"], bytes.fromhex(k["key_hex"]), KeyState[k["state"]])
    for kid, state in pre.get("keys", {}).items():
        kid = int(kid)
        if kid in ring:
            ring.force_state(kid, KeyState[state])
        else:  # an empty CryptoLib slot: 32 zero octets
            ring.install(kid, bytes(32), KeyState[state])
    return ring


def _sa(spi: int, spec: dict[str, Any]) -> tuple[SecurityAssociation, int]:
    state = SaState[spec["state"]]
    sn = bytes.fromhex(spec.get("sn_hex", ""))
    keyed = state in (SaState.KEYED, SaState.OPERATIONAL)
    sa = SecurityAssociation(spi, enc_key=SdlsKey(bytes(32), key_id=130), sn_length=len(sn),
                             arsn=sn or 0, state=SaState.KEYED if not keyed else state)
    if not keyed:
        sa.expire()
    return sa, spec.get("window_width", 2)


def _manager(vector: dict[str, Any]) -> OnboardSecurityManager:
    pre = vector["preconditions"]
    packet = EpPacketConfig.cryptolib() if vector["has_pus_header"] else EpPacketConfig(
        command_apid=0x180, reply_apid=0x080, secondary_header_length=0)
    mgr = OnboardSecurityManager(OnboardConfig.cryptolib(packet=packet), ring=_ring(pre))
    assert mgr.config.mode is EpMode.CRYPTOLIB
    for spi, spec in pre.get("sas", {}).items():
        sa, width = _sa(int(spi), spec)
        mgr.sas[int(spi)] = sa
        mgr.meta.setdefault(int(spi), SaMeta(window_width=width))
    preload_cryptolib_log(mgr.monitor, pre.get("log_events", 0))
    return mgr


def _run(vector: dict[str, Any]) -> Any:
    mgr = _manager(vector)
    return mgr, mgr.handle_packet(bytes.fromhex(vector["data_field_hex"]), via_spi=vector["spi"],
                                  frame_length_field=vector["frame_length_field"])


def _ids(result: str) -> list[str]:
    return [k for k, v in VECTORS.items() if v["result"] == result]


def test_vector_file_covers_every_capture_ep_vector() -> None:
    assert DOC["format"] == "sdls-qkd-ep-vectors/1"
    assert DOC["provenance"]["commit"] == "2a237a3fa46822c2c339a0ab0b152c8697aa5093"
    assert len(VECTORS) == 40
    assert len(_ids("reply")) == 10


@pytest.mark.parametrize("vid", _ids("reply"))
def test_reply_byte_exact(vid: str) -> None:
    vector = VECTORS[vid]
    _, outcome = _run(vector)
    assert outcome is not None
    assert outcome.reply_packet is not None
    assert outcome.reply_packet.hex() == vector["reply_hex"]


@pytest.mark.parametrize("vid", _ids("error"))
def test_error_vectors_raise_mapped_error(vid: str) -> None:
    vector = VECTORS[vid]
    mgr = _manager(vector)
    before = mgr.state_digest()
    with pytest.raises(errors.SdlsQkdError) as info:
        mgr.handle_packet(bytes.fromhex(vector["data_field_hex"]), via_spi=vector["spi"],
                          frame_length_field=vector["frame_length_field"])
    assert info.value.code == vector["error"]
    assert mgr.state_digest() == before
    assert mgr.monitor.alarm


@pytest.mark.parametrize("vid", _ids("ignored"))
def test_non_ep_data_is_ignored(vid: str) -> None:
    mgr, outcome = _run(VECTORS[vid])
    assert outcome is None
    assert not mgr.monitor.alarm


@pytest.mark.parametrize("vid", _ids("accepted"))
def test_accepted_commands_execute_without_reply(vid: str) -> None:
    mgr, outcome = _run(VECTORS[vid])
    assert outcome is not None
    assert outcome.reply is None
    assert not mgr.monitor.alarm


def test_accepted_effects() -> None:
    mgr, _ = _run(VECTORS["EP_KEY_MGMT.DEACTIVATE_142_NO_PUS#1"])
    assert mgr.ring.state(142) is KeyState.DEACTIVATED
    mgr, _ = _run(VECTORS["EP_SA_MGMT.SA_6_REKEY_133#1"])
    assert mgr.sas[6].state is SaState.KEYED and mgr.sas[6].enc_key is mgr.ring.sdls_key(133)
    mgr, _ = _run(VECTORS["EP_SA_MGMT.SA_6_SET_ARSNW#1"])
    assert mgr.sas[6].window == 9
    mgr, _ = _run(VECTORS["EP_SA_MGMT.SA_STOP_6#1"])
    assert mgr.sas[6].state is SaState.KEYED
    mgr, _ = _run(VECTORS["EP_SA_MGMT.SA_EXPIRE_6#1"])
    assert mgr.sas[6].state is SaState.UNKEYED
    mgr, _ = _run(VECTORS["EP_KEY_MGMT.TLV_KEY_DEACTIVATE_TESTS#4"])
    assert all(mgr.ring.state(k) is KeyState.DEACTIVATED for k in range(128, 138))


def test_verification_reply_iv_reuse_is_cryptolib_only() -> None:
    """CryptoLib restarts the reply IVs at 1: two replies reuse IVs under the same key."""
    vector = VECTORS["EP_KEY_MGMT.VERIFY_132_134#1"]
    mgr = _manager(vector)
    data = bytes.fromhex(vector["data_field_hex"])
    first = mgr.handle_packet(data, via_spi=0)
    second = mgr.handle_packet(data, via_spi=0)
    assert first is not None and second is not None
    assert first.reply_packet == second.reply_packet  # the bug, reproduced in this mode only
