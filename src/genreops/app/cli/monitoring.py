"""Commands of the monitoring stage: ``drift-report``, ``feedback``."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from genreops.app.cli.common import OutputFormat, OutputOption, out, print_json, user_errors
from genreops.core.settings import get_settings


def drift_report(
    limit: Annotated[
        int | None, typer.Option(min=1, help="Most reports to build now (each costs seconds).")
    ] = None,
) -> None:
    """Turn the drift gate's new drift tests into Evidently reports for the drift UI."""
    from genreops.monitoring.views import publish_for

    settings = get_settings()
    with user_errors():
        summary = publish_for(settings, limit)
    for line in summary.skipped:
        out.print(f"[yellow]skipped[/yellow] {line}")
    for line in summary.failed:
        out.print(f"[red]failed[/red] {line}")
    out.print(
        f"{len(summary.added)} report(s) added to {settings.drift_workspace} "
        f"(project {summary.project_id}); `genreops stack up` serves the drift UI"
    )


def feedback(
    file: Annotated[
        Path,
        typer.Argument(
            help="CSV with a header naming a clip column (clip_id, clip, path, file or "
            "filename) and a genre column (genre, label or true_genre), or JSON: a list of "
            "such objects, or one object mapping clip -> genre.",
        ),
    ],
    output: OutputOption = OutputFormat.table,
) -> None:
    """Say what served clips really were: each row becomes a label in the monitoring store.

    Labels join predictions by clip id (the path or s3:// URL the clip was sent as; the latest
    label of a clip counts). Labels of clips with no prediction yet are stored too and listed
    as unknown; rows without a clip or a genre are listed with their reason.
    """
    from genreops.monitoring.feedback import read_feedback, record_feedback
    from genreops.monitoring.store import MonitoringStore

    settings = get_settings()
    with user_errors():
        pairs, refused = read_feedback(file)
        with MonitoringStore(settings.monitoring_db_url) as store:
            store.ensure_schema()
            report = record_feedback(store, pairs, str(file), refused)
    if output is OutputFormat.json:
        print_json({**asdict(report), "received": report.received})
        return
    for line in report.refused:
        out.print(f"[yellow]refused[/yellow] {line}")
    for clip in report.unknown[:20]:
        out.print(f"[yellow]unknown[/yellow] {clip}: no prediction stored for it yet")
    if len(report.unknown) > 20:
        out.print(f"[yellow]unknown[/yellow] ... and {len(report.unknown) - 20} more")
    out.print(
        f"{report.stored} label(s) stored from {file} ({len(report.unknown)} of clips with no "
        f"prediction yet, {len(report.refused)} row(s) refused)"
    )
