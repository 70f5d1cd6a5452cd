"""SA management procedures (355.1-B-1 service group 01): data-field layouts and execution.

Layouts (big-endian; "SA-managed length" = a length the addressed SA defines):

==================  =========================================================================
Create SA           see :class:`CreateSaCommand` (CryptoLib's layout of the 355.1 parameters)
Rekey SA            SPI (16) | Key ID (16) | IV (the SA's full IV length)
Start SA            SPI (16) | N x GVCID (32): TFVN (4) SCID (16) VCID (6) MAP ID (6), N >= 1
Stop / Expire /     SPI (16)
Delete / Status /
Read ARSN
Set ARSN            SPI (16) | ARSN (the SA's full ARSN length)
Set ARSN Window     SPI (16) | Window (the SA's window field length, default 2 octets)
Status reply        SPI (16) | last procedure (8): the command tag octet of the last SA
                    management procedure that changed the SA's state
Read ARSN reply     SPI (16) | ARSN
==================  =========================================================================

Every state change goes through :data:`sdls_qkd.security.sa.SA_TRANSITIONS` (the SA objects'
own ``create/rekey/start/stop/expire/delete``); nothing here duplicates that table.  Each
executor validates the whole command before touching anything.

Settled ``[UNCERTAIN]``s:

* TFVN ``0`` is shared by TC and TM: a Start SA GVCID is resolved against the channels the
  on-board manager is configured with; when both a TC and a TM channel match, the SA's own frame
  type (from its current bindings or its creation) decides, and if it has none the command is
  refused as ambiguous.
* Rekey SA resets the ARSN to zero (a new key starts a fresh anti-replay sequence) and sets the
  IV from the command.
* A key serves one Keyed/Operational SA at a time (strict mode): two SAs counting IVs under
  the same GCM key would repeat IVs.
* Set ARSN / Set ARSN Window are allowed in Unkeyed, Keyed and Operational (resynchronising a
  live SA is their purpose); a window of 0 (which would refuse every frame) is refused.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from sdls_qkd.errors import (
    IllegalTransition,
    InvalidConfiguration,
    InvalidKeyState,
    InvalidProcedure,
    InvalidSpi,
    UnsupportedAlgorithm,
)
from sdls_qkd.framing.channel import Channel
from sdls_qkd.procedures.keys import KeyRing, KeyRole, KeyState
from sdls_qkd.procedures.pdu import Procedure
from sdls_qkd.security.sa import (
    SA_TRANSITIONS,
    Binding,
    SaProcedure,
    SaState,
    SdlsKey,
    SecurityAssociation,
    ServiceType,
    binding_for,
)

__all__ = [
    "ECS_CODES",
    "ACS_CODES",
    "Gvcid",
    "CreateSaCommand",
    "SpiCommand",
    "RekeySaCommand",
    "StartSaCommand",
    "SetArsnCommand",
    "SetArsnWindowCommand",
    "SaStatusReply",
    "ReadArsnReply",
    "SaMeta",
    "SaContext",
    "STATE_CHANGING",
    "LAST_PROCEDURE_BY_STATE",
    "read_spi",
]

#: Encryption Cipher Suite octet -> cipher name (CryptoLib's EncCipherSuite enum, `[UNCERTAIN]`:
#: 355.1 leaves the codes to SANA, which has no registry yet)
ECS_CODES: Final[Mapping[int, str | None]] = {0: None, 1: "AES-256-GCM", 2: "AES-256-CBC",
                                              5: "AES-256-GCM-SIV"}
#: Authentication Cipher Suite octet -> MAC name (CryptoLib's AuthCipherSuite enum)
ACS_CODES: Final[Mapping[int, str | None]] = {0: None, 1: "AES-256-CMAC", 2: "HMAC-SHA-256",
                                              3: "HMAC-SHA-512"}

#: SA procedures whose success records the SA's "last procedure"
STATE_CHANGING: Final[Mapping[Procedure, SaProcedure]] = {
    Procedure.CREATE_SA: SaProcedure.CREATE,
    Procedure.REKEY_SA: SaProcedure.REKEY,
    Procedure.START_SA: SaProcedure.START,
    Procedure.STOP_SA: SaProcedure.STOP,
    Procedure.EXPIRE_SA: SaProcedure.EXPIRE,
    Procedure.DELETE_SA: SaProcedure.DELETE,
}

#: the status octet of an SA no procedure has touched yet: the procedure that leads to its state
LAST_PROCEDURE_BY_STATE: Final[Mapping[SaState, Procedure]] = {
    SaState.NONE: Procedure.DELETE_SA,
    SaState.UNKEYED: Procedure.CREATE_SA,
    SaState.KEYED: Procedure.REKEY_SA,
    SaState.OPERATIONAL: Procedure.START_SA,
}


def read_spi(data: bytes) -> int:
    """The SPI that opens every SA management data field."""
    if len(data) < 2:
        raise InvalidProcedure(f"SA management data needs an SPI (2 octets), got {len(data)}",
                               field="spi", offset=0)
    return int.from_bytes(data[:2], "big")


def _exact(data: bytes, expected: int, what: str, strict: bool) -> None:
    if len(data) < expected or (strict and len(data) != expected):
        raise InvalidProcedure(f"{what} data field must be {expected} octets, got {len(data)}",
                               field="length")


# --------------------------------------------------------------------------- layouts
@dataclass(frozen=True, slots=True)
class Gvcid:
    """A Start SA channel entry (sdls-ep.md §4.3): TFVN (4) SCID (16) VCID (6) MAP ID (6)."""

    tfvn: int
    scid: int
    vcid: int
    map_id: int = 0

    def pack(self) -> bytes:
        if not (0 <= self.tfvn <= 0xF and 0 <= self.scid <= 0xFFFF and 0 <= self.vcid <= 0x3F
                and 0 <= self.map_id <= 0x3F):
            raise InvalidConfiguration(f"GVCID field out of range: {self}")
        word = (self.tfvn << 28) | (self.scid << 12) | (self.vcid << 6) | self.map_id
        return word.to_bytes(4, "big")

    @classmethod
    def unpack(cls, data: bytes) -> Gvcid:
        word = int.from_bytes(data[:4], "big")
        return cls(word >> 28, (word >> 12) & 0xFFFF, (word >> 6) & 0x3F, word & 0x3F)

    @classmethod
    def of(cls, channel: Channel) -> Gvcid:
        return cls(channel.tfvn, channel.scid, channel.vcid, getattr(channel, "map_id", None) or 0)


@dataclass(frozen=True, slots=True)
class SpiCommand:
    """Stop / Expire / Delete / Status / Read ARSN: SPI (16)."""

    spi: int

    def pack(self) -> bytes:
        return self.spi.to_bytes(2, "big")

    @classmethod
    def unpack(cls, data: bytes, *, strict: bool = True) -> SpiCommand:
        _exact(data, 2, "this SA procedure's", strict)
        return cls(read_spi(data))


@dataclass(frozen=True, slots=True)
class RekeySaCommand:
    spi: int
    key_id: int
    iv: bytes = b""

    def pack(self) -> bytes:
        return self.spi.to_bytes(2, "big") + self.key_id.to_bytes(2, "big") + self.iv

    @classmethod
    def unpack(cls, data: bytes, iv_length: int, *, strict: bool = True) -> RekeySaCommand:
        _exact(data, 4 + iv_length, "Rekey SA", strict)
        return cls(read_spi(data), int.from_bytes(data[2:4], "big"), bytes(data[4:4 + iv_length]))


@dataclass(frozen=True, slots=True)
class StartSaCommand:
    spi: int
    gvcids: tuple[Gvcid, ...]

    def pack(self) -> bytes:
        return self.spi.to_bytes(2, "big") + b"".join(g.pack() for g in self.gvcids)

    @classmethod
    def unpack(cls, data: bytes, *, strict: bool = True) -> StartSaCommand:
        body = len(data) - 2
        if body < 4 or (strict and body % 4):
            raise InvalidProcedure(f"Start SA data must be 2 + N x 4 octets (N >= 1), got "
                                   f"{len(data)}", field="length")
        gvcids = tuple(Gvcid.unpack(data[i:i + 4]) for i in range(2, 2 + (body // 4) * 4, 4))
        if strict and len(set(gvcids)) != len(gvcids):
            raise InvalidProcedure("Start SA names a GVCID twice", field="gvcid")
        return cls(read_spi(data), gvcids)


@dataclass(frozen=True, slots=True)
class SetArsnCommand:
    spi: int
    arsn: bytes

    def pack(self) -> bytes:
        return self.spi.to_bytes(2, "big") + self.arsn

    @classmethod
    def unpack(cls, data: bytes, sn_length: int, *, strict: bool = True) -> SetArsnCommand:
        _exact(data, 2 + sn_length, "Set ARSN", strict)
        return cls(read_spi(data), bytes(data[2:2 + sn_length]))


@dataclass(frozen=True, slots=True)
class SetArsnWindowCommand:
    spi: int
    window: int
    width: int = 2

    def pack(self) -> bytes:
        return self.spi.to_bytes(2, "big") + self.window.to_bytes(self.width, "big")

    @classmethod
    def unpack(cls, data: bytes, width: int, *, strict: bool = True) -> SetArsnWindowCommand:
        _exact(data, 2 + width, "Set ARSN Window", strict)
        return cls(read_spi(data), int.from_bytes(data[2:2 + width], "big"), width)


@dataclass(frozen=True, slots=True)
class SaStatusReply:
    spi: int
    last_procedure: int

    def pack(self) -> bytes:
        return self.spi.to_bytes(2, "big") + bytes((self.last_procedure,))

    @classmethod
    def unpack(cls, data: bytes) -> SaStatusReply:
        _exact(data, 3, "SA Status reply", True)
        return cls(read_spi(data), data[2])

    @property
    def state(self) -> SaState:
        """The SA state the last procedure led to."""
        try:
            proc = Procedure(self.last_procedure & 0x7F)
            return SA_TRANSITIONS[(_FROM_STATE[proc], STATE_CHANGING[proc])]
        except (ValueError, KeyError):
            raise InvalidProcedure(f"status octet {self.last_procedure:#04x} is no SA state "
                                   f"procedure", field="last_procedure", offset=2) from None


_FROM_STATE: Final = {Procedure.CREATE_SA: SaState.NONE, Procedure.REKEY_SA: SaState.UNKEYED,
                      Procedure.START_SA: SaState.KEYED, Procedure.STOP_SA: SaState.OPERATIONAL,
                      Procedure.EXPIRE_SA: SaState.KEYED, Procedure.DELETE_SA: SaState.UNKEYED}


@dataclass(frozen=True, slots=True)
class ReadArsnReply:
    spi: int
    arsn: bytes

    def pack(self) -> bytes:
        return self.spi.to_bytes(2, "big") + self.arsn

    @classmethod
    def unpack(cls, data: bytes) -> ReadArsnReply:
        return cls(read_spi(data), bytes(data[2:]))


@dataclass(frozen=True, slots=True)
class CreateSaCommand:
    """Create SA (CryptoLib layout, sdls-ep.md §4.2):

    SPI (16) | EST (1) AST (1) SHIVF len (6) | SHSNF len (6) SHPLF len (2) | MAC len (8) |
    ECS len (8) | ECS | IV len (8) | IV | ACS len (8) | ACS | ABM len (16) | ABM |
    ARSN len (8) | ARSN | ARSNW len (8) | ARSNW
    """

    spi: int
    est: bool
    ast: bool
    transmitted_iv_length: int
    transmitted_sn_length: int
    pad_length_field_length: int
    mac_length: int
    ecs: bytes
    iv: bytes
    acs: bytes
    abm: bytes
    arsn: bytes
    arsnw: bytes

    def pack(self) -> bytes:
        out = bytearray(self.spi.to_bytes(2, "big"))
        out.append((int(self.est) << 7) | (int(self.ast) << 6) | self.transmitted_iv_length)
        out.append((self.transmitted_sn_length << 2) | self.pad_length_field_length)
        out.append(self.mac_length)
        for blob in (self.ecs, self.iv, self.acs):
            out.append(len(blob))
            out += blob
        out += len(self.abm).to_bytes(2, "big") + self.abm
        for blob in (self.arsn, self.arsnw):
            out.append(len(blob))
            out += blob
        return bytes(out)

    @classmethod
    def unpack(cls, data: bytes, *, strict: bool = True) -> CreateSaCommand:
        if len(data) < 5:
            raise InvalidProcedure(f"Create SA data needs at least 5 octets, got {len(data)}",
                                   field="length")
        pos = 5

        def take(width: int, name: str) -> bytes:
            nonlocal pos
            if pos + width > len(data):
                raise InvalidProcedure(f"Create SA field {name} runs past the data field "
                                       f"({pos + width} > {len(data)} octets)", field=name,
                                       offset=pos)
            blob = bytes(data[pos:pos + width])
            pos += width
            return blob

        def lv(name: str, len_octets: int = 1) -> bytes:
            return take(int.from_bytes(take(len_octets, name + "_len"), "big"), name)

        ecs, iv, acs = lv("ecs"), lv("iv"), lv("acs")
        abm = lv("abm", 2)
        arsn, arsnw = lv("arsn"), lv("arsnw")
        if strict and pos != len(data):
            raise InvalidProcedure(f"Create SA data has {len(data) - pos} octets after ARSNW",
                                   field="length", offset=pos)
        return cls(read_spi(data), bool(data[2] & 0x80), bool(data[2] & 0x40), data[2] & 0x3F,
                   data[3] >> 2, data[3] & 0b11, data[4], ecs, iv, acs, abm, arsn, arsnw)

    def build(self) -> SecurityAssociation:
        """A new Unkeyed SA with these parameters (no keys yet)."""
        cipher = _code(self.ecs, ECS_CODES, "ecs")
        mac = _code(self.acs, ACS_CODES, "acs")
        service = ServiceType.of(encrypt=self.est, authenticate=self.ast)
        if service is ServiceType.AUTHENTICATED_ENCRYPTION and cipher is not None and "GCM" in \
                cipher:
            mac = None  # an AEAD authenticates itself (schema rule)
        window = int.from_bytes(self.arsnw, "big") if self.arsnw else 0
        try:
            # The SA class validates its suite with keys present, so an Unkeyed SA is built Keyed
            # with a throw-away key and expired at once: Expire drops the key.
            placeholder = _placeholder_keys(service, cipher, mac)
            sa = SecurityAssociation(
                self.spi, service=service, cipher=cipher, mac_algorithm=mac,
                enc_key=placeholder[0], auth_key=placeholder[1],
                iv_length=len(self.iv), transmitted_iv_length=self.transmitted_iv_length,
                sn_length=len(self.arsn), transmitted_sn_length=self.transmitted_sn_length,
                pad_length_field_length=self.pad_length_field_length, mac_length=self.mac_length,
                abm=self.abm, window=window, iv=self.iv, arsn=self.arsn, state=SaState.KEYED)
        except (InvalidConfiguration, UnsupportedAlgorithm) as exc:
            raise InvalidProcedure(f"Create SA parameters cannot work: {exc.message}",
                                   field=exc.field) from None
        sa.expire()
        return sa


def _placeholder_keys(service: ServiceType, cipher: str | None,
                      mac: str | None) -> tuple[SdlsKey | None, SdlsKey | None]:
    size = 16 if cipher == "AES-128-GCM" else 32
    enc = SdlsKey(os.urandom(size), key_id="placeholder") if cipher is not None else None
    auth = SdlsKey(os.urandom(32), key_id="placeholder") if mac is not None else None
    return enc, auth


def _code(blob: bytes, table: Mapping[int, str | None], name: str) -> str | None:
    if len(blob) > 1:
        raise InvalidProcedure(f"{name} is one octet here, got {len(blob)}", field=name)
    code = blob[0] if blob else 0
    try:
        return table[code]
    except KeyError:
        raise InvalidProcedure(f"{name} code {code} is not supported", field=name) from None


# --------------------------------------------------------------------------- on-board state
@dataclass(slots=True)
class SaMeta:
    """What the manager keeps about an SA beyond the SA object itself."""

    frame_type: str | None = None
    key_id: int | None = None
    last_procedure: Procedure | None = None
    window_width: int = 2

    def status_octet(self, state: SaState) -> int:
        proc = self.last_procedure or LAST_PROCEDURE_BY_STATE[state]
        return int(proc)


@dataclass(slots=True)
class SaContext:
    """The SA-management view of the on-board manager (mutated only on success)."""

    sas: MutableMapping[int, SecurityAssociation]
    meta: MutableMapping[int, SaMeta]
    ring: KeyRing
    channels: Sequence[Channel] = ()
    #: SPIs of the SAs that protect EP commands (never targets of SA management)
    management_spis: frozenset[int] = frozenset()
    strict: bool = True
    on_change: Callable[[int], None] = field(default=lambda _spi: None)

    # ------------------------------------------------------------------ lookups
    def sa(self, spi: int) -> SecurityAssociation:
        sa = self.sas.get(spi)
        if sa is None or sa.state is SaState.NONE:
            raise InvalidSpi(f"no SA with SPI {spi}", field="spi")
        return sa

    def meta_of(self, spi: int) -> SaMeta:
        """The SA's metadata, read-only (a default when none is stored yet)."""
        meta = self.meta.get(spi)
        return meta if meta is not None else SaMeta(frame_type=_frame_type_of(self.sas.get(spi)))

    def _commit_meta(self, spi: int) -> SaMeta:
        """The stored metadata to update (created now: only called once a command passed)."""
        meta = self.meta.get(spi)
        if meta is None:
            meta = self.meta[spi] = self.meta_of(spi)
        return meta

    def guard(self, spi: int, via_spi: int | None) -> None:
        """Refuse commands on the SA that protects EP traffic (or carried this command)."""
        if spi == via_spi or spi in self.management_spis:
            raise InvalidProcedure(f"SPI {spi} protects the EP channel itself: SA management "
                                   f"cannot change it over that channel", field="spi")

    def keys_user(self, key_id: int) -> str | None:
        """The SPI (as text) of a Keyed/Operational SA holding ``key_id``, if any."""
        for spi, sa in self.sas.items():
            if sa.state in (SaState.KEYED, SaState.OPERATIONAL):
                held = [k for k in (sa.enc_key, sa.auth_key) if k is not None]
                if any(k.key_id == key_id for k in held) or self.meta_of(spi).key_id == key_id:
                    return f"SPI {spi} ({sa.state.name})"
        return None

    # ------------------------------------------------------------------ executors
    def create(self, cmd: CreateSaCommand, via_spi: int | None) -> None:
        self.guard(cmd.spi, via_spi)
        existing = self.sas.get(cmd.spi)
        if existing is not None and existing.state is not SaState.NONE:
            raise IllegalTransition(f"SA {cmd.spi} already exists ({existing.state.name})",
                                    field="spi")
        sa = cmd.build()
        width = len(cmd.arsnw) or 2
        self.sas[cmd.spi] = sa
        self.meta[cmd.spi] = SaMeta(frame_type=None, window_width=width,
                                    last_procedure=Procedure.CREATE_SA)
        self.on_change(cmd.spi)

    def rekey(self, data: bytes, via_spi: int | None) -> None:
        spi = read_spi(data)
        self.guard(spi, via_spi)
        sa = self.sa(spi)
        cmd = RekeySaCommand.unpack(data, sa.iv_length, strict=self.strict)
        _check_transition(sa, SaProcedure.REKEY)
        entry = self.ring.get(cmd.key_id)
        if self.ring.role(cmd.key_id) is KeyRole.MASTER:
            raise InvalidProcedure(f"key {cmd.key_id} is a master key: it cannot serve as a "
                                   f"session key", field="key_id")
        if self.strict and entry.state is not KeyState.ACTIVE:
            raise InvalidKeyState(f"key {cmd.key_id} is {entry.state.name}, not ACTIVE",
                                  field="key_id")
        user = self.keys_user(cmd.key_id) if self.strict else None
        if user is not None:
            raise IllegalTransition(f"key {cmd.key_id} is already used by {user}: one key per SA "
                                    f"(two SAs' IV counters under one key would collide)",
                                    field="key_id")
        key = self.ring.sdls_key(cmd.key_id)
        enc = key if sa.cipher is not None else None
        auth = key if sa.mac_algorithm is not None else None
        try:
            sa.rekey(enc, auth, iv=cmd.iv if sa.iv_length else None,
                     arsn=0 if sa.sn_length else None)
        except (InvalidConfiguration, UnsupportedAlgorithm) as exc:
            raise InvalidProcedure(f"key {cmd.key_id} does not fit SA {spi}: {exc.message}",
                                   field="key_id") from None
        meta = self._commit_meta(spi)
        meta.key_id = cmd.key_id
        meta.last_procedure = Procedure.REKEY_SA
        self.on_change(spi)

    def start(self, cmd: StartSaCommand, via_spi: int | None) -> None:
        self.guard(cmd.spi, via_spi)
        sa = self.sa(cmd.spi)
        _check_transition(sa, SaProcedure.START)
        meta = self.meta_of(cmd.spi)
        bindings = [self._resolve(g, meta.frame_type, cmd.spi) for g in cmd.gvcids]
        kinds = {b.frame_type for b in bindings}
        if len(kinds) != 1 and self.strict:
            raise InvalidProcedure(f"Start SA binds SPI {cmd.spi} to several frame types "
                                   f"{sorted(kinds)}", field="gvcid")
        sa.start(bindings)
        meta = self._commit_meta(cmd.spi)
        meta.frame_type = bindings[0].frame_type
        meta.last_procedure = Procedure.START_SA
        self.on_change(cmd.spi)

    def simple(self, procedure: Procedure, cmd: SpiCommand, via_spi: int | None) -> None:
        """Stop / Expire / Delete."""
        self.guard(cmd.spi, via_spi)
        sa = self.sa(cmd.spi)
        sa_proc = STATE_CHANGING[procedure]
        _check_transition(sa, sa_proc)
        if sa_proc is SaProcedure.STOP:
            sa.stop()
        elif sa_proc is SaProcedure.EXPIRE:
            sa.expire()
            self._commit_meta(cmd.spi).key_id = None
        else:
            sa.delete()
        meta = self._commit_meta(cmd.spi)
        meta.last_procedure = procedure
        if sa.state is SaState.NONE:
            del self.sas[cmd.spi]
            self.meta.pop(cmd.spi, None)
        self.on_change(cmd.spi)

    def set_arsn(self, data: bytes, via_spi: int | None) -> None:
        spi = read_spi(data)
        self.guard(spi, via_spi)
        sa = self.sa(spi)
        cmd = SetArsnCommand.unpack(data, sa.sn_length, strict=self.strict)
        sa.arsn = cmd.arsn
        self.on_change(spi)

    def set_window(self, data: bytes, via_spi: int | None) -> None:
        spi = read_spi(data)
        self.guard(spi, via_spi)
        sa = self.sa(spi)
        width = self.meta_of(spi).window_width
        cmd = SetArsnWindowCommand.unpack(data, width, strict=self.strict)
        if cmd.window == 0 and self.strict:
            raise InvalidProcedure("an ARSN window of 0 would refuse every frame",
                                   field="window", offset=2)
        sa.set_window(cmd.window)
        self.on_change(spi)

    def status(self, cmd: SpiCommand) -> SaStatusReply:
        sa = self.sa(cmd.spi)
        return SaStatusReply(cmd.spi, self.meta_of(cmd.spi).status_octet(sa.state))

    def read_arsn(self, cmd: SpiCommand) -> ReadArsnReply:
        return ReadArsnReply(cmd.spi, self.sa(cmd.spi).arsn)

    # ------------------------------------------------------------------ helpers
    def _resolve(self, g: Gvcid, frame_type: str | None, spi: int) -> Binding:
        candidates = []
        for ch in self.channels:
            if (ch.tfvn, ch.scid, ch.vcid) != (g.tfvn, g.scid, g.vcid):
                continue
            b = binding_for(ch)
            if b.map_id is not None and b.map_id != g.map_id:
                continue
            candidates.append(b if b.map_id is not None else Binding(
                b.frame_type, b.tfvn, b.scid, b.vcid, None))
        if not self.strict and not candidates:
            return Binding(frame_type or "TC", g.tfvn, g.scid, g.vcid, g.map_id or None)
        if not candidates:
            raise InvalidProcedure(f"GVCID {g.tfvn}/{g.scid}/{g.vcid} MAP {g.map_id} is not a "
                                   f"configured channel", field="gvcid")
        if len({b.frame_type for b in candidates}) > 1:
            chosen = [b for b in candidates if b.frame_type == frame_type]
            if not chosen:
                raise InvalidProcedure(
                    f"GVCID {g.tfvn}/{g.scid}/{g.vcid} is both a TC and a TM channel and SA "
                    f"{spi} has no frame type yet: ambiguous", field="gvcid")
            candidates = chosen
        return candidates[0]


def _check_transition(sa: SecurityAssociation, procedure: SaProcedure) -> None:
    if (sa.state, procedure) not in SA_TRANSITIONS:
        raise IllegalTransition(f"SA {sa.spi}: {procedure.name} is not allowed in state "
                                f"{sa.state.name}", field="spi")


def _frame_type_of(sa: SecurityAssociation | None) -> str | None:
    if sa is None or not sa.bindings:
        return None
    kinds = {b.frame_type for b in sa.bindings}
    return next(iter(kinds)) if len(kinds) == 1 else None

