"""The classifiers a study produces: a pipeline per model family, and what wraps it.

``GenreClassifier`` is what training logs and serving loads: a fitted pipeline that speaks
genre names and refuses features of another schema. ``build_pipeline`` / ``fit_pipeline`` make
one family's pipeline (scaling where the family needs it, class balance, the estimator);
``CalibratedSVC`` and ``SoftVoteClassifier`` are the two estimators of our own.

Pickles made before this module existed name ``genreops.training.tuning``: that module
re-exports these classes, so they still load.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb
from imblearn.over_sampling import RandomOverSampler
from imblearn.pipeline import Pipeline
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import RobustScaler, StandardScaler
from sklearn.svm import SVC
from sklearn.utils.class_weight import compute_sample_weight

from genreops.core.errors import SchemaError, TrainingError
from genreops.training.search_space import FAMILIES, SOFT_VOTE, weight_name

SVC_CALIBRATION_FOLDS = 3  # internal folds that calibrate an SVC's probabilities


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


def proba_columns(estimator: Any, features: np.ndarray, n_classes: int) -> np.ndarray:
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
            weight * proba_columns(estimator, features, n_classes)
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
