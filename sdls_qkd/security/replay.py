"""Anti-replay: counter reconstruction and the sliding window (355.0-B-2 §4.2, SDLS SN window).

A receiver accepts a counter value ``r`` only if ``stored < r <= stored + window``, comparing full
counters as unsigned integers (no wrap: a counter at its maximum cannot advance).  When only the
``t`` least significant octets are transmitted, the full value is the smallest value above the
stored one whose low ``t`` octets equal the received ones (what stepping the stored counter
forward one by one until they match finds, done in O(1)).

Pure functions over ints: no state changes here.  The engine commits the accepted value only
after every check of the frame passed.
"""

from __future__ import annotations

from sdls_qkd.errors import AntiReplayFailure

__all__ = ["check_window", "reconstruct", "reconstruct_static", "sender_next_static"]


def reconstruct(stored: int, received_ls: int, transmitted: int, full: int) -> int:
    """The full counter a sender with ``full``-octet counters meant by its ``transmitted`` octets.

    With every octet transmitted this is the received value; with none it is ``stored + 1``.
    The result may exceed the counter's maximum: the window check rejects it then.
    """
    if transmitted >= full:
        return received_ls
    modulus = 1 << (8 * transmitted)
    candidate = (stored & ~(modulus - 1)) | received_ls
    if candidate <= stored:
        candidate += modulus
    return candidate


def reconstruct_static(stored: int, received_ls: int, transmitted: int, full: int) -> int:
    """CryptoLib with ``inc_nontx_iv`` off: the non-transmitted octets never change."""
    if transmitted >= full:
        return received_ls
    modulus = 1 << (8 * transmitted)
    return (stored & ~(modulus - 1)) | received_ls


def sender_next_static(value: int, transmitted: int, full: int) -> int:
    """CryptoLib with ``inc_nontx_iv`` off: only the transmitted octets count (and wrap)."""
    if transmitted >= full:
        return value + 1
    modulus = 1 << (8 * transmitted)
    return (value & ~(modulus - 1)) | (((value & (modulus - 1)) + 1) % modulus)


def check_window(name: str, stored: int, received: int, window: int, width: int, *,
                 accept_zero: bool = False, modular_octets: int = 0) -> None:
    """Raise AntiReplayFailure unless ``stored < received <= stored + window`` (and fits).

    ``accept_zero``: CryptoLib's first-frame rule (stored and received both zero pass).
    ``modular_octets``: compare only that many low octets modulo their range (CryptoLib with the
    non-transmitted octets static).
    """
    if accept_zero and stored == 0 and received == 0:
        return
    if modular_octets:
        modulus = 1 << (8 * modular_octets)
        delta = (received - stored) % modulus
        if 0 < delta <= window:
            return
        raise AntiReplayFailure(
            f"{name} low octets {received % modulus:#x} outside window "
            f"({stored % modulus:#x}, +{window}]", field=name.lower())
    if received > (1 << (8 * width)) - 1:
        raise AntiReplayFailure(f"{name} would pass its maximum ({width} octets): rekey needed",
                                field=name.lower())
    if not stored < received <= stored + window:
        if received <= stored:
            raise AntiReplayFailure(f"{name} {received:#x} replayed (stored {stored:#x})",
                                    field=name.lower())
        raise AntiReplayFailure(f"{name} {received:#x} beyond window ({stored:#x}, +{window}]",
                                field=name.lower())
