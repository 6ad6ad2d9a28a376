"""Drift over time in Evidently's own UI: one snapshot per drift test the gate ran.

The drift record's worker keeps every tested window
(``genreops.monitoring.drift.worker``); here each window that has
no snapshot yet becomes a full Evidently DataDriftPreset report against the served version's
reference, timestamped with the test's time, in the workspace project ``genreops drift``.
A report costs seconds of CPU, so this runs apart from serving: the ``drift-report`` flow
(scheduled by the stack) or ``genreops drift-report``. ``evidently ui --workspace DIR`` then
shows the reports and a dashboard of the drifted share over time.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
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


def pending_tests(drift_root: Path, repository: Path, published: set[str]) -> Iterator[PendingTest]:
    """Tests under ``drift_root/v<N>/`` not yet published, oldest first per version."""
    for folder in sorted(drift_root.glob("v*"), key=lambda p: p.name):
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
    drift_root: Path,
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


def publish_for(settings: Settings, limit: int | None = None) -> ViewsSummary:
    """``publish_drift_views`` on the settings' serving state, through the UI if it runs."""
    return publish_drift_views(
        settings.serving_dir / "drift",
        settings.repository,
        settings.drift_workspace,
        limit=limit,
        ui_url=running_ui(settings.drift_ui_port),
    )
