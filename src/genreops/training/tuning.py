"""Tune a model family with Optuna on a feature table, then refit the best configuration.

No tracking here: callers pass ``on_trial`` to watch trials (the CLI draws a bar, the tracking
module logs nested MLflow runs) and log the returned ``TuningResult`` themselves.

Imbalance: the objective is validation G-mean, which collapses to 0 when one genre is never
predicted; ``correction=1e-3`` keeps a gradient for the sampler (plain G-mean is reported too).
Classes are balanced per family as the search space says (see configs/search_spaces.yaml).

Validation: on a small table the table's own validation split is a few rows per genre, and a
study tuned on it chases noise. Up to ``cv_max_rows`` rows of train+val, each configuration is
therefore scored by stratified k-fold cross-validation on train+val (the G-mean of the pooled
out-of-fold predictions; folds run in parallel, a poor trial is pruned after the first folds);
larger tables keep the train/val split. Either way the ``val_*`` figures are those of the best
configuration on the rows it was scored on, the kept model is refit on train+val, and the test
rows are used once, for the test figures.

A soft vote (``soft_vote``) averages the probabilities of tuned models of other families; its
study tunes only the members' weights, on the members' out-of-fold probabilities.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
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
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    classification_report,
    confusion_matrix,
    matthews_corrcoef,
    precision_recall_fscore_support,
)
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import RobustScaler, StandardScaler
from sklearn.svm import SVC
from sklearn.utils.class_weight import compute_sample_weight
from threadpoolctl import threadpool_limits

from genreops.core.errors import SchemaError, TrainingError
from genreops.data.feature_table import FeatureTable
from genreops.training.search_space import FAMILIES, SOFT_VOTE, SearchSpace, weight_name

log = logging.getLogger(__name__)

GMEAN_CORRECTION = 1e-3
PRUNE_EVERY = 25  # boosting rounds between intermediate reports (xgboost, train/val split)
CV_FOLDS = 4  # folds of the cross-validation objective (2 cores: two rounds of two folds)
CV_MAX_ROWS = 5000  # above this many train+val rows the table's own val split is used
SVC_CALIBRATION_FOLDS = 3  # internal folds that calibrate an SVC's probabilities


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


class CalibratedSVC(ClassifierMixin, BaseEstimator):
    """An RBF SVC whose probabilities are calibrated, so ``predict`` = argmax ``predict_proba``.

    The decision values are calibrated on ``folds`` internal stratified folds of the training
    rows (sklearn's ``CalibratedClassifierCV`` with ``ensemble=False``: one SVC refit on all
    rows answers). ``SVC(probability=True)`` is deprecated in scikit-learn 1.9 and its
    ``predict`` can disagree with its own probabilities, while serving reads the argmax of the
    probabilities. When a genre has a single training row there are no folds to calibrate on:
    the SVC is then calibrated on its own training rows.
    """

    def __init__(
        self,
        C: float = 1.0,  # noqa: N803 (scikit-learn's name)
        gamma: float | str = "scale",
        class_weight: str | None = None,
        calibration: str = "sigmoid",
        folds: int = SVC_CALIBRATION_FOLDS,
        random_state: int = 0,
    ) -> None:
        self.C = C
        self.gamma = gamma
        self.class_weight = class_weight
        self.calibration = calibration
        self.folds = folds
        self.random_state = random_state

    def fit(self, features: np.ndarray, codes: np.ndarray) -> CalibratedSVC:
        svc = SVC(C=self.C, gamma=self.gamma, class_weight=self.class_weight, kernel="rbf")
        smallest = int(np.bincount(np.unique(codes, return_inverse=True)[1]).min())
        folds = min(self.folds, smallest)
        if folds >= 2:
            cv = StratifiedKFold(folds, shuffle=True, random_state=self.random_state)
            model = CalibratedClassifierCV(svc, method=self.calibration, cv=cv, ensemble=False)
            self.model_ = model.fit(features, codes)
        else:
            # a frozen SVC's "folds" are its own rows: one split whose test part is every row
            rows = np.arange(len(codes))
            frozen = FrozenEstimator(svc.fit(features, codes))
            model = CalibratedClassifierCV(frozen, method=self.calibration, cv=[(rows, rows)])
            self.model_ = model.fit(features, codes)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(self.model_.predict_proba(features))

    def predict(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(self.classes_[np.argmax(self.predict_proba(features), axis=1)])


def soft_vote_params(
    members: Mapping[str, Mapping[str, Any]], weights: Mapping[str, float]
) -> dict[str, Any]:
    """One flat parameter set for a soft vote: ``members``, ``weight_<member>`` and each
    member's parameters as ``<member>.<name>`` (flat, so MLflow logs every one of them)."""
    params: dict[str, Any] = {"members": list(members)}
    for member, member_params in members.items():
        params[weight_name(member)] = float(weights[member])
        params.update({f"{member}.{k}": v for k, v in member_params.items()})
    return params


