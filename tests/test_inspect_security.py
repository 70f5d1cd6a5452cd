"""``sdls-qkd inspect --sa`` (SDLS verification) and SDLS-EP PDU dissection.

Expected values come from captured vector files (CryptoLib capture: ``vectors/cryptolib.json``,
``vectors/cryptolib_ep.json``; Yamcs-derived: ``vectors/yamcs_sdls.json``) wherever they exist;
the sample SA file ``vectors/samples/inspect/inspect_sas.json`` only defines SAs from which the
tests protect frames with the library's own ``apply_security``.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdls_qkd.errors import SdlsQkdError
from sdls_qkd.framing.channel import channel_from_dict
from sdls_qkd.framing.crc import crc16
from sdls_qkd.framing.tc import TcFrame
from sdls_qkd.framing.tm import TmFrame
from sdls_qkd.inspect_security import inspect_secured, load_key_file
from sdls_qkd.security.engine import apply_security
from sdls_qkd.security.layout import make_sa
from sdls_qkd.security.sa import SecurityAssociation

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "vectors"
SAMPLE = VECTORS / "samples" / "inspect" / "inspect_sas.json"
TC_ID = "inspect/tc-aes-gcm-iv-arsn"
TM_ID = "inspect/tm-aes-cmac-arsn"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sdls_qkd.cli", "inspect", *args],
                          capture_output=True, text=True, timeout=60, check=False, cwd=ROOT)


def _vector(path: Path, vid: str) -> dict[str, Any]:
    doc = json.loads(path.read_text())
    return next(v for v in doc["vectors"] if v["id"] == vid)


def _keys_of(*paths: Path) -> list[str]:
    out = []
    for path in paths:
        for v in json.loads(path.read_text())["vectors"]:
            for name in ("key_hex", "auth_key_hex"):
                if (v.get("sa") or {}).get(name):
                    out.append(v["sa"][name])
    return out


def _clean(proc: subprocess.CompletedProcess[str], *keys: str) -> str:
    """Output of a run that shows no traceback and no key octets."""
    text = proc.stdout + proc.stderr
    assert "Traceback" not in text
    for key in keys or _keys_of(SAMPLE):
        assert key.lower() not in text.lower()
    return proc.stdout


def _json(proc: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def _find(tree: dict[str, Any], name: str) -> list[dict[str, Any]]:
    hits = [tree] if tree.get("name") == name else []
    for child in tree.get("children", []):
        hits.extend(_find(child, name))
    return hits


# ------------------------------------------------------------------ frames from the sample SAs
def _sender(vid: str, *, iv: int = 1, sn: int = 1, spi: int | None = None
            ) -> tuple[SecurityAssociation, Any, dict[str, Any]]:
    """A sender for the sample SA ``vid``: counters relative to the receiver's stored ones."""
    vector = _vector(SAMPLE, vid)
    doc = dict(vector["sa"])
    for key, delta in (("iv_hex", iv), ("sn_hex", sn)):
        if doc.get(key):
            width = len(doc[key]) // 2
            doc[key] = (int(doc[key], 16) + delta).to_bytes(width, "big").hex()
    if spi is not None:
        doc["spi"] = spi
    channel = channel_from_dict(vector["frame_type"], vector["channel"])
    sa = SecurityAssociation.from_schema(doc, frame_type=vector["frame_type"], channel=channel)
    return sa, channel, vector


def _tc(plain: bytes, **counters: int) -> bytes:
    sa, channel, _ = _sender(TC_ID, **counters)
    return apply_security(TcFrame.build(channel, plain).pack(channel), channel, sa)


def _tm(plain: bytes, **counters: int) -> bytes:
    sa, channel, _ = _sender(TM_ID, **counters)
    room = channel.data_field_length - sa.security_header_length - sa.mac_length
    body = bytes(sa.security_header_length) + plain.ljust(room, b"\x00") + bytes(sa.mac_length)
    return apply_security(TmFrame.build(channel, body).pack(channel), channel, sa)


def _refecf(frame: bytes | bytearray) -> str:
    body = bytes(frame[:-2])
    return (body + crc16(body).to_bytes(2, "big")).hex()


# ------------------------------------------------------------------ captured vectors
def test_captured_cryptolib_frame_decrypts_to_the_vectors_plaintext() -> None:
    vid = "cryptolib/TC_PROCESS.GCM_IV_AND_ARSN#6"
    v = _vector(VECTORS / "cryptolib.json", vid)
    key = v["sa"]["key_hex"]
    proc = _run("--sa", "vectors/cryptolib.json", "--vector", vid, v["input_hex"])
    out = _clean(proc, key)
    assert proc.returncode == 0, proc.stderr
    assert "mac: valid" in out and "security: verified" in out
    assert f"decrypted: {v['expected_hex']}" in out
    assert "anti_replay: accepted" in out
    # the security header as the vector has it: SPI 9, IV and ARSN after the segment header
    assert "spi [6..7] = 9" in out and f"iv [8..19] = {v['input_hex'][16:40]}" in out
    assert "arsn [20..21] = 0124" in out


