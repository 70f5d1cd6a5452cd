"""``sdls-qkd fuzz``: seed corpora for external fuzzers, the CVE regression corpus, and a
pure-Python (hypothesis) run of this library's own fuzz targets.

* ``fuzz corpus --out DIR [--seed N]`` — one subdirectory per target (raw inputs) and
  ``manifest.json`` (channels and SAs to configure); deterministic.
* ``fuzz cve --out DIR`` — the CryptoLib CVE-class inputs as commented ``.hex`` files, then runs
  each: exit status 1 if any is not rejected with its expected error.
* ``fuzz targets`` — the targets (also the atheris harnesses ``tools/fuzz/fuzz_<name>.py``).
* ``fuzz run TARGET... [--examples N]`` — run targets under hypothesis (needs ``hypothesis``);
  exit status 1 and the shrunk input on a crash.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def _corpus(args: argparse.Namespace) -> int:
    from sdls_qkd.fuzz.corpus import write_corpus

    counts = write_corpus(args.out, args.seed)
    for name, count in counts.items():
        print(f"{name}: {count} inputs")
    print(f"{sum(counts.values())} inputs in {len(counts)} directories under {args.out} "
          f"(manifest.json describes them)")
    return 0


def _cve(args: argparse.Namespace) -> int:
    from sdls_qkd.fuzz.cve import load_case, run_case, write_corpus

    failures = 0
    for path in write_corpus(args.out):
        case = load_case(path)
        try:
            error = run_case(case)
        except Exception as exc:  # noqa: BLE001 - a crash is what the corpus guards against
            print(f"CRASH {case.name} {type(exc).__name__}: {exc}")
            failures += 1
            continue
        got = error.code if error is not None else "accepted"
        if got == case.expected_error:
            print(f"PASS {case.name} {got}")
        else:
            print(f"FAIL {case.name} {got}, expected {case.expected_error}")
            failures += 1
    return 1 if failures else 0


def _targets(args: argparse.Namespace) -> int:
    from sdls_qkd.fuzz.targets import TARGETS

    for target in TARGETS.values():
        print(f"{target.name:20} {target.kind:8} {target.about}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from sdls_qkd.errors import InvalidConfiguration
    from sdls_qkd.fuzz.targets import TARGETS, hypothesis_run

    names = list(TARGETS) if "all" in args.target else args.target
    for name in names:
        if name not in TARGETS:
            raise InvalidConfiguration(f"unknown target {name!r}; one of {', '.join(TARGETS)}")
    status = 0
    for name in names:
        try:
            count = hypothesis_run(name, args.examples, seed=args.seed)
        except Exception as exc:  # noqa: BLE001 - report the crash, go on with the others
            print(f"CRASH {name} {type(exc).__name__}: {exc}")
            status = 1
            continue
        print(f"OK {name} {count} examples")
        sys.stdout.flush()
    return status


def register(subparsers: Any) -> None:
    """Add the ``fuzz`` command and its sub-commands."""
    parser = subparsers.add_parser(
        "fuzz", help="fuzzing kit: seed corpora, CVE regression corpus, hypothesis runs",
        description="Fuzzing kit for this library and for other SDLS/CCSDS implementations.")
    sub = parser.add_subparsers(dest="fuzz_command", metavar="ACTION", required=True)

    corpus = sub.add_parser("corpus", help="write seed corpora for AFL++ / libFuzzer",
                            description="Write one directory of raw inputs per target and "
                                        "manifest.json; the same --seed gives the same files.")
    corpus.add_argument("--out", required=True, metavar="DIR", help="output directory")
    corpus.add_argument("--seed", type=int, default=0, help="seed of keys and payloads")
    corpus.set_defaults(func=_corpus)

    cve = sub.add_parser("cve", help="write and run the CryptoLib CVE-class regression corpus",
                         description="Write vectors/cve-style .hex files and check that each is "
                                     "rejected with its expected error.")
    cve.add_argument("--out", required=True, metavar="DIR", help="output directory")
    cve.set_defaults(func=_cve)

    targets = sub.add_parser("targets", help="list the fuzz targets")
    targets.set_defaults(func=_targets)

    run = sub.add_parser("run", help="run fuzz targets under hypothesis (pure Python)",
                         description="Run targets with hypothesis-generated inputs; a "
                                     "non-library exception is a crash (exit status 1).")
    run.add_argument("target", nargs="+", help="target name(s), or 'all'")
    run.add_argument("--examples", type=int, default=1000, help="examples per target")
    run.add_argument("--seed", type=int, default=None, help="hypothesis seed (reproducible run)")
    run.set_defaults(func=_run)
