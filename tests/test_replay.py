"""Anti-replay window and reconstruction of non-transmitted counter octets."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdls_qkd.errors import AntiReplayFailure
from sdls_qkd.security.replay import (
    check_window,
    reconstruct,
    reconstruct_static,
    sender_next_static,
)


def stepping(stored: int, received_ls: int, transmitted: int, window: int) -> int | None:
    """The readable definition: step the stored counter forward until the low octets match."""
    mask = (1 << (8 * transmitted)) - 1
    for k in range(1, window + 1):
        if (stored + k) & mask == received_ls:
            return stored + k
    return None


@settings(max_examples=300, deadline=None)
@given(full=st.integers(1, 6), data=st.data())
def test_reconstruct_equals_stepping_within_window(full: int, data: st.DataObject) -> None:
    transmitted = data.draw(st.integers(0, full))
    stored = data.draw(st.integers(0, (1 << (8 * full)) - 1))
    window = data.draw(st.integers(1, 300))
    received_ls = data.draw(st.integers(0, (1 << (8 * transmitted)) - 1))
    value = reconstruct(stored, received_ls, transmitted, full)
    expected = stepping(stored, received_ls, transmitted, window)
    in_window = stored < value <= stored + window and value < (1 << (8 * full))
    if expected is not None and expected < (1 << (8 * full)):
        assert value == expected
    else:
        assert not in_window


def test_reconstruct_examples() -> None:
    assert reconstruct(0x05FFFF, 0x0000, 2, 3) == 0x060000  # carry into non-transmitted octet
    assert reconstruct(0x05FFFD, 0xFFFE, 2, 3) == 0x05FFFE
    assert reconstruct(0x10, 0x10, 1, 2) == 0x110  # equal low octet: next cycle
    assert reconstruct(7, 0, 0, 4) == 8  # nothing transmitted: the next value
    assert reconstruct(7, 3, 4, 4) == 3  # everything transmitted: as received


def test_static_nontransmitted_octets_cryptolib() -> None:
    assert reconstruct_static(0x0000FFFF, 0x0000, 2, 4) == 0x00000000
    assert sender_next_static(0x0000FFFF, 2, 4) == 0x00000000
    assert sender_next_static(0x1200FFFF, 2, 4) == 0x12000000
    assert sender_next_static(5, 4, 4) == 6


@pytest.mark.parametrize(("stored", "received", "ok"), [
    (10, 11, True), (10, 15, True), (10, 16, False), (10, 10, False), (10, 9, False),
    (0, 0, False),
])
def test_window_bounds(stored: int, received: int, ok: bool) -> None:
    if ok:
        check_window("ARSN", stored, received, 5, 4)
    else:
        with pytest.raises(AntiReplayFailure) as exc:
            check_window("ARSN", stored, received, 5, 4)
        assert exc.value.code == "AntiReplayFailure"
        assert exc.value.field == "arsn"


def test_window_never_wraps_past_maximum() -> None:
    top = (1 << 16) - 1
    with pytest.raises(AntiReplayFailure, match="maximum"):
        check_window("ARSN", top, top + 1, 5, 2)
    with pytest.raises(AntiReplayFailure):
        check_window("IV", top, 0, 5, 2)  # Yamcs would accept the wrap; we do not


def test_zero_counter_first_frame_quirk_only_on_request() -> None:
    check_window("IV", 0, 0, 5, 12, accept_zero=True)
    with pytest.raises(AntiReplayFailure):
        check_window("IV", 0, 0, 5, 12)
    with pytest.raises(AntiReplayFailure):
        check_window("IV", 1, 1, 5, 12, accept_zero=True)


def test_modular_window_for_static_octets() -> None:
    check_window("IV", 0xFFFF, 0x0000, 5, 4, modular_octets=2)
    with pytest.raises(AntiReplayFailure):
        check_window("IV", 0x0000, 0xFFFF, 5, 4, modular_octets=2)
