"""The ``ep_executed`` path of the vector checker, and CryptoLib's default EP set-up.

Expected bytes and errors come from CryptoLib (vectors/cryptolib.json and the EP replies it sent,
vectors/cryptolib_ep.json), never from this library.  Vectors that the converter did not mark
with ``ep_executed`` (their outcome did not depend on the EP) are reused here with the quirk and
CryptoLib's captured reply added to their notes: the checker must then reproduce that reply
octet for octet.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sdls_qkd import vectors as sv
from sdls_qkd.errors import InvalidProcedure
from sdls_qkd.procedures import cryptolib_defaults as cd
from sdls_qkd.procedures.keys import KeyRole, KeyState
from sdls_qkd.procedures.onboard import EpMode, OnboardSecurityManager
from sdls_qkd.security import engine
from sdls_qkd.security.sa import SaState, SecurityAssociation

ROOT = Path(__file__).resolve().parent.parent
DOC = sv.load(ROOT / "vectors" / "cryptolib.json").doc
BY_ID = {v["id"]: v for v in DOC["vectors"]}
EP_DOC = json.loads((ROOT / "vectors" / "cryptolib_ep.json").read_text())
EP = {v["id"]: v for v in EP_DOC["vectors"]}

EP_QUIRKED = sorted(v["id"] for v in DOC["vectors"] if "ep_executed" in v.get("quirks", []))
BAD_DECRYPT = "cryptolib/EP_KEY_MGMT.OTAR_0_140_142_BAD_DECRYPT#1"
#: EP vectors whose CryptoLib reply needs no set-up beyond the default ring and the carrying SA
REPLIES = sorted(k for k, v in EP.items() if v["result"] == "reply" and not v["preconditions"])
IGNORED = sorted(k for k, v in EP.items() if v["result"] == "ignored")


def _vector(vid: str) -> dict[str, Any]:
    return copy.deepcopy(BY_ID[vid])


def _with_reply(ep_id: str, reply_hex: str | None = None) -> dict[str, Any]:
    """The process vector of an EP capture record, with ep_executed and the reply in its notes."""
    vector = _vector("cryptolib/" + ep_id)
    assert "quirks" not in vector
    vector["quirks"] = ["ep_executed"]
    vector["notes"] += f"; EP reply: {reply_hex or EP[ep_id]['reply_hex']}"
    return vector


# --------------------------------------------------------------------------- the converted file
def test_supported_set_is_engine_plus_ep() -> None:
    assert "ep_executed" not in engine.SUPPORTED_QUIRKS
    assert sv.supported_quirks() == frozenset(engine.SUPPORTED_QUIRKS) | {"ep_executed"}
    assert set(sv.CHECKER_QUIRKS) == {"ep_executed"}


def test_ten_ep_vectors_nine_pass_one_named_skip() -> None:
    assert len(EP_QUIRKED) == 10
    results = {vid: sv.check_vector(BY_ID[vid]) for vid in EP_QUIRKED}
    for vid, result in results.items():
        if vid == BAD_DECRYPT:
            assert result.status is sv.Status.SKIP
            assert result.reason.startswith("cannot reproduce: ")
            assert "master key 127" in result.reason and not result.missing_quirks
            continue
        assert result.status is sv.Status.PASS, (vid, result.reason)
        expected = BY_ID[vid]["expected_error"]
        assert result.reason.startswith(f"{expected} raised by the EP command"), result.reason


@pytest.mark.parametrize("vid, fragment", [
    ("cryptolib/EP_KEY_MGMT.OTAR_0_140_142_MK_NOT_ACTIVE#1", "master key 127 is PREACTIVE"),
    ("cryptolib/EP_SA_MGMT.SA_STOP_SELF#1", "SPI 0 protects the EP channel"),
    ("cryptolib/EP_KEY_MGMT.TLV_KEY_DEACTIVATE_TESTS#1", "packet length 4111 exceeds 494"),
    ("cryptolib/EP_KEY_MGMT.DEACTIVATE_142_PUS_BAD_TLV#1", "PDU length 2 bits"),
])
def test_error_comes_from_the_right_check(vid: str, fragment: str) -> None:
    """Each error is raised for CryptoLib's reason, not by coincidence."""
    result = sv.check_vector(BY_ID[vid])
    assert result.status is sv.Status.PASS and fragment in result.reason, result.reason


