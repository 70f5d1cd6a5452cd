"""The Yamcs-derived SDLS vectors (vectors/yamcs_sdls.json): AES-256-GCM TM frames, Yamcs preset.

The two frames were derived from Yamcs's test inputs by a research helper (Yamcs's own test is
round-trip only); the behaviour cases are the assertions of Yamcs's
SecurityAssociationAes256Gcm128Test, applied to those frames.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sdls_qkd import vectors as sv

ROOT = Path(__file__).resolve().parent.parent
YAMCS = ROOT / "vectors" / "yamcs_sdls.json"


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return sv.load(YAMCS).doc


@pytest.fixture(scope="module")
def report() -> sv.CheckReport:
    return sv.check(YAMCS)


def test_all_pass(report: sv.CheckReport) -> None:
    bad = [f"{r.id}: {r.status.value} {r.reason}" for r in report.results
           if r.status is not sv.Status.PASS]
    assert not bad, "\n".join(bad)
    assert report.passed == 10


def test_derived_status_is_stated(doc: dict[str, Any]) -> None:
    assert doc["provenance"]["how"].startswith("DERIVED")
    assert doc["provenance"]["commit"] == "425c8cbb35906b0aabfc94b0ec7627950ab08720"
    for vector in doc["vectors"]:
        assert "derived:" in vector["notes"] and "not produced by running Yamcs" in vector["notes"]


def test_yamcs_preset(doc: dict[str, Any]) -> None:
    for vector in doc["vectors"]:
        sa = vector["sa"]
        assert (sa["cipher"], sa["encrypt"], sa["authenticate"]) == ("AES-256-GCM", True, True)
        assert (sa["iv_length"], sa["transmitted_iv_length"], sa["sn_length"],
                sa["pad_length_field_length"], sa["mac_length"]) == (12, 12, 0, 0, 16)
        assert sa["abm_hex"] == "000e00000000ffff000000000000000000000000"


def test_expected_errors(doc: dict[str, Any]) -> None:
    errors = {v["id"].rsplit("/", 1)[1]: v["expected_error"] for v in doc["vectors"]}
    assert errors == {
        "apply": None,  # two apply vectors share the suffix
        "process-iv1": None,
        "wrong-key": "MacVerificationFailure",
        "receiver-spi-1": "InvalidSpi",
        "vcid-flipped": "MacVerificationFailure",
        "spi-flipped": "InvalidSpi",
        "mc-frame-count-flipped": None,
        "mac-flipped": "MacVerificationFailure",
        "ciphertext-flipped": "MacVerificationFailure",
    }


def test_apply_bytes_are_aes_gcm_under_the_mask(doc: dict[str, Any]) -> None:
    """Independent of the engine: the frames are AES-256-GCM with AAD = 20 octets AND mask."""
    for vector in doc["vectors"]:
        if vector["operation"] != "apply":
            continue
        sa = vector["sa"]
        out = bytes.fromhex(vector["expected_hex"])
        mask = bytes.fromhex(sa["abm_hex"])
        aad = bytes(a & b for a, b in zip(out[:20], mask, strict=True))
        sealed = AESGCM(bytes.fromhex(sa["key_hex"])).encrypt(
            bytes.fromhex(sa["iv_hex"]), bytes.fromhex(vector["input_hex"])[20:26], aad)
        assert out[20:] == sealed
        assert out[6:8] == (42).to_bytes(2, "big")


def test_mutations_touch_one_bit(doc: dict[str, Any]) -> None:
    base = bytes.fromhex(next(v["input_hex"] for v in doc["vectors"]
                              if v["id"].endswith("process-iv1")))
    for vector in doc["vectors"]:
        if vector["operation"] != "process" or vector["id"].endswith(("process-iv1", "wrong-key",
                                                                      "receiver-spi-1")):
            continue
        frame = bytes.fromhex(vector["input_hex"])
        diff = [i for i, (a, b) in enumerate(zip(frame, base, strict=True)) if a != b]
        assert len(diff) == 1, vector["id"]
        assert bin(frame[diff[0]] ^ base[diff[0]]).count("1") == 1


# --------------------------------------------------------------------------- frame-only kinds
FRAMES_TM = ROOT / "vectors" / "frames_yamcs_tm.json"
FRAMES_AOS_USLP = ROOT / "vectors" / "frames_yamcs_aos_uslp.json"


def test_frame_decode_vectors_run_through_the_codecs() -> None:
    for path in (FRAMES_TM, FRAMES_AOS_USLP):
        report = sv.check(path)
        assert report.failed == 0, [r for r in report.results if r.status is not sv.Status.PASS]
        assert report.passed == len(sv.load(path).vectors)


def test_frame_decode_mismatch_names_the_field() -> None:
    vector = dict(sv.load(FRAMES_TM).vectors[0])
    vector["expected_fields"] = {**vector["expected_fields"], "scid": 759}
    result = sv.check_vector(vector)
    assert result.status is sv.Status.FAIL
    assert result.reason == "field scid: got 758, expected 759"
    vector["expected_fields"] = {"no_such_field": 1}
    assert "no field 'no_such_field'" in sv.check_vector(vector).reason


def test_frame_decode_of_bad_bytes_fails_cleanly() -> None:
    vector = dict(sv.load(FRAMES_TM).vectors[0])
    vector["input_hex"] = vector["input_hex"][:-4] + "0000"  # wrong FECF
    result = sv.check_vector(vector)
    assert result.status is sv.Status.FAIL and result.reason.startswith("raised FecfError")


def test_missing_codec_is_a_clear_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    vector = dict(sv.load(FRAMES_TM).vectors[0])
    monkeypatch.setitem(sv._CODECS, "TM", ("sdls_qkd.framing.no_such_codec", "TmFrame"))
    result = sv.check_vector(vector)
    assert result.status is sv.Status.FAIL
    assert result.reason.startswith("TM frame codec not available (sdls_qkd.framing.no_such_codec")


def test_frame_encode_without_from_fields_is_a_clear_failure(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # a class without from_fields() stands in for a codec that cannot encode from fields
    monkeypatch.setitem(sv._CODECS, "TM", ("sdls_qkd.framing.channel", "TmChannel"))
    vector = {"id": "enc", "kind": "frame_encode", "frame_type": "TM",
              "channel": {"scid": 1, "vcid": 0, "frame_length": 16}, "fields": {"scid": 1},
              "expected_hex": "00"}
    result = sv.check_vector(vector)
    assert result.status is sv.Status.FAIL
    assert "from_fields" in result.reason
