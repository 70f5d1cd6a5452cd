"""``sdls-vectors/1`` generation: deterministic SDLS test vectors from this library's engine.

For teams validating another SDLS implementation.  The matrix is

* frame kind: TC, TM, AOS, USLP with fixed-length and with variable-length frames;
* suite: AES-256-GCM, AES-128-GCM, GMAC, AES-256-CMAC, HMAC-SHA-256/384/512, AES-256-CBC
  (encryption only; with HMAC-SHA-256 in the custom layout), AES-256-GCM-SIV;
* layout: the ``yamcs`` and ``cryptolib`` presets of :mod:`sdls_qkd.security.layout`, and a
  ``custom`` one per suite (partially transmitted IV or ARSN, truncated MACs, pad length fields,
  all-ones authentication mask);
* channel options, cycled so that every combination of a frame kind appears: FECF on/off (and
  CRC-32 for USLP), OCF, TC segment header, TM secondary header, insert zone, AOS FHEC.

Per configuration: one positive ``apply`` vector, one positive ``process`` vector (the frame the
apply vector protects, received with the counters one window step behind) and the negative
``process`` vectors that apply to it: ``bad_mac``, ``replay``, ``outside_window``,
``wrong_spi``, ``bad_fecf``, ``truncated``, ``length_field_lies``.

Expected values of positive vectors are what the engine computes (that is what generation
means); the test suite recomputes a sample independently with ``cryptography``.  Negative
vectors are *designed*: the generator states the error and checks that the engine raises
exactly that one, so a generator/engine disagreement stops generation instead of being written.

Everything is a function of the seed: octets come from SHAKE-256 over the seed and a label
naming the configuration and the value, so the same seed gives the same file byte for byte, and
a configuration's values do not depend on which other configurations are selected.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sdls_qkd import vectors as vectors_io
from sdls_qkd.errors import InvalidConfiguration, SdlsQkdError
from sdls_qkd.framing.channel import (
    AosChannel,
    Channel,
    TcChannel,
    TmChannel,
    UslpChannel,
)
from sdls_qkd.framing.crc import fecf as fecf_value
from sdls_qkd.framing.fhec import fhec_encode
from sdls_qkd.security.engine import EngineOptions, apply_security, process_security
from sdls_qkd.security.layout import SecurityLayout, make_sa
from sdls_qkd.security.sa import SecurityAssociation, ServiceType

__all__ = [
    "FRAME_KINDS",
    "NEGATIVES",
    "PRESETS",
    "SUITES",
    "GenerationError",
    "Rand",
    "SuiteDef",
    "generate",
    "generate_text",
    "generate_vectors",
    "suite",
    "suite_names",
    "unprotected_frame",
]

FRAME_KINDS: Final = ("TC", "TM", "AOS", "USLP-fixed", "USLP-variable")
PRESETS: Final = ("yamcs", "cryptolib", "custom")
NEGATIVES: Final = ("bad_mac", "replay", "outside_window", "wrong_spi", "bad_fecf", "truncated",
                    "length_field_lies")
#: maximum frame length of the generated variable-length channels (keeps masks short)
VARIABLE_MAX_LENGTH: Final = 256
#: data field octets of the generated fixed-length frames (a multiple of the AES block)
FIXED_DATA_LENGTH: Final = 32


class GenerationError(InvalidConfiguration):
    """The engine disagrees with a designed vector (a bug to report, never written out)."""


# =========================================================================== determinism
class Rand:
    """Octets and integers as a pure function of (seed, label): SHAKE-256(seed | label)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def octets(self, label: str, n: int) -> bytes:
        if n <= 0:
            return b""
        return hashlib.shake_256(f"sdls-qkd-vectors/{self.seed}/{label}".encode()).digest(n)

    def integer(self, label: str, lo: int, hi: int) -> int:
        """Uniform enough in lo..hi (inclusive) for test values."""
        span = hi - lo + 1
        return lo + int.from_bytes(self.octets(label, 16), "big") % span


# =========================================================================== suites, layouts
@dataclass(frozen=True)
class SuiteDef:
    """One suite of the matrix: service type, algorithm names, key lengths."""

    name: str
    service: ServiceType
    cipher: str | None
    mac_algorithm: str | None
    key_length: int
    #: octets of a separate authentication key (0: the MAC uses ``key``)
    auth_key_length: int = 0


