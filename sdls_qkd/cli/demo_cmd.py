"""``sdls-qkd demo``: QKD keys from an emulated satellite pass secure a simulated space link.

Starts a KME pair (ETSI GS QKD 014, mutual TLS on loopback) fed by the BB84 pass emulator,
a ground end and a space end with SQLite state, then uplinks TC and downlinks TM under SDLS
(AES-256-GCM), rekeys from QKD keys, shows a replayed, a tampered and a wrong-SPI frame
rejected, and runs the key buffer dry to show the depletion policy.  Exit status 0 when every
expectation held, 1 otherwise.  Key material is never printed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from sdls_qkd.demo import (
    POLICIES,
    PRESET_PROFILES,
    DemoConfig,
    DemoEvent,
    DemoSummary,
    Sample,
    check_state_dir,
    default_state_dir,
    plot_timeline,
    run_demo,
)

_STYLE = {"phase": "bold cyan", "keys": "blue", "rekey": "green", "frame": "red",
          "check": "bold", "policy": "yellow", "info": "dim"}
PLOT_HINT = "--plot needs matplotlib: install sdls_qkd[plot] (pip install 'sdls_qkd[plot]')"


def register(subparsers: Any) -> None:
    demo = subparsers.add_parser(
        "demo", help="end-to-end demo: QKD pass -> KMEs -> key buffers -> SDLS link",
        description=__doc__.replace("``", "") if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    demo.add_argument("--preset", choices=sorted(PRESET_PROFILES), default="micius",
                      help="satellite pass of the emulator (default micius: Micius 2017)")
    demo.add_argument("--policy", choices=[p.value for p in POLICIES], default="fail-closed",
                      help="key depletion policy shown in the run-down (default fail-closed)")
    demo.add_argument("--seed", type=int, default=1, help="emulator seed (default 1)")
    demo.add_argument("--state-dir", type=Path, metavar="DIR",
                      help="new or empty directory for certificates and SQLite state "
                           "(default: a fresh temporary directory, printed)")
    demo.add_argument("--plot", type=Path, metavar="FILE.png",
                      help="draw key-buffer levels and rekeys over time (needs matplotlib)")
    demo.add_argument("--json", action="store_true",
                      help="print the summary as one JSON object on stdout (commentary on stderr)")
    demo.add_argument("--quiet", action="store_true", help="no running commentary")
    demo.set_defaults(func=run)


def _have_matplotlib() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def run(args: argparse.Namespace) -> int:
    state_dir: Path = args.state_dir if args.state_dir is not None else default_state_dir()
    check_state_dir(state_dir)
    config = DemoConfig(state_dir=state_dir, preset=args.preset, seed=args.seed,
                        policy=args.policy)
    out = Console(file=sys.stderr if args.json else sys.stdout, highlight=False,
                  no_color=args.json, soft_wrap=False)
    plot_ok = args.plot is None or _have_matplotlib()
    if not args.quiet:
        out.print(f"[bold]sdls-qkd demo[/]: pass [bold]{PRESET_PROFILES[args.preset]}[/], "
                  f"policy [bold]{args.policy}[/], seed {args.seed}")
        out.print(f"state directory: {state_dir}")
        if not plot_ok:
            out.print(f"[yellow]{PLOT_HINT}[/]")
    try:
        summary = _run_with_display(config, out, quiet=args.quiet)
    except OSError as exc:  # the state directory (or a port) is not usable
        print(f"sdls-qkd demo: error: {exc}", file=sys.stderr)
        return 1
    if args.plot is not None:
        if plot_ok:
            plot_timeline(summary, args.plot)
            if not args.quiet:
                out.print(f"plot written to {args.plot}")
        else:
            print(f"sdls-qkd demo: {PLOT_HINT}", file=sys.stderr)
    if args.json:
        data = summary.to_dict()
        data["plot"] = str(args.plot) if args.plot is not None and plot_ok else None
        print(json.dumps(data, sort_keys=True))
    else:
        _print_summary(summary, out)
    return 0 if summary.passed else 1


def _run_with_display(config: DemoConfig, out: Console, *, quiet: bool) -> DemoSummary:
    if quiet:
        return run_demo(config)
    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                        console=out, transient=True)

    def report(event: DemoEvent) -> None:
        mark = "" if event.kind != "check" else ("[green]✓[/] " if event.ok else "[red]✗[/] ")
        style = _STYLE.get(event.kind, "") if event.ok else "red"
        progress.console.print(f"[dim]{event.t_s:7.0f} s[/] [{style}]{event.kind:6}[/] "
                               f"{mark}{_escape(event.message)}")

    with progress:
        task = progress.add_task("starting KMEs", total=None)

        def on_tick(tick: int, t_s: float, sample: Sample) -> None:
            up = "open" if sample.uplink_open else "[yellow]refused[/]"
            down = "open" if sample.downlink_open else "[yellow]refused[/]"
            progress.update(task, description=(
                f"t={t_s:5.0f} s  uplink {up}  downlink {down}  ground buffer "
                f"{sample.ground_keys:2d} keys  KME store {sample.kme_keys:5.1f} keys"))

        return run_demo(config, report=report, on_tick=on_tick)


def _escape(text: str) -> str:
    return text.replace("[", r"\[")


def _print_summary(s: DemoSummary, out: Console) -> None:
    frames = Table(title="Frames", show_header=True)
    for col in ("", "sent", "accepted"):
        frames.add_column(col, justify="right" if col else "left")
    frames.add_row("TC (uplink)", str(s.frames["tc_sent"]), str(s.frames["tc_accepted"]))
    frames.add_row("TM (downlink)", str(s.frames["tm_sent"]), str(s.frames["tm_accepted"]))
    out.print(frames)

    keys = Table(title="Keys", show_header=True)
    keys.add_column("")
    keys.add_column("value", justify="right")
    for direction in ("uplink", "downlink"):
        qkd = sum(1 for r in s.rekeys if r.direction == direction and r.source == "qkd")
        keys.add_row(f"{direction} rekeys (QKD / pre-placed key)",
                     f"{qkd} / {s.rekey_count(direction) - qkd}")
    kb = s.key_bits
    for label, name in (("bits produced by the pass emulator", "emulator_produced"),
                        ("KME key store capacity, bits", "kme_store_capacity"),
                        ("bits dropped: KME key store full", "kme_store_dropped"),
                        ("bits KME_A delivered (enc_keys)", "kme_delivered"),
                        ("bits KME_B delivered by key ID (dec_keys)", "kme_b_delivered_by_id"),
                        ("bits consumed by the ground", "ground_consumed"),
                        ("bits consumed by the space end", "space_consumed"),
                        ("pre-placed bits used", "preplaced_used")):
        keys.add_row(label, f"{kb.get(name, 0):,}")
    for kme, counters in s.kme_requests.items():
        answers = ", ".join(f"{n} x {code}" for code, n in sorted(counters.items())
                            if code.isdigit())
        keys.add_row(f"{kme} HTTPS answers", answers or "none")
    out.print(keys)

    rejects = Table(title="Rejected frames by reason", show_header=True)
    rejects.add_column("reason")
    rejects.add_column("count", justify="right")
    for reason, count in s.rejects.items():
        rejects.add_row(reason, str(count))
    if not s.rejects:
        rejects.add_row("(none)", "0")
    out.print(rejects)

    checks = Table(title="Expectations", show_header=True)
    checks.add_column("")
    checks.add_column("check", overflow="fold")
    checks.add_column("expected", overflow="fold")
    checks.add_column("got", overflow="fold")
    for c in s.checks:
        checks.add_row("[green]✓[/]" if c.passed else "[red]✗[/]", c.name, _escape(c.expected),
                       _escape(c.got))
    out.print(checks)
    verdict = ("[bold green]all expectations held[/]" if s.passed
               else "[bold red]some expectations FAILED[/]")
    out.print(f"{verdict} — {s.sim_time_s:.0f} s of mission time in {s.wall_time_s:.1f} s; "
              f"state kept in {s.state_dir}")
