"""Commands of the monitoring stage: ``drift-report``, ``feedback``, ``quality``, ``monitor``."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated

import typer

from genreops.app.cli.common import (
    OutputFormat,
    OutputOption,
    out,
    print_json,
    results_table,
    user_errors,
)
from genreops.core.settings import get_settings

if TYPE_CHECKING:
    from genreops.monitoring.feedback import FeedbackReport


def drift_report(
    limit: Annotated[
        int | None, typer.Option(min=1, help="Most reports to build now (each costs seconds).")
    ] = None,
) -> None:
    """Turn the drift gate's new drift tests into Evidently reports for the drift UI, and new
    labels into quality reports (project "genreops quality")."""
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
    if summary.quality:
        out.print(
            f"quality reports of the last day's labeled answers: {', '.join(summary.quality)}"
        )


def feedback(
    file: Annotated[
        str,
        typer.Argument(
            help="A local file or s3:// object: CSV with a header naming a clip column "
            "(clip_id, clip, path, file or filename) and a genre column (genre, label or "
            "true_genre), or JSON: a list of such objects, or one object mapping clip -> genre.",
        ),
    ],
    output: OutputOption = OutputFormat.table,
) -> None:
    """Say what served clips really were: each row becomes a label in the monitoring store.

    Labels join predictions by clip id (the path or s3:// URL the clip was sent as; the latest
    label of a clip counts). Labels of clips with no prediction yet are stored too and listed
    as unknown; rows without a clip or a genre are listed with their reason.
    """
    from genreops.monitoring.feedback import read_feedback

    with user_errors():
        pairs, refused = read_feedback(file, s3=get_settings().s3)
    report = store_labels(pairs, str(file), refused)
    if output is OutputFormat.json:
        print_json({**asdict(report), "received": report.received})
    else:
        print_labels_report(report)


def store_labels(
    pairs: list[tuple[str, str]], source: str, refused: list[str], *, check_known: bool = True
) -> FeedbackReport:
    """Labels into the store of the settings (spooled if its database is away)."""
    from genreops.monitoring.feedback import save_labels

    with user_errors():
        return save_labels(get_settings(), pairs, source, refused, check_known=check_known)


def print_labels_report(report: FeedbackReport) -> None:
    """What became of every label: stored, spooled, rejected, refused; unknown clips named."""
    spool_dir = get_settings().monitoring_spool_dir
    for line in report.refused:
        out.print(f"[yellow]refused[/yellow] {line}")
    for clip in report.unknown[:20]:
        out.print(f"[yellow]unknown[/yellow] {clip}: no prediction stored for it yet")
    if len(report.unknown) > 20:
        out.print(f"[yellow]unknown[/yellow] ... and {len(report.unknown) - 20} more")
    if report.spooled:
        out.print(
            f"[yellow]spooled[/yellow] {report.spooled} label(s): the monitoring database is "
            f"away; they wait in {spool_dir} and are stored by the next writer that reaches "
            "it (the inference server, or this command run again)"
        )
    if report.rejected:
        out.print(
            f"[red]rejected[/red] {report.rejected} label(s) refused by the database: see "
            f"{spool_dir}/rejected-*.jsonl"
        )
    unknown = (
        f"{len(report.unknown)} of clips with no prediction yet"
        if report.checked
        else "clips not checked against predictions"
    )
    out.print(
        f"{report.stored} label(s) stored from {report.source} ({unknown}, "
        f"{len(report.refused)} row(s) refused)"
    )


def quality(
    since: Annotated[
        str | None,
        typer.Option(help="Only answers served in this last period (15min, 24h, 7d); default all."),
    ] = None,
    window: Annotated[
        str | None,
        typer.Option(help="Also split by time windows of this length (1h, 1d)."),
    ] = None,
    last: Annotated[
        int | None,
        typer.Option(min=1, help="Only the newest N labeled answers (what retraining watches)."),
    ] = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Live accuracy, G-mean and per-genre recall of the served answers that have labels.

    Each answer of a labeled clip is scored against the clip's latest label (`genreops
    feedback`, or `predict --expect-labels-from-folders`), per model version that answered and
    pooled ("all").
    """
    from genreops.monitoring.quality import live_quality, parse_duration
    from genreops.monitoring.store import MonitoringStore, utc_now

    settings = get_settings()
    with user_errors():
        start = utc_now() - parse_duration(since, "--since") if since else None
        step = parse_duration(window, "--window") if window else None
        with MonitoringStore(settings.monitoring_db_url) as store:
            store.ensure_schema()
            scores = live_quality(store.labeled_predictions(start), window=step, last=last)
    if output is OutputFormat.json:
        print_json([{**asdict(q), "weakest": q.weakest} for q in scores])
        return
    if not scores:
        out.print(
            "no labeled answers yet: store labels with `genreops feedback FILE` or "
            "`genreops predict --expect-labels-from-folders`"
        )
        return
    columns = ["model version", "labeled", "accuracy", "G-mean", "weakest genre (recall)"]
    table = results_table("live quality", *(["window"] if step else []), *columns)
    for q in scores:
        weakest = f"{q.weakest[0]} ({q.weakest[1]:.2f})" if q.weakest else "-"
        cells = [q.model_version, str(q.labeled), f"{q.accuracy:.3f}", f"{q.gmean:.3f}", weakest]
        if step:
            cells.insert(0, f"{q.window_start:%Y-%m-%d %H:%M}" if q.window_start else "-")
        table.add_row(*cells)
    out.print(table)


def monitor(
    host: Annotated[
        str, typer.Option(help="Interface to bind; 0.0.0.0 only inside a container.")
    ] = "127.0.0.1",
    port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, help="Port; default GENREOPS_MONITOR_PORT (9095)."),
    ] = None,
) -> None:
    """Serve the monitor: live-quality gauges for Prometheus and the alert receiver.

    GET /metrics: accuracy over the newest labeled answers per model version and pooled;
    POST /alerts: Alertmanager's (or Grafana's) webhook, each alert recorded in the monitoring
    store and forwarded to GENREOPS_ALERT_WEBHOOK_URL; GET /alerts: the newest recorded.
    With a Prefect server (PREFECT_API_URL; the stack's) it also starts the `retrain`
    deployment when drift persists or live accuracy falls (GENREOPS_RETRAIN_*), and promotes
    or withdraws the canary that run publishes once labels judge it (GENREOPS_CANARY_*).
    `genreops stack up` runs it; this is for Compose and for running it alone.
    """
    from genreops.monitoring.service import serve

    settings = get_settings()
    retraining = None
    if settings.retrain_auto and settings.prefect_api_url:
        from genreops.flows.retrain import retrain_run_state, start_retrain_run
        from genreops.monitoring.retraining import LoopActions
        from genreops.serving.promotion import conclude, record_step

        retraining = LoopActions(
            start_retrain_run,
            retrain_run_state,
            conclude=lambda verdict: conclude(settings, verdict),
            record_step=lambda event, detail: record_step(settings, event, detail),
        )
    out.print(
        f"monitor on http://{host}:{port or settings.monitor_port} (Ctrl-C stops it); "
        + (
            f"starts retraining runs on {settings.prefect_api_url}"
            if retraining
            else "does not retrain (GENREOPS_RETRAIN_AUTO off, or no Prefect server)"
        )
    )
    serve(settings, host=host, port=port, retraining=retraining)
