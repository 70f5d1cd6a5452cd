"""The fuzzing kit: field mutators (MAC/FECF recomputed or left wrong), targets, harnesses, the
one-import strategies module and ``sdls-qkd fuzz corpus`` / ``fuzz run`` as subprocesses."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdls_qkd.errors import SdlsQkdError
from sdls_qkd.framing.channel import TcChannel, UslpChannel, channel_from_dict
from sdls_qkd.fuzz import strategies as fs
from sdls_qkd.fuzz.mutators import FrameMutator, reseal
from sdls_qkd.fuzz.targets import TARGETS, hypothesis_run, run, seeds
from sdls_qkd.security.engine import apply_security, process_security
from sdls_qkd.security.sa import SecurityAssociation

ROOT = Path(__file__).resolve().parent.parent
FUZZ_DIR = ROOT / "tools" / "fuzz"
FRAMES = fs._protected(0)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sdls_qkd.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=240, check=False)


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _process(frame: fs.ProtectedFrame, data: bytes) -> tuple[str, SecurityAssociation, Any]:
    """Outcome name ("ok" or the error code), the receiver SA, its snapshot before."""
    sa = frame.receiver_sa()
    before = sa.snapshot()
    try:
        process_security(data, frame.channel, {sa.spi: sa})
    except SdlsQkdError as exc:
        assert sa.snapshot() == before, "a rejected frame changed the SA"
        return exc.code, sa, before
    return "ok", sa, before


# =========================================================================== fuzz corpus
def test_fuzz_corpus_is_deterministic_and_described(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for out, seed in ((a, "5"), (b, "5"), (c, "6")):
        proc = _cli("fuzz", "corpus", "--out", str(out), "--seed", seed)
        assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1].endswith("(manifest.json describes them)")
    tree_a = _tree(a)
    assert tree_a == _tree(b)
    assert tree_a != _tree(c)
    manifest = json.loads((a / "manifest.json").read_text())
    assert manifest["format"] == "sdls-qkd-fuzz-corpus/1" and manifest["seed"] == 5
    dirs = {p.name for p in a.iterdir() if p.is_dir()}
    assert dirs == set(manifest["targets"])
    for expected in ("space-packets", "tc-frames", "tm-frames", "aos-frames", "uslp-frames",
                     "ocf", "ep-pdus", "ep-packets", "cve"):
        assert expected in dirs
    for kind in ("tc", "tm", "aos", "uslp-fixed", "uslp-variable"):
        assert any(d.startswith(f"sdls-{kind}-") for d in dirs), kind
    for name, meta in manifest["targets"].items():
        assert sorted(meta["files"]) == sorted(p.name for p in (a / name).iterdir())
        assert meta["files"], name


def test_corpus_sdls_directories_work_with_their_manifest(tmp_path: Path) -> None:
    """The 'valid' input of each SDLS directory is accepted with the manifest's channel and SA;
    every other input is rejected or accepted, never a crash, and the mutants reach more than
    the FECF and MAC checks."""
    assert _cli("fuzz", "corpus", "--out", str(tmp_path)).returncode == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    codes: set[str] = set()
    for name, meta in manifest["targets"].items():
        if not name.startswith("sdls-"):
            continue
        channel = channel_from_dict(meta["frame_type"], meta["channel"])
        for fname, label in sorted(meta["files"].items()):
            sa = SecurityAssociation.from_schema(meta["sa"], frame_type=meta["frame_type"],
                                                 channel=channel)
            data = (tmp_path / name / fname).read_bytes()
            try:
                result = process_security(data, channel, {sa.spi: sa})
            except SdlsQkdError as exc:
                assert label != "valid"
                codes.add(exc.code)
                continue
            codes.add("ok")
            if label == "valid":
                assert result.data.hex() == meta["expected_data_hex_of_valid"]
    assert {"ok", "FecfError", "MacVerificationFailure", "InvalidSpi", "AntiReplayFailure",
            "InvalidFrameLength", "InvalidHeader", "PaddingError"} <= codes


# =========================================================================== mutators
def test_unchanged_fields_rebuild_the_engines_frame() -> None:
    """Writing every field's own value back, in every mode, gives the engine's output: the
    mutator's sealing is the engine's ApplySecurity, octet for octet."""
    for frame in FRAMES:
        mutator = frame.mutator()
        for bf in mutator.fields:
            current = bf.get(frame.frame)
            for mode in ("raw", "fecf") if bf.name == "data" else ("raw", "fecf", "mac"):
                assert mutator.mutate(bf.name, current, mode).frame == frame.frame, \
                    (frame.id, bf.name, mode)


def _with_field(frame: fs.ProtectedFrame, name: str) -> bool:
    return any(bf.name == name for bf in frame.mutator().fields)


def test_modes_decide_which_check_catches_the_change() -> None:
    """SPI changed: raw -> FECF error (when there is a FECF), resealed -> unknown SPI."""
    seen = 0
    for frame in FRAMES:
        mutator = frame.mutator()
        spi = mutator.field("spi").get(frame.frame)
        raw, fecf, mac = (mutator.mutate("spi", spi ^ 0x8000, mode).frame
                          for mode in ("raw", "fecf", "mac"))
        if frame.channel.has_fecf:
            assert _process(frame, raw)[0] == "FecfError"
        assert _process(frame, fecf)[0] == "InvalidSpi"
        assert _process(frame, mac)[0] == "InvalidSpi"
        seen += 1
    assert seen == len(FRAMES) == 135


def test_mac_mode_reaches_behind_the_mac() -> None:
    """Data changed with the MAC recomputed is accepted (and delivered); without, it is a MAC
    failure.  An IV / ARSN set back to the stored value passes the MAC and fails anti-replay."""
    accepted = replayed = 0
    for frame in FRAMES:
        sa = frame.receiver_sa()
        if not sa.authenticate:
            continue
        mutator = frame.mutator()
        data_field = mutator.field("data")
        value = data_field.get(mutator.plaintext.ljust(4, b"\x00")) ^ 1
        outcome = _process(frame, mutator.mutate("data", value, "mac").frame)[0]
        assert outcome == "ok", frame.id
        assert _process(frame, mutator.mutate("data", value, "fecf").frame)[0] == \
            "MacVerificationFailure"
        accepted += 1
        for name, full, sent in (("sn", sa.arsn, sa.transmitted_sn_length),
                                 ("iv", sa.iv, sa.transmitted_iv_length)):
            if sent and len(full) == sent and _with_field(frame, name) and \
                    (name == "sn" or sa.suite.counter_iv):
                stored = int.from_bytes(full, "big")
                code = _process(frame, mutator.mutate(name, stored, "mac").frame)[0]
                assert code == "AntiReplayFailure", (frame.id, name)
                replayed += 1
    assert accepted >= 100 and replayed >= 80


def test_mac_mode_pad_length_reaches_padding_check() -> None:
    hits = 0
    for frame in FRAMES:
        sa = frame.receiver_sa()
        if not (sa.pad_length_field_length and sa.authenticate):
            continue
        top = (1 << (8 * sa.pad_length_field_length)) - 1
        frame_bytes = frame.mutator().mutate("pad_length", top, "mac").frame
        assert _process(frame, frame_bytes)[0] == "PaddingError", frame.id
        hits += 1
    assert hits >= 5  # CBC + HMAC custom layout on every frame kind


def test_length_field_mutants_are_frame_length_errors() -> None:
    for frame in FRAMES:
        if not isinstance(frame.channel, TcChannel | UslpChannel):
            continue
        mutator = frame.mutator()
        if not any(bf.name == "frame_length" for bf in mutator.fields):
            continue
        for value in (0, mutator.field("frame_length").get(frame.frame) + 1):
            code = _process(frame, mutator.mutate("frame_length", value, "fecf").frame)[0]
            assert code == "InvalidFrameLength", frame.id


def test_reseal_authenticates_any_data_field() -> None:
    """reseal() turns a fuzzer's data field into an authentic frame under the receiver's SA."""
    delivered = 0
    for frame in FRAMES:
        sa = frame.receiver_sa()
        if not sa.authenticate or sa.suite.block_size:
            continue
        mutator = frame.mutator()
        off = mutator.off
        garbage = bytearray(frame.frame)
        garbage[off.data:off.data_end] = bytes((i * 37) & 0xFF
                                               for i in range(off.data_end - off.data))
        sealed = reseal(garbage, frame.channel, sa)
        result = process_security(sealed, frame.channel, {sa.spi: sa})
        assert result.data == bytes(garbage[off.data:off.data_end]), frame.id
        delivered += 1
    assert delivered >= 90


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(fs.resealed_mutants())
def test_one_field_mutants_raise_only_library_errors(pm: tuple[fs.ProtectedFrame, fs.Mutant]) \
        -> None:
    frame, mutant = pm
    _process(frame, mutant.frame)  # asserts the SA is unchanged on rejection


# =========================================================================== targets, harnesses
@pytest.mark.parametrize("name", list(TARGETS))
def test_target_on_seeds_and_hypothesis_examples(name: str) -> None:
    pool = seeds(name)
    assert pool, name
    for data in pool:
        run(name, data)
    assert hypothesis_run(name, 40, seed=1) == 40


def test_process_target_notices_state_change_on_rejection(monkeypatch: pytest.MonkeyPatch) \
        -> None:
    """The targets' invariant check can fail: a (simulated) engine that advances the SA and then
    rejects is reported as a crash, not swallowed."""
    from sdls_qkd.errors import MacVerificationFailure
    from sdls_qkd.security import engine

    def bad_process(frame: bytes, channel: object, sas: dict[int, Any], *a: object,
                    **k: object) -> None:
        sa = next(iter(sas.values()))
        sa.window += 1
        raise MacVerificationFailure("simulated")

    monkeypatch.setattr(engine, "process_security", bad_process)
    with pytest.raises(AssertionError, match="changed the SA"):
        run("process_tc", seeds("process_tc")[0])


def test_every_target_has_an_atheris_harness() -> None:
    harnesses = {p.stem.removeprefix("fuzz_") for p in FUZZ_DIR.glob("fuzz_*.py")}
    assert harnesses == set(TARGETS)
    for path in FUZZ_DIR.glob("*.py"):
        compile(path.read_text(), str(path), "exec")


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None,
                    reason="atheris not installed (tools/fuzz/run_hypothesis.py is the fallback)")
def test_atheris_harness_runs(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(FUZZ_DIR / "fuzz_process_tc.py"),
                           "-atheris_runs=300", f"-artifact_prefix={tmp_path}/"], cwd=ROOT,
                          capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Done 300 " in proc.stderr


def test_fuzz_run_command() -> None:
    proc = _cli("fuzz", "run", "ocf", "process_aos", "--examples", "30", "--seed", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == ["OK ocf 30 examples", "OK process_aos 30 examples"]
    bad = _cli("fuzz", "run", "no_such_target")
    assert bad.returncode == 1 and "unknown target" in bad.stderr


# =========================================================================== strategies
STRATEGY_MODULES = ("packets", "tc", "tm", "aos", "uslp", "ocf", "security", "procedures",
                    "mutators")


def test_strategies_module_re_exports_every_strategy() -> None:
    exported = {id(getattr(fs, name)) for name in fs.__all__}
    for mod_name in STRATEGY_MODULES:
        module = importlib.import_module(f"sdls_qkd.fuzz.{mod_name}")
        for name in module.__all__:
            assert id(getattr(module, name)) in exported, f"{mod_name}.{name}"


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_strategies_draw(data: st.DataObject) -> None:
    data.draw(fs.mutated_tc_bytes())
    data.draw(fs.mutated_uslp_bytes())
    frame = data.draw(fs.protected_frames("AOS"))
    assert frame.channel.frame_type == "AOS"
    data.draw(fs.target_inputs("ep_pdu"))


def test_apply_of_generated_inputs_matches_protected_frames() -> None:
    """ProtectedFrame's sender SA re-applied to the generated input gives the same frame
    (the strategies' frames are the vectors' frames)."""
    from sdls_qkd.vectors_generate import generate_vectors

    vectors = {v["id"]: v for v in generate_vectors(0, frame_kinds=["TM"], negatives=["bad_fecf"])}
    for frame in FRAMES:
        if "/TM/" not in frame.id:
            continue
        applied = vectors[frame.id.removesuffix("process") + "apply"]
        tx = SecurityAssociation.from_schema(frame.sender, frame_type="TM", channel=frame.channel)
        from sdls_qkd.security.engine import EngineOptions

        opts = EngineOptions(iv_override=frame.iv) if frame.iv else EngineOptions()
        out = apply_security(bytes.fromhex(applied["input_hex"]), frame.channel, tx, opts)
        assert out == frame.frame
        assert isinstance(frame.mutator(), FrameMutator)
