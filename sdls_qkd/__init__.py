"""sdls_qkd — CCSDS Space Data Link Security with keys from quantum key distribution.

The public API is re-exported here.  Layers (see README, Architecture): a sans-I/O core
(``framing``, ``security``, ``procedures``), the key supply (``keys``), state stores
(``store``), link ends (``link``) and edges (``cli``, ``fuzz``, ``vectors``).

Names load lazily (PEP 562) so that ``import sdls_qkd`` stays cheap: a ground segment that
only parses frames does not pay for TLS, SQLite or the BB84 emulator.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> defining module (relative to the package)
_EXPORTS: dict[str, str] = {
    # errors
    "SdlsQkdError": "errors", "LinkError": "errors", "FrameError": "errors",
    "SecurityError": "errors", "UsageError": "errors", "KeySupplyError": "errors",
    "StateStoreError": "errors",
    # framing
    "TcChannel": "framing.channel", "TmChannel": "framing.channel",
    "AosChannel": "framing.channel", "UslpChannel": "framing.channel",
    "crc16": "framing.crc", "crc32_uslp": "framing.crc",
    "SpacePacket": "framing.space_packet", "SpacePacketHeader": "framing.space_packet",
    "PacketStreamParser": "framing.space_packet", "SequenceCounter": "framing.space_packet",
    "split_packets": "framing.space_packet",
    "TcFrame": "framing.tc", "TcPrimaryHeader": "framing.tc", "TcSegmentHeader": "framing.tc",
    "TcFrameType": "framing.tc",
    "TmFrame": "framing.tm", "TmPrimaryHeader": "framing.tm", "TmSecondaryHeader": "framing.tm",
    "TmCodec": "framing.tm",
    "AosFrame": "framing.aos", "AosPrimaryHeader": "framing.aos", "AosCodec": "framing.aos",
    "MPdu": "framing.aos", "BPdu": "framing.aos",
    "UslpFrame": "framing.uslp", "UslpPrimaryHeader": "framing.uslp",
    "TfdfHeader": "framing.uslp", "UslpCodec": "framing.uslp",
    "Clcw": "framing.ocf", "FrameSecurityReport": "framing.ocf", "ocf_unpack": "framing.ocf",
    "TmPacketSender": "framing.packet_service", "TmPacketReceiver": "framing.packet_service",
    "TcPacketSender": "framing.packet_service",
    "TcSegmentReassembler": "framing.packet_service",
    # security
    "SecurityAssociation": "security.sa", "SaState": "security.sa",
    "ServiceType": "security.sa", "SdlsKey": "security.sa",
    "apply_security": "security.engine", "process_security": "security.engine",
    "EngineOptions": "security.engine", "ProcessResult": "security.engine",
    "SecurityLayout": "security.layout", "make_sa": "security.layout",
    "FsrTracker": "security.fsr",
    "CounterSource": "security.counters", "MemoryCounter": "security.counters",
    # procedures
    "Pdu": "procedures.pdu", "PduTag": "procedures.pdu",
    "OnboardSecurityManager": "procedures.onboard", "OnboardConfig": "procedures.onboard",
    "GroundCommander": "procedures.ground",
    # key supply
    "QkdKey": "keys.material", "KeyBuffer": "keys.buffer", "BufferConfig": "keys.buffer",
    "DepletionPolicy": "keys.buffer",
    "derive_session_key": "keys.kdf", "SessionContext": "keys.kdf",
    "Etsi014Client": "keys.etsi014", "Etsi014KeyFetcher": "keys.etsi014",
    "KmePair": "keys.kme", "KmeConfig": "keys.kme",
    # state
    "StateStore": "store.base", "MemoryStore": "store.memory", "SqliteStore": "store.sqlite",
    # link ends
    "GroundEnd": "link.endpoint", "SpaceEnd": "link.endpoint", "LinkEnd": "link.endpoint",
    "LinkConfig": "link.config", "load_config": "link.config",
    "RekeyPolicy": "link.rekey", "LinkReport": "link.report",
    # edges
    "load_vectors": "vectors", "check_vectors": "vectors",
    "generate_vectors": "vectors_generate", "dissect": "dissect",
}

#: exported names whose attribute in the defining module is spelled differently
_RENAMED: dict[str, str] = {"load_vectors": "load", "check_vectors": "check_files"}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    """Import the defining module of a public name on first use."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sdls_qkd' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"sdls_qkd.{module}"), _RENAMED.get(name, name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # the same names, eagerly, for type checkers
    from sdls_qkd.dissect import dissect
    from sdls_qkd.errors import (
        FrameError,
        KeySupplyError,
        LinkError,
        SdlsQkdError,
        SecurityError,
        StateStoreError,
        UsageError,
    )
    from sdls_qkd.framing.aos import AosCodec, AosFrame, AosPrimaryHeader, BPdu, MPdu
    from sdls_qkd.framing.channel import AosChannel, TcChannel, TmChannel, UslpChannel
    from sdls_qkd.framing.crc import crc16, crc32_uslp
    from sdls_qkd.framing.ocf import Clcw, FrameSecurityReport, ocf_unpack
    from sdls_qkd.framing.packet_service import (
        TcPacketSender,
        TcSegmentReassembler,
        TmPacketReceiver,
        TmPacketSender,
    )
    from sdls_qkd.framing.space_packet import (
        PacketStreamParser,
        SequenceCounter,
        SpacePacket,
        SpacePacketHeader,
        split_packets,
    )
    from sdls_qkd.framing.tc import TcFrame, TcFrameType, TcPrimaryHeader, TcSegmentHeader
    from sdls_qkd.framing.tm import TmCodec, TmFrame, TmPrimaryHeader, TmSecondaryHeader
    from sdls_qkd.framing.uslp import TfdfHeader, UslpCodec, UslpFrame, UslpPrimaryHeader
    from sdls_qkd.keys.buffer import BufferConfig, DepletionPolicy, KeyBuffer
    from sdls_qkd.keys.etsi014 import Etsi014Client, Etsi014KeyFetcher
    from sdls_qkd.keys.kdf import SessionContext, derive_session_key
    from sdls_qkd.keys.kme import KmeConfig, KmePair
    from sdls_qkd.keys.material import QkdKey
    from sdls_qkd.link.config import LinkConfig, load_config
    from sdls_qkd.link.endpoint import GroundEnd, LinkEnd, SpaceEnd
    from sdls_qkd.link.rekey import RekeyPolicy
    from sdls_qkd.link.report import LinkReport
    from sdls_qkd.procedures.ground import GroundCommander
    from sdls_qkd.procedures.onboard import OnboardConfig, OnboardSecurityManager
    from sdls_qkd.procedures.pdu import Pdu, PduTag
    from sdls_qkd.security.counters import CounterSource, MemoryCounter
    from sdls_qkd.security.engine import (
        EngineOptions,
        ProcessResult,
        apply_security,
        process_security,
    )
    from sdls_qkd.security.fsr import FsrTracker
    from sdls_qkd.security.layout import SecurityLayout, make_sa
    from sdls_qkd.security.sa import SaState, SdlsKey, SecurityAssociation, ServiceType
    from sdls_qkd.store.base import StateStore
    from sdls_qkd.store.memory import MemoryStore
    from sdls_qkd.store.sqlite import SqliteStore
    from sdls_qkd.vectors import check_files as check_vectors
    from sdls_qkd.vectors import load as load_vectors
    from sdls_qkd.vectors_generate import generate_vectors
