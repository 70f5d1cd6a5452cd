"""A QKD key as the key supply hands it around: an ID, secret octets and where it came from.

:class:`QkdKey` is the one value type shared by the ETSI GS QKD 014 client, the KME simulator,
the key buffer and the key derivation.  It is a leaf module (imports nothing of sdls_qkd but
``errors``) so every part of the key supply may import it.  The material never appears in
``repr`` or ``str``: a key that lands in a log shows its ID and size only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from uuid import UUID

from sdls_qkd.errors import UsageError

__all__ = ["QkdKey"]


@dataclass(frozen=True, slots=True)
class QkdKey:
    """One QKD key: a UUID key ID (ETSI GS QKD 014 ``key_ID``) and its secret octets.

    ``source`` names where the key came from (e.g. ``"etsi014:kme-ground"``, ``"preplaced"``,
    ``"test"``); ``created_at`` is wall-clock seconds since the epoch when the key entered this
    process (the key buffer measures age and TTL from it).
    """

    key_id: UUID
    material: bytes = field(repr=False)
    source: str = "unknown"
    created_at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if not isinstance(self.key_id, UUID):
            raise UsageError(f"key_id must be a uuid.UUID, got {type(self.key_id).__name__}")
        if not isinstance(self.material, bytes):
            raise UsageError(f"key material must be bytes, got {type(self.material).__name__}")
        if not self.material:
            raise UsageError("key material must not be empty")

    @property
    def size_bits(self) -> int:
        """Length of the material in bits (octets x 8)."""
        return len(self.material) * 8

    def __str__(self) -> str:
        return f"QkdKey {self.key_id} ({self.size_bits} bits from {self.source})"
