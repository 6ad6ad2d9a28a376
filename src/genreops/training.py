"""Tune a model family with Optuna on a feature table, then refit the best configuration.

No tracking here: callers pass ``on_trial`` to watch trials (the CLI draws a bar, the tracking
module logs nested MLflow runs) and log the returned ``TuningResult`` themselves.

Imbalance: the objective is validation G-mean, which collapses to 0 when one genre is never
predicted; ``correction=1e-3`` keeps a gradient for the sampler (plain G-mean is reported too).
Classes are balanced per family as the search space says (see configs/search_spaces.yaml).
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
import pandas as pd
import sqlalchemy.exc
import tenacity
import xgboost as xgb
from imblearn.metrics import classification_report_imbalanced, geometric_mean_score
from imblearn.over_sampling import RandomOverSampler
from imblearn.pipeline import Pipeline
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    classification_report,
    confusion_matrix,
    matthews_corrcoef,
    precision_recall_fscore_support,
)
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import RobustScaler, StandardScaler
from sklearn.utils.class_weight import compute_sample_weight

from genreops.errors import SchemaError, TrainingError
from genreops.feature_table import FeatureTable
from genreops.search_space import FAMILIES, SearchSpace

log = logging.getLogger(__name__)

GMEAN_CORRECTION = 1e-3
PRUNE_EVERY = 25  # boosting rounds between intermediate reports (xgboost)


def _threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass
class GenreClassifier:
    """A fitted pipeline that speaks genre names and checks the feature schema it was built on."""

    family: str
    params: dict[str, Any]
    genres: list[str]
    feature_names: list[str]
    schema_version: str
    schema_hash: str
    pipeline: Any = field(repr=False)

    def matrix(self, features: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Features in schema order; refuses missing columns or a wrong width."""
        if isinstance(features, pd.DataFrame):
            missing = [n for n in self.feature_names if n not in features.columns]
            if missing:
                raise SchemaError(
                    f"{len(missing)} feature column(s) of schema {self.schema_hash} missing "
                    f"(first: {missing[0]!r})"
                )
            return features[self.feature_names].to_numpy(dtype=np.float64)
        array = np.asarray(features, dtype=np.float64)
        if array.ndim != 2 or array.shape[1] != len(self.feature_names):
            raise SchemaError(
                f"expected a 2-D array of {len(self.feature_names)} features "
                f"(schema {self.schema_hash}), got shape {array.shape}"
            )
        return array

    def predict_proba(self, features: pd.DataFrame | np.ndarray) -> np.ndarray:
        """One row per input, one column per genre in ``self.genres`` order."""
        return np.asarray(self.pipeline.predict_proba(self.matrix(features)), dtype=np.float64)

    def predict(self, features: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Genre names."""
        codes = np.asarray(self.pipeline.predict(self.matrix(features)), dtype=np.int64)
        return np.asarray(self.genres, dtype=object)[codes]


def build_pipeline(family: str, params: dict[str, Any], *, seed: int, n_jobs: int) -> Pipeline:
    """Scaling where the family needs it, optional oversampling, then the estimator."""
    params = dict(params)
    balance = params.pop("class_balance", "none")
    steps: list[tuple[str, Any]] = []
    if family == "knn":
        scaler = params.pop("scaler", "standard")
        steps.append(("scale", RobustScaler() if scaler == "robust" else StandardScaler()))
    if balance == "oversample":
        steps.append(("oversample", RandomOverSampler(random_state=seed)))
    model: Any
    if family == "xgboost":
        model = xgb.XGBClassifier(
            tree_method="hist", random_state=seed, n_jobs=n_jobs, verbosity=0, **params
        )
    elif family == "random_forest":
        if balance == "weights":
            params["class_weight"] = "balanced"
        model = RandomForestClassifier(random_state=seed, n_jobs=n_jobs, **params)
    elif family == "knn":
        model = KNeighborsClassifier(n_jobs=n_jobs, **params)
    else:
        raise TrainingError(f"unknown model family {family!r} (known: {', '.join(FAMILIES)})")
    steps.append(("model", model))
    return Pipeline(steps)


def fit_pipeline(
    family: str,
    params: dict[str, Any],
    features: np.ndarray,
    codes: np.ndarray,
    *,
    seed: int,
    n_jobs: int,
    callbacks: Sequence[Any] = (),
) -> Pipeline:
    pipeline = build_pipeline(family, params, seed=seed, n_jobs=n_jobs)
    fit_params: dict[str, Any] = {}
    if family == "xgboost":
        if params.get("class_balance") == "weights":
            fit_params["model__sample_weight"] = compute_sample_weight("balanced", codes)
        pipeline.named_steps["model"].set_params(callbacks=list(callbacks) or None)
    try:
        pipeline.fit(features, codes, **fit_params)
    except (ValueError, TypeError) as error:  # an invalid parameter combination
        raise TrainingError(f"{family} with {params}: {error}") from error
    if family == "xgboost":
        pipeline.named_steps["model"].set_params(callbacks=None)  # never pickle a live trial
    return pipeline


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """The metrics every model is judged and compared by (names are stable MLflow keys)."""
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, average="macro", zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "precision_macro": float(precision),
        "recall_macro": float(recall),
        "f1_macro": float(f1),
        "mcc": float(matthews_corrcoef(y_true, y_pred)),
        "gmean": float(geometric_mean_score(y_true, y_pred, average="multiclass")),
        "gmean_corrected": float(
            geometric_mean_score(y_true, y_pred, average="multiclass", correction=GMEAN_CORRECTION)
        ),
    }


@dataclass(frozen=True)
class Evaluation:
    """How a model did on one split: metrics, confusion matrix and a printable report."""

    split: str
    metrics: dict[str, float]
    confusion: np.ndarray
    report: str
    n_rows: int


def evaluate(
    classifier: GenreClassifier, features: pd.DataFrame, labels: pd.Series, split: str
) -> Evaluation:
    predicted = classifier.predict(features)
    truth = labels.to_numpy(dtype=object)
    genres = classifier.genres
    report = classification_report(truth, predicted, labels=genres, zero_division=0, digits=3)
    imbalanced = classification_report_imbalanced(
        truth, predicted, labels=genres, zero_division=0, digits=3
    )
    return Evaluation(
        split=split,
        metrics=classification_metrics(truth, predicted),
        confusion=confusion_matrix(truth, predicted, labels=genres),
        report=f"{report}\n{imbalanced}",
        n_rows=len(truth),
    )


@dataclass(frozen=True)
class TrialReport:
    """One finished trial, as ``on_trial`` callbacks see it."""

    number: int
    state: str  # complete | pruned | fail
    value: float | None
    params: dict[str, Any]
    seconds: float
    best_value: float | None
    error: str | None = None


@dataclass
class TuningResult:
    family: str
    study_name: str
    seed: int
    best_params: dict[str, Any]
    best_trial: int
    best_value: float
    trials: list[TrialReport]
    classifier: GenreClassifier
    validation: Evaluation
    test: Evaluation | None
    seconds: float

    @property
    def counts(self) -> dict[str, int]:
        return {s: sum(t.state == s for t in self.trials) for s in ("complete", "pruned", "fail")}


class _PruneOnValidation(xgb.callback.TrainingCallback):
    """Reports corrected validation G-mean every few rounds so Optuna can stop a poor trial."""

    def __init__(self, trial: optuna.Trial, features: np.ndarray, codes: np.ndarray) -> None:
        self.trial = trial
        self.features = features
        self.codes = codes

    def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
        rounds = epoch + 1
        if rounds % PRUNE_EVERY:
            return False
        proba = model.inplace_predict(self.features, iteration_range=(0, rounds))
        value = geometric_mean_score(
            self.codes, np.argmax(proba, axis=1), average="multiclass", correction=GMEAN_CORRECTION
        )
        self.trial.report(float(value), rounds)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"validation G-mean {value:.3f} after {rounds} rounds")
        return False


def _sampler(seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(seed=seed)


@tenacity.retry(
    # workers started together on a fresh database race to create Optuna's tables; the
    # loser's CREATE fails on a unique constraint, and a moment later the tables exist
    retry=tenacity.retry_if_exception_type(sqlalchemy.exc.IntegrityError),
    wait=tenacity.wait_random(0.2, 1.0),
    stop=tenacity.stop_after_attempt(5),
    reraise=True,
)
def _open_storage(url: str) -> optuna.storages.BaseStorage:
    return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})


def _storage(url: str | None) -> optuna.storages.BaseStorage | None:
    if not url:
        return None
    try:
        return _open_storage(url)
    except Exception as error:  # optuna/sqlalchemy raise many kinds; the user needs the URL
        safe = url.split("@")[-1]
        raise TrainingError(f"study storage {safe}: cannot open ({error})") from error


def default_study_name(family: str, table: FeatureTable, seed: int) -> str:
    return f"genreops-{family}-{table.digest[:12]}-seed{seed}"


def tune(
    table: FeatureTable,
    space: SearchSpace,
    *,
    trials: int,
    timeout: float | None = None,
    seed: int = 0,
    storage: str | None = None,
    study_name: str | None = None,
    n_jobs: int | None = None,
    on_trial: Callable[[TrialReport], None] | None = None,
) -> TuningResult:
    """Run one study, refit the best configuration on train+val, evaluate on val and test."""
    if trials < 1:
        raise TrainingError("trials must be at least 1")
    family = space.family
    n_jobs = n_jobs or _threads()
    started = time.perf_counter()
    genres = table.genres
    code_of = {g: i for i, g in enumerate(genres)}
    train_x, train_y = table.part("train")
    val_x, val_y = table.part("val")
    train_codes = train_y.map(code_of).to_numpy(dtype=np.int64)
    val_codes = val_y.map(code_of).to_numpy(dtype=np.int64)
    train_m, val_m = train_x.to_numpy(np.float64), val_x.to_numpy(np.float64)
    if family == "knn":  # a small table cannot have more neighbours than training rows
        space = space.capped("n_neighbors", len(train_m))

    def objective(trial: optuna.Trial) -> float:
        params = space.suggest(trial)
        callbacks = [_PruneOnValidation(trial, val_m, val_codes)] if family == "xgboost" else []
        try:
            pipeline = fit_pipeline(
                family, params, train_m, train_codes, seed=seed, n_jobs=n_jobs, callbacks=callbacks
            )
            predicted = pipeline.predict(val_m)
        except (ValueError, TypeError) as error:  # e.g. more neighbours than training rows
            failure = TrainingError(f"{family} with {params}: {error}")
            trial.set_user_attr("error", str(failure))
            raise failure from error
        except TrainingError as error:
            trial.set_user_attr("error", str(error))
            raise
        return float(
            geometric_mean_score(
                val_codes, predicted, average="multiclass", correction=GMEAN_CORRECTION
            )
        )

    name = study_name or default_study_name(family, table, seed)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=name,
        direction="maximize",
        sampler=_sampler(seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=PRUNE_EVERY),
        storage=_storage(storage),
        load_if_exists=True,
    )
    reports: list[TrialReport] = []

    def watch(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        state = {
            optuna.trial.TrialState.COMPLETE: "complete",
            optuna.trial.TrialState.PRUNED: "pruned",
        }.get(trial.state, "fail")
        try:
            best: float | None = study.best_value
        except ValueError:
            best = None
        report = TrialReport(
            number=trial.number,
            state=state,
            value=trial.value,
            params=dict(trial.params),
            seconds=trial.duration.total_seconds() if trial.duration else 0.0,
            best_value=best,
            error=trial.user_attrs.get("error"),
        )
        reports.append(report)
        if on_trial is not None:
            on_trial(report)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # xgboost/sklearn chatter per trial
        study.optimize(
            objective,
            n_trials=trials,
            timeout=timeout,
            callbacks=[watch],
            catch=(TrainingError,),
            gc_after_trial=False,
        )
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        reasons = {r.error for r in reports if r.error}
        raise TrainingError(
            f"{family}: no trial completed ({len(reports)} tried)"
            + (f"; first failure: {sorted(reasons)[0]}" if reasons else "")
        )
    best = study.best_trial
    best_params = {**space.fixed(), **best.params}

    # Validation figures come from a model fit on train only, exactly as the trial saw it;
    # the model we keep is refit on train+val and judged once on the untouched test rows.
    def fitted(features: pd.DataFrame, labels: pd.Series) -> GenreClassifier:
        pipeline = fit_pipeline(
            family,
            best_params,
            features.to_numpy(np.float64),
            labels.map(code_of).to_numpy(dtype=np.int64),
            seed=seed,
            n_jobs=n_jobs,
        )
        return GenreClassifier(
            family=family,
            params=best_params,
            genres=genres,
            feature_names=table.feature_names,
            schema_version=table.schema_version,
            schema_hash=table.schema_hash,
            pipeline=pipeline,
        )

    validation = evaluate(fitted(train_x, train_y), val_x, val_y, "val")
    final = fitted(*table.part("train", "val"))
    test_x, test_y = table.part("test")
    test = evaluate(final, test_x, test_y, "test") if len(test_y) else None
    return TuningResult(
        family=family,
        study_name=name,
        seed=seed,
        best_params=best_params,
        best_trial=best.number,
        best_value=float(best.value if best.value is not None else 0.0),
        trials=reports,
        classifier=final,
        validation=validation,
        test=test,
        seconds=time.perf_counter() - started,
    )
