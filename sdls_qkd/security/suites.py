"""Cryptographic suites (CCSDS 352.0-B-2 algorithms), all through ``cryptography``.

Three small primitive interfaces, one object per algorithm:

* :class:`Aead` — authenticated encryption (AES-GCM, AES-GCM-SIV): ``seal(iv, aad, plaintext)``
  returns ciphertext || MAC; ``open(iv, aad, body)`` takes ciphertext || MAC.
* :class:`DataCipher` — encryption only (AES-CBC with padding; the GCM key stream with no tag, as
  CryptoLib does for an encryption-only GCM SA).
* :class:`Mac` — authentication only (AES-CMAC, HMAC-SHA-2, GMAC).

A :class:`Suite` bundles what one SA runs: an AEAD, or a cipher and/or a MAC (encrypt-then-MAC),
or nothing (clear mode).  :func:`build_suite` picks them from the SA's service type and algorithm
names through the registries :data:`CIPHERS` and :data:`MAC_ALGORITHMS`: adding an algorithm is
one entry there.  MACs longer than the SA's MAC field keep their most significant octets; received
MACs are compared in constant time (``hmac.compare_digest``) or by the AEAD's own check.
"""

from __future__ import annotations

import hmac as _hmac
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, AESGCMSIV

from sdls_qkd.errors import (
    InvalidConfiguration,
    MacVerificationFailure,
    PaddingError,
    UnsupportedAlgorithm,
)

__all__ = [
    "CIPHERS",
    "MAC_ALGORITHMS",
    "Aead",
    "CipherSpec",
    "DataCipher",
    "Mac",
    "MacSpec",
    "Suite",
    "build_suite",
]

AES_BLOCK: Final = 16


class Aead(Protocol):
    """Authenticated encryption with associated data."""

    name: str
    mac_length: int
    #: the ``cryptography`` AEAD object (``encrypt``/``decrypt`` with the full 16-octet tag,
    #: raising ``InvalidTag``): the engine's fast path calls it directly
    native: Any

    def seal(self, iv: bytes, aad: bytes, plaintext: bytes) -> bytes:
        """Ciphertext followed by the (truncated) MAC."""
        ...

    def open(self, iv: bytes, aad: bytes, body: bytes) -> bytes:
        """Plaintext of ``body`` = ciphertext || MAC; MacVerificationFailure if it does not verify."""
        ...


class DataCipher(Protocol):
    """Encryption only (no integrity)."""

    name: str
    #: block size for padding, 0 for a stream (no padding)
    block_size: int

    def encrypt(self, iv: bytes, plaintext: bytes) -> bytes: ...

    def decrypt(self, iv: bytes, ciphertext: bytes) -> bytes: ...


class Mac(Protocol):
    """Authentication only: a MAC over the authentication payload."""

    name: str
    mac_length: int
    #: True when the MAC needs the SA's IV (GMAC)
    needs_iv: bool

    def compute(self, iv: bytes, message: bytes) -> bytes:
        """The MAC truncated to ``mac_length`` (most significant octets kept)."""
        ...


def _mac_failure() -> MacVerificationFailure:
    return MacVerificationFailure("MAC does not verify", field="mac")


# --------------------------------------------------------------------------- AEAD
class GcmAead:
    """AES-GCM (SP 800-38D) with a MAC of 4..16 octets; AAD = masked headers."""

    __slots__ = ("name", "mac_length", "_aead", "_key", "_full", "native")

    def __init__(self, name: str, key: bytes, mac_length: int) -> None:
        if not 4 <= mac_length <= 16:
            raise InvalidConfiguration(f"{name} MAC must be 4..16 octets, not {mac_length}",
                                       field="mac_length")
        self.name = name
        self.mac_length = mac_length
        self._aead = AESGCM(key)
        self.native = self._aead
        self._key = key
        self._full = mac_length == 16

    def seal(self, iv: bytes, aad: bytes, plaintext: bytes) -> bytes:
        out = self._aead.encrypt(iv, plaintext, aad)
        if self._full:
            return out
        return out[: len(plaintext) + self.mac_length]

    def open(self, iv: bytes, aad: bytes, body: bytes) -> bytes:
        if self._full:
            try:
                return self._aead.decrypt(iv, body, aad)
            except InvalidTag:
                raise _mac_failure() from None
        cut = len(body) - self.mac_length
        dec = Cipher(algorithms.AES(self._key),
                     modes.GCM(iv, body[cut:], min_tag_length=self.mac_length)).decryptor()
        dec.authenticate_additional_data(aad)
        plain = dec.update(body[:cut])
        try:
            return plain + dec.finalize()
        except InvalidTag:
            raise _mac_failure() from None


