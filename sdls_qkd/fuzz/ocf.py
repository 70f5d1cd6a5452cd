"""Hypothesis strategies for OCF words (CLCW and SDLS FSR) and mutated OCF octets."""

from __future__ import annotations

from hypothesis import strategies as st

from sdls_qkd.framing.ocf import Clcw, CopInEffect, FrameSecurityReport, OcfWord
from sdls_qkd.fuzz.packets import mutated_bytes

__all__ = ["clcws", "frame_security_reports", "mutated_ocf_bytes", "ocf_words"]


@st.composite
def clcws(draw: st.DrawFn, *, spares: bool = True) -> Clcw:
    """Any CLCW; with ``spares`` the reserved bits take any value too (received words)."""
    return Clcw(
        vcid=draw(st.integers(0, 63)),
        report_value=draw(st.integers(0, 255)),
        status_field=draw(st.integers(0, 7)),
        cop_in_effect=draw(st.sampled_from(CopInEffect)),
        no_rf_available=draw(st.booleans()),
        no_bit_lock=draw(st.booleans()),
        lockout=draw(st.booleans()),
        wait=draw(st.booleans()),
        retransmit=draw(st.booleans()),
        farm_b_counter=draw(st.integers(0, 3)),
        reserved_spare_1=draw(st.integers(0, 3)) if spares else 0,
        reserved_spare_2=draw(st.integers(0, 1)) if spares else 0,
    )


@st.composite
def frame_security_reports(draw: st.DrawFn) -> FrameSecurityReport:
    """Any FSR."""
    return FrameSecurityReport(
        alarm_flag=draw(st.booleans()), bad_sn=draw(st.booleans()),
        bad_mac=draw(st.booleans()), bad_sa=draw(st.booleans()),
        spi=draw(st.integers(0, 0xFFFF)), last_sn_lsb=draw(st.integers(0, 255)))


def ocf_words() -> st.SearchStrategy[OcfWord]:
    """CLCWs and FSRs."""
    return st.one_of(clcws(), frame_security_reports())


@st.composite
def mutated_ocf_bytes(draw: st.DrawFn) -> bytes:
    """A packed OCF word, then truncated / extended / bit-flipped / random."""
    word = draw(ocf_words())
    return draw(mutated_bytes(word.pack(), header_length=4))