_AE = ServiceType.AUTHENTICATED_ENCRYPTION
_AUTH = ServiceType.AUTHENTICATION
_ENC = ServiceType.ENCRYPTION

SUITES: Final[tuple[SuiteDef, ...]] = (
    SuiteDef("AES-256-GCM", _AE, "AES-256-GCM", None, 32),
    SuiteDef("AES-128-GCM", _AE, "AES-128-GCM", None, 16),
    SuiteDef("GMAC", _AUTH, "AES-256-GCM", None, 32),
    SuiteDef("AES-256-CMAC", _AUTH, None, "AES-256-CMAC", 32),
    SuiteDef("HMAC-SHA-256", _AUTH, None, "HMAC-SHA-256", 32),
    SuiteDef("HMAC-SHA-384", _AUTH, None, "HMAC-SHA-384", 48),
    SuiteDef("HMAC-SHA-512", _AUTH, None, "HMAC-SHA-512", 64),
    SuiteDef("AES-256-CBC", _ENC, "AES-256-CBC", None, 32),
    SuiteDef("AES-256-GCM-SIV", _AE, "AES-256-GCM-SIV", None, 32),
)
_SUITE_BY_NAME: Final = {s.name: s for s in SUITES}

#: the ``custom`` layout of each suite: what the presets do not exercise
_CUSTOM: Final[dict[str, SecurityLayout]] = {
    # 8 of 12 IV octets sent, 12-octet MAC
    "AES-256-GCM": SecurityLayout(iv_length=12, transmitted_iv_length=8, mac_length=12),
    # 16-octet GCM IV, 2-octet ARSN beside it, 8-octet MAC
    "AES-128-GCM": SecurityLayout(iv_length=16, transmitted_iv_length=16, sn_length=2,
                                  transmitted_sn_length=2, mac_length=8),
    "GMAC": SecurityLayout(iv_length=12, transmitted_iv_length=12, sn_length=4,
                           transmitted_sn_length=2, mac_length=8),
    "AES-256-CMAC": SecurityLayout(iv_length=0, transmitted_iv_length=0, sn_length=8,
                                   transmitted_sn_length=4, mac_length=8),
    "HMAC-SHA-256": SecurityLayout(iv_length=0, transmitted_iv_length=0, sn_length=4,
                                   transmitted_sn_length=4, mac_length=32),
    "HMAC-SHA-384": SecurityLayout(iv_length=0, transmitted_iv_length=0, sn_length=4,
                                   transmitted_sn_length=3, mac_length=24),
    "HMAC-SHA-512": SecurityLayout(iv_length=0, transmitted_iv_length=0, sn_length=6,
                                   transmitted_sn_length=6, mac_length=64),
    # CBC then HMAC-SHA-256 (encrypt-then-MAC) with its own key, 2-octet pad length field
    "AES-256-CBC": SecurityLayout(iv_length=16, transmitted_iv_length=16, sn_length=4,
                                  transmitted_sn_length=4, pad_length_field_length=2,
                                  mac_length=16),
    "AES-256-GCM-SIV": SecurityLayout(iv_length=12, transmitted_iv_length=12, sn_length=4,
                                      transmitted_sn_length=4, mac_length=16),
}
_CUSTOM_SUITE: Final = {
    "AES-256-CBC": SuiteDef("AES-256-CBC", _AE, "AES-256-CBC", "HMAC-SHA-256", 32,
                            auth_key_length=32),
}


# =========================================================================== channels
_TC_OPTIONS: Final = [(fecf, seg) for fecf in (True, False) for seg in (False, True)]
_TM_OPTIONS: Final = [(fecf, ocf, sh) for fecf in (True, False) for ocf in (False, True)
                      for sh in (0, 4)]
_AOS_OPTIONS: Final = [(fecf, ocf, iz, fhec) for fecf in (True, False) for ocf in (False, True)
                       for iz in (0, 4) for fhec in (False, True)]
