"""``MonitoringStore``: the three monitoring tables in one SQLite or PostgreSQL database.

SQLite under ``GENREOPS_HOME`` by default, PostgreSQL by URL (SQLAlchemy 2.0 Core). The store
brings the database's schema to the newest Alembic revision (``ensure_schema``, see
``genreops.monitoring.store.migrate``), inserts checked rows idempotently and reads them back.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, func, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.pool import StaticPool

from genreops.monitoring.store.errors import (
    InvalidRowError,
    MonitoringError,
    MonitoringUnavailableError,
)
from genreops.monitoring.store.rows import prepare_row
from genreops.monitoring.store.schema import (
    ALERTS,
    DRIFT_TESTS,
    LABELS,
    LABELS_TABLE,
    MODEL_EVENTS,
    MODEL_EVENTS_TABLE,
    PREDICTIONS,
    PREDICTIONS_TABLE,
    get_table,
    to_utc,
)

log = logging.getLogger(__name__)

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
        """Bring the database to the newest schema revision (Alembic); never drops a row.

        A fresh database gets every table; one made before Alembic is adopted in place, its
        rows kept (``genreops.monitoring.store.migrate``). Safe when several processes run it
        at once: the upgrade holds a lock, and whoever comes second finds it done. Returns what
        was changed ("created table ...", "added column ...", "created index ..."); empty when
        the schema was current. ``create_parent`` makes the directory of a SQLite file.
        """
        from genreops.monitoring.store.migrate import SchemaRevisionError, upgrade

        if create_parent:
            self._create_parent()
        try:
            return upgrade(self.engine)
        except SchemaRevisionError as error:
            raise MonitoringError(f"monitoring database {self.display}: {error}") from error
        except sa_exc.SQLAlchemyError as error:
            raise self._translate(error, "create the monitoring tables") from error

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

    # -- writes

    def _insert_statement(self, name: str) -> Any:
        statement = self._statements.get(name)
        if statement is None:
            if self.dialect == "postgresql":
                from sqlalchemy.dialects.postgresql import insert
            else:
                from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
            table = get_table(name)
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

    def insert_labels(self, rows: Iterable[Mapping[str, Any]]) -> int:
        return self.insert(LABELS, rows)

    def insert_alerts(self, rows: Iterable[Mapping[str, Any]]) -> int:
        return self.insert(ALERTS, rows)

    # -- queries

    def _query(self, statement: Any, doing: str) -> list[dict[str, Any]]:
        try:
            with self.engine.connect() as conn:
                return [dict(row._mapping) for row in conn.execute(statement)]
        except sa_exc.SQLAlchemyError as error:
            raise self._translate(error, doing) from error

    def count(self, table: str) -> int:
        statement = select(func.count().label("n")).select_from(get_table(table))
        return int(self._query(statement, f"count {table}")[0]["n"])

    def _recent(self, name: str, limit: int) -> list[dict[str, Any]]:
        table = get_table(name)
        when = table.c[table.info["time"]]
        statement = select(table).order_by(when.desc(), table.c.id.desc()).limit(limit)
        return self._query(statement, f"read {name}")

    def recent_predictions(self, limit: int = 100) -> list[dict[str, Any]]:
        """Newest first; ``probabilities`` decoded to a dict, ``served_at`` aware UTC."""
        return self._recent(PREDICTIONS, limit)

    def recent_alerts(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest alert notifications received, newest first."""
        return self._recent(ALERTS, limit)

    def recent_drift_tests(self, limit: int = 100) -> list[dict[str, Any]]:
        """Newest first; ``column_scores`` decoded."""
        return self._recent(DRIFT_TESTS, limit)

    def predicted_clip_ids(self, clip_ids: Iterable[str]) -> set[str]:
        """Those of ``clip_ids`` that have at least one stored prediction."""
        wanted = sorted(set(clip_ids))
        found: set[str] = set()
        column = PREDICTIONS_TABLE.c.clip_id
        for start in range(0, len(wanted), 500):  # bounded IN lists
            chunk = wanted[start : start + 500]
            statement = select(column).where(column.in_(chunk)).distinct()
            found.update(row["clip_id"] for row in self._query(statement, "read predictions"))
        return found

    def _latest_labels(self) -> Any:
        """Each clip's labels ranked newest first (``rank`` 1 is the one that counts)."""
        return select(
            LABELS_TABLE.c.clip_id,
            LABELS_TABLE.c.genre.label("true_genre"),
            LABELS_TABLE.c.labeled_at,
            func.row_number()
            .over(
                partition_by=LABELS_TABLE.c.clip_id,
                order_by=(LABELS_TABLE.c.labeled_at.desc(), LABELS_TABLE.c.id.desc()),
            )
            .label("rank"),
        ).subquery()

    def latest_labels(self) -> dict[str, str]:
        """Every labeled clip's latest genre, by clip id."""
        latest = self._latest_labels()
        statement = select(latest.c.clip_id, latest.c.true_genre).where(latest.c.rank == 1)
        return {row["clip_id"]: row["true_genre"] for row in self._query(statement, "read labels")}

    def labeled_predictions(
        self,
        since: datetime | None = None,
        *,
        newest: int | None = None,
        model_version: str | None = None,
    ) -> list[dict[str, Any]]:
        """Every prediction of a labeled clip with its clip's latest label (``true_genre``,
        ``labeled_at``), oldest prediction first; only those served at or after ``since``, by
        ``model_version``, or the ``newest`` that many, when given."""
        latest = self._latest_labels()
        p = PREDICTIONS_TABLE
        statement = select(p, latest.c.true_genre, latest.c.labeled_at).join(
            latest, (latest.c.clip_id == p.c.clip_id) & (latest.c.rank == 1)
        )
        if since is not None:
            statement = statement.where(p.c.served_at >= to_utc(since))
        if model_version is not None:
            statement = statement.where(p.c.model_version == model_version)
        if newest is None:
            return self._query(statement.order_by(p.c.served_at, p.c.id), "read labeled answers")
        statement = statement.order_by(p.c.served_at.desc(), p.c.id.desc()).limit(newest)
        return list(reversed(self._query(statement, "read labeled answers")))

    def model_versions(self, since: datetime) -> list[str]:
        """The model versions that answered at or after ``since``."""
        column = PREDICTIONS_TABLE.c.model_version
        statement = (
            select(column)
            .where(PREDICTIONS_TABLE.c.served_at >= to_utc(since))
            .distinct()
            .order_by(column)
        )
        return [row["model_version"] for row in self._query(statement, "read model versions")]

    def model_events(
        self, limit: int | None = None, *, event: str | None = None
    ) -> list[dict[str, Any]]:
        """Oldest first (the publish/rollback history); the newest ``limit`` when given; only
        events named ``event`` when given."""
        table = MODEL_EVENTS_TABLE
        order = (table.c.at.desc(), table.c.id.desc())
        statement = select(table).order_by(*order)
        if event is not None:
            statement = statement.where(table.c.event == event)
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
