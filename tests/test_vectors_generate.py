"""`sdls-qkd vectors generate`: determinism, coverage of the matrix, the committed file, and an
independent recomputation of every positive vector with ``cryptography`` and ``crcmod``.

The recomputation below does not use the engine, the suites, the layouts or the library's CRC:
it reads the vector's fields (channel, SA lengths, keys, mask) and redoes the cryptography and
the FECF from the standards' rules, so generation is not validated by itself.
"""

from __future__ import annotations

import hmac
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import crcmod
import crcmod.predefined
import pytest
from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, AESGCMSIV

from sdls_qkd.vectors_generate import (
    FRAME_KINDS,
    NEGATIVES,
    OPTION_COUNTS,
    PRESETS,
    SUITES,
    generate_text,
    generate_vectors,
)

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ROOT / "vectors" / "generated.json"
SUMMARY = re.compile(r"^(\d+) passed, (\d+) failed, (\d+) skipped$")

CRC16 = crcmod.predefined.mkCrcFun("crc-ccitt-false")  # poly 1021, init FFFF, no xor-out
#: USLP 32-bit FECF (732.1-B): x^32 + x^23 + x^21 + x^11 + x^2 + 1, register 0, no reflection
CRC32 = crcmod.mkCrcFun((1 << 32) | (1 << 23) | (1 << 21) | (1 << 11) | (1 << 2) | 1, initCrc=0,
                        rev=False, xorOut=0)


def _cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "sdls_qkd.cli", *args], cwd=cwd,
                          capture_output=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def committed() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(GENERATED.read_text())
    return doc


