"""QKD key supply: key buffer, session-key derivation, ETSI GS QKD 014 client and KME simulator."""