def test_captured_cryptolib_replay_gives_replay_verdict() -> None:
    vid = "cryptolib/TC_PROCESS.GCM_IV_AND_ARSN#3"  # expected_error AntiReplayFailure (IV replayed)
    v = _vector(VECTORS / "cryptolib.json", vid)
    proc = _run("--sa", "vectors/cryptolib.json", "--vector", vid, "--json", v["input_hex"])
    _clean(proc, v["sa"]["key_hex"])
    assert proc.returncode == 1
    (doc,) = _json(proc)
    assert doc["security"]["mac"] == "valid" and doc["security"]["anti_replay"] == "replay"
    assert doc["security"]["verified"] is False and "plaintext_hex" not in doc["security"]


def test_yamcs_vectors_whole_file_picks_the_sa_that_verifies() -> None:
    good = _vector(VECTORS / "yamcs_sdls.json", "yamcs/sdls-tm-aes256gcm/process-iv1")
    bad = _vector(VECTORS / "yamcs_sdls.json", "yamcs/sdls-tm-aes256gcm/mac-flipped")
    keys = _keys_of(VECTORS / "yamcs_sdls.json")
    proc = _run("--sa", "vectors/yamcs_sdls.json", "--json", good["input_hex"], bad["input_hex"])
    _clean(proc, *keys)
    assert proc.returncode == 1  # the flipped MAC fails
    first, second = _json(proc)
    assert first["security"]["verified"] and first["security"]["plaintext_hex"] == \
        good["expected_hex"]
    assert second["security"]["mac"] == "invalid" and not second["security"]["verified"]


# ------------------------------------------------------------------ sample SA file
def test_valid_frame_text_output() -> None:
    frame = _tc(b"hello, inspect")
    proc = _run("--sa", str(SAMPLE), frame.hex())
    out = _clean(proc)
    assert proc.returncode == 0, proc.stderr
    assert "mac: valid" in out and "security: verified" in out
    assert f"decrypted: {b'hello, inspect'.hex()}" in out
    assert "security_header [6..23]" in out and "security_trailer" in out
    assert "anti_replay: accepted" in out


@pytest.mark.parametrize("where", ["mac", "ciphertext"])
def test_one_flipped_bit_is_an_invalid_mac(where: str) -> None:
    frame = bytearray(_tc(b"flip me"))
    frame[-3 if where == "mac" else 24] ^= 0x01  # last MAC octet / first ciphertext octet
    proc = _run("--sa", str(SAMPLE), _refecf(frame))
    out = _clean(proc)
    assert proc.returncode == 1
    assert "mac: invalid" in out and "security: FAILED" in out and "decrypted:" not in out
    assert len(proc.stderr.strip().splitlines()) == 1


def test_unknown_spi_is_a_clear_verdict() -> None:
    frame = _tc(b"who am i", spi=5)
    proc = _run("--sa", str(SAMPLE), frame.hex())
    out = _clean(proc)
    assert proc.returncode == 1
    assert "unknown SPI 5" in out and "the SA file has SPI 1" in out


def test_replayed_arsn_below_window_and_outside_window() -> None:
    replayed = _tc(b"old", sn=-2)  # IV advances, ARSN two below the stored one
    ahead = _tc(b"far", sn=8 + 3)  # window 8
    proc = _run("--sa", str(SAMPLE), "--json", replayed.hex(), ahead.hex())
    _clean(proc)
    assert proc.returncode == 1
    first, second = _json(proc)
    assert first["security"]["mac"] == "valid" and first["security"]["anti_replay"] == "replay"
    assert first["verdicts"]["anti_replay"].startswith("replay (ARSN")
    assert second["security"]["anti_replay"] == "outside_window"
    unchecked = _run("--sa", str(SAMPLE), "--no-replay-check", replayed.hex())
    assert unchecked.returncode == 0 and "anti_replay: not checked" in _clean(unchecked)


def test_json_verdicts_for_authentication_only_tm() -> None:
    plain = b"telemetry, authenticated only"
    frame = _tm(plain)
    proc = _run("--sa", str(SAMPLE), "--json", frame.hex())
    _clean(proc)
    assert proc.returncode == 0, proc.stderr
    (doc,) = _json(proc)
    sec = doc["security"]
    assert sec["spi"] == 7 and sec["mac"] == "valid" and sec["anti_replay"] == "accepted"
    assert sec["verified"] is True and bytes.fromhex(sec["plaintext_hex"]).startswith(plain)
    assert doc["verdicts"]["mac"] == "valid" and doc["verdicts"]["security"] == "verified"
    (header,) = _find(doc["tree"], "security_header")
    assert header["offset"] == 6 and [c["name"] for c in header["children"]] == ["spi", "arsn"]
    (mac,) = _find(doc["tree"], "mac")
    assert mac["offset"] == 64 - 2 - 16 and mac["length"] == 16


