"""The monitoring store on a real PostgreSQL, and the writer through a real outage.

A TCP proxy (a thread here) stands between the writer and PostgreSQL; stopping it closes the
listener and every connection, which is what the writer sees when the database host goes away.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from genreops.monitoring import (
    DRIFT_TESTS,
    MODEL_EVENTS,
    PREDICTIONS,
    MonitoringStore,
    MonitoringWriter,
    spool_status,
)
from helpers import free_port

pytestmark = pytest.mark.integration

HOST, PORT = "127.0.0.1", 5432
SERVER = f"postgresql://postgres@{HOST}:{PORT}"
DATABASE = "genreops_test"  # created once, never dropped; each session uses its own schemas


def _server_or_skip() -> Any:
    psycopg2 = pytest.importorskip("psycopg2")
    try:
        connection = psycopg2.connect(f"{SERVER}/postgres", connect_timeout=5)
    except psycopg2.OperationalError as error:
        pytest.skip(f"no PostgreSQL at {HOST}:{PORT} (user postgres): {error}")
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
        if cursor.fetchone() is None:
            with contextlib.suppress(psycopg2.errors.DuplicateDatabase):  # a racing session
                cursor.execute(f'CREATE DATABASE "{DATABASE}"')  # fixed identifier, not input
    connection.close()
    return psycopg2


@pytest.fixture(scope="module")
def make_schema() -> Iterator[Callable[[], str]]:
    """Fresh schemas ``test_<session>_<n>`` in genreops_test; only those are dropped afterwards."""
    psycopg2 = _server_or_skip()
    connection = psycopg2.connect(f"{SERVER}/{DATABASE}", connect_timeout=5)
    connection.autocommit = True
    session = uuid.uuid4().hex[:10]
    made: list[str] = []

    def make() -> str:
        name = f"test_{session}_{len(made)}"
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE SCHEMA "{name}"')  # generated identifier
        made.append(name)
        return name

    try:
        yield make
    finally:
        with connection.cursor() as cursor:
            for name in made:
                cursor.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        connection.close()


def url(schema: str, port: int = PORT) -> str:
    return f"postgresql://postgres@{HOST}:{port}/{DATABASE}?options=-csearch_path%3D{schema}"


class TcpProxy:
    """Forwards 127.0.0.1:port to PostgreSQL; ``stop`` drops the listener and every connection."""

    def __init__(self, port: int, target: tuple[str, int] = (HOST, PORT)) -> None:
        self.port = port
        self.target = target
        self.connections = 0
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((HOST, self.port))
        listener.listen(64)
        self._listener = listener
        self._acceptor = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._acceptor.start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
                self.connections += 1
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept() on Linux
            self._listener.close()
            self._listener = None
        if self._acceptor is not None:
            self._acceptor.join(timeout=10)
            self._acceptor = None
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for end in sockets:
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()


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
    direct = MonitoringStore(url(schema))
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
    with MonitoringStore(url(schema)) as store:
        assert len(store.ensure_schema()) == 3
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


def test_an_old_table_gets_its_missing_columns(make_schema: Callable[[], str]) -> None:
    schema = make_schema()
    with MonitoringStore(url(schema)) as store:
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
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def run() -> None:
        store = MonitoringStore(url(schema))
        try:
            barrier.wait()
            store.ensure_schema()
        except BaseException as error:
            errors.append(error)
        finally:
            store.close()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with MonitoringStore(url(schema)) as store:
        assert store.ensure_schema() == []


def test_an_outage_mid_stream_loses_and_duplicates_nothing(
    make_schema: Callable[[], str], proxy: TcpProxy, tmp_path: Path
) -> None:
    schema = make_schema()
    proxy.start()
    spool = tmp_path / "spool"
    store = MonitoringStore(url(schema, proxy.port), connect_timeout=2)
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
        url(schema, proxy.port), spool, batch_size=50, flush_interval=0.02, max_backoff=0.5
    )
    ids = [writer.submit_prediction(prediction(i)) for i in range(200)]
    writer.submit_model_event({"event": "publish", "repository_version": 2})
    assert writer.flush(timeout=60)
    assert (writer.stored, writer.spooled) == (0, 201)

    proxy.start()
    assert writer.flush(timeout=120, replay=True)
    assert sorted(request_ids(schema)) == sorted(ids)
    with MonitoringStore(url(schema)) as store:
        assert store.count(MODEL_EVENTS) == 1
    assert writer.replayed == 201
    assert writer.close()
