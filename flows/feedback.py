"""Prefect flow ``record-feedback``: a labels file (local or s3://) becomes ground truth."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from prefect import flow, get_run_logger

from genreops.core.settings import get_settings
from genreops.monitoring.feedback import read_feedback, save_labels


@flow(name="record-feedback")
def record_feedback(labels_url: str) -> dict[str, Any]:
    """Store what served clips really were, from a CSV or JSON labels file.

    The file names each clip as it was sent (its path or s3:// URL) and its true genre, as
    `genreops feedback` takes it. Labels of clips not served yet are stored too (late
    predictions are joined when they come); with the monitoring database away the labels
    are spooled and stored later, never dropped.

    Args:
        labels_url: a local file or s3:// object (CSV with clip_id,genre columns, or JSON).
    """
    logger = get_run_logger()
    settings = get_settings()
    pairs, refused = read_feedback(labels_url, s3=settings.s3)
    report = save_labels(settings, pairs, labels_url, refused)
    for line in report.refused:
        logger.warning("refused %s", line)
    if report.unknown:
        logger.warning(
            "%d clip(s) with no prediction yet, e.g. %s",
            len(report.unknown),
            ", ".join(report.unknown[:5]),
        )
    logger.info(
        "%d label(s) stored, %d spooled, %d rejected, %d row(s) refused from %s",
        report.stored,
        report.spooled,
        report.rejected,
        len(report.refused),
        labels_url,
    )
    return {**asdict(report), "received": report.received}
