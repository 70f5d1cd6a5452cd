"""Fuzz: process_security (and apply_security) on random and mutated frames, with random SA
configurations and engine options, raise only sdls_qkd errors and change no SA on rejection."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdls_qkd.errors import SdlsQkdError
from sdls_qkd.fuzz.security import (
    channels,
    fit_channel,
    mutations,
    sa_configs,
    sa_pair,
    unprotected_frame,
)
from sdls_qkd.security.engine import (
    SUPPORTED_QUIRKS,
    EngineOptions,
    apply_security,
    process_security,
)
from sdls_qkd.security.fsr import FsrTracker

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

options = st.builds(lambda quirks: EngineOptions.from_quirks(sorted(quirks)),
                    st.sets(st.sampled_from(sorted(SUPPORTED_QUIRKS)))) | st.none()


def only_library_errors(fn: Any, *args: Any, **kw: Any) -> Any:
    try:
        return fn(*args, **kw)
    except SdlsQkdError as exc:
        assert exc.code, exc  # every error carries its schema name
        return exc


@FUZZ
@given(data=st.data())
def test_process_random_bytes(data: st.DataObject) -> None:
    channel = data.draw(channels())
    config = data.draw(sa_configs(channel))
    _, rx = sa_pair(config, channel)
    frame = data.draw(st.binary(max_size=300))
    before = rx.snapshot()
    result = only_library_errors(process_security, frame, channel, {rx.spi: rx},
                                 data.draw(options))
    if isinstance(result, SdlsQkdError):
        assert rx.snapshot() == before


@FUZZ
@given(data=st.data())
def test_process_mutated_frames(data: st.DataObject) -> None:
    channel = data.draw(channels())
    config = data.draw(sa_configs(channel))
    tx, rx = sa_pair(config, channel)
    channel = fit_channel(channel, tx)
    frame = unprotected_frame(channel, tx, data.draw(st.binary(min_size=1, max_size=80)))
    protected = apply_security(frame, channel, tx)
    mutated = data.draw(mutations(protected))
    fsr = FsrTracker()
    before = rx.snapshot()
    result = only_library_errors(process_security, mutated, channel, {rx.spi: rx},
                                 data.draw(options), fsr=fsr)
    if isinstance(result, SdlsQkdError):
        assert rx.snapshot() == before
        assert fsr.alarm_flag
    else:
        assert not (fsr.bad_mac or fsr.bad_sa or fsr.bad_sn)
    assert len(fsr.report().pack()) == 4


@FUZZ
@given(data=st.data())
def test_apply_random_and_mutated_inputs(data: st.DataObject) -> None:
    channel = data.draw(channels())
    config = data.draw(sa_configs(channel))
    tx, _ = sa_pair(config, channel)
    channel = fit_channel(channel, tx)
    frame = unprotected_frame(channel, tx, data.draw(st.binary(min_size=1, max_size=80)))
    candidate = data.draw(mutations(frame) | st.binary(max_size=200))
    before = tx.snapshot()
    result = only_library_errors(apply_security, candidate, channel, tx, data.draw(options))
    if isinstance(result, SdlsQkdError):
        assert tx.snapshot() == before


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_schema_objects_with_random_values_fail_cleanly(data: st.DataObject) -> None:
    from sdls_qkd.security.sa import SecurityAssociation

    channel = data.draw(channels())
    base = data.draw(sa_configs(channel))
    base.pop("suite_name")
    key = data.draw(st.sampled_from(sorted(base)))
    base[key] = data.draw(st.one_of(st.none(), st.integers(-5, 70000), st.text(max_size=5),
                                    st.booleans(), st.binary(max_size=4).map(bytes.hex)))
    sa = only_library_errors(SecurityAssociation.from_schema, base,
                             frame_type=channel.frame_type, channel=channel)
    if not isinstance(sa, SdlsQkdError):
        only_library_errors(process_security, bytes(64), channel, {sa.spi: sa})
