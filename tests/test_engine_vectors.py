"""The engine reproduces captured peer vectors (vectors/sdls_smoke.json).

The file holds a handful of NASA CryptoLib captures (TC/TM/AOS, apply and process, GCM, CBC,
CMAC, HMAC-SHA-256/512, GCM-SIV, clear mode, IV/ARSN roll-over, replays) and the two Yamcs
AES-256-GCM TM frames, converted once into ``sdls-vectors/1`` (provenance inside).  Their bytes
come from CryptoLib / Yamcs' inputs, not from this library.  The complete CryptoLib set is
checked by tests/test_vectors_cryptolib.py.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from sdls_qkd.errors import SdlsQkdError
from sdls_qkd.framing.channel import channel_from_dict
from sdls_qkd.security.engine import EngineOptions, apply_security, process_security
from sdls_qkd.security.sa import SecurityAssociation

SMOKE = Path(__file__).resolve().parent.parent / "vectors" / "sdls_smoke.json"
DOC = json.loads(SMOKE.read_text())
VECTORS: list[dict[str, Any]] = DOC["vectors"]


def run(vector: dict[str, Any]) -> tuple[SecurityAssociation, bytes]:
    ft = vector["frame_type"]
    channel = channel_from_dict(ft, vector["channel"])
    sa = SecurityAssociation.from_schema(vector["sa"], frame_type=ft, channel=channel)
    options = EngineOptions.from_quirks(vector.get("quirks", []))
    frame = bytes.fromhex(vector["input_hex"])
    if vector["operation"] == "apply":
        return sa, apply_security(frame, channel, sa, options)
    return sa, process_security(frame, channel, {sa.spi: sa}, options).data


@pytest.mark.parametrize("vector", VECTORS, ids=[v["id"] for v in VECTORS])
def test_vector(vector: dict[str, Any]) -> None:
    if vector["expected_error"]:
        ft = vector["frame_type"]
        channel = channel_from_dict(ft, vector["channel"])
        sa = SecurityAssociation.from_schema(vector["sa"], frame_type=ft, channel=channel)
        before = sa.snapshot()
        with pytest.raises(SdlsQkdError) as exc:
            options = EngineOptions.from_quirks(vector.get("quirks", []))
            frame = bytes.fromhex(vector["input_hex"])
            if vector["operation"] == "apply":
                apply_security(frame, channel, sa, options)
            else:
                process_security(frame, channel, {sa.spi: sa}, options)
        assert exc.value.code == vector["expected_error"]
        assert sa.snapshot() == before  # a rejection changes nothing
        return
    sa, out = run(vector)
    assert out.hex() == vector["expected_hex"]
    after = vector.get("sa_after") or {}
    if "iv_hex" in after:
        assert sa.iv.hex() == after["iv_hex"]
    if "sn_hex" in after:
        assert sa.arsn.hex() == after["sn_hex"]


def test_smoke_set_covers_every_frame_kind_and_suite() -> None:
    kinds = Counter((v["frame_type"], v["operation"]) for v in VECTORS)
    for ft in ("TC", "TM", "AOS"):
        assert kinds[(ft, "apply")] >= 2 and kinds[(ft, "process")] >= 2
    ciphers = {v["sa"].get("cipher") for v in VECTORS if v["sa"].get("encrypt")}
    macs = {v["sa"].get("mac_algorithm") for v in VECTORS if v["sa"].get("authenticate")}
    assert {"AES-256-GCM", "AES-256-CBC", "AES-256-GCM-SIV"} <= ciphers
    assert {"AES-256-CMAC", "HMAC-SHA-256", "HMAC-SHA-512"} <= macs
    assert any(v["id"].startswith("yamcs-sdls-tm-aes256gcm-iv0") for v in VECTORS)
    assert any(v["id"].startswith("yamcs-sdls-tm-aes256gcm-iv1") for v in VECTORS)
    assert "CryptoLib" in DOC["provenance"]["source"]


def test_yamcs_chain_two_consecutive_frames_from_one_sa() -> None:
    """Yamcs: two consecutive applySecurity calls give the same SPI and IVs 0 then 1."""
    first = next(v for v in VECTORS if v["id"] == "yamcs-sdls-tm-aes256gcm-iv0-apply")
    second = next(v for v in VECTORS if v["id"] == "yamcs-sdls-tm-aes256gcm-iv1-apply")
    channel = channel_from_dict("TM", first["channel"])
    sa = SecurityAssociation.from_schema(first["sa"], frame_type="TM", channel=channel)
    frame = bytes.fromhex(first["input_hex"])
    assert apply_security(frame, channel, sa).hex() == first["expected_hex"]
    assert apply_security(frame, channel, sa).hex() == second["expected_hex"]