def soft_vote_members(params: Mapping[str, Any]) -> list[tuple[str, dict[str, Any], float]]:
    """(family, parameters, weight) per member of a soft vote's flat parameters."""
    members = params.get("members")
    if not isinstance(members, list | tuple) or not members:
        raise TrainingError(f"{SOFT_VOTE}: no members in {sorted(params)}")
    return [
        (
            member,
            {k.split(".", 1)[1]: v for k, v in params.items() if k.startswith(f"{member}.")},
            float(params.get(weight_name(member), 1.0)),
        )
        for member in members
    ]


def _set_n_jobs(estimator: Any, n_jobs: int) -> None:
    """Threads for an estimator and what it wraps (a pipeline's last step, a soft vote's
    members), e.g. one thread when serving single rows."""
    if isinstance(estimator, Pipeline):
        _set_n_jobs(estimator.steps[-1][1], n_jobs)
    elif "n_jobs" in estimator.get_params(deep=False):
        estimator.set_params(n_jobs=n_jobs)


def _proba_columns(estimator: Any, features: np.ndarray, n_classes: int) -> np.ndarray:
    """``predict_proba`` with one column per genre code, whatever codes the model saw."""
    proba = np.asarray(estimator.predict_proba(features), dtype=np.float64)
    classes = np.asarray(estimator.classes_, dtype=np.int64)
    if proba.shape[1] == n_classes and np.array_equal(classes, np.arange(n_classes)):
        return proba
    full = np.zeros((len(features), n_classes))
    full[:, classes] = proba
    return full


