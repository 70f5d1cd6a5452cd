"""SDLS verification for ``sdls-qkd inspect --sa``: security header, MAC and anti-replay verdicts.

An SA/key file is an ``sdls-vectors/1`` document (:mod:`sdls_qkd.vectors`: every SDLS vector
contributes its channel, its SA and the engine options of its quirks) or a link configuration
TOML (:func:`sdls_qkd.link.config.load_config`: the first SPI of each direction with its
``keyFile`` key, counters at zero).  For each frame the SA is found by the frame's GVCID and the
SPI of its security header, and the frame goes through the engine's own
:func:`~sdls_qkd.security.engine.process_security` twice, on fresh copies of the SA (nothing is
ever written back):

1. with anti-replay off: the MAC verdict and the recovered data field;
2. with the file's options: the anti-replay verdict against the SA's stored ARSN / IV.

Counters follow the ``sdls-vectors/1`` convention: a ``process`` vector holds the receiver's
last accepted value, an ``apply`` vector the sender's next one, so the receiver of an ``apply``
vector's frame holds that value minus one.

Key octets never leave :class:`~sdls_qkd.security.sa.SdlsKey`: no node, verdict or message
carries them.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdls_qkd.dissect import (
    FRAME_KINDS,
    Dissection,
    DissectOptions,
    Node,
    detect_kind,
    dissect,
    ep_packet_nodes,
    gvcid,
)
from sdls_qkd.errors import (
    AntiReplayFailure,
    InvalidConfiguration,
    InvalidSpi,
    MacVerificationFailure,
    SdlsQkdError,
)
from sdls_qkd.framing.channel import Channel, channel_from_dict
from sdls_qkd.security.engine import SUPPORTED_QUIRKS, EngineOptions, process_security
from sdls_qkd.security.sa import SecurityAssociation

__all__ = ["KeyFile", "SaEntry", "inspect_secured", "load_key_file"]


@dataclass(frozen=True)
class SaEntry:
    """One SA of a key file: where it comes from, its channel and options, fresh copies."""

    source: str
    channel: Channel
    spi: int
    options: EngineOptions
    factory: Callable[[], SecurityAssociation] = dataclasses.field(repr=False)
    #: how the stored counters were obtained (shown with the anti-replay verdict)
    counters: str = ""

    def fresh(self) -> SecurityAssociation:
        """A new SA object (inspection never touches a shared one)."""
        return self.factory()


@dataclass(frozen=True)
class KeyFile:
    """The SAs of an SA/key file."""

    path: str
    entries: tuple[SaEntry, ...]

    def for_channel(self, kind: str, scid: int, vcid: int) -> list[SaEntry]:
        """Entries whose channel is this frame type and GVCID."""
        return [e for e in self.entries if e.channel.frame_type == kind
                and e.channel.scid == scid and e.channel.vcid == vcid]


# =========================================================================== loading
def _minus_one(hex_text: Any) -> Any:
    if not isinstance(hex_text, str) or not hex_text:
        return hex_text
    value = int(hex_text, 16)
    return (max(0, value - 1)).to_bytes(len(hex_text) // 2, "big").hex()


def _vector_entries(path: str, vector_id: str | None) -> list[SaEntry]:
    from sdls_qkd import vectors

    vf = vectors.load(path)
    chosen = [v for v in vf.vectors if v.get("kind") is None]
    if vector_id is not None:
        chosen = [v for v in chosen if v["id"] == vector_id]
        if not chosen:
            raise InvalidConfiguration(f"{path}: no SDLS vector with id {vector_id!r}",
                                       field="vector")
    entries: list[SaEntry] = []
    seen: set[str] = set()
    for vector in chosen:
        frame_type = vector["frame_type"]
        sa_doc = dict(vector["sa"])
        counters = "stored counters: the vector's receiver state"
        if vector["operation"] == "apply":  # sender's next value -> receiver's last accepted
            sa_doc["iv_hex"] = _minus_one(sa_doc.get("iv_hex"))
            sa_doc["sn_hex"] = _minus_one(sa_doc.get("sn_hex"))
            counters = "stored counters: the vector's sender state minus one"
        quirks = sorted(q for q in vector.get("quirks") or [] if q in SUPPORTED_QUIRKS)
        key = json.dumps([frame_type, vector["channel"], sa_doc, quirks], sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        try:
            channel = channel_from_dict(frame_type, vector["channel"])
        except SdlsQkdError:
            continue  # a vector about a bad channel names no usable SA
        entries.append(SaEntry(
            f"vector {vector['id']!r}", channel, sa_doc["spi"], EngineOptions.from_quirks(quirks),
            _schema_factory(sa_doc, frame_type, channel), counters))
    return entries


def _schema_factory(sa_doc: dict[str, Any], frame_type: str,
                    channel: Channel) -> Callable[[], SecurityAssociation]:
    return lambda: SecurityAssociation.from_schema(sa_doc, frame_type=frame_type,
                                                   channel=channel)


def _link_entries(path: str) -> list[SaEntry]:
    from sdls_qkd.link.config import load_config
    from sdls_qkd.security.layout import make_sa

    cfg = load_config(path)
    entries: list[SaEntry] = []
    for name, direction, channel in (("uplink", cfg.uplink, cfg.tc),
                                     ("downlink", cfg.downlink, cfg.tm)):
        key = direction.initial_key
        if key is None:  # qkdKeyId: the key is in the QKD key buffer, not in the file
            continue
        spi = direction.spis[0]

        def factory(spi: int = spi, channel: Channel = channel, key: bytes = key,
                    window: int = direction.window) -> SecurityAssociation:
            return make_sa(spi, channel, preset=cfg.preset, cipher=cfg.cipher, key=key,
                           window=window)

        entries.append(SaEntry(f"{path} {name} SPI {spi}", channel, spi, EngineOptions(),
                               factory, "stored counters: zero (a fresh link; live counters "
                               "are in the state store)"))
    return entries


def load_key_file(path: str, *, vector_id: str | None = None) -> KeyFile:
    """Read an SA/key file (``.toml``: link configuration; else ``sdls-vectors/1``).

    Raises :class:`~sdls_qkd.errors.InvalidConfiguration` (a subclass of it) when the file is
    unreadable or invalid.
    """
    if Path(path).suffix.lower() == ".toml":
        if vector_id is not None:
            raise InvalidConfiguration("--vector applies to sdls-vectors/1 files only",
                                       field="vector")
        entries = _link_entries(path)
    else:
        entries = _vector_entries(path, vector_id)
    if not entries:
        raise InvalidConfiguration(f"{path}: defines no usable SA", field="sa")
    return KeyFile(path, tuple(entries))


# =========================================================================== verification
@dataclass
class _Outcome:
    """What the engine said about one frame under one SA entry."""

    entry: SaEntry
    sa: SecurityAssociation | None = None
    result: Any = None  # ProcessResult
    error: SdlsQkdError | None = None
    mac: str = "not_checked"
    mac_text: str = ""
    replay: str = "not_checked"
    replay_text: str = ""
    stored_iv: bytes = b""
    stored_sn: bytes = b""

    @property
    def verified(self) -> bool:
        return self.error is None and self.replay not in ("replay", "outside_window")


def _guarded(sa: SecurityAssociation) -> tuple[bool, bool]:
    """(ARSN guarded, IV guarded) by the anti-replay window (the engine's rule)."""
    suite = sa.validate()
    clear = not sa.encrypt and not sa.authenticate
    guard_sn = sa.sn_length > 0 and sa.transmitted_sn_length > 0 and not clear
    guard_iv = suite.counter_iv and suite.needs_iv and sa.iv_length > 0
    return guard_sn, guard_iv


def _evaluate(entry: SaEntry, frame: bytes, replay_check: bool) -> _Outcome:
    out = _Outcome(entry)
    try:
        sa = entry.fresh()
        out.sa = sa
        out.stored_iv, out.stored_sn = sa.iv, sa.arsn
        out.result = process_security(frame, entry.channel, {entry.spi: sa},
                                      dataclasses.replace(entry.options, anti_replay=False))
    except MacVerificationFailure as exc:
        out.error, out.mac, out.mac_text = exc, "invalid", f"invalid ({exc.message})"
        out.replay_text = "not checked (MAC invalid)"
        return out
    except AntiReplayFailure as exc:  # a counter that cannot even be reconstructed
        out.error = exc
        out.replay = "replay" if "replayed" in exc.message else "outside_window"
        out.replay_text = f"{out.replay.replace('_', ' ')} ({exc.message})"
        out.mac_text = "not checked (counter rejected first)"
        return out
    except SdlsQkdError as exc:
        out.error = exc
        out.mac_text = f"not checked ({type(exc).__name__})"
        out.replay_text = "not checked"
        return out
    if out.result.spi is None:
        out.mac, out.mac_text = "not_applicable", "not applicable (control frame, not secured)"
        out.replay, out.replay_text = "not_applicable", "not applicable (control frame)"
        return out
    if sa.authenticate:
        out.mac, out.mac_text = "valid", "valid"
    else:
        out.mac = "not_applicable"
        out.mac_text = ("not applicable (encryption only, no MAC)" if sa.encrypt
                        else "not applicable (clear mode)")
    _replay_verdict(out, frame, replay_check)
    return out


def _replay_verdict(out: _Outcome, frame: bytes, replay_check: bool) -> None:
    entry, sa, result = out.entry, out.sa, out.result
    assert sa is not None
    guard_sn, guard_iv = _guarded(sa)
    parts = []
    if guard_sn:
        parts.append(f"ARSN {result.sn.hex()} vs stored {out.stored_sn.hex()}")
    if guard_iv:
        parts.append(f"IV {result.iv.hex()} vs stored {out.stored_iv.hex()}")
    detail = f"{'; '.join(parts)}, window {sa.window}" if parts else ""
    if not parts:
        out.replay, out.replay_text = "not_applicable", "not applicable (no counter to check)"
        return
    if not replay_check:
        out.replay, out.replay_text = "not_checked", f"not checked (--no-replay-check; {detail})"
        return
    if not entry.options.anti_replay:
        out.replay = "not_checked"
        out.replay_text = f"not checked (SA file quirk ignore_anti_replay; {detail})"
        return
    try:
        process_security(frame, entry.channel, {entry.spi: entry.fresh()}, entry.options)
    except AntiReplayFailure as exc:
        counter = result.iv if exc.field == "iv" else result.sn
        stored = out.stored_iv if exc.field == "iv" else out.stored_sn
        below = int.from_bytes(counter, "big") <= int.from_bytes(stored, "big")
        out.replay = "replay" if below else "outside_window"
        out.replay_text = f"{out.replay.replace('_', ' ')} ({exc.message}; {entry.counters})"
        return
    except SdlsQkdError as exc:  # not expected: pass 1 accepted everything else
        out.replay, out.replay_text = "not_checked", f"not checked ({exc})"
        return
    out.replay, out.replay_text = "accepted", f"accepted ({detail}; {entry.counters})"


def _pick(candidates: list[SaEntry], frame: bytes, replay_check: bool) -> tuple[_Outcome, int]:
    """The first candidate that verifies, else the first one's outcome; and how many tried."""
    outcomes: list[_Outcome] = []
    for entry in candidates:
        outcome = _evaluate(entry, frame, replay_check)
        if outcome.verified:
            return outcome, len(outcomes) + 1
        outcomes.append(outcome)
    return outcomes[0], len(outcomes)


def dissect_options(channel: Channel) -> DissectOptions:
    """Dissector options from a channel's managed parameters (security data field opaque)."""
    return DissectOptions(
        has_fecf=channel.has_fecf, fecf_length=channel.fecf_length,
        has_segment_header=bool(getattr(channel, "has_segment_header", False)),
        has_fhec=bool(getattr(channel, "has_fhec", False)),
        insert_zone_length=int(getattr(channel, "insert_zone_length", 0)),
        has_ocf=bool(getattr(channel, "has_ocf", False)), secured=True)


def _raw(name: str, frame: bytes, start: int, end: int, meaning: str = "") -> Node:
    chunk = frame[start:end]
    shown = chunk.hex() if len(chunk) <= 64 else chunk[:32].hex() + f"...({len(chunk)} octets)"
    return Node(name, shown, meaning, start, len(chunk))


def _algorithms(sa: SecurityAssociation) -> str:
    service = sa.service.name.lower().replace("_", " ")
    names = "+".join(a for a in (sa.cipher, sa.mac_algorithm) if a)
    return f"{service}, {names}" if names else service


def _security_nodes(frame: bytes, out: _Outcome) -> tuple[list[Node], int, int, str]:
    """Security header, protected data, trailer and recovered data nodes; the span
    (start, end) of the frame they replace; a note on an EP PDU in the data ('' if none)."""
    channel, sa = out.entry.channel, out.sa
    assert sa is not None
    sec = channel.header_length
    iv_off = sec + 2
    sn_off = iv_off + sa.transmitted_iv_length
    pl_off = sn_off + sa.transmitted_sn_length
    data_off = pl_off + sa.pad_length_field_length
    trailer_start = len(frame) - channel.trailer_length
    mac_len = sa.mac_length
    data_end = max(data_off, trailer_start - mac_len)
    result = out.result
    header = _raw("security_header", frame, sec, data_off)
    header.children.append(Node("spi", sa.spi, f"SA {sa.spi} from {out.entry.source}: "
                                f"{_algorithms(sa)}", sec, 2))
    if sa.transmitted_iv_length:
        full = f"; full IV {result.iv.hex()}" if result is not None and result.iv else ""
        header.children.append(_raw("iv", frame, iv_off, sn_off,
                                    f"transmitted IV ({sa.transmitted_iv_length} of "
                                    f"{sa.iv_length} octets){full}; stored {out.stored_iv.hex()}"))
    if sa.transmitted_sn_length:
        full = f"; full ARSN {result.sn.hex()}" if result is not None and result.sn else ""
        header.children.append(_raw("arsn", frame, sn_off, pl_off,
                                    f"transmitted sequence number ({sa.transmitted_sn_length} of "
                                    f"{sa.sn_length} octets){full}; stored "
                                    f"{out.stored_sn.hex()}"))
    if sa.pad_length_field_length:
        pad = int.from_bytes(frame[pl_off:data_off], "big")
        header.children.append(Node("pad_length", pad, f"{pad} pad octets", pl_off,
                                    sa.pad_length_field_length))
    nodes = [header]
    what = "ciphertext" if sa.encrypt else ("plaintext, authenticated" if sa.authenticate
                                            else "plaintext, clear mode")
    nodes.append(_raw("data_field", frame, data_off, data_end, f"protected frame data ({what})"))
    if mac_len:
        trailer = _raw("security_trailer", frame, data_end, data_end + mac_len)
        trailer.children.append(_raw("mac", frame, data_end, data_end + mac_len,
                                     f"MAC {out.mac_text}"))
        nodes.append(trailer)
    note = ""
    if out.verified and result is not None and result.spi is not None:
        plain = bytes(result.data)
        recovered = _raw("decrypted_data_field", plain, 0, len(plain),
                         f"{len(plain)} octets recovered by ProcessSecurity"
                         + ("" if sa.encrypt else " (not encrypted: as sent)"))
        recovered.offset = data_off
        if channel.frame_type == "TC":  # padded in front so that offsets are the frame's
            ep = ep_packet_nodes(bytes(data_off) + plain, data_off, with_header=True)
            if ep is not None:
                recovered.children.extend(ep[0])
                note = ep[1]
        nodes.append(recovered)
    return nodes, sec, trailer_start, note


def _splice(root: Node, nodes: list[Node], start: int, end: int) -> None:
    """Replace the root's children inside [start, end) by ``nodes``."""
    keep = [c for c in root.children if not start <= c.offset < end]
    before = [c for c in keep if c.offset < start]
    after = [c for c in keep if c.offset >= end]
    root.children = before + nodes + after


def _fail(result: Dissection, reason: str, summary: dict[str, Any]) -> Dissection:
    result.verdicts["security"] = f"FAILED: {reason}"
    summary.update(verified=False, reason=reason)
    result.security = summary
    result.failed = True
    return result


def inspect_secured(frame: bytes, kind: str | None, keys: KeyFile, *,
                    replay_check: bool = True,
                    fallback: DissectOptions | None = None) -> Dissection:
    """Dissect ``frame`` and verify it with the SAs of ``keys``; never raises library errors.

    ``fallback`` are the dissector options when no channel of the file matches the frame.
    """
    base = fallback or DissectOptions()
    try:
        kind = kind.upper() if kind else detect_kind(frame)
        if kind not in FRAME_KINDS:
            result = dissect(frame, kind, base)
            result.verdicts["security"] = "not applicable (not a transfer frame)"
            return result
        scid, vcid = gvcid(frame, kind)
    except SdlsQkdError:
        return dissect(frame, kind, base)
    summary: dict[str, Any] = {"spi": None, "sa": None, "mac": "not_checked",
                               "anti_replay": "not_checked", "verified": False}
    candidates = keys.for_channel(kind, scid, vcid)
    same_type = [e for e in keys.entries if e.channel.frame_type == kind]
    if not candidates and len({e.channel for e in same_type}) == 1:
        candidates = same_type  # one channel of this type (e.g. --vector): the engine judges
    if not candidates:
        result = dissect(frame, kind, dataclasses.replace(base, secured=True))
        return _fail(result, f"no SA in {keys.path} for {kind} SCID {scid} VCID {vcid}", summary)
    channel = candidates[0].channel
    result = dissect(frame, kind, dissect_options(channel))
    _forgive_fecf(result, candidates[0].options)
    if result.error is not None:
        return result
    sec = channel.header_length
    if len(frame) < sec + 2:
        return _fail(result, f"frame too short for a security header at octet {sec}", summary)
    spi = int.from_bytes(frame[sec:sec + 2], "big")
    summary["spi"] = spi
    matching = [e for e in candidates if e.spi == spi and e.channel == channel]
    if not matching:
        return _no_sa(result, frame, channel, spi, candidates, summary)
    out, tried = _pick(matching, frame, replay_check)
    summary.update(sa=out.entry.source, mac=out.mac, anti_replay=out.replay)
    result.verdicts["sa"] = f"SPI {spi} from {out.entry.source}" + (
        f" ({tried} definitions of SPI {spi} tried)" if tried > 1 else "")
    result.verdicts["mac"] = out.mac_text
    result.verdicts["anti_replay"] = out.replay_text
    if out.sa is not None:
        nodes, start, end, note = _security_nodes(frame, out)
        _splice(result.root, nodes, start, end)
        if note:
            result.verdicts["ep"] = note
    if out.error is not None:
        return _fail(result, f"{type(out.error).__name__}: {out.error}", summary)
    if not out.verified:
        return _fail(result, f"anti-replay: {out.replay.replace('_', ' ')}", summary)
    summary["plaintext_hex"] = bytes(out.result.data).hex()
    control = out.result.spi is None
    result.verdicts["security"] = "not secured (control command frame, passed in clear)" \
        if control else "verified"
    summary.update(verified=True)
    result.security = summary
    return result


def _forgive_fecf(result: Dissection, options: EngineOptions) -> None:
    """A FECF the SA file says is not checked (quirk fecf_not_checked) is reported, not fatal."""
    error = result.error
    if error is None or error.code != "FecfError" or options.check_fecf:
        return
    result.verdicts["fecf"] = f"not checked (SA file quirk fecf_not_checked): " \
                              f"{result.verdicts.get('fecf', '')}"
    result.verdicts["parse"] = "ok (FECF not checked)"
    result.error = None


def _no_sa(result: Dissection, frame: bytes, channel: Channel, spi: int,
           candidates: list[SaEntry], summary: dict[str, Any]) -> Dissection:
    """No SA with this SPI: a control frame passes in clear, anything else is rejected."""
    sec = channel.header_length
    data_node = next((c for c in result.root.children if c.name == "data_field"), None)
    try:
        clear = process_security(frame, channel, {}, EngineOptions(anti_replay=False))
    except InvalidSpi:
        known = sorted({e.spi for e in candidates})
        if data_node is not None:
            data_node.children.append(Node("spi", spi, "unknown SPI", sec, 2))
        return _fail(result, f"unknown SPI {spi}: the SA file has SPI "
                     f"{', '.join(map(str, known))} for this channel", summary)
    except SdlsQkdError as exc:
        return _fail(result, f"{type(exc).__name__}: {exc}", summary)
    result.verdicts["security"] = "not secured (control command frame, passed in clear)"
    summary.update(verified=True, mac="not_applicable", anti_replay="not_applicable",
                   plaintext_hex=bytes(clear.data).hex())
    result.security = summary
    return result
