"""Drift tests become Evidently snapshots in a real workspace, once each."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from genreops.monitoring.drift import TESTS_FILE, WINDOWS_DIR
from genreops.monitoring.views import PROJECT_NAME, publish_drift_views

pytestmark = pytest.mark.integration

COLUMNS = [f"f{i}" for i in range(6)]


def _record(folder: Path, test_id: str, tested_at: str, window: np.ndarray | None) -> None:
    (folder / WINDOWS_DIR).mkdir(parents=True, exist_ok=True)
    if window is not None:
        np.save(folder / WINDOWS_DIR / f"{test_id}.npy", window.astype(np.float32))
    with (folder / TESTS_FILE).open("a") as handle:
        handle.write(json.dumps({"test_id": test_id, "tested_at": tested_at}) + "\n")


def test_each_kept_window_becomes_one_timestamped_snapshot(tmp_path: Path) -> None:
    from evidently.ui.workspace import Workspace

    rng = np.random.default_rng(0)
    repository, drift_root, workspace_dir = tmp_path / "repo", tmp_path / "drift", tmp_path / "ws"
    (repository / "predictor" / "1").mkdir(parents=True)
    reference = pd.DataFrame(rng.normal(size=(120, len(COLUMNS))), columns=COLUMNS)
    reference.to_parquet(repository / "predictor" / "1" / "reference.parquet", index=False)
    folder = drift_root / "v1"
    _record(folder, "clean01", "2026-11-23T10:00:00.000+00:00", rng.normal(size=(60, 6)))
    _record(folder, "drifted1", "2026-11-23T10:05:00.000+00:00", rng.normal(2.0, 1, (60, 6)))
    _record(folder, "lost0001", "2026-11-23T10:06:00.000+00:00", None)
    _record(
        drift_root / "v7", "orphan01", "2026-11-23T10:07:00.000+00:00", rng.normal(size=(60, 6))
    )

    first = publish_drift_views(drift_root, repository, workspace_dir)
    assert first.added == ["clean01", "drifted1"]
    assert [line.split(":")[0] for line in first.skipped] == ["lost0001", "orphan01"]
    assert "not kept" in first.skipped[0] and "reference is gone" in first.skipped[1]
    assert first.failed == []

    workspace = Workspace(str(workspace_dir))
    [project] = [p for p in workspace.list_projects() if p.name == PROJECT_NAME]
    snapshots = [workspace.get_run(project.id, run) for run in workspace.list_runs(project.id)]
    assert sorted(s.timestamp.minute for s in snapshots) == [0, 5]  # the tests' own times
    assert len(project.dashboard.model().panels) >= 2

    again = publish_drift_views(drift_root, repository, workspace_dir)
    assert again.added == [] and again.skipped == [] and again.project_id == first.project_id
    assert len(workspace.list_runs(project.id)) == 2


def test_new_labels_become_classification_reports_per_model_version(tmp_path: Path) -> None:
    """Quality views: one Evidently ClassificationPreset report per version and one pooled,
    recomputed only when labels or labeled answers changed."""
    from datetime import UTC, datetime, timedelta

    from evidently.ui.workspace import Workspace

    from genreops.monitoring.store import MonitoringStore
    from genreops.monitoring.views import QUALITY_PROJECT_NAME, publish_quality_views

    now = datetime(2026, 12, 4, 15, 0, tzinfo=UTC)
    genres = ["rock", "jazz", "pop", "rock", "jazz", "rock"]  # version 3: only two genres
    answers = ["rock", "rock", "pop", "rock", "jazz", "jazz"]
    with MonitoringStore(f"sqlite:///{tmp_path / 'monitoring.db'}") as store:
        store.ensure_schema()
        store.insert_predictions(
            {
                "clip_id": f"{number}.wav",
                "genre": answer,
                "model_version": "genre-classifier/2" if number < 3 else "genre-classifier/3",
                "served_at": now - timedelta(minutes=30 - number),
            }
            for number, answer in enumerate(answers)
        )
        store.insert_labels(
            {"clip_id": f"{number}.wav", "genre": genre} for number, genre in enumerate(genres)
        )
        workspace_dir = tmp_path / "ws"
        added = publish_quality_views(store.labeled_predictions(), workspace_dir, now=now)
        assert added == ["genre-classifier/2 (3)", "genre-classifier/3 (3)", "all (6)"]
        assert publish_quality_views(store.labeled_predictions(), workspace_dir, now=now) == []
        store.insert_labels([{"clip_id": "5.wav", "genre": "jazz"}])  # a corrected label
        assert publish_quality_views(store.labeled_predictions(), workspace_dir, now=now) != []

    workspace = Workspace(str(workspace_dir))
    [project] = [p for p in workspace.list_projects() if p.name == QUALITY_PROJECT_NAME]
    runs = [workspace.get_run(project.id, run) for run in workspace.list_runs(project.id)]
    assert len(runs) == 6
    pooled = [run.dict() for run in runs if "all" in run.tags]
    accuracies = sorted(
        result["value"]
        for run in pooled
        for result in run["metric_results"].values()
        if result["metric_value_location"]["metric"]["params"]["type"].endswith(":Accuracy")
    )
    assert accuracies == [pytest.approx(4 / 6), pytest.approx(5 / 6)]  # before and after
