"""The on-board security manager: EP command in, effects and reply out (sans-I/O).

:class:`OnboardSecurityManager` owns the key ring, the SA table (the very
:class:`~sdls_qkd.security.sa.SecurityAssociation` objects the frame engine uses), the security
log with the FSR alarm, and the IV sequence of its replies.  It does no I/O: the link layer hands
it the data field of a frame received on the EP channel (a Space Packet, or a bare PDU) together
with the SPI that protected it, and sends the reply packet it returns.

Every command is validated completely before anything changes.  A rejected command raises a
:mod:`sdls_qkd.errors` exception, is logged with its reason, raises the FSR alarm, and leaves
keys, SAs and counters exactly as they were (:meth:`state_digest` is unchanged).  Every executed
procedure is logged too.

Two modes (:class:`EpMode`):

* ``STRICT`` (default): exact lengths, N >= 1 lists, inventory honours its range, verification
  IVs from a never-repeating sequence, no CryptoLib quirks.
* ``CRYPTOLIB``: reproduces CryptoLib 1.5's EP envelope and replies byte for byte where its
  behaviour is deterministic: its APID test on the first two octets (other data is not EP and is
  ignored), its TLV length rules, lenient data lengths (trailing octets ignored), the reply
  packet header (length field = total octets - 1, sequence copied from the command, APID high
  bits masked), the echoed PUS header, the inventory reply's short length field and every ID of
  the range, Erase Log replying with the log status, and verification IVs 1, 2, 3... restarting
  with every reply (CryptoLib's fixed-IV bug, reproduced only in this mode).  The key and SA
  state tables stay strict in both modes: CryptoLib's state-machine bugs are not reproduced.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Final

from sdls_qkd.errors import InvalidConfiguration, InvalidProcedure, SdlsQkdError
from sdls_qkd.framing.channel import Channel
from sdls_qkd.procedures.key_management import (
    ONBOARD_IV_FIXED_FIELD,
    CounterStore,
    GcmIvSequence,
    KeyIdList,
    KeyInventoryCommand,
    KeyInventoryReply,
    KeyVerificationCommand,
    OtarCommand,
    execute_key_inventory,
    execute_key_transition,
    execute_key_verification,
    execute_otar,
)
from sdls_qkd.procedures.keys import KeyEvent, KeyRing, KeyState
from sdls_qkd.procedures.monitoring import (
    KNOWN_ANSWER_TESTS,
    DumpLogReply,
    EventCode,
    KnownAnswerTest,
    LogStatusReply,
    SecurityEvent,
    SecurityMonitor,
    SelfTestReply,
    SelfTestResult,
    error_code,
    run_self_test,
)
from sdls_qkd.procedures.pdu import (
    PDU_HEADER_LENGTH,
    EpPacket,
    EpPacketConfig,
    Pdu,
    PduTag,
    PduType,
    Procedure,
    unwrap_command,
    wrap_reply,
)
from sdls_qkd.procedures.qkd_rekey import (
    QkdKeyCheckCommand,
    QkdKeyIdMap,
    QkdKeySource,
    QkdRekeyCommand,
    execute_qkd_key_check,
    execute_qkd_rekey,
)
from sdls_qkd.procedures.sa_management import (
    CreateSaCommand,
    SaContext,
    SaMeta,
    SpiCommand,
    StartSaCommand,
)
from sdls_qkd.security.sa import SecurityAssociation

__all__ = ["EpMode", "OnboardConfig", "Effect", "Outcome", "OnboardSecurityManager",
           "CRYPTOLIB_TLV_DATA_SIZE", "install_keys", "preload_cryptolib_log"]

#: CryptoLib's TLV_DATA_SIZE: packet length fields above it are refused (BAD_TLV_LENGTH)
CRYPTOLIB_TLV_DATA_SIZE: Final = 494
_CRYPTOLIB_LOG_VALUE: Final = b"NASA"


class EpMode(Enum):
    STRICT = "strict"
    CRYPTOLIB = "cryptolib"


@dataclass(frozen=True)
class OnboardConfig:
    """Managed parameters of the on-board EP service."""

    packet: EpPacketConfig = field(default_factory=EpPacketConfig)
    #: channels an SA may be started on (Start SA resolves GVCIDs against them)
    channels: tuple[Channel, ...] = ()
    #: SPIs of the SAs that protect the EP channel (never targets of SA management)
    management_spis: frozenset[int] = frozenset()
    mode: EpMode = EpMode.STRICT
    iv_fixed_field: bytes = ONBOARD_IV_FIXED_FIELD
    log_capacity: int = 64
    master_key_ids: range = range(0, 128)

    @classmethod
    def cryptolib(cls, **overrides: object) -> OnboardConfig:
        """CryptoLib 1.5 unit-test set-up: EP on SPI 0 (and 63), APID 0x180 with PUS header,
        log of 50 events, master keys 0..127."""
        base: dict[str, object] = dict(packet=EpPacketConfig.cryptolib(), mode=EpMode.CRYPTOLIB,
                                       management_spis=frozenset({0, 63}), log_capacity=50)
        base.update(overrides)
        return cls(**base)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Effect:
    """One observable change made by a procedure (for the link layer and operators)."""

    kind: str  # "key", "sa", "log", "alarm", "self_test"
    subject: int | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one accepted command did."""

    procedure: Procedure
    reply: Pdu | None
    #: the reply wrapped in a TM Space Packet (None when there is no reply, or for bare PDUs)
    reply_packet: bytes | None
    effects: tuple[Effect, ...]


