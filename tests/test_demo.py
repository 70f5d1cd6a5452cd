"""``sdls-qkd demo``: the README's main job, run as a real subprocess and in-process.

Everything is real (KMEs over mutual TLS on loopback, the BB84 pass emulator, SQLite state
files, the link ends); only mission time is simulated.  The subprocess run is shared by several
tests (module fixture) to keep the file fast; the in-process runs spy on every key the demo
handles, to prove none of it reaches the output.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sdls_qkd import demo as demo_mod
from sdls_qkd.cli import demo_cmd, main
from sdls_qkd.demo import ATTACKS, DemoConfig, DemoSummary, run_demo
from sdls_qkd.errors import UsageError
from sdls_qkd.keys.etsi014 import Etsi014KeyFetcher
from sdls_qkd.keys.material import QkdKey
from sdls_qkd.link.rekey import SaPair

ROOT = Path(__file__).resolve().parents[1]
HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
#: a key-sized run of hex digits (UUIDs have dashes; the demo prints only 8 digits of them)
LONG_HEX = re.compile(r"[0-9a-fA-F]{32,}")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env["COLUMNS"] = "200"
    return env


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One ``sdls-qkd demo --seed 1 --json`` subprocess (with --plot when matplotlib exists)."""
    base = tmp_path_factory.mktemp("demo")
    state = base / "state"
    plot = base / "levels.png"
    args = [sys.executable, "-m", "sdls_qkd.cli", "demo", "--state-dir", str(state),
            "--seed", "1", "--json"]
    if HAVE_MATPLOTLIB:
        args += ["--plot", str(plot)]
    done = subprocess.run(args, cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=240)
    lines = done.stdout.strip().splitlines()
    summary = json.loads(lines[-1]) if lines else {}
    return {"done": done, "summary": summary, "state": state, "plot": plot}


def test_cli_demo_exits_zero_and_every_expectation_holds(cli_run: dict[str, Any]) -> None:
    done = cli_run["done"]
    assert done.returncode == 0, done.stderr[-3000:]
    summary = cli_run["summary"]
    assert summary["passed"] is True
    failed = [c for c in summary["checks"] if not c["passed"]]
    assert not failed, failed
    assert len(done.stdout.strip().splitlines()) == 1, "with --json, stdout is one JSON object"


def test_cli_demo_rekeys_from_qkd_keys_in_both_directions(cli_run: dict[str, Any]) -> None:
    s = cli_run["summary"]
    count = s["rekey_count"]
    assert count["uplink"] >= 3 and count["downlink"] >= 3, count
    assert count["total"] == len(s["rekeys"])
    qkd = [r for r in s["rekeys"] if r["source"] == "qkd"]
    assert len(qkd) == len(s["rekeys"]), "fail-closed never uses pre-placed keys"
    for direction, spis in (("uplink", {1, 2}), ("downlink", {9, 10})):
        mine = [r for r in s["rekeys"] if r["direction"] == direction]
        assert [r["epoch"] for r in mine] == list(range(1, len(mine) + 1))
        assert {r["spi"] for r in mine} == spis  # the two SPIs take turns (hitless switch)
    # the QKD keys came through the KMEs and both ends consumed the same number of bits
    kb = s["key_bits"]
    assert kb["emulator_produced"] > 100_000  # a Micius pass yields ~0.4 Mbit
    assert kb["kme_delivered"] == kb["kme_b_delivered_by_id"] == kb["ground_consumed"] \
        == kb["space_consumed"] > 0
    # over HTTPS: KME_A served enc_keys (and said 503 once the store ran dry), KME_B dec_keys
    assert s["kme_requests"]["KME_A"]["200"] > 0 and s["kme_requests"]["KME_A"]["503"] > 0
    assert s["kme_requests"]["KME_B"]["200"] > 0
    assert kb["kme_delivered"] + kb["kme_store_dropped"] + kb["kme_store_left"] \
        <= kb["emulator_produced"]
    assert s["passes"][0]["profile"] == "micius_2017"
    assert s["passes"][0]["qber"] == pytest.approx(0.011, abs=0.003)


def test_cli_demo_rejects_each_attack_for_its_own_reason(cli_run: dict[str, Any]) -> None:
    s = cli_run["summary"]
    by_name = {c["name"]: c for c in s["checks"]}
    for name, code in ATTACKS.items():
        check = by_name[name]
        assert check["passed"], check
        assert check["got"] == f"rejected: {code}, state unchanged"
    assert by_name["genuine frame after the attacks"]["passed"]
    # exactly the three attack frames were rejected; no genuine frame was lost in any rekey
    assert s["rejects"] == {"AntiReplayFailure": 1, "InvalidSpi": 1,
                            "MacVerificationFailure": 1}
    frames = s["frames"]
    assert frames["tc_sent"] == frames["tc_accepted"] > 0
    assert frames["tm_sent"] == frames["tm_accepted"] > 0


