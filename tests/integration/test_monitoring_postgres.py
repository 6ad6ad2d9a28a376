"""The monitoring store on a real PostgreSQL, and the writer through a real outage.

A TCP proxy (a thread here) stands between the writer and PostgreSQL; stopping it closes the
listener and every connection, which is what the writer sees when the database host goes away.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from genreops.monitoring.store import (
    DRIFT_TESTS,
    METADATA,
    MODEL_EVENTS,
    PREDICTIONS,
    TABLE_NAMES,
    MonitoringStore,
    MonitoringWriter,
    spool_status,
)
from genreops.monitoring.store.migrate import head_revision
from helpers import TcpProxy, ensure_schema_at_once, free_port, postgres_url
from legacy_store import GATE_COLUMNS, LEGACY_TABLES, first_release, insert_rows, today

pytestmark = pytest.mark.integration


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    created = TcpProxy(free_port())
    try:
        yield created
    finally:
        created.stop()


def prediction(i: int) -> dict[str, Any]:
    return {
        "clip_id": f"clip-{i}.wav",
        "genre": "metal",
        "confidence": 0.8,
        "probabilities": {"metal": 0.8, "pop": 0.2},
        "model_version": "genre-classifier/2",
        "model_role": "champion",
        "drift_gate_open": False,
        "latency_ms": 4.0,
        "repository_version": 2,
    }


def request_ids(schema: str) -> list[str]:
    """Read straight from PostgreSQL, not through the proxy or the writer's store."""
    direct = MonitoringStore(postgres_url(schema))
    try:
        with direct.engine.connect() as conn:
            return [r[0] for r in conn.exec_driver_sql("SELECT request_id FROM predictions")]
    finally:
        direct.close()


