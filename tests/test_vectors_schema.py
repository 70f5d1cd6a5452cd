"""sdls-vectors/1 loader: validation errors name the vector and key; write/load round-trips."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from sdls_qkd import vectors as sv
from sdls_qkd.errors import InvalidConfiguration, SdlsQkdError

ROOT = Path(__file__).resolve().parent.parent


def _sdls_vector_files() -> list[Path]:
    """The repository's sdls-vectors/1 files (vectors/ also holds other formats)."""
    out = []
    for path in sorted((ROOT / "vectors").glob("*.json")):
        try:
            fmt = json.loads(path.read_text()).get("format")
        except (ValueError, AttributeError):
            continue
        if fmt == "sdls-vectors/1":
            out.append(path)
    return out


VECTOR_FILES = _sdls_vector_files()


def _doc() -> dict[str, Any]:
    return {
        "format": "sdls-vectors/1",
        "provenance": {"source": "unit test", "commit": None, "how": "written by hand"},
        "vectors": [{
            "id": "v1",
            "frame_type": "TC",
            "operation": "apply",
            "channel": {"tfvn": 0, "scid": 3, "vcid": 0, "map_id": None, "has_fecf": True,
                        "fecf_length": 2, "has_segment_header": False, "frame_length": None},
            "sa": {"spi": 1, "encrypt": False, "authenticate": False, "cipher": None,
                   "mac_algorithm": None, "iv_length": 0, "transmitted_iv_length": 0,
                   "iv_hex": "", "sn_length": 0, "transmitted_sn_length": 0, "sn_hex": "",
                   "window": 0, "pad_length_field_length": 0, "mac_length": 0, "abm_fill": "00"},
            "input_hex": "2003000800aabb0000",
            "expected_hex": "20030009000001aabb0000",
            "expected_error": None,
            "sa_after": {"iv_hex": "", "sn_hex": ""},
        }],
    }


def _error(doc: Any) -> str:
    with pytest.raises(sv.VectorFileError) as info:
        sv.validate(doc)
    assert isinstance(info.value, SdlsQkdError)
    return str(info.value)


def test_valid_document_passes() -> None:
    sv.validate(_doc())


@pytest.mark.parametrize("path", VECTOR_FILES, ids=lambda p: p.name)
def test_repository_vector_files_are_valid(path: Path) -> None:
    vf = sv.load(path)
    assert vf.vectors, f"{path.name} has no vectors"
    assert vf.provenance["source"] and vf.provenance["how"]


def test_wrong_format_is_named() -> None:
    doc = _doc()
    doc["format"] = "sdls-vectors/2"
    assert "format" in _error(doc) and "sdls-vectors/2" in _error(doc)


@pytest.mark.parametrize("key", ["id", "frame_type", "operation", "channel", "sa", "input_hex"])
def test_missing_vector_key_is_named(key: str) -> None:
    doc = _doc()
    del doc["vectors"][0][key]
    message = _error(doc)
    assert f"{key}: missing" in message
    assert "vectors[0]" in message


@pytest.mark.parametrize("key", ["spi", "encrypt", "authenticate"])
def test_missing_sa_key_is_named(key: str) -> None:
    doc = _doc()
    del doc["vectors"][0]["sa"][key]
    message = _error(doc)
    assert f"sa.{key}: missing" in message and "(id 'v1')" in message


def test_missing_provenance_key() -> None:
    doc = _doc()
    del doc["provenance"]["how"]
    assert "provenance.how: missing" in _error(doc)


def test_tm_channel_needs_frame_length() -> None:
    doc = _doc()
    doc["vectors"][0]["frame_type"] = "TM"
    assert "channel.frame_length: must be an integer, not None" in _error(doc)
    del doc["vectors"][0]["channel"]["frame_length"]
    assert "channel.frame_length: missing" in _error(doc)


@pytest.mark.parametrize("value, words", [
    ("20030", "odd number of digits"),
    ("2003zz", "character 'z' at position 4"),
    (5, "must be a hex string"),
])
def test_bad_hex_is_explained(value: Any, words: str) -> None:
    doc = _doc()
    doc["vectors"][0]["input_hex"] = value
    message = _error(doc)
    assert "input_hex" in message and words in message


def test_bad_hex_in_sa_and_sa_after() -> None:
    doc = _doc()
    doc["vectors"][0]["sa"]["key_hex"] = "0g"
    assert "sa.key_hex" in _error(doc)
    doc = _doc()
    doc["vectors"][0]["sa_after"]["iv_hex"] = "abc"
    assert "sa_after.iv_hex" in _error(doc)


def test_both_expected_hex_and_error() -> None:
    doc = _doc()
    doc["vectors"][0]["expected_error"] = "InvalidSpi"
    message = _error(doc)
    assert "exactly one" in message and "both" in message


def test_neither_expected_hex_nor_error() -> None:
    doc = _doc()
    doc["vectors"][0]["expected_hex"] = None
    message = _error(doc)
    assert "exactly one" in message and "neither" in message
    del doc["vectors"][0]["expected_hex"]
    assert "neither" in _error(doc)


def test_unknown_error_name() -> None:
    doc = _doc()
    doc["vectors"][0]["expected_hex"] = None
    doc["vectors"][0]["expected_error"] = "BadThing"
    assert "'BadThing' is not one of" in _error(doc)


