"""Shared driver of the atheris harnesses in this directory (one ``fuzz_<target>.py`` each).

Runs one target of :mod:`sdls_qkd.fuzz.targets` under atheris (libFuzzer for Python) with the
``sdls_qkd`` package instrumented for coverage.  An exception that is not an
:mod:`sdls_qkd.errors` exception escapes and libFuzzer reports a crash (and writes the input as
``crash-<sha1>``; ``-artifact_prefix=DIR/`` says where).  Without a corpus directory on the
command line the target's seeds (:func:`sdls_qkd.fuzz.corpus.target_seeds`) are written to a
temporary directory and used; a given directory is used as is (and grows).

    .venv/bin/python tools/fuzz/fuzz_tc.py -atheris_runs=1000000
    .venv/bin/python tools/fuzz/fuzz_process_tm.py -atheris_runs=100000 corpus/process_tm
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from pathlib import Path


def _seed_dir(target: str) -> str:
    from sdls_qkd.fuzz.corpus import target_seeds

    directory = Path(tempfile.mkdtemp(prefix=f"sdls-fuzz-{target}-"))
    for index, data in enumerate(target_seeds(target)):
        (directory / f"seed-{index:04d}").write_bytes(data)
    return str(directory)


def main(target: str) -> None:
    """Fuzz ``target`` with the command-line arguments of libFuzzer / atheris."""
    import atheris

    with atheris.instrument_imports(include=["sdls_qkd"]):
        import sdls_qkd.dissect  # noqa: F401 - imported here to be instrumented
        import sdls_qkd.framing.aos  # noqa: F401
        import sdls_qkd.framing.ocf  # noqa: F401
        import sdls_qkd.framing.space_packet  # noqa: F401
        import sdls_qkd.framing.tc  # noqa: F401
        import sdls_qkd.framing.tm  # noqa: F401
        import sdls_qkd.framing.uslp  # noqa: F401
        import sdls_qkd.fuzz.mutators  # noqa: F401
        import sdls_qkd.procedures.onboard  # noqa: F401
        import sdls_qkd.procedures.pdu  # noqa: F401
        import sdls_qkd.security.engine  # noqa: F401
        from sdls_qkd.errors import SdlsQkdError
        from sdls_qkd.fuzz.targets import TARGETS

    fn = TARGETS[target].fn

    def one_input(data: bytes) -> None:
        with contextlib.suppress(SdlsQkdError):
            fn(data)

    args = list(sys.argv)
    if not any(not a.startswith("-") for a in args[1:]):
        args.append(_seed_dir(target))
    atheris.Setup(args, one_input)
    atheris.Fuzz()
