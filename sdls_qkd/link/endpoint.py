"""Link ends: what an application holds.  Packets in, protected frames out, and back.

A link end composes the channels (managed parameters), the packet service, the SDLS engine, a
rekeyed :class:`~sdls_qkd.link.rekey.SaPair` per direction, the durable
:class:`~sdls_qkd.store.base.StateStore` and the QKD :class:`~sdls_qkd.keys.buffer.KeyBuffer`.

* :class:`GroundEnd` sends TC frames (uplink) and receives TM frames (downlink); its key buffer
  is the master (it chooses the QKD keys of both directions).
* :class:`SpaceEnd` sends TM frames and receives TC frames; its key buffer follows.

The API is small: :meth:`LinkEnd.send` (packets -> protected frames), :meth:`LinkEnd.receive`
(one frame -> :class:`FrameOutcome` list with the delivered packets), :meth:`LinkEnd.poll`
(timers; control frames to send), :meth:`LinkEnd.report`, :meth:`LinkEnd.sa_table`,
:meth:`LinkEnd.close`.  No sockets and no threads: the caller moves the frames.  Time comes from
the injected ``clock``.

Receivers may resequence (``reorder_depth`` > 0): SDLS anti-replay accepts a counter only
*above* the last accepted one, so a frame overtaken by a later one would be rejected.  The
resequencer holds up to ``reorder_depth`` frames and processes them in (epoch, IV) order read
from the clear security header; it only orders processing, every check stays with
``process_security`` (a forged header can at worst reorder frames that are then rejected).
"""

from __future__ import annotations

import heapq
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import ClassVar, Self
from uuid import UUID

from sdls_qkd.errors import (
    InvalidConfiguration,
    LinkError,
    SdlsQkdError,
    StateForeign,
    UsageError,
)
from sdls_qkd.framing.channel import TmChannel
from sdls_qkd.framing.packet_service import (
    PacketZoneReader,
    PacketZoneWriter,
    TcPacketSender,
    TcSegmentReassembler,
)
from sdls_qkd.framing.space_packet import PacketType, SpacePacket
from sdls_qkd.framing.tc import TcFrame, TcFrameType
from sdls_qkd.framing.tm import TmCodec
from sdls_qkd.keys.buffer import BufferEvent, KeyBuffer, KeyFetcher, Purpose
from sdls_qkd.keys.kdf import Direction, SessionContext, derive_session_key
from sdls_qkd.link.config import DirectionConfig, LinkConfig
from sdls_qkd.link.rekey import (
    Ack,
    Announce,
    LinkEvent,
    Nack,
    SaPair,
    SaShape,
    SlotState,
    parse_control,
)
from sdls_qkd.link.report import BufferLevel, LinkReport, NextRekey, SaReport, SaRow
from sdls_qkd.security.engine import apply_security, process_security
from sdls_qkd.security.fsr import FsrTracker
from sdls_qkd.security.layout import PRESETS
from sdls_qkd.store.base import StateStore
from sdls_qkd.store.memory import MemoryStore

__all__ = ["FrameOutcome", "SentFrame", "LinkEnd", "GroundEnd", "SpaceEnd", "open_store"]

_UNKNOWN_EPOCH = 1 << 40


