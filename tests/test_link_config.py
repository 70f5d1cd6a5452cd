"""Link configuration from TOML, including the Yamcs-style ``encryption`` SA list."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from _link_child import FakeClock, tc_packet, write_config

from sdls_qkd.errors import InvalidConfiguration, UnknownKey
from sdls_qkd.keys.buffer import DepletionPolicy, KeyBuffer
from sdls_qkd.keys.material import QkdKey
from sdls_qkd.link.config import load_config
from sdls_qkd.link.endpoint import GroundEnd, SpaceEnd
from sdls_qkd.store.memory import MemoryStore


def test_toml_file_with_yamcs_style_sa_list(tmp_path: Path) -> None:
    path = write_config(tmp_path, counter_block=128, reorder_depth=6,
                        rekey={"after_frames": 500, "after_seconds": 600.0},
                        keys={"depletion": "extend", "max_extensions": 3},
                        ground_state="g/ground.sqlite")
    cfg = load_config(path)
    assert cfg.scid == 44 and cfg.tc.scid == 44 and cfg.tm.vcid == 1
    assert cfg.tc.has_segment_header and cfg.tm.frame_length == 1786
    assert cfg.uplink.spis == (1, 2) and cfg.downlink.spis == (3, 4)
    assert cfg.uplink.window == 256 and cfg.counter_block == 128 and cfg.reorder_depth == 6
    assert cfg.uplink.initial_key == (tmp_path / "uplink.key").read_bytes()
    assert cfg.rekey.after_frames == 500 and cfg.rekey.after_seconds == 600.0
    assert cfg.keys.depletion is DepletionPolicy.EXTEND and cfg.keys.max_extensions == 3
    assert cfg.ground_state == str(tmp_path / "g/ground.sqlite")
    assert cfg.space_state == ":memory:"
    assert cfg.uplink.initial_key is not None
    assert cfg.uplink.initial_key.hex() not in repr(cfg) and "initial_key" not in repr(cfg)


def _edit(path: Path, old: str, new: str) -> Path:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize(("old", "new", "field"), [
    ("verifySeqNum = true", "verifySeqNum = false", "verifySeqNum"),
    ("seqNumWindow = 512", "seqNumWindow = 100", "seqNumWindow"),
    ('link = "tm"', 'link = "aos"', "link"),
    ('link = "tm"', 'link = "tc"', "spi"),
    ("rekeySpi = 4", "rekeySpi = 1", "spi"),
    ("vcId = 1", "vcId = 5", "vcId"),
    ('keyFile = "downlink.key"', 'keyFile = "missing.key"', "keyFile"),
    ('keyFile = "downlink.key"', 'qkdKeyId = "not-a-uuid"', "qkdKeyId"),
    ("scid = 44", "scid = 44\nfoo = 1", "foo"),
    ("[rekey]", "[rekey]\nafter_frame = 3", "after_frame"),
    ("[keys]", '[keys]\ndepletion = "panic"', None),
    ("spi = 3", 'spi = "three"', "spi"),
])
def test_configuration_mistakes_are_named(tmp_path: Path, old: str, new: str,
                                          field: str | None) -> None:
    path = _edit(write_config(tmp_path), old, new)
    with pytest.raises(InvalidConfiguration) as info:
        load_config(path)
    if field is not None:
        assert info.value.field == field, str(info.value)


def test_bad_key_length_and_bad_toml(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    (tmp_path / "uplink.key").write_bytes(os.urandom(16))
    with pytest.raises(InvalidConfiguration, match="16 octets"):
        load_config(path)
    path.write_text("[link\nscid=")
    with pytest.raises(InvalidConfiguration, match="not valid TOML"):
        load_config(path)
    with pytest.raises(InvalidConfiguration, match="cannot read"):
        load_config(tmp_path / "nope.toml")


def test_initial_keys_from_the_qkd_buffers(tmp_path: Path) -> None:
    """qkdKeyId: both ends take the same QKD key from their own buffers and derive epoch 0."""
    up, down = uuid.uuid4(), uuid.uuid4()
    path = write_config(tmp_path)
    _edit(path, 'keyFile = "uplink.key"', f'qkdKeyId = "{up}"')
    _edit(path, 'keyFile = "downlink.key"', f'qkdKeyId = "{down}"')
    cfg = load_config(path)
    assert cfg.uplink.initial_key is None and cfg.uplink.initial_qkd_key_id == up
    keys = [QkdKey(up, os.urandom(32)), QkdKey(down, os.urandom(32))]
    clock = FakeClock()
    ends = []
    for cls in (GroundEnd, SpaceEnd):
        store = MemoryStore()
        buffer = KeyBuffer(store, None, cfg.keys, clock=clock)
        buffer.add_keys(keys)
        ends.append(cls(cfg, store=store, buffer=buffer, clock=clock))
    ground, space = ends
    assert ground.sa_table() == space.sa_table()
    assert ground.uplink.current.qkd_key_id == up
    frames = ground.send([tc_packet(1)])
    assert all(o.accepted for f in frames for o in space.receive(f))
    # an end whose buffer does not hold the initial key cannot start (fail closed)
    store = MemoryStore()
    with pytest.raises(UnknownKey):
        GroundEnd(cfg, store=store, buffer=KeyBuffer(store, None, cfg.keys, clock=clock))
    with pytest.raises(InvalidConfiguration, match="needs a key buffer"):
        GroundEnd(cfg, store=MemoryStore(), buffer=None)
