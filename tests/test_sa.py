"""Security associations: state table, keys kept secret, schema round trip, counters."""

from __future__ import annotations

import itertools
import logging

import pytest

from sdls_qkd.errors import (
    CounterExhausted,
    IllegalTransition,
    InvalidConfiguration,
    UnsupportedAlgorithm,
)
from sdls_qkd.framing.channel import TcChannel, TmChannel, UslpChannel
from sdls_qkd.security.counters import CounterSource, MemoryCounter, counter_max
from sdls_qkd.security.engine import apply_security
from sdls_qkd.security.layout import make_sa
from sdls_qkd.security.sa import (
    SA_TRANSITIONS,
    Binding,
    KeyState,
    SaProcedure,
    SaState,
    SdlsKey,
    SecurityAssociation,
    ServiceType,
    binding_for,
)

SECRET = bytes.fromhex("f8052dfd9b6d6e831f1ec0dc9f433ea75dfd90387abba4acf6e3a1f0ceb0979f")
TM = TmChannel(scid=0x42, vcid=3, frame_length=64, has_fecf=True)


def make(**kw: object) -> SecurityAssociation:
    return make_sa(5, TM, key=SdlsKey(SECRET, key_id=7), **kw)  # type: ignore[arg-type]


PROCS = {
    SaProcedure.CREATE: lambda sa: sa.create(),
    SaProcedure.REKEY: lambda sa: sa.rekey(SdlsKey(SECRET)),
    SaProcedure.START: lambda sa: sa.start(),
    SaProcedure.STOP: lambda sa: sa.stop(),
    SaProcedure.EXPIRE: lambda sa: sa.expire(),
    SaProcedure.DELETE: lambda sa: sa.delete(),
}


@pytest.mark.parametrize(("state", "proc"), list(itertools.product(SaState, SaProcedure)))
def test_every_state_procedure_pair_follows_the_table(state: SaState, proc: SaProcedure) -> None:
    sa = make(state=state)
    if (state, proc) in SA_TRANSITIONS:
        PROCS[proc](sa)
        assert sa.state is SA_TRANSITIONS[(state, proc)]
    else:
        with pytest.raises(IllegalTransition) as exc:
            PROCS[proc](sa)
        assert sa.state is state
        assert exc.value.code == "InvalidSaState"


def test_table_is_the_sdls_life_cycle() -> None:
    """NONE -create-> UNKEYED -rekey-> KEYED -start-> OPERATIONAL, and back."""
    assert len(SA_TRANSITIONS) == 6
    sa = make(state=SaState.NONE)
    sa.create()
    sa.rekey(SdlsKey(SECRET), iv=9)
    sa.start([binding_for(TM)])
    assert sa.state is SaState.OPERATIONAL and sa.iv == (9).to_bytes(12, "big")
    sa.stop()
    sa.expire()
    assert sa.enc_key is None and sa.state is SaState.UNKEYED
    sa.delete()
    assert sa.state is SaState.NONE


def test_rekey_with_a_bad_key_keeps_the_old_one() -> None:
    sa = make(state=SaState.UNKEYED)
    old = sa.enc_key
    with pytest.raises(InvalidConfiguration):
        sa.rekey(SdlsKey(b"short"))
    assert sa.enc_key is old and sa.state is SaState.UNKEYED


def test_keys_never_in_repr_str_logs_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    sa = make()
    texts = [repr(sa), str(sa), repr(sa.enc_key), str(sa.enc_key), repr(sa.suite)]
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").info("sa %s key %r", sa, sa.enc_key)
    texts.append(caplog.text)
    try:
        make_sa(5, TM, key=SECRET[:31])
    except InvalidConfiguration as exc:
        texts.append(str(exc))
    else:  # pragma: no cover
        pytest.fail("a 31-octet key must be refused")
    for text in texts:
        assert SECRET.hex() not in text.lower()
        assert SECRET[:8].hex() not in text.lower()
        assert repr(SECRET)[2:20] not in text
    assert "256 bits" in repr(sa.enc_key)