@dataclass(frozen=True, slots=True)
class FrameOutcome:
    """What happened to one received frame."""

    frame: bytes
    spi: int | None
    epoch: int | None
    #: the accepted IV counter value (None when rejected)
    counter: int | None
    #: schema error code of a rejection (None when accepted)
    error: str | None
    packets: tuple[SpacePacket, ...] = ()
    #: neutral fingerprint of the key that accepted the frame (no secret)
    key_fingerprint: bytes | None = None

    @property
    def accepted(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class SentFrame:
    """What :attr:`LinkEnd.audit` is told about each frame as it is protected."""

    frame: bytes
    spi: int
    epoch: int
    #: neutral fingerprint of the key (the same at both ends; no secret)
    key_fingerprint: bytes
    #: the IV counter value used (None for an SA without IV)
    iv: int | None


def open_store(path: str, end_id: str) -> StateStore:
    """``":memory:"`` -> MemoryStore, else the SQLite file at ``path`` (created if missing)."""
    if path == ":memory:":
        return MemoryStore()
    from sdls_qkd.store.sqlite import SqliteStore

    return SqliteStore(path, end_id=end_id)


class _Resequencer:
    """Holds up to ``depth`` frames and releases them in (epoch, counter) order."""

    def __init__(self, depth: int, key: Callable[[bytes], tuple[int, int]]) -> None:
        self.depth = depth
        self.key = key
        self._heap: list[tuple[int, int, int, bytes]] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, frame: bytes) -> list[bytes]:
        if self.depth == 0:
            return [frame]
        epoch, counter = self.key(frame)
        heapq.heappush(self._heap, (epoch, counter, self._seq, frame))
        self._seq += 1
        out = []
        while len(self._heap) > self.depth:
            out.append(heapq.heappop(self._heap)[3])
        return out

    def drain(self) -> list[bytes]:
        out = [item[3] for item in sorted(self._heap)]
        self._heap.clear()
        return out


