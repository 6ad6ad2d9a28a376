"""Live quality (issue 16, part 2): labeled answers scored per model version and window."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from imblearn.metrics import geometric_mean_score

from genreops.monitoring.quality import (
    ALL_VERSIONS,
    QualityError,
    live_quality,
    parse_duration,
    score,
)
from genreops.monitoring.store import MonitoringStore

pytestmark = pytest.mark.unit

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
CHAMPION, FALLBACK = "genre-classifier/3", "genre-classifier/2"


def answer(clip: str, genre: str, version: str, minute: int) -> dict[str, Any]:
    return {
        "clip_id": clip,
        "genre": genre,
        "model_version": version,
        "served_at": T0 + timedelta(minutes=minute),
    }


@pytest.fixture
def store(tmp_path: Path) -> Any:
    with MonitoringStore(f"sqlite:///{tmp_path / 'monitoring.db'}") as created:
        created.ensure_schema()
        # champion: 3 of 4 right in the first hour; fallback: 1 of 2 right in the second
        created.insert_predictions(
            [
                answer("r1.wav", "rock", CHAMPION, 0),
                answer("r2.wav", "rock", CHAMPION, 10),
                answer("j1.wav", "jazz", CHAMPION, 20),
                answer("j2.wav", "rock", CHAMPION, 30),
                answer("j3.wav", "jazz", FALLBACK, 70),
                answer("r3.wav", "jazz", FALLBACK, 80),
                answer("unlabeled.wav", "pop", FALLBACK, 90),
            ]
        )
        created.insert_labels(
            [{"clip_id": f"{g[0]}{n}.wav", "genre": g} for g in ("rock", "jazz") for n in (1, 2, 3)]
        )
        yield created


def by_key(scores: list[Any]) -> dict[tuple[str, Any], Any]:
    return {(q.model_version, q.window_start): q for q in scores}


def test_each_version_is_scored_on_its_own_answers_and_all_pools_them(
    store: MonitoringStore,
) -> None:
    scores = by_key(live_quality(store.labeled_predictions()))
    champion, fallback, pooled = (scores[(v, None)] for v in (CHAMPION, FALLBACK, ALL_VERSIONS))
    assert (champion.labeled, champion.correct, champion.accuracy) == (4, 3, 0.75)
    assert champion.recall == {"jazz": 0.5, "rock": 1.0} and champion.weakest == ("jazz", 0.5)
    assert champion.gmean == pytest.approx(0.5**0.5)
    assert (fallback.labeled, fallback.accuracy) == (2, 0.5)  # the unlabeled clip is not scored
    assert (pooled.labeled, pooled.correct) == (6, 4)


def test_windows_split_by_the_time_of_the_answer(store: MonitoringStore) -> None:
    scores = live_quality(store.labeled_predictions(), window=timedelta(hours=1))
    assert [(q.model_version, q.window_start, q.labeled) for q in scores] == [
        (CHAMPION, T0, 4),
        (ALL_VERSIONS, T0, 4),
        (FALLBACK, T0 + timedelta(hours=1), 2),
        (ALL_VERSIONS, T0 + timedelta(hours=1), 2),
    ]


def test_last_and_since_keep_the_newest_answers(store: MonitoringStore) -> None:
    (last_three,) = [q for q in live_quality(store.labeled_predictions(), last=3)
                     if q.model_version == ALL_VERSIONS]  # fmt: skip
    assert (last_three.labeled, last_three.correct) == (3, 1)  # j2 wrong, j3 right, r3 wrong
    recent = store.labeled_predictions(since=T0 + timedelta(minutes=60))
    assert {row["clip_id"] for row in recent} == {"j3.wav", "r3.wav"}


@pytest.mark.filterwarnings("ignore:Recall is ill-defined")
def test_g_mean_is_the_same_quantity_training_and_predict_report() -> None:
    truth = ["rock", "rock", "jazz", "jazz", "pop"]
    predicted = ["rock", "jazz", "jazz", "jazz", "metal"]  # metal was never true
    accuracy, gmean, recall = score(truth, predicted)
    assert accuracy == 0.6 and recall == {"jazz": 1.0, "pop": 0.0, "rock": 0.5}
    assert gmean == geometric_mean_score(truth, predicted, average="multiclass") == 0.0


@pytest.mark.parametrize("text", ["soon", "-1h", "0s"])
def test_a_bad_duration_is_refused_naming_the_option(text: str) -> None:
    with pytest.raises(QualityError, match="--since"):
        parse_duration(text, "--since")


def test_the_cli_reports_quality_as_json(
    store: MonitoringStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from genreops.app.cli import app
    from genreops.core.settings import get_settings

    monkeypatch.setenv("GENREOPS_DATABASE_URL", str(store.engine.url))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["quality", "-o", "json"])
        assert result.exit_code == 0, result.output
        rows = {row["model_version"]: row for row in json.loads(result.stdout)}
        assert rows[CHAMPION]["accuracy"] == 0.75 and rows[CHAMPION]["weakest"] == ["jazz", 0.5]
        table = CliRunner().invoke(app, ["quality", "--window", "1h"])
        assert table.exit_code == 0 and "2026-12-04 13:00" in table.output, table.output
        bad = CliRunner().invoke(app, ["quality", "--since", "yesterday"])
        assert bad.exit_code == 1 and "--since 'yesterday'" in bad.output
    finally:
        get_settings.cache_clear()
