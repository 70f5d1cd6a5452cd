"""One satellite pass, end to end: counts -> sifting -> estimation -> Cascade -> verification ->
finite-key length -> Toeplitz privacy amplification -> key minus authentication cost.

Deterministic: every random draw (counts, bits, permutations, hash seeds) comes from one
``numpy.random.Generator`` seeded by the pass seed.

Authentication: every classical message must be authenticated with key from the previous pass
(Wegman-Carter: a universal-hash tag encrypted with fresh one-time-pad key).  By default the
transcript of each protocol phase (sifting, parameter estimation, error correction, verification
with the privacy-amplification seed) is authenticated once in each direction at the end of that
phase - delayed authentication is sound because no output is used before all tags check - so a
pass costs 4 phases x 2 directions x ``auth_tag_bits``.  ``auth_per_message=True`` charges a tag
for every message instead (each Cascade round trip is two messages), which is what a naive
implementation pays.  The cost is subtracted from the delivered key.

Error correction runs frame by frame (``frame_bits``, 2^18 by default).  A frame that fails
verification is discarded; the decoy statistics of the kept bits are recounted (each bit keeps
its intensity label) before the finite-key bound.  lambda_EC in the bound is every parity
Cascade disclosed (kept and discarded frames) plus every verification tag bit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from sdls_qkd.errors import UsageError
from sdls_qkd.keys.qkd.amplification import privacy_amplification
from sdls_qkd.keys.qkd.cascade import BlockSchedule, binary_entropy, cascade_correct
from sdls_qkd.keys.qkd.estimation import ParameterEstimate, decoy_counts, estimate_parameters
from sdls_qkd.keys.qkd.finite_key import FiniteKeyResult, lim2014_key_length
from sdls_qkd.keys.qkd.passes import PassProfile
from sdls_qkd.keys.qkd.sifting import X, Z, build_x_key, sample_counts
from sdls_qkd.keys.qkd.verification import verify_keys

__all__ = ["PassOutput", "PassResult", "PostProcessingConfig", "emulate_pass"]

Bits = npt.NDArray[np.uint8]

_PHASES = 4  # sifting, estimation, error correction, verification + PA seed


@dataclass(frozen=True)
class PostProcessingConfig:
    """Security parameters and post-processing choices."""

    eps_sec: float = 1e-10
    eps_cor: float = 1e-15
    cascade_passes: int = 4
    cascade_schedule: BlockSchedule = BlockSchedule.ORIGINAL
    frame_bits: int = 1 << 18
    auth_tag_bits: int = 64
    auth_per_message: bool = False
    slice_s: float = 1.0

    def __post_init__(self) -> None:
        if self.frame_bits < 1024:
            raise UsageError(f"frame_bits must be >= 1024, got {self.frame_bits}")
        if self.auth_tag_bits < 1:
            raise UsageError(f"auth_tag_bits must be >= 1, got {self.auth_tag_bits}")


@dataclass(frozen=True)
class PassResult:
    """What one pass produced and what it cost (all counts in bits unless named otherwise)."""

    profile: str
    seed: int
    duration_s: float
    pulses_sent: int
    detections: int
    sifted_bits: int  # both bases
    raw_key_bits: int  # X basis, enters error correction
    qber_x: float  # true error rate of the raw key (known once corrected)
    qber_z: float  # disclosed basis, all intensities
    single_photon_error_upper: float
    phase_error_upper: float
    frames: int
    frames_discarded: int
    ec_leaked_bits: int
    ec_efficiency: float  # leaked / (n h(qber_x)) over the frames
    ec_round_trips: int
    verification_bits: int
    residual_error_bits: int  # errors left in kept frames after verification (must be 0)
    secret_bits: int  # Lim et al. 2014 length l
    auth_bits: int
    final_key_bits: int
    aborted: str | None
    finite_key: FiniteKeyResult | None
    timings_s: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class PassOutput:
    """The result and the delivered key bits (identical at Alice and Bob)."""

    result: PassResult
    key: Bits = field(repr=False)


def _frames(n: int, frame_bits: int) -> list[tuple[int, int]]:
    count = max(1, round(n / frame_bits))
    edges = np.linspace(0, n, count + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


def _empty(
    profile: PassProfile,
    seed: int,
    reason: str,
    *,
    pulses: int = 0,
    detections: int = 0,
    sifted: int = 0,
    raw: int = 0,
    est: ParameterEstimate | None = None,
    timings: dict[str, float] | None = None,
) -> PassOutput:
    res = PassResult(
        profile=profile.name,
        seed=seed,
        duration_s=profile.geometry.duration_s,
        pulses_sent=pulses,
        detections=detections,
        sifted_bits=sifted,
        raw_key_bits=raw,
        qber_x=float("nan"),
        qber_z=est.qber_z if est else float("nan"),
        single_photon_error_upper=est.single_photon_error_upper if est else float("nan"),
        phase_error_upper=est.phase_error_upper if est else float("nan"),
        frames=0,
        frames_discarded=0,
        ec_leaked_bits=0,
        ec_efficiency=float("nan"),
        ec_round_trips=0,
        verification_bits=0,
        residual_error_bits=0,
        secret_bits=0,
        auth_bits=0,
        final_key_bits=0,
        aborted=reason,
        finite_key=est.bounds if est else None,
        timings_s=timings or {},
    )
    return PassOutput(res, np.zeros(0, dtype=np.uint8))


def emulate_pass(
    profile: PassProfile, seed: int, config: PostProcessingConfig | None = None
) -> PassOutput:
    """Run one pass of ``profile`` with ``seed`` through the whole QKD protocol."""
    cfg = config or PostProcessingConfig()
    rng = np.random.default_rng(seed)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    slices = profile.slices(cfg.slice_s)
    counts = sample_counts(profile, slices, rng)
    pulses = int(counts.pulses.sum())
    n_x, n_z = counts.total_n(X), counts.total_n(Z)
    obs = decoy_counts(profile.source, n_x, n_z, counts.total_m(Z))
    raw_bits = sum(n_x)

    def stop(reason: str, est: ParameterEstimate | None = None) -> PassOutput:
        timings["total"] = time.perf_counter() - t0
        return _empty(
            profile,
            seed,
            reason,
            pulses=pulses,
            detections=counts.detections,
            sifted=counts.sifted_bits,
            raw=raw_bits,
            est=est,
            timings=timings,
        )

    if sum(n_z) == 0 or raw_bits < 1024:
        return stop("too few detections")
    est = estimate_parameters(profile.source, obs, pulses, eps_sec=cfg.eps_sec, eps_cor=cfg.eps_cor)
    timings["sift_estimate"] = time.perf_counter() - t0
    if est.bounds.length <= 0:
        # Even error correction at the Shannon limit would leave nothing: abort before EC.
        return stop("no key possible (decoy/phase-error bound)", est)

    t1 = time.perf_counter()
    key = build_x_key(counts, rng)
    timings["build_key"] = time.perf_counter() - t1
    frames = _frames(raw_bits, cfg.frame_bits)
    keep = np.ones(raw_bits, dtype=bool)
    bob = key.bob.copy()
    leaked = round_trips = verif_bits = discarded = 0
    ec_t = ver_t = 0.0
    for a0, a1 in frames:
        tc = time.perf_counter()
        res = cascade_correct(
            key.alice[a0:a1],
            key.bob[a0:a1],
            est.qber_z,
            rng,
            passes=cfg.cascade_passes,
            schedule=cfg.cascade_schedule,
        )
        tv = time.perf_counter()
        ec_t += tv - tc
        leaked += res.leaked_bits
        round_trips += res.round_trips
        # each frame's tag is sized so that all frames together fail to catch an error with
        # probability <= eps_cor (union bound)
        ver = verify_keys(key.alice[a0:a1], res.corrected, rng, cfg.eps_cor / len(frames))
        ver_t += time.perf_counter() - tv
        verif_bits += ver.tag_bits
        bob[a0:a1] = res.corrected
        if not ver.passed:
            keep[a0:a1] = False
            discarded += 1
    timings["cascade"] = ec_t
    timings["verification"] = ver_t
    true_errors = key.errors
    qber_x = true_errors / raw_bits
    h = binary_entropy(qber_x)
    efficiency = leaked / (raw_bits * h) if h > 0 else float("inf")

    alice_kept = key.alice[keep]
    bob_kept = bob[keep]
    residual = int(np.count_nonzero(alice_kept != bob_kept))
    labels = key.intensity[keep]
    kept_counts = np.bincount(labels, minlength=3)
    kept_obs = decoy_counts(
        profile.source,
        (int(kept_counts[0]), int(kept_counts[1]), int(kept_counts[2])),
        n_z,
        obs.m_z,
    )
    # Every disclosed parity counts, also those of discarded frames, and every tag bit (Lim et
    # al.'s log2(2/eps_cor) term stays as well: conservative by about 50 bits).
    fk = lim2014_key_length(kept_obs, leaked + verif_bits, eps_sec=cfg.eps_sec, eps_cor=cfg.eps_cor)
    messages = 2 * (_PHASES - 1) + 2 * round_trips
    tags = messages if cfg.auth_per_message else 2 * _PHASES
    auth_bits = tags * cfg.auth_tag_bits
    secret = fk.length if alice_kept.size else 0
    final_bits = max(0, secret - auth_bits)

    t2 = time.perf_counter()
    if final_bits > 0:
        amplified, _seed_bits = privacy_amplification(alice_kept, secret, rng)
        delivered = amplified[auth_bits:]
    else:
        delivered = np.zeros(0, dtype=np.uint8)
    timings["privacy_amplification"] = time.perf_counter() - t2
    timings["total"] = time.perf_counter() - t0

    result = PassResult(
        profile=profile.name,
        seed=seed,
        duration_s=profile.geometry.duration_s,
        pulses_sent=pulses,
        detections=counts.detections,
        sifted_bits=counts.sifted_bits,
        raw_key_bits=raw_bits,
        qber_x=qber_x,
        qber_z=est.qber_z,
        single_photon_error_upper=est.single_photon_error_upper,
        phase_error_upper=fk.phi_x,
        frames=len(frames),
        frames_discarded=discarded,
        ec_leaked_bits=leaked,
        ec_efficiency=efficiency,
        ec_round_trips=round_trips,
        verification_bits=verif_bits,
        residual_error_bits=residual,
        secret_bits=secret,
        auth_bits=auth_bits if secret else 0,
        final_key_bits=int(delivered.size),
        aborted=None if delivered.size else "key consumed by authentication",
        finite_key=fk,
        timings_s=timings,
    )
    return PassOutput(result, delivered)
