"""Seed corpora: for external fuzzers (AFL++, libFuzzer) aimed at other implementations, and for
this library's own harnesses.

:func:`write_corpus` writes one subdirectory per target, each file one raw input (no framing,
no selector: what a harness of another SDLS or CCSDS implementation reads), plus
``manifest.json`` saying for every directory what it holds and — for the SDLS directories — the
channel and the receiver's SA (schema objects with the test keys) the harness must configure.
Valid frames of every kind with SDLS come from :mod:`sdls_qkd.vectors_generate`; edge cases are
the designed negative vectors, one-field mutants of the valid frames (boundary values, with the
MAC and FECF recomputed or not, :mod:`sdls_qkd.fuzz.mutators`) and the CVE-class inputs of
:mod:`sdls_qkd.fuzz.cve`.  Everything is a function of the seed: two runs give identical trees.

:func:`target_seeds` gives the same material with the selector octet the targets of
:mod:`sdls_qkd.fuzz.targets` expect.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

from sdls_qkd.errors import InvalidConfiguration
from sdls_qkd.framing.channel import Channel, channel_from_dict
from sdls_qkd.fuzz.mutators import FrameMutator, reseal_fecf
from sdls_qkd.security.sa import SecurityAssociation

__all__ = ["CORPUS_FORMAT", "SDLS_CONFIGS", "corpus_entries", "target_seeds", "write_corpus"]

CORPUS_FORMAT: Final = "sdls-qkd-fuzz-corpus/1"

#: SDLS directories of the external corpus: (frame kind, suite, preset)
SDLS_CONFIGS: Final[tuple[tuple[str, str, str], ...]] = (
    ("TC", "AES-256-GCM", "yamcs"),
    ("TC", "AES-256-CMAC", "cryptolib"),
    ("TC", "AES-256-CBC", "custom"),
    ("TM", "AES-256-GCM", "yamcs"),
    ("TM", "HMAC-SHA-256", "cryptolib"),
    ("AOS", "AES-256-GCM", "cryptolib"),
    ("AOS", "GMAC", "custom"),
    ("USLP-fixed", "AES-256-GCM-SIV", "cryptolib"),
    ("USLP-variable", "AES-256-GCM", "yamcs"),
    ("USLP-variable", "HMAC-SHA-512", "custom"),
)


def _dir_name(kind: str, suite: str, preset: str) -> str:
    return "sdls-" + "-".join((kind, suite, preset)).lower().replace("_", "-")


@functools.lru_cache(maxsize=8)
def _vectors(seed: int) -> tuple[dict[str, Any], ...]:
    from sdls_qkd.vectors_generate import generate_vectors

    return tuple(generate_vectors(seed))


def _config_vectors(seed: int, kind: str, suite: str, preset: str) -> list[dict[str, Any]]:
    prefix = f"gen-{seed}/{kind}/{suite}/{preset}/"
    return [v for v in _vectors(seed) if v["id"].startswith(prefix)]


def _safe(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in label).strip("-")[:60]


# =========================================================================== entries
def _sdls_entries(seed: int, kind: str, suite: str, preset: str) -> tuple[dict[str, Any],
                                                                          list[tuple[str, bytes]]]:
    """Manifest object and (label, input) list of one SDLS directory."""
    vectors = _config_vectors(seed, kind, suite, preset)
    by_op = {v["id"].rsplit("/", 1)[1]: v for v in vectors}
    apply_v, process_v = by_op["apply"], by_op["process"]
    frame_type = process_v["frame_type"]
    channel = channel_from_dict(frame_type, process_v["channel"])
    tx = SecurityAssociation.from_schema(apply_v["sa"], frame_type=frame_type, channel=channel)
    frame = bytes.fromhex(process_v["input_hex"])
    items: list[tuple[str, bytes]] = [("valid", frame)]
    for name, vector in sorted(by_op.items()):
        if name.startswith("process-") and vector["sa"] == process_v["sa"]:
            items.append((name.removeprefix("process-"), bytes.fromhex(vector["input_hex"])))
    mutator = FrameMutator(channel, tx, frame, bytes.fromhex(apply_v["sa"]["iv_hex"]))
    for mutant in mutator.all_mutants():
        if mutant.frame != frame:
            items.append((f"{mutant.field}-{mutant.value:x}-{mutant.mode}"[:48], mutant.frame))
    manifest = {
        "about": f"ProcessSecurity inputs: {kind} frames protected with {suite} "
                 f"({preset} layout); 'valid' is accepted once by a receiver holding 'sa'",
        "frame_type": frame_type,
        "channel": process_v["channel"],
        "sa": process_v["sa"],
        "expected_data_hex_of_valid": process_v["expected_hex"],
    }
    return manifest, items


def _frame_entries(seed: int, frame_type: str) -> tuple[dict[str, Any], list[tuple[str, bytes]]]:
    """Unprotected and protected frames of one frame type, with their channels."""
    items: list[tuple[str, bytes]] = []
    channels: dict[str, Any] = {}
    for vector in _vectors(seed):
        if vector["frame_type"] != frame_type or not vector["id"].endswith("/apply"):
            continue
        kind, suite, preset = vector["id"].split("/")[1:4]
        if suite != "AES-256-GCM" and not (suite == "HMAC-SHA-256" and preset == "custom"):
            continue
        channel = channel_from_dict(frame_type, vector["channel"])
        label = _safe(f"{kind}-{suite}-{preset}")
        items.append((label + "-clear", reseal_fecf(bytes.fromhex(vector["input_hex"]), channel)))
        items.append((label + "-sdls", bytes.fromhex(vector["expected_hex"])))
        channels[label] = vector["channel"]
    manifest = {
        "about": f"{frame_type} transfer frames for a frame parser: '-clear' frames carry no "
                 "security header, '-sdls' ones do; the channel of each prefix is in 'channels'",
        "frame_type": frame_type,
        "channels": channels,
    }
    return manifest, items


def _packet_entries() -> tuple[dict[str, Any], list[tuple[str, bytes]]]:
    from sdls_qkd.framing.space_packet import PacketType, SpacePacket, pack_packets

    tm = SpacePacket.build(PacketType.TM, 0x123, bytes(range(16)), sequence_count=5)
    tc = SpacePacket.build(PacketType.TC, 0x7E, b"\x42", sequence_count=16383)
    idle = SpacePacket.idle(12)
    stream = pack_packets([tm, tc, idle])
    items = [("tm-packet", tm.pack()), ("tc-packet-one-octet", tc.pack()),
             ("idle-packet", idle.pack()), ("stream-of-three", stream),
             ("stream-cut-mid-packet", stream[:-5]),
             ("length-field-max", tm.pack()[:4] + b"\xff\xff" + tm.pack()[6:]),
             ("length-field-zero", tm.pack()[:4] + b"\x00\x00" + tm.pack()[6:]),
             ("header-only", tm.pack()[:6]), ("empty", b"")]
    return {"about": "Space Packets and packet streams (CCSDS 133.0-B)"}, items


def _ocf_entries() -> tuple[dict[str, Any], list[tuple[str, bytes]]]:
    from sdls_qkd.framing.ocf import Clcw, CopInEffect, FrameSecurityReport

    clcw = Clcw(vcid=5, report_value=0x2A, status_field=0, cop_in_effect=CopInEffect.COP_1,
                no_rf_available=False, no_bit_lock=False, lockout=False, wait=False,
                retransmit=True, farm_b_counter=2)
    items = [("clcw", clcw.pack()), ("clcw-all-ones", b"\x7f\xff\xff\xff"),
             ("fsr", FrameSecurityReport(bad_mac=True, spi=7, last_sn_lsb=0x42).pack()),
             ("fsr-all-ones", b"\xff\xff\xff\xff"), ("three-octets", b"\x01\x02\x03"),
             ("five-octets", b"\x01\x02\x03\x04\x05")]
    return {"about": "OCF words: CLCW (type 0) and SDLS Frame Security Report (type 1)"}, items


def _ep_pdus() -> list[tuple[str, bytes]]:
    from sdls_qkd.procedures.key_management import (
        KeyIdList,
        KeyInventoryCommand,
        KeyVerificationCommand,
        OtarCommand,
    )
    from sdls_qkd.procedures.pdu import Pdu, Procedure
    from sdls_qkd.procedures.sa_management import (
        Gvcid,
        RekeySaCommand,
        SetArsnCommand,
        SetArsnWindowCommand,
        SpiCommand,
        StartSaCommand,
    )

    def cmd(proc: Procedure, data: bytes) -> tuple[str, bytes]:
        return proc.name.lower(), Pdu.command(proc, data).pack()

    out = [
        cmd(Procedure.OTAR, OtarCommand(1, bytes(range(12)), bytes(34), bytes(16)).pack()),
        cmd(Procedure.KEY_ACTIVATION, KeyIdList((131, 132)).pack()),
        cmd(Procedure.KEY_DEACTIVATION, KeyIdList((131,)).pack()),
        cmd(Procedure.KEY_DESTRUCTION, KeyIdList((132,)).pack()),
        cmd(Procedure.KEY_VERIFICATION, KeyVerificationCommand(((129, bytes(16)),)).pack()),
        cmd(Procedure.KEY_INVENTORY, KeyInventoryCommand(128, 140).pack()),
        cmd(Procedure.REKEY_SA, RekeySaCommand(5, 131, bytes(12)).pack()),
        cmd(Procedure.START_SA, StartSaCommand(5, (Gvcid(0, 0x2C, 1),)).pack()),
        cmd(Procedure.STOP_SA, SpiCommand(5).pack()),
        cmd(Procedure.EXPIRE_SA, SpiCommand(5).pack()),
        cmd(Procedure.DELETE_SA, SpiCommand(5).pack()),
        cmd(Procedure.SET_ARSN, SetArsnCommand(5, bytes(4)).pack()),
        cmd(Procedure.SET_ARSN_WINDOW, SetArsnWindowCommand(5, 10).pack()),
        cmd(Procedure.SA_STATUS, SpiCommand(5).pack()),
        cmd(Procedure.READ_ARSN, SpiCommand(5).pack()),
    ]
    for proc in (Procedure.PING, Procedure.LOG_STATUS, Procedure.DUMP_LOG, Procedure.ERASE_LOG,
                 Procedure.SELF_TEST, Procedure.ALARM_FLAG_RESET):
        out.append(cmd(proc, b""))
    out += [("length-field-not-whole-octets", b"\x31\x00\x05"),
            ("length-field-exceeds", b"\x31\xff\xf8\x00"), ("tag-only", b"\x31")]
    return out


def _ep_entries() -> tuple[dict[str, Any], list[tuple[str, bytes]]]:
    return {"about": "SDLS Extended Procedures PDUs (tag, 16-bit length in bits, data)"}, \
        _ep_pdus()


def _ep_packet_entries() -> tuple[dict[str, Any], list[tuple[str, bytes]]]:
    from sdls_qkd.procedures.pdu import EpPacketConfig, Pdu, wrap_command

    config = EpPacketConfig(command_apid=0x7E, reply_apid=0x7E)
    items = []
    for count, (label, raw) in enumerate(_ep_pdus()[:-3]):
        items.append((label, wrap_command(Pdu.unpack(raw), config, count)))
    return {"about": "SDLS-EP commands in TC Space Packets (APID 0x7E, no secondary header)",
            "apid": 0x7E}, items


def _cve_entries() -> tuple[dict[str, Any], list[tuple[str, bytes]]]:
    from sdls_qkd.fuzz.cve import build_cases

    cases = build_cases()
    manifest = {"about": "inputs of the CryptoLib CVE classes (vectors/cve has each with its "
                         "target, channel and SA)",
                "classes": {c.name: c.cls for c in cases}}
    return manifest, [(c.name, c.data) for c in cases]


def corpus_entries(seed: int = 0) -> dict[str, tuple[dict[str, Any], list[tuple[str, bytes]]]]:
    """Directory name -> (manifest object, [(label, input)]) of the external corpus."""
    out: dict[str, tuple[dict[str, Any], list[tuple[str, bytes]]]] = {
        "space-packets": _packet_entries(),
        "ocf": _ocf_entries(),
        "ep-pdus": _ep_entries(),
        "ep-packets": _ep_packet_entries(),
        "cve": _cve_entries(),
    }
    for frame_type in ("TC", "TM", "AOS", "USLP"):
        out[f"{frame_type.lower()}-frames"] = _frame_entries(seed, frame_type)
    for kind, suite, preset in SDLS_CONFIGS:
        out[_dir_name(kind, suite, preset)] = _sdls_entries(seed, kind, suite, preset)
    return dict(sorted(out.items()))


def write_corpus(out_dir: str | Path, seed: int = 0) -> dict[str, int]:
    """Write the external corpus under ``out_dir``; returns files written per directory.

    Existing files of the same names are overwritten; nothing else in ``out_dir`` is touched.
    """
    if not isinstance(seed, int) or seed < 0:
        raise InvalidConfiguration(f"seed must be an integer >= 0, not {seed!r}", field="seed")
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {"format": CORPUS_FORMAT, "seed": seed, "targets": {}}
    counts: dict[str, int] = {}
    for name, (meta, items) in corpus_entries(seed).items():
        directory = root / name
        directory.mkdir(exist_ok=True)
        files: dict[str, str] = {}
        for index, (label, data) in enumerate(items):
            fname = f"{index:04d}-{_safe(label)}.bin"
            (directory / fname).write_bytes(data)
            files[fname] = label
        manifest["targets"][name] = {**meta, "files": files}
        counts[name] = len(items)
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return counts


# =========================================================================== harness seeds
def _with(selector: int, items: Iterable[tuple[str, bytes]]) -> list[bytes]:
    return [bytes([selector]) + data for _, data in items]


def target_seeds(name: str, seed: int = 0) -> list[bytes]:
    """Inputs, selector octet first, for target ``name`` of :mod:`sdls_qkd.fuzz.targets`."""
    from sdls_qkd.fuzz import targets

    if name not in targets.TARGETS:
        raise InvalidConfiguration(f"unknown target {name!r}; one of {', '.join(targets.TARGETS)}")
    entries = corpus_entries(seed)
    if name == "space_packet_stream":
        return _with(0x07, entries["space-packets"][1]) + _with(0x00, entries["space-packets"][1])
    if name == "ocf":
        return _with(0, entries["ocf"][1])
    if name in ("ep_pdu", "ep_manager"):
        pdus = entries["ep-pdus"][1]
        packets = entries["ep-packets"][1]
        if name == "ep_pdu":
            return _with(0, pdus) + _with(0, packets)
        return _with(1, pdus) + _with(0, packets)
    if name == "dissect":
        out: list[bytes] = []
        for key in ("tc-frames", "tm-frames", "aos-frames", "uslp-frames", "space-packets",
                    "ocf"):
            out += _with(0x80, entries[key][1])
        return out
    if name in ("tc", "tm", "aos", "uslp"):
        meta, items = entries[f"{name}-frames"]
        out = []
        for label, data in items:
            channel = channel_from_dict(meta["frame_type"],
                                        meta["channels"][label.rsplit("-", 1)[0]])
            out.append(bytes([targets._PARSER_SELECTOR[meta["frame_type"]](channel)]) + data)
        return out
    # process targets: the valid frame, resealed or not, the negatives and some mutants
    frame_type = name.removeprefix("process_").upper()
    out = []
    for index, vector in enumerate(targets.process_configs(frame_type)):
        frame = bytes.fromhex(vector["input_hex"])
        out += [bytes([index]) + frame, bytes([index | 0x08]) + frame]
        sdls_channel: Channel = channel_from_dict(vector["frame_type"], vector["channel"])
        out.append(bytes([index | 0x04]) + reseal_fecf(frame[:-1], sdls_channel) if len(frame) > 1
                   else bytes([index]))
    return out
