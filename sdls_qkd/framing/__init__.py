"""Framing: Space Packets, TC/TM/AOS/USLP transfer frames, OCF words, CRCs, packet service."""