_USLP_FIXED_OPTIONS: Final = [(fecf, ocf, iz) for fecf in (2, 4, 0) for ocf in (False, True)
                              for iz in (0, 3)]
_USLP_VARIABLE_OPTIONS: Final = [(fecf, ocf, iz) for fecf in (2, 4, 0) for ocf in (False, True)
                                 for iz in (0, 3)]
OPTION_COUNTS: Final = {"TC": len(_TC_OPTIONS), "TM": len(_TM_OPTIONS), "AOS": len(_AOS_OPTIONS),
                        "USLP-fixed": len(_USLP_FIXED_OPTIONS),
                        "USLP-variable": len(_USLP_VARIABLE_OPTIONS)}


def _channel(kind: str, option: int, rnd: Rand, label: str, overhead: int) -> Channel:
    """The channel of a configuration; fixed lengths leave FIXED_DATA_LENGTH data octets
    after ``overhead`` (security header + MAC)."""
    scid_label, vcid_label, map_label = label + "/scid", label + "/vcid", label + "/map"
    if kind == "TC":
        fecf, seg = _TC_OPTIONS[option % len(_TC_OPTIONS)]
        return TcChannel(scid=rnd.integer(scid_label, 0, 0x3FF),
                         vcid=rnd.integer(vcid_label, 0, 63), has_segment_header=seg,
                         map_id=rnd.integer(map_label, 0, 63) if seg else None, has_fecf=fecf,
                         max_frame_length=VARIABLE_MAX_LENGTH)
    if kind == "TM":
        fecf, ocf, sh = _TM_OPTIONS[option % len(_TM_OPTIONS)]
        length = 6 + sh + overhead + FIXED_DATA_LENGTH + (4 if ocf else 0) + (2 if fecf else 0)
        return TmChannel(scid=rnd.integer(scid_label, 0, 0x3FF), vcid=rnd.integer(vcid_label, 0, 7),
                         frame_length=length, has_fecf=fecf, has_ocf=ocf,
                         secondary_header_length=sh)
    if kind == "AOS":
        fecf, ocf, iz, fhec = _AOS_OPTIONS[option % len(_AOS_OPTIONS)]
        length = 6 + (2 if fhec else 0) + iz + overhead + FIXED_DATA_LENGTH + \
            (4 if ocf else 0) + (2 if fecf else 0)
        return AosChannel(scid=rnd.integer(scid_label, 0, 0xFF),
                          vcid=rnd.integer(vcid_label, 0, 62), frame_length=length,
                          has_fhec=fhec, insert_zone_length=iz, has_ocf=ocf, has_fecf=fecf)
    if kind == "USLP-fixed":
        fecf_len, ocf, iz = _USLP_FIXED_OPTIONS[option % len(_USLP_FIXED_OPTIONS)]
        vcf = rnd.integer(label + "/vcf", 0, 3)
        length = 7 + vcf + iz + overhead + FIXED_DATA_LENGTH + (4 if ocf else 0) + fecf_len
        return UslpChannel(scid=rnd.integer(scid_label, 0, 0xFFFF),
                           vcid=rnd.integer(vcid_label, 0, 62),
                           map_id=rnd.integer(map_label, 0, 15), frame_length=length,
                           has_fecf=fecf_len > 0, fecf_length=fecf_len or 2, has_ocf=ocf,
                           insert_zone_length=iz, vc_frame_count_length=vcf,
                           max_frame_length=max(length, 8))
    if kind == "USLP-variable":
        fecf_len, ocf, iz = _USLP_VARIABLE_OPTIONS[option % len(_USLP_VARIABLE_OPTIONS)]
        return UslpChannel(scid=rnd.integer(scid_label, 0, 0xFFFF),
                           vcid=rnd.integer(vcid_label, 0, 62),
                           map_id=rnd.integer(map_label, 0, 15), frame_length=None,
                           has_fecf=fecf_len > 0, fecf_length=fecf_len or 2, has_ocf=ocf,
                           insert_zone_length=iz,
                           vc_frame_count_length=rnd.integer(label + "/vcf", 0, 3),
                           max_frame_length=VARIABLE_MAX_LENGTH)
    raise InvalidConfiguration(f"unknown frame kind {kind!r}; one of {', '.join(FRAME_KINDS)}")


