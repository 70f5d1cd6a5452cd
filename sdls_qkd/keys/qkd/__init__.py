"""Satellite-pass decoy-state BB84 emulator: source, channel, sifting, Cascade, PA, finite key.

Counts are sampled per time slice (no per-photon simulation); error correction (Cascade),
error verification (Toeplitz hash) and privacy amplification (Toeplitz, FFT) run for real on
the sifted bit arrays; the secret length is the finite-key bound of Lim et al. 2014.
"""

from __future__ import annotations

from sdls_qkd.keys.qkd.cascade import BlockSchedule, CascadeResult, cascade_correct
from sdls_qkd.keys.qkd.emulator import PassOutput, PassResult, PostProcessingConfig, emulate_pass
from sdls_qkd.keys.qkd.finite_key import DecoyCounts, FiniteKeyResult, lim2014_key_length
from sdls_qkd.keys.qkd.keysource import EmulatorKeySource
from sdls_qkd.keys.qkd.passes import (
    PRESETS,
    PassProfile,
    PassSchedule,
    ScheduledPass,
    jinan1_2025,
    micius_2017,
    no_qkd,
)

__all__ = [
    "PRESETS",
    "BlockSchedule",
    "CascadeResult",
    "DecoyCounts",
    "EmulatorKeySource",
    "FiniteKeyResult",
    "PassOutput",
    "PassProfile",
    "PassResult",
    "PassSchedule",
    "PostProcessingConfig",
    "ScheduledPass",
    "cascade_correct",
    "emulate_pass",
    "jinan1_2025",
    "lim2014_key_length",
    "micius_2017",
    "no_qkd",
]
