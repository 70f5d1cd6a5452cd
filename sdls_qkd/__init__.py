"""sdls_qkd — CCSDS Space Data Link Security with keys from quantum key distribution.

The public API is re-exported here.  Layers (see README, Architecture): a sans-I/O core
(``framing``, ``security``, ``procedures``), the key supply (``keys``), state stores
(``store``), link ends (``link``) and edges (``cli``, ``fuzz``, ``vectors``).
"""

from __future__ import annotations

__version__ = "0.1.0"

from sdls_qkd import errors
from sdls_qkd.errors import SdlsQkdError
from sdls_qkd.framing.channel import AosChannel, TcChannel, TmChannel, UslpChannel
from sdls_qkd.framing.crc import crc16, crc32_uslp

__all__ = [
    "__version__",
    "errors",
    "SdlsQkdError",
    "TcChannel",
    "TmChannel",
    "AosChannel",
    "UslpChannel",
    "crc16",
    "crc32_uslp",
]
