"""Cipher suites against published known-answer values (NIST / RFC), never our own output."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from sdls_qkd.errors import (
    InvalidConfiguration,
    MacVerificationFailure,
    PaddingError,
    UnsupportedAlgorithm,
)
from sdls_qkd.security.suites import CIPHERS, MAC_ALGORITHMS, Suite, build_suite

H = bytes.fromhex
#: SP 800-38A / 800-38B AES-256 example key
K256 = H("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4")


def suite(**kw: object) -> Suite:
    args: dict[str, object] = dict(encrypt=False, authenticate=False, cipher=None,
                                   mac_algorithm=None, enc_key=None, auth_key=None, mac_length=16)
    args.update(kw)
    return build_suite(**args)  # type: ignore[arg-type]


def test_aes256_gcm_mcgrew_viega_test_case_14() -> None:
    """GCM spec (McGrew & Viega) test case 14: K = 0^256, IV = 0^96, P = 0^128."""
    s = suite(encrypt=True, authenticate=True, cipher="AES-256-GCM", enc_key=bytes(32))
    assert s.aead is not None
    out = s.aead.seal(bytes(12), b"", bytes(16))
    assert out == H("cea7403d4d606b6e074ec5d3baf39d18" "d0d1c8a799996bf0265b98b5d48ab919")
    assert s.aead.open(bytes(12), b"", out) == bytes(16)


def test_aes256_gcm_test_case_13_empty_plaintext_tag() -> None:
    s = suite(encrypt=True, authenticate=True, cipher="AES-256-GCM", enc_key=bytes(32))
    assert s.aead is not None
    assert s.aead.seal(bytes(12), b"", b"") == H("530f8afbc74536b9a963b4f1c4cb738b")


def test_gcm_truncated_mac_keeps_most_significant_octets_and_verifies() -> None:
    s = suite(encrypt=True, authenticate=True, cipher="AES-256-GCM", enc_key=bytes(32),
              mac_length=8)
    assert s.aead is not None
    out = s.aead.seal(bytes(12), b"", bytes(16))
    assert out == H("cea7403d4d606b6e074ec5d3baf39d18" "d0d1c8a799996bf0")
    assert s.aead.open(bytes(12), b"", out) == bytes(16)
    bad = out[:-1] + bytes([out[-1] ^ 1])
    with pytest.raises(MacVerificationFailure):
        s.aead.open(bytes(12), b"", bad)


def test_aes256_gcm_siv_rfc8452_appendix_c2() -> None:
    """RFC 8452 C.2, AES-256-GCM-SIV: key 01 00.., nonce 03 00.., plaintext 01 00 00.. (8)."""
    key = H("01" + "00" * 31)
    s = suite(encrypt=True, authenticate=True, cipher="AES-256-GCM-SIV", enc_key=key)
    assert s.aead is not None
    nonce = H("03" + "00" * 11)
    assert s.aead.seal(nonce, b"", b"") == H("07f5f4169bbf55a8400cd47ea6fd400f")
    out = s.aead.seal(nonce, b"", H("0100000000000000"))
    assert out == H("c2ef328e5c71c83b843122130f7364b761e0b97427e3df28")
    assert s.aead.open(nonce, b"", out) == H("0100000000000000")
    with pytest.raises(MacVerificationFailure):
        s.aead.open(nonce, b"\x01", out)


def test_aes256_cmac_sp800_38b_examples() -> None:
    s = suite(authenticate=True, mac_algorithm="AES-256-CMAC", auth_key=K256)
    assert s.mac is not None
    assert s.mac.compute(b"", b"") == H("028962f61b7bf89efc6b551f4667d983")
    assert s.mac.compute(b"", H("6bc1bee22e409f96e93d7e117393172a")) == \
        H("28a7023f452e8f82bd4bf28d8c37c35c")


@pytest.mark.parametrize(("name", "expected"), [
    ("HMAC-SHA-256", "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    ("HMAC-SHA-384", "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e"
                     "8e2240ca5e69e2c78b3239ecfab21649"),
    ("HMAC-SHA-512", "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
                     "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"),
])
def test_hmac_rfc4231_case_2_truncated_to_mac_length(name: str, expected: str) -> None:
    full = H(expected)
    for length in (16, len(full)):
        s = suite(authenticate=True, mac_algorithm=name, auth_key=b"Jefe", mac_length=length)
        assert s.mac is not None
        assert s.mac.compute(b"", b"what do ya want for nothing?") == full[:length]


def test_aes256_cbc_sp800_38a_f25() -> None:
    s = suite(encrypt=True, cipher="AES-256-CBC", enc_key=K256)
    assert s.cipher is not None and s.block_size == 16
    iv = H("000102030405060708090a0b0c0d0e0f")
    pt = H("6bc1bee22e409f96e93d7e117393172a" "ae2d8a571e03ac9c9eb76fac45af8e51")
    ct = s.cipher.encrypt(iv, pt)
    assert ct == H("f58c4c04d6e5f1ba779eabfb5f7bfbd6" "9cfc4e967edb808d679f777bc6702c7d")
    assert s.cipher.decrypt(iv, ct) == pt
    with pytest.raises(PaddingError):
        s.cipher.encrypt(iv, pt[:-1])
    with pytest.raises(PaddingError):
        s.cipher.decrypt(iv, ct[:-1])


def test_cbc_short_iv_is_zero_extended_like_libgcrypt() -> None:
    s = suite(encrypt=True, cipher="AES-256-CBC", enc_key=K256)
    assert s.cipher is not None
    iv12 = H("000102030405060708090a0b")
    ref = Cipher(algorithms.AES(K256), modes.CBC(iv12 + bytes(4))).encryptor()
    assert s.cipher.encrypt(iv12, bytes(16)) == ref.update(bytes(16)) + ref.finalize()


def test_gmac_is_gcm_tag_over_aad_only() -> None:
    """GMAC = GCM with empty plaintext; checked against the streaming GCM API."""
    key = bytes(range(32))
    s = suite(authenticate=True, cipher="AES-256-GCM", enc_key=key)
    assert s.mac is not None and s.mac.needs_iv and s.counter_iv
    enc = Cipher(algorithms.AES(key), modes.GCM(bytes(12))).encryptor()
    enc.authenticate_additional_data(b"authenticated payload")
    enc.finalize()
    assert s.mac.compute(bytes(12), b"authenticated payload") == enc.tag


def test_gcm_keystream_encryption_only_is_ctr_from_j0_plus_1() -> None:
    """CryptoLib's encryption-only GCM: ciphertext = AES-CTR starting at counter block 2."""
    key = bytes(range(32))
    iv = bytes(range(12))
    s = suite(encrypt=True, cipher="AES-256-GCM", enc_key=key)
    assert s.cipher is not None and not s.authenticates
    ctr = Cipher(algorithms.AES(key), modes.CTR(iv + b"\x00\x00\x00\x02")).encryptor()
    pt = bytes(range(40))
    assert s.cipher.encrypt(iv, pt) == ctr.update(pt)
    assert s.cipher.decrypt(iv, s.cipher.encrypt(iv, pt)) == pt


