"""Managed parameters: one frozen object per channel kind.

These are what the CCSDS standards call *managed parameters* of a virtual channel: set by
mission configuration, never signalled in-band.  They are the contract between the frame codecs,
the packet service and the SDLS engine (which precomputes its offsets from them).  ``to_dict`` /
``from_dict`` use the ``channel`` object of the ``sdls-vectors/1`` schema.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, Literal

from sdls_qkd.errors import InvalidConfiguration

FrameType = Literal["TC", "TM", "AOS", "USLP"]

#: standard maxima
TC_MAX_FRAME_LENGTH = 1024
TM_MAX_FRAME_LENGTH = 2048
AOS_MAX_FRAME_LENGTH = 2048  # no hard limit in 732.0; a sane managed maximum
USLP_MAX_FRAME_LENGTH = 65536


def _check_range(name: str, value: int, lo: int, hi: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise InvalidConfiguration(f"{name} must be an integer in {lo}..{hi}, not {value!r}")


class _Channel:
    """Shared dict conversion for the channel classes."""

    frame_type: ClassVar[FrameType]

    def to_dict(self) -> dict[str, Any]:
        """The schema ``channel`` object."""
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        """Build from a schema ``channel`` object; keys that do not apply are ignored."""
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        kwargs = {k: v for k, v in data.items() if k in names and v is not None}
        return cls(**kwargs)


@dataclass(frozen=True)
class TcChannel(_Channel):
    """TC virtual channel (232.0-B): frames are variable length up to ``max_frame_length``."""

    frame_type: ClassVar[FrameType] = "TC"
    scid: int = 0
    vcid: int = 0
    tfvn: int = 0
    has_segment_header: bool = False
    map_id: int | None = None
    has_fecf: bool = True
    fecf_length: int = 2
    max_frame_length: int = TC_MAX_FRAME_LENGTH

    def __post_init__(self) -> None:
        _check_range("tfvn", self.tfvn, 0, 0)
        _check_range("scid", self.scid, 0, 0x3FF)
        _check_range("vcid", self.vcid, 0, 0x3F)
        if self.map_id is not None:
            _check_range("map_id", self.map_id, 0, 0x3F)
        _check_range("fecf_length", self.fecf_length, 2, 2)
        _check_range("max_frame_length", self.max_frame_length, 6, TC_MAX_FRAME_LENGTH)

    @property
    def header_length(self) -> int:
        """Primary header plus segment header, octets."""
        return 5 + (1 if self.has_segment_header else 0)

    @property
    def trailer_length(self) -> int:
        return 2 if self.has_fecf else 0


@dataclass(frozen=True)
class TmChannel(_Channel):
    """TM virtual channel (132.0-B): fixed frame length."""

    frame_type: ClassVar[FrameType] = "TM"
    scid: int = 0
    vcid: int = 0
    frame_length: int = 1115
    tfvn: int = 0
    has_fecf: bool = True
    fecf_length: int = 2
    has_ocf: bool = False
    #: octets of the secondary header including its ID octet; 0 if none (max 64)
    secondary_header_length: int = 0

    def __post_init__(self) -> None:
        _check_range("tfvn", self.tfvn, 0, 0)
        _check_range("scid", self.scid, 0, 0x3FF)
        _check_range("vcid", self.vcid, 0, 7)
        _check_range("fecf_length", self.fecf_length, 2, 2)
        _check_range("secondary_header_length", self.secondary_header_length, 0, 64)
        if self.secondary_header_length == 1:
            raise InvalidConfiguration("TM secondary header needs at least 2 octets (ID + data)")
        _check_range("frame_length", self.frame_length, self.header_length + self.trailer_length + 1,
                     TM_MAX_FRAME_LENGTH)

    @property
    def header_length(self) -> int:
        return 6 + self.secondary_header_length

    @property
    def trailer_length(self) -> int:
        return (4 if self.has_ocf else 0) + (2 if self.has_fecf else 0)

    @property
    def data_field_length(self) -> int:
        return self.frame_length - self.header_length - self.trailer_length


@dataclass(frozen=True)
class AosChannel(_Channel):
    """AOS virtual channel (732.0-B): fixed frame length."""

    frame_type: ClassVar[FrameType] = "AOS"
    scid: int = 0
    vcid: int = 0
    frame_length: int = 1786
    tfvn: int = 1
    has_fhec: bool = False
    insert_zone_length: int = 0
    has_ocf: bool = False
    has_fecf: bool = True
    fecf_length: int = 2

    def __post_init__(self) -> None:
        _check_range("tfvn", self.tfvn, 1, 1)
        _check_range("scid", self.scid, 0, 0xFF)
        _check_range("vcid", self.vcid, 0, 0x3F)
        _check_range("fecf_length", self.fecf_length, 2, 2)
        _check_range("insert_zone_length", self.insert_zone_length, 0, AOS_MAX_FRAME_LENGTH)
        _check_range("frame_length", self.frame_length, self.header_length + self.trailer_length + 1,
                     AOS_MAX_FRAME_LENGTH)

    @property
    def header_length(self) -> int:
        """Primary header, FHEC and insert zone, octets."""
        return 6 + (2 if self.has_fhec else 0) + self.insert_zone_length

    @property
    def trailer_length(self) -> int:
        return (4 if self.has_ocf else 0) + (2 if self.has_fecf else 0)

    @property
    def data_field_length(self) -> int:
        return self.frame_length - self.header_length - self.trailer_length


@dataclass(frozen=True)
class UslpChannel(_Channel):
    """USLP virtual channel (732.1-B): fixed (``frame_length`` set) or variable length (None)."""

    frame_type: ClassVar[FrameType] = "USLP"
    scid: int = 0
    vcid: int = 0
    map_id: int = 0
    tfvn: int = 12
    #: fixed frame length in octets, or None for variable-length frames
    frame_length: int | None = None
    has_fecf: bool = True
    fecf_length: int = 2
    has_ocf: bool = False
    insert_zone_length: int = 0
    #: octets of the VC frame count field in the (non-truncated) primary header, 0..7
    vc_frame_count_length: int = 1
    #: truncated primary header (4 octets, EFPH = 1); requires a fixed frame_length
    truncated: bool = False
    max_frame_length: int = USLP_MAX_FRAME_LENGTH

    def __post_init__(self) -> None:
        _check_range("tfvn", self.tfvn, 12, 12)
        _check_range("scid", self.scid, 0, 0xFFFF)
        _check_range("vcid", self.vcid, 0, 0x3F)
        _check_range("map_id", self.map_id, 0, 0xF)
        if self.fecf_length not in (2, 4):
            raise InvalidConfiguration(f"fecf_length must be 2 or 4, not {self.fecf_length!r}")
        _check_range("vc_frame_count_length", self.vc_frame_count_length, 0, 7)
        _check_range("insert_zone_length", self.insert_zone_length, 0, USLP_MAX_FRAME_LENGTH)
        _check_range("max_frame_length", self.max_frame_length, 8, USLP_MAX_FRAME_LENGTH)
        if self.truncated and self.frame_length is None:
            raise InvalidConfiguration("truncated USLP frames need a fixed frame_length")
        if self.truncated and self.has_ocf:
            raise InvalidConfiguration("truncated USLP frames carry no OCF")
        if self.frame_length is not None:
            _check_range("frame_length", self.frame_length,
                         self.header_length + self.trailer_length + 1, self.max_frame_length)

    @property
    def header_length(self) -> int:
        """Primary header plus insert zone, octets."""
        primary = 4 if self.truncated else 7 + self.vc_frame_count_length
        return primary + self.insert_zone_length

    @property
    def trailer_length(self) -> int:
        return (4 if self.has_ocf else 0) + (self.fecf_length if self.has_fecf else 0)


Channel = TcChannel | TmChannel | AosChannel | UslpChannel

CHANNEL_CLASSES: dict[str, type[_Channel]] = {
    "TC": TcChannel,
    "TM": TmChannel,
    "AOS": AosChannel,
    "USLP": UslpChannel,
}


def channel_from_dict(frame_type: str, data: dict[str, Any]) -> Channel:
    """Build the channel object of ``frame_type`` from a schema ``channel`` object."""
    try:
        cls = CHANNEL_CLASSES[frame_type]
    except KeyError:
        raise InvalidConfiguration(f"unknown frame type {frame_type!r}") from None
    try:
        return cls.from_dict(data)  # type: ignore[no-any-return,unused-ignore]
    except TypeError as exc:
        raise InvalidConfiguration(f"bad {frame_type} channel parameters: {exc}") from None
