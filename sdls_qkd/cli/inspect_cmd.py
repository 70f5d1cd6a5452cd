"""``sdls-qkd inspect``: dissect frames given as hex, files (hex text or binary) or stdin.

With ``--sa FILE`` (an ``sdls-vectors/1`` file or a link configuration ``.toml``) every frame is
also verified: security header, MAC verdict, anti-replay verdict against the SA's stored
counters, and the decrypted data field; nothing is written back.  ``--type ep`` dissects an
SDLS Extended Procedures PDU.  Keys are never printed.

Exit status 0 when every input parsed, its FECF verified and (with ``--sa``) it passed SDLS
verification, 1 otherwise; a malformed frame gives a message naming the field and octet offset,
never a traceback.  Input that cannot be read at all (not hex, not a file, an invalid SA file)
exits 2 with a one-line error.
"""

from __future__ import annotations

import argparse
import json
import string
import sys
from pathlib import Path
from typing import Any

from sdls_qkd.dissect import KINDS, Dissection, DissectOptions, Node, dissect
from sdls_qkd.errors import InvalidConfiguration, InvalidHeader, SdlsQkdError


def register(sub: Any) -> None:
    """Add the ``inspect`` sub-command."""
    p = sub.add_parser("inspect", help="dissect a frame or packet into an annotated field tree",
                       description=__doc__)
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="hex string, file (hex text with optional '#' comment lines, or binary), "
                        "directory of *.hex files, or '-' for stdin (default)")
    p.add_argument("--type", dest="kind", choices=[k.lower() for k in KINDS] + list(KINDS),
                   help="what the input is (default: auto-detect from version and length bits; "
                        "an EP PDU is never auto-detected)")
    p.add_argument("--no-fecf", action="store_true", help="the channel has no FECF")
    p.add_argument("--fecf-length", type=int, choices=(2, 4), default=2,
                   help="USLP FECF length in octets (default 2)")
    p.add_argument("--segment-header", action="store_true", help="TC channel uses segment headers")
    p.add_argument("--fhec", action="store_true", help="AOS channel has the FHEC")
    p.add_argument("--insert-zone", type=int, default=0, metavar="N",
                   help="AOS/USLP insert zone length in octets")
    p.add_argument("--ocf", action="store_true", help="AOS channel has an OCF")
    p.add_argument("--json", action="store_true", help="one JSON document per input")
    p.add_argument("--sa", metavar="FILE",
                   help="SA/key file (sdls-vectors/1 JSON, or link configuration .toml): verify "
                        "and decrypt every frame; channel parameters come from the file")
    p.add_argument("--vector", metavar="ID",
                   help="with --sa: use only the SA of this vector of the file")
    p.add_argument("--no-replay-check", action="store_true",
                   help="with --sa: do not judge the anti-replay window")
    p.set_defaults(func=run)


def _hex_text(text: str) -> bytes | None:
    lines = [ln.split("#", 1)[0] for ln in text.splitlines()]
    compact = "".join("".join(lines).split()).removeprefix("0x")
    if compact and all(c in string.hexdigits for c in compact) and len(compact) % 2 == 0:
        return bytes.fromhex(compact)
    return None


def _load(spec: str) -> list[tuple[str, bytes]]:
    """(label, bytes) for one INPUT argument."""
    if spec == "-":
        raw = sys.stdin.buffer.read()
        try:
            as_hex = _hex_text(raw.decode("ascii"))
        except UnicodeDecodeError:
            as_hex = None
        return [("<stdin>", as_hex if as_hex is not None else raw)]
    path = Path(spec)
    try:
        is_dir, is_file = path.is_dir(), path.is_file()
    except OSError:  # e.g. a long hex string is no valid file name
        is_dir = is_file = False
    if is_dir:
        out: list[tuple[str, bytes]] = []
        for child in sorted(path.glob("*.hex")) + sorted(path.glob("*.bin")):
            out.extend(_load(str(child)))
        return out
    if is_file:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise InvalidHeader(f"{spec}: cannot read: {exc.strerror or exc}") from None
        try:
            as_hex = _hex_text(raw.decode("ascii"))
        except UnicodeDecodeError:
            as_hex = None
        return [(spec, as_hex if as_hex is not None else raw)]
    as_hex = _hex_text(spec)
    if as_hex is None:
        raise InvalidHeader(f"{spec!r} is neither a file, a directory nor an even-length hex string")
    return [("<hex>", as_hex)]


def _render(node: Node, prefix: str, last: bool, out: list[str], top: bool = False) -> None:
    where = f"[{node.offset}" + (f"..{node.offset + node.length - 1}]" if node.length > 1 else "]")
    bits = f" bits {node.bits}" if node.bits else ""
    value = "" if node.value is None else f" = {node.value}"
    meaning = f"  ({node.meaning})" if node.meaning else ""
    if top:
        out.append(f"{node.name} {where}{value if not node.children else ''}{meaning}")
        child_prefix = ""
    else:
        branch = "└─ " if last else "├─ "
        shown = value if not node.children or len(str(node.value)) <= 16 else ""
        out.append(f"{prefix}{branch}{node.name} {where}{bits}{shown}{meaning}")
        child_prefix = prefix + ("   " if last else "│  ")
    for i, child in enumerate(node.children):
        _render(child, child_prefix, i == len(node.children) - 1, out)


def format_text(label: str, result: Dissection) -> str:
    """Human-readable tree with the verdicts."""
    lines = [f"== {label}: {result.kind}, {result.root.length} octets"]
    _render(result.root, "", True, lines, top=True)
    for key, verdict in result.verdicts.items():
        lines.append(f"{key}: {verdict}")
    plaintext = (result.security or {}).get("plaintext_hex")
    if plaintext is not None:
        lines.append(f"decrypted: {plaintext or '(empty)'}")
    if result.error is not None:
        lines.append(f"error: {result.error}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Dissect (and with ``--sa`` verify) every input; 1 if any failed, 2 if unreadable."""
    opts = DissectOptions(has_fecf=not args.no_fecf, fecf_length=args.fecf_length,
                          has_segment_header=args.segment_header, has_fhec=args.fhec,
                          insert_zone_length=args.insert_zone, has_ocf=args.ocf)
    inputs: list[tuple[str, bytes]] = []
    try:
        if args.vector is not None and args.sa is None:
            raise InvalidConfiguration("--vector needs --sa", field="vector")
        keys = None
        if args.sa is not None:
            from sdls_qkd.inspect_security import load_key_file

            keys = load_key_file(args.sa, vector_id=args.vector)
        for spec in args.inputs or ["-"]:
            inputs.extend(_load(spec))
    except SdlsQkdError as exc:
        print(f"sdls-qkd: error: {exc}", file=sys.stderr)
        return 2
    status = 0
    for label, data in inputs:
        if keys is not None:
            from sdls_qkd.inspect_security import inspect_secured

            result = inspect_secured(data, args.kind, keys,
                                     replay_check=not args.no_replay_check, fallback=opts)
        else:
            result = dissect(data, args.kind, opts)
        bad = result.error is not None or result.failed or \
            result.verdicts.get("fecf", "ok").startswith("mismatch")
        if bad:
            status = 1
        if args.json:
            doc = {"input": label, **result.to_json()}
            print(json.dumps(doc))
        else:
            print(format_text(label, result))
        if result.error is not None and not args.json:
            print(f"sdls-qkd: {label}: {result.error}", file=sys.stderr)
        elif result.failed and not args.json:
            print(f"sdls-qkd: {label}: {result.verdicts.get('security', 'failed')}",
                  file=sys.stderr)
    return status
