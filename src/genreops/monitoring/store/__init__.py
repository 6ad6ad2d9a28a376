"""The monitoring store: every served prediction, every drift test and every model event, in SQL.

SQLite under ``GENREOPS_HOME`` by default, PostgreSQL by URL. Five tables: ``predictions``,
``drift_tests``, ``model_events``, ``labels`` (the ground truth, by clip id) and ``alerts``
(every alert notification the monitor received). One module
per concern:

=============  ==============================================================================
``schema``     the tables (SQLAlchemy Core), their column types, ids, times and JSON values
``rows``       rows checked and normalised field by field before they are stored or spooled
``database``   ``MonitoringStore``: connect, ``ensure_schema``, idempotent inserts, queries
``migrate``    Alembic: the revisions in ``migrations/`` bring any database to head in place
``spool``      rows kept on disk while the database is away, replayed when it is back
``writer``     ``MonitoringWriter``: the inference service's non-blocking, never-dropping writer
=============  ==============================================================================

The names below are the public API; import them from here.
"""

from genreops.monitoring.store.database import MonitoringStore, redact
from genreops.monitoring.store.errors import (
    InvalidRowError,
    MonitoringError,
    MonitoringUnavailableError,
)
from genreops.monitoring.store.rows import prepare_row, with_identity
from genreops.monitoring.store.schema import (
    ALERTS,
    ALERTS_TABLE,
    DRIFT_TESTS,
    DRIFT_TESTS_TABLE,
    LABELS,
    LABELS_TABLE,
    METADATA,
    MODEL_EVENTS,
    MODEL_EVENTS_TABLE,
    PREDICTIONS,
    PREDICTIONS_TABLE,
    TABLE_NAMES,
    JSONText,
    UTCDateTime,
    dump_json,
    new_id,
    to_utc,
    utc_now,
)
from genreops.monitoring.store.spool import (
    REJECTED_GLOB,
    SPOOL_GLOB,
    ReplayReport,
    SpoolStatus,
    replay_spool,
    spool_status,
)
from genreops.monitoring.store.writer import MonitoringWriter, WriterStats

__all__ = [
    "ALERTS",
    "ALERTS_TABLE",
    "DRIFT_TESTS",
    "DRIFT_TESTS_TABLE",
    "LABELS",
    "LABELS_TABLE",
    "METADATA",
    "MODEL_EVENTS",
    "MODEL_EVENTS_TABLE",
    "PREDICTIONS",
    "PREDICTIONS_TABLE",
    "REJECTED_GLOB",
    "SPOOL_GLOB",
    "TABLE_NAMES",
    "InvalidRowError",
    "JSONText",
    "MonitoringError",
    "MonitoringStore",
    "MonitoringUnavailableError",
    "MonitoringWriter",
    "ReplayReport",
    "SpoolStatus",
    "UTCDateTime",
    "WriterStats",
    "dump_json",
    "new_id",
    "prepare_row",
    "redact",
    "replay_spool",
    "spool_status",
    "to_utc",
    "utc_now",
    "with_identity",
]
