"""`sdls-qkd vectors check` as a real subprocess on real files: lines, summary, exit status."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
YAMCS = ROOT / "vectors" / "yamcs_sdls.json"
CRYPTOLIB = ROOT / "vectors" / "cryptolib.json"
LINE = re.compile(r"^(PASS|FAIL|SKIP) \S+( .*)?$")
SUMMARY = re.compile(r"^(\d+) passed, (\d+) failed, (\d+) skipped$")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sdls_qkd.cli", "vectors", "check", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


def test_check_passing_file() -> None:
    proc = _run(str(YAMCS))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1] == "10 passed, 0 failed, 0 skipped"
    assert len(lines) == 11
    for line in lines[:-1]:
        assert LINE.match(line), line
        assert line.startswith("PASS yamcs/")


def test_check_several_files_counts_add_up() -> None:
    proc = _run(str(YAMCS), str(CRYPTOLIB))
    lines = proc.stdout.splitlines()
    match = SUMMARY.match(lines[-1])
    assert match, lines[-1]
    passed, failed, skipped = map(int, match.groups())
    assert passed + failed + skipped == len(lines) - 1
    assert passed >= 10 + 138
    assert proc.returncode == (1 if failed else 0)
    for line in lines[:-1]:
        assert LINE.match(line), line


def test_corrupted_copy_fails(tmp_path: Path) -> None:
    doc = json.loads(YAMCS.read_text())
    target = next(v for v in doc["vectors"] if v["id"].endswith("process-iv1"))
    data = bytearray.fromhex(target["expected_hex"])
    data[0] ^= 0xFF
    target["expected_hex"] = data.hex()
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text(json.dumps(doc))
    proc = _run(str(corrupt))
    assert proc.returncode != 0
    lines = proc.stdout.splitlines()
    assert lines[-1] == "9 passed, 1 failed, 0 skipped"
    fail = [line for line in lines if line.startswith("FAIL ")]
    assert fail == [f"FAIL {target['id']} recovered data differs at octet 0 of 6: got 45, "
                    "expected ba"]


def test_unloadable_file_fails_without_traceback(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text(YAMCS.read_text()[:-40])
    invalid = tmp_path / "invalid.json"
    doc = json.loads(YAMCS.read_text())
    doc["vectors"][0]["expected_error"] = "InvalidSpi"  # both expected_hex and expected_error
    invalid.write_text(json.dumps(doc))
    proc = _run(str(broken), str(invalid), str(YAMCS))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"FAIL {broken} cannot load:") and "not JSON" in lines[0]
    assert lines[1].startswith(f"FAIL {invalid} cannot load:") and "exactly one" in lines[1]
    assert lines[-1] == "10 passed, 2 failed, 0 skipped"


def test_json_output() -> None:
    proc = _run("--json", str(YAMCS))
    assert proc.returncode == 0
    report = json.loads(proc.stdout)
    assert (report["passed"], report["failed"], report["skipped"]) == (10, 0, 0)
    assert {r["status"] for r in report["results"]} == {"pass"}
    assert all(r["file"] == str(YAMCS) for r in report["results"])


def test_quiet_and_usage() -> None:
    proc = _run("-q", str(YAMCS))
    assert proc.stdout.splitlines() == ["10 passed, 0 failed, 0 skipped"]
    usage = subprocess.run([sys.executable, "-m", "sdls_qkd.cli", "vectors", "check"], cwd=ROOT,
                           capture_output=True, text=True, timeout=60, check=False)
    assert usage.returncode == 2 and "FILE" in usage.stderr