class SoftVoteClassifier(ClassifierMixin, BaseEstimator):
    """Weighted mean of the members' probabilities; ``predict`` is its argmax.

    ``members`` are (family, parameters) pairs, each fitted as its own pipeline (scaling,
    class balance and all) by ``fit_pipeline``; ``set_params(n_jobs=...)`` reaches every member,
    so serving can make the whole vote single-threaded as it does a single model.
    """

    def __init__(
        self,
        members: Sequence[tuple[str, dict[str, Any]]] = (),
        weights: Sequence[float] = (),
        seed: int = 0,
        n_jobs: int = 1,
    ) -> None:
        self.members = members
        self.weights = weights
        self.seed = seed
        self.n_jobs = n_jobs

    def fit(self, features: np.ndarray, codes: np.ndarray) -> SoftVoteClassifier:
        if len(self.members) != len(self.weights) or not self.members:
            raise TrainingError(f"{SOFT_VOTE}: one weight per member needed")
        if sum(self.weights) <= 0:
            raise TrainingError(f"{SOFT_VOTE}: the members' weights add up to 0")
        self.classes_ = np.unique(codes)
        self.estimators_ = [
            fit_pipeline(family, params, features, codes, seed=self.seed, n_jobs=self.n_jobs)
            for family, params in self.members
        ]
        return self

    def set_params(self, **params: Any) -> SoftVoteClassifier:
        super().set_params(**params)
        if "n_jobs" in params:
            for estimator in getattr(self, "estimators_", []):
                _set_n_jobs(estimator, params["n_jobs"])
        return self

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        n_classes = int(self.classes_.max()) + 1
        total = sum(
            weight * _proba_columns(estimator, features, n_classes)
            for weight, estimator in zip(self.weights, self.estimators_, strict=True)
        )
        proba = np.asarray(total, dtype=np.float64)[:, self.classes_] / sum(self.weights)
        return proba

    def predict(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(self.classes_[np.argmax(self.predict_proba(features), axis=1)])


def build_pipeline(family: str, params: dict[str, Any], *, seed: int, n_jobs: int) -> Pipeline:
    """Scaling where the family needs it, optional oversampling, then the estimator."""
    if family == SOFT_VOTE:
        members = soft_vote_members(params)
        vote = SoftVoteClassifier(
            [(f, p) for f, p, _ in members], [w for _, _, w in members], seed=seed, n_jobs=n_jobs
        )
        return Pipeline([("model", vote)])
    params = dict(params)
    balance = params.pop("class_balance", "none")
    steps: list[tuple[str, Any]] = []
    if family == "knn":
        scaler = params.pop("scaler", "standard")
        steps.append(("scale", RobustScaler() if scaler == "robust" else StandardScaler()))
    elif family in ("svc", "logistic_regression"):
        steps.append(("scale", StandardScaler()))
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
    elif family == "svc":
        if balance == "weights":
            params["class_weight"] = "balanced"
        model = CalibratedSVC(random_state=seed, **params)
    elif family == "logistic_regression":
        if balance == "weights":
            params["class_weight"] = "balanced"
        model = LogisticRegression(random_state=seed, **params)
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
        with warnings.catch_warnings():
            # lbfgs stopping at max_iter on a badly conditioned trial is the trial's score
            warnings.simplefilter("ignore", ConvergenceWarning)
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
    return evaluate_predictions(
        labels.to_numpy(dtype=object), classifier.predict(features), classifier.genres, split
    )


def evaluate_predictions(
    truth: np.ndarray, predicted: np.ndarray, genres: list[str], split: str
) -> Evaluation:
    """Metrics, confusion matrix and reports of genre-name predictions."""
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
    scheme: str = "train/val split"  # how configurations were scored (see ``Scheme``)

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


def default_study_name(family: str, table: FeatureTable, seed: int, scheme: str = "") -> str:
    return f"genreops-{family}-{table.digest[:12]}-seed{seed}{scheme}"


@dataclass(frozen=True)
class Scheme:
    """How a configuration is scored: the rows of train+val and the folds over them.

    ``folds`` are (fit rows, scored rows) index pairs into ``features``; the train/val split
    is one such pair, k-fold cross-validation k of them. ``scored`` are the rows that get an
    out-of-fold prediction (all of train+val under cross-validation, val otherwise).
    """

    features: np.ndarray
    codes: np.ndarray
    folds: list[tuple[np.ndarray, np.ndarray]]
    description: str
    suffix: str  # in study names, so a shared storage never mixes schemes

    @property
    def cross_validated(self) -> bool:
        return len(self.folds) > 1

    @property
    def scored(self) -> np.ndarray:
        return np.sort(np.concatenate([scored for _, scored in self.folds]))


def scheme_for(
    table: FeatureTable, *, cv_folds: int = CV_FOLDS, cv_max_rows: int = CV_MAX_ROWS, seed: int = 0
) -> Scheme:
    """Cross-validation on train+val for a small table, else the table's train/val split.

    The folds never outnumber the rows of the rarest genre (every fold then fits on every
    genre); a table too small for two folds keeps its split.
    """
    features, labels = table.part("train", "val")
    code_of = {g: i for i, g in enumerate(table.genres)}
    codes = labels.map(code_of).to_numpy(dtype=np.int64)
    matrix = features.to_numpy(np.float64)
    folds = min(cv_folds, int(np.bincount(codes).min()))
    if cv_folds >= 2 and folds >= 2 and len(codes) <= cv_max_rows:
        splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
        return Scheme(
            matrix,
            codes,
            [(fit, scored) for fit, scored in splitter.split(matrix, codes)],
            f"{folds}-fold stratified cross-validation on train+val ({len(codes)} rows)",
            f"-cv{folds}",
        )
    part = table.split[table.split.isin(["train", "val"])].to_numpy()
    fit, scored = np.flatnonzero(part == "train"), np.flatnonzero(part == "val")
    return Scheme(
        matrix,
        codes,
        [(fit, scored)],
        f"train/val split ({len(fit)} -> {len(scored)} rows)",
        "",
    )


def _gmean(codes: np.ndarray, predicted: np.ndarray) -> float:
    return float(
        geometric_mean_score(codes, predicted, average="multiclass", correction=GMEAN_CORRECTION)
    )


class _Folds:
    """Runs one configuration's folds, two (or ``n_jobs``) at a time, in fold order.

    Each fold's model gets ``n_jobs // workers`` threads; under cross-validation BLAS pools
    are limited to that too, so the folds do not fight over the cores.
    """

    def __init__(self, scheme: Scheme, n_jobs: int) -> None:
        self.scheme = scheme
        self.workers = max(1, min(n_jobs, len(scheme.folds)))
        self.fit_jobs = max(1, n_jobs // self.workers)
        self._pool: ThreadPoolExecutor | None = None

    @contextmanager
    def running(self) -> Iterator[_Folds]:
        if self.workers == 1:
            yield self
            return
        with (
            ThreadPoolExecutor(self.workers, thread_name_prefix="genreops-fold") as pool,
            threadpool_limits(limits=self.fit_jobs, user_api="blas"),
        ):
            self._pool = pool
            try:
                yield self
            finally:
                self._pool = None

    def map(self, job: Callable[[int], Any]) -> Iterator[Any]:
        """``job(fold)`` per fold, results in fold order; closing the iterator early (a pruned
        trial) cancels the folds not yet started."""
        indices = range(len(self.scheme.folds))
        if self._pool is None:
            return map(job, indices)
        return self._pool.map(job, indices)


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
    cv_folds: int = CV_FOLDS,
    cv_max_rows: int = CV_MAX_ROWS,
    members: Mapping[str, Mapping[str, Any]] | None = None,
) -> TuningResult:
    """Run one study, refit the best configuration on train+val, evaluate on val and test.

    ``members`` (soft vote only): each member family's tuned parameters.
    """
    if trials < 1:
        raise TrainingError("trials must be at least 1")
    family = space.family
    n_jobs = n_jobs or _threads()
    started = time.perf_counter()
    genres = table.genres
    scheme = scheme_for(table, cv_folds=cv_folds, cv_max_rows=cv_max_rows, seed=seed)
    folds = _Folds(scheme, n_jobs)
    features, codes = scheme.features, scheme.codes
    # out-of-fold predictions of finished trials, so the best one's need not be refit
    predictions: dict[int, np.ndarray] = {}

    if family == SOFT_VOTE:
        member_params = _member_params(space, members)
        with folds.running():
            member_proba = [
                _out_of_fold_proba(m, p, folds, seed, len(genres)) for m, p in member_params.items()
            ]
        objective = _vote_objective(space, scheme, member_proba, predictions)
        suffix = f"{scheme.suffix}-m{_digest(member_params)}"
    else:
        smallest_fit = min(len(fit) for fit, _ in scheme.folds)
        if family == "knn":  # a small table cannot have more neighbours than training rows
            space = space.capped("n_neighbors", smallest_fit)
        objective = _model_objective(space, folds, seed, predictions)
        suffix = scheme.suffix

    name = study_name or default_study_name(family, table, seed, suffix)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=name,
        direction="maximize",
        sampler=_sampler(seed),
        # cross-validation reports after each fold: judge a trial once two folds are in
        pruner=optuna.pruners.MedianPruner(
            n_startup_trials=5, n_warmup_steps=1 if scheme.cross_validated else PRUNE_EVERY
        ),
        storage=_storage(storage),
        load_if_exists=True,
    )
    reports: list[TrialReport] = []

    def watch(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        state = {
            optuna.trial.TrialState.COMPLETE: "complete",
            optuna.trial.TrialState.PRUNED: "pruned",
        }.get(trial.state, "fail")
        if state != "complete":
            predictions.pop(trial.number, None)
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

    with warnings.catch_warnings(), folds.running():
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
        if family == SOFT_VOTE:
            fixed = space.fixed()
            weights = {
                m: best.params.get(weight_name(m), fixed.get(weight_name(m), 1.0))
                for m in space.members
            }
            best_params = soft_vote_params(member_params, weights)
        else:
            best_params = {**space.fixed(), **best.params}
        predicted = predictions.get(best.number)
        if predicted is None:  # another worker's trial (shared storage): score it again
            predicted = _out_of_fold(family, best_params, folds, seed)

    # Validation figures are the best configuration's out-of-fold predictions, exactly as the
    # study scored it; the model we keep is refit on train+val and judged once on the test rows.
    names = np.asarray(genres, dtype=object)
    scored = scheme.scored
    validation = evaluate_predictions(names[codes[scored]], names[predicted[scored]], genres, "val")
    pipeline = fit_pipeline(family, best_params, features, codes, seed=seed, n_jobs=n_jobs)
    final = GenreClassifier(
        family=family,
        params=best_params,
        genres=genres,
        feature_names=table.feature_names,
        schema_version=table.schema_version,
        schema_hash=table.schema_hash,
        pipeline=pipeline,
    )
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
        scheme=scheme.description,
    )


