"""Prefect flow ``drift-report``: the gate's recent drift tests become Evidently reports."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from prefect import flow, get_run_logger

from genreops.core.settings import get_settings
from genreops.monitoring.views import publish_for


@flow(name="drift-report")
def drift_report(limit: int | None = 20) -> dict[str, Any]:
    """Add an Evidently drift report per new drift test to the drift views' workspace.

    Each report compares the window a drift test saw with the served version's training
    reference; the drift UI (`genreops stack`, port GENREOPS_DRIFT_UI_PORT) shows them and
    the drifted share over time. When new labels came back, it also adds quality reports
    (accuracy, recall per genre, confusion matrix) of the last day's labeled answers.

    Args:
        limit: most reports to build in this run (each costs seconds of CPU); None: all.
    """
    logger = get_run_logger()
    summary = publish_for(get_settings(), limit)
    for line in summary.skipped:
        logger.warning("skipped %s", line)
    for line in summary.failed:
        logger.error("failed %s", line)
    logger.info("%d drift report(s) added to project %s", len(summary.added), summary.project_id)
    if summary.quality:
        logger.info("quality reports added: %s", ", ".join(summary.quality))
    return asdict(summary)
