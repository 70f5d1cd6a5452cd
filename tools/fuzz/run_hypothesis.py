"""Pure-Python fuzz driver: the atheris targets under hypothesis, for a given number of examples.

For machines without atheris (it needs a CPython with a matching wheel or clang to build).

    .venv/bin/python tools/fuzz/run_hypothesis.py all --examples 10000
    .venv/bin/python tools/fuzz/run_hypothesis.py process_tc tc --examples 2000 --seed 1

Same as ``sdls-qkd fuzz run``; exit status 1 if any target crashed (hypothesis prints the
shrunk input).
"""

from __future__ import annotations

import sys

from sdls_qkd.cli import main

if __name__ == "__main__":
    sys.exit(main(["fuzz", "run", *sys.argv[1:]]))
