"""Satellite-pass decoy-state BB84 emulator: source, channel, sifting, Cascade, PA, finite key."""
