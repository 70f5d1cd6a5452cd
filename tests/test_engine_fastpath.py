"""The engine's fast paths give exactly what the reference path gives.

``options=None`` takes the fast path (per-plan closures); an equal but distinct
``EngineOptions()`` object takes the reference path.  For every frame kind and its optional
fields (segment header, OCF, FECF 16/32, insert zones, fixed/variable USLP, MAP bindings) and
both counter kinds (in-memory, and a CounterSource that is not a MemoryCounter), apply and
process must return the same bytes / raise the same error with the same message, and leave the
SAs in the same state.  Also: USLP frames with the Protocol Control Command flag bypass SDLS.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdls_qkd.errors import InvalidHeader, SdlsQkdError
from sdls_qkd.framing.channel import Channel, TcChannel, UslpChannel
from sdls_qkd.framing.crc import crc16_reference
from sdls_qkd.fuzz.security import channels, fix_fecf, mutations, unprotected_frame
from sdls_qkd.security.counters import MemoryCounter
from sdls_qkd.security.engine import EngineOptions, apply_security, process_security
from sdls_qkd.security.layout import make_sa
from sdls_qkd.security.sa import SecurityAssociation

KEY = bytes(range(32))
SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
REFERENCE = EngineOptions()  # equal to the defaults, but not them: the reference path


class _ProxyCounter:
    """A CounterSource that is not a MemoryCounter (the fast paths go through next/commit)."""

    def __init__(self, width: int, value: int = 0) -> None:
        self._inner = MemoryCounter(width, value)

    @property
    def width(self) -> int:
        return self._inner.width

    @property
    def value(self) -> int:
        return self._inner.value

    def next(self) -> int:
        return self._inner.next()

    def commit(self, value: int) -> None:
        self._inner.commit(value)


def _sa(channel: Channel, proxy: bool, iv: int = 0) -> SecurityAssociation:
    sa = make_sa(9, channel, key=KEY, iv=iv, window=4)
    if proxy:
        fresh = make_sa(9, channel, key=KEY, iv=iv, window=4)
        fresh._sealed = False
        fresh.iv_counter = _ProxyCounter(12, iv)
        fresh._sealed = True
        return fresh
    return sa


def _outcome(fn: Any, *args: Any) -> tuple[Any, ...]:
    try:
        out = fn(*args)
    except SdlsQkdError as exc:
        return ("error", type(exc).__name__, str(exc))
    if isinstance(out, bytes):
        return ("ok", out)
    return ("ok", out.spi, out.data, out.sn, out.iv, out.frame)


@SETTINGS
@given(data=st.data(), kind=st.sampled_from(("TC", "TM", "AOS", "USLP")),
       proxy=st.booleans())
def test_fast_and_reference_paths_agree(data: st.DataObject, kind: str, proxy: bool) -> None:
    channel = data.draw(channels(kind))
    if isinstance(channel, UslpChannel) and channel.truncated:
        channel = UslpChannel(scid=channel.scid, vcid=channel.vcid, map_id=channel.map_id,
                              frame_length=channel.frame_length, has_fecf=channel.has_fecf)
    fast_tx, ref_tx = _sa(channel, proxy, iv=1), _sa(channel, proxy, iv=1)
    frames = []
    for i in range(3):
        payload = data.draw(st.binary(min_size=1, max_size=40))
        raw = unprotected_frame(channel, fast_tx, payload, count=i)
        a = _outcome(apply_security, raw, channel, fast_tx)
        b = _outcome(apply_security, raw, channel, ref_tx, REFERENCE)
        assert a == b
        assert fast_tx.snapshot() == ref_tx.snapshot()
        if a[0] == "ok":
            frames.append(a[1])
    assert frames, "no frame protected"
    assert fast_tx._last_plan.tx_channel is channel  # the apply fast path was in use
    # apply inputs the fast path declines: the reference path decides for both
    raw = unprotected_frame(channel, fast_tx, b"x")
    for bad in (raw[:-1], raw + b"\0", b"\xff" + raw[1:], bytes(len(raw))):
        assert _outcome(apply_security, bad, channel, fast_tx) == \
            _outcome(apply_security, bad, channel, ref_tx, REFERENCE)
        assert fast_tx.snapshot() == ref_tx.snapshot()

    fast_rx, ref_rx = _sa(channel, proxy), _sa(channel, proxy)
    received = list(frames)
    received.insert(1, data.draw(mutations(frames[0])))  # damaged
    received.append(frames[-1])  # replayed
    received.append(fix_fecf(data.draw(mutations(frames[-1])), channel))  # damaged, FECF valid
    for frame in received:
        a = _outcome(process_security, frame, channel, {9: fast_rx})
        b = _outcome(process_security, frame, channel, {9: ref_rx}, REFERENCE)
        assert a == b
        assert fast_rx.snapshot() == ref_rx.snapshot()
    assert fast_rx._last_plan.rx_channel is channel  # the process fast path was in use


@pytest.mark.parametrize("fixed", [None, 120])
def test_uslp_protocol_control_command_frames_bypass_sdls(fixed: int | None) -> None:
    """PCC flag set: process passes the TFDF in clear (no SPI, no state change) like a TC COP-1
    control frame; apply refuses to secure it."""
    uslp = UslpChannel(scid=0x2A, vcid=2, map_id=1, frame_length=fixed, has_ocf=True,
                       vc_frame_count_length=1)
    sa = make_sa(9, uslp, key=KEY)
    tfdf = b"\x00COP-directive"
    n = fixed or (8 + len(tfdf) + 4 + 2)
    head = ((12 << 28) | (0x2A << 12) | (2 << 5) | (1 << 1)).to_bytes(4, "big")
    body = head + (n - 1).to_bytes(2, "big") + bytes([0x80 | 0x40 | 0x08 | 1, 0x05])
    body += tfdf.ljust(n - 8 - 6, b"\x00") + b"OCF!"
    frame = body + crc16_reference(body).to_bytes(2, "big")
    before = sa.snapshot()
    for opts in (None, REFERENCE):
        result = process_security(frame, uslp, {9: sa}, opts)
        assert result.spi is None and result.iv == b"" and result.frame == frame
        assert result.data == frame[8:n - 6]
        assert sa.snapshot() == before
        with pytest.raises(InvalidHeader, match="protocol control"):
            apply_security(frame, uslp, sa, opts)
        assert sa.snapshot() == before
    # the flag cleared: a user-data frame, secured as usual (the SPI would be read there)
    user = bytearray(frame)
    user[6] &= ~0x40
    with pytest.raises(SdlsQkdError) as exc:
        process_security(fix_fecf(bytes(user), uslp), uslp, {9: sa})
    assert exc.type is not InvalidHeader


def test_tc_map_binding_without_segment_header_is_left_to_the_reference_path() -> None:
    tc = TcChannel(scid=5, vcid=1, has_segment_header=False, map_id=None)
    sa = make_sa(9, tc, key=KEY, iv=1)
    raw = unprotected_frame(tc, sa, b"abc")
    assert process_security(apply_security(raw, tc, sa), tc, {9: make_sa(9, tc, key=KEY)}).data \
        == b"abc"
