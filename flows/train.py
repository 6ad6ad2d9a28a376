"""Prefect flow ``train-model``: one Optuna study per model family, each tracked in MLflow."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE

from flows import progress
from genreops import tracking
from genreops.errors import GenreopsError, TrainingError
from genreops.feature_table import FeatureTable, load_feature_table
from genreops.search_space import FAMILIES, load_search_spaces
from genreops.settings import get_settings
from genreops.training import TrialReport, tune


@dataclass(frozen=True)
class FamilyOutcome:
    """What one family's study produced (light: the model itself lives in MLflow)."""

    family: str
    run_id: str
    model_uri: str
    study_name: str
    best_params: dict[str, object]
    validation: dict[str, float]
    test: dict[str, float]
    trials: dict[str, int]
    seconds: float
    reused: bool = False  # an earlier study of the same table and settings, not retrained


@dataclass
class TrainingSummary:
    table_url: str
    schema_hash: str
    rows: dict[str, int]
    outcomes: list[FamilyOutcome] = field(default_factory=list)
    columns: str = ""  # how the table was read: label and id columns, left-out columns


@task(name="tune-family", cache_policy=NONE)
def tune_family(
    table: FeatureTable,
    family: str,
    trials: int,
    timeout: float | None,
    seed: int,
    study_storage: str | None,
    search_space_file: str | None,
    skip_trained: bool = False,
) -> FamilyOutcome:
    logger = get_run_logger()
    settings = get_settings()
    space = load_search_spaces(Path(search_space_file) if search_space_file else None)[family]
    target = tracking.TrackingTarget.from_settings(settings)
    key = tracking.study_key(
        table.digest, family, space.as_dict(), trials=trials, timeout=timeout, seed=seed
    )
    if skip_trained and (earlier := tracking.find_study(target, family, key)) is not None:
        logger.info(
            "%s: already trained on this table with these settings (run %s); skipped",
            family,
            earlier.info.run_id,
        )
        progress.advance(trials)
        return _outcome_of(earlier, family)
    run_name = f"{family}-{table.digest[:8]}-seed{seed}"
    with tracking.study_run(target, family, table, run_name=run_name, key=key) as (
        run,
        log_trial,
    ):

        def on_trial(report: TrialReport) -> None:
            log_trial(report)
            progress.advance(1)
            logger.info(
                "%s trial %d %s: %s (best %s)",
                family,
                report.number,
                report.state,
                "-" if report.value is None else f"{report.value:.4f}",
                "-" if report.best_value is None else f"{report.best_value:.4f}",
            )

        result = tune(
            table,
            space,
            trials=trials,
            timeout=timeout,
            seed=seed,
            storage=study_storage,
            on_trial=on_trial,
        )
        model_uri = tracking.log_result(
            result,
            table,
            space.as_dict(),
            settings_summary={
                "trials": trials,
                "timeout": timeout,
                "seed": seed,
                "study_storage": (study_storage or "in-memory").split("@")[-1],
            },
        )
    logger.info(
        "%s: val G-mean %.4f, test accuracy %s (run %s)",
        family,
        result.validation.metrics["gmean"],
        f"{result.test.metrics['accuracy']:.4f}" if result.test else "-",
        run.info.run_id,
    )
    return FamilyOutcome(
        family=family,
        run_id=run.info.run_id,
        model_uri=model_uri,
        study_name=result.study_name,
        best_params=result.best_params,
        validation=result.validation.metrics,
        test=result.test.metrics if result.test else {},
        trials=result.counts,
        seconds=result.seconds,
    )


