"""Hypothesis strategies for SDLS: channels of every frame kind, SA configurations of every
suite, unprotected frames that fit them, protected frames, and mutations.

Used by the property tests (apply/process round trips, tamper and replay rejection) and the
fuzz tests (``process_security`` on random and mutated frames raises only library errors).
Frames are built here from the managed parameters with the standards' field layouts, not with
the engine under test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from sdls_qkd.framing.channel import AosChannel, Channel, TcChannel, TmChannel, UslpChannel
from sdls_qkd.framing.crc import fecf as fecf_value
from sdls_qkd.security.layout import primary_header_mask
from sdls_qkd.security.sa import SecurityAssociation

__all__ = [
    "SUITES",
    "SuiteConfig",
    "channels",
    "fit_channel",
    "fix_fecf",
    "free_octets",
    "mutations",
    "sa_configs",
    "sa_pair",
    "unprotected_frame",
]


@dataclass(frozen=True)
class SuiteConfig:
    """One service/algorithm combination of the schema, with the lengths it accepts."""

    name: str
    encrypt: bool
    authenticate: bool
    cipher: str | None
    mac_algorithm: str | None
    key_length: int
    iv_lengths: tuple[int, ...]
    mac_lengths: tuple[int, ...]
    #: block size the data must be padded to (CBC), else 0
    block: int = 0
    #: an anti-replay counter exists without an SN (GCM-family IV)
    iv_counter: bool = False


SUITES: tuple[SuiteConfig, ...] = (
    SuiteConfig("AES-256-GCM", True, True, "AES-256-GCM", None, 32, (12, 16), (16, 12, 8),
                iv_counter=True),
    SuiteConfig("AES-128-GCM", True, True, "AES-128-GCM", None, 16, (12,), (16,), iv_counter=True),
    SuiteConfig("AES-256-GCM-SIV", True, True, "AES-256-GCM-SIV", None, 32, (12,), (16,),
                iv_counter=True),
    SuiteConfig("GMAC", False, True, "AES-256-GCM", None, 32, (12,), (16, 8), iv_counter=True),
    SuiteConfig("AES-256-CMAC", False, True, None, "AES-256-CMAC", 32, (0,), (16, 8)),
    SuiteConfig("HMAC-SHA-256", False, True, None, "HMAC-SHA-256", 32, (0,), (16, 32)),
    SuiteConfig("HMAC-SHA-384", False, True, None, "HMAC-SHA-384", 48, (0,), (16, 48)),
    SuiteConfig("HMAC-SHA-512", False, True, None, "HMAC-SHA-512", 64, (0,), (16, 64)),
    SuiteConfig("AES-256-CBC", True, False, "AES-256-CBC", None, 32, (16,), (0,), block=16),
    SuiteConfig("AES-256-CBC+HMAC-SHA-256", True, True, "AES-256-CBC", "HMAC-SHA-256", 32,
                (16,), (16,), block=16),
    SuiteConfig("GCM-keystream", True, False, "AES-256-GCM", None, 32, (12,), (0,),
                iv_counter=True),
    SuiteConfig("clear", False, False, None, None, 0, (0,), (0,)),
)

SUITE_NAMES = tuple(s.name for s in SUITES)


# --------------------------------------------------------------------------- channels
def channels(kind: str | None = None, *, data_room: int = 96) -> st.SearchStrategy[Channel]:
    """Channels of ``kind`` (or any kind) with optional fields drawn; fixed-length kinds get a
    frame length leaving about ``data_room`` octets plus up to 96 of security overhead."""
    kinds = (kind,) if kind else ("TC", "TM", "AOS", "USLP")
    return st.sampled_from(kinds).flatmap(lambda k: _CHANNELS[k](data_room))


def _tc(room: int) -> st.SearchStrategy[Channel]:
    return st.builds(
        lambda scid, vcid, seg, map_id, fecf: TcChannel(
            scid=scid, vcid=vcid, has_segment_header=seg, map_id=map_id if seg else None,
            has_fecf=fecf),
        st.integers(0, 0x3FF), st.integers(0, 63), st.booleans(), st.integers(0, 63),
        st.booleans())


def _tm(room: int) -> st.SearchStrategy[Channel]:
    return st.builds(
        lambda scid, vcid, ocf, fecf, shl, extra: TmChannel(
            scid=scid, vcid=vcid, has_ocf=ocf, has_fecf=fecf, secondary_header_length=shl,
            frame_length=6 + shl + (4 if ocf else 0) + (2 if fecf else 0) + room + extra),
        st.integers(0, 0x3FF), st.integers(0, 7), st.booleans(), st.booleans(),
        st.sampled_from((0, 2, 5)), st.integers(0, 96))


def _aos(room: int) -> st.SearchStrategy[Channel]:
    return st.builds(
        lambda scid, vcid, fhec, iz, ocf, fecf, extra: AosChannel(
            scid=scid, vcid=vcid, has_fhec=fhec, insert_zone_length=iz, has_ocf=ocf,
            has_fecf=fecf,
            frame_length=6 + (2 if fhec else 0) + iz + (4 if ocf else 0) + (2 if fecf else 0)
            + room + extra),
        st.integers(0, 0xFF), st.integers(0, 62), st.booleans(), st.sampled_from((0, 3)),
        st.booleans(), st.booleans(), st.integers(0, 96))


def _uslp(room: int) -> st.SearchStrategy[Channel]:
    def make(scid: int, vcid: int, map_id: int, fixed: bool, fecf: int, ocf: bool, iz: int,
             vcf: int, extra: int) -> UslpChannel:
        header = 7 + vcf + iz
        trailer = (4 if ocf else 0) + fecf
        return UslpChannel(scid=scid, vcid=vcid, map_id=map_id, has_fecf=fecf > 0,
                           fecf_length=fecf or 2, has_ocf=ocf, insert_zone_length=iz,
                           vc_frame_count_length=vcf,
                           frame_length=header + trailer + room + extra if fixed else None)
    return st.builds(make, st.integers(0, 0xFFFF), st.integers(0, 62), st.integers(0, 15),
                     st.booleans(), st.sampled_from((0, 2, 4)), st.booleans(),
                     st.sampled_from((0, 2)), st.integers(0, 3), st.integers(0, 96))


_CHANNELS = {"TC": _tc, "TM": _tm, "AOS": _aos, "USLP": _uslp}


# --------------------------------------------------------------------------- SAs
def _abm(channel: Channel, sh_len: int, data_ff: bool) -> bytes:
    """Header mask of our presets + SPI/SN/PL authenticated, IV not, data all-ones if asked."""
    mask = bytearray(primary_header_mask(channel))
    mask += b"\xff" * sh_len
    if data_ff:
        mask += b"\xff" * 2048
    return bytes(mask)


@st.composite
def sa_configs(draw: st.DrawFn, channel: Channel, suite: SuiteConfig | None = None,
               spi: int | None = None) -> dict[str, Any]:
    """A schema ``sa`` object for ``channel`` (valid, strict: no quirk needed)."""
    cfg = suite or draw(st.sampled_from(SUITES))
    key = draw(st.binary(min_size=cfg.key_length, max_size=cfg.key_length)) if cfg.key_length \
        else b""
    iv_length = draw(st.sampled_from(cfg.iv_lengths))
    clear = not cfg.encrypt and not cfg.authenticate
    tiv = iv_length if clear or not iv_length else draw(st.integers(max(1, iv_length - 4),
                                                                    iv_length))
    if cfg.block or not iv_length:
        tiv = iv_length  # CBC IVs are random: always sent whole
    sn_length = 0 if clear else draw(st.sampled_from((0, 0, 2, 4)))
    tsn = draw(st.integers(1, sn_length)) if sn_length else 0
    if cfg.authenticate and not cfg.iv_counter and not sn_length:
        sn_length, tsn = 4, 4  # MAC-only suites get an ARSN (anti-replay on)
    pl = 1 if cfg.block else 0
    mac = draw(st.sampled_from(cfg.mac_lengths))
    sh_len = 2 + tiv + tsn + pl
    mac_only = cfg.authenticate and (cfg.mac_algorithm is not None or not cfg.encrypt)
    abm = bytearray(_abm(channel, sh_len, mac_only))
    hdr = len(primary_header_mask(channel))
    abm[hdr + 2: hdr + 2 + tiv] = bytes(tiv)  # the IV is authenticated as the nonce
    window = draw(st.integers(1, 64))
    stored_iv = draw(st.integers(0, 2 ** 32)) if iv_length else 0
    stored_sn = draw(st.integers(0, 2 ** 12)) if sn_length else 0
    return {
        "spi": draw(st.integers(1, 0xFFFE)) if spi is None else spi,
        "encrypt": cfg.encrypt,
        "authenticate": cfg.authenticate,
        "cipher": cfg.cipher,
        "mac_algorithm": cfg.mac_algorithm,
        "key_hex": key.hex() or None,
        "iv_length": iv_length,
        "transmitted_iv_length": tiv,
        "iv_hex": stored_iv.to_bytes(iv_length, "big").hex() if iv_length else "",
        "sn_length": sn_length,
        "transmitted_sn_length": tsn,
        "sn_hex": stored_sn.to_bytes(sn_length, "big").hex() if sn_length else "",
        "window": window,
        "pad_length_field_length": pl,
        "mac_length": mac,
        "abm_hex": bytes(abm).hex(),
        "suite_name": cfg.name,
    }


def sa_pair(config: dict[str, Any], channel: Channel) -> tuple[SecurityAssociation,
                                                                 SecurityAssociation]:
    """(sender, receiver) from one configuration: the sender's counters one ahead (the schema's
    sender uses its stored value, the receiver holds the last accepted one)."""
    cfg = {k: v for k, v in config.items() if k != "suite_name"}
    rx = SecurityAssociation.from_schema(cfg, frame_type=channel.frame_type, channel=channel)
    tx = SecurityAssociation.from_schema(cfg, frame_type=channel.frame_type, channel=channel)
    if tx.iv_length:
        tx.iv = (int.from_bytes(rx.iv, "big") + 1).to_bytes(tx.iv_length, "big")
    if tx.sn_length:
        tx.arsn = (int.from_bytes(rx.arsn, "big") + 1).to_bytes(tx.sn_length, "big")
    return tx, rx


# --------------------------------------------------------------------------- frames
def overhead(sa: SecurityAssociation) -> tuple[int, int]:
    """(security header, trailer) octets of a strict SA."""
    return sa.security_header_length, sa.mac_length


def _tc_header(channel: TcChannel, total: int, seq: int) -> bytes:
    b0 = (1 << 5) | (channel.scid >> 8)  # type BD: bypass 1, control 0
    word = bytes([b0, channel.scid & 0xFF, (channel.vcid << 2) | ((total - 1) >> 8),
                  (total - 1) & 0xFF, seq & 0xFF])
    if channel.has_segment_header:
        word += bytes([0xC0 | (channel.map_id or 0)])
    return word


def _tm_header(channel: TmChannel, count: int) -> bytes:
    first = (channel.scid << 4) | (channel.vcid << 1) | int(channel.has_ocf)
    status = ((1 if channel.secondary_header_length else 0) << 15) | (3 << 11)
    head = first.to_bytes(2, "big") + bytes([count & 0xFF, (count >> 8) & 0xFF]) + \
        status.to_bytes(2, "big")
    if channel.secondary_header_length:
        head += bytes([channel.secondary_header_length - 1]) + \
            bytes(channel.secondary_header_length - 1)
    return head


def _aos_header(channel: AosChannel, count: int) -> bytes:
    first = (1 << 14) | (channel.scid << 6) | channel.vcid
    head = first.to_bytes(2, "big") + (count & 0xFFFFFF).to_bytes(3, "big") + b"\x00"
    if channel.has_fhec:
        from sdls_qkd.framing.fhec import fhec_encode

        head += fhec_encode(first, 0).to_bytes(2, "big")
    return head + bytes([0x5A]) * channel.insert_zone_length


def _uslp_header(channel: UslpChannel, total: int, count: int) -> bytes:
    word = (12 << 28) | (channel.scid << 12) | (channel.vcid << 5) | (channel.map_id << 1)
    head = word.to_bytes(4, "big") + (total - 1).to_bytes(2, "big")
    head += bytes([(1 << 7) | (int(channel.has_ocf) << 3) | channel.vc_frame_count_length])
    head += (count % (1 << (8 * channel.vc_frame_count_length))).to_bytes(
        channel.vc_frame_count_length, "big") if channel.vc_frame_count_length else b""
    return head + bytes([0x5A]) * channel.insert_zone_length


def unprotected_frame(channel: Channel, sa: SecurityAssociation, payload: bytes,
                      count: int = 0) -> bytes:
    """A frame as apply takes it (SCHEMA "Inputs for apply") carrying ``payload``.

    Variable-length kinds: header + payload + FECF slot.  Fixed-length kinds: the payload is cut
    or zero-extended to the data field left by the SA's overhead, slots zeroed.
    """
    sh, mac = overhead(sa)
    fecf = channel.fecf_length if channel.has_fecf else 0
    if isinstance(channel, TcChannel):
        total = channel.header_length + len(payload) + fecf
        return _tc_header(channel, total, count) + payload + bytes(fecf)
    ocf = b"\xc0\x00\x00\x01" if getattr(channel, "has_ocf", False) else b""
    if isinstance(channel, UslpChannel) and channel.frame_length is None:
        total = channel.header_length + len(payload) + len(ocf) + fecf
        return _uslp_header(channel, total, count) + payload + ocf + bytes(fecf)
    assert channel.frame_length is not None
    if isinstance(channel, TmChannel):
        head = _tm_header(channel, count)
    elif isinstance(channel, AosChannel):
        head = _aos_header(channel, count)
    else:
        head = _uslp_header(channel, channel.frame_length, count)
    room = channel.frame_length - len(head) - sh - mac - channel.trailer_length
    data = payload[:room].ljust(room, b"\x00")
    return head + bytes(sh) + data + bytes(mac) + ocf + bytes(fecf)


def fit_channel(channel: Channel, sa: SecurityAssociation) -> Channel:
    """``channel`` with its fixed frame length trimmed so that a block cipher's data field is a
    whole number of blocks (variable-length channels are returned as they are)."""
    from dataclasses import replace

    length = getattr(channel, "frame_length", None)
    block = sa.suite.block_size
    if length is None or not block:
        return channel
    sh, mac = overhead(sa)
    room = length - channel.header_length - sh - mac - channel.trailer_length
    return replace(channel, frame_length=length - room % block)


def fix_fecf(frame: bytes | bytearray, channel: Channel) -> bytes:
    """Recompute the FECF of a (possibly modified) frame."""
    if not channel.has_fecf:
        return bytes(frame)
    n = channel.fecf_length
    body = bytes(frame[:-n])
    return body + fecf_value(body, n).to_bytes(n, "big")


def free_octets(channel: Channel) -> list[int]:
    """Header octets the engine neither reads nor (with our masks) authenticates: counters
    and insert zones; changing them must not affect SDLS."""
    if isinstance(channel, TcChannel):
        return [4]  # frame sequence number
    if isinstance(channel, TmChannel):
        return [2, 3]  # MC / VC frame counts
    if isinstance(channel, AosChannel):
        iz_start = 6 + (2 if channel.has_fhec else 0)
        return [2, 3, 4] + list(range(iz_start, iz_start + channel.insert_zone_length))
    return list(range(7, 7 + channel.vc_frame_count_length)) + \
        list(range(7 + channel.vc_frame_count_length, channel.header_length))


def mutations(frame: bytes) -> st.SearchStrategy[bytes]:
    """Bit flips, truncations, extensions, octet overwrites and splices of ``frame``."""
    n = len(frame)

    def flip(bits: list[int]) -> bytes:
        out = bytearray(frame)
        for bit in bits:
            if out:
                out[(bit // 8) % len(out)] ^= 1 << (bit % 8)
        return bytes(out)

    def overwrite(pos: int, data: bytes) -> bytes:
        pos = pos % (n + 1)
        return frame[:pos] + data + frame[pos + len(data):]

    return st.one_of(
        st.lists(st.integers(0, max(8 * n - 1, 0)), min_size=1, max_size=6).map(flip),
        st.integers(0, n).map(lambda k: frame[:k]),
        st.binary(min_size=1, max_size=40).map(lambda extra: frame + extra),
        st.tuples(st.integers(0, n), st.binary(min_size=1, max_size=8)).map(
            lambda t: overwrite(*t)),
        st.tuples(st.integers(0, n), st.integers(0, n)).map(
            lambda t: frame[:t[0]] + frame[t[1]:]),
    )
