"""One import point for every fuzzing strategy and mutator of the kit.

    from sdls_qkd.fuzz import strategies as fs
    @given(fs.mutated_tc_bytes())            # framing
    @given(fs.sdls_channels("TM"))           # SDLS channels, SAs, frames
    @given(fs.resealed_mutants())            # one field changed, MAC and FECF recomputed

Names that two modules share get a prefix here: ``aos_mutations`` (byte mutants of AOS/USLP
frames), ``frame_mutations`` (byte mutants of any frame, :mod:`.security`), ``sdls_channels``,
``sdls_suites``, ``pdu_mutations``, ``reseal_aos_fecf``.  Two strategies live here because they
join modules: :func:`protected_frames` (valid protected frames of every frame kind, suite and
layout of :mod:`sdls_qkd.vectors_generate`) and :func:`resealed_mutants` (those frames with one
field changed, rebuilt raw, FECF-resealed or MAC-resealed by :mod:`.mutators`).

Importing this module needs ``hypothesis`` (a test dependency).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from sdls_qkd.framing.channel import Channel, channel_from_dict
from sdls_qkd.fuzz.aos import (
    aos_channels,
    aos_frame_bytes,
    aos_frames,
    aos_headers,
    mutated_aos_bytes,
)
from sdls_qkd.fuzz.aos import mutations as aos_mutations
from sdls_qkd.fuzz.aos import reseal_fecf as reseal_aos_fecf
from sdls_qkd.fuzz.mutators import (
    MODES,
    BitField,
    FrameMutator,
    Mutant,
    field_mutants,
    header_fields,
    reseal,
    reseal_fecf,
)
from sdls_qkd.fuzz.ocf import clcws, frame_security_reports, mutated_ocf_bytes, ocf_words
from sdls_qkd.fuzz.packets import (
    SPACE_PACKET_LENGTH_FIELDS,
    LengthField,
    mutated_bytes,
    mutated_packet_stream,
    packet_headers,
    packet_streams,
    space_packets,
)
from sdls_qkd.fuzz.procedures import (
    DATA_SPI,
    MANAGEMENT_SPI,
    MASTER_KEY_ID,
    EpWorld,
    ep_world,
    raw_pdus,
    structured_commands,
    tagged_pdus,
)
from sdls_qkd.fuzz.procedures import mutate as pdu_mutations
from sdls_qkd.fuzz.security import SUITES as sdls_suites
from sdls_qkd.fuzz.security import (
    SuiteConfig,
    fit_channel,
    fix_fecf,
    free_octets,
    sa_configs,
    sa_pair,
    unprotected_frame,
)
from sdls_qkd.fuzz.security import channels as sdls_channels
from sdls_qkd.fuzz.security import mutations as frame_mutations
from sdls_qkd.fuzz.targets import inputs as target_inputs
from sdls_qkd.fuzz.tc import (
    TC_LENGTH_FIELDS,
    mutated_tc_bytes,
    reseal_tc,
    tc_channels,
    tc_frame_bytes,
    tc_frames,
)
from sdls_qkd.fuzz.tm import (
    TM_LENGTH_FIELDS,
    mutated_tm_bytes,
    reseal_tm,
    tm_channels,
    tm_frame_bytes,
    tm_frames,
)
from sdls_qkd.fuzz.uslp import mutated_uslp_bytes, uslp_channels, uslp_frame_bytes, uslp_frames
from sdls_qkd.security.sa import SecurityAssociation

__all__ = [
    # packets
    "LengthField", "SPACE_PACKET_LENGTH_FIELDS", "mutated_bytes", "mutated_packet_stream",
    "packet_headers", "packet_streams", "space_packets",
    # TC, TM, AOS, USLP, OCF
    "TC_LENGTH_FIELDS", "mutated_tc_bytes", "reseal_tc", "tc_channels", "tc_frame_bytes",
    "tc_frames",
    "TM_LENGTH_FIELDS", "mutated_tm_bytes", "reseal_tm", "tm_channels", "tm_frame_bytes",
    "tm_frames",
    "aos_channels", "aos_frame_bytes", "aos_frames", "aos_headers", "aos_mutations",
    "mutated_aos_bytes", "reseal_aos_fecf",
    "mutated_uslp_bytes", "uslp_channels", "uslp_frame_bytes", "uslp_frames",
    "clcws", "frame_security_reports", "mutated_ocf_bytes", "ocf_words",
    # SDLS
    "SuiteConfig", "fit_channel", "fix_fecf", "frame_mutations", "free_octets", "sa_configs",
    "sa_pair", "sdls_channels", "sdls_suites", "unprotected_frame",
    # SDLS-EP
    "DATA_SPI", "EpWorld", "MANAGEMENT_SPI", "MASTER_KEY_ID", "ep_world", "pdu_mutations",
    "raw_pdus", "structured_commands", "tagged_pdus",
    # field mutators, fuzz-target inputs, joined strategies
    "MODES", "BitField", "FrameMutator", "Mutant", "ProtectedFrame", "field_mutants",
    "header_fields", "protected_frames", "reseal", "reseal_fecf", "resealed_mutants",
    "target_inputs",
]


@dataclass(frozen=True)
class ProtectedFrame:
    """A valid protected frame with what it takes to receive it (and to mutate it)."""

    id: str
    channel: Channel
    sender: dict[str, Any]
    receiver: dict[str, Any]
    frame: bytes
    iv: bytes
    data: bytes

    def receiver_sa(self) -> SecurityAssociation:
        """A fresh receiving SA (the state before the frame)."""
        return SecurityAssociation.from_schema(self.receiver, frame_type=self.channel.frame_type,
                                               channel=self.channel)

    def mutator(self) -> FrameMutator:
        sender = SecurityAssociation.from_schema(self.sender, frame_type=self.channel.frame_type,
                                                 channel=self.channel)
        return FrameMutator(self.channel, sender, self.frame, self.iv)


@functools.lru_cache(maxsize=4)
def _protected(seed: int) -> tuple[ProtectedFrame, ...]:
    from sdls_qkd.vectors_generate import generate_vectors

    vectors = {v["id"]: v for v in generate_vectors(seed, negatives=["bad_fecf"])}
    out = []
    for vid, vector in vectors.items():
        if not vid.endswith("/process"):
            continue
        applied = vectors[vid.removesuffix("process") + "apply"]
        channel = channel_from_dict(vector["frame_type"], vector["channel"])
        out.append(ProtectedFrame(vid, channel, applied["sa"], vector["sa"],
                                  bytes.fromhex(vector["input_hex"]),
                                  bytes.fromhex(applied["sa"]["iv_hex"]),
                                  bytes.fromhex(vector["expected_hex"])))
    return tuple(out)


def protected_frames(kind: str | None = None, *, seed: int = 0) -> st.SearchStrategy[ProtectedFrame]:
    """Valid protected frames (every suite and layout); ``kind`` filters on the frame kind
    ("TC", "TM", "AOS", "USLP-fixed", "USLP-variable")."""
    pool = [p for p in _protected(seed) if kind is None or p.id.split("/")[1] == kind]
    return st.sampled_from(pool)


def resealed_mutants(kind: str | None = None, *, modes: tuple[str, ...] = MODES,
                     seed: int = 0) -> st.SearchStrategy[tuple[ProtectedFrame, Mutant]]:
    """(frame, mutant): one field of a protected frame changed and rebuilt per ``modes``."""
    return protected_frames(kind, seed=seed).flatmap(
        lambda p: st.tuples(st.just(p), field_mutants(p.mutator(), modes=modes)))