def _frame_type(kind: str) -> str:
    return kind.split("-")[0]


# =========================================================================== frames
def _fecf_slot(channel: Channel) -> bytes:
    return bytes(channel.fecf_length) if channel.has_fecf else b""


def unprotected_frame(channel: Channel, overhead: tuple[int, int], rnd: Rand,
                      label: str) -> bytes:
    """The apply input of SCHEMA "Inputs for apply", built from the standards' field layouts.

    ``overhead`` is (security header, MAC) octets: fixed-length frames carry zeroed slots.
    """
    sh_len, mac_len = overhead
    count = rnd.integer(label + "/count", 0, 0xFFFFFF)
    if isinstance(channel, TcChannel):
        payload = rnd.octets(label + "/payload", rnd.integer(label + "/plen", 1, 40))
        total = channel.header_length + len(payload) + channel.trailer_length
        bypass = rnd.integer(label + "/bypass", 0, 1)
        head = bytes([(bypass << 5) | (channel.scid >> 8), channel.scid & 0xFF,
                      (channel.vcid << 2) | ((total - 1) >> 8), (total - 1) & 0xFF, count & 0xFF])
        if channel.has_segment_header:
            head += bytes([0xC0 | (channel.map_id or 0)])  # unsegmented, MAP ID
        return head + payload + _fecf_slot(channel)
    if isinstance(channel, UslpChannel):
        variable = channel.frame_length is None
        if variable:
            payload = bytes([0x64]) + rnd.octets(label + "/payload",
                                                 rnd.integer(label + "/plen", 0, 40))
            total = channel.header_length + len(payload) + channel.trailer_length
        else:
            assert channel.frame_length is not None
            total = channel.frame_length
            payload = bytes([0x64]) + rnd.octets(label + "/payload", FIXED_DATA_LENGTH - 1)
        word = (12 << 28) | (channel.scid << 12) | (channel.vcid << 5) | (channel.map_id << 1)
        vcf = channel.vc_frame_count_length
        head = word.to_bytes(4, "big") + (total - 1).to_bytes(2, "big") + \
            bytes([(int(channel.has_ocf) << 3) | vcf]) + \
            (count % (1 << (8 * vcf))).to_bytes(vcf, "big") + \
            rnd.octets(label + "/iz", channel.insert_zone_length)
        if variable:
            return head + payload + _ocf(channel, rnd, label) + _fecf_slot(channel)
        return head + bytes(sh_len) + payload + bytes(mac_len) + _ocf(channel, rnd, label) + \
            _fecf_slot(channel)
    if isinstance(channel, TmChannel):
        first = (channel.scid << 4) | (channel.vcid << 1) | int(channel.has_ocf)
        shl = channel.secondary_header_length
        status = ((1 if shl else 0) << 15) | (3 << 11) | 0x7FF  # no packet starts here
        head = first.to_bytes(2, "big") + bytes([count & 0xFF, (count >> 8) & 0xFF]) + \
            status.to_bytes(2, "big")
        if shl:
            head += bytes([shl - 1]) + rnd.octets(label + "/sh", shl - 1)
        data = rnd.octets(label + "/payload", FIXED_DATA_LENGTH)
        return head + bytes(sh_len) + data + bytes(mac_len) + _ocf(channel, rnd, label) + \
            _fecf_slot(channel)
    assert isinstance(channel, AosChannel)
    first = (1 << 14) | (channel.scid << 6) | channel.vcid
    head = first.to_bytes(2, "big") + (count & 0xFFFFFF).to_bytes(3, "big") + b"\x00"
    if channel.has_fhec:
        head += fhec_encode(first, 0).to_bytes(2, "big")
    head += rnd.octets(label + "/iz", channel.insert_zone_length)
    data = b"\x07\xff" + rnd.octets(label + "/payload", FIXED_DATA_LENGTH - 2)  # M_PDU, no start
    return head + bytes(sh_len) + data + bytes(mac_len) + _ocf(channel, rnd, label) + \
        _fecf_slot(channel)


