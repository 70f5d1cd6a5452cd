"""Security header/trailer layouts and authentication bit masks: presets and custom.

A :class:`SecurityLayout` says which fields an SA puts in the security header (SPI, IV, SN, pad
length) and trailer (MAC), and how long each is; :func:`default_abm` builds the authentication
bit mask (ABM) of a preset for a channel.

Presets:

* ``"yamcs"`` — SPI + 12-octet IV used as the counter (no separate SN, no pad length), 16-octet
  MAC, and Yamcs' default masks (sdls.md §5): only the VCID (and MAP ID for USLP) of the primary
  header authenticated, SPI authenticated, IV not (it is the GCM nonce, hence authenticated
  implicitly).
* ``"cryptolib"`` — CryptoLib's usual SA shape: 12-octet IV fully sent, a separate ARSN
  (``sn_length`` octets, all sent), no pad length for GCM, 1-octet pad length for CBC; its ABM
  semantics are "octets past the mask are 00"; the preset authenticates the same header bits as
  ``yamcs`` plus SPI and SN.
* custom — any :class:`SecurityLayout` and any mask (``abm=`` of the SA).

Our presets set the mask to all-ones over the data field for MAC-only suites, so the whole data
field is authenticated (the interchange rule "past the mask is 00" would leave it out).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final

from sdls_qkd.errors import InvalidConfiguration
from sdls_qkd.security.sa import (
    IvMode,
    SaState,
    SdlsKey,
    SecurityAssociation,
    ServiceType,
    binding_for,
)
from sdls_qkd.security.suites import CIPHERS

if TYPE_CHECKING:
    from sdls_qkd.framing.channel import Channel

__all__ = ["PRESETS", "SecurityLayout", "default_abm", "make_sa", "primary_header_mask"]


@dataclass(frozen=True)
class SecurityLayout:
    """Field lengths of the security header and trailer (octets)."""

    iv_length: int = 12
    transmitted_iv_length: int = 12
    sn_length: int = 0
    transmitted_sn_length: int = 0
    pad_length_field_length: int = 0
    mac_length: int = 16
    #: mask over the SPI (2 octets), IV, SN and pad-length fields
    spi_mask: bytes = b"\xff\xff"
    iv_mask: int = 0x00
    sn_mask: int = 0xFF
    pl_mask: int = 0xFF

    @property
    def security_header_length(self) -> int:
        return 2 + self.transmitted_iv_length + self.transmitted_sn_length + \
            self.pad_length_field_length


#: named layouts
PRESETS: Final[dict[str, SecurityLayout]] = {
    "yamcs": SecurityLayout(),
    "cryptolib": SecurityLayout(iv_length=12, transmitted_iv_length=12, sn_length=4,
                                transmitted_sn_length=4, pad_length_field_length=0,
                                mac_length=16),
}


def primary_header_mask(channel: Channel) -> bytes:
    """Yamcs' default mask over everything before the security header (sdls.md §5)."""
    ft = channel.frame_type
    if ft == "TC":
        return b"\x00\x00\xfc\x00\x00" + (b"\xff" if channel.has_segment_header else b"")  # type: ignore[union-attr]
    if ft == "TM":
        return b"\x00\x0e\x00\x00\x00\x00" + bytes(channel.header_length - 6)
    if ft == "AOS":
        return b"\x00\x3f\x00\x00\x00\x00" + bytes(channel.header_length - 6)
    if ft == "USLP":
        return b"\x00\x00\x07\xfe" + bytes(channel.header_length - 4)
    raise InvalidConfiguration(f"unknown frame type {ft!r}")


def _max_length(channel: Channel) -> int:
    length = getattr(channel, "frame_length", None)
    return int(length if length is not None else getattr(channel, "max_frame_length", 1024))