def wait_until(condition: Callable[[], bool], timeout: float = 60.0) -> bool:
    """Bounded wait for a background effect (not a speed check: the bound is generous)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_schema_inserts_and_idempotent_replay(make_schema: Callable[[], str]) -> None:
    schema = make_schema()
    with MonitoringStore(postgres_url(schema)) as store:
        assert len(store.ensure_schema()) == len(TABLE_NAMES)
        assert store.ensure_schema() == []
        rows = [dict(prediction(i), request_id=f"r-{i}") for i in range(1200)]
        store.insert_predictions(rows)
        store.insert_predictions(rows)  # a replay
        store.insert_drift_tests(
            [
                {
                    "test_id": "t-1",
                    "window_size": 200,
                    "drifted_share": 0.7,
                    "dataset_drift": True,
                    "gate_open": True,
                    "column_scores": {"tempo": 0.001},
                    "seconds": 8.5,
                }
            ]
            * 2
        )
        store.insert_model_events([{"event": "publish", "event_id": "e-1", "champion": "g/2"}] * 2)
        assert [store.count(t) for t in (PREDICTIONS, DRIFT_TESTS, MODEL_EVENTS)] == [1200, 1, 1]
        newest = store.recent_predictions(1)[0]
        assert newest["probabilities"] == {"metal": 0.8, "pop": 0.2}
        assert newest["served_at"].utcoffset().total_seconds() == 0
        assert store.recent_drift_tests(1)[0]["column_scores"] == {"tempo": 0.001}
        assert store.model_events()[0]["champion"] == "g/2"


def test_labels_join_predictions_by_clip_latest_first(
    make_schema: Callable[[], str], tmp_path: Path
) -> None:
    """Ground truth on PostgreSQL: the latest label of each clip, joined to its predictions."""
    from genreops.monitoring.feedback import record_labels

    spool = tmp_path / "spool"
    with MonitoringStore(postgres_url(make_schema())) as store:
        store.ensure_schema()
        store.insert_predictions([prediction(i) for i in range(3)])
        first = record_labels(store, spool, [("clip-0.wav", "rock"), ("nope.wav", "pop")], "a")
        assert (first.stored, first.unknown) == (2, ["nope.wav"])
        time.sleep(0.01)  # a later label of the same clip wins
        record_labels(store, spool, [("clip-0.wav", "metal"), ("clip-2.wav", "jazz")], "b")
        joined = {row["clip_id"]: row["true_genre"] for row in store.labeled_predictions()}
        assert joined == {"clip-0.wav": "metal", "clip-2.wav": "jazz"}
        assert store.latest_labels() == {"clip-0.wav": "metal", "clip-2.wav": "jazz",
                                         "nope.wav": "pop"}  # fmt: skip


def test_an_old_table_gets_its_missing_columns(make_schema: Callable[[], str]) -> None:
    schema = make_schema()
    with MonitoringStore(postgres_url(schema)) as store:
        with store.engine.begin() as conn:
            conn.exec_driver_sql(
                "CREATE TABLE predictions (id BIGSERIAL PRIMARY KEY, request_id VARCHAR(128) "
                "NOT NULL, served_at TIMESTAMPTZ NOT NULL, clip_id VARCHAR(512) NOT NULL, "
                "genre VARCHAR(128) NOT NULL, model_version VARCHAR(256) NOT NULL)"
            )
            conn.exec_driver_sql(
                "INSERT INTO predictions (request_id, served_at, clip_id, genre, model_version) "
                "VALUES ('old-1', now(), '', 'jazz', 'g/1')"
            )
        changes = store.ensure_schema()
        assert "added column predictions.probabilities" in changes
        assert "created index uq_predictions_request_id" in changes
        assert store.ensure_schema() == []
        store.insert_predictions([dict(prediction(1), request_id="old-1"), prediction(2)])
        assert store.count(PREDICTIONS) == 2
        assert {r["genre"] for r in store.recent_predictions(5)} == {"jazz", "metal"}


def test_concurrent_ensure_schema_calls_all_succeed(make_schema: Callable[[], str]) -> None:
    schema = make_schema()
    _, errors = ensure_schema_at_once(postgres_url(schema))
    assert errors == []
    with MonitoringStore(postgres_url(schema)) as store:
        assert store.ensure_schema() == []


def test_an_outage_mid_stream_loses_and_duplicates_nothing(
    make_schema: Callable[[], str], proxy: TcpProxy, tmp_path: Path
) -> None:
    schema = make_schema()
    proxy.start()
    spool = tmp_path / "spool"
    store = MonitoringStore(postgres_url(schema, proxy.port), connect_timeout=2)
    store.ensure_schema()
    writer = MonitoringWriter(store, spool, batch_size=50, flush_interval=0.05, max_backoff=0.5)
    ids: list[str] = []

    def stream(count: int) -> None:
        for _ in range(count):
            ids.append(writer.submit_prediction(prediction(len(ids))))
            time.sleep(0.001)

    stream(300)
    assert wait_until(lambda: writer.stored > 0), "nothing reached PostgreSQL through the proxy"

    proxy.stop()  # the database host goes away mid-stream
    stream(500)
    assert wait_until(lambda: writer.spooled > 0), "the outage was never noticed"
    stream(200)
    assert writer.flush(timeout=60)  # everything is stored or spooled, nothing waits in memory
    assert not writer.stats().database_up
    assert spool_status(spool, store).rows == writer.spooled

    proxy.start()  # same port: the database is back
    stream(300)
    assert writer.flush(timeout=120, replay=True)
    stored = request_ids(schema)
    assert len(ids) == 1300
    assert len(stored) == len(set(stored)) == len(ids)  # stored == submitted, no duplicates
    assert set(stored) == set(ids)
    stats = writer.stats()
    assert stats.spooled > 0
    assert stats.replayed >= stats.spooled
    assert stats.stored + stats.spooled == len(ids)
    assert stats.rejected == stats.lost == 0
    assert proxy.connections >= 2  # reconnected after the outage
    assert spool_status(spool, store).files == 0
    assert writer.close()
    store.close()


def test_a_writer_started_while_the_database_is_away(
    make_schema: Callable[[], str], proxy: TcpProxy, tmp_path: Path
) -> None:
    schema = make_schema()  # empty: the writer creates the tables once it gets through
    spool = tmp_path / "spool"
    writer = MonitoringWriter(
        postgres_url(schema, proxy.port), spool, batch_size=50, flush_interval=0.02, max_backoff=0.5
    )
    ids = [writer.submit_prediction(prediction(i)) for i in range(200)]
    writer.submit_model_event({"event": "publish", "repository_version": 2})
    assert writer.flush(timeout=60)
    assert (writer.stored, writer.spooled) == (0, 201)

    proxy.start()
    assert writer.flush(timeout=120, replay=True)
    assert sorted(request_ids(schema)) == sorted(ids)
    with MonitoringStore(postgres_url(schema)) as store:
        assert store.count(MODEL_EVENTS) == 1
    assert writer.replayed == 201
    assert writer.close()


# --- the schema's Alembic revisions on PostgreSQL ----------------------------------------------


def _rows(store: MonitoringStore, columns: dict[str, list[str]]) -> dict[str, list[tuple]]:
    """Every row of the three tables as PostgreSQL holds it (the given columns)."""
    with store.engine.connect() as conn:
        return {
            table: [
                tuple(row)
                for row in conn.exec_driver_sql(
                    f"SELECT {', '.join(names)} FROM {table} ORDER BY id"
                )
            ]
            for table, names in columns.items()
        }


def _columns(store: MonitoringStore) -> dict[str, list[str]]:
    from sqlalchemy import inspect

    inspector = inspect(store.engine)
    return {t: [c["name"] for c in inspector.get_columns(t)] for t in LEGACY_TABLES}


def _legacy(store: MonitoringStore, statements: list[str]) -> None:
    from sqlalchemy import text

    with store.engine.begin() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)
        insert_rows(lambda sql, values: conn.execute(text(sql), values), "postgresql")


def test_a_fresh_schema_is_at_head_and_matches_the_code(make_schema: Callable[[], str]) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with MonitoringStore(postgres_url(make_schema())) as store:
        store.ensure_schema()
        with store.engine.connect() as conn:
            context = MigrationContext.configure(conn)
            assert context.get_current_revision() == head_revision()
            assert compare_metadata(context, METADATA) == []


@pytest.mark.parametrize("layout", ["today", "first release"])
def test_a_schema_made_before_alembic_upgrades_in_place(
    make_schema: Callable[[], str], layout: str
) -> None:
    schema = make_schema()
    statements = today("postgresql") if layout == "today" else first_release("postgresql")
    with MonitoringStore(postgres_url(schema)) as store:
        _legacy(store, statements)
        old_columns = _columns(store)
        before = _rows(store, old_columns)
        assert [len(before[t]) for t in (PREDICTIONS, DRIFT_TESTS, MODEL_EVENTS)] == [3, 1, 1]

    # several processes open the old database at once; one of them upgrades it
    results, errors = ensure_schema_at_once(postgres_url(schema))
    assert errors == []
    added = sorted(f"added column {t}.{c}" for t, names in GATE_COLUMNS.items() for c in names)
    expected = sorted(
        ["created table alerts", "created table labels", *([] if layout == "today" else added)]
    )
    assert sorted(sorted(r) for r in results) == [[]] * 3 + [expected]  # said once

    with MonitoringStore(postgres_url(schema)) as store:
        assert _rows(store, old_columns) == before  # every row, every value, as it was
        for table, names in GATE_COLUMNS.items():
            assert set(names) <= set(_columns(store)[table])
        with store.engine.connect() as conn:
            stamped = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars()
            assert list(stamped) == [head_revision()]
        old = {r["request_id"]: r for r in store.recent_predictions(10)}
        assert old["old-1"]["probabilities"] == {"rock": 0.75, "jazz": 0.25}
        assert old["old-1"]["served_at"] == datetime(2026, 11, 30, 10, 0, 1, 250000, tzinfo=UTC)
        store.insert_predictions(
            [dict(prediction(9), request_id="old-0"), dict(prediction(10), ood=True, ood_score=2.0)]
        )
        assert store.count(PREDICTIONS) == 4
        assert max(r["ood_score"] or 0 for r in store.recent_predictions(10)) == 2.0
        assert store.ensure_schema() == []