def _ocf(channel: Channel, rnd: Rand, label: str) -> bytes:
    """A CLCW (type bit 0) when the channel has an OCF."""
    if not getattr(channel, "has_ocf", False):
        return b""
    word = bytearray(rnd.octets(label + "/ocf", 4))
    word[0] &= 0x7F
    return bytes(word)


def _reseal(frame: bytes | bytearray, channel: Channel) -> bytes:
    """Recompute the FECF after a deliberate change (so the change is what gets rejected)."""
    if not channel.has_fecf:
        return bytes(frame)
    n = channel.fecf_length
    body = bytes(frame[:-n])
    return body + fecf_value(body, n).to_bytes(n, "big")


# =========================================================================== SAs
def _layout_and_suite(suite: SuiteDef, preset: str) -> tuple[str | SecurityLayout, SuiteDef]:
    if preset == "custom":
        return _CUSTOM[suite.name], _CUSTOM_SUITE.get(suite.name, suite)
    return preset, suite


def _make(suite: SuiteDef, preset: str, channel: Channel, key: bytes, auth_key: bytes | None,
          spi: int, window: int) -> SecurityAssociation:
    layout, sdef = _layout_and_suite(suite, preset)
    abm = None
    if preset == "custom":
        length = getattr(channel, "frame_length", None) or channel.max_frame_length  # type: ignore[union-attr]
        abm = b"\xff" * int(length)  # authenticate everything the MAC covers
    return make_sa(spi, channel, preset=layout, service=sdef.service, cipher=sdef.cipher,
                   mac_algorithm=sdef.mac_algorithm, key=key, auth_key=auth_key, window=window,
                   abm=abm)


@dataclass(frozen=True)
class _Guards:
    """Which counters the window guards for an SA (SCHEMA "Which counter the window guards")."""

    iv: bool
    sn: bool
    #: the IV is a nonce and only partly sent: a replay's IV reconstructs outside the window
    partial_iv_nonce: bool


def _guards(sa: SecurityAssociation) -> _Guards:
    suite = sa.validate()
    iv = suite.counter_iv and suite.needs_iv and sa.iv_length > 0
    sn = sa.sn_length > 0 and sa.transmitted_sn_length > 0 and (sa.encrypt or sa.authenticate)
    partial = suite.needs_iv and 0 < sa.transmitted_iv_length < sa.iv_length
    return _Guards(iv, sn, partial)


# =========================================================================== vectors
def _sa_dict(sa: SecurityAssociation, iv: int, sn: int) -> dict[str, Any]:
    out = sa.to_schema()
    out["iv_hex"] = iv.to_bytes(sa.iv_length, "big").hex() if sa.iv_length else ""
    out["sn_hex"] = sn.to_bytes(sa.sn_length, "big").hex() if sa.sn_length else ""
    return out


def _from_dict(sa: dict[str, Any], frame_type: str, channel: Channel) -> SecurityAssociation:
    return SecurityAssociation.from_schema(sa, frame_type=frame_type, channel=channel)


def _after(sa: SecurityAssociation) -> dict[str, str]:
    return {"iv_hex": sa.iv.hex(), "sn_hex": sa.arsn.hex()}


def _expect_error(vector: dict[str, Any], channel: Channel) -> None:
    """Run a designed negative vector through the engine: it must raise exactly the error."""
    sa = _from_dict(vector["sa"], vector["frame_type"], channel)
    try:
        process_security(bytes.fromhex(vector["input_hex"]), channel, {sa.spi: sa})
    except SdlsQkdError as exc:
        if exc.code != vector["expected_error"]:
            raise GenerationError(f"{vector['id']}: engine raised {exc.code} ({exc}), designed "
                                  f"{vector['expected_error']}") from None
        if _after(sa) != vector["sa_after"]:
            raise GenerationError(f"{vector['id']}: a rejected frame changed the SA") from None
        return
    raise GenerationError(f"{vector['id']}: engine accepted a frame designed to fail with "
                          f"{vector['expected_error']}")


