#!/usr/bin/env python3
"""Convert Yamcs frame captures (raw research format) into ``sdls-vectors/1`` frame vectors.

One converter function per capture ``kind`` (registered in :data:`CONVERTERS`); each returns a
list of ``frame_decode`` vectors.  :data:`OUTPUTS` says which kinds go into which file, so
another frame type is added with one function and one line (AOS/USLP live in
``tools/convert_yamcs_aos_uslp.py`` today and can be moved here the same way).

Also writes sample frames for ``sdls-qkd inspect`` into ``vectors/samples/`` (a ``# provenance``
line, then the hex).

Nothing here runs the library: expected values are the capture's ``expect`` values, plus slices
of the captured octets taken by the standard's fixed layout (each named in the vector's
``notes``).  Captured bytes are copied, never edited; a frame given as a template description
(the secondary-header cases) is built exactly as the description says.  Usage::

    python tools/convert_yamcs_frames.py [--input PATH] [--out-dir vectors]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEFAULT_INPUT = Path("/work/shared/vectors/yamcs/vectors.json")
HERE = Path(__file__).resolve().parent.parent

Vector = dict[str, Any]
Converter = Callable[[dict[str, Any], Vector], list[Vector]]


# --------------------------------------------------------------------------- shared helpers
def provenance(doc: dict[str, Any], v: Vector) -> dict[str, str]:
    """repo / commit / path of one capture entry (falling back to the document's source)."""
    p = v.get("provenance", {})
    return {
        "repo": p.get("repo", doc["source"]["repo"]),
        "commit": p.get("commit", doc["source"]["commit"]),
        "path": p.get("path", ""),
    }


def source_note(doc: dict[str, Any], v: Vector) -> str:
    p = provenance(doc, v)
    return f"Source: {p['repo']}@{p['commit']} {p['path']}. "


def frame_decode(vid: str, frame_type: str, channel: dict[str, Any], frame: bytes,
                 fields: dict[str, Any], notes: str) -> Vector:
    """A ``frame_decode`` vector of the schema."""
    return {
        "id": vid,
        "kind": "frame_decode",
        "frame_type": frame_type,
        "channel": channel,
        "input_hex": frame.hex(),
        "expected_fields": fields,
        "notes": notes,
    }


def tm_channel(scid: int, vcid: int, frame_length: int, *, has_ocf: bool, has_fecf: bool,
               secondary_header_length: int) -> dict[str, Any]:
    return {"tfvn": 0, "scid": scid, "vcid": vcid, "frame_length": frame_length,
            "has_ocf": has_ocf, "has_fecf": has_fecf, "fecf_length": 2,
            "secondary_header_length": secondary_header_length}


# --------------------------------------------------------------------------- TM
def convert_tm_frame_decode(doc: dict[str, Any], v: Vector) -> list[Vector]:
    """``tm_frame_decode``: one captured frame with Yamcs' expectations."""
    frame = bytes.fromhex(v["frame_hex"])
    params, expect = v["params"], v["expect"]
    length = params["frameLength"]
    if len(frame) != length:
        raise SystemExit(f"{v['id']}: frame has {len(frame)} octets, params say {length}")
    has_fecf = params.get("errorDetection") == "CRC16"
    has_ocf = bool(params.get("ocfPresent"))
    if expect.get("secondary_header") is not None:
        raise SystemExit(f"{v['id']}: secondary header expectations not handled")
    data_start = expect["data_start_offset"]
    data_end = length - (2 if has_fecf else 0) - (4 if has_ocf else 0)
    fields = {
        "tfvn": 0,
        "scid": expect["scid"],
        "vcid": expect["vcid"],
        "ocf_flag": int(has_ocf),
        "secondary_header_flag": 0,
        "secondary_header_hex": None,
        "first_header_pointer": expect["first_header_pointer_field"],
        "data_field_hex": frame[data_start:data_end].hex(),
        "ocf_hex": expect["ocf_hex"],
        "fecf": int.from_bytes(frame[-2:], "big") if has_fecf else None,
    }
    notes = (
        f"Yamcs TmFrameDecoderTest frame ({v.get('origin', '')}). Yamcs expects scid, vcid, no "
        f"secondary header, first header pointer field, data start offset {data_start}, OCF. "
        f"Derived by layout: tfvn (must be 0), ocf_flag (Yamcs configured ocfPresent), "
        f"data_field_hex (octets {data_start}..{data_end - 1}), fecf (last 2 octets; the "
        f"capture notes the CRC was re-checked). Cross-check recorded in the capture: "
        f"{v.get('cross_check', '')}. Yamcs also expects "
        f"'{expect.get('corrupt_byte10_to_0x0c')}' when octet 10 is set to 0x0C "
        f"(tests apply that mutation: FecfError)."
    )
    channel = tm_channel(expect["scid"], expect["vcid"], length, has_ocf=has_ocf,
                         has_fecf=has_fecf, secondary_header_length=0)
    return [frame_decode(v["id"], "TM", channel, frame, fields, source_note(doc, v) + notes)]


# The template text of the secondary-header cases, parsed literally.
_TM_SH_SIZE = 128
_TM_SH_OCTETS = {0: 0x2F, 1: 0x60, 4: 0x87, 5: 0xFF}
_TM_SH_SCID = 758


def convert_tm_frame_decode_cases(doc: dict[str, Any], v: Vector) -> list[Vector]:
    """``tm_frame_decode_cases``: a frame template with one octet varied per case."""
    template = v["frame_template"]
    # refuse silently different templates: the literal octets below must be the ones described
    for needle in ("128-byte frame", "byte0=0x2F", "byte1=0x60", "byte4=0x87", "byte5=0xFF",
                   "scid 758", "no CRC"):
        if needle not in template:
            raise SystemExit(f"{v['id']}: template changed ({needle!r} missing): {template!r}")
    out = []
    for case in v["cases"]:
        frame = bytearray(_TM_SH_SIZE)
        for pos, val in _TM_SH_OCTETS.items():
            frame[pos] = val
        frame[6] = int(case["byte6"], 16)
        sh_len, data_start = case["sh_len"], case["data_start"]
        if data_start != 6 + sh_len:
            raise SystemExit(f"{v['id']}: data_start {data_start} != 6 + sh_len {sh_len}")
        fields = {
            "tfvn": 0,
            "scid": _TM_SH_SCID,
            "vcid": 0,
            "ocf_flag": 0,
            "secondary_header_flag": 1,
            "first_header_pointer": 0x7FF,
            "secondary_header_hex": bytes(frame[6:data_start]).hex(),
            "data_field_hex": bytes(frame[data_start:]).hex(),
            "ocf_hex": None,
            "fecf": None,
        }
        notes = (
            f"Yamcs TmFrameDecoderTest secondary-header case: {template}; byte6=0x{case['byte6']}"
            f". Yamcs expects a secondary header of {sh_len} octets (ID octet included) and data "
            f"from offset {data_start}: {v.get('note', '')}. Derived by layout from the template "
            f"octets: vcid 0, ocf_flag 0 (octet 1 = 0x60), secondary_header_flag 1 and first "
            f"header pointer 0x7FF (octets 4-5 = 87 FF), data_field_hex to the end (no OCF, no "
            f"FECF). The managed secondary_header_length is the capture's sh_len."
        )
        channel = tm_channel(_TM_SH_SCID, 0, _TM_SH_SIZE,
                             has_ocf=False, has_fecf=False, secondary_header_length=sh_len)
        out.append(frame_decode(f"{v['id']}-byte6-{case['byte6'].lower()}", "TM", channel,
                                bytes(frame), fields, source_note(doc, v) + notes))
    return out


#: capture kind -> converter
CONVERTERS: dict[str, Converter] = {
    "tm_frame_decode": convert_tm_frame_decode,
    "tm_frame_decode_cases": convert_tm_frame_decode_cases,
}

#: output file -> capture kinds it holds
OUTPUTS: dict[str, tuple[str, ...]] = {
    "frames_yamcs_tm.json": ("tm_frame_decode", "tm_frame_decode_cases"),
}


# --------------------------------------------------------------------------- samples
def samples(doc: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Sample frames for ``inspect``: file name -> (provenance line, hex)."""
    by_id = {v["id"]: v for v in doc["vectors"]}
    out: dict[str, tuple[str, str]] = {}
    tm = by_id["yamcs-tm-frame-01"]
    p = provenance(doc, tm)
    out["tm_yamcs_01.hex"] = (
        f"TM frame, 1115 octets, SCID 758 VCID 0, OCF + FECF; {p['repo']}@{p['commit']} "
        f"{p['path']}", tm["frame_hex"])
    for vid, name in (("yamcs-cltu-01", "tc_yamcs_cltu01.hex"),
                      ("yamcs-cltu-02", "tc_yamcs_cltu02.hex")):
        v = by_id[vid]
        p = provenance(doc, v)
        frame = bytes.fromhex(v["tc_frame_hex"])
        out[name] = (f"TC frame ({len(frame)} octets, SCID 758 VCID 0, FECF) encoded as CLTU by "
                     f"Yamcs BchCltuGeneratorTest; {p['repo']}@{p['commit']} {p['path']}",
                     v["tc_frame_hex"])
    # the digest's worked BD frame (tc-frame.md section 5)
    out["tc_digest_bd.hex"] = (
        "TC BD frame SCID 0x123 VCID 1 FSN 0 data 01020304, FECF 0xAD77: CCSDS 232.0-B digest "
        "tc-frame.md section 5 worked frame", "2123040a0001020304ad77")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT)
    parser.add_argument("--out-dir", type=Path, default=HERE / "vectors")
    args = parser.parse_args(argv)
    doc = json.loads(args.input.read_text())
    source = doc["source"]
    for filename, kinds in OUTPUTS.items():
        vectors: list[Vector] = []
        for v in doc["vectors"]:
            if v.get("kind") in kinds:
                vectors.extend(CONVERTERS[v["kind"]](doc, v))
        out = {
            "format": "sdls-vectors/1",
            "provenance": {
                "source": f"{source['repo']} @ {source['commit']} ({source.get('describe', '')})",
                "commit": source["commit"],
                "how": "tools/convert_yamcs_frames.py from the research capture of Yamcs test "
                       "data (raw bytes copied unchanged; see each vector's notes)",
                "license": source.get("license", ""),
            },
            "vectors": vectors,
        }
        path = args.out_dir / filename
        path.write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {path} ({len(vectors)} vectors)", file=sys.stderr)
    sample_dir = args.out_dir / "samples"
    sample_dir.mkdir(parents=True, exist_ok=True)
    for name, (prov, hexdata) in samples(doc).items():
        (sample_dir / name).write_text(f"# provenance: {prov}\n{hexdata}\n")
        print(f"wrote {sample_dir / name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
