"""Field-aware mutation of SDLS-protected frames, with the MAC and FECF recomputed or not.

A random bit flip in a protected frame is stopped by the FECF, and with the FECF fixed by the
MAC: the code behind those checks (SPI lookup, anti-replay, padding, the frame codecs reading
the recovered data) is never reached.  :class:`FrameMutator` knows where every field of one
protected frame is (primary header bit fields, security header, data, MAC, OCF, FECF) and
rebuilds the frame after changing one of them, in one of three modes:

* ``raw`` — nothing recomputed (the FECF check must catch it);
* ``fecf`` — FECF recomputed (the header checks or the MAC must catch it);
* ``mac`` — the SDLS protection recomputed with the SA's keys (the AEAD ciphertext and tag, or
  the cipher and MAC), then the FECF: the change reaches everything behind the MAC.

:func:`reseal` does the same for arbitrary octets (a fuzzer's input): whatever sits in the data
field is sealed as plaintext under the IV the frame names, so process_security gets past the
MAC with fuzzer-chosen headers, counters and pad lengths.

No ``hypothesis`` at import time: the strategies import it lazily.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from sdls_qkd.errors import InvalidConfiguration, SdlsQkdError
from sdls_qkd.framing.channel import AosChannel, Channel, TcChannel, TmChannel, UslpChannel
from sdls_qkd.framing.crc import fecf as fecf_value
from sdls_qkd.security.replay import reconstruct
from sdls_qkd.security.sa import SecurityAssociation

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

__all__ = [
    "MODES",
    "BitField",
    "FrameMutator",
    "Mutant",
    "field_mutants",
    "header_fields",
    "reseal",
    "reseal_fecf",
]

MODES: Final = ("raw", "fecf", "mac")


@dataclass(frozen=True)
class BitField:
    """``width`` bits at bit ``bit`` (bit 0 = most significant bit of octet 0)."""

    name: str
    bit: int
    width: int

    @property
    def end(self) -> int:
        return self.bit + self.width

    def get(self, data: bytes | bytearray) -> int:
        first, last = self.bit // 8, (self.end + 7) // 8
        word = int.from_bytes(data[first:last], "big")
        return (word >> ((8 - self.end % 8) % 8)) & ((1 << self.width) - 1)

    def put(self, data: bytearray, value: int) -> None:
        first, last = self.bit // 8, (self.end + 7) // 8
        shift = (8 - self.end % 8) % 8
        mask = ((1 << self.width) - 1) << shift
        word = int.from_bytes(data[first:last], "big")
        word = (word & ~mask) | ((value % (1 << self.width)) << shift)
        data[first:last] = word.to_bytes(last - first, "big")


def _octets(name: str, offset: int, length: int) -> BitField:
    return BitField(name, 8 * offset, 8 * length)


def header_fields(channel: Channel) -> list[BitField]:
    """The primary header (and segment / secondary header, FHEC, insert zone) fields."""
    f = BitField
    if isinstance(channel, TcChannel):
        out = [f("tfvn", 0, 2), f("bypass_flag", 2, 1), f("control_command_flag", 3, 1),
               f("spare", 4, 2), f("scid", 6, 10), f("vcid", 16, 6), f("frame_length", 22, 10),
               f("frame_sequence_number", 32, 8)]
        if channel.has_segment_header:
            out += [f("sequence_flags", 40, 2), f("map_id", 42, 6)]
        return out
    if isinstance(channel, TmChannel):
        out = [f("tfvn", 0, 2), f("scid", 2, 10), f("vcid", 12, 3), f("ocf_flag", 15, 1),
               f("mc_frame_count", 16, 8), f("vc_frame_count", 24, 8),
               f("secondary_header_flag", 32, 1), f("sync_flag", 33, 1),
               f("packet_order_flag", 34, 1), f("segment_length_id", 35, 2),
               f("first_header_pointer", 37, 11)]
        if channel.secondary_header_length:
            out += [f("secondary_header_version", 48, 2), f("secondary_header_length", 50, 6)]
        return out
    if isinstance(channel, AosChannel):
        out = [f("tfvn", 0, 2), f("scid", 2, 8), f("vcid", 10, 6), f("vc_frame_count", 16, 24),
               f("replay_flag", 40, 1), f("vc_frame_count_usage_flag", 41, 1),
               f("spare", 42, 2), f("vc_frame_count_cycle", 44, 4)]
        offset = 6
        if channel.has_fhec:
            out.append(_octets("fhec", 6, 2))
            offset = 8
        if channel.insert_zone_length:
            out.append(_octets("insert_zone", offset, channel.insert_zone_length))
        return out
    assert isinstance(channel, UslpChannel)
    out = [f("tfvn", 0, 4), f("scid", 4, 16), f("source_dest_flag", 20, 1), f("vcid", 21, 6),
           f("map_id", 27, 4), f("end_of_frame_primary_header_flag", 31, 1)]
    offset = 4
    if not channel.truncated:
        out += [f("frame_length", 32, 16), f("bypass_flag", 48, 1),
                f("protocol_control_command_flag", 49, 1), f("spare", 50, 2),
                f("ocf_flag", 52, 1), f("vc_frame_count_length", 53, 3)]
        offset = 7
        if channel.vc_frame_count_length:
            out.append(_octets("vc_frame_count", 7, channel.vc_frame_count_length))
        offset += channel.vc_frame_count_length
    if channel.insert_zone_length:
        out.append(_octets("insert_zone", offset, channel.insert_zone_length))
    return out


def reseal_fecf(frame: bytes | bytearray, channel: Channel) -> bytes:
    """``frame`` with its FECF recomputed (unchanged when the channel has none or it is short)."""
    if not channel.has_fecf or len(frame) < channel.fecf_length:
        return bytes(frame)
    n = channel.fecf_length
    body = bytes(frame[:-n])
    return body + fecf_value(body, n).to_bytes(n, "big")


# --------------------------------------------------------------------------- layout
@dataclass(frozen=True)
class _Offsets:
    sec: int
    iv: int
    sn: int
    pl: int
    data: int
    data_end: int
    mac_end: int


def _offsets(channel: Channel, sa: SecurityAssociation, n: int) -> _Offsets | None:
    sec = channel.header_length
    iv = sec + 2
    sn = iv + sa.transmitted_iv_length
    pl = sn + sa.transmitted_sn_length
    data = pl + sa.pad_length_field_length
    mac = sa.mac_length if sa.authenticate else 0
    data_end = n - channel.trailer_length - mac
    if data_end < data:
        return None
    return _Offsets(sec, iv, sn, pl, data, data_end, data_end + mac)


def _masked(sa: SecurityAssociation, data: bytes | bytearray) -> bytes:
    mask = sa.abm[:len(data)].ljust(len(data), b"\x00")
    return (int.from_bytes(data, "big") & int.from_bytes(mask, "big")).to_bytes(len(data), "big")


def _full_iv(sa: SecurityAssociation, sent: bytes) -> bytes:
    """The full IV a receiver holding ``sa`` reconstructs from the sent octets."""
    if not sa.iv_length:
        return b""
    if len(sent) >= sa.iv_length:
        return bytes(sent[-sa.iv_length:])
    value = reconstruct(int.from_bytes(sa.iv, "big"), int.from_bytes(sent, "big"), len(sent),
                        sa.iv_length) % (1 << (8 * sa.iv_length))
    return value.to_bytes(sa.iv_length, "big")


def _seal_into(out: bytearray, sa: SecurityAssociation, off: _Offsets, iv: bytes,
               plaintext: bytes) -> None:
    """Write the SDLS protection of ``plaintext`` into ``out`` (headers as they are now)."""
    suite = sa.suite
    if suite.aead is not None:
        aad = _masked(sa, out[:off.data])
        out[off.data:off.mac_end] = suite.aead.seal(iv, aad, plaintext)
        return
    if suite.cipher is not None:
        out[off.data:off.data_end] = suite.cipher.encrypt(iv, plaintext)
    else:
        out[off.data:off.data_end] = plaintext
    if suite.mac is not None:
        out[off.data_end:off.mac_end] = suite.mac.compute(iv, _masked(sa, out[:off.data_end]))


def _plaintext(sa: SecurityAssociation, frame: bytes, off: _Offsets, iv: bytes) -> bytes:
    """The data field of a valid protected frame, decrypted (padding kept)."""
    suite = sa.suite
    if suite.aead is not None:
        return suite.aead.open(iv, _masked(sa, frame[:off.data]), frame[off.data:off.mac_end])
    if suite.cipher is not None:
        return suite.cipher.decrypt(iv, frame[off.data:off.data_end])
    return frame[off.data:off.data_end]


def reseal(frame: bytes | bytearray, channel: Channel, sa: SecurityAssociation) -> bytes:
    """Seal whatever ``frame`` carries in its data field with ``sa`` (the receiver's SA: the IV
    is completed from its stored value) and recompute the FECF.

    For fuzzing ProcessSecurity past the MAC: the result authenticates under ``sa`` whatever the
    header, counter and pad-length octets say.  Octets that cannot be sealed (frame too short,
    a block cipher's data not a whole number of blocks, an IV the suite refuses) are returned
    with only the FECF recomputed.
    """
    out = bytearray(frame)
    off = _offsets(channel, sa, len(out))
    if off is not None and sa.authenticate:
        try:
            iv = _full_iv(sa, bytes(out[off.iv:off.sn]))
            suite = sa.suite
            plaintext = bytes(out[off.data:off.data_end])
            if suite.cipher is not None and suite.block_size and \
                    len(plaintext) % suite.block_size:
                return reseal_fecf(out, channel)
            _seal_into(out, sa, off, iv, plaintext)
        except SdlsQkdError:
            return reseal_fecf(out, channel)
    return reseal_fecf(out, channel)


# --------------------------------------------------------------------------- one frame
@dataclass(frozen=True)
class Mutant:
    """One mutated frame: which field, the value written, the mode, and the octets."""

    field: str
    value: int
    mode: str
    frame: bytes


class FrameMutator:
    """Mutations of one valid protected frame of ``channel`` under the sender's ``sa``.

    ``iv`` is the full IV the frame was protected with (``b""`` when the SA has none).
    """

    def __init__(self, channel: Channel, sa: SecurityAssociation, frame: bytes,
                 iv: bytes = b"") -> None:
        off = _offsets(channel, sa, len(frame))
        if off is None:
            raise InvalidConfiguration("frame too short for the SA's security header and MAC")
        self.channel = channel
        self.sa = sa
        self.frame = bytes(frame)
        self.iv = bytes(iv)
        self.off = off
        self.plaintext = _plaintext(sa, self.frame, off, self.iv)
        sec = off.sec
        fields = header_fields(channel)
        fields.append(_octets("spi", sec, 2))
        if sa.transmitted_iv_length:
            fields.append(_octets("iv", off.iv, sa.transmitted_iv_length))
        if sa.transmitted_sn_length:
            fields.append(_octets("sn", off.sn, sa.transmitted_sn_length))
        if sa.pad_length_field_length:
            fields.append(_octets("pad_length", off.pl, sa.pad_length_field_length))
        if off.data_end > off.data:
            fields.append(_octets("data", off.data, min(4, off.data_end - off.data)))
        if off.mac_end > off.data_end:
            fields.append(_octets("mac", off.data_end, off.mac_end - off.data_end))
        n = len(frame)
        fecf = channel.fecf_length if channel.has_fecf else 0
        if getattr(channel, "has_ocf", False):
            fields.append(_octets("ocf", n - fecf - 4, 4))
        if fecf:
            fields.append(_octets("fecf", n - fecf, fecf))
        self.fields: tuple[BitField, ...] = tuple(fields)
        self._by_name = {bf.name: bf for bf in fields}

    def field(self, name: str) -> BitField:
        try:
            return self._by_name[name]
        except KeyError:
            raise InvalidConfiguration(f"no field {name!r} in this frame; fields: "
                                       f"{', '.join(self._by_name)}") from None

    def mutate(self, name: str, value: int, mode: str = "mac") -> Mutant:
        """The frame with field ``name`` set to ``value`` (mod its range), rebuilt per ``mode``.

        In ``mac`` mode a change of the data field changes the *plaintext* (the sealed data then
        carries it), a change of the IV field seals under the new IV, and the MAC and FECF fields
        themselves are left as written (only the FECF is recomputed after a MAC change).
        """
        if mode not in MODES:
            raise InvalidConfiguration(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        bf = self.field(name)
        out = bytearray(self.frame)
        if mode == "mac" and name not in ("mac", "fecf") and self.sa.authenticate:
            plaintext = self.plaintext
            if name == "data":
                buf = bytearray(plaintext)
                local = BitField("data", 0, min(bf.width, 8 * len(buf)))
                local.put(buf, value)
                plaintext = bytes(buf)
            else:
                bf.put(out, value)
            iv = self.iv
            if name == "iv":
                iv = (self.iv[:len(self.iv) - len(out[self.off.iv:self.off.sn])]
                      + bytes(out[self.off.iv:self.off.sn]))
            # the suite may refuse the value (e.g. a CBC IV length): then the MAC stays wrong
            with contextlib.suppress(SdlsQkdError):
                _seal_into(out, self.sa, self.off, iv, plaintext)
            return Mutant(name, value, mode, reseal_fecf(out, self.channel))
        bf.put(out, value)
        if mode == "raw" or name == "fecf":
            return Mutant(name, value, mode, bytes(out))
        return Mutant(name, value, mode, reseal_fecf(out, self.channel))

    def boundary_values(self, name: str) -> list[int]:
        """0, all ones, the current value +-1, and one flipped top bit."""
        bf = self.field(name)
        top = (1 << bf.width) - 1
        now = bf.get(self.frame)
        return sorted({0, top, (now + 1) & top, (now - 1) & top, now ^ (1 << (bf.width - 1))})

    def all_mutants(self) -> list[Mutant]:
        """Every field x boundary value x mode (deterministic; for corpora and tests)."""
        return [self.mutate(bf.name, value, mode) for bf in self.fields
                for value in self.boundary_values(bf.name) for mode in MODES]


# --------------------------------------------------------------------------- strategies
def field_mutants(mutator: FrameMutator, *, modes: Sequence[str] = MODES,
                  names: Sequence[str] | None = None) -> SearchStrategy[Mutant]:
    """Hypothesis strategy: one field of ``mutator``'s frame set to a boundary or random value,
    rebuilt in one of ``modes``."""
    from hypothesis import strategies as st

    chosen = [bf for bf in mutator.fields if names is None or bf.name in names]
    if not chosen:
        raise InvalidConfiguration("no field to mutate")

    @st.composite
    def draw_mutant(draw: Any) -> Mutant:
        bf = draw(st.sampled_from(chosen))
        value = draw(st.one_of(st.sampled_from(mutator.boundary_values(bf.name)),
                               st.integers(0, (1 << bf.width) - 1)))
        return mutator.mutate(bf.name, value, draw(st.sampled_from(list(modes))))

    return draw_mutant()