def _fit_fold(
    family: str,
    params: dict[str, Any],
    folds: _Folds,
    fold: int,
    seed: int,
    callbacks: Sequence[Any] = (),
) -> Pipeline:
    scheme = folds.scheme
    fit, _ = scheme.folds[fold]
    return fit_pipeline(
        family,
        params,
        scheme.features[fit],
        scheme.codes[fit],
        seed=seed,
        n_jobs=folds.fit_jobs,
        callbacks=callbacks,
    )


def _out_of_fold(family: str, params: dict[str, Any], folds: _Folds, seed: int) -> np.ndarray:
    """Out-of-fold genre codes of one configuration (-1 on rows no fold scores)."""
    scheme = folds.scheme
    predicted = np.full(len(scheme.codes), -1, dtype=np.int64)

    def job(fold: int) -> None:
        scored = scheme.folds[fold][1]
        model = _fit_fold(family, params, folds, fold, seed)
        predicted[scored] = model.predict(scheme.features[scored])

    for _ in folds.map(job):
        pass
    return predicted


def _out_of_fold_proba(
    family: str, params: Mapping[str, Any], folds: _Folds, seed: int, n_classes: int
) -> np.ndarray:
    """Out-of-fold probabilities of one configuration, one column per genre code."""
    scheme = folds.scheme
    proba = np.zeros((len(scheme.codes), n_classes))

    def job(fold: int) -> None:
        scored = scheme.folds[fold][1]
        try:
            model = _fit_fold(family, dict(params), folds, fold, seed)
        except TrainingError as error:
            raise TrainingError(f"{SOFT_VOTE}: member {error}") from error
        proba[scored] = _proba_columns(model, scheme.features[scored], n_classes)

    for _ in folds.map(job):
        pass
    return proba