class LinkEnd:
    """Common machinery of both ends (use :class:`GroundEnd` or :class:`SpaceEnd`)."""

    role: ClassVar[str]
    master: ClassVar[bool]

    def __init__(self, config: LinkConfig, *, store: StateStore, buffer: KeyBuffer | None = None,
                 clock: Callable[[], float] = time.time, own_store: bool = False,
                 max_events: int = 1000) -> None:
        self.config = config
        self.store = store
        self.buffer = buffer
        self.clock = clock
        self._own_store = own_store
        self.events: deque[LinkEvent] = deque(maxlen=max_events)
        if buffer is not None:
            buffer.subscribe(self._buffer_event)
        layout = PRESETS[config.preset]
        self._sec_len = layout.security_header_length
        self._mac_len = layout.mac_length
        self._iv_len = layout.transmitted_iv_length
        up = SaShape(config.tc, layout, config.cipher, config.uplink.window,
                     config.counter_block)
        down = SaShape(config.tm, layout, config.cipher, config.downlink.window,
                       config.counter_block)
        up_role, down_role = ("sender", "receiver") if self.master else ("receiver", "sender")
        self.uplink = SaPair(direction=Direction.UPLINK, role=up_role, master=self.master,
                             spis=config.uplink.spis, shape=up, store=store, buffer=buffer,
                             policy=config.rekey, clock=clock, events=self.events)
        self.downlink = SaPair(direction=Direction.DOWNLINK, role=down_role, master=self.master,
                               spis=config.downlink.spis, shape=down, store=store,
                               buffer=buffer, policy=config.rekey, clock=clock,
                               events=self.events)
        self.tx = self.uplink if self.master else self.downlink
        self.rx = self.downlink if self.master else self.uplink
        self._start_pairs()
        self.fsr = FsrTracker()
        self.frames_sent = 0
        self.frames_received = 0
        self.frames_accepted = 0
        self.unknown_spi_rejects: Counter[str] = Counter()
        self.control_rejects = 0
        self.anomalies: Counter[str] = Counter()
        self._ctl_seq = 0
        rx_channel = self.rx.shape.channel
        self._rx_hdr = rx_channel.header_length
        self._reseq = _Resequencer(config.reorder_depth, self._order_key)
        self._last_arm_at: dict[Direction, float] = {}
        #: called with a :class:`SentFrame` for every frame protected (audit trails, tests)
        self.audit: Callable[[SentFrame], None] | None = None
        self._setup()

    def _setup(self) -> None:
        """Framing of the concrete end (called at the end of ``__init__``)."""

    # ------------------------------------------------------------------ construction
    @classmethod
    def open(cls, config: LinkConfig, *, fetcher: KeyFetcher | None = None,
             clock: Callable[[], float] = time.time, state: str | None = None) -> Self:
        """Open this end with its state file from the configuration (or ``state``)."""
        path = state if state is not None else (
            config.ground_state if cls.role == "ground" else config.space_state)
        store = open_store(path, f"{cls.role}/scid={config.scid}")
        try:
            buffer = KeyBuffer(store, fetcher, config.keys, clock=clock)
            return cls(config, store=store, buffer=buffer, clock=clock, own_store=True)
        except BaseException:
            store.close()
            raise

    def _start_pairs(self) -> None:
        blobs = self.store.load_sas()
        ours = {*self.config.uplink.spis, *self.config.downlink.spis}
        foreign = sorted(set(blobs) - ours)
        if foreign:
            raise StateForeign(f"the state store holds SAs {foreign} that this link "
                               f"configuration does not name (SPIs {sorted(ours)})")
        for pair, dcfg in ((self.uplink, self.config.uplink),
                           (self.downlink, self.config.downlink)):
            if not pair.restore(blobs):
                pair.initialise(*self._initial_key(pair, dcfg))

    def _initial_key(self, pair: SaPair, dcfg: DirectionConfig) -> tuple[bytes, UUID | None]:
        if dcfg.initial_key is not None:
            return dcfg.initial_key, None
        if self.buffer is None:
            raise InvalidConfiguration(f"{pair.name}: qkdKeyId needs a key buffer",
                                       field="qkdKeyId")
        assert dcfg.initial_qkd_key_id is not None
        res = self.buffer.reserve_ids([dcfg.initial_qkd_key_id], Purpose.REKEY)
        (key,) = self.buffer.commit(res)
        session = derive_session_key(
            key, SessionContext(pair.spis[0], pair.direction, 0, key.key_id), self.store,
            length=pair.shape.key_length, clock=self.clock)
        return session.material, key.key_id

    def _buffer_event(self, event: BufferEvent) -> None:
        self.events.append(LinkEvent(event.at, f"buffer-{event.kind.value}", "keys",
                                     f"{event.available} available {event.detail}".strip()))

    def close(self) -> None:
        """Release the state store (when this end opened it)."""
        if self._own_store:
            self.store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ sending
    def _check_user_packets(self, packets: Iterable[SpacePacket | bytes]) -> list[bytes]:
        out = []
        for packet in packets:
            raw = packet.pack() if isinstance(packet, SpacePacket) else bytes(packet)
            if len(raw) < 7:
                raise UsageError(f"a Space Packet has at least 7 octets, got {len(raw)}")
            if ((raw[0] & 7) << 8) | raw[1] == self.config.control_apid:
                raise UsageError(f"APID {self.config.control_apid} is reserved for the link's "
                                 "rekey control packets", field="apid")
            out.append(raw)
        return out

    def _control_packet(self, data: bytes) -> bytes:
        packet_type = PacketType.TC if self.master else PacketType.TM
        packet = SpacePacket.build(packet_type, self.config.control_apid, data,
                                   sequence_count=self._ctl_seq)
        self._ctl_seq = (self._ctl_seq + 1) % (1 << 14)
        return packet.pack()

    def send(self, packets: Iterable[SpacePacket | bytes]) -> list[bytes]:
        """Protect ``packets`` into frames (control packets due are sent first).

        Raises :class:`~sdls_qkd.errors.KeyBufferEmpty` when user traffic must stop (a rekey
        is due, no next key exists, depletion policy fail-closed); nothing is queued then, and
        :meth:`poll` keeps the rekey handshake going.  Admission is per call: the frames of an
        admitted batch all go out (only the hard invocation limit can stop one midway).
        """
        user = self._check_user_packets(packets)
        if user:
            self.tx.sender_sa()  # switches when due; raises when blocked
        return self._send(self._control_out(), user, flush=False)

    def poll(self) -> list[bytes]:
        """Run timers (grace windows, announcements); returns control frames to send."""
        self.rx.tick()
        self.tx.tick()
        control = self._control_out()
        if not control:
            return []
        return self._send(control, [], flush=True)

    def _send(self, control: list[bytes], user: list[bytes], *, flush: bool) -> list[bytes]:
        raise NotImplementedError

    def _protect(self, raw: bytes) -> bytes:
        """Protect one frame (switching first when due); only the hard limit raises here."""
        channel = self.tx.shape.channel
        sa = self.tx.sender_sa(control_only=True)
        iv = sa.iv_counter.value if sa.iv_length else None
        frame = apply_security(raw, channel, sa)
        self.tx.sent(sa, len(frame))
        self.frames_sent += 1
        if self.audit is not None:
            slot = self.tx.slots[sa.spi]
            self.audit(SentFrame(frame, sa.spi, slot.epoch, slot.fingerprint, iv))
        return frame

    def _control_out(self) -> list[bytes]:
        raise NotImplementedError

    # ------------------------------------------------------------------ receiving
    def _order_key(self, frame: bytes) -> tuple[int, int]:
        off = self._rx_hdr
        if len(frame) < off + 2 + self._iv_len:
            return -1, 0
        spi = (frame[off] << 8) | frame[off + 1]
        epoch = self.rx.epoch_of(spi)
        if epoch is None:
            return _UNKNOWN_EPOCH, 0
        return epoch, int.from_bytes(frame[off + 2:off + 2 + self._iv_len], "big")

    def receive(self, frame: bytes) -> list[FrameOutcome]:
        """Take one received frame; returns the outcomes of the frames processed now
        (with resequencing, earlier frames may come out, or none yet)."""
        out = [self._process(f) for f in self._reseq.push(bytes(frame))]
        self.rx.tick()
        return out

    def flush_receive(self) -> list[FrameOutcome]:
        """Process every frame the resequencer holds."""
        out = [self._process(f) for f in self._reseq.drain()]
        self.rx.tick()
        return out

    def _spi_of(self, frame: bytes) -> int | None:
        off = self._rx_hdr
        if len(frame) < off + 2:
            return None
        return (frame[off] << 8) | frame[off + 1]

    def _process(self, frame: bytes) -> FrameOutcome:
        self.frames_received += 1
        pair = self.rx
        channel = pair.shape.channel
        spi = self._spi_of(frame)
        tentative = pair.before_receive(spi)
        try:
            result = process_security(frame, channel, pair.sas())
        except LinkError as exc:
            pair.after_receive(tentative, spi, len(frame), exc)
            self.fsr.rejected(exc, spi)
            if spi is None or spi not in pair.slots:
                self.unknown_spi_rejects[exc.code] += 1
            epoch = pair.epoch_of(spi) if spi is not None else None
            return FrameOutcome(frame, spi, epoch, None, exc.code)
        except SdlsQkdError:
            if tentative is not None:
                tentative.sa.stop()
            raise  # state store or usage trouble: not the frame's fault
        assert result.spi is not None
        slot = pair.slots[result.spi]  # before delivery: a control packet may re-arm slots
        epoch, fingerprint = slot.epoch, slot.fingerprint
        pair.after_receive(tentative, result.spi, len(frame), None)
        self.fsr.accepted(result.spi, result.sn)
        self.frames_accepted += 1
        packets = self._deliver(frame, result.data, result)
        return FrameOutcome(frame, result.spi, epoch,
                            int.from_bytes(result.iv, "big") if result.iv else None, None,
                            tuple(packets), fingerprint)

    def _deliver(self, frame: bytes, data: bytes, result: object) -> list[SpacePacket]:
        raise NotImplementedError

    def _handle_packets(self, packets: list[SpacePacket]) -> list[SpacePacket]:
        """Take the link's control packets out; return the user's."""
        user = []
        for packet in packets:
            if packet.apid != self.config.control_apid:
                user.append(packet)
                continue
            try:
                self._on_control(parse_control(packet.data))
            except SdlsQkdError:
                self.control_rejects += 1
        return user

    def _on_control(self, message: Announce | Ack | Nack) -> None:
        raise NotImplementedError

    def pair_for(self, direction: Direction) -> SaPair:
        return self.uplink if direction is Direction.UPLINK else self.downlink

    # ------------------------------------------------------------------ reporting
    def sa_table(self) -> tuple[SaRow, ...]:
        """Both directions' SAs as the two ends should agree on them."""
        rows = []
        for pair in (self.uplink, self.downlink):
            for spi in sorted(pair.slots):
                slot = pair.slots[spi]
                rows.append(SaRow(pair.name, spi, slot.epoch, slot.state.value,
                                  slot.sa.state.name,
                                  str(slot.qkd_key_id) if slot.qkd_key_id else None,
                                  "" if slot.state is SlotState.IDLE
                                  else slot.fingerprint.hex()))
        return tuple(rows)

    def report(self) -> LinkReport:
        sas = []
        for pair in (self.uplink, self.downlink):
            sender = pair.role == "sender"
            for (spi, epoch), stats in sorted(pair.past.items()):
                sas.append(SaReport(pair.name, pair.role, spi, epoch, "retired", "UNKEYED", None,
                                    stats.frames, stats.octets, dict(stats.rejects)))
            for spi in sorted(pair.slots):
                slot = pair.slots[spi]
                if slot.state is SlotState.IDLE:
                    continue
                usage = pair.usage(slot) if sender else None
                sas.append(SaReport(
                    pair.name, pair.role, spi, slot.epoch, slot.state.value, slot.sa.state.name,
                    str(slot.qkd_key_id) if slot.qkd_key_id else None, slot.stats.frames,
                    slot.stats.octets, dict(slot.stats.rejects),
                    usage.invocations if usage is not None else None,
                    pair.policy.max_invocations if sender else None, slot.extensions))
        cur = self.tx.current
        armed = self.tx.slot_in(SlotState.ARMED)
        nxt = NextRekey(self.tx.name, armed.epoch if armed else None,
                        bool(armed and armed.acked),
                        self.tx.policy.remaining(self.tx.usage(cur), cur.extensions),
                        self.tx.blocked)
        level = None
        if self.buffer is not None:
            st = self.buffer.status()
            cfg = self.buffer.config
            level = BufferLevel(st.available, st.reserved, st.released, st.destroyed,
                                st.preplaced_available, cfg.low_watermark, cfg.high_watermark,
                                cfg.depletion.value, self.buffer.rate_per_s())
        return LinkReport(self.role, self.frames_sent, self.frames_received,
                          self.frames_accepted, tuple(sas), (nxt,), level,
                          dict(self.unknown_spi_rejects), self.control_rejects,
                          tuple(self.events))


