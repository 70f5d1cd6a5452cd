"""Session-key derivation: RFC 5869 vectors, domain separation, one binding per QKD key."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdls_qkd.errors import KeyAlreadyUsed, UsageError
from sdls_qkd.keys.kdf import (
    LABEL,
    Direction,
    KdfHash,
    SessionContext,
    derive_session_key,
    hkdf,
    hkdf_expand,
    hkdf_extract,
)
from sdls_qkd.keys.material import QkdKey
from sdls_qkd.store.memory import MemoryStore
from sdls_qkd.store.sqlite import SqliteStore

# --------------------------------------------------------------------------- RFC 5869 Appendix A
# Literal inputs and outputs of RFC 5869 A.1-A.3 (HKDF-SHA-256).
RFC5869 = [
    pytest.param(
        bytes.fromhex("0b" * 22),
        bytes.fromhex("000102030405060708090a0b0c"),
        bytes.fromhex("f0f1f2f3f4f5f6f7f8f9"),
        42,
        "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5",
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
        "34007208d5b887185865",
        id="A.1-basic",
    ),
    pytest.param(
        bytes(range(0x00, 0x50)),
        bytes(range(0x60, 0xB0)),
        bytes(range(0xB0, 0x100)),
        82,
        "06a6b88c5853361a06104c9ceb35b45cef760014904671014a193f40c15fc244",
        "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c"
        "59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71"
        "cc30c58179ec3e87c14c01d5c1f3434f1d87",
        id="A.2-long",
    ),
    pytest.param(
        bytes.fromhex("0b" * 22),
        b"",
        b"",
        42,
        "19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04",
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d"
        "9d201395faa4b61a96c8",
        id="A.3-empty-salt-info",
    ),
]


@pytest.mark.parametrize(("ikm", "salt", "info", "length", "prk", "okm"), RFC5869)
def test_rfc5869_vectors(ikm: bytes, salt: bytes, info: bytes, length: int, prk: str, okm: str) -> None:
    assert hkdf_extract(salt, ikm).hex() == prk
    assert hkdf_expand(bytes.fromhex(prk), info, length).hex() == okm
    assert hkdf(ikm, salt=salt, info=info, length=length).hex() == okm


def test_rfc5869_absent_salt_is_hashlen_zeros() -> None:
    ikm = bytes.fromhex("0b" * 22)
    assert hkdf_extract(None, ikm) == hkdf_extract(bytes(32), ikm) == hkdf_extract(b"", ikm)


def _reference_hkdf(ikm: bytes, salt: bytes, info: bytes, length: int, name: str) -> bytes:
    """RFC 5869 written out with the standard library (independent of the code under test)."""
    size = hashlib.new(name).digest_size
    prk = hmac.new(salt or bytes(size), ikm, name).digest()
    out, block, i = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([i]), name).digest()
        out += block
        i += 1
    return out[:length]


@settings(max_examples=60, deadline=None)
@given(
    ikm=st.binary(min_size=1, max_size=80),
    salt=st.binary(max_size=80),
    info=st.binary(max_size=80),
    length=st.integers(1, 300),
    alg=st.sampled_from([KdfHash.SHA256, KdfHash.SHA512]),
)
def test_hkdf_matches_reference(ikm: bytes, salt: bytes, info: bytes, length: int, alg: KdfHash) -> None:
    name = {KdfHash.SHA256: "sha256", KdfHash.SHA512: "sha512"}[alg]
    assert hkdf(ikm, salt=salt, info=info, length=length, alg=alg) == _reference_hkdf(
        ikm, salt, info, length, name
    )


def test_hkdf_length_limits() -> None:
    with pytest.raises(UsageError, match="1..8160"):
        hkdf(b"k" * 32, salt=None, info=b"", length=255 * 32 + 1)
    with pytest.raises(UsageError):
        hkdf(b"k" * 32, salt=None, info=b"", length=0)
    assert len(hkdf(b"k" * 32, salt=None, info=b"", length=255 * 64, alg=KdfHash.SHA512)) == 16320


# --------------------------------------------------------------------------- contexts
def _key(material: bytes | None = None) -> QkdKey:
    return QkdKey(uuid.uuid4(), material or os.urandom(32), source="test")


def test_context_layout_is_fixed_width_big_endian() -> None:
    kid = uuid.UUID("00112233-4455-6677-8899-aabbccddeeff")
    info = SessionContext(spi=0x0102, direction=Direction.DOWNLINK, epoch=0x0A0B0C0D, key_id=kid).encode(32)
    assert info == (
        b"sdls-qkd/v1\x00"
        + bytes([0x01])  # SHA-256
        + bytes([0x00, 0x20])  # 32 octets
        + bytes([0x01, 0x02])  # SPI
        + bytes([0x02])  # downlink
        + bytes([0x0A, 0x0B, 0x0C, 0x0D])  # epoch
        + bytes.fromhex("00112233445566778899aabbccddeeff")
    )
    assert info.startswith(LABEL)


contexts = st.builds(
    SessionContext,
    spi=st.integers(0, 0xFFFF),
    direction=st.sampled_from(list(Direction)),
    epoch=st.integers(0, 0xFFFF_FFFF),
    key_id=st.uuids(),
)


@settings(max_examples=100, deadline=None)
@given(a=contexts, b=contexts, la=st.sampled_from([16, 32, 64]), lb=st.sampled_from([16, 32, 64]))
def test_context_encoding_is_injective(a: SessionContext, b: SessionContext, la: int, lb: int) -> None:
    assert (a.encode(la) == b.encode(lb)) == (a == b and la == lb)
    assert len(a.encode(la)) == len(LABEL) + 1 + 26


def test_derived_key_is_hkdf_over_context() -> None:
    key = _key()
    ctx = SessionContext(spi=7, direction=Direction.UPLINK, epoch=3, key_id=key.key_id)
    derived = derive_session_key(key, ctx, MemoryStore(), length=32)
    expected = _reference_hkdf(key.material, b"", ctx.encode(32), 32, "sha256")
    assert derived.material == expected
    assert derived.material not in repr(derived).encode() and key.material.hex() not in repr(derived)


def test_domain_separation_every_field_changes_the_key() -> None:
    """Uplink/downlink, SPI, epoch, length and hash each give unrelated keys from one QKD key.

    Each derivation uses a fresh store (a real deployment binds a QKD key once; here we
    compare what the same material would give under different contexts).
    """
    key = _key()
    base = SessionContext(spi=5, direction=Direction.UPLINK, epoch=0, key_id=key.key_id)
    variants = [
        (base, 32, KdfHash.SHA256),
        (dataclasses.replace(base, direction=Direction.DOWNLINK), 32, KdfHash.SHA256),
        (dataclasses.replace(base, spi=6), 32, KdfHash.SHA256),
        (dataclasses.replace(base, epoch=1), 32, KdfHash.SHA256),
        (base, 16, KdfHash.SHA256),
        (base, 32, KdfHash.SHA512),
    ]
    outputs = [
        derive_session_key(key, ctx, MemoryStore(), length=n, alg=alg).material
        for ctx, n, alg in variants
    ]
    prefixes = {o[:16] for o in outputs}
    assert len(prefixes) == len(outputs), "two contexts gave related keys"
    # the uplink and downlink keys share no octet position pattern (not one XOR the other etc.)
    up, down = outputs[0], outputs[1]
    assert up != down and bytes(a ^ b for a, b in zip(up, down, strict=True)) != bytes(32)


def test_a_qkd_key_binds_to_one_context_only() -> None:
    store = MemoryStore()
    key = _key()
    up = SessionContext(spi=1, direction=Direction.UPLINK, epoch=0, key_id=key.key_id)
    down = SessionContext(spi=1, direction=Direction.DOWNLINK, epoch=0, key_id=key.key_id)
    derive_session_key(key, up, store)
    assert store.binding(key.key_id) == up.encode(32)
    with pytest.raises(KeyAlreadyUsed):
        derive_session_key(key, down, store)  # uplink and downlink never share a QKD key
    with pytest.raises(KeyAlreadyUsed):
        derive_session_key(key, up, store)  # not even the same context twice
    assert store.binding(key.key_id) == up.encode(32)


def test_binding_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    key = _key()
    ctx = SessionContext(spi=9, direction=Direction.DOWNLINK, epoch=2, key_id=key.key_id)
    with SqliteStore(path, end_id="space") as store:
        derive_session_key(key, ctx, store)
    with SqliteStore(path, end_id="space") as store:
        assert store.binding(key.key_id) == ctx.encode(32)
        with pytest.raises(KeyAlreadyUsed):
            derive_session_key(key, ctx, store)


def test_refused_derivations_bind_nothing() -> None:
    store = MemoryStore()
    key = _key()
    ctx = SessionContext(spi=1, direction=Direction.UPLINK, epoch=0, key_id=key.key_id)
    with pytest.raises(UsageError):
        derive_session_key(key, ctx, store, length=255 * 32 + 1)
    other = SessionContext(spi=1, direction=Direction.UPLINK, epoch=0, key_id=uuid.uuid4())
    with pytest.raises(UsageError, match="context names key"):
        derive_session_key(key, other, store)
    assert store.binding(key.key_id) is None
    derive_session_key(key, ctx, store)  # still bindable


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(spi=0x10000, direction=1, epoch=0),
        dict(spi=-1, direction=1, epoch=0),
        dict(spi=1, direction=1, epoch=1 << 32),
        dict(spi=1, direction=3, epoch=0),
    ],
)
def test_context_fields_are_range_checked(kwargs: dict[str, int]) -> None:
    with pytest.raises(UsageError):
        SessionContext(key_id=uuid.uuid4(), **kwargs)  # type: ignore[arg-type]