def _outcome_of(run: Any, family: str) -> FamilyOutcome:
    """A finished study's outcome, read back from its MLflow run."""
    metrics, params = run.data.metrics, run.data.params
    return FamilyOutcome(
        family=family,
        run_id=run.info.run_id,
        model_uri=run.data.tags[tracking.TAG_MODEL_URI],
        study_name=params.get("study_name", ""),
        best_params={k: v for k, v in params.items() if k not in _RUN_PARAMS},
        validation={k[4:]: v for k, v in metrics.items() if k.startswith("val_")},
        test={k[5:]: v for k, v in metrics.items() if k.startswith("test_")},
        trials={
            "complete": int(metrics.get("trials_complete", 0)),
            "pruned": int(metrics.get("trials_pruned", 0)),
            "fail": int(metrics.get("trials_failed", 0)),
        },
        seconds=0.0,
        reused=True,
    )


_RUN_PARAMS = {"family", "seed", "trials_requested", "study_name"}


@flow(name="train-model")
def train_model(
    features_url: str,
    families: list[str] | None = None,
    trials: int = 20,
    timeout_seconds: float | None = None,
    seed: int = 0,
    study_storage: str | None = None,
    search_space_file: str | None = None,
    skip_trained: bool = False,
    label_column: str | None = None,
    id_column: str | None = None,
    group_column: str | None = None,
    drop_columns: list[str] | None = None,
) -> TrainingSummary:
    """Tune and track each model family on a feature table; the best refit model per family
    is logged to MLflow (experiment ``genreops-<family>``).

    Args:
        features_url: feature table (.parquet/.csv, local or s3://), the folder
            `genreops extract` wrote, or a folder/prefix holding one .parquet/.csv table.
        families: any of xgboost, random_forest, knn (default: all three).
        trials: Optuna trials per family.
        timeout_seconds: stop each family's study after this long (None: no limit).
        seed: seeds the sampler, the models and the fallback split; same seed, same result.
        study_storage: Optuna storage URL (e.g. postgresql://...) so several workers can
            tune one study; default in memory.
        search_space_file: YAML search spaces; default configs/search_spaces.yaml.
        skip_trained: reuse a family's finished study of the same table, search space,
            trials, timeout and seed instead of tuning it again.
        label_column: the genre column; default `genre`, else `label` (the public GTZAN
            table's).
        id_column: the clip id column; default `clip_id`, else `filename`; none: rows are
            numbered.
        group_column: rows sharing a value stay in one split (e.g. an artist); default: by
            song when ids are song segments like `blues.00000.3.wav` (features_3_sec.csv).
        drop_columns: columns that are neither features nor label/id (`length` always is).
    """
    logger = get_run_logger()
    settings = get_settings()
    chosen = list(families or FAMILIES)
    unknown = [f for f in chosen if f not in FAMILIES]
    if unknown:
        raise TrainingError(f"unknown model family {unknown[0]!r} (known: {', '.join(FAMILIES)})")
    load_search_spaces(Path(search_space_file) if search_space_file else None)  # fail early
    table = load_feature_table(
        features_url,
        s3=settings.s3,
        split_seed=seed,
        label_column=label_column,
        id_column=id_column,
        group_column=group_column,
        drop_columns=drop_columns or (),
    )
    rows = table.split.value_counts().to_dict()
    logger.info(
        "%s: %d rows x %d features, %d genres, split %s from %s (%s)",
        table.url,
        len(table.labels),
        len(table.feature_names),
        len(table.genres),
        rows,
        table.split_source,
        table.describe_columns(),
    )
    progress.start(trials * len(chosen))
    summary = TrainingSummary(
        table.url,
        table.schema_hash,
        {str(k): int(v) for k, v in rows.items()},
        columns=table.describe_columns(),
    )
    failures = []
    for family in chosen:
        try:
            summary.outcomes.append(
                tune_family(
                    table,
                    family,
                    trials,
                    timeout_seconds,
                    seed,
                    study_storage,
                    search_space_file,
                    skip_trained,
                )
            )
        except GenreopsError as error:
            # one family failing must not cost the others their study
            logger.error("%s failed: %s", family, error)
            message = str(error)
            failures.append(message if message.startswith(family) else f"{family}: {message}")
    if failures:
        done = ", ".join(o.family for o in summary.outcomes) or "none"
        raise TrainingError(f"{'; '.join(failures)} (finished: {done})")
    return summary
