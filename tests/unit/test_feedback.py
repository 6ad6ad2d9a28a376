"""Ground truth (issue 16, part 1): feedback files become labels, joined to predictions by clip."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect

from genreops.monitoring.feedback import (
    FeedbackError,
    parse_feedback,
    read_feedback,
    record_labels,
)
from genreops.monitoring.store import (
    LABELS,
    PREDICTIONS,
    PREDICTIONS_TABLE,
    MonitoringStore,
    prepare_row,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def prediction(clip: str, genre: str, minute: int) -> dict[str, Any]:
    return {
        "clip_id": clip,
        "genre": genre,
        "model_version": "genre-classifier/1",
        "served_at": T0 + timedelta(minutes=minute),
    }


@pytest.fixture
def store(tmp_path: Path) -> Any:
    with MonitoringStore(f"sqlite:///{tmp_path / 'monitoring.db'}") as created:
        created.ensure_schema()
        yield created


def test_every_label_read_is_stored_and_clips_without_a_prediction_are_named(
    store: MonitoringStore, tmp_path: Path
) -> None:
    store.insert_predictions([prediction("a.wav", "rock", 0), prediction("b.wav", "pop", 1)])
    feedback = tmp_path / "labels.csv"
    feedback.write_text(
        "path,label\na.wav,jazz\nb.wav,pop\nnever-served.wav,rock\n,blues\nc.wav,\n"
    )
    pairs, refused = read_feedback(feedback)
    report = record_labels(store, tmp_path / "spool", pairs, str(feedback), refused)
    assert report.stored == 3 == store.count(LABELS)
    assert report.unknown == ["never-served.wav"]  # stored too: its prediction may come later
    assert report.refused == ["row 4: no clip", "row 5 (c.wav): no genre"]
    assert report.received == 5  # every row: stored or refused with its reason


def test_the_latest_label_of_a_clip_counts(store: MonitoringStore) -> None:
    store.insert_predictions([prediction("a.wav", "rock", 0), prediction("b.wav", "pop", 1)])
    store.insert_predictions([prediction("a.wav", "metal", 2)])  # served again later
    store.insert_labels(
        [
            {"clip_id": "a.wav", "genre": "rock", "labeled_at": T0 + timedelta(hours=1)},
            {"clip_id": "a.wav", "genre": "jazz", "labeled_at": T0 + timedelta(hours=2)},
        ]
    )
    joined = store.labeled_predictions()
    assert [(row["clip_id"], row["genre"], row["true_genre"]) for row in joined] == [
        ("a.wav", "rock", "jazz"),
        ("a.wav", "metal", "jazz"),
    ]  # b.wav has no label: not joined


def test_a_relative_path_matches_the_absolute_clip_id(
    store: MonitoringStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clip = tmp_path / "blues" / "x.wav"
    store.insert_predictions([prediction(str(clip), "blues", 0)])
    monkeypatch.chdir(tmp_path)
    pairs = [(os.path.join("blues", "x.wav"), "blues")]
    report = record_labels(store, tmp_path / "spool", pairs, "cli")
    assert report.unknown == []
    assert store.labeled_predictions()[0]["true_genre"] == "blues"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a.wav": "rock", "b.wav": "pop"}', [("a.wav", "rock"), ("b.wav", "pop")]),
        ('[{"clip_id": "a.wav", "genre": "rock"}]', [("a.wav", "rock")]),
        ("clip_id,genre\ns3://raw/x.wav,jazz\n", [("s3://raw/x.wav", "jazz")]),
    ],
)
def test_json_and_csv_forms(text: str, expected: list[tuple[str, str]]) -> None:
    assert parse_feedback(text, "f") == (expected, [])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name,genre\na,rock\n", "no clip column"),
        ("clip_id,colour\na,red\n", "no genre column"),
        ("[1, 2", "not valid JSON"),
        ('"rock"', "no clip column"),
        ("", "empty, or no CSV header"),
    ],
)
def test_an_unreadable_file_is_refused_naming_it_and_why(text: str, message: str) -> None:
    with pytest.raises(FeedbackError, match=message) as info:
        parse_feedback(text, "labels.csv")
    assert "labels.csv" in str(info.value)


def test_a_database_at_the_first_revision_gains_the_labels_table(tmp_path: Path) -> None:
    from alembic import command

    from genreops.monitoring.store.migrate import alembic_config

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0001")
        connection.execute(
            PREDICTIONS_TABLE.insert(),
            [prepare_row(PREDICTIONS, prediction("a.wav", "rock", 0))],
        )
    assert LABELS not in inspect(engine).get_table_names()
    engine.dispose()
    with MonitoringStore(url) as store:
        assert store.ensure_schema() == ["created table alerts", "created table labels"]
        assert store.count(PREDICTIONS) == 1  # kept
        store.insert_labels([{"clip_id": "a.wav", "genre": "rock"}])
        assert [row["true_genre"] for row in store.labeled_predictions()] == ["rock"]


def test_the_cli_stores_a_feedback_file_and_reports_as_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from genreops.app.cli import app
    from genreops.core.settings import get_settings

    monkeypatch.setenv("GENREOPS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("GENREOPS_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    try:
        feedback = tmp_path / "labels.json"
        feedback.write_text(json.dumps({"a.wav": "rock", "b.wav": ""}))
        result = CliRunner().invoke(app, ["feedback", str(feedback), "-o", "json"])
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert (report["stored"], report["spooled"], report["received"]) == (1, 0, 2)
        assert report["unknown"] == ["a.wav"] and report["refused"] == ["row 2 (b.wav): no genre"]
        missing = CliRunner().invoke(app, ["feedback", str(tmp_path / "nope.csv")])
        assert missing.exit_code == 1
        # the console folds a long temporary path anywhere: compare without the whitespace
        assert "nope.csv:nosuchfile" in "".join(missing.output.split()), missing.output
    finally:
        get_settings.cache_clear()


def test_with_the_database_away_labels_spool_and_are_stored_when_it_is_back(
    tmp_path: Path,
) -> None:
    """No label lost: labels stored later equal labels sent (the folder stands for the store)."""
    from genreops.monitoring.store import replay_spool, spool_status

    folder = tmp_path / "not-mounted-yet"
    url, spool = f"sqlite:///{folder / 'monitoring.db'}", tmp_path / "spool"
    pairs = [(f"clip-{number}.wav", "rock") for number in range(25)]
    with MonitoringStore(url) as away:
        report = record_labels(away, spool, pairs, "labels.csv", ["row 26: no genre"])
    assert (report.stored, report.spooled, report.received) == (0, 25, 26)
    assert not report.checked and report.unknown == []  # not looked up, not guessed
    assert spool_status(spool).rows == 25
    folder.mkdir()
    with MonitoringStore(url) as back:
        replayed = replay_spool(back, spool)
        assert replayed.rows == 25 and back.count(LABELS) == 25
    assert spool_status(spool).rows == 0
