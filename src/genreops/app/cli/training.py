"""Commands of the training stage: ``train``, ``register``, ``models``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from genreops.app.cli.common import (
    ModelNameOption,
    OutputFormat,
    OutputOption,
    absolute,
    console,
    fail,
    jsonable,
    metric,
    out,
    print_json,
    results_table,
    running_flows,
    setting,
    user_errors,
)
from genreops.core.settings import Settings, get_settings

# genreops.training.search_space.FAMILIES and "all" (spelled out: that module imports Optuna)
FAMILY_CHOICES = (
    "xgboost",
    "random_forest",
    "knn",
    "svc",
    "logistic_regression",
    "soft_vote",
    "all",
)


FAMILY_HELP = (
    "Model family: xgboost, random_forest, knn, svc, logistic_regression, soft_vote (a soft "
    "vote of tuned svc, xgboost and logistic_regression models; tuned after them) or all "
    "(repeatable)."
)

FamilyOption = Annotated[list[str], typer.Option("--family", "-f", help=FAMILY_HELP)]
# The tuning options (``train`` and ``pipeline``).
StudyStorageOption = Annotated[
    str | None,
    typer.Option(
        help="Optuna storage URL (e.g. postgresql://user@host/db) so several workers can "
        "tune one study in parallel; none: in memory.",
        **setting("study_storage_url"),
    ),
]
SearchSpaceOption = Annotated[
    Path | None,
    typer.Option(
        help="Search spaces YAML; none: configs/search_spaces.yaml.",
        **setting("search_space_file"),
    ),
]
CvFoldsOption = Annotated[
    int,
    typer.Option(
        min=0,
        help="Score each configuration by k-fold cross-validation on train+val (tables "
        "up to GENREOPS_CV_MAX_ROWS rows); 0: the table's val split.",
        **setting("cv_folds"),
    ),
]


def chosen_families(values: list[str]) -> list[str] | None:
    """``--family`` values as the flows take them (None: all); exit 2 on an unknown one."""
    unknown = [m for m in values if m not in FAMILY_CHOICES]
    if unknown:
        raise fail(f"unknown family {unknown[0]!r}; use {', '.join(FAMILY_CHOICES)}", 2)
    return None if "all" in values else list(dict.fromkeys(values))


def train(
    features: Annotated[
        str,
        typer.Argument(
            help="Feature table (.parquet/.csv, local or s3://), the folder `extract` wrote, "
            "or a folder holding one table."
        ),
    ],
    study_storage: StudyStorageOption,
    search_space: SearchSpaceOption,
    cv_folds: CvFoldsOption,
    family: FamilyOption = ["all"],  # noqa: B006 (typer needs a list default)
    model_alias: Annotated[
        list[str] | None,
        # the old spelling, hidden: beside --model-name it read as the registered model
        typer.Option("--model", "-m", hidden=True),
    ] = None,
    trials: Annotated[int, typer.Option(min=1, help="Optuna trials per family.")] = 20,
    timeout: Annotated[
        float | None, typer.Option(min=1.0, help="Stop each family's study after S seconds.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Same seed and data, same best model.")] = 0,
    label_column: Annotated[
        str | None,
        typer.Option(help="Genre column (default: 'genre', else 'label' as in GTZAN's CSVs)."),
    ] = None,
    id_column: Annotated[
        str | None,
        typer.Option(
            help="Clip id column (default: 'clip_id', else 'filename', else rows are numbered)."
        ),
    ] = None,
    group_column: Annotated[
        str | None,
        typer.Option(
            help="Rows sharing its value stay in one split (default: by song when ids are "
            "segments like blues.00000.3.wav)."
        ),
    ] = None,
    drop_column: Annotated[
        list[str] | None,
        typer.Option(
            help="A column that is no feature, left out (repeatable; 'length' always is)."
        ),
    ] = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Tune XGBoost / random forest / KNN / SVC / logistic regression and a soft vote of the
    best of them with Optuna, and track every trial in MLflow.

    Any feature table trains: ours, or GTZAN's features_30_sec.csv / features_3_sec.csv as
    downloaded."""
    from genreops.flows.train import train_model

    settings = get_settings()
    model = [*(model_alias or []), *family] if family != ["all"] else model_alias or family
    families = chosen_families(model)
    with user_errors(), running_flows("tuning"):
        summary = train_model(
            features_url=absolute(features),
            families=families,
            trials=trials,
            timeout_seconds=timeout,
            seed=seed,
            study_storage=study_storage or None,
            search_space_file=str(search_space) if search_space else None,
            label_column=label_column,
            id_column=id_column,
            group_column=group_column,
            drop_columns=drop_column,
            cv_folds=cv_folds,
        )
    if output is OutputFormat.json:
        print_json({**jsonable(summary), "tracking_uri": settings.mlflow_uri})
        return
    out.print(f"columns: {summary.columns}", markup=False)
    table = results_table(
        f"{summary.table_url} (split {summary.rows})",
        "family",
        "trials ok/pruned/failed",
        "val G-mean",
        "val acc",
        "test G-mean",
        "test acc",
        "run",
    )
    for outcome in summary.outcomes:
        table.add_row(
            outcome.family,
            "/".join(str(outcome.trials[k]) for k in ("complete", "pruned", "fail")),
            metric(outcome.validation, "gmean"),
            metric(outcome.validation, "accuracy"),
            metric(outcome.test, "gmean"),
            metric(outcome.test, "accuracy"),
            outcome.run_id,
        )
    out.print(table)
    out.print(f"tracking: {settings.mlflow_uri} — next: genreops register")