def _tm_zone_length_of(end: LinkEnd, tm: TmChannel) -> int:
    """Octets of a TM frame's packet zone once the SDLS header and trailer take their share."""
    zone = tm.data_field_length - end._sec_len - end._mac_len
    if zone < 8:
        raise InvalidConfiguration(f"TM frames of {tm.frame_length} octets leave no room "
                                   "for packets after the SDLS header and trailer")
    return zone


class GroundEnd(LinkEnd):
    """Ground: TC uplink sender, TM downlink receiver, key-buffer master."""

    role = "ground"
    master = True

    def _setup(self) -> None:
        config = self.config
        tc = config.tc
        self._tc_sender = TcPacketSender(tc, frame_type=TcFrameType.BD)
        self._tc_sender.max_data -= self._sec_len + self._mac_len
        if self._tc_sender.max_data < 8:
            raise InvalidConfiguration(f"TC frames of {tc.max_frame_length} octets leave no room "
                                       "for packets after the SDLS header and trailer")
        tm = config.tm
        self._zone_len = _tm_zone_length_of(self, tm)
        self._tm_reader = PacketZoneReader(self._zone_len, count_modulus=256)

    def _control_out(self) -> list[bytes]:
        out = []
        policy = self.config.rekey
        now = self.clock()
        for pair in (self.uplink, self.downlink):
            armed = pair.slot_in(SlotState.ARMED)
            if armed is not None:
                if not armed.acked:
                    out += [self._control_packet(a.pack())
                            for a in pair.due_announcements(self.frames_sent)]
                continue
            if pair.slot_in(SlotState.IDLE) is None:
                continue
            last_at = self._last_arm_at.get(pair.direction, -float("inf"))
            # retry after N frames or seconds, and at every call while traffic is blocked
            if self.frames_sent - pair.last_arm_attempt >= policy.announce_every_frames or (
                    policy.announce_every_seconds is not None
                    and now - last_at >= policy.announce_every_seconds) or \
                    self.tx.blocked is not None:
                self._last_arm_at[pair.direction] = now
                pair.arm(self.frames_sent)
                out += [self._control_packet(a.pack())
                        for a in pair.due_announcements(self.frames_sent)]
        return out

    def _send(self, control: list[bytes], user: list[bytes], *, flush: bool) -> list[bytes]:
        out: list[bytes] = []
        channel = self.config.tc
        for raw in control + user:  # admitted in send()
            for tcf in self._tc_sender.frames_for(raw):
                out.append(self._protect(tcf.pack(channel)))
        return out

    def _deliver(self, frame: bytes, data: bytes, result: object) -> list[SpacePacket]:
        fhp = ((frame[4] << 8) | frame[5]) & 0x7FF
        try:
            zone = self._tm_reader.push(data, fhp, frame[3])  # VC frame count
        except SdlsQkdError as exc:
            self.anomalies[exc.code] += 1
            return []
        for anomaly in zone.anomalies:
            self.anomalies[anomaly.kind.value] += 1
        return self._handle_packets(zone.packets)

    def _on_control(self, message: Announce | Ack | Nack) -> None:
        if isinstance(message, Ack):
            self.pair_for(message.direction).on_ack(message)
        elif isinstance(message, Nack):
            self.pair_for(message.direction).on_nack(message)
        else:
            self.control_rejects += 1  # announcements flow from ground to space only