def test_cli_demo_run_down_fails_closed(cli_run: dict[str, Any]) -> None:
    rd = cli_run["summary"]["run_down"]
    assert rd["handled"] is True
    assert rd["event"] == "KeyBufferEmpty"
    assert rd["uplink_refused"] is True and rd["downlink_refused"] is True
    assert "fail-closed" in rd["message"]
    assert rd["t_s"] > cli_run["summary"]["pass_window_s"][1], "runs dry only after the pass"


def test_cli_demo_state_dir_holds_private_sqlite_files(cli_run: dict[str, Any]) -> None:
    state: Path = cli_run["state"]
    for name in ("ground.sqlite", "space.sqlite"):
        path = state / name
        assert path.is_file()
        assert path.read_bytes()[:16] == b"SQLite format 3\x00"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, oct(path.stat().st_mode)
    assert (state / "pki" / "pki.json").is_file()  # the KMEs' mutual-TLS certificates
    keys = sorted((state / "pki").glob("*.key"))
    assert len(keys) >= 5  # CA, two KMEs, the SAEs
    for key in keys:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key.name
    assert stat.S_IMODE(state.stat().st_mode) & 0o077 == 0, "the state directory is private"
    assert {"ground.sqlite", "space.sqlite"} <= set(cli_run["summary"]["state_files"])


def test_cli_demo_prints_no_key_material(cli_run: dict[str, Any]) -> None:
    done = cli_run["done"]
    assert done.stderr.count("\n") > 20, "the commentary goes to stderr with --json"
    for stream in (done.stdout, done.stderr):
        assert LONG_HEX.search(stream) is None, LONG_HEX.search(stream)


@pytest.mark.skipif(not HAVE_MATPLOTLIB, reason="matplotlib not installed (extra sdls_qkd[plot])")
def test_cli_demo_plot(cli_run: dict[str, Any]) -> None:
    plot: Path = cli_run["plot"]
    assert cli_run["summary"]["plot"] == str(plot)
    data = plot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 20_000  # axes, three level curves, rekey lines, legend


