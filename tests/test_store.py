"""State stores: the contract (memory and SQLite alike), then what only a file can get wrong.

The SQLite tests use real files in a temporary directory: mode bits, WAL contents, secure
deletion, locking against a second process, and corrupt / truncated / foreign files.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdls_qkd.errors import (
    IllegalTransition,
    KeyAlreadyUsed,
    StateCorrupt,
    StateForeign,
    StateStoreError,
    UnknownKey,
    UsageError,
)
from sdls_qkd.store.base import KEY_TRANSITIONS, KeyState, NewKey, StateStore
from sdls_qkd.store.memory import MemoryStore
from sdls_qkd.store.sqlite import APPLICATION_ID, SCHEMA_VERSION, SqliteStore

REPO = Path(__file__).resolve().parents[1]


def new_keys(n: int, size: int = 32) -> list[NewKey]:
    return [NewKey(uuid.uuid4(), os.urandom(size), "test", 1000.0 + i) for i in range(n)]


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    s: StateStore = MemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "s.db")
    yield s
    s.close()


# =========================================================================== the contract
def test_stores_satisfy_the_protocol(tmp_path: Path) -> None:
    assert isinstance(MemoryStore(), StateStore)
    with SqliteStore(tmp_path / "p.db") as s:
        assert isinstance(s, StateStore)


def test_add_get_list(store: StateStore) -> None:
    keys = new_keys(3)
    store.add_keys(keys, at=5.0)
    rows = store.list_keys()
    assert [r.key_id for r in rows] == [k.key_id for k in keys]  # oldest first
    row = store.get_key(keys[1].key_id)
    assert row is not None
    assert row.state is KeyState.AVAILABLE and row.material == keys[1].material
    assert row.size_bits == 256 and row.changed_at == 5.0 and row.extensions == 0
    assert keys[1].material.hex() not in repr(row) and keys[1].material not in repr(row).encode()
    assert store.get_key(uuid.uuid4()) is None
    assert store.list_keys([KeyState.RELEASED]) == []


def test_list_and_count_filters(store: StateStore) -> None:
    qkd = new_keys(4)  # created_at 1000..1003
    pre = [NewKey(uuid.uuid4(), os.urandom(32), "preplaced", 10.0, preplaced=True)]
    store.add_keys(qkd + pre, at=0)
    store.transition([qkd[0].key_id], expect=KeyState.AVAILABLE, to=KeyState.DESTROYED, at=1)
    avail = [KeyState.AVAILABLE]
    assert store.count_keys() == 5 and store.count_keys(avail) == 4
    assert store.count_keys(avail, preplaced=False) == 3
    assert store.count_keys(avail, preplaced=True) == 1
    assert store.count_keys([]) == 0 and store.list_keys([]) == []
    assert [r.key_id for r in store.list_keys(avail, preplaced=False, limit=2)] == [
        qkd[1].key_id, qkd[2].key_id]
    assert [r.key_id for r in store.list_keys(avail, created_at_or_before=1002.0)] == [
        pre[0].key_id, qkd[1].key_id, qkd[2].key_id]
    assert store.list_keys(limit=0) == []


def test_an_id_is_never_accepted_twice(store: StateStore) -> None:
    keys = new_keys(2)
    store.add_keys(keys[:1], at=0)
    with pytest.raises(KeyAlreadyUsed):
        store.add_keys([keys[1], keys[0]], at=0)  # all or none
    assert store.get_key(keys[1].key_id) is None
    # also after it was destroyed: the tombstone keeps the ID
    store.transition([keys[0].key_id], expect=KeyState.AVAILABLE, to=KeyState.DESTROYED, at=1)
    with pytest.raises(KeyAlreadyUsed):
        store.add_keys([NewKey(keys[0].key_id, b"x" * 32, "kme", 2.0)], at=2)


@pytest.mark.parametrize("expect", list(KeyState))
@pytest.mark.parametrize("to", list(KeyState))
def test_transition_table_is_enforced(store: StateStore, expect: KeyState, to: KeyState) -> None:
    (key,) = new_keys(1)
    store.add_keys([key], at=0)
    res = uuid.uuid4()
    # walk the key into `expect` along legal transitions
    path = {
        KeyState.AVAILABLE: [],
        KeyState.RESERVED: [KeyState.RESERVED],
        KeyState.RELEASED: [KeyState.RESERVED, KeyState.RELEASED],
        KeyState.DESTROYED: [KeyState.DESTROYED],
    }[expect]
    cur = KeyState.AVAILABLE
    for nxt in path:
        store.transition([key.key_id], expect=cur, to=nxt, at=1, purpose="auth", reservation=res)
        cur = nxt
    before = store.get_key(key.key_id)
    if (expect, to) in KEY_TRANSITIONS:
        store.transition([key.key_id], expect=expect, to=to, at=2, purpose="auth", reservation=res)
        row = store.get_key(key.key_id)
        assert row is not None and row.state is to
        assert (row.material is None) == (to in (KeyState.RELEASED, KeyState.DESTROYED))
    else:
        with pytest.raises(IllegalTransition):
            store.transition([key.key_id], expect=expect, to=to, at=2, reservation=res)
        assert store.get_key(key.key_id) == before


def test_transition_checks_current_state_and_reservation(store: StateStore) -> None:
    a, b = new_keys(2)
    store.add_keys([a, b], at=0)
    r1 = uuid.uuid4()
    store.transition([a.key_id], expect=KeyState.AVAILABLE, to=KeyState.RESERVED, at=1,
                     purpose="rekey", reservation=r1)
    # b is AVAILABLE, not RESERVED: the whole call is refused, a stays reserved
    with pytest.raises(IllegalTransition, match="expected reserved"):
        store.transition([a.key_id, b.key_id], expect=KeyState.RESERVED, to=KeyState.AVAILABLE, at=2)
    row = store.get_key(a.key_id)
    assert row is not None and row.state is KeyState.RESERVED and row.purpose == "rekey"
    assert row.reservation == r1
    with pytest.raises(IllegalTransition, match="another reservation"):
        store.release([a.key_id], reservation=uuid.uuid4(), at=2)
    with pytest.raises(UnknownKey):
        store.transition([uuid.uuid4()], expect=KeyState.AVAILABLE, to=KeyState.RESERVED, at=2)
    with pytest.raises(UsageError):
        store.transition([b.key_id, b.key_id], expect=KeyState.AVAILABLE, to=KeyState.RESERVED, at=2)


def test_release_hands_out_material_once(store: StateStore) -> None:
    keys = new_keys(2)
    store.add_keys(keys, at=0)
    res = uuid.uuid4()
    ids = [k.key_id for k in keys]
    store.transition(ids, expect=KeyState.AVAILABLE, to=KeyState.RESERVED, at=1, purpose="otp",
                     reservation=res)
    assert store.release(ids, reservation=res, at=2) == [k.material for k in keys]
    for key_id in ids:
        row = store.get_key(key_id)
        assert row is not None and row.state is KeyState.RELEASED and row.material is None
    with pytest.raises(IllegalTransition):
        store.release(ids, reservation=res, at=3)


def test_extensions_count_up_to_the_cap(store: StateStore) -> None:
    (key,) = new_keys(1)
    store.add_keys([key], at=0)
    with pytest.raises(IllegalTransition):
        store.add_extension(key.key_id, cap=2, at=1)  # not in use yet
    res = uuid.uuid4()
    store.transition([key.key_id], expect=KeyState.AVAILABLE, to=KeyState.RESERVED, at=1,
                     reservation=res)
    store.release([key.key_id], reservation=res, at=1)
    assert store.add_extension(key.key_id, cap=2, at=2) == 1
    assert store.add_extension(key.key_id, cap=2, at=3) == 2
    assert store.add_extension(key.key_id, cap=2, at=4) is None
    row = store.get_key(key.key_id)
    assert row is not None and row.extensions == 2
    with pytest.raises(UnknownKey):
        store.add_extension(uuid.uuid4(), cap=2, at=4)


def test_bindings(store: StateStore) -> None:
    kid = uuid.uuid4()
    assert store.binding(kid) is None
    store.bind(kid, b"ctx-1", at=0)
    with pytest.raises(KeyAlreadyUsed):
        store.bind(kid, b"ctx-2", at=1)
    assert store.binding(kid) == b"ctx-1"


def test_counters_are_monotonic_and_unbounded(store: StateStore) -> None:
    assert store.load_counter("iv/tc/spi=1") is None
    assert store.reserve_counter_block("iv/tc/spi=1", 1000) == 0
    assert store.reserve_counter_block("iv/tc/spi=1", 2000) == 1000
    assert store.reserve_counter_block("iv/tc/spi=1", 2000) == 2000  # idempotent
    with pytest.raises(UsageError, match="never moves backwards"):
        store.reserve_counter_block("iv/tc/spi=1", 1999)
    assert store.load_counter("iv/tc/spi=1") == 2000
    big = (1 << 96) - 1  # a full 96-bit GCM IV counter
    store.reserve_counter_block("iv/tm/spi=2", big)
    assert store.load_counter("iv/tm/spi=2") == big
    for bad in ("", "x" * 201, "tab\tname"):
        with pytest.raises(UsageError):
            store.reserve_counter_block(bad, 1)
    with pytest.raises(UsageError):
        store.reserve_counter_block("neg", -1)


def test_sa_table(store: StateStore) -> None:
    store.save_sa(1, b"sa-one")
    store.save_sa(0xFFFF, b"sa-max")
    store.save_sa(1, b"sa-one-v2")
    assert store.load_sas() == {1: b"sa-one-v2", 0xFFFF: b"sa-max"}
    store.delete_sa(1)
    store.delete_sa(1)
    assert store.load_sas() == {0xFFFF: b"sa-max"}
    for bad in (-1, 0x10000):
        with pytest.raises(UsageError):
            store.save_sa(bad, b"x")


def test_closed_store_refuses_use(tmp_path: Path) -> None:
    for s in (MemoryStore(), SqliteStore(tmp_path / "c.db")):
        s.close()
        with pytest.raises(UsageError, match="closed"):
            s.list_keys()


# =========================================================================== SQLite: durability
def test_everything_survives_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    keys = new_keys(3)
    res = uuid.uuid4()
    with SqliteStore(path, end_id="ground/scid=44") as s:
        s.add_keys(keys, at=1.5)
        s.transition([keys[0].key_id], expect=KeyState.AVAILABLE, to=KeyState.RESERVED, at=2,
                     purpose="auth", reservation=res)
        s.transition([keys[1].key_id], expect=KeyState.AVAILABLE, to=KeyState.DESTROYED, at=3,
                     note="expired")
        s.bind(keys[2].key_id, b"context", at=4)
        s.reserve_counter_block("arsn/rx/spi=3", 77)
        s.save_sa(3, b"\x00\x01sa")
        rows = s.list_keys()
    with SqliteStore(path, end_id="ground/scid=44", create=False) as s:
        assert s.list_keys() == rows
        row = s.get_key(keys[0].key_id)
        assert row is not None and row.reservation == res and row.purpose == "auth"
        row = s.get_key(keys[1].key_id)
        assert row is not None and row.note == "expired" and row.material is None
        assert s.binding(keys[2].key_id) == b"context"
        assert s.load_counter("arsn/rx/spi=3") == 77
        assert s.load_sas() == {3: b"\x00\x01sa"}


def test_durability_settings_are_in_force(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "state.db") as s:
        assert s.settings() == {
            "journal_mode": "wal",
            "synchronous": 2,  # FULL
            "secure_delete": 1,
            "locking_mode": "exclusive",
            "application_id": APPLICATION_ID,
            "user_version": SCHEMA_VERSION,
        }


def test_missing_file_with_create_false(tmp_path: Path) -> None:
    with pytest.raises(StateStoreError, match="does not exist"):
        SqliteStore(tmp_path / "absent.db", create=False)
    assert not (tmp_path / "absent.db").exists()


def _modes(directory: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in directory.iterdir()}


def test_file_mode_is_0600_and_creation_leaves_no_temp_files(tmp_path: Path) -> None:
    old = os.umask(0o022)  # a permissive umask must not matter
    try:
        with SqliteStore(tmp_path / "state.db") as s:
            s.add_keys(new_keys(4), at=0)
            modes = _modes(tmp_path)
            assert set(modes) == {"state.db", "state.db-wal"}, modes  # exclusive mode: no -shm
            assert all(m == 0o600 for m in modes.values()), {k: oct(v) for k, v in modes.items()}
    finally:
        os.umask(old)
    assert _modes(tmp_path) == {"state.db": 0o600}


def test_group_readable_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    SqliteStore(path).close()
    path.chmod(0o640)
    with pytest.raises(StateStoreError, match="0640"):
        SqliteStore(path)


def _file_bytes(directory: Path) -> bytes:
    """Everything SQLite keeps on disk for the store: main file, -wal, -shm, -journal."""
    return b"".join(p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file())


def test_destroyed_and_released_material_leaves_the_files(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    keys = new_keys(6)
    with SqliteStore(path) as s:
        s.add_keys(keys, at=0)
        # positive control: the search finds material that is still stored
        blob = _file_bytes(tmp_path)
        assert all(k.material in blob for k in keys)
        s.transition([keys[0].key_id], expect=KeyState.AVAILABLE, to=KeyState.DESTROYED, at=1)
        res = uuid.uuid4()
        s.transition([keys[1].key_id, keys[2].key_id], expect=KeyState.AVAILABLE,
                     to=KeyState.RESERVED, at=1, reservation=res)
        s.transition([keys[2].key_id], expect=KeyState.RESERVED, to=KeyState.DESTROYED, at=2,
                     reservation=res)
        s.transition([keys[1].key_id], expect=KeyState.RESERVED, to=KeyState.AVAILABLE, at=2,
                     reservation=res)
        res2 = uuid.uuid4()
        s.transition([keys[1].key_id], expect=KeyState.AVAILABLE, to=KeyState.RESERVED, at=3,
                     reservation=res2)
        assert s.release([keys[1].key_id], reservation=res2, at=3) == [keys[1].material]
        # while the store is open, and without closing it
        blob = _file_bytes(tmp_path)
        for gone in keys[:3]:
            assert gone.material not in blob, "wiped key material is still on disk"
        for kept in keys[3:]:
            assert kept.material in blob
        assert (tmp_path / "state.db-wal").stat().st_size == 0  # WAL truncated
    blob = _file_bytes(tmp_path)
    assert not any(k.material in blob for k in keys[:3])
    assert all(k.material in blob for k in keys[3:])


def test_replaced_sa_blob_leaves_the_files(tmp_path: Path) -> None:
    old_blob, new_blob = os.urandom(48), os.urandom(48)
    with SqliteStore(tmp_path / "state.db") as s:
        s.save_sa(4, old_blob)
        assert old_blob in _file_bytes(tmp_path)
        s.save_sa(4, new_blob)
        blob = _file_bytes(tmp_path)
        assert old_blob not in blob and new_blob in blob
        s.delete_sa(4)
        assert new_blob not in _file_bytes(tmp_path)


def test_second_process_cannot_open_the_store(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    code = (
        "import sys\n"
        "from sdls_qkd.store.sqlite import SqliteStore\n"
        "from sdls_qkd.errors import StateStoreError\n"
        "try:\n"
        "    SqliteStore(sys.argv[1])\n"
        "except StateStoreError as exc:\n"
        "    print(type(exc).__name__, exc)\n"
        "    sys.exit(3)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with SqliteStore(path):
        done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                              text=True, env=env, timeout=60)
        assert done.returncode == 3, done.stderr
        assert "in use by another process" in done.stdout
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                          env=env, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


# =========================================================================== SQLite: refusals
def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _refused(path: Path, error: type[Exception], match: str, **kwargs: str) -> None:
    """Opening ``path`` raises ``error`` and leaves the file exactly as it was (no reset)."""
    before = _digest(path)
    with pytest.raises(error, match=match):
        SqliteStore(path, **kwargs)  # type: ignore[arg-type]
    assert _digest(path) == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def _populated(path: Path) -> None:
    with SqliteStore(path) as s:
        s.add_keys(new_keys(200, size=64), at=0)
        s.save_sa(1, os.urandom(500))


@pytest.mark.parametrize("size", [0, 10, 99])
def test_truncated_header_is_corrupt(tmp_path: Path, size: int) -> None:
    path = tmp_path / "state.db"
    _populated(path)
    path.write_bytes(path.read_bytes()[:size])
    path.chmod(0o600)
    _refused(path, StateCorrupt, "truncated")


def test_truncated_body_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    _populated(path)
    data = path.read_bytes()
    assert len(data) >= 4 * 4096
    path.write_bytes(data[: len(data) // 2])
    _refused(path, StateCorrupt, "truncated")


def test_damaged_page_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    _populated(path)
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    # scribble over the second half of the file's last page but one (a b-tree page)
    start = len(data) - 2 * page
    data[start : start + page] = bytes([0xA5]) * page
    path.write_bytes(bytes(data))
    _refused(path, StateCorrupt, "corrupt|integrity|malformed")


def test_not_sqlite_is_foreign(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b'{"this": "is a JSON file, not a key store"}' + bytes(200))
    path.chmod(0o600)
    _refused(path, StateForeign, "not an SQLite database")


def _plain_sqlite(path: Path, setup: Callable[[sqlite3.Connection], object]) -> None:
    conn = sqlite3.connect(path)
    setup(conn)
    conn.commit()
    conn.close()
    path.chmod(0o600)


def test_another_applications_database_is_foreign(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    _plain_sqlite(path, lambda c: c.execute("CREATE TABLE contacts (name TEXT)"))
    _refused(path, StateForeign, "another application")


def test_another_schema_version_is_foreign(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    _populated(path)

    def bump(c: sqlite3.Connection) -> None:
        c.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")

    _plain_sqlite(path, bump)
    _refused(path, StateForeign, f"schema version {SCHEMA_VERSION + 1}")


def test_right_ids_but_wrong_tables_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "state.db"

    def fake(c: sqlite3.Connection) -> None:
        c.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        c.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        c.execute("CREATE TABLE keys (key_id TEXT)")
        c.execute("PRAGMA journal_mode = WAL")

    _plain_sqlite(path, fake)
    _refused(path, StateCorrupt, "expected tables")


def test_right_ids_but_rollback_journal_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    _populated(path)

    def unwal(c: sqlite3.Connection) -> None:
        c.execute("PRAGMA journal_mode = DELETE")

    _plain_sqlite(path, unwal)
    _refused(path, StateCorrupt, "not in WAL mode")


def test_another_link_end_is_foreign(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    SqliteStore(path, end_id="ground").close()
    _refused(path, StateForeign, "link end 'ground'", end_id="space")


def test_directory_is_foreign(tmp_path: Path) -> None:
    (tmp_path / "state.db").mkdir(mode=0o700)
    with pytest.raises(StateForeign, match="not a regular file"):
        SqliteStore(tmp_path / "state.db")


@settings(max_examples=25, deadline=None)
@given(cut=st.integers(0, 100_000), flips=st.lists(st.integers(0, 100_000), max_size=8))
def test_mangled_files_never_crash(tmp_path_factory: pytest.TempPathFactory, cut: int,
                                   flips: list[int]) -> None:
    """Random truncations and bit flips give a store or a StateStoreError, nothing else."""
    path = tmp_path_factory.mktemp("mangle") / "state.db"
    _populated(path)
    data = bytearray(path.read_bytes())
    data = data[: max(cut, 0)] if cut < len(data) else data
    for pos in flips:
        if data:
            data[pos % len(data)] ^= 0x10
    path.write_bytes(bytes(data))
    try:
        with SqliteStore(path) as s:
            s.list_keys()
            s.load_sas()
    except StateStoreError:
        pass
