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

The pieces a study uses live beside it: the classifiers in ``models``, the metrics in
``evaluation``, the scoring scheme and its folds in ``validation``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
import sqlalchemy.exc
import tenacity
import xgboost as xgb
from imblearn.pipeline import Pipeline

from genreops.core.errors import TrainingError
from genreops.data.feature_table import FeatureTable
from genreops.training.evaluation import (
    Evaluation,
    corrected_gmean,
    evaluate,
    evaluate_predictions,
)

# Re-exported: pickles made before the split name these classes in this module.
from genreops.training.models import (
    CalibratedSVC,
    GenreClassifier,
    SoftVoteClassifier,
    fit_pipeline,
    proba_columns,
    soft_vote_params,
)
from genreops.training.search_space import SOFT_VOTE, SearchSpace, weight_name
from genreops.training.validation import CV_FOLDS, CV_MAX_ROWS, Folds, Scheme, scheme_for

__all__ = [
    "CalibratedSVC",
    "GenreClassifier",
    "SoftVoteClassifier",
    "TrialReport",
    "TuningResult",
    "tune",
]

PRUNE_EVERY = 25  # boosting rounds between intermediate reports (xgboost, train/val split)


def _threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


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
        value = corrected_gmean(self.codes, np.argmax(proba, axis=1))
        self.trial.report(value, rounds)
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
    folds = Folds(scheme, n_jobs)
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
    folds: Folds,
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


def _out_of_fold(family: str, params: dict[str, Any], folds: Folds, seed: int) -> np.ndarray:
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
    family: str, params: Mapping[str, Any], folds: Folds, seed: int, n_classes: int
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
        proba[scored] = proba_columns(model, scheme.features[scored], n_classes)

    for _ in folds.map(job):
        pass
    return proba


def _model_objective(
    space: SearchSpace, folds: Folds, seed: int, predictions: dict[int, np.ndarray]
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
                    trial.report(corrected_gmean(codes[rows], predicted[rows]), step)
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
        return corrected_gmean(codes[scored], predicted[scored])

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
        return corrected_gmean(codes[scored], predicted[scored])

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
