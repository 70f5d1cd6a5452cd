"""The ``sdls-qkd`` command.

Each sub-command lives in its own module of this package with a ``register(subparsers)``
function; ``main`` wires them together.  Errors of the library become a one-line message and a
non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from sdls_qkd import __version__
from sdls_qkd.errors import SdlsQkdError

#: sub-command modules, in help order
COMMAND_MODULES = ("inspect", "vectors", "kme", "demo", "fuzz")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every available sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="sdls-qkd",
        description="CCSDS SDLS secured by QKD keys: frames, security, key supply, tools.",
    )
    parser.add_argument("--version", action="version", version=f"sdls-qkd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"sdls_qkd.cli.{name}_cmd")
        except ModuleNotFoundError as exc:
            if exc.name == f"sdls_qkd.cli.{name}_cmd":
                continue  # command not built yet
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except SdlsQkdError as exc:
        print(f"sdls-qkd: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
