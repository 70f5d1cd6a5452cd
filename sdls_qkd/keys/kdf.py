"""Session keys from QKD keys: HKDF (RFC 5869) with a labelled, fixed-width context.

A QKD key is never used directly as an SA key.  :func:`derive_session_key` runs HKDF over the
key's material with ``info`` = the encoded :class:`SessionContext`::

    "sdls-qkd/v1" 00 | hash id (1) | length (2) | SPI (2) | direction (1) | epoch (4) | key_id (16)

(big-endian, fixed width, so two different contexts never encode to the same octets).  Uplink
and downlink therefore get unrelated keys and never share a (key, IV) space, and each rekey
epoch of an SA gets a fresh key.  A QKD key binds to *one* context only: the binding is written
to the state store before the session key exists, and a second binding — with any context,
also after a restart — raises :class:`~sdls_qkd.errors.KeyAlreadyUsed`.

:func:`hkdf`, :func:`hkdf_extract` and :func:`hkdf_expand` are the bare RFC 5869 primitive
(tested against the RFC's vectors); they bind nothing.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from uuid import UUID

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from sdls_qkd.errors import UnsupportedAlgorithm, UsageError
from sdls_qkd.keys.material import QkdKey
from sdls_qkd.store.base import StateStore

__all__ = [
    "LABEL",
    "Direction",
    "KdfHash",
    "SessionContext",
    "SessionKey",
    "hkdf",
    "hkdf_extract",
    "hkdf_expand",
    "derive_session_key",
]

#: version label at the head of every derivation context
LABEL = b"sdls-qkd/v1"


class Direction(IntEnum):
    """Link direction a session key protects."""

    UPLINK = 1  # ground -> space (TC)
    DOWNLINK = 2  # space -> ground (TM/AOS)


class KdfHash(IntEnum):
    """Hash of the HKDF (the value is its one-octet id in the context)."""

    SHA256 = 1
    SHA512 = 2


_HASHES: dict[KdfHash, Callable[[], hashes.HashAlgorithm]] = {
    KdfHash.SHA256: hashes.SHA256,
    KdfHash.SHA512: hashes.SHA512,
}
_CONTEXT = struct.Struct(">BHHBI16s")


def _hash(alg: KdfHash | int) -> hashes.HashAlgorithm:
    try:
        return _HASHES[KdfHash(alg)]()
    except ValueError:
        raise UnsupportedAlgorithm(f"no HKDF hash with id {alg}") from None


def hkdf_extract(salt: bytes | None, ikm: bytes, alg: KdfHash = KdfHash.SHA256) -> bytes:
    """RFC 5869 2.2: PRK = HMAC-Hash(salt, IKM); no salt means HashLen zero octets."""
    algorithm = _hash(alg)
    mac = crypto_hmac.HMAC(salt or bytes(algorithm.digest_size), algorithm)
    mac.update(ikm)
    return mac.finalize()


def _check_length(length: int, algorithm: hashes.HashAlgorithm) -> None:
    if not isinstance(length, int) or not 0 < length <= 255 * algorithm.digest_size:
        raise UsageError(
            f"HKDF output length must be 1..{255 * algorithm.digest_size} octets, got {length!r}"
        )


def hkdf_expand(prk: bytes, info: bytes, length: int, alg: KdfHash = KdfHash.SHA256) -> bytes:
    """RFC 5869 2.3: OKM of ``length`` octets (at most 255 x HashLen)."""
    algorithm = _hash(alg)
    _check_length(length, algorithm)
    if len(prk) < algorithm.digest_size:
        raise UsageError(f"PRK must have at least {algorithm.digest_size} octets, got {len(prk)}")
    return HKDFExpand(algorithm, length, info).derive(prk)


def hkdf(
    ikm: bytes, *, salt: bytes | None, info: bytes, length: int, alg: KdfHash = KdfHash.SHA256
) -> bytes:
    """RFC 5869 HKDF: extract then expand."""
    return hkdf_expand(hkdf_extract(salt, ikm, alg), info, length, alg)


@dataclass(frozen=True, slots=True)
class SessionContext:
    """What a session key is for: one SA, one direction, one rekey epoch, one QKD key."""

    spi: int
    direction: Direction
    epoch: int
    key_id: UUID

    def __post_init__(self) -> None:
        if not isinstance(self.spi, int) or not 0 <= self.spi <= 0xFFFF:
            raise UsageError(f"SPI must be in 0..65535, got {self.spi!r}", field="spi")
        try:
            object.__setattr__(self, "direction", Direction(self.direction))
        except ValueError:
            raise UsageError(f"direction must be 1 (uplink) or 2 (downlink), got {self.direction!r}",
                             field="direction") from None
        if not isinstance(self.epoch, int) or not 0 <= self.epoch <= 0xFFFF_FFFF:
            raise UsageError(f"epoch must be in 0..4294967295, got {self.epoch!r}", field="epoch")
        if not isinstance(self.key_id, UUID):
            raise UsageError(f"key_id must be a uuid.UUID, got {type(self.key_id).__name__}")

    def encode(self, length: int, alg: KdfHash = KdfHash.SHA256) -> bytes:
        """The HKDF ``info`` octets (fixed width after the label: injective)."""
        if not 0 < length <= 0xFFFF:
            raise UsageError(f"session key length must be 1..65535 octets, got {length}")
        return LABEL + b"\x00" + _CONTEXT.pack(
            int(KdfHash(alg)), length, self.spi, int(self.direction), self.epoch, self.key_id.bytes
        )


@dataclass(frozen=True, slots=True)
class SessionKey:
    """A derived per-SA, per-direction key; ``material`` never shows in ``repr``."""

    context: SessionContext
    material: bytes = field(repr=False)


def derive_session_key(
    key: QkdKey,
    context: SessionContext,
    store: StateStore,
    *,
    length: int = 32,
    alg: KdfHash = KdfHash.SHA256,
    clock: Callable[[], float] = time.time,
) -> SessionKey:
    """Bind ``key`` to ``context`` durably in ``store``, then derive the session key.

    Raises :class:`~sdls_qkd.errors.KeyAlreadyUsed` if the key was bound before (to any
    context); nothing is derived then.
    """
    if context.key_id != key.key_id:
        raise UsageError(f"context names key {context.key_id}, but key {key.key_id} was given")
    info = context.encode(length, alg)
    _check_length(length, _hash(alg))  # refuse before binding, so a refusal binds nothing
    store.bind(key.key_id, info, at=clock())
    return SessionKey(context, hkdf(key.material, salt=None, info=info, length=length, alg=alg))
