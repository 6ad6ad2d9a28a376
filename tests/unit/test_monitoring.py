"""The monitoring store on SQLite, and the writer's queue, spool and replay on real faults."""

from __future__ import annotations

import fcntl
import json
import multiprocessing
import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from genreops.core.errors import GenreopsError
from genreops.monitoring.store import (
    DRIFT_TESTS,
    MODEL_EVENTS,
    PREDICTIONS,
    InvalidRowError,
    MonitoringError,
    MonitoringStore,
    MonitoringUnavailableError,
    MonitoringWriter,
    replay_spool,
    spool_status,
)
from helpers import ensure_schema_at_once, free_port

pytestmark = pytest.mark.unit


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def prediction(i: int, **extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "clip_id": f"clip-{i}.wav",
        "genre": "pop",
        "confidence": 0.7,
        "probabilities": {"pop": 0.7, "rock": 0.3},
        "model_version": "genre-classifier/3",
        "model_role": "champion",
        "drift_gate_open": False,
        "latency_ms": 12.5,
        "repository_version": 3,
    }
    row.update(extra)
    return row


def drift_test(**extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "window_size": 200,
        "drifted_share": 0.6,
        "dataset_drift": True,
        "gate_open": True,
        "column_scores": {"tempo": 0.01, "mfcc_1": 0.3},
        "reference": "s3://bucket/reference.parquet",
        "seconds": 9.5,
    }
    row.update(extra)
    return row


def stored_ids(store: MonitoringStore) -> list[str]:
    with store.engine.connect() as conn:
        return [r[0] for r in conn.exec_driver_sql("SELECT request_id FROM predictions")]


def spool_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("spool-*.jsonl"))


