"""Drift and live quality over time in Evidently's own UI.

Drift: one snapshot per drift test the gate ran.

The drift record's worker keeps every tested window
(``genreops.monitoring.drift.worker``); here each window that has
no snapshot yet becomes a full Evidently DataDriftPreset report against the served version's
reference, timestamped with the test's time, in the workspace project ``genreops drift``.
A report costs seconds of CPU, so this runs apart from serving: the ``drift-report`` flow
(scheduled by the stack) or ``genreops drift-report``. ``evidently ui --workspace DIR`` then
shows the reports and a dashboard of the drifted share over time.

Quality: when new labels have arrived (``genreops feedback``), a ClassificationPreset report
per model version (and one pooling them, tagged ``all``) over the labeled answers of the last
day, in the project ``genreops quality``: accuracy, precision, recall and F1 per genre, the
confusion matrix; its dashboard plots the pooled live accuracy over time. (Evidently treats
a group whose answers and labels name only two genres as a binary task.)
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from genreops.core.processes import http_answers
from genreops.core.settings import Settings
from genreops.monitoring.drift import (
    DEFAULT_METHOD,
    REFERENCE_FILE,
    TESTS_FILE,
    WINDOWS_DIR,
    DriftError,
    evidently_report,
    read_reference,
    reference_columns,
)
from genreops.monitoring.drift.evidently_report import import_evidently

log = logging.getLogger(__name__)

PROJECT_NAME = "genreops drift"
PUBLISHED_FILE = "genreops-published.json"  # test ids already in the workspace
QUALITY_PROJECT_NAME = "genreops quality"
QUALITY_FILE = "genreops-quality.json"  # what the last quality reports covered
QUALITY_PERIOD = timedelta(days=1)


@dataclass(frozen=True)
class PendingTest:
    """A recorded drift test whose window has no snapshot yet."""

    version: int
    test_id: str
    tested_at: str
    window: Path
    reference: Path


@dataclass
class ViewsSummary:
    project_id: str
    added: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "test id: reason"
    failed: list[str] = field(default_factory=list)
    quality: list[str] = field(default_factory=list)  # quality reports added: "version (n)"


def pending_tests(
    drift_roots: Path | Sequence[Path], repository: Path, published: set[str]
) -> Iterator[PendingTest]:
    """Tests under ``<drift root>/v<N>/`` (of each Triton replica's root) not yet published,
    oldest first per version."""
    roots = [drift_roots] if isinstance(drift_roots, Path) else list(drift_roots)
    folders = (folder for root in roots for folder in sorted(root.glob("v*"), key=lambda p: p.name))
    for folder in folders:
        if not folder.name[1:].isdigit() or not (folder / TESTS_FILE).exists():
            continue
        version = int(folder.name[1:])
        for line in (folder / TESTS_FILE).read_text().splitlines():
            try:
                test = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line still being written
            if test.get("test_id") in published:
                continue
            yield PendingTest(
                version=version,
                test_id=str(test["test_id"]),
                tested_at=str(test["tested_at"]),
                window=folder / WINDOWS_DIR / f"{test['test_id']}.npy",
                reference=repository / "predictor" / str(version) / REFERENCE_FILE,
            )


def _reference(path: Path) -> pd.DataFrame:
    """The gate's columns: the feature schema's, or the reference's own (as the worker does)."""
    try:
        columns = reference_columns(path)
    except DriftError:
        columns = reference_columns(path, from_reference=True)
    return read_reference(path, columns)


def running_ui(port: int) -> str | None:
    """The URL of an ``evidently ui`` answering on ``port`` of this machine, if any."""
    url = f"http://127.0.0.1:{port}"
    return url if http_answers(f"{url}/api/projects", expect="[") else None


def ensure_project(workspace: Any) -> Any:
    """The ``genreops drift`` project, created with its dashboard the first time."""
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import counter_panel, line_plot_panel

    existing = [p for p in workspace.list_projects() if p.name == PROJECT_NAME]
    if existing:
        return existing[0]
    project = workspace.create_project(
        PROJECT_NAME, description="Drift tests of the served genre classifier's inputs"
    )
    share = PanelMetric(
        legend="drifted share",
        metric="evidently:metric_v2:DriftedColumnsCount",
        metric_labels={"value_type": "share"},
    )
    count = PanelMetric(
        legend="drifted features",
        metric="evidently:metric_v2:DriftedColumnsCount",
        metric_labels={"value_type": "count"},
    )
    project.dashboard.add_panel(counter_panel("Latest drifted share", [share], size="half"))
    project.dashboard.add_panel(
        counter_panel("Drifted features, latest test", [count], size="half")
    )
    project.dashboard.add_panel(line_plot_panel("Drifted share of features over time", [share]))
    project.dashboard.add_panel(line_plot_panel("Drifted features over time", [count]))
    return project


def publish_drift_views(
    drift_root: Path | Sequence[Path],
    repository: Path,
    workspace_dir: Path,
    *,
    limit: int | None = None,
    method: str | None = DEFAULT_METHOD,
    ui_url: str | None = None,
) -> ViewsSummary:
    """Add a snapshot per unpublished drift test (at most ``limit``); returns what happened.

    With ``ui_url`` (a running ``evidently ui`` on ``workspace_dir``) the snapshots go through
    its API, so it shows them at once (it reads its folder only when it starts); otherwise
    they are written to ``workspace_dir`` directly.
    """
    import_evidently()
    from evidently.ui.workspace import RemoteWorkspace, Workspace

    workspace_dir.mkdir(parents=True, exist_ok=True)
    workspace = RemoteWorkspace(ui_url) if ui_url else Workspace(str(workspace_dir))
    project = ensure_project(workspace)
    ledger = workspace_dir / PUBLISHED_FILE
    published = set(json.loads(ledger.read_text())) if ledger.exists() else set()
    summary = ViewsSummary(project_id=str(project.id))
    references: dict[Path, pd.DataFrame] = {}
    for test in pending_tests(drift_root, repository, published):
        if limit is not None and len(summary.added) >= limit:
            break
        if not test.window.exists():
            summary.skipped.append(f"{test.test_id}: its window was not kept")
            published.add(test.test_id)
            continue
        if not test.reference.exists():
            summary.skipped.append(
                f"{test.test_id}: version {test.version}'s reference is gone ({test.reference})"
            )
            published.add(test.test_id)
            continue
        try:
            if test.reference not in references:
                references[test.reference] = _reference(test.reference)
            reference = references[test.reference]
            rows = np.load(test.window)
            if rows.ndim != 2 or rows.shape[1] != reference.shape[1]:
                raise DriftError(
                    f"window of shape {rows.shape} does not fit the reference's "
                    f"{reference.shape[1]} columns"
                )
            window = pd.DataFrame(rows, columns=list(reference.columns))
            snapshot = evidently_report(
                reference,
                window,
                list(reference.columns),
                method,
                timestamp=datetime.fromisoformat(test.tested_at),
            )
            workspace.add_run(project.id, snapshot, name=f"v{test.version} {test.test_id[:8]}")
        except Exception as error:  # one bad window must not stop the others
            log.exception("drift view for test %s failed", test.test_id)
            summary.failed.append(f"{test.test_id}: {type(error).__name__}: {error}")
            continue
        published.add(test.test_id)
        summary.added.append(test.test_id)
    ledger.write_text(json.dumps(sorted(published)))
    return summary


def ensure_quality_project(workspace: Any) -> Any:
    """The ``genreops quality`` project, created with its dashboard the first time."""
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import counter_panel, line_plot_panel

    existing = [p for p in workspace.list_projects() if p.name == QUALITY_PROJECT_NAME]
    if existing:
        return existing[0]
    project = workspace.create_project(
        QUALITY_PROJECT_NAME,
        description="Served answers scored against the labels that came back (ground truth)",
    )
    accuracy = PanelMetric(legend="accuracy", metric="evidently:metric_v2:Accuracy", tags=["all"])
    project.dashboard.add_panel(counter_panel("Live accuracy, last day", [accuracy], size="half"))
    project.dashboard.add_panel(line_plot_panel("Live accuracy over time", [accuracy]))
    return project


def classification_report(labeled: pd.DataFrame, timestamp: datetime, tag: str) -> Any:
    """Evidently's ClassificationPreset snapshot of answers (``genre``) against labels."""
    import_evidently()
    from evidently import (
        BinaryClassification,
        DataDefinition,
        Dataset,
        MulticlassClassification,
        Report,
    )
    from evidently.presets import ClassificationPreset

    frame = pd.DataFrame(
        {"target": labeled["true_genre"].astype(str), "prediction": labeled["genre"].astype(str)}
    )
    genres = sorted(set(frame["target"]) | set(frame["prediction"]))
    task: Any
    if len(genres) == 2:  # Evidently 0.7 reads two classes as binary, and needs a positive one
        task = BinaryClassification(
            target="target", prediction_labels="prediction", pos_label=genres[1]
        )
    else:
        task = MulticlassClassification(target="target", prediction_labels="prediction")
    definition = DataDefinition(classification=[task], categorical_columns=["target", "prediction"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ill-defined precision of genres never predicted
        return Report([ClassificationPreset()]).run(
            Dataset.from_pandas(frame, data_definition=definition),
            None,
            timestamp=timestamp,
            tags=[tag],
        )


def publish_quality_views(
    labeled: list[dict[str, Any]],
    workspace_dir: Path,
    *,
    now: datetime,
    ui_url: str | None = None,
) -> list[str]:
    """Quality reports of ``labeled`` answers, unless nothing changed since the last ones.

    ``labeled`` are ``labeled_predictions`` rows (the caller picks the period). Returns the
    reports added as "version (n labeled)".
    """
    import_evidently()
    from evidently.ui.workspace import RemoteWorkspace, Workspace

    if not labeled:
        return []
    frame = pd.DataFrame(labeled)
    covered = [len(frame), str(frame["labeled_at"].max()), str(frame["served_at"].max())]
    ledger = workspace_dir / QUALITY_FILE
    if ledger.exists() and json.loads(ledger.read_text()) == covered:
        return []  # no new label and no new labeled answer
    workspace_dir.mkdir(parents=True, exist_ok=True)
    workspace = RemoteWorkspace(ui_url) if ui_url else Workspace(str(workspace_dir))
    project = ensure_quality_project(workspace)
    groups = [(str(v), group) for v, group in frame.groupby("model_version", sort=True)]
    added = []
    for tag, group in [*groups, ("all", frame)]:
        snapshot = classification_report(group, now, tag)
        workspace.add_run(project.id, snapshot, name=f"{tag}: {len(group)} labeled answers")
        added.append(f"{tag} ({len(group)})")
    ledger.write_text(json.dumps(covered))
    return added


def publish_for(settings: Settings, limit: int | None = None) -> ViewsSummary:
    """Drift views of the settings' serving state, then quality views of the last day's
    labeled answers in the monitoring store; through the UI if it runs."""
    from genreops.monitoring.store import MonitoringStore, MonitoringUnavailableError, utc_now

    ui_url = running_ui(settings.drift_ui_port)
    summary = publish_drift_views(
        [folder / "drift" for folder in settings.serving_dirs],  # every Triton replica's
        settings.repository,
        settings.drift_workspace,
        limit=limit,
        ui_url=ui_url,
    )
    now = utc_now()
    try:
        with MonitoringStore(settings.monitoring_db_url) as store:
            store.ensure_schema()
            labeled = store.labeled_predictions(since=now - QUALITY_PERIOD)
    except MonitoringUnavailableError as error:
        summary.failed.append(f"quality: {error}")
        return summary
    try:
        summary.quality = publish_quality_views(
            labeled, settings.drift_workspace, now=now, ui_url=ui_url
        )
    except Exception as error:  # the drift views above are kept
        log.exception("quality views failed")
        summary.failed.append(f"quality: {type(error).__name__}: {error}")
    return summary
