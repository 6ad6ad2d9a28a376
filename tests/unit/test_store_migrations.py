"""The monitoring store's Alembic revisions on SQLite: fresh databases, databases made before
Alembic (every row kept), revisions this code does not know, and the package data they ship in.
"""

from __future__ import annotations

import fnmatch
import sqlite3
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from genreops.monitoring.store import (
    DRIFT_TESTS,
    METADATA,
    MODEL_EVENTS,
    PREDICTIONS,
    MonitoringError,
    MonitoringStore,
)
from genreops.monitoring.store.migrate import alembic_config, head_revision
from legacy_store import GATE_COLUMNS, LEGACY_TABLES, ROWS, first_release, insert_rows, today

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
STORE_PACKAGE = ROOT / "src" / "genreops" / "monitoring" / "store"


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def legacy_database(path: Path, statements: list[str]) -> dict[str, list[tuple[Any, ...]]]:
    """A database as the store made it before Alembic, with rows; returns every row."""
    with sqlite3.connect(path) as conn:
        for statement in statements:
            conn.execute(statement)
        insert_rows(lambda sql, values: conn.execute(sql, values), "sqlite")
    return raw_rows(path)


def raw_rows(path: Path, columns: dict[str, list[str]] | None = None) -> dict[str, list[tuple]]:
    """Every row of the legacy tables as SQLite holds it (the given columns, or all)."""
    with sqlite3.connect(path) as conn:
        out = {}
        for table in LEGACY_TABLES:
            names = ", ".join(columns[table]) if columns else "*"
            out[table] = conn.execute(f"SELECT {names} FROM {table} ORDER BY id").fetchall()
        return out


