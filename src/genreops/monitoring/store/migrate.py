"""The monitoring store's schema, moved forward by Alembic revisions shipped in this package.

The revisions live in ``migrations/versions/`` beside this module and are found as a package
resource (``genreops.monitoring.store:migrations``), so a wheel installed anywhere has them.
``upgrade(engine)`` brings a database to the head revision:

* a fresh database gets every table from the baseline revision on;
* a database made before Alembic (its tables, no ``alembic_version``) is adopted in place by
  the baseline revision, which adds what an older layout lacks and never drops or rewrites a
  row; later revisions then run as on any other database;
* a database already at head costs one look at its table names and ``alembic_version``.

Several processes may upgrade one database at once (Triton instances, the CLI, a flow). The
upgrade runs in one transaction that takes a lock first: PostgreSQL an advisory lock for the
schema, SQLite ``BEGIN IMMEDIATE`` (its write lock). Whoever comes second finds the work done.
DDL is transactional on both, so a failed upgrade leaves the database as it was.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Connection, inspect, text
from sqlalchemy.engine import Engine

from genreops.monitoring.store.errors import MonitoringError
from genreops.monitoring.store.schema import METADATA, TABLE_NAMES

MIGRATIONS = "genreops.monitoring.store:migrations"  # Alembic's package-resource form
VERSION_TABLE = "alembic_version"

Layout = dict[str, tuple[list[str], list[str]]]  # table -> (columns, index names)


class SchemaRevisionError(MonitoringError):
    """The database's schema revision is not one this genreops knows (a newer one wrote it?)."""


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Any:
    """An Alembic ``Config`` for the store's revisions, for ``alembic.command`` by hand too:
    ``command.history(alembic_config())``, ``command.current(alembic_config(url=...))``."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


@functools.cache
def script_directory() -> Any:
    """Alembic's view of the revisions shipped in this package (read once per process)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The newest revision this genreops ships."""
    head = script_directory().get_current_head()
    if head is None:  # pragma: no cover - the package always ships the baseline
        raise MonitoringError(f"no schema revisions found in {MIGRATIONS}")
    return str(head)


def current_revision(connection: Connection) -> str | None:
    """The revision stamped in ``alembic_version``; None for a fresh or pre-Alembic database."""
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def layout(connection: Connection) -> Layout:
    """The monitoring tables as they are in the database: columns and index names, in order."""
    inspector = inspect(connection)
    return {
        name: (
            [column["name"] for column in inspector.get_columns(name)],
            sorted(str(index["name"]) for index in inspector.get_indexes(name)),
        )
        for name in inspector.get_table_names()
        if name != VERSION_TABLE
    }


def _at_head(engine: Engine) -> bool:
    with engine.connect() as connection:
        tables = set(inspect(connection).get_table_names())
        if not tables >= {*TABLE_NAMES, VERSION_TABLE}:
            return False
        return current_revision(connection) == head_revision()


def _lock(connection: Connection) -> None:
    """Begin the upgrade's transaction holding the lock that serialises upgraders."""
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("BEGIN IMMEDIATE")  # waits up to the busy timeout
        return
    # give up after a minute (the writer retries later) rather than hang behind a lock
    connection.execute(text("SET LOCAL lock_timeout = '60s'"))
    connection.execute(
        text("SELECT pg_advisory_xact_lock(hashtext(:key || current_schema()))"),
        {"key": "genreops.monitoring.store schema in "},
    )


def changes(before: Layout, after: Layout) -> list[str]:
    """What an upgrade did, in words: created tables, added columns, created indexes."""
    said: list[str] = []
    for name, (columns, indexes) in after.items():
        if name not in before:
            said.append(f"created table {name}")
            continue
        old_columns, old_indexes = before[name]
        said += [f"added column {name}.{c}" for c in columns if c not in old_columns]
        said += [f"created index {i}" for i in indexes if i not in old_indexes]
    return said


def upgrade(engine: Engine) -> list[str]:
    """Bring the database to the head revision; returns what changed (empty: nothing to do).

    Raises SQLAlchemy's errors as they come (the store translates them) and
    SchemaRevisionError for a revision this genreops does not know.
    """
    if _at_head(engine):
        return []
    from alembic import command
    from alembic.util import CommandError

    with engine.connect() as connection:
        _lock(connection)
        before = layout(connection)
        try:
            command.upgrade(alembic_config(connection), "head")
        except CommandError as error:
            try:
                stamped = current_revision(connection)
            except Exception:  # the message matters more than this detail
                stamped = "?"
            raise SchemaRevisionError(
                f"the schema is at revision {stamped!r}, which this genreops does not know "
                f"(its newest is {head_revision()!r}; was it written by a newer genreops?): "
                f"{error}"
            ) from error
        # At head, a monitoring table dropped by hand since is created again as head has it.
        METADATA.create_all(connection, checkfirst=True)
        after = layout(connection)
        connection.commit()
    return changes(before, after)