class GcmSivAead:
    """AES-GCM-SIV (RFC 8452): nonce-misuse resistant; 12-octet IV, 16-octet MAC."""

    __slots__ = ("name", "mac_length", "_aead", "native")

    def __init__(self, name: str, key: bytes, mac_length: int) -> None:
        if mac_length != 16:
            raise InvalidConfiguration(f"{name} MAC must be 16 octets, not {mac_length}",
                                       field="mac_length")
        self.name = name
        self.mac_length = 16
        self._aead = AESGCMSIV(key)
        self.native = self._aead

    def seal(self, iv: bytes, aad: bytes, plaintext: bytes) -> bytes:
        return self._aead.encrypt(iv, plaintext, aad)

    def open(self, iv: bytes, aad: bytes, body: bytes) -> bytes:
        try:
            return self._aead.decrypt(iv, body, aad)
        except InvalidTag:
            raise _mac_failure() from None


# --------------------------------------------------------------------------- ciphers
class GcmKeystream:
    """Encryption-only GCM: the GCM ciphertext with the tag dropped (CryptoLib's est=1, ast=0).

    Without a tag this is AES-CTR from the GCM counter block J0+1: no integrity.  Decryption is
    the same key stream (a GCM encryption of the ciphertext), so any IV length GCM accepts works.
    """

    __slots__ = ("name", "block_size", "_aead")

    def __init__(self, name: str, key: bytes) -> None:
        self.name = name
        self.block_size = 0
        self._aead = AESGCM(key)

    def encrypt(self, iv: bytes, plaintext: bytes) -> bytes:
        return self._aead.encrypt(iv, plaintext, None)[:-16]

    def decrypt(self, iv: bytes, ciphertext: bytes) -> bytes:
        return self._aead.encrypt(iv, ciphertext, None)[:-16]


class CbcCipher:
    """AES-CBC; the engine pads to the block size.  IVs under 16 octets are zero-extended on the
    right (what libgcrypt, hence CryptoLib, does with its 12-octet IVs)."""

    __slots__ = ("name", "block_size", "_alg")

    def __init__(self, name: str, key: bytes) -> None:
        self.name = name
        self.block_size = AES_BLOCK
        self._alg = algorithms.AES(key)

    @staticmethod
    def _iv(iv: bytes) -> bytes:
        if len(iv) < AES_BLOCK:
            return iv + bytes(AES_BLOCK - len(iv))
        return iv

    def encrypt(self, iv: bytes, plaintext: bytes) -> bytes:
        if len(plaintext) % AES_BLOCK:
            raise PaddingError(f"CBC plaintext of {len(plaintext)} octets is not a multiple of 16")
        enc = Cipher(self._alg, modes.CBC(self._iv(iv))).encryptor()
        return enc.update(plaintext) + enc.finalize()

    def decrypt(self, iv: bytes, ciphertext: bytes) -> bytes:
        if len(ciphertext) % AES_BLOCK:
            raise PaddingError(f"CBC ciphertext of {len(ciphertext)} octets is not a multiple "
                               "of 16", field="data")
        dec = Cipher(self._alg, modes.CBC(self._iv(iv))).decryptor()
        return dec.update(ciphertext) + dec.finalize()


# --------------------------------------------------------------------------- MACs
class CmacMac:
    """AES-CMAC (SP 800-38B)."""

    __slots__ = ("name", "mac_length", "needs_iv", "_alg")

    def __init__(self, name: str, key: bytes, mac_length: int) -> None:
        if not 1 <= mac_length <= 16:
            raise InvalidConfiguration(f"{name} MAC must be 1..16 octets, not {mac_length}",
                                       field="mac_length")
        self.name = name
        self.mac_length = mac_length
        self.needs_iv = False
        self._alg = algorithms.AES(key)

    def compute(self, iv: bytes, message: bytes) -> bytes:
        c = cmac.CMAC(self._alg)
        c.update(message)
        return c.finalize()[: self.mac_length]


