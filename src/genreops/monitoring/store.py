"""The monitoring store: every served prediction, every drift test and every model event, in SQL.

SQLite under ``GENREOPS_HOME`` by default, PostgreSQL by URL (SQLAlchemy 2.0 Core). Three
tables: ``predictions``, ``drift_tests``, ``model_events``; ``MonitoringStore`` creates and
queries them, ``MonitoringWriter`` is how the inference service writes to them.

Why the writer is built the way it is:

* Inference must never wait for the database, so ``submit_*`` only copies the row onto a
  bounded in-memory queue; one daemon thread per process drains it in batches (up to
  ``batch_size`` rows or ``flush_interval`` seconds). Batches keep transactions few: SQLite
  serialises writers across processes (several Triton instances write at once), and a
  PostgreSQL round trip costs far more than a row.
* The queue is bounded so a stuck database cannot eat an instance's memory. When it is full,
  the row is appended to the spool file instead: slower for that one call, never dropped.
* When the database cannot be reached the batch is appended to a per-process JSON-lines spool
  file (flushed and fsync'd: it outlives the process) and the thread backs off. Once the
  database answers again the thread replays every spool file of this database, its own and
  those left by processes that died, each under an exclusive ``flock`` (a live writer keeps
  its current file locked, so nobody replays a file that is still being written and no two
  processes replay one file at the same time), then deletes it.
* Every row gets a unique id when it is submitted (``request_id``/``test_id``/``event_id``) and
  inserts are "on conflict do nothing": a batch committed just before the connection dropped,
  or a file replayed twice, is stored once. Stored rows equal served rows.
* A row the database refuses for itself (wrong type, constraint) is not a reason to stop or to
  retry forever: the batch is retried row by row, the refused rows go to a separate
  ``rejected-*.jsonl`` file with the error, and they are counted.
* Rows still in memory when a process is killed outright (SIGKILL) are lost: the price of
  keeping disk and network I/O off the request path. ``close()`` (Triton's ``finalize``) and an
  atexit hook flush them on every orderly exit.
* The writer never creates the SQLite file's directory: a missing directory usually means an
  unmounted volume or a wrong setting, and a fresh database there would split the data. Rows
  are spooled until it appears (``MonitoringStore.ensure_schema()`` does create it).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import json
import logging
import math
import numbers
import os
import queue
import re
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, TypeAlias

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Dialect, Engine, make_url
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import TypeDecorator

from genreops.core.errors import GenreopsError

log = logging.getLogger(__name__)

PREDICTIONS = "predictions"
DRIFT_TESTS = "drift_tests"
MODEL_EVENTS = "model_events"
TABLE_NAMES = (PREDICTIONS, DRIFT_TESTS, MODEL_EVENTS)

SPOOL_GLOB = "spool-*.jsonl"
REJECTED_GLOB = "rejected-*.jsonl"

Entry: TypeAlias = "tuple[str, dict[str, Any]]"  # (table, row)
Refusal: TypeAlias = "tuple[str, Any, str]"  # (table, row or raw line, error)


class MonitoringError(GenreopsError):
    """The monitoring store cannot be used as asked (bad URL, unknown table, refused schema)."""


class MonitoringUnavailableError(MonitoringError):
    """The database cannot be reached or used right now; worth retrying later."""


class InvalidRowError(MonitoringError):
    """A row cannot be stored: a field has the wrong type, or the database refused it."""


# --------------------------------------------------------------------------------------------
# Column types


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on the way in and out, also on SQLite (which stores naive text)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment = to_utc(value)
        return moment.replace(tzinfo=None) if dialect.name == "sqlite" else moment

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class JSONText(TypeDecorator[Any]):
    """JSON kept as text (portable, readable in any SQL client); decoded when read."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None or isinstance(value, str):
            return value
        return dump_json(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        try:
            return json.loads(value)
        except ValueError:
            return value


_ID = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements INTEGER only

METADATA = MetaData()

PREDICTIONS_TABLE = Table(
    PREDICTIONS,
    METADATA,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("request_id", String(128), nullable=False),
    Column("served_at", UTCDateTime(timezone=True), nullable=False),
    Column("clip_id", String(512), nullable=False, info={"default": ""}),
    Column("genre", String(128), nullable=False),
    Column("confidence", Float),
    Column("probabilities", JSONText),
    Column("model_version", String(256), nullable=False),
    Column("model_role", String(32)),
    Column("drift_gate_open", Boolean),
    Column("ood", Boolean),  # out of the training distribution (genreops.monitoring.novelty)
    Column("ood_score", Float),  # distance to the training reference / the OOD threshold
    Column("latency_ms", Float),
    Column("repository_version", Integer),
    Index("uq_predictions_request_id", "request_id", unique=True),
    Index("ix_predictions_served_at", "served_at"),
    info={"key": "request_id", "time": "served_at"},
)

DRIFT_TESTS_TABLE = Table(
    DRIFT_TESTS,
    METADATA,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("test_id", String(128), nullable=False),
    Column("tested_at", UTCDateTime(timezone=True), nullable=False),
    Column("window_size", Integer, nullable=False),
    Column("drifted_share", Float, nullable=False),
    Column("dataset_drift", Boolean, nullable=False),
    Column("gate_open", Boolean, nullable=False),
    Column("statistic", Float),  # the drift detector's statistic / its alarm level
    Column("ood_share", Float),  # share of the window flagged out of distribution
    Column("column_scores", JSONText),
    Column("reference", String(1024)),
    Column("seconds", Float),
    Index("uq_drift_tests_test_id", "test_id", unique=True),
    Index("ix_drift_tests_tested_at", "tested_at"),
    info={"key": "test_id", "time": "tested_at"},
)

MODEL_EVENTS_TABLE = Table(
    MODEL_EVENTS,
    METADATA,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("event_id", String(128), nullable=False),
    Column("at", UTCDateTime(timezone=True), nullable=False),
    Column("event", String(64), nullable=False),
    Column("repository_version", Integer),
    Column("champion", String(256)),
    Column("challenger", String(256)),
    Column("detail", JSONText),
    Index("uq_model_events_event_id", "event_id", unique=True),
    Index("ix_model_events_at", "at"),
    info={"key": "event_id", "time": "at"},
)


def _table(name: str) -> Table:
    table = METADATA.tables.get(name)
    if table is None:
        raise MonitoringError(
            f"unknown monitoring table {name!r} (one of {', '.join(TABLE_NAMES)})"
        )
    return table


# --------------------------------------------------------------------------------------------
# Rows: plain dicts in, checked and normalised dicts out


def new_id() -> str:
    return uuid.uuid4().hex


def utc_now() -> datetime:
    return datetime.now(UTC)


def to_utc(value: Any) -> datetime:
    """Aware datetime, ISO text or epoch seconds → aware UTC datetime; naive means UTC."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        moment = datetime.fromisoformat(value)
    elif isinstance(value, numbers.Real) and not _is_bool(value):
        moment = datetime.fromtimestamp(float(value), tz=UTC)
    else:
        raise TypeError(f"expected a datetime, ISO text or epoch seconds, got {_show(value)}")
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool) or type(value).__name__ in ("bool_", "bool")


def _show(value: Any) -> str:
    shown = repr(value)
    return f"{type(value).__name__} {shown[:60]}{'...' if len(shown) > 60 else ''}"


def _json_default(value: Any) -> Any:
    """JSON for what callers naturally hold: numpy scalars and arrays, datetimes, bytes."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    for attribute in ("tolist", "item"):  # numpy arrays, then numpy scalars
        method = getattr(value, attribute, None)
        if callable(method):
            return method()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def _plain(value: Any) -> Any:
    """JSON-ready copy; NaN and infinities become null so any JSON reader accepts the text."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    converted = _json_default(value)
    return converted if isinstance(converted, str) else _plain(converted)


def dump_json(value: Any) -> str:
    return json.dumps(_plain(value), separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _storable(text: str) -> str:
    """``text`` as every database stores it: PostgreSQL refuses NUL in text and UTF-8 has no
    lone surrogates (a file name that is not UTF-8), so those are written as escapes."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _coerce(kind: str, value: Any, length: int | None) -> Any:
    if kind == "str":
        if isinstance(value, bytes | bytearray):
            value = bytes(value).decode("utf-8", "replace")
        if not isinstance(value, str):
            raise TypeError(f"must be text, got {_show(value)}")
        value = _storable(value)
        return value[:length] if length else value
    if kind == "float":
        if isinstance(value, numbers.Real) and not _is_bool(value):
            return float(value)
        raise TypeError(f"must be a number, got {_show(value)}")
    if kind == "int":
        if isinstance(value, numbers.Integral) and not _is_bool(value):
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise TypeError(f"must be an integer, got {_show(value)}")
    if kind == "bool":
        if _is_bool(value) or (isinstance(value, numbers.Integral) and value in (0, 1)):
            return bool(value)
        raise TypeError(f"must be true or false, got {_show(value)}")
    if kind == "time":
        return to_utc(value)
    if kind == "json":
        if isinstance(value, str):
            json.loads(value)  # must already be JSON text
            return value
        return dump_json(value)
    raise AssertionError(kind)


def _kind(column: Column[Any]) -> str:
    kind = column.type
    if isinstance(kind, UTCDateTime):
        return "time"
    if isinstance(kind, JSONText):
        return "json"
    if isinstance(kind, Boolean):
        return "bool"
    if isinstance(kind, Float):
        return "float"
    if isinstance(kind, Integer):
        return "int"
    return "str"


@dataclass(frozen=True)
class _Field:
    name: str
    kind: str
    required: bool
    length: int | None
    default: Any


def _fields(table: Table) -> tuple[_Field, ...]:
    return tuple(
        _Field(
            column.name,
            _kind(column),
            not column.nullable,
            getattr(column.type, "length", None),
            column.info.get("default"),
        )
        for column in table.columns
        if not column.primary_key
    )


_FIELDS = {name: _fields(_table(name)) for name in TABLE_NAMES}
_warned_keys: set[tuple[str, str]] = set()


def with_identity(table: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``row`` with its unique id and timestamp filled in (uuid4 hex, now in UTC)."""
    spec = _table(table)
    copy = dict(row)
    key, when = spec.info["key"], spec.info["time"]
    if copy.get(key) in (None, "", b""):
        copy[key] = new_id()
    if copy.get(when) is None:
        copy[when] = utc_now()
    return copy


def prepare_row(table: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """Check and normalise one row; every column present. Raises InvalidRowError naming the field.

    Idempotent, so spooled rows pass through it again when they are replayed.
    """
    if not isinstance(row, Mapping):
        raise InvalidRowError(f"{table} row must be a mapping, got {_show(row)}")
    full = with_identity(table, row)
    key = _table(table).info["key"]
    ident = full[key]
    if isinstance(ident, bytes | bytearray):
        ident = bytes(ident).decode("utf-8", "replace")
    ident = _storable(str(ident))
    if len(ident) > 128:
        raise InvalidRowError(f"{table} row {ident[:40]}...: {key} is longer than 128 characters")
    full[key] = ident
    out: dict[str, Any] = {}
    for field in _FIELDS[table]:
        value = full.get(field.name)
        if value is None:
            value = field.default
        if value is None:
            if field.required:
                raise InvalidRowError(f"{table} row {ident}: {field.name} is missing")
            out[field.name] = None
            continue
        try:
            out[field.name] = _coerce(field.kind, value, field.length)
        except (TypeError, ValueError, OverflowError) as error:
            raise InvalidRowError(f"{table} row {ident}: {field.name} {error}") from error
    for name in full.keys() - out.keys():
        if (table, name) not in _warned_keys:
            _warned_keys.add((table, name))
            log.warning("monitoring: %s has no column %r; the value is not stored", table, name)
    return out


# --------------------------------------------------------------------------------------------
# Errors from the database

# PostgreSQL SQLSTATEs that mean "the database, not the row": connection (08), resources (53),
# operator intervention (57), system (58), transaction rollback (40), missing schema objects.
_PG_TRANSIENT_CLASSES = ("08", "53", "57", "58", "40")
_PG_SCHEMA_CODES = ("42P01", "42703", "3F000", "3D000")


def _is_transient(error: BaseException) -> bool:
    """Not the rows' fault: spool them and retry later (missing tables are re-created then)."""
    if isinstance(
        error,
        sa_exc.OperationalError
        | sa_exc.InterfaceError
        | sa_exc.DisconnectionError
        | sa_exc.TimeoutError
        | sa_exc.PendingRollbackError
        | sa_exc.ResourceClosedError
        | OSError,
    ):
        return True
    if isinstance(error, sa_exc.DBAPIError):
        if error.connection_invalidated:
            return True
        code = str(getattr(error.orig, "pgcode", "") or "")
        return code in _PG_SCHEMA_CODES or code[:2] in _PG_TRANSIENT_CLASSES
    return False


def _is_already_there(error: BaseException) -> bool:
    """Another process created the same table, index or column a moment before us."""
    code = str(getattr(getattr(error, "orig", None), "pgcode", "") or "")
    message = str(getattr(error, "orig", None) or error).lower()
    if code in ("42P07", "42710", "42701"):
        return True
    if code == "23505" and "pg_type" in message:  # concurrent CREATE TABLE in PostgreSQL
        return True
    return "already exists" in message or "duplicate column" in message


def _reason(error: BaseException) -> str:
    origin = getattr(error, "orig", None) or error
    lines = str(origin).strip().splitlines()
    return lines[0] if lines else type(origin).__name__


_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")


def redact(url: str) -> str:
    return _PASSWORD.sub(r"\1***@", url)


# --------------------------------------------------------------------------------------------
# The store


class MonitoringStore:
    """The three monitoring tables in one database; thread-safe, one engine per process."""

    def __init__(
        self, url: str, *, busy_timeout: float = 30.0, connect_timeout: float = 5.0
    ) -> None:
        try:
            parsed = make_url(url)
        except (sa_exc.ArgumentError, ValueError) as error:
            raise MonitoringError(
                f"monitoring database URL {redact(str(url))!r} cannot be parsed ({error}); "
                "use sqlite:///PATH or postgresql://USER@HOST:PORT/DB"
            ) from error
        self.url: URL = parsed
        self.display = parsed.render_as_string(hide_password=True)
        backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
        if backend not in ("sqlite", "postgresql") or driver in ("asyncpg", "aiosqlite"):
            raise MonitoringError(
                f"monitoring database {self.display}: unsupported database {parsed.drivername!r}"
                " (use sqlite:///PATH or postgresql://USER@HOST:PORT/DB)"
            )
        self.dialect = backend
        self.busy_timeout = busy_timeout
        try:
            self.engine = self._make_engine(parsed, busy_timeout, connect_timeout)
        except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError, ImportError, TypeError) as error:
            raise MonitoringError(
                f"monitoring database {self.display}: cannot use this URL ({error})"
            ) from error
        self._statements: dict[str, Any] = {}

    # -- engine

    def _make_engine(self, url: URL, busy_timeout: float, connect_timeout: float) -> Engine:
        if self.dialect == "sqlite":
            memory = url.database in (None, "", ":memory:")
            engine = create_engine(
                url,
                pool_pre_ping=True,
                connect_args={"timeout": busy_timeout, "check_same_thread": False},
                **({"poolclass": StaticPool} if memory else {}),
            )
            event.listen(engine, "connect", _sqlite_pragmas(busy_timeout))
            return engine
        connect_args: dict[str, Any] = {}
        if url.get_driver_name() in ("psycopg2", "psycopg"):
            connect_args = {
                "connect_timeout": max(1, round(connect_timeout)),
                "application_name": "genreops-monitoring",
                # A peer that vanished without closing (network loss) is noticed in ~25 s.
                "keepalives": 1,
                "keepalives_idle": 10,
                "keepalives_interval": 5,
                "keepalives_count": 3,
            }
        return create_engine(
            url, pool_pre_ping=True, pool_size=2, max_overflow=4, connect_args=connect_args
        )

    @property
    def fingerprint(self) -> str:
        """Names this database in spool file names, so a shared spool directory is safe."""
        if self.dialect == "sqlite" and self.url.database not in (None, "", ":memory:"):
            ident = f"sqlite:{Path(str(self.url.database)).absolute()}"
        else:
            ident = self.display
        return hashlib.sha256(ident.encode()).hexdigest()[:12]

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> MonitoringStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _translate(
        self, error: BaseException, doing: str, refused: type[MonitoringError] = MonitoringError
    ) -> MonitoringError:
        kind = MonitoringUnavailableError if _is_transient(error) else refused
        return kind(f"monitoring database {self.display}: cannot {doing} ({_reason(error)})")

    # -- schema

    def ensure_schema(self, *, create_parent: bool = True) -> list[str]:
        """Create missing tables, columns and indexes; never drops or rewrites anything.

        Safe when several processes run it at once: whatever another one created first is
        taken as done. Returns what was changed (empty when the schema was complete).
        ``create_parent`` makes the directory of a SQLite file.
        """
        if create_parent:
            self._create_parent()
        changes: list[str] = []
        for attempt in range(6):
            try:
                self._ensure_once(changes)
                return changes
            except sa_exc.SQLAlchemyError as error:
                if _is_already_there(error) and attempt < 5:
                    log.debug("monitoring schema: lost a creation race (%s); again", error)
                    continue
                raise self._translate(error, "create the monitoring tables") from error
        raise AssertionError("unreachable")

    def _create_parent(self) -> None:
        database = self.url.database
        if self.dialect != "sqlite" or database in (None, "", ":memory:"):
            return
        parent = Path(str(database)).parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise MonitoringError(
                f"monitoring database {self.display}: cannot create folder {parent} "
                f"({error.strerror})"
            ) from error

    def _ensure_once(self, changes: list[str]) -> None:
        inspector = inspect(self.engine)
        existing = set(inspector.get_table_names())
        for table in METADATA.sorted_tables:
            if table.name not in existing:
                with self.engine.begin() as conn:
                    table.create(conn, checkfirst=True)
                changes.append(f"created table {table.name}")
                continue
            columns = {column["name"] for column in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name in columns:
                    continue
                if column.primary_key:
                    log.warning("monitoring: %s has no %s column", table.name, column.name)
                    continue
                with self.engine.begin() as conn:
                    conn.execute(text(self._add_column_ddl(table, column)))
                changes.append(f"added column {table.name}.{column.name}")
            indexes = {index["name"] for index in inspector.get_indexes(table.name)}
            for index in sorted(table.indexes, key=lambda ix: str(ix.name)):
                if index.name in indexes:
                    continue
                with self.engine.begin() as conn:
                    index.create(conn, checkfirst=True)
                changes.append(f"created index {index.name}")

    def _add_column_ddl(self, table: Table, column: Column[Any]) -> str:
        """Always nullable: existing rows have no value, and SQLite refuses NOT NULL here."""
        dialect = self.engine.dialect
        quote = dialect.identifier_preparer
        kind = column.type.compile(dialect=dialect)
        exists = " IF NOT EXISTS" if self.dialect == "postgresql" else ""
        return (
            f"ALTER TABLE {quote.format_table(table)} ADD COLUMN{exists} "
            f"{quote.format_column(column)} {kind}"
        )

    # -- writes

    def _insert_statement(self, name: str) -> Any:
        statement = self._statements.get(name)
        if statement is None:
            if self.dialect == "postgresql":
                from sqlalchemy.dialects.postgresql import insert
            else:
                from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
            table = _table(name)
            statement = insert(table).on_conflict_do_nothing(index_elements=[table.info["key"]])
            self._statements[name] = statement
        return statement

    def write_prepared(self, groups: Mapping[str, Sequence[dict[str, Any]]]) -> None:
        """Insert rows from ``prepare_row`` in one transaction; rows already there are skipped.

        Raises MonitoringUnavailableError (retry later) or InvalidRowError (the database
        refused the rows themselves).
        """
        try:
            with self.engine.begin() as conn:
                if self.dialect == "postgresql":  # a locked table must not hang the writer
                    conn.execute(select(func.set_config("statement_timeout", "30000", True)))
                for name, rows in groups.items():
                    if rows:
                        conn.execute(self._insert_statement(name), list(rows))
        except sa_exc.SQLAlchemyError as error:
            raise self._translate(error, "store rows", refused=InvalidRowError) from error

    def insert(self, table: str, rows: Iterable[Mapping[str, Any]]) -> int:
        """Check and insert rows; ids and timestamps are filled in when missing.

        Rows whose id is already stored are skipped, so replaying a batch is harmless. Returns
        the number of rows sent.
        """
        prepared = [prepare_row(table, row) for row in rows]
        if prepared:
            self.write_prepared({table: prepared})
        return len(prepared)

    def insert_predictions(self, rows: Iterable[Mapping[str, Any]]) -> int:
        return self.insert(PREDICTIONS, rows)

    def insert_drift_tests(self, rows: Iterable[Mapping[str, Any]]) -> int:
        return self.insert(DRIFT_TESTS, rows)

    def insert_model_events(self, rows: Iterable[Mapping[str, Any]]) -> int:
        return self.insert(MODEL_EVENTS, rows)

    # -- queries

    def _query(self, statement: Any, doing: str) -> list[dict[str, Any]]:
        try:
            with self.engine.connect() as conn:
                return [dict(row._mapping) for row in conn.execute(statement)]
        except sa_exc.SQLAlchemyError as error:
            raise self._translate(error, doing) from error

    def count(self, table: str) -> int:
        statement = select(func.count().label("n")).select_from(_table(table))
        return int(self._query(statement, f"count {table}")[0]["n"])

    def _recent(self, name: str, limit: int) -> list[dict[str, Any]]:
        table = _table(name)
        when = table.c[table.info["time"]]
        statement = select(table).order_by(when.desc(), table.c.id.desc()).limit(limit)
        return self._query(statement, f"read {name}")

    def recent_predictions(self, limit: int = 100) -> list[dict[str, Any]]:
        """Newest first; ``probabilities`` decoded to a dict, ``served_at`` aware UTC."""
        return self._recent(PREDICTIONS, limit)

    def recent_drift_tests(self, limit: int = 100) -> list[dict[str, Any]]:
        """Newest first; ``column_scores`` decoded."""
        return self._recent(DRIFT_TESTS, limit)

    def model_events(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Oldest first (the publish/rollback history); the newest ``limit`` when given."""
        table = MODEL_EVENTS_TABLE
        order = (table.c.at.desc(), table.c.id.desc())
        statement = select(table).order_by(*order)
        if limit is not None:
            statement = statement.limit(limit)
        return list(reversed(self._query(statement, "read model_events")))


def _sqlite_pragmas(busy_timeout: float) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            # WAL lets readers (dashboards) and one writer at a time from any process work
            # together; it is a property of the file, so losing this race to another process
            # that sets it first is harmless.
            with contextlib.suppress(Exception):
                cursor.execute("PRAGMA journal_mode = WAL")
        finally:
            cursor.close()

    return on_connect


# --------------------------------------------------------------------------------------------
# Spool files


_HOST = re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname())[:40] or "host"


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _spool_line(table: str, row: Any) -> str:
    try:
        return json.dumps({"table": table, "row": row}, default=_json_default) + "\n"
    except (TypeError, ValueError) as error:  # e.g. a self-referencing dict: kept for people
        return json.dumps({"table": table, "row": None, "unencodable": f"{error}: {row!r}"}) + "\n"


class _SpoolFile:
    """This process's current spool file; created on first use, exclusively locked while open."""

    def __init__(self, directory: Path, prefix: str) -> None:
        self.directory = directory
        self.prefix = prefix
        self.rows = 0
        self._lock = threading.Lock()
        self._handle: IO[str] | None = None

    def append(self, entries: Sequence[tuple[str, Any]]) -> None:
        lines = "".join(_spool_line(table, row) for table, row in entries)
        with self._lock:
            if self._handle is None:
                self._handle = self._open()
            self._handle.write(lines)
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self.rows += len(entries)

    def _open(self) -> IO[str]:
        name = f"spool-{self.prefix}-{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        temporary = self.directory / f".{name}.tmp"
        handle = temporary.open("a", encoding="utf-8")
        try:
            # Locked before it gets a name replayers look for, so nobody replays it while we
            # write; the lock goes with the process, so a dead writer's file becomes replayable.
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            temporary.replace(self.directory / name)
        except BaseException:
            handle.close()
            raise
        _fsync_dir(self.directory)
        return handle

    def detach(self) -> int:
        """Close (and unlock) the current file so it can be replayed; later rows go to a new one."""
        with self._lock:
            rows, self.rows = self.rows, 0
            if self._handle is not None:
                with contextlib.suppress(OSError):
                    self._handle.close()
                self._handle = None
            return rows


_rejected_lock = threading.Lock()


def _rejected_path(directory: Path) -> Path:
    return directory / f"rejected-{_HOST}-{os.getpid()}.jsonl"


def _append_rejected(directory: Path, refusals: Sequence[Refusal]) -> bool:
    stamp = utc_now().isoformat()
    lines = "".join(
        json.dumps(
            {"table": table, "row": row, "error": error, "rejected_at": stamp},
            default=_json_default,
        )
        + "\n"
        for table, row, error in refusals
    )
    try:
        with _rejected_lock, _rejected_path(directory).open("a", encoding="utf-8") as handle:
            handle.write(lines)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        log.error("monitoring: cannot write %d rejected rows (%s)", len(refusals), error)
        return False
    return True


def _group(entries: Sequence[Entry]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for table, row in entries:
        groups.setdefault(table, []).append(row)
    return groups


def _store_entries(
    store: MonitoringStore,
    entries: Sequence[Entry],
    reject: Callable[[list[Refusal]], None],
) -> tuple[int, list[Entry], MonitoringUnavailableError | None]:
    """Write prepared rows: the batch at once, else row by row so only refused rows are set aside.

    Returns (rows written, rows not attempted, the outage that stopped us or None).
    """
    try:
        store.write_prepared(_group(entries))
        return len(entries), [], None
    except MonitoringUnavailableError as error:
        return 0, list(entries), error
    except InvalidRowError as error:
        log.warning("monitoring: a batch was refused (%s); retrying row by row", error)
    stored = 0
    for index, (table, row) in enumerate(entries):
        try:
            store.write_prepared({table: [row]})
        except MonitoringUnavailableError as error:
            return stored, list(entries[index:]), error
        except InvalidRowError as error:
            reject([(table, row, str(error))])
            continue
        stored += 1
    return stored, [], None


@dataclass(frozen=True)
class ReplayReport:
    """One replay round: ``rows`` were sent (rows already stored are skipped by the database)."""

    files: int
    rows: int
    rejected: int
    busy: int  # files held by a live process, left alone


@dataclass(frozen=True)
class SpoolStatus:
    files: int
    rows: int
    rejected_rows: int


def _same_file(handle: IO[str], path: Path) -> bool:
    """Still the file at ``path``: another replayer may have removed it before we got the lock."""
    try:
        return os.fstat(handle.fileno()).st_ino == path.stat().st_ino
    except OSError:
        return False


def _replay_files(
    store: MonitoringStore,
    directory: Path,
    batch_size: int,
    reject: Callable[[list[Refusal]], None],
) -> ReplayReport:
    files = rows = rejected = busy = 0

    def count_rejects(refusals: list[Refusal]) -> None:
        nonlocal rejected
        rejected += len(refusals)
        reject(refusals)

    for path in sorted(directory.glob(f"spool-{store.fingerprint}-*.jsonl")):
        try:
            handle = path.open("r", encoding="utf-8", errors="replace")
        except OSError:
            continue  # replayed and removed by someone else meanwhile
        with handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                busy += 1
                continue
            if not _same_file(handle, path):
                continue
            rows += _replay_one(store, path, handle, batch_size, count_rejects)
            path.unlink()  # still holding the lock: nobody else is reading it
            files += 1
    if files:
        _fsync_dir(directory)
    return ReplayReport(files=files, rows=rows, rejected=rejected, busy=busy)


def _replay_one(
    store: MonitoringStore,
    path: Path,
    handle: IO[str],
    batch_size: int,
    reject: Callable[[list[Refusal]], None],
) -> int:
    """Stream one locked spool file into the database; raises MonitoringUnavailableError."""
    sent = 0
    chunk: list[Entry] = []

    def write() -> None:
        nonlocal sent
        stored, _left, error = _store_entries(store, chunk, reject)
        if error is not None:  # the file stays; what went in is skipped on the next replay
            raise error
        sent += stored
        chunk.clear()

    for number, line in enumerate(handle, 1):
        body = line.strip()
        if not body:
            continue
        try:
            record = json.loads(body)
            table, row = record["table"], record["row"]
            if table not in TABLE_NAMES or not isinstance(row, dict):
                raise ValueError(record.get("unencodable") or "not a spooled row")
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            # A line cut short by a crash, or an unencodable row: kept for people to read.
            reject([("?", body, f"{path.name}:{number}: unreadable spool line ({error})")])
            continue
        try:
            chunk.append((table, prepare_row(table, row)))
        except InvalidRowError as error:
            reject([(table, row, str(error))])
            continue
        if len(chunk) >= batch_size:
            write()
    if chunk:
        write()
    return sent


def replay_spool(
    store: MonitoringStore, spool_dir: str | os.PathLike[str], *, batch_size: int = 500
) -> ReplayReport:
    """Replay the spool files of this store's database (for the CLI; writers do it themselves).

    Files a live writer still holds are skipped. Raises MonitoringUnavailableError when the
    database is down (files are kept).
    """
    directory = Path(spool_dir)
    if not directory.is_dir():
        return ReplayReport(0, 0, 0, 0)
    store.ensure_schema(create_parent=False)

    def reject(refusals: list[Refusal]) -> None:
        _append_rejected(directory, refusals)

    return _replay_files(store, directory, batch_size, reject)


def spool_status(
    spool_dir: str | os.PathLike[str], store: MonitoringStore | None = None
) -> SpoolStatus:
    """Rows waiting in spool files (of ``store``'s database, or all) and rows ever rejected."""
    directory = Path(spool_dir)
    pattern = f"spool-{store.fingerprint}-*.jsonl" if store is not None else SPOOL_GLOB

    def lines(paths: Iterable[Path]) -> tuple[int, int]:
        files = rows = 0
        for path in paths:
            with contextlib.suppress(OSError):
                rows += sum(1 for line in path.read_text(errors="replace").splitlines() if line)
                files += 1
        return files, rows

    if not directory.is_dir():
        return SpoolStatus(0, 0, 0)
    files, rows = lines(directory.glob(pattern))
    _, rejected = lines(directory.glob(REJECTED_GLOB))
    return SpoolStatus(files=files, rows=rows, rejected_rows=rejected)


# --------------------------------------------------------------------------------------------
# The writer


@dataclass(frozen=True)
class WriterStats:
    """Counters since start. Every submitted row ends stored, spooled, rejected or lost."""

    submitted: int
    stored: int
    spooled: int
    replayed: int
    rejected: int
    lost: int  # could not even be spooled (spool directory unwritable): logged as errors
    queued: int
    database_up: bool


_WAKE = object()  # queue marker: stop waiting for a full batch (flush, close)
_LIVE_WRITERS: weakref.WeakSet[MonitoringWriter] = weakref.WeakSet()


class MonitoringWriter:
    """Off-request-path writer: bounded queue, batches, spool on outage, replay on recovery.

    One per process (create it after any fork). ``submit_*`` never blocks on the database and
    never raises; see the module docstring for the design.
    """

    def __init__(
        self,
        store: MonitoringStore | str,
        spool_dir: str | os.PathLike[str],
        *,
        queue_size: int = 10_000,
        batch_size: int = 500,
        flush_interval: float = 0.5,
        max_backoff: float = 30.0,
        replay_interval: float = 30.0,
    ) -> None:
        if queue_size < 1 or batch_size < 1 or flush_interval <= 0 or max_backoff <= 0:
            raise ValueError("queue_size, batch_size, flush_interval and max_backoff must be > 0")
        self._owns_store = isinstance(store, str)
        self.store = MonitoringStore(store) if isinstance(store, str) else store
        self.spool_dir = Path(spool_dir)
        try:
            self.spool_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise MonitoringError(
                f"monitoring spool folder {self.spool_dir}: cannot create it ({error.strerror})"
            ) from error
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_backoff = max_backoff
        self.replay_interval = replay_interval
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._spool = _SpoolFile(self.spool_dir, self.store.fingerprint)
        self._cond = threading.Condition()
        self._submitted = self._stored = self._spooled = self._replayed = 0
        self._rejected = self._lost = self._settled = 0
        self._closed = False
        self._stopping = threading.Event()
        # Database state, touched by the writer thread only.
        self._down = False
        self._backoff = 0.0
        self._retry_at = 0.0
        self._schema_ready = False
        self._backlog = True  # files of earlier processes may be waiting: look at start
        self._next_scan = 0.0
        # Replay requests from flush(replay=True): asked, attempted, completed without outage.
        self._replay_asked = self._replay_tried = self._replay_clean = 0
        self._thread = threading.Thread(
            target=self._run, name="genreops-monitoring-writer", daemon=True
        )
        self._thread.start()
        _LIVE_WRITERS.add(self)

    # -- counters

    def _settle(
        self, *, stored: int = 0, spooled: int = 0, rejected: int = 0, lost: int = 0
    ) -> None:
        with self._cond:
            self._stored += stored
            self._spooled += spooled
            self._rejected += rejected
            self._lost += lost
            self._settled += stored + spooled + rejected + lost
            self._cond.notify_all()

    @property
    def submitted(self) -> int:
        return self._submitted

    @property
    def stored(self) -> int:
        return self._stored

    @property
    def spooled(self) -> int:
        return self._spooled

    @property
    def replayed(self) -> int:
        return self._replayed

    @property
    def rejected(self) -> int:
        return self._rejected

    def stats(self) -> WriterStats:
        with self._cond:
            return WriterStats(
                submitted=self._submitted,
                stored=self._stored,
                spooled=self._spooled,
                replayed=self._replayed,
                rejected=self._rejected,
                lost=self._lost,
                queued=self._queue.qsize(),
                database_up=not self._down,
            )

    # -- request path

    def submit_prediction(self, row: Mapping[str, Any]) -> str:
        """Queue one served prediction; returns its request_id."""
        return self._submit(PREDICTIONS, row)

    def submit_drift_test(self, row: Mapping[str, Any]) -> str:
        """Queue one drift test result; returns its test_id."""
        return self._submit(DRIFT_TESTS, row)

    def submit_model_event(self, row: Mapping[str, Any]) -> str:
        """Queue one model event (publish, rollback, ...); returns its event_id."""
        return self._submit(MODEL_EVENTS, row)

    def _submit(self, table: str, row: Mapping[str, Any]) -> str:
        with self._cond:
            self._submitted += 1
        try:
            entry = with_identity(table, row)
        except Exception as error:  # not a mapping at all: the caller's bug, never its failure
            self._reject([(table, row, f"{table} row must be a mapping ({error})")], settle=True)
            return ""
        ident = str(entry[_table(table).info["key"]])
        if not self._closed and self._thread.is_alive():
            try:
                self._queue.put_nowait((table, entry))
                return ident
            except queue.Full:
                self._spool_batch([(table, entry)])  # replayed by the thread later
                return ident
        self._spool_batch([(table, entry)])
        self._spool.detach()  # no thread to replay it: unlock it for other writers and the CLI
        return ident

    # -- waiting

    def _wake(self) -> None:
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(_WAKE)

    def flush(self, timeout: float = 30.0, *, replay: bool = False) -> bool:
        """Wait until every row submitted so far is stored, spooled or rejected.

        With ``replay``, also wait for a replay of the spool that found the database up (rows
        spooled before are then stored). False when ``timeout`` ran out first.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._submitted
        self._wake()
        with self._cond:
            done = self._cond.wait_for(
                lambda: self._settled >= target, max(0.0, deadline - time.monotonic())
            )
            if not done or not replay:
                return done
            if not self._thread.is_alive():
                return False
            self._replay_asked += 1
            ticket = self._replay_asked
        self._wake()
        with self._cond:
            return self._cond.wait_for(
                lambda: self._replay_clean >= ticket, max(0.0, deadline - time.monotonic())
            )

    def close(self, timeout: float = 30.0) -> bool:
        """Flush, stop the thread and release the spool file; True if nothing was left behind."""
        if self._closed:
            return True
        deadline = time.monotonic() + timeout
        ok = self.flush(timeout)
        self._closed = True  # from now on submit_* spools directly
        self._stopping.set()
        self._wake()
        self._thread.join(max(0.1, deadline - time.monotonic()))
        if self._thread.is_alive():  # stuck in the database: keep what is still queued
            log.warning("monitoring writer did not stop in %.0f s; spooling the queue", timeout)
            ok = False
            leftover: list[Entry] = []
            with contextlib.suppress(queue.Empty):
                while True:
                    item = self._queue.get_nowait()
                    if item is not _WAKE:
                        leftover.append(item)
            if leftover:
                self._spool_batch(leftover)
        self._spool.detach()
        _LIVE_WRITERS.discard(self)
        if self._owns_store and not self._thread.is_alive():
            self.store.close()
        return ok

    def __enter__(self) -> MonitoringWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- spool and rejects

    def _spool_batch(self, entries: Sequence[tuple[str, Any]]) -> None:
        try:
            self._spool.append(entries)
        except OSError as error:
            log.error(
                "monitoring: cannot spool %d rows to %s (%s); they are lost",
                len(entries),
                self.spool_dir,
                error,
            )
            self._settle(lost=len(entries))
            return
        self._settle(spooled=len(entries))

    def _reject(self, refusals: list[Refusal], *, settle: bool) -> None:
        for _table_name, _row, error in refusals[:3]:
            log.warning("monitoring: row rejected: %s", error)
        _append_rejected(self.spool_dir, refusals)
        if settle:
            self._settle(rejected=len(refusals))
        else:
            with self._cond:
                self._rejected += len(refusals)

    # -- the thread

    def _run(self) -> None:
        while True:
            try:
                batch = self._collect()
                if batch:
                    self._handle(batch)
                finishing = self._stopping.is_set() and self._queue.empty()
                self._maybe_replay(final=finishing)
                if finishing:
                    return
            except Exception:  # never die: a dead writer would turn every row into a spool write
                log.exception("monitoring writer: unexpected error; carrying on")
                time.sleep(0.1)

    def _collect(self) -> list[Entry]:
        try:
            item = self._queue.get(timeout=min(0.5, self.flush_interval))
        except queue.Empty:
            return []
        hurry = item is _WAKE
        batch: list[Entry] = [] if hurry else [item]
        deadline = time.monotonic() + self.flush_interval
        while len(batch) < self.batch_size:
            try:
                if hurry or self._stopping.is_set():
                    item = self._queue.get_nowait()
                else:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    item = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            if item is _WAKE:
                hurry = True
            else:
                batch.append(item)
        return batch

    def _handle(self, batch: list[Entry]) -> None:
        good: list[Entry] = []
        bad: list[Refusal] = []
        for table, row in batch:
            try:
                good.append((table, prepare_row(table, row)))
            except InvalidRowError as error:
                bad.append((table, row, str(error)))
        if bad:
            self._reject(bad, settle=True)
        if not good:
            return
        if self._down and time.monotonic() < self._retry_at:
            self._spool_batch(good)
            return
        try:
            self._ensure_schema()
            stored, left, outage = _store_entries(
                self.store, good, lambda refusals: self._reject(refusals, settle=True)
            )
        except MonitoringUnavailableError as error:
            stored, left, outage = 0, good, error
        except Exception:
            log.exception("monitoring writer: cannot store a batch; spooling it")
            self._spool_batch(good)
            return
        self._settle(stored=stored)
        if outage is not None:
            self._mark_down(outage)
            self._spool_batch(left)
        else:
            self._mark_up()

    def _ensure_schema(self) -> None:
        if self._schema_ready:
            return
        try:
            self.store.ensure_schema(create_parent=False)
        except MonitoringUnavailableError:
            raise
        except MonitoringError as error:  # writes may still work; they will say if not
            log.error("monitoring: %s", error)
        self._schema_ready = True

    def _mark_down(self, error: MonitoringError) -> None:
        self._schema_ready = False  # the database that comes back may be a new, empty one
        self._backoff = min(self.max_backoff, max(0.25, self._backoff * 2))
        self._retry_at = time.monotonic() + self._backoff
        if not self._down:
            log.warning("%s; spooling to %s", error, self.spool_dir)
        self._down = True

    def _mark_up(self) -> None:
        if self._down:
            log.warning("monitoring: database %s reachable again", self.store.display)
            self._backlog = True
        self._down = False
        self._backoff = 0.0

    def _maybe_replay(self, *, final: bool = False) -> None:
        now = time.monotonic()
        with self._cond:
            asked = self._replay_asked
        fresh_ask = asked > self._replay_tried
        if self._down and now < self._retry_at and not fresh_ask:
            return
        own = self._spool.rows > 0
        if final:
            due = (own or fresh_ask) and not self._down
        else:
            due = fresh_ask or own or self._backlog or now >= self._next_scan
        if not due:
            return
        self._replay_tried = asked
        self._next_scan = now + self.replay_interval
        try:
            self._ensure_schema()  # also the probe: no file is touched while the database is down
            self._spool.detach()
            report = _replay_files(
                self.store,
                self.spool_dir,
                self.batch_size,
                lambda refusals: self._reject(refusals, settle=False),
            )
        except MonitoringUnavailableError as error:
            self._backlog = True
            self._mark_down(error)
            return
        self._backlog = False
        self._mark_up()
        if report.files:
            log.info("monitoring: replayed %d rows from %d spool files", report.rows, report.files)
        with self._cond:
            self._replayed += report.rows
            self._replay_clean = max(self._replay_clean, asked)
            self._cond.notify_all()


def _close_live_writers() -> None:
    """Orderly interpreter exit: queued rows reach the database or the spool, not the void."""
    for writer in list(_LIVE_WRITERS):
        with contextlib.suppress(Exception):
            writer.close(timeout=5.0)


atexit.register(_close_live_writers)