def test_without_ep_support_they_skip() -> None:
    for vid in EP_QUIRKED:
        result = sv.check_vector(BY_ID[vid], supported=frozenset(engine.SUPPORTED_QUIRKS))
        assert result.status is sv.Status.SKIP
        assert result.missing_quirks == ("ep_executed",)


def test_the_frame_is_processed_first() -> None:
    """ProcessSecurity's own errors still come first: a bad frame never reaches the EP."""
    vector = _vector("cryptolib/EP_SA_MGMT.SA_STOP_SELF#1")
    vector["sa"]["state"] = "KEYED"
    result = sv.check_vector(vector)
    assert result.status is sv.Status.FAIL and "raised InvalidSaState" in result.reason
    vector["expected_error"] = "InvalidSaState"
    assert sv.check_vector(vector).status is sv.Status.PASS


def test_sa_after_is_checked_on_the_ep_path() -> None:
    vector = _vector("cryptolib/EP_KEY_MGMT.DEACTIVATE_142_PUS_BAD_TLV#1")
    vector["sa_after"]["iv_hex"] = "00" * 12
    result = sv.check_vector(vector)
    assert result.status is sv.Status.FAIL and "SA IV after the call" in result.reason


# --------------------------------------------------------------------------- replies
@pytest.mark.parametrize("ep_id", REPLIES)
def test_captured_reply_reproduced(ep_id: str) -> None:
    result = sv.check_vector(_with_reply(ep_id))
    assert result.status is sv.Status.PASS, result.reason
    assert "reply matches" in result.reason


def test_replies_cover_key_and_monitoring_procedures() -> None:
    assert {"EP_KEY_MGMT.INVENTORY_132_134#1", "EP_KEY_MGMT.VERIFY_132_134#1",
            "EP_MC.MC_REGULAR_PING#1", "EP_MC.MC_SELF_TEST#1"} <= set(REPLIES)


@pytest.mark.parametrize("octet", [0, 13, -1])
def test_wrong_reply_fails(octet: int) -> None:
    ep_id = "EP_KEY_MGMT.VERIFY_132_134#1"
    reply = bytearray.fromhex(EP[ep_id]["reply_hex"])
    reply[octet] ^= 0x40
    result = sv.check_vector(_with_reply(ep_id, reply.hex()))
    assert result.status is sv.Status.FAIL
    assert f"EP reply differs at octet {octet % len(reply)}" in result.reason


def test_reply_expected_but_none_sent_fails() -> None:
    vector = _with_reply("EP_MC.MC_REGULAR_PING#1")
    alarm = _vector("cryptolib/EP_MC.MC_ALARM_FLAG_RESET#1")  # executes, sends no reply
    alarm["quirks"] = ["ep_executed"]
    alarm["notes"] = vector["notes"]
    result = sv.check_vector(alarm)
    assert result.status is sv.Status.FAIL and "without a reply" in result.reason


@pytest.mark.parametrize("ep_id", IGNORED)
def test_data_not_addressed_to_ep_passes_as_plain_data(ep_id: str) -> None:
    vector = _vector("cryptolib/" + ep_id)
    vector["quirks"] = ["ep_executed"]
    result = sv.check_vector(vector)
    assert result.status is sv.Status.PASS and "not an EP command" in result.reason
    vector["notes"] += "; EP reply: 0880"
    result = sv.check_vector(vector)
    assert result.status is sv.Status.FAIL and "not an EP command" in result.reason


def test_recovered_data_still_compared() -> None:
    vector = _with_reply("EP_MC.MC_REGULAR_PING#1")
    data = bytearray.fromhex(vector["expected_hex"])
    data[3] ^= 1
    vector["expected_hex"] = data.hex()
    result = sv.check_vector(vector)
    assert result.status is sv.Status.FAIL and "recovered data differs at octet 3" in result.reason