def test_encrypt_then_mac_suite() -> None:
    s = suite(encrypt=True, authenticate=True, cipher="AES-256-CBC",
              mac_algorithm="HMAC-SHA-256", enc_key=K256, auth_key=b"k" * 32)
    assert s.cipher is not None and s.mac is not None and s.aead is None
    assert s.mac.compute(b"", b"x") == hmac.new(b"k" * 32, b"x", hashlib.sha256).digest()[:16]


def test_clear_suite() -> None:
    s = suite()
    assert not s.encrypts and not s.authenticates and s.mac_length == 0
    assert repr(s) == "Suite(clear)"


@pytest.mark.parametrize(("kw", "error"), [
    (dict(encrypt=True), InvalidConfiguration),  # no cipher
    (dict(encrypt=True, cipher="AES-256-GCM"), InvalidConfiguration),  # no key
    (dict(encrypt=True, cipher="AES-256-GCM", enc_key=bytes(16)), InvalidConfiguration),
    (dict(encrypt=True, cipher="AES-512-GCM", enc_key=bytes(32)), UnsupportedAlgorithm),
    (dict(authenticate=True, mac_algorithm="MD5", auth_key=b"k"), UnsupportedAlgorithm),
    (dict(authenticate=True), InvalidConfiguration),  # no MAC algorithm, no GCM
    (dict(authenticate=True, cipher="AES-256-CBC", enc_key=K256), InvalidConfiguration),
    (dict(encrypt=True, authenticate=True, cipher="AES-256-CBC", enc_key=K256),
     InvalidConfiguration),  # CBC alone does not authenticate
    (dict(authenticate=True, mac_algorithm="AES-256-CMAC", auth_key=K256, mac_length=0),
     InvalidConfiguration),
    (dict(authenticate=True, mac_algorithm="AES-256-CMAC", auth_key=K256, mac_length=17),
     InvalidConfiguration),
    (dict(encrypt=True, authenticate=True, cipher="AES-256-GCM", enc_key=bytes(32),
          mac_length=3), InvalidConfiguration),
    (dict(encrypt=True, authenticate=True, cipher="AES-256-GCM-SIV", enc_key=bytes(32),
          mac_length=12), InvalidConfiguration),
    (dict(encrypt=True, cipher="AES-256-GCM-SIV", enc_key=bytes(32)), UnsupportedAlgorithm),
])
def test_build_suite_rejects_what_cannot_work(kw: dict[str, object],
                                              error: type[Exception]) -> None:
    with pytest.raises(error):
        suite(**kw)


def test_registries_name_schema_algorithms() -> None:
    assert set(CIPHERS) == {"AES-128-GCM", "AES-256-GCM", "AES-256-CBC", "AES-256-GCM-SIV"}
    assert set(MAC_ALGORITHMS) == {"AES-256-CMAC", "HMAC-SHA-256", "HMAC-SHA-384",
                                   "HMAC-SHA-512"}


def test_aead_wins_over_mac_algorithm_when_both_services() -> None:
    s = suite(encrypt=True, authenticate=True, cipher="AES-128-GCM",
              mac_algorithm="HMAC-SHA-512", enc_key=bytes(16))
    assert s.aead is not None and s.mac is None
    assert "AES-128-GCM" in repr(s) and "00" not in repr(s)
