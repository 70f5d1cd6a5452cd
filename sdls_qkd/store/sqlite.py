"""SQLite state store: durable keys, bindings, counters and SAs of one link end in one file.

Safety properties (each has a test):

* The file (and SQLite's ``-wal``/``-journal`` siblings, which inherit its mode) is created
  with mode 0600, atomically: a fully initialised file is linked into place, so a crash never
  leaves a half-made store.  An existing file readable by group/other is refused.
* ``PRAGMA secure_delete=ON`` zeroes deleted content; WAL with ``synchronous=FULL`` makes each
  commit durable; after every commit that wipes key material a ``wal_checkpoint(TRUNCATE)``
  moves the zeroed pages into the main file and empties the WAL, so a released or destroyed
  key's octets are in neither file afterwards.
* ``locking_mode=EXCLUSIVE``: one process at a time (a second opener gets
  :class:`~sdls_qkd.errors.StateStoreError`), so two processes can never release one key.
* A file that is truncated or fails ``quick_check`` raises
  :class:`~sdls_qkd.errors.StateCorrupt`; one that is not SQLite, carries another
  ``application_id``, schema version or link-end identity raises
  :class:`~sdls_qkd.errors.StateForeign`.  Nothing is ever silently reset.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import struct
import threading
import uuid
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from uuid import UUID

from sdls_qkd.errors import (
    IllegalTransition,
    KeyAlreadyUsed,
    StateCorrupt,
    StateForeign,
    StateStoreError,
    UnknownKey,
    UsageError,
)
from sdls_qkd.store.base import (
    WIPING_STATES,
    KeyRecord,
    KeyState,
    NewKey,
    check_counter_name,
    check_spi,
    check_transition,
)

__all__ = ["SqliteStore", "APPLICATION_ID", "SCHEMA_VERSION"]

log = logging.getLogger(__name__)

#: ``PRAGMA application_id``: ASCII "SDQK"
APPLICATION_ID = 0x5344514B
#: ``PRAGMA user_version``: bumped on any schema change (no silent migration)
SCHEMA_VERSION = 1
_APP_NAME = "sdls_qkd"
_SQLITE_MAGIC = b"SQLite format 3\x00"
_HEADER_LEN = 100

_SCHEMA: tuple[str, ...] = (
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT",
    "CREATE TABLE keys ("
    " key_id TEXT PRIMARY KEY CHECK (length(key_id) = 36),"
    " state TEXT NOT NULL CHECK (state IN ('available', 'reserved', 'released', 'destroyed')),"
    " material BLOB CHECK ((material IS NULL) = (state IN ('released', 'destroyed'))),"
    " size_bits INTEGER NOT NULL CHECK (size_bits > 0),"
    " source TEXT NOT NULL,"
    " created_at REAL NOT NULL,"
    " preplaced INTEGER NOT NULL CHECK (preplaced IN (0, 1)),"
    " purpose TEXT,"
    " reservation TEXT,"
    " extensions INTEGER NOT NULL CHECK (extensions >= 0),"
    " changed_at REAL NOT NULL,"
    " note TEXT NOT NULL"
    ") STRICT",
    "CREATE INDEX keys_by_state ON keys (state, preplaced, created_at)",
    "CREATE TABLE bindings (key_id TEXT PRIMARY KEY, context BLOB NOT NULL,"
    " bound_at REAL NOT NULL) STRICT",
    "CREATE TABLE counters (name TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT",
    "CREATE TABLE sas (spi INTEGER PRIMARY KEY CHECK (spi BETWEEN 0 AND 65535),"
    " blob BLOB NOT NULL) STRICT",
)

_KEY_COLUMNS = (
    "key_id, state, size_bits, source, created_at, preplaced, purpose, reservation,"
    " extensions, changed_at, note, material"
)


def _check_header(path: Path) -> None:
    """Refuse a file that is not a whole SQLite database of this application, before opening."""
    st = path.stat()
    if not stat.S_ISREG(st.st_mode):
        raise StateForeign(f"state file {path} is not a regular file")
    if st.st_mode & 0o077:
        raise StateStoreError(
            f"state file {path} has mode {stat.S_IMODE(st.st_mode):04o}; "
            "it holds key material and must not be accessible to group or others (use 0600)"
        )
    with path.open("rb") as fh:
        header = fh.read(_HEADER_LEN)
    if len(header) < _HEADER_LEN and _SQLITE_MAGIC.startswith(header[: len(_SQLITE_MAGIC)]):
        raise StateCorrupt(
            f"state file {path} is truncated: {st.st_size} octets, an SQLite header needs {_HEADER_LEN}"
        )
    if header[:16] != _SQLITE_MAGIC:
        raise StateForeign(f"state file {path} is not an SQLite database")
    (app_id,) = struct.unpack_from(">I", header, 68)
    if app_id != APPLICATION_ID:
        raise StateForeign(
            f"state file {path} belongs to another application "
            f"(application_id 0x{app_id:08X}, expected 0x{APPLICATION_ID:08X})"
        )
    if header[18:20] != b"\x02\x02":
        # our files are always in WAL mode; switching modes would rewrite a file we refuse
        raise StateCorrupt(f"state file {path} is not in WAL mode (header octets 18-19)")
    (page_size,) = struct.unpack_from(">H", header, 16)
    page_size = 65536 if page_size == 1 else page_size
    change_counter, page_count = struct.unpack_from(">II", header, 24)
    (valid_for,) = struct.unpack_from(">I", header, 92)
    if valid_for == change_counter and st.st_size < page_size * page_count:
        raise StateCorrupt(
            f"state file {path} is truncated: {st.st_size} octets, its header says "
            f"{page_count} pages of {page_size} = {page_count * page_size}"
        )


class SqliteStore:
    """A :class:`~sdls_qkd.store.base.StateStore` in one SQLite file.

    ``end_id`` names the link end this file belongs to (e.g. ``"ground/scid=44"``); opening a
    file made for another end raises :class:`~sdls_qkd.errors.StateForeign`.  With
    ``create=False`` a missing file is an error instead of a new store.
    """

    def __init__(self, path: str | os.PathLike[str], *, end_id: str = "default", create: bool = True) -> None:
        if not end_id or not end_id.isprintable():
            raise UsageError(f"end_id must be a non-empty printable string, got {end_id!r}")
        self.path = Path(path)
        self.end_id = end_id
        self._lock = threading.RLock()
        self._purge_due = False
        if not self.path.exists():
            if not create:
                raise StateStoreError(f"state file {self.path} does not exist")
            self._create(self.path, end_id)
        _check_header(self.path)
        conn = self._connect(self.path)
        self._conn: sqlite3.Connection | None = conn
        try:
            self._validate(conn)
        except BaseException:
            conn.close()
            self._conn = None
            raise

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r}, end_id={self.end_id!r})"

    # ------------------------------------------------------------------ open / create
    @staticmethod
    def _pragmas(conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA secure_delete = ON")
        conn.execute("PRAGMA temp_store = MEMORY")
        conn.execute("PRAGMA trusted_schema = OFF")
        conn.execute("PRAGMA cell_size_check = ON")

    @classmethod
    def _create(cls, path: Path, end_id: str) -> None:
        """Build a complete store under a temporary name, then link it into place."""
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
        try:
            conn = sqlite3.connect(tmp, isolation_level=None)
            try:
                cls._pragmas(conn)
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                conn.execute("BEGIN")
                for sql in _SCHEMA:
                    conn.execute(sql)
                conn.executemany(
                    "INSERT INTO meta (name, value) VALUES (?, ?)",
                    [("application", _APP_NAME), ("schema", str(SCHEMA_VERSION)), ("end_id", end_id)],
                )
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                conn.execute("COMMIT")
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if mode != "wal":
                    raise StateStoreError(f"SQLite refused WAL mode for {path} (got {mode})")
            finally:
                conn.close()
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise StateStoreError(f"state file {path} appeared while being created") from None
        finally:
            tmp.unlink(missing_ok=True)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _connect(self, path: Path) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(path, timeout=0.5, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StateStoreError(f"cannot open state file {path}: {exc}") from None
        try:
            conn.execute("PRAGMA locking_mode = EXCLUSIVE")
            self._pragmas(conn)
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise StateCorrupt(f"state file {path} is not in WAL mode (got {mode})")
            conn.execute("PRAGMA synchronous = FULL")
            # take the exclusive lock now and keep it: one process per state file
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            conn.close()
            if "locked" in str(exc) or "busy" in str(exc):
                raise StateStoreError(f"state file {path} is in use by another process") from None
            raise StateCorrupt(f"state file {path} cannot be opened: {exc}") from None
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StateCorrupt(f"state file {path} is corrupt: {exc}") from None
        except BaseException:
            conn.close()
            raise
        return conn

    def _validate(self, conn: sqlite3.Connection) -> None:
        path = self.path
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if app_id != APPLICATION_ID:
                raise StateForeign(f"state file {path} belongs to another application")
            if version != SCHEMA_VERSION:
                raise StateForeign(
                    f"state file {path} has schema version {version}; this library reads {SCHEMA_VERSION}"
                )
            problems = [row[0] for row in conn.execute("PRAGMA quick_check")]
            if problems != ["ok"]:
                raise StateCorrupt(f"state file {path} fails its integrity check: {problems[0]}")
            found = {
                sql
                for (sql,) in conn.execute(
                    "SELECT sql FROM sqlite_schema WHERE type IN ('table', 'index')"
                    " AND sql IS NOT NULL"
                )
            }
            if found != set(_SCHEMA):
                raise StateCorrupt(f"state file {path} does not have the expected tables")
            meta = dict(conn.execute("SELECT name, value FROM meta"))
        except sqlite3.DatabaseError as exc:
            raise StateCorrupt(f"state file {path} is corrupt: {exc}") from None
        if meta.get("application") != _APP_NAME or meta.get("schema") != str(SCHEMA_VERSION):
            raise StateCorrupt(f"state file {path} has inconsistent meta data")
        if meta.get("end_id") != self.end_id:
            raise StateForeign(
                f"state file {path} belongs to link end {meta.get('end_id')!r}, not {self.end_id!r}"
            )

    # ------------------------------------------------------------------ plumbing
    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction under the lock; on any error it is rolled back."""
        with self._lock:
            if self._conn is None:
                raise UsageError("the state store is closed")
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.DatabaseError as exc:
                raise StateCorrupt(f"state file {self.path}: {exc}") from None
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                with suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.DatabaseError):
                    raise StateCorrupt(f"state file {self.path}: {exc}") from None
                raise
            if self._purge_due:
                self._purge()

    def _read(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            if self._conn is None:
                raise UsageError("the state store is closed")
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.DatabaseError as exc:
                raise StateCorrupt(f"state file {self.path}: {exc}") from None

    def _purge(self) -> None:
        """Empty the WAL into the main file so wiped material leaves the disk."""
        assert self._conn is not None
        try:
            busy, _, _ = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.DatabaseError as exc:
            raise StateCorrupt(f"state file {self.path}: checkpoint failed: {exc}") from None
        if busy:
            log.warning("WAL checkpoint of %s was blocked; will retry", self.path)
        else:
            self._purge_due = False

    def _record(self, row: tuple[Any, ...]) -> KeyRecord:
        try:
            (key_id, state, size_bits, source, created_at, preplaced, purpose, reservation,
             extensions, changed_at, note, material) = row
            return KeyRecord(
                key_id=UUID(str(key_id)),
                state=KeyState(state),
                size_bits=int(size_bits),
                source=str(source),
                created_at=float(created_at),
                preplaced=bool(preplaced),
                purpose=None if purpose is None else str(purpose),
                reservation=None if reservation is None else UUID(str(reservation)),
                extensions=int(extensions),
                changed_at=float(changed_at),
                note=str(note),
                material=None if material is None else bytes(material),
            )
        except (ValueError, TypeError) as exc:
            raise StateCorrupt(f"state file {self.path} holds a malformed key row: {exc}") from None

    def _rows_in(
        self,
        conn: sqlite3.Connection,
        key_ids: Sequence[UUID],
        expect: KeyState,
        reservation: UUID | None,
    ) -> list[KeyRecord]:
        if len(set(key_ids)) != len(key_ids):
            raise UsageError("the same key ID is listed twice")
        rows = []
        for key_id in key_ids:
            raw = conn.execute(
                f"SELECT {_KEY_COLUMNS} FROM keys WHERE key_id = ?", (str(key_id),)
            ).fetchone()
            if raw is None:
                raise UnknownKey(f"no key {key_id} in the store")
            row = self._record(raw)
            if row.state is not expect:
                raise IllegalTransition(f"key {key_id} is {row.state.value}, expected {expect.value}")
            if reservation is not None and expect is KeyState.RESERVED and row.reservation != reservation:
                raise IllegalTransition(f"key {key_id} is reserved by another reservation")
            rows.append(row)
        return rows

    def _move(
        self,
        conn: sqlite3.Connection,
        key_id: UUID,
        to: KeyState,
        at: float,
        purpose: str | None,
        reservation: UUID | None,
        note: str,
    ) -> None:
        if to is KeyState.RESERVED:
            conn.execute(
                "UPDATE keys SET state = ?, purpose = ?, reservation = ?, changed_at = ?, note = ?"
                " WHERE key_id = ?",
                (to.value, purpose, None if reservation is None else str(reservation), at, note,
                 str(key_id)),
            )
        elif to is KeyState.AVAILABLE:
            conn.execute(
                "UPDATE keys SET state = ?, purpose = NULL, reservation = NULL, changed_at = ?,"
                " note = ? WHERE key_id = ?",
                (to.value, at, note, str(key_id)),
            )
        else:
            assert to in WIPING_STATES
            conn.execute(
                "UPDATE keys SET state = ?, material = NULL, changed_at = ?, note = ?"
                " WHERE key_id = ?",
                (to.value, at, note, str(key_id)),
            )
            self._purge_due = True

    # ------------------------------------------------------------------ keys
    def add_keys(self, keys: Sequence[NewKey], *, at: float) -> None:
        for key in keys:
            if not key.material:
                raise UsageError(f"key {key.key_id} has no material")
        if len({k.key_id for k in keys}) != len(keys):
            raise KeyAlreadyUsed("the same key ID is listed twice")
        with self._tx() as conn:
            for key in keys:
                known = conn.execute(
                    "SELECT 1 FROM keys WHERE key_id = ?", (str(key.key_id),)
                ).fetchone()
                if known:
                    raise KeyAlreadyUsed(f"key {key.key_id} was stored before; IDs are never reused")
            conn.executemany(
                f"INSERT INTO keys ({_KEY_COLUMNS}) VALUES (?, 'available', ?, ?, ?, ?, NULL, NULL,"
                " 0, ?, '', ?)",
                [
                    (str(k.key_id), len(k.material) * 8, k.source, k.created_at, int(k.preplaced),
                     at, k.material)
                    for k in keys
                ],
            )

    def get_key(self, key_id: UUID) -> KeyRecord | None:
        rows = self._read(f"SELECT {_KEY_COLUMNS} FROM keys WHERE key_id = ?", (str(key_id),))
        return self._record(rows[0]) if rows else None

    @staticmethod
    def _where(
        states: Collection[KeyState] | None,
        preplaced: bool | None,
        created_at_or_before: float | None = None,
    ) -> tuple[str, list[object]]:
        clauses: list[str] = []
        params: list[object] = []
        if states is not None:
            values = [KeyState(s).value for s in states]
            clauses.append(f"state IN ({', '.join('?' * len(values)) or 'NULL'})")
            params += values
        if preplaced is not None:
            clauses.append("preplaced = ?")
            params.append(int(preplaced))
        if created_at_or_before is not None:
            clauses.append("created_at <= ?")
            params.append(float(created_at_or_before))
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    def list_keys(
        self,
        states: Collection[KeyState] | None = None,
        *,
        preplaced: bool | None = None,
        created_at_or_before: float | None = None,
        limit: int | None = None,
    ) -> list[KeyRecord]:
        where, params = self._where(states, preplaced, created_at_or_before)
        sql = f"SELECT {_KEY_COLUMNS} FROM keys{where} ORDER BY created_at, rowid"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(max(int(limit), 0))
        return [self._record(r) for r in self._read(sql, params)]

    def count_keys(
        self, states: Collection[KeyState] | None = None, *, preplaced: bool | None = None
    ) -> int:
        where, params = self._where(states, preplaced)
        return int(self._read(f"SELECT count(*) FROM keys{where}", params)[0][0])

    def transition(
        self,
        key_ids: Sequence[UUID],
        *,
        expect: KeyState,
        to: KeyState,
        at: float,
        purpose: str | None = None,
        reservation: UUID | None = None,
        note: str = "",
    ) -> None:
        check_transition(expect, to)
        with self._tx() as conn:
            for row in self._rows_in(conn, key_ids, expect, reservation):
                self._move(conn, row.key_id, to, at, purpose, reservation, note)

    def release(self, key_ids: Sequence[UUID], *, reservation: UUID, at: float) -> list[bytes]:
        out: list[bytes] = []
        with self._tx() as conn:
            for row in self._rows_in(conn, key_ids, KeyState.RESERVED, reservation):
                if row.material is None:
                    raise StateCorrupt(f"reserved key {row.key_id} has no material")
                out.append(row.material)
                self._move(conn, row.key_id, KeyState.RELEASED, at, row.purpose, reservation,
                           "committed")
        return out

    def add_extension(self, key_id: UUID, *, cap: int, at: float) -> int | None:
        with self._tx() as conn:
            raw = conn.execute(
                "SELECT state, extensions FROM keys WHERE key_id = ?", (str(key_id),)
            ).fetchone()
            if raw is None:
                raise UnknownKey(f"no key {key_id} in the store")
            state, extensions = raw
            if state != KeyState.RELEASED.value:
                raise IllegalTransition(
                    f"only a released key in use can be extended; key {key_id} is {state}"
                )
            if extensions >= cap:
                return None
            conn.execute(
                "UPDATE keys SET extensions = ?, changed_at = ? WHERE key_id = ?",
                (extensions + 1, at, str(key_id)),
            )
            return int(extensions) + 1

    # ------------------------------------------------------------------ bindings
    def bind(self, key_id: UUID, context: bytes, *, at: float) -> None:
        with self._tx() as conn:
            if conn.execute("SELECT 1 FROM bindings WHERE key_id = ?", (str(key_id),)).fetchone():
                raise KeyAlreadyUsed(f"key {key_id} is already bound to a derivation context")
            conn.execute(
                "INSERT INTO bindings (key_id, context, bound_at) VALUES (?, ?, ?)",
                (str(key_id), bytes(context), at),
            )

    def binding(self, key_id: UUID) -> bytes | None:
        rows = self._read("SELECT context FROM bindings WHERE key_id = ?", (str(key_id),))
        return bytes(rows[0][0]) if rows else None

    # ------------------------------------------------------------------ counters
    def _counter_value(self, name: str, raw: object) -> int:
        try:
            value = int(str(raw))
        except ValueError:
            raise StateCorrupt(f"state file {self.path}: counter {name} is not a number") from None
        if value < 0:
            raise StateCorrupt(f"state file {self.path}: counter {name} is negative")
        return value

    def reserve_counter_block(self, name: str, upto: int) -> int:
        check_counter_name(name)
        if not isinstance(upto, int) or upto < 0:
            raise UsageError(f"counter {name}: value must be a non-negative int, got {upto!r}")
        with self._tx() as conn:
            raw = conn.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
            previous = 0 if raw is None else self._counter_value(name, raw[0])
            if upto < previous:
                raise UsageError(
                    f"counter {name} never moves backwards: stored {previous}, asked {upto}"
                )
            conn.execute(
                "INSERT INTO counters (name, value) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (name, str(upto)),
            )
            return previous

    def load_counter(self, name: str) -> int | None:
        check_counter_name(name)
        rows = self._read("SELECT value FROM counters WHERE name = ?", (name,))
        return self._counter_value(name, rows[0][0]) if rows else None

    # ------------------------------------------------------------------ SA table
    def save_sa(self, spi: int, blob: bytes) -> None:
        check_spi(spi)
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO sas (spi, blob) VALUES (?, ?)"
                " ON CONFLICT (spi) DO UPDATE SET blob = excluded.blob",
                (spi, bytes(blob)),
            )
            self._purge_due = True  # an SA blob may hold a session key: do not leave old ones

    def load_sas(self) -> dict[int, bytes]:
        return {int(spi): bytes(blob) for spi, blob in self._read("SELECT spi, blob FROM sas")}

    def delete_sa(self, spi: int) -> None:
        check_spi(spi)
        with self._tx() as conn:
            conn.execute("DELETE FROM sas WHERE spi = ?", (spi,))
            self._purge_due = True

    def settings(self) -> dict[str, object]:
        """The SQLite settings in force (for diagnostics and tests)."""
        names = ("journal_mode", "synchronous", "secure_delete", "locking_mode", "application_id",
                 "user_version")
        return {name: self._read(f"PRAGMA {name}")[0][0] for name in names}

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        with self._lock:
            if self._conn is None:
                return
            try:
                self._purge()
            finally:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