def register(
    model_name: ModelNameOption,
    top: Annotated[
        int, typer.Option(min=1, help="Versions to rank: 1 = champion, 2 = + challenger.")
    ] = 2,
    table: Annotated[
        str | None,
        typer.Option(
            help="Rank only runs trained on this table (the URL `train` printed, or the first "
            "characters of its digest); default: every finished run."
        ),
    ] = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Register the best runs (by validation G-mean) and set the champion/challenger aliases."""
    settings = get_settings()
    table = absolute(table) if table and Path(table).expanduser().exists() else table
    with user_errors():
        if settings.prefect_api_url:  # a Prefect server is running: record it as a flow run
            from genreops.flows.registry import register_best

            summary = register_best(top=top, model_name=model_name, table=table)
        else:  # a temporary Prefect server would cost ~20 s for a sub-second job
            from genreops.training.registry import register_with_settings

            summary = register_with_settings(settings, model_name=model_name, top=top, table=table)
    if output is OutputFormat.json:
        print_json(
            {
                "model_name": summary.model_name,
                "candidates": summary.candidates,
                "assignments": summary.assignments,
                "skipped": [
                    {"run_id": c.run_id, "family": c.family, "reason": reason}
                    for c, reason in summary.skipped
                ],
                "changes": summary.changes,
            }
        )
        return
    ranking = results_table(
        f"{summary.model_name} ({summary.candidates} candidate runs)",
        "alias",
        "version",
        "family",
        "val G-mean",
        "test G-mean",
        "schema",
        "run",
    )
    for a in summary.assignments:
        ranking.add_row(
            a.alias or f"rank {a.rank}",
            a.version,
            a.candidate.family,
            metric(a.candidate.metrics, "val_gmean"),
            metric(a.candidate.metrics, "test_gmean"),
            a.candidate.schema_hash,
            a.candidate.run_id,
        )
    out.print(ranking)
    for candidate, reason in summary.skipped:
        console.print(
            f"[yellow]skipped[/yellow] run {candidate.run_id} ({candidate.family}): {reason}"
        )
    out.print("; ".join(summary.changes) if summary.changed else "registry already up to date")


def models(
    model_name: ModelNameOption,
    events: Annotated[
        int,
        typer.Option(
            min=0,
            help="Also list this many newest model events (publish, rollback, retrain-...) "
            "from the monitoring store; 0: none. Table output only.",
        ),
    ] = 10,
    output: OutputOption = OutputFormat.table,
) -> None:
    """List registered versions with their aliases, metrics and feature schema, then what
    happened to them lately (the monitoring store's model events)."""
    from genreops.training.registry import list_versions
    from genreops.training.tracking import TrackingTarget

    settings = get_settings()
    name = model_name
    with user_errors():
        rows = list_versions(TrackingTarget.from_settings(settings), name)
    if output is OutputFormat.json:
        print_json(rows)
        return
    if not rows:
        out.print(f"no versions of {name} in {settings.mlflow_uri}; run `genreops register`")
        return
    table = results_table(
        f"{name} @ {settings.mlflow_uri}",
        "version",
        "aliases",
        "family",
        "val G-mean",
        "val acc",
        "test G-mean",
        "test acc",
        "schema",
        "run",
    )
    for row in rows:
        table.add_row(
            row.version,
            ", ".join(row.aliases) or "-",
            row.family,
            metric(row.metrics, "val_gmean"),
            metric(row.metrics, "val_accuracy"),
            metric(row.metrics, "test_gmean"),
            metric(row.metrics, "test_accuracy"),
            row.schema_hash,
            row.run_id,
        )
    out.print(table)
    if events:
        print_model_events(settings, events)


def print_model_events(settings: Settings, limit: int) -> None:
    """The newest model events, one line each; a store that cannot be read is only noted."""
    from genreops.monitoring.store import MonitoringError, MonitoringStore

    url = settings.monitoring_db_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return  # nothing was ever served or published from this home
    try:
        with MonitoringStore(url) as store:
            store.ensure_schema()
            rows = store.model_events(limit=limit)
    except MonitoringError as error:
        out.print(f"[yellow]model events not shown:[/yellow] {error}")
        return
    if not rows:
        return
    table = results_table("model events (newest last)", "at", "event")
    table.add_column("what", overflow="fold")  # the rest of the width; at and event stay whole
    for row in rows:
        table.add_row(f"{row['at']:%Y-%m-%d %H:%M:%S}", row["event"], event_summary(row))
    out.print(table)


def event_summary(row: dict[str, Any]) -> str:
    """One line: the models a publish/rollback served, or a loop step's figures."""
    detail: dict[str, Any] = row["detail"] if isinstance(row.get("detail"), dict) else {}
    event = row["event"]
    if event in ("publish", "rollback"):
        canary = detail.get("canary")
        return (
            f"version {row.get('repository_version')}: champion {row.get('champion')}, "
            f"challenger {row.get('challenger')}" + (f", canary {canary}" if canary else "")
        )
    if event == "retrain-triggered":
        return f"{detail.get('message', '')} (Prefect run {detail.get('run_id', '?')})"
    if event == "retrain-failed":
        return f"Prefect run {detail.get('run_id', '?')}: {detail.get('message', '')}"
    if event == "retrain-started":
        return f"{detail.get('reason', '')}; {detail.get('labels', 0)} labels"
    if event == "retrain-finished":
        return (
            f"canary {detail.get('canary')} ({detail.get('family')}), "
            f"+{detail.get('added', 0)} labeled clips, {detail.get('left_out', 0)} left out"
        )
    if event == "canary-published":
        share = float(detail.get("share") or 0)
        return f"{detail.get('canary')} answers {100 * share:.0f}% of all traffic"
    if "message" in detail:  # canary-promoted, canary-withdrawn
        return str(detail["message"])
    return "; ".join(f"{k} {v}" for k, v in detail.items())[:200]
