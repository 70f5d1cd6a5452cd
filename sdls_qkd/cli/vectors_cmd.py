"""``sdls-qkd vectors``: work with ``sdls-vectors/1`` files.

``vectors check FILE...`` runs every vector against this library and prints one line per vector
(``PASS|FAIL|SKIP id reason``) and, last, ``N passed, N failed, N skipped``.  The exit status is
1 when any vector fails (or a file cannot be loaded), 0 otherwise.  ``--json`` prints the report
as one JSON object instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from sdls_qkd.vectors import Status, check_files


def _check(args: argparse.Namespace) -> int:
    report = check_files(args.files)
    if args.json:
        print(json.dumps(report.to_dict(), indent=1, sort_keys=True))
    else:
        for result in report.results:
            if args.quiet and result.status is Status.PASS:
                continue
            line = f"{result.status.name} {result.id}"
            if result.reason:
                line += f" {result.reason}"
            print(line)
        print(report.summary())
    sys.stdout.flush()
    return 0 if report.ok else 1


def register(subparsers: Any) -> None:
    """Add the ``vectors`` command and its sub-commands."""
    parser = subparsers.add_parser(
        "vectors", help="check (and later generate) sdls-vectors/1 test-vector files",
        description="Work with sdls-vectors/1 test-vector files.")
    sub = parser.add_subparsers(dest="vectors_command", metavar="ACTION", required=True)

    check = sub.add_parser(
        "check", help="run every vector of the files against this library",
        description="Run every vector; exit status 1 if any fails (skips do not fail).")
    check.add_argument("files", nargs="+", metavar="FILE", help="sdls-vectors/1 JSON file")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.add_argument("-q", "--quiet", action="store_true", help="do not list passing vectors")
    check.set_defaults(func=_check)

    # ---- `vectors generate`: defined in sdls_qkd/vectors_generate.py (its own owner)
    from sdls_qkd.vectors_generate import register_cli as _register_generate

    _register_generate(sub)
