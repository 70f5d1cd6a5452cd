"""Frame dissector: an annotated tree of every field of a frame or packet (sans-I/O).

``dissect(data, kind=None, options)`` validates the input with the library's own codecs (so the
verdicts are the ones the receive path would give) and describes every field from bit tables
written here from the standards: name, value, meaning, octet offset and bit range.  The two are
independent readings of the same bytes; the tests hold them to agree.

Managed parameters that are not signalled in-band (FECF presence, TC segment header, AOS FHEC and
insert zone, USLP insert zone and FECF length) come from :class:`DissectOptions`; what the header
does signal (TM OCF and secondary header, USLP truncation, lengths) is read from the frame.

SDLS Extended Procedures PDUs (kind ``EP``, never auto-detected: a tag octet looks like any frame
header) are dissected with the procedures' own codecs (:mod:`sdls_qkd.procedures`): tag, length
in bits and every parameter of the procedure.  A space packet on an EP APID (the project's two
conventions: :class:`~sdls_qkd.procedures.pdu.EpPacketConfig` default and CryptoLib) gets its
PDU dissected as a child of the data field.  SDLS verification (``inspect --sa``) lives in
:mod:`sdls_qkd.inspect_security`; it dissects with ``secured=True`` so that the protected data
field is one opaque node.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sdls_qkd.errors import InvalidFrameLength, InvalidHeader, InvalidProcedure, SdlsQkdError
from sdls_qkd.framing import crc
from sdls_qkd.framing.channel import AosChannel, TcChannel, TmChannel, UslpChannel

KINDS = ("TC", "TM", "AOS", "USLP", "SP", "OCF", "EP")
#: kinds that are transfer frames (what SDLS protects)
FRAME_KINDS = ("TC", "TM", "AOS", "USLP")


@dataclass
class Node:
    """One field (leaf) or structure (with children) of the dissected input."""

    name: str
    value: Any = None
    meaning: str = ""
    offset: int = 0
    length: int = 0  # octets covered
    bits: str = ""  # e.g. "0-1" within the structure's first octet
    children: list[Node] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        out: dict[str, Any] = {"name": self.name, "offset": self.offset, "length": self.length}
        if self.value is not None:
            out["value"] = self.value
        if self.meaning:
            out["meaning"] = self.meaning
        if self.bits:
            out["bits"] = self.bits
        if self.children:
            out["children"] = [c.to_json() for c in self.children]
        return out

    def find(self, name: str) -> Node | None:
        """Depth-first search for a node by name."""
        if self.name == name:
            return self
        for child in self.children:
            hit = child.find(name)
            if hit is not None:
                return hit
        return None


@dataclass(frozen=True)
class DissectOptions:
    """Managed parameters that the frame does not carry."""

    has_fecf: bool = True
    fecf_length: int = 2
    has_segment_header: bool = False
    has_fhec: bool = False
    insert_zone_length: int = 0
    has_ocf: bool = False  # AOS only (TM and USLP signal it)
    #: SDLS-protected: the data field (AOS M_PDU, USLP TFDF) is opaque, one ``data_field`` node
    secured: bool = False


@dataclass
class Dissection:
    """Result: the tree, the detected kind and the verdicts."""

    kind: str
    root: Node
    verdicts: dict[str, str] = field(default_factory=dict)
    error: SdlsQkdError | None = None
    #: SDLS verification summary (``inspect --sa``), None when not verified
    security: dict[str, Any] | None = None
    #: a check other than parsing failed (SDLS verification)
    failed: bool = False

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        out: dict[str, Any] = {"kind": self.kind, "tree": self.root.to_json(),
                               "verdicts": self.verdicts}
        if self.security is not None:
            out["security"] = self.security
        if self.error is not None:
            out["error"] = {"type": type(self.error).__name__, "code": self.error.code,
                            "message": self.error.message, "field": self.error.field,
                            "offset": self.error.offset}
        return out


BitField = tuple[str, int, int, Callable[[int], str] | None]  # name, first bit, width, meaning


def _bits_node(data: bytes, base: int, name: str, length: int, table: list[BitField]) -> Node:
    """A structure of ``length`` octets at ``base`` whose fields are given by bit positions."""
    if base + length > len(data):
        raise InvalidFrameLength(f"{name} needs {length} octets at octet {base}, "
                                 f"only {max(0, len(data) - base)} left", field=name, offset=base)
    word = int.from_bytes(data[base:base + length], "big")
    total = length * 8
    node = Node(name, offset=base, length=length, value=data[base:base + length].hex())
    for fname, first, width, meaning in table:
        value = (word >> (total - first - width)) & ((1 << width) - 1)
        node.children.append(Node(fname, value, meaning(value) if meaning else "",
                                  base + first // 8, (width + 7) // 8,
                                  f"{first}-{first + width - 1}" if width > 1 else str(first)))
    return node


def _flag(yes: str, no: str) -> Callable[[int], str]:
    return lambda v: yes if v else no


def _raw(name: str, data: bytes, start: int, end: int, meaning: str = "") -> Node:
    chunk = data[start:end]
    shown = chunk.hex() if len(chunk) <= 64 else chunk[:32].hex() + f"...({len(chunk)} octets)"
    return Node(name, shown, meaning, start, len(chunk))


def _fecf_node(data: bytes, length: int, verdicts: dict[str, str]) -> Node:
    start = len(data) - length
    got = int.from_bytes(data[start:], "big")
    want = crc.fecf(data[:start], length)
    ok = got == want
    verdicts["fecf"] = "ok" if ok else f"mismatch: computed {want:0{2 * length}x}"
    return Node("fecf", f"{got:0{2 * length}x}",
                "CRC ok" if ok else f"CRC MISMATCH (computed {want:0{2 * length}x})", start, length)


def _ocf_node(data: bytes, start: int) -> Node:
    from sdls_qkd.framing.ocf import ocf_unpack

    node = _raw("ocf", data, start, start + 4)
    try:
        word = ocf_unpack(data[start:start + 4])
    except SdlsQkdError as exc:
        node.meaning = f"unrecognised OCF word: {exc.message}"
        return node
    node.meaning = type(word).__name__
    for key, value in vars(word).items() if hasattr(word, "__dict__") else _slots(word):
        node.children.append(Node(key, int(value) if isinstance(value, int) else str(value),
                                  offset=start, length=4))
    return node


def _slots(obj: Any) -> list[tuple[str, Any]]:
    from dataclasses import fields as dc_fields

    return [(f.name, getattr(obj, f.name)) for f in dc_fields(obj)]


# ----------------------------------------------------------------------------------- per kind
_TC_HEADER: list[BitField] = [
    ("tfvn", 0, 2, lambda v: "TC version 1" if v == 0 else "NOT a TC version"),
    ("bypass_flag", 2, 1, _flag("Type-B (bypass, expedited)", "Type-A (sequence-controlled)")),
    ("control_command_flag", 3, 1, _flag("control command (COP-1 directive)", "data (FDU)")),
    ("spare", 4, 2, lambda v: "" if v == 0 else "spare bits not zero"),
    ("scid", 6, 10, None),
    ("vcid", 16, 6, None),
    ("frame_length", 22, 10, lambda v: f"{v + 1} octets"),
    ("frame_sequence_number", 32, 8, None),
]
_SEQ_FLAGS = {0: "continuing segment", 1: "first segment", 2: "last segment",
              3: "unsegmented"}
_TC_SEGMENT: list[BitField] = [
    ("sequence_flags", 0, 2, lambda v: _SEQ_FLAGS[v]),
    ("map_id", 2, 6, None),
]


def _dissect_tc(data: bytes, opts: DissectOptions, verdicts: dict[str, str], root: Node) -> Node:
    from sdls_qkd.framing.tc import TcFrame

    root.name = "TC transfer frame"
    root.children.append(_bits_node(data, 0, "primary_header", 5, _TC_HEADER))
    declared = ((data[2] & 0x03) << 8 | data[3]) + 1
    if declared != len(data):
        raise InvalidFrameLength(f"TC frame length field says {declared} octets, got {len(data)}",
                                 field="frame_length", offset=2)
    scid = ((data[0] & 0x03) << 8) | data[1]
    vcid = data[2] >> 2
    channel = TcChannel(scid=scid, vcid=vcid, has_segment_header=opts.has_segment_header,
                        has_fecf=opts.has_fecf)
    pos = 5
    control = bool(data[0] & 0x10)
    if opts.has_segment_header and not control:
        root.children.append(_bits_node(data, 5, "segment_header", 1, _TC_SEGMENT))
        pos = 6
    end = len(data) - (2 if opts.has_fecf else 0)
    root.children.append(_raw("data_field", data, pos, end,
                              "COP-1 control command" if control else "frame data unit"))
    if opts.has_fecf:
        root.children.append(_fecf_node(data, 2, verdicts))
    TcFrame.unpack(data, channel)
    return root


_TM_HEADER: list[BitField] = [
    ("tfvn", 0, 2, lambda v: "TM version 1" if v == 0 else "NOT a TM version"),
    ("scid", 2, 10, None),
    ("vcid", 12, 3, None),
    ("ocf_flag", 15, 1, _flag("OCF present", "no OCF")),
    ("mc_frame_count", 16, 8, None),
    ("vc_frame_count", 24, 8, None),
    ("secondary_header_flag", 32, 1, _flag("secondary header present", "no secondary header")),
    ("sync_flag", 33, 1, _flag("VCA_SDU (no packets)", "packets / idle data")),
    ("packet_order_flag", 34, 1, None),
    ("segment_length_id", 35, 2, lambda v: "" if v == 3 else "(11 expected for packets)"),
    ("first_header_pointer", 37, 11, lambda v: {0x7FF: "no packet starts in this frame",
                                                0x7FE: "idle data only (OID)"}.get(
                                                    v, f"first packet at data-field octet {v}")),
]


def _dissect_tm(data: bytes, opts: DissectOptions, verdicts: dict[str, str], root: Node) -> Node:
    from sdls_qkd.framing.tm import TmFrame

    root.name = "TM transfer frame"
    root.children.append(_bits_node(data, 0, "primary_header", 6, _TM_HEADER))
    has_ocf = bool(data[1] & 0x01)
    pos = 6
    sec_len = 0
    if data[4] & 0x80:
        if len(data) < 7:
            raise InvalidFrameLength("TM secondary header flag set but no octet follows",
                                     field="secondary_header", offset=6)
        sec_len = (data[6] & 0x3F) + 1
        node = _bits_node(data, 6, "secondary_header", sec_len,
                          [("version", 0, 2, lambda v: "" if v == 0 else "NOT version 1"),
                           ("length", 2, 6, lambda v: f"{v + 1} octets")])
        node.children.append(_raw("data", data, 7, 6 + sec_len))
        root.children.append(node)
        pos += sec_len
    trailer = (4 if has_ocf else 0) + (2 if opts.has_fecf else 0)
    end = len(data) - trailer
    root.children.append(_raw("data_field", data, pos, end))
    if has_ocf:
        root.children.append(_ocf_node(data, end))
    if opts.has_fecf:
        root.children.append(_fecf_node(data, 2, verdicts))
    scid = ((data[0] & 0x3F) << 4) | (data[1] >> 4)
    vcid = (data[1] >> 1) & 0x07
    channel = TmChannel(scid=scid, vcid=vcid, frame_length=len(data), has_fecf=opts.has_fecf,
                        has_ocf=has_ocf, secondary_header_length=sec_len)
    TmFrame.unpack(data, channel)
    return root


_AOS_HEADER: list[BitField] = [
    ("tfvn", 0, 2, lambda v: "AOS version 2" if v == 1 else "NOT an AOS version"),
    ("scid", 2, 8, None),
    ("vcid", 10, 6, lambda v: "idle VC" if v == 63 else ""),
    ("vc_frame_count", 16, 24, None),
    ("replay_flag", 40, 1, _flag("replay", "realtime")),
    ("vc_frame_count_usage_flag", 41, 1, _flag("cycle field in use", "cycle field ignored")),
    ("spare", 42, 2, None),
    ("vc_frame_count_cycle", 44, 4, None),
]


def _dissect_aos(data: bytes, opts: DissectOptions, verdicts: dict[str, str], root: Node) -> Node:
    from sdls_qkd.framing.aos import AosFrame

    root.name = "AOS transfer frame"
    root.children.append(_bits_node(data, 0, "primary_header", 6, _AOS_HEADER))
    pos = 6
    if opts.has_fhec:
        root.children.append(_raw("fhec", data, 6, 8, "RS(10,6) header error control"))
        pos = 8
    if opts.insert_zone_length:
        root.children.append(_raw("insert_zone", data, pos, pos + opts.insert_zone_length))
        pos += opts.insert_zone_length
    trailer = (4 if opts.has_ocf else 0) + (2 if opts.has_fecf else 0)
    end = len(data) - trailer
    if end - pos >= 2 and not opts.secured:
        root.children.append(_bits_node(
            data, pos, "m_pdu_header", 2,
            [("spare", 0, 5, None),
             ("first_header_pointer", 5, 11, lambda v: {0x7FF: "no packet starts here",
                                                        0x7FE: "idle data only"}.get(
                                                            v, f"first packet at zone octet {v}"))]))
        root.children.append(_raw("packet_zone", data, pos + 2, end))
    else:
        root.children.append(_raw("data_field", data, pos, end))
    if opts.has_ocf:
        root.children.append(_ocf_node(data, end))
    if opts.has_fecf:
        root.children.append(_fecf_node(data, 2, verdicts))
    channel = AosChannel(scid=((data[0] & 0x3F) << 2) | (data[1] >> 6), vcid=data[1] & 0x3F,
                         frame_length=len(data), has_fhec=opts.has_fhec,
                         insert_zone_length=opts.insert_zone_length, has_ocf=opts.has_ocf,
                         has_fecf=opts.has_fecf)
    AosFrame.unpack(data, channel)
    return root


_USLP_FIRST: list[BitField] = [
    ("tfvn", 0, 4, lambda v: "USLP version 4" if v == 12 else "NOT the USLP version"),
    ("scid", 4, 16, None),
    ("source_dest_flag", 20, 1, _flag("SCID is the destination", "SCID is the source")),
    ("vcid", 21, 6, lambda v: "only idle data (OID)" if v == 63 else ""),
    ("map_id", 27, 4, None),
    ("end_of_frame_primary_header_flag", 31, 1, _flag("truncated header", "full header")),
]
_USLP_REST: list[BitField] = [
    ("frame_length", 0, 16, lambda v: f"{v + 1} octets"),
    ("bypass_flag", 16, 1, _flag("expedited (Type-B)", "sequence-controlled (Type-A)")),
    ("protocol_control_command_flag", 17, 1, _flag("protocol control information", "user data")),
    ("spare", 18, 2, None),
    ("ocf_flag", 20, 1, _flag("OCF present", "no OCF")),
    ("vc_frame_count_length", 21, 3, lambda v: f"{v} octets"),
]
_RULES = {0: "packets spanning frames (fixed TFDZ)", 1: "start of MAPA_SDU", 2:
          "continuing MAPA_SDU", 3: "octet stream", 4: "starting segment",
          5: "continuing segment", 6: "last segment", 7: "no segmentation"}


def _dissect_uslp(data: bytes, opts: DissectOptions, verdicts: dict[str, str], root: Node) -> Node:
    from sdls_qkd.framing.uslp import UslpFrame

    root.name = "USLP transfer frame"
    root.children.append(_bits_node(data, 0, "primary_header", 4, _USLP_FIRST))
    truncated = bool(data[3] & 0x01)
    pos = 4
    has_ocf = False
    count_len = 0
    if not truncated:
        node = _bits_node(data, 4, "primary_header_rest", 3, _USLP_REST)
        count_len = data[6] & 0x07
        has_ocf = bool(data[6] & 0x08)
        if count_len:
            node.children.append(_raw("vc_frame_count", data, 7, 7 + count_len,
                                      f"{int.from_bytes(data[7:7 + count_len], 'big')}"))
        root.children.append(node)
        pos = 7 + count_len
        declared = int.from_bytes(data[4:6], "big") + 1
        if declared != len(data):
            raise InvalidFrameLength(f"USLP frame length field says {declared} octets, "
                                     f"got {len(data)}", field="frame_length", offset=4)
    if opts.insert_zone_length:
        root.children.append(_raw("insert_zone", data, pos, pos + opts.insert_zone_length))
        pos += opts.insert_zone_length
    trailer = (4 if has_ocf else 0) + (opts.fecf_length if opts.has_fecf else 0)
    end = len(data) - trailer
    if opts.secured:  # the TFDF (header included) is the SDLS-protected data
        root.children.append(_raw("data_field", data, pos, end, "SDLS-protected TFDF"))
        if has_ocf:
            root.children.append(_ocf_node(data, end))
        if opts.has_fecf:
            root.children.append(_fecf_node(data, opts.fecf_length, verdicts))
        return root
    if pos >= len(data):
        raise InvalidFrameLength("USLP frame ends before its TFDF header", field="tfdf_header",
                                 offset=pos)
    rule = data[pos] >> 5
    hdr_len = 3 if rule in (0, 1, 2) else 1
    table: list[BitField] = [("construction_rule", 0, 3, lambda v: _RULES[v]),
                             ("upid", 3, 5, None)]
    if hdr_len == 3:
        table.append(("first_header_pointer" if rule == 0 else "last_valid_octet_pointer", 8, 16,
                      lambda v: "none" if v == 0xFFFF else f"octet {v} of the TFDZ"))
    root.children.append(_bits_node(data, pos, "tfdf_header", hdr_len, table))
    root.children.append(_raw("tfdz", data, pos + hdr_len, end))
    if has_ocf:
        root.children.append(_ocf_node(data, end))
    if opts.has_fecf:
        root.children.append(_fecf_node(data, opts.fecf_length, verdicts))
    channel = UslpChannel(
        scid=int.from_bytes(data[0:3], "big") >> 4 & 0xFFFF, vcid=(data[2] & 0x07) << 3 |
        data[3] >> 5, map_id=(data[3] >> 1) & 0x0F,
        # fixed-length TFDZ rules (000-010) and truncated frames belong to fixed-length channels
        frame_length=len(data) if truncated or hdr_len == 3 else None,
        has_fecf=opts.has_fecf, fecf_length=opts.fecf_length, has_ocf=has_ocf,
        insert_zone_length=opts.insert_zone_length, vc_frame_count_length=count_len,
        truncated=truncated)
    UslpFrame.unpack(data, channel)
    return root


_SP_HEADER: list[BitField] = [
    ("version", 0, 3, lambda v: "version 1" if v == 0 else "NOT version 1"),
    ("packet_type", 3, 1, _flag("telecommand", "telemetry")),
    ("sec_hdr_flag", 4, 1, _flag("secondary header present", "no secondary header")),
    ("apid", 5, 11, lambda v: "idle packet" if v == 0x7FF else ""),
    ("sequence_flags", 16, 2, lambda v: _SEQ_FLAGS[v]),
    ("sequence_count", 18, 14, None),
    ("data_length", 32, 16, lambda v: f"{v + 1} data octets"),
]


def _dissect_sp(data: bytes, opts: DissectOptions, verdicts: dict[str, str], root: Node) -> Node:
    from sdls_qkd.framing.space_packet import SpacePacket

    root.name = "Space Packet"
    root.children.append(_bits_node(data, 0, "primary_header", 6, _SP_HEADER))
    data_node = _raw("data_field", data, 6, len(data))
    root.children.append(data_node)
    ep = ep_packet_nodes(data, 0)
    if ep is not None:
        data_node.children.extend(ep[0])
        if ep[1]:
            verdicts["ep"] = ep[1]
    SpacePacket.unpack(data)
    return root


def _dissect_ocf(data: bytes, opts: DissectOptions, verdicts: dict[str, str], root: Node) -> Node:
    if len(data) != 4:
        raise InvalidFrameLength(f"an OCF word needs 4 octets, got {len(data)}", field="ocf")
    node = _ocf_node(data, 0)
    root.name = "OCF word"
    root.value, root.meaning, root.children = node.value, node.meaning, node.children
    return root


# ----------------------------------------------------------------------------------- SDLS-EP
def _hexval(blob: bytes) -> str:
    return blob.hex() if len(blob) <= 64 else blob[:32].hex() + f"...({len(blob)} octets)"


def _lenient(decode: Callable[[bool], Any]) -> tuple[Any, str]:
    """Decode strictly; if that is refused, as CryptoLib reads it (the note says why)."""
    try:
        return decode(True), ""
    except InvalidProcedure as exc:
        return decode(False), f"strict parse refused ({exc.message}); shown as CryptoLib reads it"


def _ep_params(procedure: Any, reply: bool, data: bytes, base: int) -> tuple[list[Node], str]:
    """Parameter nodes of an EP data field at offset ``base``, decoded with the procedures'
    codecs; raises :class:`InvalidProcedure` (or another library error) when they refuse it."""
    from sdls_qkd.procedures import key_management as km
    from sdls_qkd.procedures import monitoring as mon
    from sdls_qkd.procedures import qkd_rekey as qkd
    from sdls_qkd.procedures import sa_management as sam
    from sdls_qkd.procedures.pdu import Procedure as P

    out: list[Node] = []
    note = ""
    pos = 0

    def add(name: str, value: Any, length: int, meaning: str = "",
            into: list[Node] | None = None) -> Node:
        nonlocal pos
        if isinstance(value, bytes):
            value = _hexval(value)
        node = Node(name, value, meaning, base + pos, length)
        (out if into is None else into).append(node)
        pos += length
        return node

    def group(name: str, length: int, meaning: str = "") -> list[Node]:
        node = Node(name, _hexval(data[pos:pos + length]), meaning, base + pos, length)
        out.append(node)
        return node.children

    if procedure is P.OTAR and not reply:
        otar, note = _lenient(lambda strict: km.OtarCommand.unpack(data, strict=strict))
        add("master_key_id", otar.master_key_id, 2)
        add("iv", otar.iv, 12)
        add("encrypted_key_blocks", otar.ciphertext, len(otar.ciphertext),
            f"{otar.key_count} x [key ID (2) | key (32)], AES-256-GCM under the master key")
        add("mac", otar.mac, 16)
    elif procedure in (P.KEY_ACTIVATION, P.KEY_DEACTIVATION, P.KEY_DESTRUCTION) and not reply:
        ids, note = _lenient(lambda strict: km.KeyIdList.unpack(data, strict=strict))
        for key_id in ids.key_ids:
            add("key_id", key_id, 2)
    elif procedure is P.KEY_VERIFICATION and not reply:
        cmd, note = _lenient(lambda strict: km.KeyVerificationCommand.unpack(data, strict=strict))
        for i, (key_id, challenge) in enumerate(cmd.challenges):
            kids = group(f"challenge[{i}]", 18)
            add("key_id", key_id, 2, into=kids)
            add("challenge", challenge, 16, into=kids)
    elif procedure is P.KEY_VERIFICATION:
        for i, e in enumerate(km.KeyVerificationReply.unpack(data).entries):
            kids = group(f"entry[{i}]", 46)
            add("key_id", e.key_id, 2, into=kids)
            add("iv", e.iv, 12, into=kids)
            add("encrypted_challenge", e.ciphertext, 16, into=kids)
            add("mac", e.mac, 16, into=kids)
    elif procedure is P.KEY_INVENTORY and not reply:
        inv, note = _lenient(lambda strict: km.KeyInventoryCommand.unpack(data, strict=strict))
        add("first_key_id", inv.first, 2)
        add("last_key_id", inv.last, 2)
    elif procedure is P.KEY_INVENTORY:
        entries = km.KeyInventoryReply.unpack(data).entries
        add("number_of_keys", len(entries), 2)
        for key_id, state in entries:
            add("key_id", key_id, 2)
            add("key_state", int(state), 1, state.name)
    elif procedure is P.CREATE_SA and not reply:
        c, note = _lenient(lambda strict: sam.CreateSaCommand.unpack(data, strict=strict))
        add("spi", c.spi, 2)
        flags = group("flags", 2)
        for name, value, octet, bits, meaning in (
                ("est", int(c.est), 0, "0", "encryption" if c.est else "no encryption"),
                ("ast", int(c.ast), 0, "1", "authentication" if c.ast else "no authentication"),
                ("shivf_length", c.transmitted_iv_length, 0, "2-7", "transmitted IV octets"),
                ("shsnf_length", c.transmitted_sn_length, 1, "8-13", "transmitted ARSN octets"),
                ("shplf_length", c.pad_length_field_length, 1, "14-15", "pad length octets")):
            flags.append(Node(name, value, meaning, base + pos + octet, 1, bits))
        pos += 2
        add("mac_length", c.mac_length, 1)
        for name, blob, width in (("ecs", c.ecs, 1), ("iv", c.iv, 1), ("acs", c.acs, 1),
                                  ("abm", c.abm, 2), ("arsn", c.arsn, 1), ("arsnw", c.arsnw, 1)):
            add(f"{name}_length", len(blob), width)
            if blob:
                add(name, blob, len(blob))
    elif procedure is P.REKEY_SA and not reply:
        rk = sam.RekeySaCommand.unpack(data, max(0, len(data) - 4))
        add("spi", rk.spi, 2)
        add("key_id", rk.key_id, 2)
        add("iv", rk.iv, len(rk.iv), "the SA's full IV (its length is the SA's, not in the PDU)")
    elif procedure is P.START_SA and not reply:
        st, note = _lenient(lambda strict: sam.StartSaCommand.unpack(data, strict=strict))
        add("spi", st.spi, 2)
        for i, g in enumerate(st.gvcids):
            kids = group(f"gvcid[{i}]", 4)
            for name, value in (("tfvn", g.tfvn), ("scid", g.scid), ("vcid", g.vcid),
                                ("map_id", g.map_id)):
                kids.append(Node(name, value, "", base + pos, 4))
            pos += 4
    elif not reply and procedure in (P.STOP_SA, P.EXPIRE_SA, P.DELETE_SA, P.SA_STATUS,
                                     P.READ_ARSN):
        cmd_spi, note = _lenient(lambda strict: sam.SpiCommand.unpack(data, strict=strict))
        add("spi", cmd_spi.spi, 2)
    elif procedure is P.SET_ARSN and not reply:
        sa_arsn = sam.SetArsnCommand.unpack(data, max(0, len(data) - 2))
        add("spi", sa_arsn.spi, 2)
        add("arsn", sa_arsn.arsn, len(sa_arsn.arsn))
    elif procedure is P.SET_ARSN_WINDOW and not reply:
        win = sam.SetArsnWindowCommand.unpack(data, max(0, len(data) - 2))
        add("spi", win.spi, 2)
        add("window", win.window, win.width)
    elif procedure is P.SA_STATUS:
        status = sam.SaStatusReply.unpack(data)
        add("spi", status.spi, 2)
        try:
            meaning = f"{P(status.last_procedure & 0x7F).name}: SA {status.state.name}"
        except (ValueError, InvalidProcedure):
            meaning = "not an SA state procedure"
        add("last_procedure", status.last_procedure, 1, meaning)
    elif procedure is P.READ_ARSN:
        ra = sam.ReadArsnReply.unpack(data)
        add("spi", ra.spi, 2)
        add("arsn", ra.arsn, len(ra.arsn))
    elif reply and procedure in (P.LOG_STATUS, P.ERASE_LOG):
        log = mon.LogStatusReply.unpack(data)
        add("number_of_events", log.count, 2)
        add("remaining_space", log.remaining, 2)
    elif procedure is P.DUMP_LOG and reply:
        for i, event in enumerate(mon.DumpLogReply.unpack(data).events):
            kids = group(f"event[{i}]", 3 + len(event.value))
            try:
                code_name = mon.EventCode(event.code).name
            except ValueError:
                code_name = ""
            add("event_tag", event.code, 1, code_name, into=kids)
            add("event_length", len(event.value), 2, into=kids)
            add("event_value", event.value, len(event.value), into=kids)
    elif procedure is P.SELF_TEST and reply:
        result = mon.SelfTestReply.unpack(data).result
        add("result", int(result), 1, result.name)
    elif procedure is P.QKD_REKEY and not reply:
        qr = qkd.QkdRekeyCommand.unpack(data)
        add("key_id", qr.key_id, 2)
        add("qkd_key_id", str(qr.qkd_key_id), 16, "ETSI GS QKD 014 key ID")
        add("kcv", qr.kcv, len(qr.kcv), "ground key check value")
    elif procedure is P.QKD_REKEY:
        qrr = qkd.QkdRekeyReply.unpack(data)
        add("key_id", qrr.key_id, 2)
        add("kcv", qrr.kcv, len(qrr.kcv), "on-board key check value")
    elif procedure is P.QKD_KEY_CHECK:
        qc: Any = (qkd.QkdKeyCheckReply if reply else qkd.QkdKeyCheckCommand).unpack(data)
        add("key_id", qc.key_id, 2)
        add("response" if reply else "challenge", qc.response if reply else qc.challenge, 16)
    elif data:
        add("data", data, len(data), f"{procedure.name} {'reply' if reply else 'command'} "
            "defines no parameters here (strict mode refuses data; CryptoLib ignores it)")
    if pos < len(data):
        add("trailing", data[pos:], len(data) - pos, "octets after the last parameter (ignored)")
    return out, note


def ep_pdu_node(buf: bytes, base: int) -> tuple[Node, SdlsQkdError | None]:
    """The EP PDU starting at octet ``base`` of ``buf`` (tag, length in bits, parameters); never
    raises: the tree holds what could be read and the error, if any, is returned."""
    from sdls_qkd.procedures.pdu import Pdu, PduTag

    node = Node("SDLS-EP PDU", offset=base, length=max(0, len(buf) - base))
    try:
        table: list[BitField] = [
            ("pdu_type", 0, 1, _flag("reply", "command")),
            ("user_flag", 1, 1, _flag("mission-defined", "CCSDS-defined")),
            ("service_group", 2, 2, lambda v: ("key management", "SA management", "reserved",
                                               "security monitoring & control")[v]),
            ("procedure_id", 4, 4, None)]
        tag_node = _bits_node(buf, base, "tag", 1, table)
        node.children.append(tag_node)
        tag = PduTag.from_int(buf[base])
        kind = "reply" if tag.pdu_type else "command"
        try:
            procedure = tag.procedure
            tag_node.meaning = node.meaning = f"{procedure.name} {kind}"
            tag_node.children[-1].meaning = procedure.name
        except InvalidProcedure:
            tag_node.children[-1].meaning = "no such procedure"
        if len(buf) - base >= 3:
            bits = int.from_bytes(buf[base + 1:base + 3], "big")
            node.children.append(Node("length", bits, f"bits: {bits // 8} data octets"
                                      + ("" if bits % 8 == 0 else " + a partial octet"),
                                      base + 1, 2))
        pdu, end = Pdu.unpack_from(buf, base)
        node.length = end - base
        node.value = _hexval(buf[base:end])
        data_node = _raw("data_field", buf, base + 3, end)
        node.children.append(data_node)
        procedure = pdu.procedure
        data_node.children, data_node.meaning = _ep_params(procedure, pdu.is_reply, pdu.data,
                                                           base + 3)
    except SdlsQkdError as exc:
        node.meaning = (node.meaning + "; " if node.meaning else "") + f"malformed: {exc}"
        return node, exc
    return node, None


def _ep_conventions() -> list[tuple[int, int, int]]:
    """(packet type, APID, secondary header length) of the EP carriage conventions known here."""
    from sdls_qkd.procedures.pdu import PACKET_TYPE_TC, PACKET_TYPE_TM, EpPacketConfig

    out: list[tuple[int, int, int]] = []
    for cfg in (EpPacketConfig.cryptolib(), EpPacketConfig()):
        out.append((PACKET_TYPE_TC, cfg.command_apid, cfg.secondary_header_length))
        out.append((PACKET_TYPE_TM, cfg.reply_apid, cfg.secondary_header_length))
    return out


def ep_packet_nodes(buf: bytes, base: int, *,
                    with_header: bool = False) -> tuple[list[Node], str] | None:
    """Nodes for a space packet at ``base`` that carries an EP PDU on a known EP APID
    (CryptoLib: TC 0x180 / TM 0x080 with a 4-octet PUS header; default: APID 128, none): the
    packet primary header (``with_header``), the secondary header and the PDU, plus a note
    ('' if none).  None when it is not EP carriage."""
    if len(buf) - base < 9 or buf[base] >> 5 != 0:
        return None
    packet_type = (buf[base] >> 4) & 1
    has_sh = bool(buf[base] & 0x08)
    apid = ((buf[base] & 0x07) << 8) | buf[base + 1]
    conventions = _ep_conventions()
    if (packet_type, apid) not in {(t, a) for t, a, _ in conventions}:
        return None
    # with the flag set try each known secondary header length, longest first (CryptoLib sets
    # the flag even when it sends no PUS header)
    lengths = sorted({sh for _, _, sh in conventions} | {0}, reverse=True) if has_sh else [0]
    best: tuple[Node, SdlsQkdError | None, int] | None = None
    for sh in lengths:
        start = base + 6 + sh
        node, error = ep_pdu_node(buf, start)
        if error is None and start + node.length == len(buf):
            best = (node, None, sh)
            break
        if best is None or (best[1] is not None and error is None):
            best = (node, error, sh)
    assert best is not None
    node, error, sh = best
    node.meaning += f" (EP APID {apid:#05x} convention)"
    nodes = [_bits_node(buf, base, "packet_primary_header", 6, _SP_HEADER)] if with_header \
        else []
    if sh:
        nodes.append(_raw("secondary_header", buf, base + 6, base + 6 + sh, "PUS header"))
    nodes.append(node)
    note = ""
    if error is not None:
        note = f"EP PDU on APID {apid:#05x} malformed: {error}"
    elif node.offset + node.length != len(buf):
        note = f"{len(buf) - node.offset - node.length} octets after the EP PDU"
    return nodes, note


def _dissect_ep(data: bytes, opts: DissectOptions, verdicts: dict[str, str], root: Node) -> Node:
    from sdls_qkd.procedures.pdu import Pdu

    node, error = ep_pdu_node(data, 0)
    root.name = node.name
    root.value, root.meaning, root.children = node.value, node.meaning, node.children
    if error is not None:
        raise error
    Pdu.unpack(data)  # strict: the Length field covers every octet after the header
    return root


_DISSECTORS: dict[str, Callable[[bytes, DissectOptions, dict[str, str], Node], Node]] = {
    "TC": _dissect_tc, "TM": _dissect_tm, "AOS": _dissect_aos, "USLP": _dissect_uslp,
    "SP": _dissect_sp, "OCF": _dissect_ocf, "EP": _dissect_ep,
}


def gvcid(data: bytes, kind: str) -> tuple[int, int]:
    """(SCID, VCID) from the primary header of a transfer frame of ``kind``."""
    need = {"TC": 3, "TM": 2, "AOS": 2, "USLP": 4}[kind]
    if len(data) < need:
        raise InvalidFrameLength(f"{kind} frame too short for its GVCID: {len(data)} octets",
                                 field="scid", offset=0)
    if kind == "TC":
        return ((data[0] & 0x03) << 8) | data[1], data[2] >> 2
    if kind == "TM":
        return ((data[0] & 0x3F) << 4) | (data[1] >> 4), (data[1] >> 1) & 0x07
    if kind == "AOS":
        return ((data[0] & 0x3F) << 2) | (data[1] >> 6), data[1] & 0x3F
    return int.from_bytes(data[0:3], "big") >> 4 & 0xFFFF, (data[2] & 0x07) << 3 | data[3] >> 5


def detect_kind(data: bytes) -> str:
    """Guess what ``data`` is from its version bits and length fields."""
    if len(data) < 4:
        raise InvalidFrameLength(f"too short to identify: {len(data)} octets", offset=0)
    if data[0] >> 4 == 0b1100:
        return "USLP"
    version = data[0] >> 6
    if version == 0b01:
        return "AOS"
    if version != 0b00:
        raise InvalidHeader(f"version bits {data[0] >> 4:04b} match no CCSDS frame or packet",
                            field="tfvn", offset=0)
    if len(data) <= 1024 and ((data[2] & 0x03) << 8 | data[3]) + 1 == len(data):
        return "TC"
    if data[0] >> 5 == 0 and len(data) >= 7 and int.from_bytes(data[4:6], "big") + 7 == len(data):
        return "SP"
    if len(data) == 4:
        return "OCF"
    return "TM"


def dissect(data: bytes, kind: str | None = None,
            options: DissectOptions | None = None) -> Dissection:
    """Dissect ``data``; the result carries the library error instead of raising it.

    The tree holds every field that could be read before an error (if any); ``error`` names the
    field and octet offset at fault.
    """
    opts = options or DissectOptions()
    verdicts: dict[str, str] = {}
    try:
        kind = kind.upper() if kind else detect_kind(data)
        if kind not in _DISSECTORS:
            raise InvalidHeader(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")
    except SdlsQkdError as exc:
        return Dissection(kind or "?", Node("input", data[:32].hex(), length=len(data)),
                          verdicts, exc)
    root = Node(kind, offset=0, length=len(data))
    try:
        _DISSECTORS[kind](data, opts, verdicts, root)
    except SdlsQkdError as exc:
        verdicts.setdefault("parse", f"rejected: {exc}")
        return Dissection(kind, root, verdicts, exc)
    verdicts["parse"] = "ok"
    return Dissection(kind, root, verdicts)