def default_abm(channel: Channel, layout: SecurityLayout, *, mac_only: bool) -> bytes:
    """ABM of our presets for ``channel``: header mask, security header mask, and for MAC-only
    suites all-ones over the data field (up to the channel's maximum frame length)."""
    mask = bytearray(primary_header_mask(channel))
    mask += layout.spi_mask
    mask += bytes([layout.iv_mask]) * layout.transmitted_iv_length
    mask += bytes([layout.sn_mask]) * layout.transmitted_sn_length
    mask += bytes([layout.pl_mask]) * layout.pad_length_field_length
    if mac_only:
        mask += b"\xff" * max(0, _max_length(channel) - len(mask))
    return bytes(mask)


def make_sa(
    spi: int,
    channel: Channel,
    *,
    preset: str | SecurityLayout = "yamcs",
    service: ServiceType = ServiceType.AUTHENTICATED_ENCRYPTION,
    cipher: str | None = "AES-256-GCM",
    mac_algorithm: str | None = None,
    key: bytes | SdlsKey | None = None,
    auth_key: bytes | SdlsKey | None = None,
    window: int = 64,
    iv: int = 0,
    arsn: int = 0,
    abm: bytes | None = None,
    state: SaState = SaState.OPERATIONAL,
    iv_mode: IvMode | None = None,
) -> SecurityAssociation:
    """An SA bound to ``channel`` with a preset (or custom) layout and that preset's mask.

    Counters follow the ``sdls-vectors/1`` convention: a sender uses its stored IV/ARSN for the
    next frame, a receiver holds the last value it accepted and wants a strictly greater one.
    A pair therefore starts with the sender one ahead (e.g. sender ``iv=1``, receiver ``iv=0``).
    """
    if isinstance(preset, str):
        try:
            layout = PRESETS[preset]
        except KeyError:
            raise InvalidConfiguration(f"unknown layout preset {preset!r}; known: "
                                       f"{sorted(PRESETS)}", field="preset") from None
        spec = CIPHERS.get(cipher) if cipher is not None else None
        if preset == "cryptolib" and spec is not None and not spec.gcm_family:
            layout = replace(layout, iv_length=16, transmitted_iv_length=16,
                             pad_length_field_length=1)
        if preset == "yamcs" and spec is not None and not spec.gcm_family:
            layout = replace(layout, iv_length=16, transmitted_iv_length=16,
                             pad_length_field_length=1)
    else:
        layout = preset
    if not service.authenticate:
        layout = replace(layout, mac_length=0)
    if service == ServiceType.CLEAR:
        layout = replace(layout, iv_length=0, transmitted_iv_length=0, sn_length=0,
                         transmitted_sn_length=0, pad_length_field_length=0)
    elif service == ServiceType.AUTHENTICATION and mac_algorithm is not None:
        layout = replace(layout, iv_length=0, transmitted_iv_length=0, pad_length_field_length=0,
                         sn_length=layout.sn_length or 4,
                         transmitted_sn_length=layout.transmitted_sn_length or 4)
    mac_only = service == ServiceType.AUTHENTICATION or (
        service == ServiceType.AUTHENTICATED_ENCRYPTION and mac_algorithm is not None
        and cipher is not None and not CIPHERS[cipher].gcm_family)
    if abm is None:
        abm = default_abm(channel, layout, mac_only=mac_only)

    def as_key(k: bytes | SdlsKey | None, name: str) -> SdlsKey | None:
        if k is None or isinstance(k, SdlsKey):
            return k
        return SdlsKey(k, key_id=name)

    return SecurityAssociation(
        spi,
        service=service,
        cipher=cipher if service.encrypt or mac_algorithm is None else None,
        mac_algorithm=mac_algorithm,
        enc_key=as_key(key, f"sa{spi}-key"),
        auth_key=as_key(auth_key, f"sa{spi}-auth-key"),
        iv_length=layout.iv_length,
        transmitted_iv_length=layout.transmitted_iv_length,
        sn_length=layout.sn_length,
        transmitted_sn_length=layout.transmitted_sn_length,
        pad_length_field_length=layout.pad_length_field_length,
        mac_length=layout.mac_length,
        abm=abm,
        window=window,
        iv=iv,
        arsn=arsn,
        state=state,
        bindings=[binding_for(channel)],
        iv_mode=iv_mode,
    )