@pytest.mark.parametrize("path, value, words", [
    (("frame_type",), "XYZ", "'XYZ' is not one of TC, TM, AOS, USLP"),
    (("operation",), "encrypt", "is not one of apply, process"),
    (("sa", "spi"), 70000, "outside 0..65535"),
    (("sa", "spi"), True, "must be an integer"),
    (("sa", "encrypt"), 1, "must be true or false"),
    (("sa", "iv_length"), -1, "outside 0.."),
    (("sa", "state"), "RUNNING", "is not one of NONE"),
    (("sa", "abm_fill"), "ffff", "one octet"),
    (("channel", "scid"), "3", "must be an integer"),
    (("quirks",), "fecf_not_checked", "list of strings"),
])
def test_bad_values_are_explained(path: tuple[str, ...], value: Any, words: str) -> None:
    doc = _doc()
    target = doc["vectors"][0]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    message = _error(doc)
    assert words in message and ".".join(path) in message


def test_iv_length_mismatch() -> None:
    doc = _doc()
    doc["vectors"][0]["sa"]["iv_length"] = 12
    doc["vectors"][0]["sa"]["iv_hex"] = "00" * 11
    assert "sa.iv_hex: has 11 octets, sa.iv_length is 12" in _error(doc)


def test_abm_hex_and_fill_both() -> None:
    doc = _doc()
    doc["vectors"][0]["sa"]["abm_hex"] = "ff"
    assert "not both" in _error(doc)


def test_duplicate_ids() -> None:
    doc = _doc()
    doc["vectors"].append(copy.deepcopy(doc["vectors"][0]))
    assert "vectors[1] (id 'v1'): id: duplicate of vectors[0]" in _error(doc)


def test_vectors_not_a_list_and_vector_not_object() -> None:
    doc = _doc()
    doc["vectors"] = {}
    assert "vectors: must be a list" in _error(doc)
    doc = _doc()
    doc["vectors"] = ["x"]
    assert "vectors[0]" in _error(doc)


def test_frame_only_kinds() -> None:
    doc = _doc()
    doc["vectors"] = [{"id": "d", "kind": "frame_decode", "frame_type": "TC",
                       "channel": {"scid": 1, "vcid": 2}, "input_hex": "00",
                       "expected_fields": {"scid": 1}},
                      {"id": "e", "kind": "frame_encode", "frame_type": "TC",
                       "channel": {"scid": 1, "vcid": 2}, "fields": {"scid": 1},
                       "expected_hex": "00"}]
    sv.validate(doc)
    del doc["vectors"][0]["expected_fields"]
    assert "expected_fields: missing" in _error(doc)
    doc["vectors"][0]["kind"] = "frame_dance"
    assert "kind" in _error(doc)


def test_loads_reports_source_and_json_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(sv.VectorFileError, match="bad.json: not JSON"):
        sv.load(bad)
    with pytest.raises(sv.VectorFileError, match="cannot read"):
        sv.load(tmp_path / "missing.json")
    doc = _doc()
    del doc["vectors"][0]["sa"]
    bad.write_text(json.dumps(doc))
    with pytest.raises(sv.VectorFileError, match=r"bad\.json: vectors\[0\] \(id 'v1'\): sa: "):
        sv.load(bad)


def test_vector_file_error_is_a_configuration_error() -> None:
    assert issubclass(sv.VectorFileError, InvalidConfiguration)


def test_write_load_round_trip_is_deterministic(tmp_path: Path) -> None:
    doc = _doc()
    path = tmp_path / "out.json"
    sv.write(path, doc)
    first = path.read_bytes()
    loaded = sv.load(path)
    assert loaded.doc == doc
    sv.write(path, loaded)
    assert path.read_bytes() == first
    assert first.endswith(b"\n") and json.loads(first) == doc
    # key order in the input does not change the output
    reordered = {k: doc[k] for k in reversed(list(doc))}
    assert sv.dumps(reordered) == first.decode()


def test_write_refuses_invalid_document(tmp_path: Path) -> None:
    doc = _doc()
    doc["vectors"][0]["expected_error"] = "InvalidSpi"
    with pytest.raises(sv.VectorFileError):
        sv.write(tmp_path / "x.json", doc)
    assert not (tmp_path / "x.json").exists()


def test_document_helper() -> None:
    doc = sv.document(_doc()["vectors"], source="s", how="h", commit="c")
    sv.validate(doc)
    assert doc["provenance"] == {"source": "s", "commit": "c", "how": "h"}


def test_converted_files_round_trip(tmp_path: Path) -> None:
    names = {p.name for p in VECTOR_FILES}
    assert {"cryptolib.json", "yamcs_sdls.json"} <= names
    for path in VECTOR_FILES:
        vf = sv.load(path)
        out = tmp_path / path.name
        sv.write(out, vf)
        assert sv.load(out).doc == vf.doc


# --------------------------------------------------------------------------- hostile documents
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=8)
    | st.sampled_from(["00", "zz", "TC", "apply", "InvalidSpi", "sdls-vectors/1"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=4),
    max_leaves=12)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(obj, dict):
        for key, value in obj.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            out += _paths(value, (*prefix, i))
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_documents_never_crash_the_validator(data: st.DataObject) -> None:
    doc = _doc()
    for _ in range(data.draw(st.integers(1, 3))):
        paths = [p for p in _paths(doc) if p]
        path = data.draw(st.sampled_from(paths))
        parent: Any = doc
        for key in path[:-1]:
            parent = parent[key]
        if isinstance(parent, dict) and data.draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(_json)
        if not isinstance(doc, dict):
            break
    try:
        sv.validate(doc)
    except sv.VectorFileError as exc:
        assert str(exc)


@settings(max_examples=200, deadline=None)
@given(doc=_json)
def test_random_json_never_crashes_the_validator(doc: Any) -> None:
    with pytest.raises(sv.VectorFileError):
        sv.validate(doc)
