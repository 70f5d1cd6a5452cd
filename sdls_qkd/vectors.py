"""``sdls-vectors/1``: load, validate, write and check SDLS test-vector files.

The format is described in ``SCHEMA.md`` of the vector exchange (kept beside the converted files
in ``vectors/``).  :func:`load` validates a document and names the offending vector and key on
any error; :func:`write` emits a deterministic file; :func:`check` runs every vector against this
library (SDLS vectors through :mod:`sdls_qkd.security.engine`, frame-only vectors through the
frame codecs) and returns a structured report.

A vector listing a quirk that the checker does not reproduce is *skipped* with the quirk named,
never passed.  Anything the library raises that is not an :mod:`sdls_qkd.errors` exception is a
failure ("crash"), whatever the vector expects.

``ep_executed`` is reproduced here, not in the engine (:data:`CHECKER_QUIRKS`): after
ProcessSecurity the recovered data goes to an
:class:`~sdls_qkd.procedures.onboard.OnboardSecurityManager` in CryptoLib mode, set up with what
the vector gives: the vector's SA is the SA that carried the command (SPI, and the target an EP
must not touch), the TC length field is the received frame's, and the rest is CryptoLib's
default set-up (:mod:`sdls_qkd.procedures.cryptolib_defaults`): its key ring, EP on SPI 0 / 63,
EP packets on APID 0x180 with the 4-octet PUS header (the vector cannot say otherwise: CryptoLib's
``has_pus_hdr`` switch is not part of the schema).  The vector then passes when
ProcessSecurity recovers ``expected_hex`` and the command executes, or when the command raises
``expected_error``; a rejected command must leave the manager's state unchanged.  The notes of
such a vector may carry two things, which are then checked / applied:

* ``EP reply: <hex>`` (or ``ep_reply_hex=<hex>``): the reply packet the peer sent, compared octet
  for octet;
* ``EP set-up: key <id> <STATE>[, key <id> <STATE>...]``: key states the peer's test set before
  the call (applied to the default ring).

A vector whose outcome depends on state that a known CryptoLib test sets and the vector does not
carry (:data:`~sdls_qkd.procedures.cryptolib_defaults.CRYPTOLIB_TEST_SETUPS`) is skipped with
that reason.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any

from sdls_qkd.errors import BY_CODE, InvalidConfiguration, SdlsQkdError
from sdls_qkd.framing.channel import channel_from_dict

FORMAT = "sdls-vectors/1"
FRAME_TYPES = ("TC", "TM", "AOS", "USLP")
OPERATIONS = ("apply", "process")
FRAME_KINDS = ("frame_decode", "frame_encode")
#: error names of the schema
ERROR_NAMES = frozenset(BY_CODE)
#: quirk names defined by the schema
KNOWN_QUIRKS = frozenset({
    "fecf_not_checked", "fecf_not_computed", "ignore_anti_replay", "ignore_sa_state",
    "nontransmitted_iv_not_incremented", "zero_counter_first_frame", "mask_excludes_data",
    "cleartext_sa_sends_iv", "reserved_mac_without_auth", "ep_executed",
})
#: quirk -> why a strict implementation (and this library by default) does not behave that way;
#: the README's quirk table is generated from this (see :func:`quirk_table`)
QUIRK_NOTES: dict[str, str] = {
    "fecf_not_checked": "a frame with a wrong FECF is corrupt; it must be discarded before any "
                        "security processing",
    "fecf_not_computed": "a frame leaving the sender must carry a valid FECF over its final "
                         "octets",
    "ignore_anti_replay": "accepting a counter outside (stored, stored + W] admits replayed "
                          "frames (CryptoLib also runs no IV check for AES-GCM-SIV)",
    "ignore_sa_state": "only an Operational SA may protect or accept traffic (355.0-B-2 SA "
                       "state machine)",
    "nontransmitted_iv_not_incremented": "dropping the carry into the non-transmitted IV "
                                         "octets repeats an IV under the same key",
    "zero_counter_first_frame": "stored 0 / received 0 is a replay; initialise the receiver so "
                                "that the first frame is strictly greater",
    "mask_excludes_data": "a MAC that does not cover the data field authenticates nothing the "
                          "sender said",
    "cleartext_sa_sends_iv": "a clear-mode SA has no IV or SN to send; octets sent anyway are "
                             "unauthenticated filler",
    "reserved_mac_without_auth": "a zeroed MAC field without authentication looks authenticated "
                                 "and is not",
    "ep_executed": "executing SDLS-EP commands is the job of the extended procedures, not of "
                   "ProcessSecurity (the vector checker composes the two: CryptoLib-mode "
                   "procedures with CryptoLib's default key ring)",
}
#: quirks reproduced by this checker itself (on top of the engine's SUPPORTED_QUIRKS)
CHECKER_QUIRKS = frozenset({"ep_executed"})
SA_STATES = ("NONE", "UNKEYED", "KEYED", "OPERATIONAL")
KEY_STATES = ("PREACTIVE", "ACTIVE", "DEACTIVATED", "DESTROYED", "CORRUPTED")

_HEX = re.compile(r"[0-9a-fA-F]*")


class VectorFileError(InvalidConfiguration):
    """A vector file is not valid ``sdls-vectors/1`` (message names the vector and key)."""


# =========================================================================== validation
def _where(index: int | None, vector: Any) -> str:
    if index is None:
        return "document"
    vid = vector.get("id") if isinstance(vector, dict) else None
    return f"vectors[{index}]" + (f" (id {vid!r})" if isinstance(vid, str) else "")


class _Validator:
    """Collects the location for messages; raises VectorFileError on the first problem."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, key: str, message: str) -> VectorFileError:
        return VectorFileError(f"{self.where}: {key}: {message}", field=key)

    def obj(self, data: Any, key: str) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise self.fail(key, f"must be an object, not {type(data).__name__}")
        return data

    def require(self, data: dict[str, Any], key: str, prefix: str = "") -> Any:
        if key not in data:
            raise self.fail(prefix + key, "missing")
        return data[key]

    def string(self, value: Any, key: str, choices: Sequence[str] | None = None) -> str:
        if not isinstance(value, str):
            raise self.fail(key, f"must be a string, not {value!r}")
        if choices is not None and value not in choices:
            raise self.fail(key, f"{value!r} is not one of {', '.join(choices)}")
        return value

    def hexstr(self, value: Any, key: str, *, nullable: bool = False) -> str | None:
        if value is None and nullable:
            return None
        if not isinstance(value, str):
            raise self.fail(key, f"must be a hex string, not {value!r}")
        if not _HEX.fullmatch(value):
            bad = next(c for c in value if c not in "0123456789abcdefABCDEF")
            raise self.fail(key, f"is not hex (character {bad!r} at position {value.index(bad)})")
        if len(value) % 2:
            raise self.fail(key, f"is not hex: odd number of digits ({len(value)})")
        return value

    def integer(self, value: Any, key: str, lo: int = 0, hi: int | None = None, *,
                nullable: bool = False) -> int | None:
        if value is None and nullable:
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.fail(key, f"must be an integer, not {value!r}")
        if value < lo or (hi is not None and value > hi):
            raise self.fail(key, f"{value} is outside {lo}..{'' if hi is None else hi}")
        return value

    def boolean(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false, not {value!r}")
        return value


_SA_INTS = ("iv_length", "transmitted_iv_length", "sn_length", "transmitted_sn_length", "window",
            "pad_length_field_length", "mac_length")
_SA_HEX = ("key_hex", "auth_key_hex", "iv_hex", "sn_hex", "abm_hex")
_CHANNEL_INTS = ("tfvn", "scid", "vcid", "map_id", "fecf_length", "frame_length",
                 "secondary_header_length", "insert_zone_length", "max_frame_length",
                 "vc_frame_count_length")
_CHANNEL_BOOLS = ("has_fecf", "has_segment_header", "has_ocf", "has_fhec", "truncated")


def _validate_channel(v: _Validator, vector: dict[str, Any], frame_type: str) -> None:
    channel = v.obj(v.require(vector, "channel"), "channel")
    for key in ("scid", "vcid"):
        v.integer(v.require(channel, key, "channel."), f"channel.{key}")
    if frame_type in ("TM", "AOS"):
        v.integer(v.require(channel, "frame_length", "channel."), "channel.frame_length", 1)
    for key in _CHANNEL_INTS:
        if key in channel:
            v.integer(channel[key], f"channel.{key}", nullable=True)
    for key in _CHANNEL_BOOLS:
        if key in channel and channel[key] is not None:
            v.boolean(channel[key], f"channel.{key}")


def _validate_sa(v: _Validator, vector: dict[str, Any]) -> None:
    sa = v.obj(v.require(vector, "sa"), "sa")
    v.integer(v.require(sa, "spi", "sa."), "sa.spi", 0, 0xFFFF)
    v.boolean(v.require(sa, "encrypt", "sa."), "sa.encrypt")
    v.boolean(v.require(sa, "authenticate", "sa."), "sa.authenticate")
    for key in _SA_INTS:
        if key in sa:
            v.integer(sa[key], f"sa.{key}")
    for key in _SA_HEX:
        if key in sa:
            v.hexstr(sa[key], f"sa.{key}", nullable=True)
    for key in ("cipher", "mac_algorithm"):
        if sa.get(key) is not None:
            v.string(sa[key], f"sa.{key}")
    if sa.get("abm_fill") is not None:
        fill = v.hexstr(sa["abm_fill"], "sa.abm_fill")
        if fill is None or len(fill) != 2:
            raise v.fail("sa.abm_fill", f"must be one octet, not {sa['abm_fill']!r}")
        if sa.get("abm_hex") is not None:
            raise v.fail("sa.abm_hex", "give abm_hex or abm_fill, not both")
    if "state" in sa:
        v.string(sa["state"], "sa.state", SA_STATES)
    if "key_state" in sa:
        v.string(sa["key_state"], "sa.key_state", KEY_STATES)
    for length_key, hex_key in (("iv_length", "iv_hex"), ("sn_length", "sn_hex")):
        value = sa.get(hex_key)
        if isinstance(value, str) and value and length_key in sa and \
                len(value) != 2 * sa[length_key]:
            raise v.fail(f"sa.{hex_key}", f"has {len(value) // 2} octets, sa.{length_key} is "
                         f"{sa[length_key]}")


def _validate_sdls(v: _Validator, vector: dict[str, Any]) -> None:
    frame_type = v.string(v.require(vector, "frame_type"), "frame_type", FRAME_TYPES)
    v.string(v.require(vector, "operation"), "operation", OPERATIONS)
    _validate_channel(v, vector, frame_type)
    _validate_sa(v, vector)
    v.hexstr(v.require(vector, "input_hex"), "input_hex")
    expected_hex = v.hexstr(vector.get("expected_hex"), "expected_hex", nullable=True)
    error = vector.get("expected_error")
    if error is not None:
        v.string(error, "expected_error", sorted(ERROR_NAMES))
    if (expected_hex is None) == (error is None):
        raise v.fail("expected_hex/expected_error",
                     "exactly one of them must be non-null (got "
                     + ("both" if error is not None else "neither") + ")")
    if "sa_after" in vector and vector["sa_after"] is not None:
        after = v.obj(vector["sa_after"], "sa_after")
        unknown = set(after) - {"iv_hex", "sn_hex"}
        if unknown:
            raise v.fail("sa_after", f"unknown key(s) {', '.join(sorted(unknown))}")
        for key in ("iv_hex", "sn_hex"):
            if key in after:
                v.hexstr(after[key], f"sa_after.{key}")
    if "quirks" in vector:
        quirks = vector["quirks"]
        if not isinstance(quirks, list) or not all(isinstance(q, str) for q in quirks):
            raise v.fail("quirks", "must be a list of strings")
    if "notes" in vector and not isinstance(vector["notes"], str):
        raise v.fail("notes", "must be a string")


def _validate_frame_only(v: _Validator, vector: dict[str, Any], kind: str) -> None:
    frame_type = v.string(v.require(vector, "frame_type"), "frame_type", FRAME_TYPES)
    _validate_channel(v, vector, frame_type)
    if kind == "frame_decode":
        v.hexstr(v.require(vector, "input_hex"), "input_hex")
        v.obj(v.require(vector, "expected_fields"), "expected_fields")
    else:
        v.obj(v.require(vector, "fields"), "fields")
        v.hexstr(v.require(vector, "expected_hex"), "expected_hex")


def validate(doc: Any) -> None:
    """Raise :class:`VectorFileError` unless ``doc`` is a valid sdls-vectors/1 document."""
    top = _Validator("document")
    top.obj(doc, "document")
    fmt = top.require(doc, "format")
    if fmt != FORMAT:
        raise top.fail("format", f"{fmt!r} is not {FORMAT!r}")
    prov = top.obj(top.require(doc, "provenance"), "provenance")
    for key in ("source", "how"):
        top.string(top.require(prov, key, "provenance."), f"provenance.{key}")
    if prov.get("commit") is not None:
        top.string(prov["commit"], "provenance.commit")
    vectors = top.require(doc, "vectors")
    if not isinstance(vectors, list):
        raise top.fail("vectors", "must be a list")
    seen: dict[str, int] = {}
    for index, vector in enumerate(vectors):
        v = _Validator(_where(index, vector))
        v.obj(vector, "vector")
        vid = v.string(v.require(vector, "id"), "id")
        if vid in seen:
            raise v.fail("id", f"duplicate of vectors[{seen[vid]}]")
        seen[vid] = index
        kind = vector.get("kind")
        if kind is None:
            _validate_sdls(v, vector)
        else:
            _validate_frame_only(v, vector, v.string(kind, "kind", FRAME_KINDS))


# =========================================================================== load / write
@dataclass
class VectorFile:
    """A validated document and where it came from."""

    doc: dict[str, Any]
    path: Path | None = None

    @property
    def vectors(self) -> list[dict[str, Any]]:
        return list(self.doc["vectors"])

    @property
    def provenance(self) -> dict[str, Any]:
        return dict(self.doc["provenance"])


def loads(text: str | bytes, *, source: str = "<string>") -> VectorFile:
    """Parse and validate a document given as JSON text."""
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise VectorFileError(f"{source}: not JSON: {exc}") from None
    try:
        validate(doc)
    except VectorFileError as exc:
        raise VectorFileError(f"{source}: {exc.message}", field=exc.field) from None
    return VectorFile(doc)


def load(path: str | Path) -> VectorFile:
    """Read and validate a vector file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise VectorFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    vf = loads(data, source=str(path))
    vf.path = path
    return vf


def dumps(doc: Mapping[str, Any]) -> str:
    """Deterministic JSON text of a document (validated first)."""
    validate(dict(doc))
    return json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=True) + "\n"


def write(path: str | Path, doc: Mapping[str, Any] | VectorFile) -> None:
    """Validate and write a document (sorted keys, one trailing newline)."""
    data = doc.doc if isinstance(doc, VectorFile) else doc
    Path(path).write_text(dumps(data))


def document(vectors: Iterable[Mapping[str, Any]], *, source: str, how: str,
             commit: str | None = None) -> dict[str, Any]:
    """A new document around ``vectors`` (for generators and converters)."""
    return {"format": FORMAT, "provenance": {"source": source, "commit": commit, "how": how},
            "vectors": [dict(v) for v in vectors]}


# =========================================================================== check
class Status(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True)
class VectorResult:
    """The outcome of one vector."""

    id: str
    status: Status
    reason: str = ""
    file: str | None = None
    #: quirks that made the vector skip (empty unless skipped for quirks)
    missing_quirks: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status.value, "reason": self.reason,
                "file": self.file, "missing_quirks": list(self.missing_quirks)}


@dataclass
class CheckReport:
    """Per-vector results and counts."""

    results: list[VectorResult] = field(default_factory=list)

    def count(self, status: Status) -> int:
        return sum(1 for r in self.results if r.status is status)

    @property
    def passed(self) -> int:
        return self.count(Status.PASS)

    @property
    def failed(self) -> int:
        return self.count(Status.FAIL)

    @property
    def skipped(self) -> int:
        return self.count(Status.SKIP)

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def by_id(self) -> dict[str, VectorResult]:
        return {r.id: r for r in self.results}

    def summary(self) -> str:
        return f"{self.passed} passed, {self.failed} failed, {self.skipped} skipped"

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "failed": self.failed, "skipped": self.skipped,
                "results": [r.to_dict() for r in self.results]}


class _Mismatch(Exception):
    """A check found a difference (message is the reason)."""


def _diff(got: bytes, expected: bytes, what: str) -> str:
    if len(got) != len(expected):
        prefix = next((i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b),
                      min(len(got), len(expected)))
        return (f"{what} has {len(got)} octets, expected {len(expected)} (first difference at "
                f"octet {prefix})")
    i = next(i for i, (a, b) in enumerate(zip(got, expected, strict=True)) if a != b)
    return (f"{what} differs at octet {i} of {len(got)}: got {got[i]:02x}, expected "
            f"{expected[i]:02x}")


def _engine() -> Any:
    return importlib.import_module("sdls_qkd.security.engine")


def _sa_class() -> Any:
    return importlib.import_module("sdls_qkd.security.sa").SecurityAssociation


def _check_sa_after(vector: dict[str, Any], sa: Any) -> None:
    after = vector.get("sa_after")
    if not after:
        return
    for key, attr, label in (("iv_hex", "iv", "IV"), ("sn_hex", "arsn", "SN")):
        if key not in after:
            continue
        got = bytes(getattr(sa, attr)).hex()
        if got != after[key].lower():
            raise _Mismatch(f"SA {label} after the call is {got or '(none)'}, expected "
                            f"{after[key] or '(none)'}")


_Outcome = tuple[Status, str, tuple[str, ...]]


def _run_sdls(vector: dict[str, Any], supported: frozenset[str]) -> _Outcome:
    quirks = list(vector.get("quirks") or [])
    missing = tuple(q for q in quirks if q not in supported)
    if missing:
        return Status.SKIP, "needs quirk " + ", ".join(missing), missing
    run_ep = "ep_executed" in quirks
    if run_ep:
        why_not = _ep_not_reproducible(vector)
        if why_not:
            return Status.SKIP, why_not, ()
    engine = _engine()
    frame_type = vector["frame_type"]
    try:
        channel = channel_from_dict(frame_type, vector["channel"])
    except SdlsQkdError as exc:
        return Status.FAIL, f"channel: {exc}", ()
    frame = bytes.fromhex(vector["input_hex"])
    expected_error = vector.get("expected_error")
    sa = None
    try:
        sa = _sa_class().from_schema(vector["sa"], frame_type=frame_type, channel=channel)
        options = engine.EngineOptions.from_quirks(q for q in quirks if q not in CHECKER_QUIRKS)
        if vector["operation"] == "apply":
            iv_hex = vector["sa"].get("iv_hex") or ""
            if iv_hex:
                options = dataclasses.replace(options, iv_override=bytes.fromhex(iv_hex))
            got = bytes(engine.apply_security(frame, channel, sa, options))
            what = "protected frame"
        else:
            result = engine.process_security(frame, channel, {sa.spi: sa}, options)
            got = bytes(result.data)
            what = "recovered data"
    except SdlsQkdError as exc:
        code = exc.code
        if expected_error is None:
            return Status.FAIL, f"raised {code} ({type(exc).__name__}: {exc})", ()
        if code != expected_error:
            return Status.FAIL, f"raised {code} ({exc}), expected {expected_error}", ()
        if sa is not None:
            try:
                _check_sa_after(vector, sa)
            except _Mismatch as mm:
                return Status.FAIL, f"{expected_error} raised but {mm}", ()
        return Status.PASS, f"{code} raised as expected", ()
    except Exception as exc:  # noqa: BLE001 - a crash is a failure, reported with its type
        return Status.FAIL, f"crashed with {type(exc).__name__}: {exc}", ()
    if run_ep:
        try:
            _check_sa_after(vector, sa)
        except _Mismatch as mm:
            return Status.FAIL, str(mm), ()
        if expected_error is None:
            expected = bytes.fromhex(vector["expected_hex"])
            if got != expected:
                return Status.FAIL, _diff(got, expected, what), ()
        status, reason = _run_ep(vector, frame, sa, got)
        return status, reason, ()
    if expected_error is not None:
        return Status.FAIL, f"succeeded, expected {expected_error}", ()
    expected = bytes.fromhex(vector["expected_hex"])
    if got != expected:
        return Status.FAIL, _diff(got, expected, what), ()
    try:
        _check_sa_after(vector, sa)
    except _Mismatch as mm:
        return Status.FAIL, str(mm), ()
    return Status.PASS, f"{what} matches ({len(got)} octets)", ()


# --------------------------------------------------------------------------- ep_executed
_EP_REPLY = re.compile(r"\bep[ _]reply(?:[ _]hex)?\s*[:=]\s*([0-9a-fA-F]+)", re.IGNORECASE)
_EP_SETUP = re.compile(r"\bep[ _]set-?up\s*:\s*((?:key\s+\d+\s+[A-Za-z]+\s*,?\s*)+)",
                       re.IGNORECASE)
_EP_SETUP_KEY = re.compile(r"key\s+(\d+)\s+([A-Za-z]+)", re.IGNORECASE)
_CRYPTOLIB_TEST = re.compile(r"CryptoLib test (\S+?)(?:#\d+)?[\s(;]")


def _cryptolib_test(vector: dict[str, Any]) -> str | None:
    """The CryptoLib unit test a converted vector comes from (named in its notes)."""
    match = _CRYPTOLIB_TEST.search((vector.get("notes") or "") + " ")
    return match.group(1) if match else None


def _ep_reply(vector: dict[str, Any]) -> bytes | None:
    match = _EP_REPLY.search(vector.get("notes") or "")
    if match is None:
        return None
    text = match.group(1)
    if len(text) % 2:
        raise _Mismatch(f"EP reply in the notes has an odd number of hex digits ({len(text)})")
    return bytes.fromhex(text)


def _ep_key_setup(vector: dict[str, Any]) -> list[tuple[int, str]]:
    """``EP set-up: key <id> <STATE>, ...`` from the notes, as (key ID, state name) pairs."""
    match = _EP_SETUP.search(vector.get("notes") or "")
    if match is None:
        return []
    return [(int(k), state.upper()) for k, state in _EP_SETUP_KEY.findall(match.group(1))]


def _ep_not_reproducible(vector: dict[str, Any]) -> str:
    """Why an ``ep_executed`` vector cannot be reproduced from what it carries ('' if it can)."""
    if vector["frame_type"] != "TC" or vector["operation"] != "process":
        return (f"cannot reproduce ep_executed on {vector['frame_type']} {vector['operation']}: "
                f"SDLS-EP commands are executed from TC ProcessSecurity only")
    setups = importlib.import_module("sdls_qkd.procedures.cryptolib_defaults")
    test = _cryptolib_test(vector)
    if test in setups.CRYPTOLIB_TEST_SETUPS and not _ep_key_setup(vector):
        return f"cannot reproduce: {setups.CRYPTOLIB_TEST_SETUPS[test]}"
    return ""


def _ep_manager(vector: dict[str, Any], sa: Any) -> Any:
    """CryptoLib-mode on-board manager: the vector's SA carries the command, default ring."""
    defaults = importlib.import_module("sdls_qkd.procedures.cryptolib_defaults")
    ring = defaults.cryptolib_key_ring()
    key_state = importlib.import_module("sdls_qkd.procedures.keys").KeyState
    for key_id, state in _ep_key_setup(vector):
        if state not in key_state.__members__:
            raise _Mismatch(f"EP set-up in the notes names an unknown key state {state!r}")
        if key_id in ring:
            ring.force_state(key_id, key_state[state])
        else:  # an empty CryptoLib slot holds 32 zero octets
            ring.install(key_id, bytes(32), key_state[state])
    return defaults.cryptolib_onboard(sa, ring=ring)


def _run_ep(vector: dict[str, Any], frame: bytes, sa: Any, data: bytes) -> tuple[Status, str]:
    """Execute the recovered ``data`` as an SDLS-EP command and judge the outcome."""
    expected_error = vector.get("expected_error")
    try:
        reply = _ep_reply(vector)
        manager = _ep_manager(vector, sa)
    except _Mismatch as mm:
        return Status.FAIL, str(mm)
    except SdlsQkdError as exc:
        return Status.FAIL, f"EP set-up refused: {exc}"
    length_field = int.from_bytes(frame[2:4], "big") & 0x3FF  # TC frame length field (octets - 1)
    before = manager.state_digest()
    try:
        outcome = manager.handle_packet(data, via_spi=sa.spi, frame_length_field=length_field)
    except SdlsQkdError as exc:
        code = exc.code
        if manager.state_digest() != before:
            return Status.FAIL, f"the EP command was refused ({code}) but changed state"
        if expected_error is None:
            return Status.FAIL, f"recovered data matches, but the EP command raised {code} ({exc})"
        if code != expected_error:
            return Status.FAIL, f"EP command raised {code} ({exc}), expected {expected_error}"
        return Status.PASS, f"{code} raised by the EP command as expected ({exc})"
    except Exception as exc:  # noqa: BLE001 - a crash is a failure, reported with its type
        return Status.FAIL, f"EP command crashed with {type(exc).__name__}: {exc}"
    if expected_error is not None:
        what = "not an EP command" if outcome is None else f"{outcome.procedure.name} executed"
        return Status.FAIL, f"EP command succeeded ({what}), expected {expected_error}"
    if outcome is None:
        if reply is not None:
            return Status.FAIL, "the notes hold an EP reply, but the data is not an EP command"
        return Status.PASS, f"recovered data matches ({len(data)} octets; not an EP command)"
    if reply is not None:
        got = outcome.reply_packet
        if got is None:
            return Status.FAIL, f"{outcome.procedure.name} executed without a reply; the notes " \
                                f"hold a {len(reply)}-octet reply"
        if got != reply:
            return Status.FAIL, _diff(got, reply, "EP reply")
        return Status.PASS, (f"recovered data matches ({len(data)} octets); "
                             f"{outcome.procedure.name} reply matches ({len(got)} octets)")
    return Status.PASS, (f"recovered data matches ({len(data)} octets); "
                         f"{outcome.procedure.name} executed")


# --------------------------------------------------------------------------- frame-only kinds
_CODECS = {"TC": ("sdls_qkd.framing.tc", "TcFrame"), "TM": ("sdls_qkd.framing.tm", "TmFrame"),
           "AOS": ("sdls_qkd.framing.aos", "AosFrame"),
           "USLP": ("sdls_qkd.framing.uslp", "UslpFrame")}
_PARTS = ("header", "segment_header", "secondary_header", "tfdf_header")


def _frame_class(frame_type: str) -> Any:
    module_name, class_name = _CODECS[frame_type]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise _Mismatch(f"{frame_type} frame codec not available ({module_name}: {exc})") \
            from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise _Mismatch(f"{module_name} has no {class_name}")
    return cls


def _normal(value: Any) -> Any:
    """A decoded value in the schema's terms (ints, hex strings, None)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, Enum):
        return int(value.value) if isinstance(value.value, int) else value.value
    return value


def _frame_field(frame: Any, key: str) -> Any:
    """Resolve a schema field key on a decoded frame object."""
    name = key[:-4] if key.endswith("_hex") else key
    aliases = {"data_field": ("data_field", "data"), "secondary_header": ("secondary_header",),
               "first_header_pointer": ("first_header_pointer", "pointer")}
    names = aliases.get(name, (name,))
    if key == "first_header_pointer" and callable(getattr(frame, "m_pdu", None)):
        return frame.m_pdu().first_header_pointer  # AOS: the M_PDU header's FHP
    for owner in (frame, *(getattr(frame, p, None) for p in _PARTS)):
        if owner is None:
            continue
        for attr in names:
            if hasattr(owner, attr):
                value = getattr(owner, attr)
                if callable(value):
                    continue
                if key.endswith("_hex") and value is not None and hasattr(value, "pack"):
                    value = value.pack()
                return value
    raise _Mismatch(f"decoded frame has no field {key!r}")


def _same(got: Any, expected: Any) -> bool:
    got = _normal(got)
    if isinstance(expected, bool):
        expected = int(expected)
    if isinstance(expected, str) and isinstance(got, str):
        return got.lower() == expected.lower()
    return bool(got == expected)


def _run_frame_decode(vector: dict[str, Any]) -> tuple[Status, str]:
    frame_type = vector["frame_type"]
    channel = channel_from_dict(frame_type, vector["channel"])
    cls = _frame_class(frame_type)
    frame = cls.unpack(bytes.fromhex(vector["input_hex"]), channel)
    fields = frame.to_fields() if callable(getattr(frame, "to_fields", None)) else {}
    expected = vector["expected_fields"]
    for key in sorted(expected):
        got = fields[key] if key in fields else _frame_field(frame, key)
        if not _same(got, expected[key]):
            return Status.FAIL, f"field {key}: got {_normal(got)!r}, expected {expected[key]!r}"
    return Status.PASS, f"{len(expected)} fields match"


def _run_frame_encode(vector: dict[str, Any]) -> tuple[Status, str]:
    frame_type = vector["frame_type"]
    channel = channel_from_dict(frame_type, vector["channel"])
    cls = _frame_class(frame_type)
    from_fields: Callable[..., Any] | None = getattr(cls, "from_fields", None)
    if from_fields is None:
        raise _Mismatch(f"{cls.__name__} has no from_fields(); frame_encode vectors need it")
    frame = from_fields(dict(vector["fields"]), channel)
    got = bytes(frame.pack(channel))
    expected = bytes.fromhex(vector["expected_hex"])
    if got != expected:
        return Status.FAIL, _diff(got, expected, "encoded frame")
    return Status.PASS, f"encoded frame matches ({len(got)} octets)"


def _run_frame_only(vector: dict[str, Any]) -> tuple[Status, str]:
    try:
        if vector["kind"] == "frame_decode":
            return _run_frame_decode(vector)
        return _run_frame_encode(vector)
    except _Mismatch as mm:
        return Status.FAIL, str(mm)
    except SdlsQkdError as exc:
        return Status.FAIL, f"raised {exc.code} ({exc})"
    except Exception as exc:  # noqa: BLE001 - a crash is a failure
        return Status.FAIL, f"crashed with {type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------- entry points
def quirk_table(report: CheckReport | None = None) -> str:
    """Markdown table: quirk, vectors skipped for it (when a report is given), why."""
    counts: dict[str, int] = {}
    if report is not None:
        for result in report.results:
            for quirk in result.missing_quirks:
                counts[quirk] = counts.get(quirk, 0) + 1
    lines = ["| quirk | skipped | why we do not reproduce it by default |", "|---|---|---|"]
    for quirk in sorted(QUIRK_NOTES):
        lines.append(f"| `{quirk}` | {counts.get(quirk, 0)} | {QUIRK_NOTES[quirk]} |")
    return "\n".join(lines)


def supported_quirks() -> frozenset[str]:
    """Quirks the checker reproduces: the engine's plus :data:`CHECKER_QUIRKS` (empty when the
    engine is not importable)."""
    try:
        return frozenset(_engine().SUPPORTED_QUIRKS) | CHECKER_QUIRKS
    except ImportError:
        return frozenset()


def check_vector(vector: dict[str, Any], *, file: str | None = None,
                 supported: frozenset[str] | None = None) -> VectorResult:
    """Run one (validated) vector."""
    vid = vector["id"]
    if vector.get("kind") is not None:
        status, reason = _run_frame_only(vector)
        return VectorResult(vid, status, reason, file)
    try:
        quirks = supported if supported is not None else \
            frozenset(_engine().SUPPORTED_QUIRKS) | CHECKER_QUIRKS
    except ImportError as exc:
        return VectorResult(vid, Status.FAIL, f"SDLS engine not available: {exc}", file)
    status, reason, missing = _run_sdls(vector, quirks)
    return VectorResult(vid, status, reason, file, missing)


def check(source: VectorFile | str | Path | Mapping[str, Any]) -> CheckReport:
    """Check every vector of one document (a VectorFile, a path or an already parsed dict)."""
    if isinstance(source, VectorFile):
        vf = source
    elif isinstance(source, str | Path):
        vf = load(source)
    else:
        validate(dict(source))
        vf = VectorFile(dict(source))
    name = str(vf.path) if vf.path is not None else None
    quirks = supported_quirks() or None
    report = CheckReport()
    for vector in vf.vectors:
        report.results.append(check_vector(vector, file=name, supported=quirks))
    return report


def check_files(paths: Iterable[str | Path]) -> CheckReport:
    """Check several files; a file that cannot be loaded is one failed result (id = path)."""
    report = CheckReport()
    for path in paths:
        try:
            vf = load(path)
        except VectorFileError as exc:
            message = str(exc).removeprefix(f"{path}: ")
            report.results.append(VectorResult(str(path), Status.FAIL,
                                               f"cannot load: {message}", str(path)))
            continue
        report.results.extend(check(vf).results)
    return report