# =========================================================================== commands
def test_generate_is_byte_identical_across_runs(tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    first = _cli("vectors", "generate", "--seed", "42", "--out", str(a))
    second = _cli("vectors", "generate", "--seed", "42", "--out", str(b))
    to_stdout = _cli("vectors", "generate", "--seed", "42")
    for proc in (first, second, to_stdout):
        assert proc.returncode == 0, proc.stderr.decode()
    assert a.read_bytes() == b.read_bytes() == to_stdout.stdout
    count = len(json.loads(a.read_text())["vectors"])
    assert first.stderr.decode().strip() == f"wrote {count} vectors to {a}"
    assert count > 1000
    other = _cli("vectors", "generate", "--seed", "43")
    assert other.returncode == 0 and other.stdout != to_stdout.stdout


def test_generated_file_passes_check_as_a_subprocess(tmp_path: Path) -> None:
    out = tmp_path / "gen.json"
    assert _cli("vectors", "generate", "--seed", "9", "--frame-kind", "AOS", "--frame-kind",
                "USLP-variable", "--out", str(out)).returncode == 0
    proc = _cli("vectors", "check", str(out))
    assert proc.returncode == 0, proc.stdout.decode()[-2000:]
    lines = proc.stdout.decode().splitlines()
    n = len(json.loads(out.read_text())["vectors"])
    assert lines[-1] == f"{n} passed, 0 failed, 0 skipped"
    assert all(line.startswith("PASS gen-9/") for line in lines[:-1])
    assert {line.split("/")[1] for line in lines[:-1]} == {"AOS", "USLP-variable"}


def test_committed_file_passes_check(committed: dict[str, Any]) -> None:
    proc = _cli("vectors", "check", "-q", str(GENERATED))
    out = proc.stdout.decode()
    assert proc.returncode == 0, out[-3000:]
    match = SUMMARY.match(out.splitlines()[-1])
    assert match is not None
    assert match.groups() == (str(len(committed["vectors"])), "0", "0")


def test_committed_file_is_what_its_seed_generates(committed: dict[str, Any]) -> None:
    seed = int(re.search(r"--seed (\d+)", committed["provenance"]["how"]).group(1))  # type: ignore[union-attr]
    assert generate_text(seed) == GENERATED.read_text(), \
        f"regenerate: sdls-qkd vectors generate --seed {seed} --out vectors/generated.json"


def test_bad_filter_is_a_clean_error() -> None:
    proc = _cli("vectors", "generate", "--suite", "ROT13")
    assert proc.returncode == 2 and b"invalid choice" in proc.stderr


# =========================================================================== coverage
def test_matrix_is_complete(committed: dict[str, Any]) -> None:
    ids = {v["id"] for v in committed["vectors"]}
    for kind in FRAME_KINDS:
        for suite in SUITES:
            for preset in PRESETS:
                for op in ("apply", "process"):
                    assert f"gen-1/{kind}/{suite.name}/{preset}/{op}" in ids
    kinds = {i.rsplit("/", 1)[1].removeprefix("process-") for i in ids}
    assert set(NEGATIVES) <= kinds
    errors = {v["expected_error"] for v in committed["vectors"]} - {None}
    assert errors == {"MacVerificationFailure", "AntiReplayFailure", "InvalidSpi", "FecfError",
                      "InvalidFrameLength"}


def _options(vector: dict[str, Any]) -> tuple[Any, ...]:
    ch = vector["channel"]
    kind = vector["id"].split("/")[1]
    if kind == "TC":
        return ch["has_fecf"], ch["has_segment_header"]
    if kind == "TM":
        return ch["has_fecf"], ch["has_ocf"], ch["secondary_header_length"]
    if kind == "AOS":
        return ch["has_fecf"], ch["has_ocf"], ch["insert_zone_length"], ch["has_fhec"]
    return ch["has_fecf"] and ch["fecf_length"], ch["has_ocf"], ch["insert_zone_length"]


def test_every_channel_option_combination_appears(committed: dict[str, Any]) -> None:
    seen: dict[str, set[tuple[Any, ...]]] = {k: set() for k in FRAME_KINDS}
    for vector in committed["vectors"]:
        seen[vector["id"].split("/")[1]].add(_options(vector))
    for kind, combos in seen.items():
        assert len(combos) == OPTION_COUNTS[kind], kind
    fixed = [v for v in committed["vectors"] if "/USLP-fixed/" in v["id"]]
    variable = [v for v in committed["vectors"] if "/USLP-variable/" in v["id"]]
    assert all(v["channel"]["frame_length"] for v in fixed)
    assert all(v["channel"]["frame_length"] is None for v in variable)


def test_filters_select_a_consistent_subset() -> None:
    subset = generate_vectors(1, frame_kinds=["TM"], suites=["GMAC"], presets=["custom"])
    full = {v["id"]: v for v in generate_vectors(1)}
    assert subset and all(v == full[v["id"]] for v in subset)


# =========================================================================== independent recomputation
def _lengths(vector: dict[str, Any]) -> tuple[int, int, int]:
    """(header, OCF, FECF) octets from the channel object and the standards' layouts."""
    ch, ft = vector["channel"], vector["frame_type"]
    fecf = ch["fecf_length"] if ch["has_fecf"] else 0
    if ft == "TC":
        return 5 + (1 if ch["has_segment_header"] else 0), 0, fecf
    ocf = 4 if ch.get("has_ocf") else 0
    if ft == "TM":
        return 6 + ch["secondary_header_length"], ocf, fecf
    if ft == "AOS":
        return 6 + (2 if ch["has_fhec"] else 0) + ch["insert_zone_length"], ocf, fecf
    return 7 + ch["vc_frame_count_length"] + ch["insert_zone_length"], ocf, fecf


def _mask(sa: dict[str, Any], ch: dict[str, Any]) -> bytes:
    if sa.get("abm_fill") is not None:
        return bytes.fromhex(sa["abm_fill"]) * (ch.get("frame_length") or ch["max_frame_length"])
    return bytes.fromhex(sa["abm_hex"])


def _masked(data: bytes, mask: bytes) -> bytes:
    mask = mask[:len(data)].ljust(len(data), b"\x00")
    return bytes(a & b for a, b in zip(data, mask, strict=True))


def _fecf_ok(frame: bytes, fecf: int) -> bool:
    if not fecf:
        return True
    crc = CRC16 if fecf == 2 else CRC32
    return crc(frame[:-fecf]).to_bytes(fecf, "big") == frame[-fecf:]


def _mac(sa: dict[str, Any], iv: bytes, message: bytes) -> bytes:
    key = bytes.fromhex(sa.get("auth_key_hex") or sa["key_hex"])
    alg = sa["mac_algorithm"]
    if alg == "AES-256-CMAC":
        c = cmac.CMAC(algorithms.AES(key))
        c.update(message)
        return c.finalize()[:sa["mac_length"]]
    if alg is not None:
        digest = {"HMAC-SHA-256": "sha256", "HMAC-SHA-384": "sha384",
                  "HMAC-SHA-512": "sha512"}[alg]
        return hmac.digest(key, message, digest)[:sa["mac_length"]]
    return AESGCM(key).encrypt(iv, b"", message)[:sa["mac_length"]]  # GMAC


class _Layout:
    """Offsets of one protected frame, from the vector's own fields."""

    def __init__(self, vector: dict[str, Any], frame: bytes) -> None:
        sa = vector["sa"]
        self.hdr, self.ocf, self.fecf = _lengths(vector)
        self.spi = self.hdr
        self.iv_off = self.hdr + 2
        self.sn_off = self.iv_off + sa["transmitted_iv_length"]
        self.pl_off = self.sn_off + sa["transmitted_sn_length"]
        self.data_off = self.pl_off + sa["pad_length_field_length"]
        self.mac_len = sa["mac_length"]
        self.data_end = len(frame) - self.fecf - self.ocf - self.mac_len


def _full_iv(vector: dict[str, Any], frame: bytes, lay: _Layout) -> bytes:
    """The IV of a frame: the sent octets completed from the SA (apply: the SA's own IV)."""
    sa = vector["sa"]
    if vector["operation"] == "apply":
        return bytes.fromhex(sa["iv_hex"])
    sent = frame[lay.iv_off:lay.sn_off]
    stored = int(sa["iv_hex"] or "0", 16)
    n, t = sa["iv_length"], len(sent)
    if t == n:
        return sent
    modulus = 1 << (8 * t)  # smallest value above the stored one ending in the sent octets
    value = (stored & ~(modulus - 1)) | int.from_bytes(sent, "big")
    if value <= stored:
        value += modulus
    return value.to_bytes(n, "big")


def _open(vector: dict[str, Any], frame: bytes) -> bytes:
    """Verify and decrypt a protected frame independently; returns the recovered data."""
    sa = vector["sa"]
    lay = _Layout(vector, frame)
    mask = _mask(sa, vector["channel"])
    assert int.from_bytes(frame[lay.spi:lay.spi + 2], "big") == sa["spi"]
    assert _fecf_ok(frame, lay.fecf)
    iv = _full_iv(vector, frame, lay) if sa["iv_length"] else b""
    cipher = sa["cipher"]
    key = bytes.fromhex(sa["key_hex"])
    if sa["encrypt"] and sa["authenticate"] and cipher and "GCM" in cipher:
        aad = _masked(frame[:lay.data_off], mask)
        body = frame[lay.data_off:lay.data_end + lay.mac_len]
        aead = AESGCMSIV(key) if cipher.endswith("SIV") else AESGCM(key)
        if lay.mac_len == 16:
            return aead.decrypt(iv, body, aad)
        # truncated GCM tag: decrypt with the key stream, then recompute the tag and compare
        ct = body[:-lay.mac_len]
        plain = _gcm_decrypt(key, iv, ct)
        assert AESGCM(key).encrypt(iv, plain, aad)[:len(ct) + lay.mac_len] == body
        return plain
    data = frame[lay.data_off:lay.data_end]
    if sa["authenticate"]:
        expected = _mac(sa, iv, _masked(frame[:lay.data_end], mask))
        assert hmac.compare_digest(expected, frame[lay.data_end:lay.data_end + lay.mac_len])
    if sa["encrypt"]:
        assert cipher == "AES-256-CBC"
        dec = Cipher(algorithms.AES(key), modes.CBC(iv.ljust(16, b"\x00"))).decryptor()
        data = dec.update(data) + dec.finalize()
        pad = int.from_bytes(frame[lay.pl_off:lay.data_off], "big")
        data = data[:len(data) - pad]
    return data


def _gcm_decrypt(key: bytes, iv: bytes, ct: bytes) -> bytes:
    """GCM key stream for a non-96-bit IV: encrypting zeros gives it (J0 derived by GHASH)."""
    stream = AESGCM(key).encrypt(iv, bytes(len(ct)), None)[:len(ct)]
    return bytes(a ^ b for a, b in zip(ct, stream, strict=True))


def _plaintext_of_apply_input(vector: dict[str, Any], lay: _Layout) -> bytes:
    frame = bytes.fromhex(vector["input_hex"])
    if vector["channel"].get("frame_length") is None:  # TC, variable USLP: everything after hdr
        return frame[lay.hdr:len(frame) - lay.fecf - lay.ocf]
    return frame[lay.data_off:len(frame) - lay.fecf - lay.ocf - lay.mac_len]


def _positive(committed: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for v in committed["vectors"] if v["expected_error"] is None]


def test_every_positive_vector_recomputed_independently(committed: dict[str, Any]) -> None:
    checked = {"apply": 0, "process": 0}
    suites_seen: set[str] = set()
    for vector in _positive(committed):
        if vector["operation"] == "process":
            frame = bytes.fromhex(vector["input_hex"])
            assert _open(vector, frame) == bytes.fromhex(vector["expected_hex"]), vector["id"]
        else:
            out = bytes.fromhex(vector["expected_hex"])
            lay = _Layout(vector, out)
            recovered = _open(vector, out)
            plain = _plaintext_of_apply_input(vector, lay)
            pad = len(recovered) - len(plain)
            assert recovered[:len(plain)] == plain, vector["id"]
            if vector["sa"]["pad_length_field_length"]:
                assert pad >= 0  # CBC pads variable frames to the block
            else:
                assert pad == 0, vector["id"]
            # header octets before the security header are the input's (length field aside)
            inp = bytes.fromhex(vector["input_hex"])
            skip = {2, 3} if vector["frame_type"] == "TC" else \
                {4, 5} if vector["frame_type"] == "USLP" else set()
            assert all(out[i] == inp[i] for i in range(lay.hdr) if i not in skip)
            if skip:
                field = int.from_bytes(out[min(skip):max(skip) + 1], "big") & \
                    (0x3FF if vector["frame_type"] == "TC" else 0xFFFF)
                assert field == len(out) - 1
            # IV and SN fields carry the SA's least significant octets
            sa = vector["sa"]
            iv, sn = bytes.fromhex(sa["iv_hex"]), bytes.fromhex(sa["sn_hex"])
            tiv, tsn = sa["transmitted_iv_length"], sa["transmitted_sn_length"]
            assert out[lay.iv_off:lay.sn_off] == iv[len(iv) - tiv:]
            assert out[lay.sn_off:lay.pl_off] == sn[len(sn) - tsn:]
        checked[vector["operation"]] += 1
        suites_seen.add(vector["id"].split("/")[2])
    assert checked == {"apply": 135, "process": 135}
    assert suites_seen == {s.name for s in SUITES}


def test_apply_counters_advance_by_one(committed: dict[str, Any]) -> None:
    """apply: the SA's IV and (checked) SN are used for the frame, then advance by one."""
    for vector in _positive(committed):
        sa, after = vector["sa"], vector["sa_after"]
        if vector["operation"] == "apply":
            for key, length in (("iv_hex", "iv_length"), ("sn_hex", "sn_length")):
                if sa[length] and (key == "iv_hex" or sa["transmitted_sn_length"]):
                    assert int(after[key], 16) == int(sa[key], 16) + 1, vector["id"]


def test_negative_vectors_are_one_change_away_from_the_positive(committed: dict[str, Any]) \
        -> None:
    by_id = {v["id"]: v for v in committed["vectors"]}
    for vector in committed["vectors"]:
        vid = vector["id"]
        if "/process-" not in vid:
            continue
        base = by_id[vid.rsplit("/", 1)[0] + "/process"]
        good = bytes.fromhex(base["input_hex"])
        bad = bytes.fromhex(vector["input_hex"])
        hdr, ocf, fecf = _lengths(vector)
        kind = vid.split("/process-")[1]
        assert vector["sa_after"] == {"iv_hex": vector["sa"]["iv_hex"],
                                      "sn_hex": vector["sa"]["sn_hex"]}
        diff = [i for i, (a, b) in enumerate(zip(good, bad, strict=False)) if a != b]
        body = len(good) - fecf
        if kind == "bad_mac":
            assert [i for i in diff if i < body] == [body - ocf - 1] and _fecf_ok(bad, fecf)
        elif kind == "wrong_spi":
            assert [i for i in diff if i < body] == [hdr + 1] and _fecf_ok(bad, fecf)
        elif kind == "bad_fecf":
            assert diff == [len(good) - 1] and not _fecf_ok(bad, fecf)
        elif kind == "truncated":
            assert len(bad) < len(good) and good.startswith(bad)
        elif kind == "length_field_lies":
            assert vector["frame_type"] in ("TC", "USLP") and _fecf_ok(bad, fecf)
            field = int.from_bytes(bad[2:4], "big") & 0x3FF if vector["frame_type"] == "TC" \
                else int.from_bytes(bad[4:6], "big")
            assert field == len(bad)  # one more octet than given
        elif kind in ("replay", "outside_window"):
            assert bad == good
            assert vector["expected_error"] == "AntiReplayFailure"
            window = vector["sa"]["window"]
            for key in ("iv_hex", "sn_hex"):
                stored, before = vector["sa"][key], base["sa"][key]
                if stored != before:
                    delta = int(base["sa_after"][key], 16) - int(stored, 16)
                    assert delta == (0 if kind == "replay" else window + 1), vid
        else:
            raise AssertionError(vid)