def column_names(path: Path) -> dict[str, list[str]]:
    with sqlite3.connect(path) as conn:
        return {
            table: [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
            for table in LEGACY_TABLES
        }


def version(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("SELECT version_num FROM alembic_version")]


def test_a_fresh_database_is_at_head_and_matches_the_code(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    with MonitoringStore(sqlite_url(path)) as store:
        store.ensure_schema()
        with store.engine.connect() as conn:
            context = MigrationContext.configure(conn)
            assert context.get_current_revision() == head_revision()
            # the tables the revisions made are the ones the code reads and writes
            assert compare_metadata(context, METADATA) == []
    assert version(path) == [head_revision()]


@pytest.mark.parametrize("layout", ["today", "first release"])
def test_a_database_made_before_alembic_upgrades_in_place(tmp_path: Path, layout: str) -> None:
    path = tmp_path / "before-alembic.db"
    statements = today("sqlite") if layout == "today" else first_release("sqlite")
    before = legacy_database(path, statements)
    old_columns = column_names(path)
    assert [len(before[t]) for t in (PREDICTIONS, DRIFT_TESTS, MODEL_EVENTS)] == [3, 1, 1]

    with MonitoringStore(sqlite_url(path)) as store:
        changes = store.ensure_schema()
        added = [f"added column {t}.{c}" for t, names in GATE_COLUMNS.items() for c in names]
        created = ["created table alerts", "created table labels"]  # revisions 0002, 0003
        assert sorted(changes) == sorted(created + ([] if layout == "today" else added))
        assert store.ensure_schema() == []

        # every row, every value, exactly as it was
        assert raw_rows(path, old_columns) == before
        assert version(path) == [head_revision()]
        columns = column_names(path)
        for table, names in GATE_COLUMNS.items():
            assert set(names) <= set(columns[table])

        # and the store reads them as it always did
        old = {row["request_id"]: row for row in store.recent_predictions(10)}
        assert old["old-1"]["served_at"] == datetime(2026, 11, 30, 10, 0, 1, 250000, tzinfo=UTC)
        assert old["old-1"]["probabilities"] == {"rock": 0.75, "jazz": 0.25}
        assert old["old-2"]["drift_gate_open"] is True
        assert old["old-1"]["ood"] is None  # a column the row never had
        assert store.recent_drift_tests(1)[0]["column_scores"]["tempo"]["score"] == 0.5
        assert store.model_events()[0]["champion"] == ROWS[MODEL_EVENTS][0]["champion"]

        # new rows use the new columns; old ids stay unique
        store.insert_predictions(
            [
                {"request_id": "new-1", "genre": "jazz", "model_version": "g/4", "ood": True,
                 "ood_score": 1.5},
                {"request_id": "old-0", "genre": "pop", "model_version": "g/4"},
            ]
        )  # fmt: skip
        store.insert_drift_tests(
            [{"window_size": 50, "drifted_share": 0.5, "dataset_drift": True, "gate_open": True,
              "statistic": 1.25, "ood_share": 0.5}]
        )  # fmt: skip
        assert store.count(PREDICTIONS) == 4
        assert store.count(DRIFT_TESTS) == 2
        newest = store.recent_predictions(10)
        assert {r["request_id"]: r for r in newest}["new-1"]["ood_score"] == 1.5
        assert {r["request_id"]: r for r in newest}["old-0"]["genre"] == "rock"


def test_an_older_hand_made_layout_is_completed(tmp_path: Path) -> None:
    """Fewer columns than any release and no indexes: what the inspection upgrade handled."""
    path = tmp_path / "older.db"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE drift_tests (id INTEGER PRIMARY KEY AUTOINCREMENT, test_id "
            "VARCHAR(128) NOT NULL, tested_at DATETIME NOT NULL, window_size INTEGER NOT NULL, "
            "drifted_share FLOAT NOT NULL, dataset_drift BOOLEAN NOT NULL, gate_open BOOLEAN "
            "NOT NULL)"
        )
        conn.execute(
            "INSERT INTO drift_tests (test_id, tested_at, window_size, drifted_share, "
            "dataset_drift, gate_open) VALUES ('t-0', '2026-01-01 00:00:00.000000', 9, 0.5, 1, 0)"
        )
    with MonitoringStore(sqlite_url(path)) as store:
        changes = store.ensure_schema()
        assert "created table predictions" in changes
        assert "created table model_events" in changes
        assert "added column drift_tests.column_scores" in changes
        assert "created index uq_drift_tests_test_id" in changes
        tests = store.recent_drift_tests(5)
        assert [(t["test_id"], t["window_size"], t["dataset_drift"]) for t in tests] == [
            ("t-0", 9, True)
        ]
    assert version(path) == [head_revision()]


def test_a_revision_this_code_does_not_know_is_named_and_nothing_changes(tmp_path: Path) -> None:
    path = tmp_path / "newer.db"
    legacy_database(path, today("sqlite"))
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        conn.execute("INSERT INTO alembic_version VALUES ('9999')")
    before = raw_rows(path)
    with (
        MonitoringStore(sqlite_url(path)) as store,
        pytest.raises(MonitoringError, match=r"revision '9999'.* does not know"),
    ):
        store.ensure_schema()
    assert raw_rows(path) == before
    assert version(path) == ["9999"]


def test_the_baseline_is_never_undone(tmp_path: Path) -> None:
    path = tmp_path / "kept.db"
    with MonitoringStore(sqlite_url(path)) as store:
        store.ensure_schema()
        store.insert_model_events([{"event": "publish"}])
    with pytest.raises(NotImplementedError, match="drop the monitoring data"):
        command.downgrade(alembic_config(url=sqlite_url(path)), "base")
    with MonitoringStore(sqlite_url(path)) as store:
        assert store.count(MODEL_EVENTS) == 1
        assert store.ensure_schema() == []


def test_a_table_dropped_at_head_is_made_again(tmp_path: Path) -> None:
    path = tmp_path / "dropped.db"
    with MonitoringStore(sqlite_url(path)) as store:
        store.ensure_schema()
        store.insert_model_events([{"event": "publish"}])
        with store.engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE drift_tests")
        assert store.ensure_schema() == ["created table drift_tests"]
        assert store.count(MODEL_EVENTS) == 1


def test_every_revision_file_ships_in_the_wheel() -> None:
    """The revisions run from the installed package: pyproject's package data must hold them."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "genreops.monitoring.store" in config["packages"]
    patterns = config["package-data"]["genreops.monitoring.store"]
    shipped = [
        path.relative_to(STORE_PACKAGE).as_posix()
        for path in (STORE_PACKAGE / "migrations").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    ]
    assert "migrations/env.py" in shipped
    assert any(name.startswith("migrations/versions/") for name in shipped)
    missing = [n for n in shipped if not any(fnmatch.fnmatch(n, p) for p in patterns)]
    assert missing == []
