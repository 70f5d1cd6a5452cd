"""Bit arrays: the one validation every post-processing entry point applies to its input."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from sdls_qkd.errors import UsageError

__all__ = ["Bits", "as_bits"]

Bits = npt.NDArray[np.uint8]


def as_bits(name: str, values: npt.ArrayLike) -> Bits:
    """``values`` as a 1-D uint8 array of 0/1, or a :class:`UsageError` saying what is wrong."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise UsageError(f"{name} must be a 1-D bit array, got shape {arr.shape}")
    if arr.size and (arr.dtype.kind not in "biu" or int(arr.min()) < 0 or int(arr.max()) > 1):
        raise UsageError(f"{name} must hold only bits 0 and 1")
    return np.ascontiguousarray(arr, dtype=np.uint8)