def wait_until(condition: Any, timeout: float = 60.0) -> bool:
    """Bounded wait for a background effect (not a speed check: the bound is generous)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
def store(tmp_path: Path) -> Any:
    with MonitoringStore(sqlite_url(tmp_path / "db" / "monitoring.db")) as created:
        created.ensure_schema()
        yield created


# -- schema


def test_ensure_schema_creates_everything_once(tmp_path: Path) -> None:
    store = MonitoringStore(sqlite_url(tmp_path / "new" / "folder" / "m.db"))
    changes = store.ensure_schema()
    assert {"created table predictions", "created table drift_tests"} <= set(changes)
    assert "created table model_events" in changes
    assert store.ensure_schema() == []
    assert [store.count(t) for t in (PREDICTIONS, DRIFT_TESTS, MODEL_EVENTS)] == [0, 0, 0]
    with store.engine.connect() as conn:
        mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
        busy = conn.exec_driver_sql("PRAGMA busy_timeout").scalar()
    assert mode == "wal"
    assert busy == 30_000


def test_an_old_table_gets_its_missing_columns_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # an earlier layout: fewer columns, no indexes
        conn.execute(
            "CREATE TABLE predictions (id INTEGER PRIMARY KEY AUTOINCREMENT, "
            "request_id VARCHAR(128) NOT NULL, served_at DATETIME NOT NULL, "
            "clip_id VARCHAR(512) NOT NULL, genre VARCHAR(128) NOT NULL, confidence FLOAT, "
            "model_version VARCHAR(256) NOT NULL)"
        )
        conn.executemany(
            "INSERT INTO predictions (request_id, served_at, clip_id, genre, confidence, "
            "model_version) VALUES (?, '2026-01-01 10:00:00.000000', 'a.wav', 'jazz', 0.9, "
            "'genre-classifier/1')",
            [("old-1",), ("old-2",)],
        )
    store = MonitoringStore(sqlite_url(path))
    changes = store.ensure_schema()
    for column in ("probabilities", "latency_ms", "drift_gate_open", "repository_version"):
        assert f"added column predictions.{column}" in changes
    assert "created index uq_predictions_request_id" in changes
    assert "created table drift_tests" in changes
    assert store.ensure_schema() == []
    assert store.count(PREDICTIONS) == 2
    old = {row["request_id"]: row for row in store.recent_predictions(10)}
    assert old["old-1"]["genre"] == "jazz"
    assert old["old-1"]["served_at"] == datetime(2026, 1, 1, 10, tzinfo=UTC)
    assert old["old-1"]["latency_ms"] is None
    # the new columns work, and the unique index makes old ids idempotent too
    store.insert_predictions([prediction(1, request_id="new-1"), prediction(2, request_id="old-1")])
    assert store.count(PREDICTIONS) == 3
    assert {r["request_id"]: r for r in store.recent_predictions(10)}["new-1"]["latency_ms"] == 12.5


def test_concurrent_ensure_schema_calls_all_succeed(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "race.db")
    _, errors = ensure_schema_at_once(url)
    assert errors == []
    store = MonitoringStore(url)
    assert store.ensure_schema() == []
    store.insert_predictions([prediction(1)])
    assert store.count(PREDICTIONS) == 1


# -- rows


def test_inserts_counts_and_queries(store: MonitoringStore) -> None:
    base = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    store.insert_predictions(
        [
            prediction(1, served_at=base, request_id="a"),
            prediction(2, served_at=base + timedelta(seconds=1), request_id="b"),
            # what a Triton model naturally holds: numpy values, bytes, a naive UTC timestamp
            {
                "request_id": "c",
                "served_at": datetime(2026, 11, 23, 12, 0, 2),
                "clip_id": b"x" * 600,
                "genre": "rock",
                "confidence": np.float32(0.25),
                "probabilities": {"rock": np.float32(0.25), "pop": float("nan")},
                "model_version": "genre-classifier/4",
                "model_role": "challenger",
                "drift_gate_open": np.bool_(True),
                "latency_ms": np.float64(3.0),
                "repository_version": np.int64(4),
            },
        ]
    )
    store.insert_drift_tests([drift_test(tested_at=base)])
    store.insert_model_events(
        [
            {"event": "publish", "repository_version": 3, "champion": "g/3", "at": base},
            {"event": "rollback", "repository_version": 2, "detail": {"reason": "drill"}},
        ]
    )
    assert [store.count(t) for t in (PREDICTIONS, DRIFT_TESTS, MODEL_EVENTS)] == [3, 1, 2]

    recent = store.recent_predictions(2)
    assert [row["request_id"] for row in recent] == ["c", "b"]
    newest = recent[0]
    assert newest["served_at"] == base + timedelta(seconds=2)
    assert newest["served_at"].tzinfo is not None
    assert newest["clip_id"] == "x" * 512  # truncated, not refused
    assert newest["probabilities"] == {"rock": 0.25, "pop": None}
    assert newest["drift_gate_open"] is True
    assert newest["repository_version"] == 4

    (test,) = store.recent_drift_tests(5)
    assert test["column_scores"] == {"tempo": 0.01, "mfcc_1": 0.3}
    assert test["dataset_drift"] is True
    assert len(test["test_id"]) == 32  # a uuid4 hex was given

    events = store.model_events()
    assert [e["event"] for e in events] == ["publish", "rollback"]  # oldest first
    assert events[1]["detail"] == {"reason": "drill"}
    assert events[1]["at"] > base
    assert [e["event"] for e in store.model_events(limit=1)] == ["rollback"]


def test_replaying_the_same_rows_stores_them_once(store: MonitoringStore) -> None:
    predictions = [prediction(i, request_id=f"r-{i}") for i in range(50)]
    tests = [drift_test(test_id=f"t-{i}") for i in range(3)]
    events = [{"event": "publish", "event_id": "e-1"}]
    for _ in range(2):
        store.insert_predictions(predictions)
        store.insert_drift_tests(tests)
        store.insert_model_events(events)
    assert [store.count(t) for t in (PREDICTIONS, DRIFT_TESTS, MODEL_EVENTS)] == [50, 3, 1]


@pytest.mark.parametrize(
    ("row", "field"),
    [
        (prediction(1, confidence="high"), "confidence"),
        (prediction(1, drift_gate_open="yes"), "drift_gate_open"),
        (prediction(1, repository_version=2.5), "repository_version"),
        (prediction(1, served_at="yesterday"), "served_at"),
        ({"genre": "pop"}, "model_version is missing"),
        (prediction(1, probabilities="{not json"), "probabilities"),
    ],
)
def test_rows_of_the_wrong_shape_are_refused_by_name(
    store: MonitoringStore, row: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidRowError, match=field):
        store.insert_predictions([row])
    assert store.count(PREDICTIONS) == 0


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "cannot be parsed"),
        ("mysql://user:hunter2@host/db", "unsupported database"),
        ("postgresql+asyncpg://user:hunter2@host/db", "unsupported database"),
        ("postgresql+nosuchdriver://user:hunter2@host/db", "cannot use this URL"),
    ],
)
def test_an_unusable_url_is_a_friendly_error(url: str, message: str) -> None:
    with pytest.raises(MonitoringError, match=message) as caught:
        MonitoringStore(url)
    assert isinstance(caught.value, GenreopsError)
    assert "hunter2" not in str(caught.value)


def test_an_unknown_table_is_named(store: MonitoringStore) -> None:
    with pytest.raises(MonitoringError, match="unknown monitoring table 'nope'"):
        store.count("nope")


# -- writer


def test_the_writer_stores_everything_submitted_from_several_threads(
    store: MonitoringStore, tmp_path: Path
) -> None:
    writer = MonitoringWriter(store, tmp_path / "spool", batch_size=100, flush_interval=0.05)
    ids: list[list[str]] = [[] for _ in range(4)]

    def produce(k: int) -> None:
        ids[k].extend(writer.submit_prediction(prediction(i)) for i in range(500))

    threads = [threading.Thread(target=produce, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.submit_drift_test(drift_test())
    writer.submit_model_event({"event": "publish", "repository_version": 1})
    assert writer.flush(timeout=60)
    submitted = [i for part in ids for i in part]
    assert len(set(submitted)) == 2000
    assert sorted(stored_ids(store)) == sorted(submitted)
    assert store.count(DRIFT_TESTS) == 1
    assert store.count(MODEL_EVENTS) == 1
    stats = writer.stats()
    assert (stats.submitted, stats.stored, stats.spooled, stats.rejected) == (2002, 2002, 0, 0)
    assert writer.close()
    assert spool_files(tmp_path / "spool") == []


def _process_writer(url: str, spool: str, worker: int, rows: int) -> None:
    writer = MonitoringWriter(url, spool, batch_size=50, flush_interval=0.02)
    for i in range(rows):
        writer.submit_prediction(prediction(i, request_id=f"w{worker}-{i}"))
        if i % 100 == 0:
            time.sleep(0.01)  # interleave the two processes' transactions
    if not writer.close(timeout=120):
        raise SystemExit(3)
    if writer.stored != rows:
        raise SystemExit(4)


def test_two_processes_write_one_sqlite_file(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "shared.db")
    MonitoringStore(url).ensure_schema()
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_process_writer, args=(url, str(tmp_path / "spool"), k, 1500))
        for k in (1, 2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
    assert [w.exitcode for w in workers] == [0, 0]
    store = MonitoringStore(url)
    assert store.count(PREDICTIONS) == 3000
    assert len(set(stored_ids(store))) == 3000


def test_a_full_queue_spools_instead_of_dropping(store: MonitoringStore, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    writer = MonitoringWriter(store, spool, queue_size=4, batch_size=2, flush_interval=0.01)
    blocker = sqlite3.connect(str(store.url.database), isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock: writer waits
    ids: list[str] = []
    try:
        for i in range(5000):
            ids.append(writer.submit_prediction(prediction(i)))
            if writer.spooled >= 10:
                break
            time.sleep(0.001)
        assert writer.spooled >= 10, "the queue never filled"
        assert writer.stored == 0
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert writer.flush(timeout=60, replay=True)
    assert sorted(stored_ids(store)) == sorted(ids)
    assert writer.replayed >= writer.spooled
    assert writer.stored + writer.spooled == len(ids)
    assert spool_files(spool) == []
    writer.close()


def test_an_unreachable_database_spools_then_replays(tmp_path: Path) -> None:
    path = tmp_path / "not-mounted-yet" / "monitoring.db"
    spool = tmp_path / "spool"
    writer = MonitoringWriter(
        sqlite_url(path), spool, batch_size=50, flush_interval=0.02, max_backoff=0.2
    )
    ids = [writer.submit_prediction(prediction(i)) for i in range(300)]
    ids.append(writer.submit_drift_test(drift_test()))
    assert writer.flush(timeout=60)
    assert (writer.stored, writer.spooled) == (0, 301)
    assert not writer.stats().database_up
    assert spool_status(spool).rows == 301
    assert not path.parent.exists()  # the writer never creates the folder itself

    path.parent.mkdir()  # the volume appears
    assert writer.flush(timeout=60, replay=True)
    store = MonitoringStore(sqlite_url(path))
    assert store.count(PREDICTIONS) == 300
    assert store.count(DRIFT_TESTS) == 1
    assert sorted(stored_ids(store)) == sorted(ids[:300])
    assert writer.replayed == 301
    assert writer.stats().database_up
    assert spool_files(spool) == []
    # later rows go straight in
    writer.submit_prediction(prediction(999))
    assert writer.close()
    assert store.count(PREDICTIONS) == 301


def test_a_postgres_url_to_a_closed_port_spools_and_says_why(tmp_path: Path) -> None:
    url = f"postgresql://user:hunter2@127.0.0.1:{free_port()}/monitoring"
    store = MonitoringStore(url, connect_timeout=2)
    with pytest.raises(MonitoringUnavailableError, match="cannot count predictions") as caught:
        store.count(PREDICTIONS)
    assert "hunter2" not in str(caught.value)
    with pytest.raises(MonitoringUnavailableError):
        store.ensure_schema()
    spool = tmp_path / "spool"
    writer = MonitoringWriter(store, spool, flush_interval=0.02, max_backoff=0.2)
    for i in range(50):
        writer.submit_prediction(prediction(i))
    assert writer.flush(timeout=60)
    assert (writer.stored, writer.spooled, writer.rejected) == (0, 50, 0)
    assert not writer.flush(timeout=1, replay=True)  # still down: nothing replayed
    writer.close(timeout=5)
    assert spool_status(spool, store).rows == 50


def test_bad_rows_are_rejected_and_the_rest_keeps_flowing(
    store: MonitoringStore, tmp_path: Path
) -> None:
    with store.engine.begin() as conn:  # a refusal by the database itself, for one row
        conn.exec_driver_sql(
            "CREATE TRIGGER refuse_forbidden BEFORE INSERT ON predictions "
            "WHEN NEW.genre = 'forbidden' BEGIN SELECT RAISE(ABORT, 'forbidden genre'); END"
        )
    spool = tmp_path / "spool"
    writer = MonitoringWriter(store, spool, batch_size=100, flush_interval=0.2)
    good = [writer.submit_prediction(prediction(i)) for i in range(5)]
    writer.submit_prediction(prediction(5, confidence="high"))  # wrong type
    not_a_row: Any = 42
    writer.submit_prediction(not_a_row)  # not a row at all
    writer.submit_prediction(prediction(6, genre="forbidden"))  # refused by the database
    good += [writer.submit_prediction(prediction(i)) for i in range(7, 10)]
    assert writer.flush(timeout=60)
    assert sorted(stored_ids(store)) == sorted(good)
    assert (writer.stored, writer.rejected, writer.spooled) == (8, 3, 0)
    rejected = [
        json.loads(line)
        for path in spool.glob("rejected-*.jsonl")
        for line in path.read_text().splitlines()
    ]
    errors = " | ".join(r["error"] for r in rejected)
    assert len(rejected) == 3
    assert "confidence must be a number" in errors
    assert "must be a mapping" in errors
    assert "forbidden genre" in errors
    # the thread survived all of that
    writer.submit_prediction(prediction(11))
    assert writer.close()
    assert store.count(PREDICTIONS) == 9


def test_spool_files_are_replayed_by_whoever_can_lock_them(tmp_path: Path) -> None:
    path = tmp_path / "later" / "m.db"
    spool = tmp_path / "spool"
    # a writer that ran while the database was away, then ended (or died)
    first = MonitoringWriter(sqlite_url(path), spool, flush_interval=0.02, max_backoff=0.2)
    ids = [first.submit_prediction(prediction(i)) for i in range(40)]
    assert first.flush(timeout=60)
    first.close(timeout=5)
    (left,) = spool_files(spool)

    path.parent.mkdir()
    store = MonitoringStore(sqlite_url(path))
    with left.open() as held:  # a live process holds it: nobody else may replay it
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        report = replay_spool(store, spool)
        assert (report.files, report.busy) == (0, 1)
        assert left.exists()
        assert store.count(PREDICTIONS) == 0
    report = replay_spool(store, spool)
    assert (report.files, report.rows, report.busy) == (1, 40, 0)
    assert sorted(stored_ids(store)) == sorted(ids)
    assert spool_files(spool) == []
    # a spool file for another database in the same folder is left alone
    other = MonitoringWriter(
        sqlite_url(tmp_path / "elsewhere" / "x.db"), spool, flush_interval=0.02, max_backoff=5
    )
    other.submit_prediction(prediction(1))
    other.flush(timeout=60)
    other.close(timeout=5)
    assert replay_spool(store, spool).files == 0
    assert len(spool_files(spool)) == 1


def test_a_new_writer_replays_what_a_previous_process_left(tmp_path: Path) -> None:
    path = tmp_path / "later" / "m.db"
    spool = tmp_path / "spool"
    first = MonitoringWriter(sqlite_url(path), spool, flush_interval=0.02, max_backoff=0.2)
    ids = [first.submit_prediction(prediction(i)) for i in range(30)]
    first.close(timeout=30)
    # a line cut short by a crash must not stop the replay of the others
    (left,) = spool_files(spool)
    with left.open("a") as handle:
        handle.write('{"table": "predictions", "row": {"genre": "po')
    path.parent.mkdir()
    second = MonitoringWriter(sqlite_url(path), spool, flush_interval=0.02)
    assert second.flush(timeout=60, replay=True)
    store = MonitoringStore(sqlite_url(path))
    assert sorted(stored_ids(store)) == sorted(ids)
    assert second.replayed == 30
    assert second.rejected == 1
    assert spool_files(spool) == []
    second.close()


def test_close_flushes_and_later_rows_are_spooled_not_lost(
    store: MonitoringStore, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    writer = MonitoringWriter(store, spool, flush_interval=5.0)  # long linger: close must cut it
    for i in range(20):
        writer.submit_prediction(prediction(i))
    assert writer.close(timeout=30)
    assert store.count(PREDICTIONS) == 20
    late = writer.submit_prediction(prediction(99))
    assert writer.spooled == 1
    assert replay_spool(store, spool).rows == 1
    assert late in stored_ids(store)
