"""SDLS Extended Procedures (355.1-B-1): PDU codec, on-board manager, ground commander."""
