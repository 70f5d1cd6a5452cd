"""CryptoLib 1.5's default SDLS-EP set-up: facts of the reference implementation, in one place.

NASA CryptoLib (``nasa/CryptoLib`` at :data:`CRYPTOLIB_COMMIT`) starts every unit test from the
same key ring: its internal key interface (``src/key/internal/key_interface_internal.template.c``,
``key_init``) zeroes every slot (value 00..00, state 0 = Pre-activation) and then loads the
fifteen keys of :data:`CRYPTOLIB_KEY_RING`.  Master keys are IDs 0..127, session keys 128 and up.
EP commands are executed only when they arrive on SPI 0 or SPI 63 (``SPI_MIN`` / ``SPI_MAX``).

These are facts about the peer, not choices of this library.  They were checked independently of
our code against captured CryptoLib output: every Key Verification reply of the capture
(``vectors/cryptolib_ep.json``) decrypts, with ``cryptography``'s AES-256-GCM, under these keys to
the challenge of its command (``tests/test_vectors_ep.py``).

Empty slots.  CryptoLib cannot tell an empty slot from a zero-valued Pre-activation key.  The
ring built here holds the empty *master* slots that way (so OTAR under an unset master key fails
with InvalidKeyState, as in CryptoLib) and leaves empty *session* slots absent (so an OTAR upload
lands in a free slot, which is what CryptoLib does to them and what the strict key table allows).

:data:`CRYPTOLIB_TEST_SETUPS` lists state that individual CryptoLib unit tests set before their
call and that the captured vectors do not record: a vector checker cannot reproduce those
outcomes from the vector alone and says so instead of guessing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from sdls_qkd.procedures.keys import KeyRing, KeyState
from sdls_qkd.procedures.onboard import OnboardConfig, OnboardSecurityManager
from sdls_qkd.procedures.pdu import EpPacketConfig
from sdls_qkd.security.sa import SecurityAssociation

__all__ = [
    "CRYPTOLIB_COMMIT",
    "KEY_RING_SOURCE",
    "DefaultKey",
    "CRYPTOLIB_KEY_RING",
    "CRYPTOLIB_MASTER_KEY_IDS",
    "CRYPTOLIB_EP_SPIS",
    "CRYPTOLIB_TEST_SETUPS",
    "cryptolib_key_ring",
    "cryptolib_onboard",
]

#: the CryptoLib snapshot the facts were taken from (the one the vectors were captured with)
CRYPTOLIB_COMMIT: Final = "2a237a3fa46822c2c339a0ab0b152c8697aa5093"
KEY_RING_SOURCE: Final = ("nasa/CryptoLib src/key/internal/key_interface_internal.template.c "
                          "(key_init)")


@dataclass(frozen=True, slots=True)
class DefaultKey:
    """One key that CryptoLib's ``key_init`` loads (the material is public test data)."""

    key_id: int
    material: bytes = field(repr=False)
    state: KeyState


def _key(key_id: int, hex_text: str, state: KeyState) -> DefaultKey:
    return DefaultKey(key_id, bytes.fromhex(hex_text), state)


_A, _P, _D = KeyState.ACTIVE, KeyState.PREACTIVE, KeyState.DEACTIVATED

#: CryptoLib's default key ring, in ``key_init`` order
CRYPTOLIB_KEY_RING: Final[tuple[DefaultKey, ...]] = (
    # master keys
    _key(0, "000102030405060708090a0b0c0d0e0f" * 2, _A),
    _key(1, "101112131415161718191a1b1c1d1e1f" * 2, _A),
    _key(2, "202122232425262728292a2b2c2d2e2f" * 2, _A),
    _key(3, "303132333435363738393a3b3c3d3e3f" * 2, _A),
    _key(4, "404142434445464748494a4b4c4d4e4f" * 2, _A),
    _key(9, "909192939495969798999a9b9c9d9e9f" * 2, _A),
    # session keys
    _key(128, "0123456789abcdef" * 4, _A),
    _key(129, "abcdef0123456789" * 4, _A),
    _key(130, "fedcba9876543210" * 4, _A),
    _key(131, "9876543210fedcba" * 4, _A),
    _key(132, "0123456789abcdefabcdef0123456789" * 2, _P),
    _key(133, "abcdef01234567890123456789abcdef" * 2, _A),
    _key(134, "abcdef0123456789fedcba9876543210" * 2, _D),
    _key(135, "00" * 32, _D),
    _key(136, "ff9f9284cf599eac3b119905a7d18851e7e374cf63aea04358586b0f757670f9", _D),
)

#: CryptoLib: key IDs below 128 are master keys (key-encryption keys for OTAR)
CRYPTOLIB_MASTER_KEY_IDS: Final = range(0, 128)
#: SPIs whose frames may carry EP commands (CryptoLib SPI_MIN and SPI_MAX = NUM_SA - 1)
CRYPTOLIB_EP_SPIS: Final = frozenset({0, 63})

#: CryptoLib unit test (suite.name, without the ``#n`` call index) -> state the test sets before
#: its call that the capture does not record (taken from the test source at CRYPTOLIB_COMMIT)
CRYPTOLIB_TEST_SETUPS: Final[Mapping[str, str]] = {
    "EP_KEY_MGMT.OTAR_0_140_142_BAD_DECRYPT": (
        "the CryptoLib test makes master key 127 Active before the call "
        "(test/unit/ut_ep_key_mgmt.c), and the OTAR decryption under that empty slot fails "
        "(native LIBGCRYPT_ERROR, mapped to MacVerificationFailure); the vector does not carry "
        "that key state, and from the default ring (127 in Pre-activation) the OTAR is refused "
        "with InvalidKeyState before any decryption"),
}


def cryptolib_key_ring(*, empty_master_slots: bool = True) -> KeyRing:
    """A fresh :class:`KeyRing` as CryptoLib's ``key_init`` leaves it.

    ``empty_master_slots`` also fills the master-key slots ``key_init`` leaves empty with 32
    zero octets in Pre-activation (what CryptoLib holds there).
    """
    ring = KeyRing(master_key_ids=CRYPTOLIB_MASTER_KEY_IDS)
    for key in CRYPTOLIB_KEY_RING:
        ring.install(key.key_id, key.material, key.state)
    if empty_master_slots:
        for key_id in CRYPTOLIB_MASTER_KEY_IDS:
            if key_id not in ring:
                ring.install(key_id, bytes(32), KeyState.PREACTIVE)
    return ring


def cryptolib_onboard(carrying: SecurityAssociation | None = None, *,
                      ring: KeyRing | None = None,
                      packet: EpPacketConfig | None = None) -> OnboardSecurityManager:
    """An on-board manager in CryptoLib mode with CryptoLib's defaults.

    ``carrying`` is the SA that protected the EP frame (it becomes the manager's only SA, the very
    object, so EP effects on it are seen by the frame engine); ``ring`` defaults to
    :func:`cryptolib_key_ring`, ``packet`` to CryptoLib's EP packet set-up (APID 0x180 with the
    4-octet PUS header).
    """
    config = OnboardConfig.cryptolib(packet=packet or EpPacketConfig.cryptolib(),
                                     management_spis=CRYPTOLIB_EP_SPIS,
                                     master_key_ids=CRYPTOLIB_MASTER_KEY_IDS)
    sas = {carrying.spi: carrying} if carrying is not None else {}
    return OnboardSecurityManager(config, ring=ring if ring is not None else cryptolib_key_ring(),
                                  sas=sas)