class SpaceEnd(LinkEnd):
    """Space: TM downlink sender, TC uplink receiver, key-buffer follower."""

    role = "space"
    master = False

    def _setup(self) -> None:
        config = self.config
        tm = config.tm
        self._zone_len = _tm_zone_length_of(self, tm)
        self._writer = PacketZoneWriter(self._zone_len, packet_type=PacketType.TM)
        self._codec = TmCodec(tm)
        self._vc_count = 0
        self._mc_count = 0
        self._replies: list[bytes] = []
        self._tc_reassembler = TcSegmentReassembler(config.tc)
        self._head = bytes(self._sec_len)
        self._tail = bytes(self._mac_len)

    def _control_out(self) -> list[bytes]:
        out, self._replies = self._replies, []
        return out

    def _send(self, control: list[bytes], user: list[bytes], *, flush: bool) -> list[bytes]:
        writer = self._writer
        for raw in control + user:  # admitted in send()
            writer.put(raw)
        out = []
        while writer.has_zone() or (flush and writer.pending):
            zone = writer.take_zone(fill=True)
            assert zone is not None
            out.append(self._protect(self._tm_frame(zone.data, zone.first_header_pointer)))
        return out

    def flush(self) -> list[bytes]:
        """Send what is queued, the last frame completed with idle data."""
        self.tx.sender_sa()
        return self._send(self._control_out(), [], flush=True)

    def _tm_frame(self, zone: bytes, fhp: int) -> bytes:
        ocf = self.fsr.report().pack() if self.config.tm.has_ocf else None
        raw = self._codec.build(self._head + zone + self._tail, mc_frame_count=self._mc_count,
                                vc_frame_count=self._vc_count, first_header_pointer=fhp, ocf=ocf)
        self._vc_count = (self._vc_count + 1) & 0xFF
        self._mc_count = (self._mc_count + 1) & 0xFF
        return raw

    def _deliver(self, frame: bytes, data: bytes, result: object) -> list[SpacePacket]:
        try:
            tcf = TcFrame.unpack(result.frame, self.config.tc)  # type: ignore[attr-defined]
            zone = self._tc_reassembler.push(tcf)
        except SdlsQkdError as exc:
            self.anomalies[exc.code] += 1
            return []
        for anomaly in zone.anomalies:
            self.anomalies[anomaly.kind.value] += 1
        return self._handle_packets(zone.packets)

    def _on_control(self, message: Announce | Ack | Nack) -> None:
        if not isinstance(message, Announce):
            self.control_rejects += 1
            return
        reply = self.pair_for(message.direction).on_announce(message)
        if reply is not None:
            self._replies.append(self._control_packet(reply.pack()))