# --------------------------------------------------------------------------- wrong outcomes
def test_wrong_expected_error_fails() -> None:
    vector = _vector("cryptolib/EP_SA_MGMT.SA_STOP_SELF#1")
    vector["expected_error"] = "InvalidKeyState"
    result = sv.check_vector(vector)
    assert result.status is sv.Status.FAIL
    assert "EP command raised InvalidProcedure" in result.reason
    assert "expected InvalidKeyState" in result.reason


def test_command_that_succeeds_where_an_error_is_expected_fails() -> None:
    vector = _vector("cryptolib/EP_MC.MC_REGULAR_PING#1")
    vector.update(quirks=["ep_executed"], expected_hex=None, expected_error="InvalidProcedure")
    result = sv.check_vector(vector)
    assert result.status is sv.Status.FAIL
    assert result.reason == "EP command succeeded (PING executed), expected InvalidProcedure"


def test_command_refused_where_success_is_expected_fails() -> None:
    vector = _vector("cryptolib/EP_SA_MGMT.SA_STOP_SELF#1")
    vector.update(expected_error=None,
                  expected_hex=bytes.fromhex(vector["input_hex"])[8:].hex())
    result = sv.check_vector(vector)
    assert result.status is sv.Status.FAIL
    assert result.reason.startswith("recovered data matches, but the EP command raised "
                                    "InvalidProcedure")


def test_ep_crash_is_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(self: OnboardSecurityManager, *args: Any, **kwargs: Any) -> Any:
        raise IndexError("index out of range")

    monkeypatch.setattr(OnboardSecurityManager, "handle_packet", boom)
    result = sv.check_vector(BY_ID["cryptolib/EP_SA_MGMT.SA_STOP_SELF#1"])
    assert result.status is sv.Status.FAIL
    assert result.reason == "EP command crashed with IndexError: index out of range"


def test_refusal_that_changes_state_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rejected command must change nothing: the checker compares the manager's state."""
    def sloppy(self: OnboardSecurityManager, *args: Any, **kwargs: Any) -> Any:
        self.ring.force_state(128, KeyState.DEACTIVATED)
        raise InvalidProcedure("refused after touching the ring")

    monkeypatch.setattr(OnboardSecurityManager, "handle_packet", sloppy)
    result = sv.check_vector(BY_ID["cryptolib/EP_SA_MGMT.SA_STOP_SELF#1"])
    assert result.status is sv.Status.FAIL and "changed state" in result.reason


def test_ep_on_other_frame_types_is_skipped_with_reason() -> None:
    tm = copy.deepcopy(next(v for v in DOC["vectors"]
                            if v["frame_type"] == "TM" and v["operation"] == "process"))
    tm["quirks"] = [*tm.get("quirks", []), "ep_executed"]
    result = sv.check_vector(tm)
    assert result.status is sv.Status.SKIP
    assert "from TC ProcessSecurity only" in result.reason


# --------------------------------------------------------------------------- notes set-up
def test_setup_in_notes_makes_bad_decrypt_reproducible() -> None:
    """With the test's key state in the notes, OTAR under the empty slot 127 fails its MAC."""
    vector = _vector(BAD_DECRYPT)
    vector["notes"] += "; EP set-up: key 127 ACTIVE"
    result = sv.check_vector(vector)
    assert result.status is sv.Status.PASS, result.reason
    assert "MacVerificationFailure raised by the EP command" in result.reason
    # and the same set-up on the MK_NOT_ACTIVE frame turns its expected error into a mismatch
    other = _vector("cryptolib/EP_KEY_MGMT.OTAR_0_140_142_MK_NOT_ACTIVE#1")
    other["notes"] += "; EP set-up: key 127 ACTIVE"
    result = sv.check_vector(other)
    assert result.status is sv.Status.FAIL and "expected InvalidKeyState" in result.reason


