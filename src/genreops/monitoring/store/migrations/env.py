"""Alembic's environment for the monitoring store's revisions.

``genreops.monitoring.store.migrate.upgrade`` passes its own connection, already inside the
locked transaction the revisions run in. Run by hand (``alembic.command`` with
``migrate.alembic_config(url=...)``), a connection is made from ``sqlalchemy.url``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine, pool

from genreops.monitoring.store.schema import METADATA

config = context.config


def run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=METADATA)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit(
        "the monitoring store's baseline revision looks at the database it adopts: "
        "offline (--sql) mode is not supported"
    )
given = config.attributes.get("connection")
if given is not None:
    run(given)
else:
    engine = create_engine(str(config.get_main_option("sqlalchemy.url")), poolclass=pool.NullPool)
    with engine.connect() as connection:
        run(connection)
        connection.commit()