class HmacMac:
    """HMAC-SHA-2 (FIPS 198-1), stdlib ``hmac.digest`` (OpenSSL underneath)."""

    __slots__ = ("name", "mac_length", "needs_iv", "_key", "_digest")

    def __init__(self, name: str, key: bytes, mac_length: int, digest: str, size: int) -> None:
        if not 1 <= mac_length <= size:
            raise InvalidConfiguration(f"{name} MAC must be 1..{size} octets, not {mac_length}",
                                       field="mac_length")
        self.name = name
        self.mac_length = mac_length
        self.needs_iv = False
        self._key = key
        self._digest = digest

    def compute(self, iv: bytes, message: bytes) -> bytes:
        return _hmac.digest(self._key, message, self._digest)[: self.mac_length]


class GmacMac:
    """GMAC: GCM with an empty plaintext, the whole authentication payload as AAD."""

    __slots__ = ("name", "mac_length", "needs_iv", "_aead")

    def __init__(self, name: str, key: bytes, mac_length: int) -> None:
        if not 4 <= mac_length <= 16:
            raise InvalidConfiguration(f"{name} MAC must be 4..16 octets, not {mac_length}",
                                       field="mac_length")
        self.name = name
        self.mac_length = mac_length
        self.needs_iv = True
        self._aead = AESGCM(key)

    def compute(self, iv: bytes, message: bytes) -> bytes:
        return self._aead.encrypt(iv, b"", message)[: self.mac_length]


# --------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class CipherSpec:
    """A cipher name of the ``sdls-vectors/1`` schema and how to build its primitives."""

    name: str
    key_length: int
    #: True for GCM-family ciphers (counter IV, GMAC when authentication only)
    gcm_family: bool
    #: valid full IV lengths (octets)
    iv_lengths: range
    aead: Callable[[str, bytes, int], Aead] | None
    cipher: Callable[[str, bytes], DataCipher] | None
    gmac: Callable[[str, bytes, int], Mac] | None


@dataclass(frozen=True)
class MacSpec:
    """A MAC algorithm name of the schema and its factory."""

    name: str
    #: required key length, or None for any non-empty key (HMAC)
    key_length: int | None
    factory: Callable[[str, bytes, int], Mac]


CIPHERS: dict[str, CipherSpec] = {
    spec.name: spec
    for spec in (
        CipherSpec("AES-128-GCM", 16, True, range(8, 129), GcmAead, GcmKeystream, GmacMac),
        CipherSpec("AES-256-GCM", 32, True, range(8, 129), GcmAead, GcmKeystream, GmacMac),
        CipherSpec("AES-256-GCM-SIV", 32, True, range(12, 13), GcmSivAead, None, None),
        CipherSpec("AES-256-CBC", 32, False, range(12, 17), None, CbcCipher, None),
    )
}

MAC_ALGORITHMS: dict[str, MacSpec] = {
    spec.name: spec
    for spec in (
        MacSpec("AES-256-CMAC", 32, CmacMac),
        MacSpec("HMAC-SHA-256", None, lambda n, k, m: HmacMac(n, k, m, "sha256", 32)),
        MacSpec("HMAC-SHA-384", None, lambda n, k, m: HmacMac(n, k, m, "sha384", 48)),
        MacSpec("HMAC-SHA-512", None, lambda n, k, m: HmacMac(n, k, m, "sha512", 64)),
    )
}


@dataclass(frozen=True)
class Suite:
    """What one SA runs: an AEAD, or a cipher and/or a MAC, or nothing (clear mode)."""

    aead: Aead | None = None
    cipher: DataCipher | None = None
    mac: Mac | None = None
    #: the cipher spec (IV rules), or None
    cipher_spec: CipherSpec | None = None

    @property
    def encrypts(self) -> bool:
        return self.aead is not None or self.cipher is not None

    @property
    def authenticates(self) -> bool:
        return self.aead is not None or self.mac is not None

    @property
    def needs_iv(self) -> bool:
        return (self.aead is not None or self.cipher is not None
                or (self.mac is not None and self.mac.needs_iv))

    @property
    def counter_iv(self) -> bool:
        """True when the IV is a deterministic counter (GCM family); False for random IVs (CBC)."""
        return self.cipher_spec is not None and self.cipher_spec.gcm_family

    @property
    def block_size(self) -> int:
        return self.cipher.block_size if self.cipher is not None else 0

    @property
    def mac_length(self) -> int:
        if self.aead is not None:
            return self.aead.mac_length
        if self.mac is not None:
            return self.mac.mac_length
        return 0

    def __repr__(self) -> str:  # never shows keys (the primitives hold them)
        parts = [p.name for p in (self.aead, self.cipher, self.mac) if p is not None]
        return f"Suite({' + '.join(parts) or 'clear'})"