def test_inspection_never_persists_state() -> None:
    before = hashlib.sha256(SAMPLE.read_bytes()).hexdigest()
    frame = _tc(b"same frame twice").hex()
    proc = _run("--sa", str(SAMPLE), "--json", frame, frame)
    _clean(proc)
    assert proc.returncode == 0  # judged twice against the file's state: accepted twice
    assert [d["security"]["anti_replay"] for d in _json(proc)] == ["accepted", "accepted"]
    assert hashlib.sha256(SAMPLE.read_bytes()).hexdigest() == before


def test_committed_sample_frames_verify() -> None:
    proc = _run("--sa", str(SAMPLE), str(SAMPLE.parent))
    out = _clean(proc)
    assert proc.returncode == 0, proc.stderr
    assert out.count("security: verified") == len(list(SAMPLE.parent.glob("*.hex"))) == 2


@pytest.mark.parametrize("args", [
    ["--sa", "does/not/exist.json", "00"],
    ["--sa", "README.md", "00"],
    ["--sa", str(SAMPLE), "--vector", "no-such-vector", "00"],
    ["--vector", TC_ID, "00"],
    ["--sa", str(SAMPLE), "zz-not-hex"],
])
def test_unusable_input_exits_2_with_one_line(args: list[str]) -> None:
    proc = _run(*args)
    _clean(proc)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("sdls-qkd:")


def test_link_config_toml_as_sa_file(tmp_path: Path) -> None:
    up, down = bytes(range(32)), bytes(range(32, 64))
    (tmp_path / "up.key").write_bytes(up)
    (tmp_path / "down.key").write_bytes(down)
    toml = tmp_path / "link.toml"
    toml.write_text('[link]\nscid = 44\n[link.tc]\nvcid = 0\nhas_segment_header = true\n'
                    '[link.tm]\nvcid = 1\nframe_length = 256\n'
                    '[[encryption]]\nspi = 1\nkeyFile = "up.key"\nlink = "tc"\nrekeySpi = 2\n'
                    '[[encryption]]\nspi = 3\nkeyFile = "down.key"\nlink = "tm"\nrekeySpi = 4\n')
    from sdls_qkd.link.config import load_config

    cfg = load_config(toml)
    frame = apply_security(TcFrame.build(cfg.tc, b"uplink").pack(cfg.tc), cfg.tc,
                           make_sa(1, cfg.tc, key=up, iv=1))
    proc = _run("--sa", str(toml), frame.hex())
    out = _clean(proc, up.hex(), down.hex())
    assert proc.returncode == 0, proc.stderr
    assert f"decrypted: {b'uplink'.hex()}" in out and "security: verified" in out


# ------------------------------------------------------------------ SDLS-EP PDUs
EP = VECTORS / "cryptolib_ep.json"


def _ep_vector(vid: str) -> dict[str, Any]:
    return next(v for v in json.loads(EP.read_text())["vectors"] if v["id"] == vid)