def _model_objective(
    space: SearchSpace, folds: _Folds, seed: int, predictions: dict[int, np.ndarray]
) -> Callable[[optuna.Trial], float]:
    """Fit and score one trial's configuration on every fold; prune between folds."""
    family, scheme = space.family, folds.scheme
    features, codes = scheme.features, scheme.codes

    def objective(trial: optuna.Trial) -> float:
        params = space.suggest(trial)
        predicted = np.full(len(codes), -1, dtype=np.int64)

        def job(fold: int) -> np.ndarray:
            scored = scheme.folds[fold][1]
            callbacks = []
            if family == "xgboost" and not scheme.cross_validated:
                callbacks = [_PruneOnValidation(trial, features[scored], codes[scored])]
            model = _fit_fold(family, params, folds, fold, seed, callbacks)
            predicted[scored] = model.predict(features[scored])
            return scored

        done: list[np.ndarray] = []
        results = folds.map(job)
        try:
            for step, scored in enumerate(results):
                done.append(scored)
                if scheme.cross_validated and step < len(scheme.folds) - 1:
                    rows = np.concatenate(done)
                    trial.report(_gmean(codes[rows], predicted[rows]), step)
                    if trial.should_prune():
                        raise optuna.TrialPruned(f"after {step + 1} of {len(scheme.folds)} folds")
        except (ValueError, TypeError) as error:  # e.g. more neighbours than training rows
            failure = TrainingError(f"{family} with {params}: {error}")
            trial.set_user_attr("error", str(failure))
            raise failure from error
        except TrainingError as error:
            trial.set_user_attr("error", str(error))
            raise
        finally:
            close = getattr(results, "close", None)
            if close is not None:
                close()  # a pruned or failed trial: folds not yet started are cancelled
        scored = scheme.scored
        predictions[trial.number] = predicted
        return _gmean(codes[scored], predicted[scored])

    return objective


def _vote_objective(
    space: SearchSpace,
    scheme: Scheme,
    member_proba: list[np.ndarray],
    predictions: dict[int, np.ndarray],
) -> Callable[[optuna.Trial], float]:
    """Score one set of member weights on the members' out-of-fold probabilities."""
    scored, codes = scheme.scored, scheme.codes

    def objective(trial: optuna.Trial) -> float:
        params = space.suggest(trial)
        weights = [float(params[weight_name(m)]) for m in space.members]
        if sum(weights) <= 0:
            error = f"{SOFT_VOTE}: the members' weights add up to 0"
            trial.set_user_attr("error", error)
            raise TrainingError(error)
        mixed = sum(w * p for w, p in zip(weights, member_proba, strict=True))
        predicted = np.argmax(np.asarray(mixed), axis=1).astype(np.int64)
        predictions[trial.number] = predicted
        return _gmean(codes[scored], predicted[scored])

    return objective


def _member_params(
    space: SearchSpace, members: Mapping[str, Mapping[str, Any]] | None
) -> dict[str, dict[str, Any]]:
    missing = [m for m in space.members if not members or m not in members]
    if missing:
        raise TrainingError(
            f"{SOFT_VOTE}: no tuned parameters for member(s) {', '.join(missing)} "
            f"(members: {', '.join(space.members)}); tune them first"
        )
    assert members is not None
    return {m: dict(members[m]) for m in space.members}


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]
