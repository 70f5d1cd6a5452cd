"""vectors/cve: one input per class of the CryptoLib memory-safety advisories, each rejected with
its typed error (never a crash, never accepted, SA state unchanged)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sdls_qkd import errors
from sdls_qkd.errors import SdlsQkdError
from sdls_qkd.fuzz.cve import CLASSES, build_cases, format_case, load_case, parse_case, run_case

ROOT = Path(__file__).resolve().parent.parent
CVE_DIR = ROOT / "vectors" / "cve"
FILES = sorted(CVE_DIR.glob("*.hex"))


def test_every_class_has_inputs() -> None:
    classes = {load_case(p).cls for p in FILES}
    assert classes == set(CLASSES)
    assert len(FILES) >= len(CLASSES)


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_case_is_rejected_with_its_typed_error(path: Path) -> None:
    text = path.read_text()
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert any(line.startswith("# class: ") for line in header), "comment header names the class"
    case = load_case(path)
    error = run_case(case)  # anything but an sdls_qkd error propagates and fails the test
    assert error is not None, f"{case.name} was accepted"
    assert isinstance(error, SdlsQkdError)
    assert error.code == case.expected_error, str(error)
    assert isinstance(error, errors.BY_CODE[case.expected_error]), type(error)
    assert str(error), "the message says what is wrong"


def test_committed_corpus_is_what_the_code_writes() -> None:
    cases = build_cases()
    assert [f"{c.name}.hex" for c in cases] == [p.name for p in FILES]
    for case, path in zip(cases, FILES, strict=True):
        assert path.read_text() == format_case(case), "regenerate: sdls-qkd fuzz cve --out vectors/cve"


def test_case_files_round_trip_and_reject_garbage() -> None:
    case = build_cases()[0]
    assert parse_case(format_case(case), name=case.name) == case
    with pytest.raises(errors.InvalidConfiguration):
        parse_case("# class: nonsense\nzz\n")
    with pytest.raises(errors.InvalidConfiguration):
        parse_case(format_case(case).replace("# octets: ", "# octets: 9"))


def test_fuzz_cve_command(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "sdls_qkd.cli", "fuzz", "cve", "--out",
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == len(FILES) and all(line.startswith("PASS ") for line in lines)
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in FILES]
    assert all((tmp_path / p.name).read_bytes() == p.read_bytes() for p in FILES)
