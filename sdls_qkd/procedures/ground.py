"""The ground commander: builds EP commands, matches replies, times out (sans-I/O).

:class:`GroundCommander` turns operator intents into EP command PDUs and TC Space Packets, keeps
each command *pending* until its reply arrives, decodes and checks the reply, and times commands
out against an injected clock (no threads, no sleeping: call :meth:`GroundCommander.poll`).

Matching: a reply packet carries the command's packet sequence count (the on-board manager
echoes it, as CryptoLib does), so it matches exactly one pending command; a bare reply PDU
matches the oldest pending command of the same procedure.  A reply nobody waits for (unknown,
late, duplicated) is refused with :class:`~sdls_qkd.errors.InvalidProcedure`.  Commands without
a reply in the standard (e.g. Key Activation) are complete once sent; their effect is confirmed
by a later query (Key Inventory, SA Status) and by the FSR alarm flag staying clear.

The ground's own copies of the keys it manages live in a :class:`KeyRing` (``keys``): OTAR takes
the master key and the uploaded keys from it, Key Verification checks replies against it.  OTAR
IVs come from a never-repeating :class:`GcmIvSequence` with the ground's fixed field.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from sdls_qkd.errors import InvalidConfiguration, InvalidProcedure, MacVerificationFailure
from sdls_qkd.keys.material import QkdKey
from sdls_qkd.procedures.key_management import (
    GROUND_IV_FIXED_FIELD,
    CounterStore,
    GcmIvSequence,
    KeyIdList,
    KeyInventoryCommand,
    KeyInventoryReply,
    KeyVerificationCommand,
    KeyVerificationReply,
    OtarCommand,
)
from sdls_qkd.procedures.keys import KeyRing, KeyState
from sdls_qkd.procedures.monitoring import (
    DumpLogReply,
    LogStatusReply,
    SelfTestReply,
)
from sdls_qkd.procedures.pdu import (
    EpPacketConfig,
    Pdu,
    Procedure,
    unwrap_reply,
    wrap_command,
)
from sdls_qkd.procedures.qkd_rekey import (
    GROUND_LABEL,
    ONBOARD_LABEL,
    QkdKeyCheckCommand,
    QkdKeyCheckReply,
    QkdKeyIdMap,
    QkdRekeyCommand,
    QkdRekeyReply,
    check_response,
    key_check_value,
)
from sdls_qkd.procedures.sa_management import (
    CreateSaCommand,
    Gvcid,
    ReadArsnReply,
    RekeySaCommand,
    SaStatusReply,
    SetArsnCommand,
    SetArsnWindowCommand,
    SpiCommand,
    StartSaCommand,
)

__all__ = ["CommandState", "PendingCommand", "GroundCommander"]


class CommandState(Enum):
    PENDING = "pending"  # sent, reply awaited
    SENT = "sent"  # sent, the procedure has no reply
    COMPLETED = "completed"  # reply received and decoded
    FAILED = "failed"  # reply received but its check failed (e.g. key mismatch)
    TIMED_OUT = "timed out"


@dataclass(slots=True)
class PendingCommand:
    """One command on its way; ``result`` holds the decoded reply once it arrived."""

    procedure: Procedure
    pdu: Pdu
    sequence_count: int
    packet: bytes
    sent_at: float
    deadline: float
    state: CommandState
    result: Any = None
    error: str = ""
    #: what the reply check needs (challenges, expected key IDs ...); not sent
    context: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def done(self) -> bool:
        return self.state is not CommandState.PENDING


class GroundCommander:
    """Builds EP commands and follows them to their replies."""

    def __init__(self, packet: EpPacketConfig | None = None, *, clock: Callable[[], float],
                 timeout: float = 30.0, keys: KeyRing | None = None,
                 store: CounterStore | None = None, id_map: QkdKeyIdMap | None = None,
                 iv_fixed_field: bytes = GROUND_IV_FIXED_FIELD,
                 random: Callable[[int], bytes] = os.urandom) -> None:
        if timeout <= 0:
            raise InvalidConfiguration("timeout must be > 0 seconds")
        self.packet_config = packet or EpPacketConfig()
        self.clock = clock
        self.timeout = timeout
        self.keys = keys if keys is not None else KeyRing()
        self.ivs = GcmIvSequence(iv_fixed_field, store=store, name="ep-otar-iv")
        self.id_map = id_map if id_map is not None else QkdKeyIdMap(store)
        self._random = random
        self._sequence = 0
        self._pending: dict[int, PendingCommand] = {}
        #: SDLS key IDs whose QKD key both ends proved to hold (QKD Rekey / Key Check)
        self.confirmed_keys: set[int] = set()

    # ------------------------------------------------------------------ sending
    @property
    def pending(self) -> tuple[PendingCommand, ...]:
        return tuple(self._pending.values())

    def send(self, procedure: Procedure, data: bytes = b"", **context: Any) -> PendingCommand:
        """Build the PDU and its TC packet; the command is pending if a reply is due."""
        pdu = Pdu.command(procedure, data)
        context = {**self._context_of(procedure, data), **context}
        seq = self._sequence
        self._sequence = (self._sequence + 1) & 0x3FFF
        if seq in self._pending:
            raise InvalidConfiguration(f"16384 commands outstanding: sequence count {seq} busy")
        now = self.clock()
        packet = wrap_command(pdu, self.packet_config, seq)
        state = CommandState.PENDING if procedure.has_reply else CommandState.SENT
        cmd = PendingCommand(procedure, pdu, seq, packet, now, now + self.timeout, state,
                             context=context)
        if procedure.has_reply:
            self._pending[seq] = cmd
        return cmd

    @staticmethod
    def _context_of(procedure: Procedure, data: bytes) -> dict[str, Any]:
        """What the reply check needs, read back from the command's own data field."""
        try:
            if procedure is Procedure.KEY_VERIFICATION:
                return {"command": KeyVerificationCommand.unpack(data)}
            if procedure is Procedure.KEY_INVENTORY:
                inv = KeyInventoryCommand.unpack(data)
                return {"first": inv.first, "last": inv.last}
            if procedure in (Procedure.SA_STATUS, Procedure.READ_ARSN):
                return {"spi": SpiCommand.unpack(data).spi}
            if procedure is Procedure.QKD_REKEY:
                return {"command": QkdRekeyCommand.unpack(data)}
            if procedure is Procedure.QKD_KEY_CHECK:
                return {"command": QkdKeyCheckCommand.unpack(data)}
        except InvalidProcedure as exc:
            raise InvalidConfiguration(f"malformed {procedure.name} command: {exc.message}",
                                       field=exc.field) from None
        return {}

    # ------------------------------------------------------------------ key management
    def otar(self, master_key_id: int, key_ids: Sequence[int]) -> PendingCommand:
        """Upload ``key_ids`` (their material taken from :attr:`keys`) under a master key."""
        blocks = [(k, self.keys.material(k)) for k in key_ids]
        cmd = OtarCommand.seal(master_key_id, self.keys.material(master_key_id), blocks,
                               self.ivs.next())
        return self.send(Procedure.OTAR, cmd.pack())

    def activate(self, key_ids: Iterable[int]) -> PendingCommand:
        return self.send(Procedure.KEY_ACTIVATION, KeyIdList(tuple(key_ids)).pack())

    def deactivate(self, key_ids: Iterable[int]) -> PendingCommand:
        return self.send(Procedure.KEY_DEACTIVATION, KeyIdList(tuple(key_ids)).pack())

    def destroy(self, key_ids: Iterable[int]) -> PendingCommand:
        return self.send(Procedure.KEY_DESTRUCTION, KeyIdList(tuple(key_ids)).pack())

    def verify(self, key_ids: Iterable[int]) -> PendingCommand:
        """Challenge each key with 128 fresh random bits."""
        cmd = KeyVerificationCommand(tuple((k, self._random(16)) for k in key_ids))
        return self.send(Procedure.KEY_VERIFICATION, cmd.pack(), command=cmd)

    def inventory(self, first: int, last: int) -> PendingCommand:
        return self.send(Procedure.KEY_INVENTORY, KeyInventoryCommand(first, last).pack(),
                         first=first, last=last)

    # ------------------------------------------------------------------ SA management
    def create_sa(self, cmd: CreateSaCommand) -> PendingCommand:
        return self.send(Procedure.CREATE_SA, cmd.pack())

    def rekey_sa(self, spi: int, key_id: int, iv: bytes = b"") -> PendingCommand:
        """Bind ``key_id`` to SA ``spi`` with IV ``iv`` (the ARSN restarts at 0).  On a
        receiving SA these are the *last accepted* values: the sender starts at value + 1."""
        return self.send(Procedure.REKEY_SA, RekeySaCommand(spi, key_id, iv).pack())

    def start_sa(self, spi: int, gvcids: Sequence[Gvcid], *,
                 require_confirmed: int | None = None) -> PendingCommand:
        """Start an SA; with ``require_confirmed`` the key must have passed a key check."""
        if require_confirmed is not None and require_confirmed not in self.confirmed_keys:
            raise MacVerificationFailure(f"key {require_confirmed} is not confirmed on both ends:"
                                         f" Start SA withheld", field="key_id")
        return self.send(Procedure.START_SA, StartSaCommand(spi, tuple(gvcids)).pack())

    def stop_sa(self, spi: int) -> PendingCommand:
        return self.send(Procedure.STOP_SA, SpiCommand(spi).pack())

    def expire_sa(self, spi: int) -> PendingCommand:
        return self.send(Procedure.EXPIRE_SA, SpiCommand(spi).pack())

    def delete_sa(self, spi: int) -> PendingCommand:
        return self.send(Procedure.DELETE_SA, SpiCommand(spi).pack())

    def set_arsn(self, spi: int, arsn: bytes) -> PendingCommand:
        return self.send(Procedure.SET_ARSN, SetArsnCommand(spi, arsn).pack())

    def set_arsn_window(self, spi: int, window: int, width: int = 2) -> PendingCommand:
        return self.send(Procedure.SET_ARSN_WINDOW, SetArsnWindowCommand(spi, window,
                                                                         width).pack())

    def sa_status(self, spi: int) -> PendingCommand:
        return self.send(Procedure.SA_STATUS, SpiCommand(spi).pack(), spi=spi)

    def read_arsn(self, spi: int) -> PendingCommand:
        return self.send(Procedure.READ_ARSN, SpiCommand(spi).pack(), spi=spi)

    # ------------------------------------------------------------------ monitoring & control
    def ping(self) -> PendingCommand:
        return self.send(Procedure.PING)

    def log_status(self) -> PendingCommand:
        return self.send(Procedure.LOG_STATUS)

    def dump_log(self) -> PendingCommand:
        return self.send(Procedure.DUMP_LOG)

    def erase_log(self) -> PendingCommand:
        return self.send(Procedure.ERASE_LOG)

    def self_test(self) -> PendingCommand:
        return self.send(Procedure.SELF_TEST)

    def reset_alarm(self) -> PendingCommand:
        return self.send(Procedure.ALARM_FLAG_RESET)

    # ------------------------------------------------------------------ QKD
    def qkd_rekey(self, qkd_key: QkdKey) -> PendingCommand:
        """Announce a QKD key (by UUID) to install as the next SDLS session key.

        The SDLS key ID comes from the persistent :class:`QkdKeyIdMap`; the ground keeps the
        material in :attr:`keys` (Pre-activation) for later key checks.
        """
        key_id = self.id_map.assign(qkd_key.key_id)
        if key_id not in self.keys:
            self.keys.install(key_id, qkd_key.material)
        kcv = key_check_value(qkd_key.material, GROUND_LABEL, key_id, qkd_key.key_id)
        cmd = QkdRekeyCommand(key_id, qkd_key.key_id, kcv)
        return self.send(Procedure.QKD_REKEY, cmd.pack(), command=cmd)

    def qkd_key_check(self, key_id: int) -> PendingCommand:
        cmd = QkdKeyCheckCommand(key_id, self._random(16))
        return self.send(Procedure.QKD_KEY_CHECK, cmd.pack(), command=cmd)

    def sync_key_states(self, states: Mapping[int, KeyState]) -> None:
        """Mirror the on-board key states (a Key Inventory result) onto the ground's copies,
        so a ground SA only uses a key once the board has it Active too."""
        for key_id, state in states.items():
            if key_id in self.keys and self.keys.state(key_id) is not state:
                self.keys.force_state(key_id, state)

    # ------------------------------------------------------------------ receiving
    def receive_packet(self, packet: bytes) -> PendingCommand:
        """Match a TM reply packet to its command (by sequence count) and decode it."""
        ep = unwrap_reply(packet, self.packet_config)
        cmd = self._pending.get(ep.sequence_count)
        if cmd is None:
            raise InvalidProcedure(f"no command pending with sequence count {ep.sequence_count}",
                                   field="sequence_count", offset=2)
        return self._complete(cmd, Pdu.unpack(ep.pdu))

    def receive_pdu(self, pdu: Pdu | bytes) -> PendingCommand:
        """Match a bare reply PDU to the oldest pending command of its procedure."""
        reply = Pdu.unpack(pdu) if isinstance(pdu, bytes | bytearray) else pdu
        procedure = reply.procedure
        for cmd in self._pending.values():
            if cmd.procedure is procedure:
                return self._complete(cmd, reply)
        raise InvalidProcedure(f"no {procedure.name} command is pending", field="tag", offset=0)

    def poll(self) -> list[PendingCommand]:
        """Time out every pending command past its deadline; returns those just timed out."""
        now = self.clock()
        late = [c for c in self._pending.values() if now >= c.deadline]
        for cmd in late:
            cmd.state = CommandState.TIMED_OUT
            cmd.error = f"no reply within {self.timeout} s"
            del self._pending[cmd.sequence_count]
        return late

    def _complete(self, cmd: PendingCommand, reply: Pdu) -> PendingCommand:
        if not reply.is_reply:
            raise InvalidProcedure("a command PDU arrived where a reply was expected",
                                   field="pdu_type", offset=0)
        if reply.procedure is not cmd.procedure:
            raise InvalidProcedure(f"{reply.procedure.name} reply for a {cmd.procedure.name} "
                                   f"command", field="tag", offset=0)
        result = self._decode(cmd, reply.data)  # InvalidProcedure leaves the command pending
        del self._pending[cmd.sequence_count]
        cmd.result = result
        cmd.state = CommandState.COMPLETED
        if cmd.procedure in (Procedure.KEY_VERIFICATION, Procedure.QKD_KEY_CHECK,
                             Procedure.QKD_REKEY):
            ok = result if isinstance(result, bool) else all(result.values())
            if not ok:
                cmd.state = CommandState.FAILED
                cmd.error = "the on-board key does not match the ground's"
        return cmd

    def _decode(self, cmd: PendingCommand, data: bytes) -> Any:
        p = cmd.procedure
        if p is Procedure.KEY_VERIFICATION:
            reply = KeyVerificationReply.unpack(data)
            return reply.check(cmd.context["command"], self.keys.material)
        if p is Procedure.KEY_INVENTORY:
            inv = KeyInventoryReply.unpack(data)
            first, last = cmd.context["first"], cmd.context["last"]
            if any(not first <= k <= last for k, _ in inv.entries):
                raise InvalidProcedure("inventory reply lists keys outside the asked range",
                                       field="key_id")
            return dict(inv.entries)
        if p in (Procedure.SA_STATUS, Procedure.READ_ARSN):
            status = (SaStatusReply if p is Procedure.SA_STATUS else ReadArsnReply).unpack(data)
            if status.spi != cmd.context["spi"]:
                raise InvalidProcedure(f"reply for SPI {status.spi}, asked {cmd.context['spi']}",
                                       field="spi")
            return status
        if p is Procedure.PING:
            if data:
                raise InvalidProcedure("a Ping reply carries no data", field="length")
            return None
        if p is Procedure.LOG_STATUS:
            return LogStatusReply.unpack(data)
        if p is Procedure.DUMP_LOG:
            return DumpLogReply.unpack(data)
        if p is Procedure.SELF_TEST:
            return SelfTestReply.unpack(data)
        if p is Procedure.QKD_REKEY:
            rk = QkdRekeyReply.unpack(data)
            sent: QkdRekeyCommand = cmd.context["command"]
            if rk.key_id != sent.key_id:
                raise InvalidProcedure("QKD Rekey reply names another key", field="key_id")
            material = self.keys.material(sent.key_id)
            expected = key_check_value(material, ONBOARD_LABEL, sent.key_id, sent.qkd_key_id)
            ok = hmac.compare_digest(expected, rk.kcv)
            if ok:
                self.confirmed_keys.add(sent.key_id)
            return ok
        if p is Procedure.QKD_KEY_CHECK:
            kc = QkdKeyCheckReply.unpack(data)
            sent_check: QkdKeyCheckCommand = cmd.context["command"]
            if kc.key_id != sent_check.key_id:
                raise InvalidProcedure("Key Check reply names another key", field="key_id")
            expected = check_response(self.keys.material(kc.key_id), kc.key_id,
                                      sent_check.challenge)
            ok = hmac.compare_digest(expected, kc.response)
            if ok:
                self.confirmed_keys.add(kc.key_id)
            else:
                self.confirmed_keys.discard(kc.key_id)
            return ok
        raise InvalidProcedure(f"{p.name} has no reply", field="tag")