# --------------------------------------------------------------------------- in-process runs
class KeySpy:
    """Records every QKD key and session key the demo handles (test-only instrumentation)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.keys: list[bytes] = []
        to_qkd = Etsi014KeyFetcher._to_qkd
        keyed_slot = SaPair._keyed_slot
        spy = self

        def record_qkd(self: Etsi014KeyFetcher, key: Any) -> QkdKey:
            out = to_qkd(self, key)
            spy.keys.append(out.material)
            return out

        def record_session(self: SaPair, spi: int, epoch: int, material: bytes,
                           *args: Any) -> Any:
            spy.keys.append(material)
            return keyed_slot(self, spi, epoch, material, *args)

        monkeypatch.setattr(Etsi014KeyFetcher, "_to_qkd", record_qkd)
        monkeypatch.setattr(SaPair, "_keyed_slot", record_session)

    def leaks(self, text: str) -> list[str]:
        found = []
        for key in self.keys:
            for form in (key.hex(), key.hex().upper(), base64.b64encode(key).decode(),
                         key.decode("latin-1")):
                if form in text:
                    found.append(form[:12])
        return found


def test_default_run_in_process_prints_tables_and_never_a_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        cli_run: dict[str, Any]) -> None:
    spy = KeySpy(monkeypatch)
    summaries: list[DemoSummary] = []

    def keep(*args: Any, **kwargs: Any) -> DemoSummary:
        summaries.append(run_demo(*args, **kwargs))
        return summaries[-1]

    monkeypatch.setattr(demo_cmd, "run_demo", keep)
    monkeypatch.setattr(demo_cmd, "_have_matplotlib", lambda: False)
    monkeypatch.setenv("COLUMNS", "200")
    status = main(["demo", "--state-dir", str(tmp_path / "s"), "--plot",
                   str(tmp_path / "p.png")])
    out, err = capsys.readouterr()
    assert status == 0, out[-3000:]
    assert len(spy.keys) > 40  # QKD keys of both ends and the session keys of every epoch
    assert not spy.leaks(out + err)
    assert LONG_HEX.search(out + err) is None
    # what the operator sees: commentary, rekeys, the three attacks, the policy, tables
    for text in ("KME_A", "KME_B", "uplink rekey #3", "downlink rekey #3", "replayed frame",
                 "tampered frame", "wrong-SPI frame", "KeyBufferEmpty", "Frames", "Keys",
                 "Rejected frames by reason", "Expectations", "all expectations held"):
        assert text in out, text
    # without matplotlib the plot is skipped with a hint, not a failure
    assert "install sdls_qkd[plot]" in out + err
    assert not (tmp_path / "p.png").exists()
    # deterministic given the seed: the subprocess run told the same story (timings aside)
    mine, sub = summaries[0].to_dict(), cli_run["summary"]
    for key in ("frames", "rekey_count", "rejects", "key_bits", "passes", "sim_time_s",
                "checks"):
        assert mine[key] == sub[key], key
    assert [(r["direction"], r["epoch"], r["spi"], r["t_s"]) for r in mine["rekeys"]] == \
        [(r["direction"], r["epoch"], r["spi"], r["t_s"]) for r in sub["rekeys"]]


def test_no_qkd_pass_never_keys_the_link(tmp_path: Path) -> None:
    events: list[str] = []
    summary = run_demo(DemoConfig(state_dir=tmp_path / "s", preset="none"),
                       report=lambda e: events.append(e.message))
    assert summary.passed, summary.checks
    assert summary.frames == {"tc_sent": 0, "tc_accepted": 0, "tm_sent": 0, "tm_accepted": 0}
    assert summary.key_bits["emulator_produced"] == 0
    assert summary.run_down["event"] == "KeyBufferEmpty"
    assert summary.passes[0]["aborted"]
    assert any("never keyed" in m for m in events)


def test_fallback_policy_lives_on_preplaced_keys_then_fails_closed(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch
                                                                    ) -> None:
    spy = KeySpy(monkeypatch)
    events: list[str] = []
    summary = run_demo(DemoConfig(state_dir=tmp_path / "s", preset="none", policy="fallback"),
                       report=lambda e: events.append(e.message))
    assert summary.passed, [c for c in summary.checks if not c.passed]
    assert summary.rekeys and all(r.source == "preplaced" for r in summary.rekeys)
    assert summary.key_bits["preplaced_used"] == summary.key_bits["preplaced_loaded"] > 0
    assert summary.run_down["fallback_events"] > 0
    assert summary.run_down["event"] == "KeyBufferEmpty"
    assert any("buffer-fallback" in m for m in events)
    assert not spy.leaks("\n".join(events) + json.dumps(summary.to_dict(samples=True),
                                                        default=str))


def test_extend_policy_extends_each_key_up_to_the_cap_then_fails_closed(tmp_path: Path) -> None:
    events: list[str] = []
    # a coarser tick and smaller stores than the default run: the same story, fewer frames
    config = DemoConfig(state_dir=tmp_path / "s", policy="extend", max_extensions=2,
                        tick_s=30, kme_store_keys=8, buffer_low=2, buffer_high=4)
    summary = run_demo(config, report=lambda e: events.append(e.message))
    assert summary.passed, [c for c in summary.checks if not c.passed]
    rd = summary.run_down
    assert rd["extensions"] == 2 * 2  # each of the two senders extends its last key twice
    assert rd["event"] == "KeyBufferEmpty" and "policy extend" in rd["message"]
    assert sum(": extended " in m for m in events) == 4
    assert all(r.source == "qkd" for r in summary.rekeys)


def test_a_failed_expectation_gives_a_nonzero_exit(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    # make the demo expect the wrong reason for the replayed frame: the check must fail
    monkeypatch.setitem(demo_mod.ATTACKS, "replayed frame", "MacVerificationFailure")
    status = main(["demo", "--state-dir", str(tmp_path / "s"), "--preset", "none",
                   "--policy", "fallback", "--json"])
    out, _ = capsys.readouterr()
    data = json.loads(out.strip().splitlines()[-1])
    assert status == 1
    assert data["passed"] is False
    bad = [c for c in data["checks"] if not c["passed"]]
    assert [c["name"] for c in bad] == ["replayed frame"]
    assert bad[0]["got"] == "rejected: AntiReplayFailure, state unchanged"


def test_refuses_a_state_dir_that_is_not_empty(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "old.txt").write_text("x")
    assert main(["demo", "--state-dir", str(tmp_path), "--quiet"]) == 1
    assert "is not empty" in capsys.readouterr().err
    with pytest.raises(UsageError, match="not empty"):
        run_demo(DemoConfig(state_dir=tmp_path))


@pytest.mark.parametrize("kwargs, match", [
    ({"preset": "iss"}, "unknown preset"),
    ({"policy": "pray"}, "unknown policy"),
    ({"frames_per_key": 0}, "frames_per_key"),
    ({"buffer_low": 9, "buffer_high": 8}, "watermarks"),
    ({"tick_s": 0}, "tick_s"),
])
def test_config_is_checked(tmp_path: Path, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(UsageError, match=match):
        DemoConfig(state_dir=tmp_path, **kwargs)


def test_summary_without_checks_does_not_pass() -> None:
    s = DemoSummary(preset="micius", profile="micius_2017", seed=1, policy="fail-closed",
                    state_dir="/nonexistent")
    assert s.passed is False
