"""Prefect flow ``train-model``: one Optuna study per model family, each tracked in MLflow.

The work is genreops.training.studies; this module makes each family's study a Prefect task
and reports progress to the CLI's bar.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genreops.flows import progress
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE

from genreops.core.settings import get_settings
from genreops.data.feature_table import FeatureTable, load_feature_table
from genreops.training import studies
from genreops.training.search_space import load_search_spaces
from genreops.training.studies import FamilyOutcome, TrainingSummary
from genreops.training.tracking import TrackingTarget

__all__ = ["FamilyOutcome", "TrainingSummary", "train_model", "tune_family"]


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
    cv_folds: int | None = None,
    members: dict[str, dict[str, Any]] | None = None,
) -> FamilyOutcome:
    return studies.tune_family(
        table,
        family,
        trials=trials,
        timeout=timeout,
        seed=seed,
        study_storage=study_storage,
        search_space_file=search_space_file,
        skip_trained=skip_trained,
        cv_folds=cv_folds,
        members=members,
        advance=progress.advance,
        log=get_run_logger(),
    )


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
    cv_folds: int | None = None,
) -> TrainingSummary:
    """Tune and track each model family on a feature table; the best refit model per family
    is logged to MLflow (experiment ``genreops-<family>``).

    Each configuration is scored by stratified k-fold cross-validation on train+val for
    tables up to GENREOPS_CV_MAX_ROWS (5,000) train+val rows, else on the table's val split;
    the kept model is refit on train+val and scored once on the test rows.

    Args:
        features_url: feature table (.parquet/.csv, local or s3://), the folder
            `genreops extract` wrote, or a folder/prefix holding one .parquet/.csv table.
        families: any of xgboost, random_forest, knn, svc, logistic_regression, soft_vote
            (default: every family in the search space file; the shipped one has all six).
            soft_vote averages the probabilities of tuned members (by default svc, xgboost,
            logistic_regression; see the search space file) and is tuned last; members not
            chosen here are taken from their newest study of the same table in MLflow.
        trials: Optuna trials per family.
        timeout_seconds: stop each family's study after this long (None: no limit).
        seed: seeds the sampler, the models and the fallback split; same seed, same result.
        study_storage: Optuna storage URL (e.g. postgresql://...) so several workers can
            tune one study; default in memory.
        search_space_file: YAML search spaces; default configs/search_spaces.yaml.
        skip_trained: reuse a family's finished study of the same table, search space,
            trials, timeout, seed and validation settings (a soft vote: and members) instead
            of tuning it again.
        label_column: the genre column; default `genre`, else `label` (the public GTZAN
            table's).
        id_column: the clip id column; default `clip_id`, else `filename`; none: rows are
            numbered.
        group_column: rows sharing a value stay in one split (e.g. an artist); default: by
            song when ids are song segments like `blues.00000.3.wav` (features_3_sec.csv).
        drop_columns: columns that are neither features nor label/id (`length` always is).
        cv_folds: folds of the cross-validation objective; 0 or 1: the table's val split
            (default GENREOPS_CV_FOLDS, 4).
    """
    logger = get_run_logger()
    settings = get_settings()
    spaces = load_search_spaces(Path(search_space_file) if search_space_file else None)
    chosen = studies.choose_families(families, spaces, search_space_file)
    table = load_feature_table(
        features_url,
        s3=settings.s3,
        split_seed=seed,
        label_column=label_column,
        id_column=id_column,
        group_column=group_column,
        drop_columns=drop_columns or (),
    )
    logger.info("%s", studies.describe_table(table))
    progress.start(trials * len(chosen))

    def tune_one(family: str, members: dict[str, dict[str, Any]] | None) -> FamilyOutcome:
        return tune_family(
            table, family, trials, timeout_seconds, seed, study_storage, search_space_file,
            skip_trained, cv_folds, members,
        )  # fmt: skip

    return studies.train_families(
        table, chosen, spaces, tune_one, target=TrackingTarget.from_settings(settings), log=logger
    )
