#!/usr/bin/env python3
"""Convert the Yamcs AOS / USLP frame captures and the AOS FHEC cases into this project's files.

Input: the research capture ``vectors.json`` (collected from yamcs/yamcs test sources, raw
format).  Output:

* ``vectors/frames_yamcs_aos_uslp.json`` - ``sdls-vectors/1`` ``frame_decode`` vectors;
* ``vectors/fhec_yamcs.json`` - the FHEC cases in the small ``sdls-qkd-fhec/1`` format
  (described inside the file: the schema has no kind for FHEC);
* ``vectors/samples/aos_yamcs_frame01.hex``, ``vectors/samples/uslp_yamcs_fixed_rule000.hex`` -
  one frame each, a ``# provenance`` line then the hex.

Nothing here runs the library: expected values are the capture's own ``expect`` values, the
cross-checks recorded beside them (spacepackets), and slices of the captured octets taken by the
standard's fixed layout (each such derivation is named in the vector's ``notes``).  Bytes are
copied, never edited.  Usage::

    python tools/convert_yamcs_aos_uslp.py [--input PATH] [--out-dir vectors]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

DEFAULT_INPUT = Path("/work/shared/vectors/yamcs/vectors.json")
HERE = Path(__file__).resolve().parent.parent

# Digest worked value (aos-frame.md section 3): yamcs' method and CryptoLib's method agree.
DIGEST_FHEC_EXAMPLE = {
    "id": "digest-aos-fhec-worked-example",
    "gvcid_hex": "6AC5",
    "signaling_hex": "00",
    "fhec_hex": "554A",
    "source": "CCSDS digest aos-frame.md section 3 worked example (TFVN=01, SCID=0xAB, VCID=5); "
              "recomputed there with the yamcs and the CryptoLib methods, which agree",
}


def _by_kind(doc: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [v for v in doc["vectors"] if v.get("kind") == kind]


def _prov(doc: dict[str, Any], v: dict[str, Any]) -> dict[str, str]:
    p = v.get("provenance", {})
    return {
        "repo": p.get("repo", doc["source"]["repo"]),
        "commit": p.get("commit", doc["source"]["commit"]),
        "path": p.get("path", ""),
    }


def _source_note(doc: dict[str, Any], v: dict[str, Any]) -> str:
    p = _prov(doc, v)
    return f"Source: {p['repo']}@{p['commit']} {p['path']}. "


def convert_aos(doc: dict[str, Any], v: dict[str, Any]) -> dict[str, Any]:
    frame = bytes.fromhex(v["frame_hex"])
    params, expect = v["params"], v["expect"]
    if params.get("frameHeaderErrorControlPresent") or params.get("insertZoneLength"):
        raise SystemExit(f"{v['id']}: FHEC / insert zone not handled by this converter")
    length = params["frameLength"]
    if len(frame) != length:
        raise SystemExit(f"{v['id']}: frame has {len(frame)} octets, params say {length}")
    has_fecf = params.get("errorDetection") == "CRC16"
    has_ocf = bool(expect.get("ocf"))
    data_start = 6  # primary header only (no FHEC, no insert zone)
    data_end = length - (2 if has_fecf else 0) - (4 if has_ocf else 0)
    # Yamcs reports the first packet's absolute offset; the M_PDU field counts from the first
    # octet after the 2-octet M_PDU header.
    fhp = expect["first_header_pointer_offset"] - (data_start + 2)
    fields = {
        "tfvn": 1,
        "scid": expect["scid"],
        "vcid": expect["vcid"],
        "vc_frame_count": expect["vc_frame_count"],
        "fhec": None,
        "insert_zone_hex": "",
        "first_header_pointer": fhp,
        "data_field_hex": frame[data_start:data_end].hex(),
        "ocf_hex": None,
        "fecf": int.from_bytes(frame[-2:], "big") if has_fecf else None,
    }
    notes = (
        f"Yamcs AosFrameDecoderTest frame ({v.get('origin', '')}). Yamcs expects scid, vcid, "
        f"vc_frame_count, first header at absolute offset {expect['first_header_pointer_offset']} "
        f"(M_PDU FHP field = offset - 8), no OCF. Derived by layout: tfvn, data_field_hex "
        f"(octets {data_start}..{data_end - 1}), fecf (last 2 octets; the capture notes the CRC "
        f"was re-checked). Yamcs was configured with spacecraftId {params.get('spacecraftId_configured')} "
        f"but does not check it; the frame's SCID is {expect['scid']}. Yamcs also expects "
        f"'{expect.get('corrupt_byte10_to_0x0c')}' when octet 10 is set to 0x0C "
        f"(tests apply that mutation: FecfError)."
    )
    return {
        "id": v["id"],
        "kind": "frame_decode",
        "frame_type": "AOS",
        "channel": {
            "tfvn": 1, "scid": expect["scid"], "vcid": expect["vcid"], "frame_length": length,
            "has_fhec": False, "insert_zone_length": 0, "has_ocf": has_ocf, "has_fecf": has_fecf,
            "fecf_length": 2,
        },
        "input_hex": frame.hex(),
        "expected_fields": fields,
        "notes": _source_note(doc, v) + notes,
    }


# Field values of the two Yamcs USLP frames that spacepackets 0.32.0 confirmed (the capture's
# cross_check lines); each entry names the phrase that must appear in that line.
USLP_CROSS_CHECKS: dict[str, tuple[str, dict[str, int]]] = {
    "yamcs-uslp-fixed-tfdz-rule000": (
        "rules 0, UPID 0, FHP 0",
        {"construction_rule": 0, "upid": 0, "first_header_pointer": 0},
    ),
    "yamcs-uslp-variable-tfdz-rule111": (
        "src_dest=DEST, vcid=1, map_id=0, bypass=EXPEDITED, vcf_count_len=1, vcf_count=1",
        {"source_dest_flag": 1, "map_id": 0, "bypass_flag": 1, "vc_frame_count_length": 1,
         "vc_frame_count": 1, "construction_rule": 7, "upid": 0},
    ),
}


def convert_uslp(doc: dict[str, Any], v: dict[str, Any]) -> dict[str, Any]:
    frame = bytes.fromhex(v["frame_hex"])
    params, expect = v["params"], v["expect"]
    phrase, checked = USLP_CROSS_CHECKS[v["id"]]
    if phrase not in v.get("cross_check", ""):
        raise SystemExit(f"{v['id']}: cross-check line no longer says {phrase!r}")
    has_fecf = params.get("errorDetection") in ("CRC16", "CRC32")
    fecf_length = 4 if params.get("errorDetection") == "CRC32" else 2
    fixed = "frameLength" in params
    channel: dict[str, Any] = {
        "tfvn": 12, "scid": expect["scid"], "vcid": expect["vcid"], "map_id": 0,
        "frame_length": params["frameLength"] if fixed else None,
        "has_fecf": has_fecf, "fecf_length": fecf_length,
        # the frame's OCF flag is 0; yamcs takes the flag, not its "ocfPresent" setting
        "has_ocf": False, "insert_zone_length": 0,
        # extension keys of UslpChannel (ignored by readers that do not know them)
        "vc_frame_count_length": 1,
    }
    if not fixed:
        channel["max_frame_length"] = params["maxFrameLength"]
    tfdz = bytes.fromhex(expect["tfdz_hex"])
    data_start = expect["data_start"]
    tfdf_start = 8  # 7-octet header + 1-octet VC frame count (no insert zone)
    if frame[data_start:data_start + len(tfdz)] != tfdz:
        raise SystemExit(f"{v['id']}: tfdz_hex is not at data_start {data_start}")
    fields: dict[str, Any] = {
        "tfvn": 12,
        "scid": expect["scid"],
        "vcid": expect["vcid"],
        "end_of_frame_primary_header_flag": 0,
        "frame_length": len(frame) - 1,
        "ocf_flag": 0,
        "insert_zone_hex": "",
        "data_field_hex": frame[tfdf_start:data_start + len(tfdz)].hex(),
        "ocf_hex": None,
        "fecf": int.from_bytes(frame[-fecf_length:], "big") if has_fecf else None,
    }
    fields.update(checked)
    if "first_header_pointer_offset" in expect:
        fields["first_header_pointer"] = expect["first_header_pointer_offset"] - data_start
    notes = (
        f"Yamcs UslpFrameDecoderTest frame. Yamcs expects scid, vcid, data start {data_start} and "
        f"the TFDZ; spacepackets 0.32.0 cross-check: {v.get('cross_check')}. Derived by layout: "
        f"frame_length (octets - 1), data_field_hex = the whole TFDF (TFDF header at octet "
        f"{tfdf_start} + TFDZ), fecf (last {fecf_length} octets), ocf_flag/EFPH (no OCF or "
        f"truncation in Yamcs' reading). Yamcs params: {json.dumps(params, sort_keys=True)}."
    )
    return {
        "id": v["id"],
        "kind": "frame_decode",
        "frame_type": "USLP",
        "channel": channel,
        "input_hex": frame.hex(),
        "expected_fields": fields,
        "notes": _source_note(doc, v) + notes,
    }


def convert_fhec(doc: dict[str, Any], v: dict[str, Any]) -> dict[str, Any]:
    encode = [dict(DIGEST_FHEC_EXAMPLE)]
    for i, e in enumerate(v["encode"]):
        encode.append({"id": f"{v['id']}-encode-{i}", "gvcid_hex": e["gvcid_hex"],
                       "signaling_hex": e["signaling_hex"], "fhec_hex": e["fhec_hex"],
                       "source": "yamcs"})
    decode = []
    for i, d in enumerate(v["decode_corrects"]):
        g, s, f = d["in"]
        og, os_ = d["out"]
        decode.append({"id": f"{v['id']}-corrects-{i}", "gvcid_hex": g, "signaling_hex": s,
                       "fhec_hex": f, "expected": {"gvcid_hex": og, "signaling_hex": os_},
                       "expected_error": None})
    for i, (g, s, f) in enumerate(v["decode_uncorrectable"]):
        decode.append({"id": f"{v['id']}-uncorrectable-{i}", "gvcid_hex": g, "signaling_hex": s,
                       "fhec_hex": f, "expected": None, "expected_error": "FhecError"})
    return {
        "format": "sdls-qkd-fhec/1",
        "about": (
            "AOS Frame Header Error Control cases (RS(10,6) over GF(16), CCSDS 732.0-B-4). "
            "gvcid_hex = header octets 0-1 (TFVN, SCID, VCID); signaling_hex = header octet 5; "
            "fhec_hex = the 16-bit FHEC field. 'encode': fhec_hex is the FHEC of the two fields. "
            "'decode': the received triple; 'expected' = the corrected fields, or "
            "'expected_error' = 'FhecError' when the decoder must refuse (uncorrectable)."
        ),
        "provenance": {
            "source": f"{doc['source']['repo']} @ {doc['source']['commit']}",
            "path": v["provenance"]["path"],
            "how": "tools/convert_yamcs_aos_uslp.py from the research capture of Yamcs test data "
                   "(values only); plus the digest's worked example (its own 'source').",
            "note": v.get("note", ""),
        },
        "encode": encode,
        "decode": decode,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", type=Path, default=DEFAULT_INPUT)
    ap.add_argument("--out-dir", type=Path, default=HERE / "vectors")
    args = ap.parse_args(argv)
    doc = json.loads(args.input.read_text())
    vectors = [convert_aos(doc, v) for v in _by_kind(doc, "aos_frame_decode")]
    vectors += [convert_uslp(doc, v) for v in _by_kind(doc, "uslp_frame_decode")]
    frames = {
        "format": "sdls-vectors/1",
        "provenance": {
            "source": f"{doc['source']['repo']} @ {doc['source']['commit']} "
                      f"({doc['source'].get('describe', '')})",
            "commit": doc["source"]["commit"],
            "how": "tools/convert_yamcs_aos_uslp.py from the research capture of Yamcs test data "
                   "(raw bytes copied unchanged; see each vector's provenance and notes)",
            "license": doc["source"].get("license", ""),
        },
        "vectors": vectors,
    }
    fhec = [convert_fhec(doc, v) for v in _by_kind(doc, "aos_frame_header_error_control")]
    if len(fhec) != 1:
        raise SystemExit(f"expected one FHEC entry, found {len(fhec)}")
    out = args.out_dir
    (out / "samples").mkdir(parents=True, exist_ok=True)
    (out / "frames_yamcs_aos_uslp.json").write_text(json.dumps(frames, indent=1) + "\n")
    (out / "fhec_yamcs.json").write_text(json.dumps(fhec[0], indent=1) + "\n")
    samples = {
        "aos_yamcs_frame01.hex": "yamcs-aos-frame-01",
        "uslp_yamcs_fixed_rule000.hex": "yamcs-uslp-fixed-tfdz-rule000",
    }
    by_id = {v["id"]: v for v in vectors}
    for name, vid in samples.items():
        v = by_id[vid]
        p = _prov(doc, next(x for x in doc["vectors"] if x["id"] == vid))
        ch = ", ".join(f"{k}={val}" for k, val in v["channel"].items())
        (out / "samples" / name).write_text(
            f"# provenance: {p['repo']}@{p['commit']} {p['path']} (vector {vid}); "
            f"{v['frame_type']} channel {ch}; written by tools/convert_yamcs_aos_uslp.py\n"
            f"{v['input_hex']}\n")
    print(f"wrote {len(vectors)} frame vectors, {len(fhec[0]['encode'])} FHEC encode and "
          f"{len(fhec[0]['decode'])} decode cases, {len(samples)} samples to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