def test_key_equality_is_constant_time_and_by_value() -> None:
    assert SdlsKey(SECRET) == SdlsKey(SECRET, key_id=9)
    assert SdlsKey(SECRET) != SdlsKey(bytes(32))
    with pytest.raises(InvalidConfiguration):
        SdlsKey(b"")


@pytest.mark.parametrize("kw", [
    dict(iv_length=33), dict(iv_length=12, transmitted_iv_length=13),
    dict(sn_length=17), dict(sn_length=2, transmitted_sn_length=3),
    dict(pad_length_field_length=3), dict(mac_length=65), dict(window=-1),
])
def test_field_lengths_are_checked(kw: dict[str, int]) -> None:
    with pytest.raises(InvalidConfiguration):
        SecurityAssociation(1, enc_key=SdlsKey(SECRET), **kw)  # type: ignore[arg-type]


def test_spi_range_and_algorithms() -> None:
    with pytest.raises(InvalidConfiguration):
        SecurityAssociation(70000, enc_key=SdlsKey(SECRET))
    with pytest.raises(UnsupportedAlgorithm):
        SecurityAssociation(1, cipher="DES", enc_key=SdlsKey(SECRET))
    with pytest.raises(InvalidConfiguration):  # GCM without IV
        SecurityAssociation(1, enc_key=SdlsKey(SECRET), iv_length=0)


def test_schema_round_trip() -> None:
    sa = make_sa(9, TM, key=SECRET, preset="cryptolib", iv=5, arsn=77, window=17)
    doc = sa.to_schema()
    again = SecurityAssociation.from_schema(doc, frame_type="TM", channel=TM)
    assert again.to_schema() == doc
    assert doc["iv_hex"] == (5).to_bytes(12, "big").hex() and doc["sn_hex"] == "0000004d"
    assert again.binds(binding_for(TM))


def test_from_schema_defaults_and_fill_mask() -> None:
    sa = SecurityAssociation.from_schema(
        {"spi": 3, "encrypt": True, "authenticate": True, "cipher": "AES-256-GCM",
         "key_hex": SECRET.hex(), "iv_length": 12, "mac_length": 16, "abm_fill": "ff",
         "window": 4}, frame_type="TM", channel=TM)
    assert sa.state is SaState.OPERATIONAL and sa.enc_key is not None
    assert sa.enc_key.state is KeyState.ACTIVE
    assert sa.abm == b"\xff" * 64
    assert sa.service is ServiceType.AUTHENTICATED_ENCRYPTION


@pytest.mark.parametrize("bad", [
    {"spi": "1"}, {"spi": 1, "key_hex": "zz"}, {"spi": 1, "state": "RUNNING"},
    {"spi": 1, "key_state": "LOST"}, {"spi": 1, "iv_length": 12, "iv_hex": "00"},
    {"spi": 1, "abm_fill": "ffff"},
])
def test_from_schema_rejects_malformed_objects(bad: dict[str, object]) -> None:
    with pytest.raises(InvalidConfiguration):
        SecurityAssociation.from_schema(bad, frame_type="TM", channel=TM)


def test_bindings_with_and_without_map_id() -> None:
    tc = TcChannel(scid=5, vcid=1, has_segment_header=True, map_id=3)
    uslp = UslpChannel(scid=5, vcid=1, map_id=2)
    assert binding_for(tc) == Binding("TC", 0, 5, 1, 3)
    assert binding_for(TcChannel(scid=5, vcid=1, map_id=3)).map_id is None
    assert binding_for(uslp) == Binding("USLP", 12, 5, 1, 2)
    sa = make_sa(1, tc, key=SECRET)
    assert sa.binds(Binding("TC", 0, 5, 1, 3)) and not sa.binds(Binding("TC", 0, 5, 1, 4))
    wide = SecurityAssociation(1, enc_key=SdlsKey(SECRET), bindings=[Binding("TC", 0, 5, 1)])
    assert wide.binds(Binding("TC", 0, 5, 1, 4))