def _config_vectors(rnd: Rand, kind: str, suite: SuiteDef, preset: str,
                    option: int, negatives: Sequence[str]) -> list[dict[str, Any]]:
    """Every vector of one (frame kind, suite, preset) configuration."""
    label = f"{kind}/{suite.name}/{preset}"
    frame_type = _frame_type(kind)
    _, sdef = _layout_and_suite(suite, preset)
    key = rnd.octets(label + "/key", sdef.key_length)
    auth_key = rnd.octets(label + "/auth-key", sdef.auth_key_length) if sdef.auth_key_length \
        else None
    spi = rnd.integer(label + "/spi", 1, 0xFFFE)
    window = rnd.integer(label + "/window", 4, 64)
    # the overhead does not depend on the channel: learn it on a roomy provisional channel
    probe = _make(suite, preset, _channel(kind, option, rnd, label, 200), key, auth_key, spi,
                  window)
    overhead = (probe.security_header_length, probe.mac_length)
    channel = _channel(kind, option, rnd, label, sum(overhead))
    sa = _make(suite, preset, channel, key, auth_key, spi, window)
    guards = _guards(sa)
    channel_dict = channel.to_dict()

    # counters: the receiver holds (iv_rx, sn_rx); the sender uses one step of the window ahead
    iv_rx = rnd.integer(label + "/iv", 2 * 64 + 2, _top(sa.iv_length, 40)) if sa.iv_length \
        else 0
    sn_rx = rnd.integer(label + "/sn", 2 * 64 + 2, _top(sa.sn_length, 20)) if sa.sn_length \
        else 0
    iv_tx = iv_rx + rnd.integer(label + "/iv-step", 1, window) if sa.iv_length else 0
    sn_tx = sn_rx + rnd.integer(label + "/sn-step", 1, window) if sa.sn_length else 0
    if sa.sn_length and not guards.sn:
        sn_tx = sn_rx  # an ARSN nobody checks stays as it is
    frame = unprotected_frame(channel, overhead, rnd, label)
    base = {"frame_type": frame_type, "channel": channel_dict}
    name = f"gen-{rnd.seed}/{label}"

    # ---- positive apply
    tx_dict = _sa_dict(sa, iv_tx, sn_tx)
    tx = _from_dict(tx_dict, frame_type, channel)
    options = EngineOptions(iv_override=bytes.fromhex(tx_dict["iv_hex"])) if sa.iv_length \
        else EngineOptions()
    protected = apply_security(frame, channel, tx, options)
    notes = (f"{suite.name} ({sdef.service.name.lower().replace('_', ' ')}), layout {preset}, "
             f"channel option {option}")
    if sdef.cipher == "AES-256-CBC":
        notes += "; the CBC IV is the SA's iv_hex (inject it where CBC IVs are random)"
    out: list[dict[str, Any]] = [{
        "id": f"{name}/apply", **base, "operation": "apply", "sa": tx_dict,
        "input_hex": frame.hex(), "expected_hex": protected.hex(), "expected_error": None,
        "sa_after": _after(tx), "notes": notes,
    }]

    # ---- positive process
    rx_dict = _sa_dict(sa, iv_rx if guards.iv else iv_tx - 1 if sa.iv_length else 0, sn_rx)
    rx = _from_dict(rx_dict, frame_type, channel)
    result = process_security(protected, channel, {rx.spi: rx})
    _round_trip_check(frame, result.frame, channel, name)
    out.append({
        "id": f"{name}/process", **base, "operation": "process", "sa": rx_dict,
        "input_hex": protected.hex(), "expected_hex": result.data.hex(), "expected_error": None,
        "sa_after": _after(rx), "notes": notes,
    })

    # ---- designed negatives (process)
    for negative in negatives:
        made = _negative(negative, protected, channel, sa, rx_dict, guards,
                         iv_tx, sn_tx, window)
        if made is None:
            continue
        data, sa_dict, error, why = made
        vector = {
            "id": f"{name}/process-{negative}", **base, "operation": "process", "sa": sa_dict,
            "input_hex": data.hex(), "expected_hex": None, "expected_error": error,
            "sa_after": {"iv_hex": sa_dict["iv_hex"], "sn_hex": sa_dict["sn_hex"]},
            "notes": f"{negative}: {why}; {notes}",
        }
        _expect_error(vector, channel)
        out.append(vector)
    return out


def _top(width: int, bits: int) -> int:
    """Largest stored counter drawn: 2^bits, or less for short counters (room for a window)."""
    return min(1 << bits, (1 << (8 * width)) - 2 * 64 - 2)


