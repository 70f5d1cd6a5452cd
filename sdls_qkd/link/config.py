"""Link configuration: one TOML file describes both ends of a link.

Layout (every table but ``[link]`` and ``[[encryption]]`` is optional)::

    [link]
    scid = 44
    preset = "yamcs"            # security header/trailer layout (sdls_qkd.security.layout)
    cipher = "AES-256-GCM"
    counter_block = 1024        # IVs reserved per state-store write
    reorder_depth = 0           # receiver resequencing buffer (frames)
    control_apid = 2045         # APID of the link's rekey control packets

    [link.tc]                   # uplink channel: TcChannel managed parameters
    vcid = 0
    has_segment_header = true
    [link.tm]                   # downlink channel: TmChannel managed parameters
    vcid = 1
    frame_length = 1786

    [ground]
    state = "ground.sqlite"     # SQLite state file (":memory:" for tests)
    [space]
    state = "space.sqlite"

    [rekey]                     # RekeyPolicy fields
    after_frames = 100000
    grace_frames = 256

    [keys]                      # BufferConfig fields of both key buffers
    depletion = "fail-closed"

    [[encryption]]              # Yamcs-style SA list
    spi = 1
    keyFile = "keys/uplink.key" # raw key octets (Yamcs reads the file as bytes)
    vcId = 0                    # the VC the SA is bound to
    link = "tc"                 # "tc": uplink; "tm": downlink
    seqNumWindow = 2048
    verifySeqNum = true
    rekeySpi = 2                # the partner SPI the next epoch uses

``spi``, ``keyFile``, ``seqNumWindow`` and ``verifySeqNum`` mean what they mean in a Yamcs link's
``encryption`` list; ``link``, ``vcId``, ``rekeySpi`` and ``qkdKeyId`` (the initial key taken from
both key buffers by its ETSI GS QKD 014 key ID, instead of ``keyFile``) are ours.  Anti-replay is
not optional here: ``verifySeqNum = false`` is refused.  Relative paths are relative to the TOML
file.  Every mistake raises :class:`~sdls_qkd.errors.InvalidConfiguration` naming the key.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from uuid import UUID

from sdls_qkd.errors import InvalidConfiguration, UsageError
from sdls_qkd.framing.channel import TcChannel, TmChannel
from sdls_qkd.keys.buffer import BufferConfig, Purpose
from sdls_qkd.link.counters import DEFAULT_BLOCK
from sdls_qkd.link.rekey import RekeyPolicy
from sdls_qkd.security.layout import PRESETS
from sdls_qkd.security.suites import CIPHERS

__all__ = ["DirectionConfig", "LinkConfig", "load_config", "parse_config"]

_IDLE_APID = 0x7FF


@dataclass(frozen=True)
class DirectionConfig:
    """The SA pair of one direction and its initial key."""

    spis: tuple[int, int]
    window: int
    initial_key: bytes | None = field(default=None, repr=False)
    initial_qkd_key_id: UUID | None = None


@dataclass(frozen=True)
class LinkConfig:
    """Everything both link ends share (see the module docstring for the TOML form)."""

    scid: int
    tc: TcChannel
    tm: TmChannel
    uplink: DirectionConfig
    downlink: DirectionConfig
    preset: str = "yamcs"
    cipher: str = "AES-256-GCM"
    counter_block: int = DEFAULT_BLOCK
    reorder_depth: int = 0
    control_apid: int = 0x7FD
    rekey: RekeyPolicy = field(default_factory=RekeyPolicy)
    keys: BufferConfig = field(default_factory=BufferConfig)
    ground_state: str = ":memory:"
    space_state: str = ":memory:"

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise InvalidConfiguration(f"unknown preset {self.preset!r}; known "
                                       f"{sorted(PRESETS)}", field="preset")
        spec = CIPHERS.get(self.cipher)
        if spec is None or not spec.gcm_family:
            raise InvalidConfiguration(f"link ends use an AEAD counter-IV cipher (AES-GCM), not "
                                       f"{self.cipher!r}", field="cipher")
        if not isinstance(self.counter_block, int) or self.counter_block < 1:
            raise InvalidConfiguration("counter_block must be an integer >= 1",
                                       field="counter_block")
        if not isinstance(self.reorder_depth, int) or not 0 <= self.reorder_depth <= 4096:
            raise InvalidConfiguration("reorder_depth must be 0..4096", field="reorder_depth")
        if not isinstance(self.control_apid, int) or not 0 <= self.control_apid < _IDLE_APID:
            raise InvalidConfiguration("control_apid must be 0..2046", field="control_apid")
        spis = [*self.uplink.spis, *self.downlink.spis]
        if len(set(spis)) != 4:
            raise InvalidConfiguration(f"the four SPIs must differ, got {spis}", field="spi")
        for name, d in (("uplink", self.uplink), ("downlink", self.downlink)):
            if d.window < self.counter_block:
                raise InvalidConfiguration(
                    f"{name} seqNumWindow {d.window} is below counter_block "
                    f"{self.counter_block}: a sender restart skips up to one block of IVs and "
                    "the receiver would then reject every frame", field="seqNumWindow")
            if (d.initial_key is None) == (d.initial_qkd_key_id is None):
                raise InvalidConfiguration(f"{name}: give exactly one of keyFile and qkdKeyId",
                                           field="keyFile")
            if d.initial_key is not None and len(d.initial_key) != self.key_length:
                raise InvalidConfiguration(
                    f"{name}: the initial key has {len(d.initial_key)} octets, {self.cipher} "
                    f"needs {self.key_length}", field="keyFile")
        if self.keys.key_size_bits < 8 * self.key_length:
            raise InvalidConfiguration(
                f"QKD keys of {self.keys.key_size_bits} bits are shorter than the "
                f"{8 * self.key_length}-bit session keys they seed", field="key_size_bits")

    @property
    def key_length(self) -> int:
        return CIPHERS[self.cipher].key_length


def _section(data: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise InvalidConfiguration(f"[{name}] must be a table", field=name)
    return value


def _dataclass_from(cls: Any, values: dict[str, Any], where: str) -> Any:
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise InvalidConfiguration(f"[{where}] has unknown keys {unknown}; known {sorted(names)}",
                                   field=unknown[0])
    try:
        return cls(**values)
    except TypeError as exc:
        raise InvalidConfiguration(f"[{where}]: {exc}") from None


def _int(entry: Mapping[str, Any], key: str, where: str, default: int | None = None) -> int:
    value = entry.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidConfiguration(f"{where}: {key} must be an integer, not {value!r}", field=key)
    return value


def _read_key(path: Path, where: str) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidConfiguration(f"{where}: cannot read keyFile {path}: {exc.strerror}",
                                   field="keyFile") from None
    return raw


def _sa_entries(entries: Any, base: Path, tc: TcChannel, tm: TmChannel, counter_block: int,
                ) -> dict[str, DirectionConfig]:
    if not isinstance(entries, list) or not entries:
        raise InvalidConfiguration("[[encryption]] must list the SAs (one per direction)",
                                   field="encryption")
    out: dict[str, DirectionConfig] = {}
    for i, entry in enumerate(entries):
        where = f"encryption[{i}]"
        if not isinstance(entry, dict):
            raise InvalidConfiguration(f"{where} must be a table", field="encryption")
        known = {"spi", "keyFile", "qkdKeyId", "vcId", "link", "seqNumWindow", "verifySeqNum",
                 "rekeySpi", "initialSeqNum"}
        unknown = sorted(set(entry) - known)
        if unknown:
            raise InvalidConfiguration(f"{where} has unknown keys {unknown}", field=unknown[0])
        link = entry.get("link")
        if link not in ("tc", "tm"):
            raise InvalidConfiguration(f"{where}: link must be \"tc\" (uplink) or \"tm\" "
                                       f"(downlink), not {link!r}", field="link")
        direction = "uplink" if link == "tc" else "downlink"
        if direction in out:
            raise InvalidConfiguration(f"{where}: a second SA for the {direction}; the rekey "
                                       "partner is named by rekeySpi", field="spi")
        channel = tc if link == "tc" else tm
        vcid = _int(entry, "vcId", where, channel.vcid)
        if vcid != channel.vcid:
            raise InvalidConfiguration(f"{where}: vcId {vcid} is not the {link} channel's VC "
                                       f"{channel.vcid}", field="vcId")
        if entry.get("verifySeqNum", True) is not True:
            raise InvalidConfiguration(f"{where}: verifySeqNum = false is refused: anti-replay "
                                       "is always on", field="verifySeqNum")
        if "initialSeqNum" in entry:
            raise InvalidConfiguration(f"{where}: initialSeqNum is not supported: counters "
                                       "live in the state store", field="initialSeqNum")
        spi = _int(entry, "spi", where)
        partner = _int(entry, "rekeySpi", where)
        for name, value in (("spi", spi), ("rekeySpi", partner)):
            if not 0 <= value <= 0xFFFF:
                raise InvalidConfiguration(f"{where}: {name} must be 0..65535", field=name)
        window = _int(entry, "seqNumWindow", where, 2 * counter_block)
        if window < 1:
            raise InvalidConfiguration(f"{where}: seqNumWindow must be >= 1",
                                       field="seqNumWindow")
        key = None
        qkd_id = None
        if "keyFile" in entry:
            key_path = Path(str(entry["keyFile"]))
            key = _read_key(key_path if key_path.is_absolute() else base / key_path, where)
        if "qkdKeyId" in entry:
            try:
                qkd_id = UUID(str(entry["qkdKeyId"]))
            except ValueError:
                raise InvalidConfiguration(f"{where}: qkdKeyId is not a UUID",
                                           field="qkdKeyId") from None
        out[direction] = DirectionConfig((spi, partner), window, key, qkd_id)
    for direction in ("uplink", "downlink"):
        if direction not in out:
            raise InvalidConfiguration(f"[[encryption]] has no SA for the {direction}",
                                       field="encryption")
    return out


def parse_config(data: Mapping[str, Any], *, base_dir: str | Path = ".") -> LinkConfig:
    """Build a :class:`LinkConfig` from parsed TOML (paths relative to ``base_dir``)."""
    base = Path(base_dir)
    link = dict(_section(data, "link"))
    tc_values = dict(link.pop("tc", {}))
    tm_values = dict(link.pop("tm", {}))
    if "scid" not in link:
        raise InvalidConfiguration("[link] needs scid", field="scid")
    scid = _int(link, "scid", "[link]")
    tc_values.setdefault("scid", scid)
    tm_values.setdefault("scid", scid)
    tm_values.setdefault("frame_length", 1786)
    try:
        tc = TcChannel.from_dict(tc_values)
        tm = TmChannel.from_dict(tm_values)
    except (TypeError, UsageError) as exc:
        raise InvalidConfiguration(f"[link.tc]/[link.tm]: {exc}") from None
    known = {"scid", "preset", "cipher", "counter_block", "reorder_depth", "control_apid"}
    unknown = sorted(set(link) - known)
    if unknown:
        raise InvalidConfiguration(f"[link] has unknown keys {unknown}", field=unknown[0])
    counter_block = _int(link, "counter_block", "[link]", DEFAULT_BLOCK)
    dirs = _sa_entries(data.get("encryption"), base, tc, tm, counter_block)
    keys_values = dict(_section(data, "keys"))
    if "floors" in keys_values:
        try:
            keys_values["floors"] = {Purpose(k): v for k, v in keys_values["floors"].items()}
        except (ValueError, AttributeError):
            raise InvalidConfiguration("[keys] floors must map purposes to counts",
                                       field="floors") from None
    states = {}
    for end in ("ground", "space"):
        section = _section(data, end)
        unknown = sorted(set(section) - {"state"})
        if unknown:
            raise InvalidConfiguration(f"[{end}] has unknown keys {unknown}", field=unknown[0])
        state = str(section.get("state", ":memory:"))
        if state != ":memory:" and not Path(state).is_absolute():
            state = str(base / state)
        states[end] = state
    extra = sorted(set(data) - {"link", "encryption", "keys", "rekey", "ground", "space"})
    if extra:
        raise InvalidConfiguration(f"unknown tables {extra}", field=extra[0])
    return LinkConfig(
        scid=scid, tc=tc, tm=tm, uplink=dirs["uplink"], downlink=dirs["downlink"],
        preset=str(link.get("preset", "yamcs")), cipher=str(link.get("cipher", "AES-256-GCM")),
        counter_block=counter_block,
        reorder_depth=_int(link, "reorder_depth", "[link]", 0),
        control_apid=_int(link, "control_apid", "[link]", 0x7FD),
        rekey=_dataclass_from(RekeyPolicy, dict(_section(data, "rekey")), "rekey"),
        keys=_dataclass_from(BufferConfig, keys_values, "keys"),
        ground_state=states["ground"], space_state=states["space"])


def load_config(path: str | Path) -> LinkConfig:
    """Read a link TOML file."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise InvalidConfiguration(f"cannot read link configuration {path}: "
                                   f"{exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidConfiguration(f"{path} is not valid TOML: {exc}") from None
    return parse_config(data, base_dir=path.parent)