def _pdu_of(packet_hex: str) -> str:
    """The PDU of a CryptoLib EP packet (6-octet header, 4-octet PUS header), as its Length
    field delimits it."""
    pdu = bytes.fromhex(packet_hex)[10:]
    return pdu[:3 + int.from_bytes(pdu[1:3], "big") // 8].hex()


def _ep(pdu_hex: str) -> tuple[int, dict[str, Any]]:
    proc = _run("--type", "ep", "--json", pdu_hex)
    _clean(proc, *(k["key_hex"] for k in json.loads(EP.read_text())["cryptolib_key_ring"]))
    (doc,) = _json(proc)
    assert doc["kind"] == "EP"
    return proc.returncode, doc


def _values(tree: dict[str, Any], name: str) -> list[Any]:
    return [n.get("value") for n in _find(tree, name)]


def test_ep_otar() -> None:
    v = _ep_vector("EP_KEY_MGMT.OTAR_0_140_142_BAD_DECRYPT#1")  # test makes master key 127 Active
    rc, doc = _ep(_pdu_of(v["data_field_hex"]))
    assert rc == 0
    assert doc["tree"]["meaning"] == "OTAR command"
    assert _values(doc["tree"], "service_group") == [0] and _values(doc["tree"], "length") == [1088]
    assert _values(doc["tree"], "master_key_id") == [127]
    (blocks,) = _find(doc["tree"], "encrypted_key_blocks")
    assert blocks["meaning"].startswith("3 x") and blocks["length"] == 3 * 34  # keys 140..142
    assert _values(doc["tree"], "iv") == [v["data_field_hex"][30:54]]


def test_ep_key_activation() -> None:
    v = _ep_vector("EP_KEY_MGMT.ACTIVATE_141_142#1")
    captured = bytes.fromhex(v["data_field_hex"])[2 + 10:]  # after the extra SPI octets + headers
    rc, doc = _ep(captured[:7].hex())  # 02 0004 008d 008e: CryptoLib's Length field says 4 bits
    assert rc == 1 and doc["tree"]["meaning"].startswith("KEY_ACTIVATION command; malformed")
    assert "multiple of 8" in doc["error"]["message"] and doc["error"]["offset"] == 1
    fixed = "020020" + captured[3:7].hex()  # the same PDU with the Length in bits (32)
    rc, doc = _ep(fixed)
    assert rc == 0 and _values(doc["tree"], "key_id") == [141, 142]


def test_ep_key_verification_command_and_reply() -> None:
    v = _ep_vector("EP_KEY_MGMT.VERIFY_132_134#1")
    rc, doc = _ep(_pdu_of(v["data_field_hex"]))
    assert rc == 0 and doc["tree"]["meaning"] == "KEY_VERIFICATION command"
    assert _values(doc["tree"], "key_id") == [132, 134]
    assert _values(doc["tree"], "challenge")[0] == v["data_field_hex"][30:62]
    rc, doc = _ep(_pdu_of(v["reply_hex"]))
    assert rc == 0 and doc["tree"]["meaning"] == "KEY_VERIFICATION reply"
    assert _values(doc["tree"], "key_id") == [132, 134]
    assert [n["length"] for n in _find(doc["tree"], "encrypted_challenge")] == [16, 16]


def test_ep_sa_status_command_and_reply() -> None:
    v = _ep_vector("EP_SA_MGMT.SA_6_STATUS#1")
    rc, doc = _ep(_pdu_of(v["data_field_hex"]))
    assert rc == 0 and doc["tree"]["meaning"] == "SA_STATUS command"
    assert _values(doc["tree"], "spi") == [6]
    rc, doc = _ep(_pdu_of(v["reply_hex"]))
    assert rc == 0 and doc["tree"]["meaning"] == "SA_STATUS reply"
    (last,) = _find(doc["tree"], "last_procedure")
    assert last["value"] == 0x16 and last["meaning"] == "REKEY_SA: SA KEYED"  # notes: SA 6 Keyed


def test_space_packet_on_the_ep_apid_gets_its_pdu_dissected() -> None:
    v = _ep_vector("EP_KEY_MGMT.VERIFY_132_134#1")
    packet = bytes.fromhex(v["data_field_hex"])
    proc = _run("--type", "sp", "--json", packet.hex())
    assert proc.returncode == 0
    (doc,) = _json(proc)
    (pdu,) = _find(doc["tree"], "SDLS-EP PDU")
    assert pdu["offset"] == 10 and pdu["meaning"].startswith("KEY_VERIFICATION command")


def test_ep_pdu_inside_a_verified_tc_frame() -> None:
    vid = "cryptolib/EP_SA_MGMT.SA_6_STATUS#1"
    v = _vector(VECTORS / "cryptolib.json", vid)
    proc = _run("--sa", "vectors/cryptolib.json", "--vector", vid, "--json", v["input_hex"])
    assert proc.returncode == 0, proc.stderr
    (doc,) = _json(proc)
    assert doc["security"]["mac"] == "not_applicable"  # SPI 0 is a clear-mode EP SA
    (recovered,) = _find(doc["tree"], "decrypted_data_field")
    (pdu,) = _find(recovered, "SDLS-EP PDU")
    assert pdu["meaning"].startswith("SA_STATUS command") and _values(pdu, "spi") == [6]


# ------------------------------------------------------------------ library: never raises
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_inspect_secured_never_raises(data: st.DataObject) -> None:
    keys = load_key_file(str(SAMPLE))
    base = bytearray(data.draw(st.sampled_from([_TC_FRAME, _TM_FRAME, b"", b"\x00" * 9])))
    for _ in range(data.draw(st.integers(0, 4))):
        if base:
            base[data.draw(st.integers(0, len(base) - 1))] ^= data.draw(st.integers(1, 255))
    frame = bytes(base) + data.draw(st.binary(max_size=4))
    kind = data.draw(st.sampled_from([None, "TC", "TM", "AOS", "USLP", "SP", "EP"]))
    result = inspect_secured(frame, kind, keys)
    assert result.error is None or isinstance(result.error, SdlsQkdError)
    if result.security is not None and result.security.get("verified"):
        assert not result.failed


_TC_FRAME = _tc(b"fuzz base")
_TM_FRAME = _tm(b"fuzz base")