def _round_trip_check(frame: bytes, recovered: bytes, channel: Channel, name: str) -> None:
    """Process must give back the apply input (FECF recomputed on both sides)."""
    if _reseal(frame, channel) != _reseal(recovered, channel):
        raise GenerationError(f"{name}: process does not give back the apply input")


def _negative(kind: str, protected: bytes, channel: Channel, sa: SecurityAssociation,
              rx_dict: dict[str, Any], guards: _Guards, iv_tx: int, sn_tx: int,
              window: int) -> tuple[bytes, dict[str, Any], str, str] | None:
    """(input, sa, error, why) of one negative vector, or None when it does not apply."""
    n = len(protected)
    trailer = channel.trailer_length
    if kind == "bad_mac":
        if not sa.authenticate:
            return None
        data = bytearray(protected)
        data[n - trailer - 1] ^= 0x01  # last MAC octet
        return _reseal(data, channel), rx_dict, "MacVerificationFailure", \
            "last MAC octet flipped, FECF recomputed"
    if kind in ("replay", "outside_window"):
        if not (guards.iv or guards.sn):
            return None
        sa_dict = dict(rx_dict)
        if kind == "replay":
            if guards.iv:
                sa_dict["iv_hex"] = iv_tx.to_bytes(sa.iv_length, "big").hex()
            if guards.sn:
                sa_dict["sn_hex"] = sn_tx.to_bytes(sa.sn_length, "big").hex()
            why = "frame already accepted"
            if guards.iv and guards.partial_iv_nonce:
                why += ("; its partly sent IV reconstructs to stored + 2^(8 x sent octets), "
                        "outside the window, so no nonce in the window exists to try the MAC "
                        "with (an implementation that tries the MAC first reports "
                        "MacVerificationFailure)")
            return protected, sa_dict, "AntiReplayFailure", why
        if guards.iv:
            sa_dict["iv_hex"] = (iv_tx - window - 1).to_bytes(sa.iv_length, "big").hex()
        if guards.sn:
            sa_dict["sn_hex"] = (sn_tx - window - 1).to_bytes(sa.sn_length, "big").hex()
        return protected, sa_dict, "AntiReplayFailure", \
            f"counter is stored + window + 1 (window {window})"
    sec_off = channel.header_length
    if kind == "wrong_spi":
        data = bytearray(protected)
        data[sec_off + 1] ^= 0x01
        return _reseal(data, channel), rx_dict, "InvalidSpi", \
            "SPI field names an SA not in the table, FECF recomputed"
    if kind == "bad_fecf":
        if not channel.has_fecf:
            return None
        data = bytearray(protected)
        data[-1] ^= 0x01
        return bytes(data), rx_dict, "FecfError", "last FECF octet flipped"
    if kind == "truncated":
        return protected[:max(sec_off + 1, n // 2)], rx_dict, "InvalidFrameLength", \
            f"frame cut to {max(sec_off + 1, n // 2)} of {n} octets"
    if kind == "length_field_lies":
        if isinstance(channel, TcChannel):
            data = bytearray(protected)
            data[2] = (data[2] & 0xFC) | ((n >> 8) & 3)  # says n + 1 octets
            data[3] = n & 0xFF
        elif isinstance(channel, UslpChannel) and not channel.truncated:
            data = bytearray(protected)
            data[4:6] = n.to_bytes(2, "big")
        else:
            return None  # TM and AOS frames have no frame length field
        return _reseal(data, channel), rx_dict, "InvalidFrameLength", \
            f"frame length field says {n + 1} octets, {n} given, FECF recomputed"
    raise InvalidConfiguration(f"unknown negative kind {kind!r}; one of {', '.join(NEGATIVES)}")


# =========================================================================== entry points
def _select(given: Iterable[str] | None, known: Sequence[str], what: str) -> list[str]:
    if not given:
        return list(known)
    chosen = list(dict.fromkeys(given))
    for item in chosen:
        if item not in known:
            raise InvalidConfiguration(f"unknown {what} {item!r}; one of {', '.join(known)}",
                                       field=what)
    return [k for k in known if k in chosen]  # matrix order, whatever the order given


def generate_vectors(seed: int, *, frame_kinds: Iterable[str] | None = None,
                     suites: Iterable[str] | None = None, presets: Iterable[str] | None = None,
                     negatives: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """The vectors of the (filtered) matrix, in matrix order."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise InvalidConfiguration(f"seed must be an integer >= 0, not {seed!r}", field="seed")
    kinds = _select(frame_kinds, FRAME_KINDS, "frame kind")
    suite_names = _select(suites, [s.name for s in SUITES], "suite")
    preset_names = _select(presets, PRESETS, "preset")
    negative_kinds = _select(negatives, NEGATIVES, "negative")
    rnd = Rand(seed)
    out: list[dict[str, Any]] = []
    for kind in kinds:
        for si, suite in enumerate(SUITES):
            if suite.name not in suite_names:
                continue
            for pi, preset in enumerate(PRESETS):
                if preset not in preset_names:
                    continue
                # cycle the channel options so that every combination of the kind appears
                option = (si * len(PRESETS) + pi) % OPTION_COUNTS[kind]
                out.extend(_config_vectors(rnd, kind, suite, preset, option, negative_kinds))
    return out


def generate(seed: int, **filters: Any) -> dict[str, Any]:
    """A whole ``sdls-vectors/1`` document (see :func:`generate_vectors` for the filters)."""
    vectors = generate_vectors(seed, **filters)
    selected = ", ".join(f"{k}={','.join(v)}" for k, v in sorted(filters.items()) if v)
    how = (f"sdls-qkd vectors generate --seed {seed}"
           + (f" ({selected})" if selected else "")
           + ": positive vectors computed by this library's engine (ApplySecurity, then "
             "ProcessSecurity of the same frame); negative vectors designed (one field made "
             "wrong, FECF recomputed unless the FECF is the fault) and checked to raise the "
             "stated error. Octets from SHAKE-256(seed, configuration label).")
    return vectors_io.document(vectors, source="sdls_qkd vectors_generate", how=how)


def generate_text(seed: int, **filters: Any) -> str:
    """The document as the deterministic JSON text :func:`sdls_qkd.vectors.dumps` writes."""
    return vectors_io.dumps(generate(seed, **filters))


def suite_names() -> list[str]:
    return [s.name for s in SUITES]


def suite(name: str) -> SuiteDef:
    try:
        return _SUITE_BY_NAME[name]
    except KeyError:
        raise InvalidConfiguration(f"unknown suite {name!r}", field="suite") from None



# =========================================================================== command line
def _cli(args: Any) -> int:
    """``sdls-qkd vectors generate``: write the document to --out or stdout."""
    import sys
    from pathlib import Path

    text = generate_text(args.seed, frame_kinds=args.frame_kind, suites=args.suite,
                         presets=args.preset, negatives=args.negative)
    if args.out:
        Path(args.out).write_text(text)
        count = text.count('"operation":')
        print(f"wrote {count} vectors to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    return 0


def register_cli(subparsers: Any) -> None:
    """Add ``generate`` to the ``vectors`` sub-commands (called from cli/vectors_cmd.py)."""
    gen = subparsers.add_parser(
        "generate", help="write deterministic sdls-vectors/1 vectors made by this library",
        description="Generate SDLS vectors: frame kind x suite x layout preset x channel "
                    "options, positive (apply, process) and negative (process) vectors. The "
                    "same --seed gives the same file byte for byte.")
    gen.add_argument("--seed", type=int, default=0, help="seed of every key, IV and payload "
                     "(default 0)")
    gen.add_argument("--out", metavar="FILE", help="write to FILE instead of stdout")
    gen.add_argument("--frame-kind", action="append", choices=FRAME_KINDS,
                     help="only this frame kind (repeatable)")
    gen.add_argument("--suite", action="append", choices=[s.name for s in SUITES],
                     help="only this suite (repeatable)")
    gen.add_argument("--preset", action="append", choices=PRESETS,
                     help="only this layout preset (repeatable)")
    gen.add_argument("--negative", action="append", choices=NEGATIVES,
                     help="only this negative kind (repeatable; default all)")
    gen.set_defaults(func=_cli)