def _key(material: bytes | None, length: int | None, what: str) -> bytes:
    if material is None:
        raise InvalidConfiguration(f"{what} needs a key", field="key")
    if length is not None and len(material) != length:
        raise InvalidConfiguration(f"{what} needs a {length}-octet key, got {len(material)} octets",
                                   field="key")
    if not material:
        raise InvalidConfiguration(f"{what} needs a non-empty key", field="key")
    return material


def cipher_spec(name: str | None) -> CipherSpec | None:
    """The spec of a cipher name; UnsupportedAlgorithm for an unknown one."""
    if name is None:
        return None
    try:
        return CIPHERS[name]
    except KeyError:
        raise UnsupportedAlgorithm(f"unknown cipher {name!r}; known: {sorted(CIPHERS)}",
                                   field="cipher") from None


def mac_spec(name: str | None) -> MacSpec | None:
    """The spec of a MAC algorithm name; UnsupportedAlgorithm for an unknown one."""
    if name is None:
        return None
    try:
        return MAC_ALGORITHMS[name]
    except KeyError:
        raise UnsupportedAlgorithm(f"unknown MAC algorithm {name!r}; known: "
                                   f"{sorted(MAC_ALGORITHMS)}", field="mac_algorithm") from None


def build_suite(*, encrypt: bool, authenticate: bool, cipher: str | None,
                mac_algorithm: str | None, enc_key: bytes | None, auth_key: bytes | None,
                mac_length: int) -> Suite:
    """The suite for a service type and algorithm names (rules of ``sdls-vectors/1``).

    * encrypt + authenticate with a GCM-family cipher: that AEAD (``mac_algorithm`` ignored);
      with another cipher: the cipher then ``mac_algorithm`` over the ciphertext;
    * encrypt only: the cipher (GCM family: key stream, no tag);
    * authenticate only: ``mac_algorithm``, else GMAC from a GCM cipher;
    * neither: clear mode.
    """
    cspec = cipher_spec(cipher)
    mspec = mac_spec(mac_algorithm)
    if encrypt and cspec is None:
        raise InvalidConfiguration("encryption needs a cipher", field="cipher")
    if authenticate and mac_length <= 0:
        raise InvalidConfiguration("authentication needs a MAC length > 0", field="mac_length")
    if encrypt and authenticate:
        assert cspec is not None
        if cspec.aead is not None:
            key = _key(enc_key, cspec.key_length, cspec.name)
            return Suite(aead=cspec.aead(cspec.name, key, mac_length), cipher_spec=cspec)
        if mspec is None:
            raise InvalidConfiguration(f"{cspec.name} does not authenticate: authenticated "
                                       "encryption needs a MAC algorithm", field="mac_algorithm")
        assert cspec.cipher is not None
        ckey = _key(enc_key, cspec.key_length, cspec.name)
        mkey = _key(auth_key if auth_key is not None else enc_key, mspec.key_length, mspec.name)
        return Suite(cipher=cspec.cipher(cspec.name, ckey),
                     mac=mspec.factory(mspec.name, mkey, mac_length), cipher_spec=cspec)
    if encrypt:
        assert cspec is not None
        if cspec.cipher is None:
            raise UnsupportedAlgorithm(f"{cspec.name} cannot run as encryption only",
                                       field="cipher")
        key = _key(enc_key, cspec.key_length, cspec.name)
        return Suite(cipher=cspec.cipher(cspec.name, key), cipher_spec=cspec)
    if authenticate:
        if mspec is not None:
            mkey = _key(auth_key if auth_key is not None else enc_key, mspec.key_length,
                        mspec.name)
            return Suite(mac=mspec.factory(mspec.name, mkey, mac_length))
        if cspec is not None and cspec.gmac is not None:
            key = _key(auth_key if auth_key is not None else enc_key, cspec.key_length,
                       f"GMAC ({cspec.name})")
            return Suite(mac=cspec.gmac(f"GMAC-{cspec.name}", key, mac_length), cipher_spec=cspec)
        raise InvalidConfiguration("authentication needs a MAC algorithm or a GCM cipher (GMAC)",
                                   field="mac_algorithm")
    return Suite()


def random_iv(length: int) -> bytes:
    """A fresh unpredictable IV (CBC)."""
    return os.urandom(length)