# --------------------------------------------------------------------------- counters
def test_memory_counter_is_a_counter_source() -> None:
    c = MemoryCounter(2, 5)
    assert isinstance(c, CounterSource)
    assert c.next() == 5 and c.value == 5  # next() does not commit
    c.commit(6)
    assert c.value == 6
    with pytest.raises(CounterExhausted):
        MemoryCounter(2, 0xFFFF).next()
    with pytest.raises(CounterExhausted):
        c.commit(0x10000)
    assert counter_max(12) == (1 << 96) - 1


def frame64() -> bytes:
    frame = bytearray(64)
    frame[0:2] = ((0x42 << 4) | (3 << 1)).to_bytes(2, "big")
    return bytes(frame)


def test_iv_at_maximum_refuses_to_protect_and_never_wraps() -> None:
    top = counter_max(12)
    sa = make(iv=top)
    before = sa.snapshot()
    with pytest.raises(CounterExhausted):
        apply_security(frame64(), TM, sa)
    assert sa.snapshot() == before and sa.iv == b"\xff" * 12
    sa.iv = (top - 1).to_bytes(12, "big")
    out = apply_security(frame64(), TM, sa)  # the last usable IV
    assert out[8:20] == (top - 1).to_bytes(12, "big") and sa.iv == b"\xff" * 12
    with pytest.raises(CounterExhausted):
        apply_security(frame64(), TM, sa)


def test_arsn_at_maximum_refuses_to_protect() -> None:
    sa = make_sa(5, TM, key=SECRET, preset="cryptolib", arsn=counter_max(4))
    with pytest.raises(CounterExhausted):
        apply_security(frame64(), TM, sa)
    assert sa.arsn == b"\xff" * 4 and sa.iv == bytes(12)


class ReservingCounter:
    """A durable-store-like source: reserves blocks of 100 ahead (records what it persisted)."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.value = 0
        self.persisted: list[int] = []

    def next(self) -> int:
        if not self.persisted or self.value >= self.persisted[-1]:
            self.persisted.append(self.value + 100)
        return self.value

    def commit(self, value: int) -> None:
        self.value = value


def test_counter_seam_accepts_any_counter_source() -> None:
    counter = ReservingCounter(12)
    sa = SecurityAssociation(5, enc_key=SdlsKey(SECRET), iv_counter=counter,
                             bindings=[binding_for(TM)])
    for _ in range(3):
        apply_security(frame64(), TM, sa)
    assert counter.value == 3 and counter.persisted == [100]
    with pytest.raises(InvalidConfiguration):
        SecurityAssociation(5, enc_key=SdlsKey(SECRET), iv_counter=MemoryCounter(8))


def test_layout_is_fixed_after_construction_but_state_fields_move() -> None:
    sa = make()
    for name, value in (("mac_length", 8), ("abm", b""), ("iv_length", 16), ("spi", 6),
                        ("cipher", "AES-128-GCM")):
        with pytest.raises(InvalidConfiguration, match="fixed"):
            setattr(sa, name, value)
    sa.set_window(9)
    sa.bindings = [binding_for(TM)]  # type: ignore[assignment]
    assert sa.bindings == frozenset({binding_for(TM)}) and sa.window == 9
    with pytest.raises(InvalidConfiguration):
        sa.set_window(-1)


def test_repr_never_raises_even_for_an_unusable_schema_sa() -> None:
    sa = SecurityAssociation.from_schema(
        {"spi": 3, "encrypt": True, "authenticate": True, "cipher": "AES-256-CBC",
         "key_hex": SECRET.hex(), "iv_length": 16, "mac_length": 16}, frame_type="TM", channel=TM)
    assert "AES-256-CBC" in repr(sa) and SECRET.hex() not in repr(sa)
    with pytest.raises(InvalidConfiguration):  # CBC alone cannot authenticate: found on use
        sa.validate()