@pytest.mark.parametrize("note, fragment", [
    ("EP reply: 08801", "odd number of hex digits"),
    ("EP set-up: key 127 HALFWAY", "unknown key state 'HALFWAY'"),
])
def test_malformed_notes_fail_clearly(note: str, fragment: str) -> None:
    vector = _vector("cryptolib/EP_SA_MGMT.SA_STOP_SELF#1")
    vector["notes"] += "; " + note
    result = sv.check_vector(vector)
    assert result.status is sv.Status.FAIL and fragment in result.reason, result.reason


# --------------------------------------------------------------------------- default set-up
def test_default_ring_is_the_one_the_ep_file_documents() -> None:
    documented = [(k["key_id"], k["key_hex"], k["state"]) for k in EP_DOC["cryptolib_key_ring"]]
    ours = [(k.key_id, k.material.hex(), k.state.name) for k in cd.CRYPTOLIB_KEY_RING]
    assert ours == documented
    assert EP_DOC["provenance"]["commit"] == cd.CRYPTOLIB_COMMIT
    assert EP_DOC["provenance"]["key_ring_source"] == cd.KEY_RING_SOURCE


@pytest.mark.parametrize("ep_id", ["EP_KEY_MGMT.VERIFY_132_134#1",
                                   "EP_KEY_MGMT.TLV_KEY_VERIFY_TESTS#1"])
def test_default_ring_decrypts_captured_verification_replies(ep_id: str) -> None:
    """Independent of our code: CryptoLib's reply blocks (key ID, IV, encrypted challenge, MAC)
    open with pyca/cryptography under the default keys to the challenges of the command."""
    material = {k.key_id: k.material for k in cd.CRYPTOLIB_KEY_RING}
    command = bytes.fromhex(EP[ep_id]["data_field_hex"])[13:]
    challenges = {int.from_bytes(command[i:i + 2], "big"): command[i + 2:i + 18]
                  for i in range(0, len(command) - 17, 18)}
    reply = bytes.fromhex(EP[ep_id]["reply_hex"])[13:]
    assert len(reply) % 46 == 0 and reply
    for i in range(0, len(reply), 46):
        block = reply[i:i + 46]
        key_id = int.from_bytes(block[:2], "big")
        plain = AESGCM(material[key_id]).decrypt(block[2:14], block[14:46], None)
        assert plain == challenges[key_id]


def test_default_ring_slots() -> None:
    ring = cd.cryptolib_key_ring()
    assert ring.state(132) is KeyState.PREACTIVE and ring.state(134) is KeyState.DEACTIVATED
    assert ring.state(127) is KeyState.PREACTIVE and ring.same_material(127, bytes(32))
    assert ring.role(127) is KeyRole.MASTER and ring.role(128) is KeyRole.SESSION
    assert 140 not in ring and ring.slot_free(140)  # empty session slot: OTAR may fill it
    assert len(ring) == 128 + 9
    assert 127 not in cd.cryptolib_key_ring(empty_master_slots=False)
    assert "material" not in repr(cd.CRYPTOLIB_KEY_RING[0])


def test_onboard_manager_uses_the_carrying_sa() -> None:
    vector = BY_ID["cryptolib/EP_SA_MGMT.SA_STOP_SELF#1"]
    from sdls_qkd.framing.channel import channel_from_dict

    channel = channel_from_dict("TC", vector["channel"])
    sa = SecurityAssociation.from_schema(vector["sa"], frame_type="TC", channel=channel)
    mgr = cd.cryptolib_onboard(sa)
    assert mgr.config.mode is EpMode.CRYPTOLIB
    assert mgr.sas[0] is sa and mgr.config.management_spis == {0, 63}
    data = bytes.fromhex(vector["input_hex"])[8:]
    with pytest.raises(InvalidProcedure):
        mgr.handle_packet(data, via_spi=0, frame_length_field=26)
    assert sa.state is SaState.OPERATIONAL
    # an EP frame on an SPI that is not an EP SA is refused (CryptoLib SPI_MIN / SPI_MAX rule)
    with pytest.raises(InvalidProcedure, match="not an EP SA"):
        cd.cryptolib_onboard().handle_packet(data, via_spi=5, frame_length_field=26)
