#!/usr/bin/env python3
"""Benchmark of the BB84 satellite-pass emulator (imported by tools/bench_keys.py).

Case ``pass_emulation_micius``: the FULL 273 s Micius 2017 pass (about 3.5 Mbit sifted, 1.8 Mbit
through Cascade, verification and Toeplitz privacy amplification, about 400 kbit out) emulated
end to end; the rate is emulated pass-seconds per wall-clock second at the median run.
Baseline ``real_time`` = 1.0: the emulator keeps up with a real pass when the ratio is >= 1.
Goal: ratio >= 30 (the whole pass in < 9 s).  ``--quick`` runs fewer repetitions of the same
pass, never a smaller one.  With ``--json`` the last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from sdls_qkd.keys.qkd.emulator import emulate_pass  # noqa: E402
from sdls_qkd.keys.qkd.passes import micius_2017  # noqa: E402


def case_pass_emulation_micius(quick: bool) -> dict[str, Any]:
    """Emulated pass-seconds per wall-clock second for the full Micius pass."""
    profile = micius_2017()
    reps = 2 if quick else 5
    walls = []
    last = None
    for seed in range(reps):
        t0 = time.perf_counter()
        last = emulate_pass(profile, seed)
        walls.append(time.perf_counter() - t0)
    assert last is not None
    r = last.result
    wall = statistics.median(walls)
    ours = profile.geometry.duration_s / wall
    print(
        f"pass_emulation_micius: {r.duration_s:.0f} s pass, sifted {r.sifted_bits} bits, "
        f"raw {r.raw_key_bits} bits at QBER {100 * r.qber_x:.2f} %, Cascade f = {r.ec_efficiency:.3f}, "
        f"final {r.final_key_bits} bits; wall median {wall:.2f} s over {reps} runs "
        f"({', '.join(f'{k} {v:.2f}' for k, v in r.timings_s.items())})",
        file=sys.stderr,
    )
    return {
        "name": "pass_emulation_micius",
        "ours": ours,
        "baseline": 1.0,
        "baseline_name": "real_time",
        "unit": "pass-s/s",
        "ratio": ours / 1.0,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (same pass)")
    ap.add_argument("--json", action="store_true", help="end stdout with one JSON line")
    args = ap.parse_args(argv)
    print(f"Python {platform.python_version()}, numpy {np.__version__}")
    case = case_pass_emulation_micius(args.quick)
    print(
        f"{case['name']}: {case['ours']:.1f} {case['unit']} vs {case['baseline_name']} "
        f"{case['baseline']:.1f} -> ratio {case['ratio']:.1f} (goal >= 30)"
    )
    if args.json:
        print(json.dumps({"cases": [case]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
