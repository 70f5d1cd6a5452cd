"""The dissector and ``sdls-qkd inspect``: field trees agree with the codecs, bad input gives a
clear message with field and offset, and the command never shows a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdls_qkd.dissect import DissectOptions, dissect
from sdls_qkd.errors import SdlsQkdError
from sdls_qkd.framing.tm import TmFrame
from sdls_qkd.fuzz.aos import aos_frame_bytes
from sdls_qkd.fuzz.tc import tc_frame_bytes
from sdls_qkd.fuzz.tm import tm_frame_bytes

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "vectors" / "samples"
# the digest's worked TC frame (tc-frame.md section 5): BD frame, SCID 0x123, VCID 1, FECF AD77
TC_WORKED = bytes.fromhex("2123040a0001020304ad77")


def _run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "sdls_qkd.cli", "inspect", *args],
                          input=stdin, capture_output=True, timeout=60, check=False)


def _leaf(result: object, name: str) -> object:
    node = result.root.find(name)  # type: ignore[attr-defined]
    assert node is not None, name
    return node.value


def test_worked_tc_frame_fields() -> None:
    result = dissect(TC_WORKED)
    assert result.kind == "TC" and result.error is None
    assert _leaf(result, "scid") == 0x123
    assert _leaf(result, "vcid") == 1
    assert _leaf(result, "bypass_flag") == 1
    assert _leaf(result, "frame_length") == 10
    assert result.verdicts["fecf"] == "ok"


def test_bad_fecf_is_reported_not_raised() -> None:
    bad = TC_WORKED[:-1] + bytes([TC_WORKED[-1] ^ 1])
    result = dissect(bad)
    assert result.verdicts["fecf"].startswith("mismatch")
    assert result.error is not None and result.error.code == "FecfError"


def test_length_field_lie_names_field_and_offset() -> None:
    lie = bytearray(TC_WORKED)
    lie[3] += 1  # frame length field one too large
    result = dissect(bytes(lie), "TC")
    assert result.error is not None
    assert result.error.field == "frame_length" and result.error.offset == 2
    assert "12" in str(result.error) and "11" in str(result.error)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tm_frame_bytes())
def test_tm_tree_agrees_with_codec(case: tuple) -> None:
    channel, data = case
    result = dissect(data, "TM", DissectOptions(has_fecf=channel.has_fecf))
    assert result.error is None, result.error
    fields = TmFrame.unpack(data, channel).schema_fields()
    for key in ("scid", "vcid", "mc_frame_count", "vc_frame_count", "first_header_pointer",
                "ocf_flag", "secondary_header_flag", "sync_flag"):
        assert _leaf(result, key) == fields[key], key


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tc_frame_bytes())
def test_tc_tree_agrees_with_codec(case: tuple) -> None:
    channel, data = case
    opts = DissectOptions(has_fecf=channel.has_fecf, has_segment_header=channel.has_segment_header)
    result = dissect(data, "TC", opts)
    assert result.error is None, result.error
    assert _leaf(result, "scid") == channel.scid
    assert _leaf(result, "vcid") == channel.vcid


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(aos_frame_bytes())
def test_aos_tree_parses_generated_frames(case: tuple) -> None:
    channel, data = case
    opts = DissectOptions(has_fecf=channel.has_fecf, has_fhec=channel.has_fhec,
                          insert_zone_length=channel.insert_zone_length, has_ocf=channel.has_ocf)
    result = dissect(data, "AOS", opts)
    assert result.error is None, result.error
    assert _leaf(result, "scid") == channel.scid


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300), st.sampled_from([None, "TC", "TM", "AOS", "USLP", "SP", "OCF"]),
       st.booleans(), st.booleans(), st.integers(0, 8))
def test_dissect_never_raises_on_random_bytes(data: bytes, kind: str | None, fecf: bool,
                                              seg: bool, iz: int) -> None:
    result = dissect(data, kind, DissectOptions(has_fecf=fecf, has_segment_header=seg,
                                                insert_zone_length=iz))
    if result.error is not None:
        assert isinstance(result.error, SdlsQkdError)


def test_cli_samples_directory_all_ok() -> None:
    proc = _run(str(SAMPLES))
    out = proc.stdout.decode()
    assert proc.returncode == 0, proc.stderr.decode()
    assert out.count("parse: ok") == len(list(SAMPLES.glob("*.hex")))
    assert "Traceback" not in proc.stderr.decode()


def test_cli_json_from_stdin() -> None:
    proc = _run("--json", "-", stdin=TC_WORKED.hex().encode())
    assert proc.returncode == 0
    doc = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    assert doc["kind"] == "TC" and doc["verdicts"]["fecf"] == "ok"


def test_cli_malformed_input_exit_status_and_message() -> None:
    proc = _run("--type", "tm", "2f61000018")
    err = proc.stderr.decode()
    assert proc.returncode == 1
    assert "octet" in err and "Traceback" not in err


def test_cli_not_hex_is_clean_error() -> None:
    proc = _run("zz-not-hex")
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr.decode()