class OnboardSecurityManager:
    """Executes EP commands against the key ring and the SA table of the spacecraft."""

    def __init__(self, config: OnboardConfig | None = None, *,
                 ring: KeyRing | None = None,
                 sas: MutableMapping[int, SecurityAssociation] | None = None,
                 monitor: SecurityMonitor | None = None,
                 store: CounterStore | None = None,
                 key_source: QkdKeySource | None = None,
                 id_map: QkdKeyIdMap | None = None,
                 self_tests: Sequence[KnownAnswerTest] = KNOWN_ANSWER_TESTS) -> None:
        self.config = config or OnboardConfig()
        self.strict = self.config.mode is EpMode.STRICT
        self.ring = ring if ring is not None else KeyRing(
            master_key_ids=self.config.master_key_ids)
        self.sas: MutableMapping[int, SecurityAssociation] = sas if sas is not None else {}
        self.meta: dict[int, SaMeta] = {}
        self.monitor = monitor or SecurityMonitor(self.config.log_capacity)
        self.ivs = GcmIvSequence(self.config.iv_fixed_field, store=store, name="ep-verify-iv")
        self.key_source = key_source
        self.id_map = id_map if id_map is not None else QkdKeyIdMap(store)
        self.self_tests = tuple(self_tests)
        self._sa_ctx = SaContext(self.sas, self.meta, self.ring, self.config.channels,
                                 self.config.management_spis, self.strict)
        self._handlers: Mapping[Procedure, Callable[[bytes, int | None, list[Effect]],
                                                    bytes | None]] = {
            Procedure.OTAR: self._otar,
            Procedure.KEY_ACTIVATION: self._key_event(KeyEvent.ACTIVATE),
            Procedure.KEY_DEACTIVATION: self._key_event(KeyEvent.DEACTIVATE),
            Procedure.KEY_DESTRUCTION: self._key_event(KeyEvent.DESTROY),
            Procedure.KEY_VERIFICATION: self._verify,
            Procedure.KEY_INVENTORY: self._inventory,
            Procedure.CREATE_SA: self._create_sa,
            Procedure.REKEY_SA: self._rekey_sa,
            Procedure.START_SA: self._start_sa,
            Procedure.STOP_SA: self._simple_sa(Procedure.STOP_SA),
            Procedure.EXPIRE_SA: self._simple_sa(Procedure.EXPIRE_SA),
            Procedure.DELETE_SA: self._simple_sa(Procedure.DELETE_SA),
            Procedure.SET_ARSN: self._set_arsn,
            Procedure.SET_ARSN_WINDOW: self._set_window,
            Procedure.SA_STATUS: self._sa_status,
            Procedure.READ_ARSN: self._read_arsn,
            Procedure.PING: self._ping,
            Procedure.LOG_STATUS: self._log_status,
            Procedure.DUMP_LOG: self._dump_log,
            Procedure.ERASE_LOG: self._erase_log,
            Procedure.SELF_TEST: self._self_test,
            Procedure.ALARM_FLAG_RESET: self._alarm_reset,
            Procedure.QKD_REKEY: self._qkd_rekey,
            Procedure.QKD_KEY_CHECK: self._qkd_key_check,
        }

    # ------------------------------------------------------------------ entry points
    def handle_packet(self, data: bytes, *, via_spi: int | None = None,
                      frame_length_field: int | None = None) -> Outcome | None:
        """Execute the EP command carried in a frame's data field (a Space Packet).

        Strict mode parses one whole TC packet on the command APID; the reply packet is a TM
        packet on the reply APID with the command's sequence count.  CryptoLib mode applies
        CryptoLib's envelope rules and returns ``None`` for data that is not EP (not addressed
        to its APID), as CryptoLib passes such frames on untouched.
        """
        try:
            if self.strict:
                packet = unwrap_command(data, self.config.packet)
                pdu = Pdu.unpack(packet.pdu)
            else:
                parsed = self._cryptolib_envelope(bytes(data), via_spi, frame_length_field)
                if parsed is None:
                    return None
                packet, pdu = parsed
        except SdlsQkdError as exc:
            self._log_rejection(None, exc)
            raise
        outcome = self._execute(pdu, via_spi)
        if outcome.reply is None:
            return outcome
        if self.strict:
            reply_packet = wrap_reply(outcome.reply, self.config.packet, packet.sequence_count,
                                      packet.secondary_header)
        else:
            reply_packet = self._cryptolib_reply_packet(packet, outcome.reply)
        return Outcome(outcome.procedure, outcome.reply, reply_packet, outcome.effects)

    def handle_pdu(self, data: bytes, *, via_spi: int | None = None) -> Outcome:
        """Execute one bare EP PDU (a dedicated VC/MAP or USLP UPID carrying PDUs directly)."""
        try:
            pdu = Pdu.unpack(data) if self.strict else Pdu.unpack_from(data)[0]
        except SdlsQkdError as exc:
            self._log_rejection(None, exc)
            raise
        return self._execute(pdu, via_spi)

    def record_frame(self, spi: int | None, error: SdlsQkdError | None = None, *,
                     sn: bytes = b"") -> None:
        """Report one received frame's ProcessSecurity outcome (FSR flags; log if rejected)."""
        self.monitor.record_frame(spi, error, sn=sn)

    # ------------------------------------------------------------------ state capture
    def state_digest(self) -> bytes:
        """A digest of keys, SAs (state, counters, window, bindings, keys), SA metadata and
        the reply-IV counter: equal before and after any rejected command."""
        h = hashlib.sha256(self.ring.snapshot())
        for spi in sorted(self.sas):
            sa = self.sas[spi]
            keys = tuple((k.key_id, int(k.state)) for k in (sa.enc_key, sa.auth_key)
                         if k is not None)
            h.update(repr((spi, int(sa.state), sa.iv.hex(), sa.arsn.hex(), sa.window,
                           sorted(map(repr, sa.bindings)), keys)).encode())
        for spi in sorted(self.meta):
            m = self.meta[spi]
            h.update(repr((spi, m.frame_type, m.key_id,
                           None if m.last_procedure is None else int(m.last_procedure),
                           m.window_width)).encode())
        h.update(self.ivs.next_counter.to_bytes(9, "big"))
        return h.digest()

    # ------------------------------------------------------------------ execution core
    def _execute(self, pdu: Pdu, via_spi: int | None) -> Outcome:
        effects: list[Effect] = []
        procedure: Procedure | None = None
        try:
            if pdu.tag.pdu_type is not PduType.COMMAND:
                raise InvalidProcedure("a reply PDU was sent to the on-board manager",
                                       field="pdu_type", offset=0)
            procedure = pdu.procedure
            reply_data = self._handlers[procedure](pdu.data, via_spi, effects)
        except SdlsQkdError as exc:
            self._log_rejection(pdu.tag.to_int(), exc)
            raise
        if self.strict:
            self.monitor.record(SecurityEvent(
                EventCode.PROCEDURE_EXECUTED, bytes((pdu.tag.to_int(),)),
                f"{procedure.name} executed"), alarm=False)
        reply = None
        if reply_data is not None:
            reply = Pdu(PduTag(PduType.REPLY, pdu.tag.user_flag, pdu.tag.service_group,
                               pdu.tag.procedure_id), reply_data)
        return Outcome(procedure, reply, None, tuple(effects))

    def _log_rejection(self, tag: int | None, exc: SdlsQkdError) -> None:
        value = bytes((tag if tag is not None else 0xFF, error_code(exc)))
        if self.strict:
            event = SecurityEvent(EventCode.PROCEDURE_REJECTED, value, f"EP command rejected: "
                                  f"{exc}")
        else:
            event = SecurityEvent(EventCode.CRYPTOLIB, _CRYPTOLIB_LOG_VALUE, str(exc))
        self.monitor.record(event, alarm=True)

    # ------------------------------------------------------------------ key management
    def _otar(self, data: bytes, via: int | None, fx: list[Effect]) -> bytes | None:
        cmd = OtarCommand.unpack(data, strict=self.strict)
        for key_id in execute_otar(self.ring, cmd, strict=self.strict):
            fx.append(Effect("key", key_id, "uploaded (PREACTIVE)"))
        return None

    def _key_event(self, event: KeyEvent) -> Callable[[bytes, int | None, list[Effect]],
                                                       bytes | None]:
        def handler(data: bytes, via: int | None, fx: list[Effect]) -> bytes | None:
            ids = KeyIdList.unpack(data, strict=self.strict).key_ids
            user = self._sa_ctx.keys_user if self.strict else (lambda _k: None)
            execute_key_transition(self.ring, ids, event, in_use=user)
            fx.extend(Effect("key", k, self.ring.state(k).name) for k in ids)
            return None
        return handler

    def _verify(self, data: bytes, via: int | None, fx: list[Effect]) -> bytes | None:
        cmd = KeyVerificationCommand.unpack(data, strict=self.strict)
        # CryptoLib mode: the IV restarts at 1 with every reply (its IV-reuse bug, reproduced)
        iv_of: Callable[[int], bytes] = self._next_iv if self.strict else _cryptolib_iv
        reply = execute_key_verification(self.ring, cmd, iv_of, strict=self.strict)
        return reply.pack()

    def _next_iv(self, _index: int) -> bytes:
        return self.ivs.next()

    def _inventory(self, data: bytes, via: int | None, fx: list[Effect]) -> bytes | None:
        cmd = KeyInventoryCommand.unpack(data, strict=self.strict)
        reply: KeyInventoryReply = execute_key_inventory(self.ring, cmd, strict=self.strict)
        return reply.pack()

    # ------------------------------------------------------------------ SA management
    def _create_sa(self, data: bytes, via: int | None, fx: list[Effect]) -> bytes | None:
        cmd = CreateSaCommand.unpack(data, strict=self.strict)
        self._sa_ctx.create(cmd, via)
        fx.append(Effect("sa", cmd.spi, "UNKEYED"))
        return None

    def _rekey_sa(self, data: bytes, via: int | None, fx: list[Effect]) -> bytes | None:
        self._sa_ctx.rekey(data, via)
        spi = int.from_bytes(data[:2], "big")
        fx.append(Effect("sa", spi, "KEYED"))
        return None

    def _start_sa(self, data: bytes, via: int | None, fx: list[Effect]) -> bytes | None:
        cmd = StartSaCommand.unpack(data, strict=self.strict)
        self._sa_ctx.start(cmd, via)
        fx.append(Effect("sa", cmd.spi, "OPERATIONAL"))
        return None

    def _simple_sa(self, procedure: Procedure) -> Callable[[bytes, int | None, list[Effect]],
                                                             bytes | None]:
        def handler(data: bytes, via: int | None, fx: list[Effect]) -> bytes | None:
            cmd = SpiCommand.unpack(data, strict=self.strict)
            self._sa_ctx.simple(procedure, cmd, via)
            sa = self.sas.get(cmd.spi)
            fx.append(Effect("sa", cmd.spi, sa.state.name if sa is not None else "NONE"))
            return None
        return handler

    def _set_arsn(self, data: bytes, via: int | None, fx: list[Effect]) -> bytes | None:
        self._sa_ctx.set_arsn(data, via)
        fx.append(Effect("sa", int.from_bytes(data[:2], "big"), "ARSN set"))
        return None

    def _set_window(self, data: bytes, via: int | None, fx: list[Effect]) -> bytes | None:
        self._sa_ctx.set_window(data, via)
        fx.append(Effect("sa", int.from_bytes(data[:2], "big"), "ARSN window set"))
        return None

    def _sa_status(self, data: bytes, via: int | None, fx: list[Effect]) -> bytes | None:
        return self._sa_ctx.status(SpiCommand.unpack(data, strict=self.strict)).pack()

    def _read_arsn(self, data: bytes, via: int | None, fx: list[Effect]) -> bytes | None:
        return self._sa_ctx.read_arsn(SpiCommand.unpack(data, strict=self.strict)).pack()

    # ------------------------------------------------------------------ monitoring & control
    def _no_data(self, data: bytes, what: str) -> None:
        if data and self.strict:
            raise InvalidProcedure(f"{what} carries no data, got {len(data)} octets",
                                   field="length")

    def _ping(self, data: bytes, via: int | None, fx: list[Effect]) -> bytes | None:
        self._no_data(data, "Ping")
        return b""

    def _log_status(self, data: bytes, via: int | None, fx: list[Effect]) -> bytes | None:
        self._no_data(data, "Log Status")
        return LogStatusReply(len(self.monitor.events), self.monitor.remaining).pack()

    def _dump_log(self, data: bytes, via: int | None, fx: list[Effect]) -> bytes | None:
        self._no_data(data, "Dump Log")
        reply = DumpLogReply(self.monitor.events).pack()
        if len(reply) > 0xFFFF // 8:
            raise InvalidConfiguration("log too large for one Dump Log reply")
        return reply

    def _erase_log(self, data: bytes, via: int | None, fx: list[Effect]) -> bytes | None:
        self._no_data(data, "Erase Log")
        self.monitor.erase()
        fx.append(Effect("log", None, "erased"))
        if self.strict:
            return None
        return LogStatusReply(0, self.monitor.remaining).pack()

    def _self_test(self, data: bytes, via: int | None, fx: list[Effect]) -> bytes | None:
        self._no_data(data, "Self-Test")
        results = run_self_test(self.self_tests)
        failed = sorted(name for name, ok in results.items() if not ok)
        if failed:
            self.monitor.record(SecurityEvent(EventCode.SELF_TEST_FAILED, bytes((len(failed),)),
                                              "self-test failed: " + ", ".join(failed)),
                                alarm=True)
            fx.append(Effect("self_test", None, "FAILED: " + ", ".join(failed)))
            return SelfTestReply(SelfTestResult.FAILED).pack()
        fx.append(Effect("self_test", None, f"OK ({len(results)} known-answer tests)"))
        return SelfTestReply(SelfTestResult.OK).pack()

    def _alarm_reset(self, data: bytes, via: int | None, fx: list[Effect]) -> bytes | None:
        self._no_data(data, "Alarm Flag Reset")
        self.monitor.reset_alarm()
        fx.append(Effect("alarm", None, "reset"))
        return None

    # ------------------------------------------------------------------ QKD
    def _qkd_rekey(self, data: bytes, via: int | None, fx: list[Effect]) -> bytes | None:
        cmd = QkdRekeyCommand.unpack(data)
        if self.key_source is None:
            raise InvalidProcedure("this spacecraft has no QKD key source", field="tag")
        reply = execute_qkd_rekey(self.ring, cmd, self.key_source, self.id_map)
        fx.append(Effect("key", cmd.key_id, f"QKD key {cmd.qkd_key_id} installed (PREACTIVE)"))
        return reply.pack()

    def _qkd_key_check(self, data: bytes, via: int | None, fx: list[Effect]) -> bytes | None:
        return execute_qkd_key_check(self.ring, QkdKeyCheckCommand.unpack(data)).pack()

    # ------------------------------------------------------------------ CryptoLib envelope
    def _cryptolib_envelope(self, data: bytes, via_spi: int | None,
                            frame_length_field: int | None) -> tuple[EpPacket, Pdu] | None:
        apid = self.config.packet.command_apid
        head = bytes((0x18 | (apid >> 8), apid & 0xFF))
        if data[:2] != head:
            return None  # not addressed to the EP APID: CryptoLib passes the frame on
        if via_spi is not None and via_spi not in self.config.management_spis:
            raise InvalidProcedure(f"EP PDU received on SPI {via_spi}, not an EP SA",
                                   field="spi")
        if len(data) < 6:
            raise InvalidProcedure("EP packet header truncated", field="packet_header")
        pkt_length = int.from_bytes(data[4:6], "big")
        sh = self.config.packet.secondary_header_length
        start = 6 + sh
        if len(data) < start + PDU_HEADER_LENGTH:
            raise InvalidProcedure(f"EP packet of {len(data)} octets has no PDU header",
                                   field="pdu", offset=start)
        bits = int.from_bytes(data[start + 1:start + 3], "big")
        if sh:
            derived = len(data) - start - PDU_HEADER_LENGTH
            if bits % 8 or bits // 8 != derived:
                raise InvalidProcedure(f"PDU length {bits} bits does not match the {derived} "
                                       f"octets that follow", field="length", offset=start + 1)
            if pkt_length > CRYPTOLIB_TLV_DATA_SIZE:
                raise InvalidProcedure(f"packet length {pkt_length} exceeds "
                                       f"{CRYPTOLIB_TLV_DATA_SIZE}", field="packet_data_length",
                                       offset=4)
            body = data[start + PDU_HEADER_LENGTH:]
        else:
            fl = frame_length_field if frame_length_field is not None else len(data) + 8 - 1
            max_tlv = fl - 6 - PDU_HEADER_LENGTH
            if bits // 8 > max_tlv:
                raise InvalidProcedure(f"PDU length {bits} bits exceeds the frame",
                                       field="length", offset=start + 1)
            if not (pkt_length < CRYPTOLIB_TLV_DATA_SIZE and pkt_length < max_tlv):
                raise InvalidProcedure(f"packet length {pkt_length} too large",
                                       field="packet_data_length", offset=4)
            body = data[start + PDU_HEADER_LENGTH:start + PDU_HEADER_LENGTH + bits // 8]
        word1 = int.from_bytes(data[2:4], "big")
        packet = EpPacket(1, apid, word1 & 0x3FFF, data[start:], data[6:start], word1 >> 14)
        return packet, Pdu(PduTag.from_int(data[start]), bytes(body))

    def _cryptolib_reply_packet(self, command: EpPacket, reply: Pdu) -> bytes:
        apid = self.config.packet.reply_apid
        length_bits = None
        if reply.procedure is Procedure.KEY_INVENTORY:
            length_bits = 8 * (len(reply.data) - 2)  # CryptoLib leaves the count out
        body = command.secondary_header + reply.pack(length_bits=length_bits)
        total = 6 + len(body)
        header = bytes((
            0x08 | (apid & 0x07),  # PVN 0, type TM, SHF 1, APID high bits as CryptoLib masks them
            apid & 0xFF,
            (command.sequence_flags << 6) | (command.sequence_count >> 8),
            command.sequence_count & 0xFF,
        )) + (total - 1).to_bytes(2, "big")  # CryptoLib: total octets - 1
        return header + body


def _cryptolib_iv(index: int) -> bytes:
    return (index + 1).to_bytes(12, "big")


def preload_cryptolib_log(monitor: SecurityMonitor, count: int) -> None:
    """Put ``count`` CryptoLib-style events (tag 0x0A, value "NASA") in the log."""
    monitor.preload(SecurityEvent(EventCode.CRYPTOLIB, _CRYPTOLIB_LOG_VALUE)
                    for _ in range(count))


def install_keys(ring: KeyRing, keys: Iterable[tuple[int, bytes, int]]) -> None:
    """Pre-load ``(key_id, material, state)`` triples (mission configuration)."""
    for key_id, material, state in keys:
        ring.install(key_id, material, KeyState(state))
