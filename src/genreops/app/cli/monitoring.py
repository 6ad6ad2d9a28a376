"""Commands of the monitoring stage: ``drift-report``."""

from __future__ import annotations

from typing import Annotated

import typer

from genreops.app.cli.common import out, user_errors
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
