"""Tuning and refitting without any tracking server: the stage logic alone."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest

from genreops.core.errors import SchemaError, TrainingError
from genreops.data.feature_table import FeatureTable, load_feature_table
from genreops.data.features import FEATURE_NAMES
from genreops.training.evaluation import classification_metrics
from genreops.training.models import CalibratedSVC, SoftVoteClassifier
from genreops.training.search_space import SearchSpace, load_search_spaces
from genreops.training.tuning import TrialReport, TuningResult, tune
from genreops.training.validation import scheme_for

pytestmark = pytest.mark.unit
Frame = Callable[..., pd.DataFrame]

SMALL_SPACES = """
xgboost:
  n_estimators: {type: int, low: 20, high: 60, step: 20}
  max_depth: {type: int, low: 2, high: 4}
  learning_rate: {type: float, low: 0.05, high: 0.3, log: true}
  class_balance: weights
random_forest:
  n_estimators: {type: int, low: 20, high: 60, step: 20}
  max_features: {type: categorical, choices: [sqrt, 0.5]}
  class_balance: weights
knn:
  n_neighbors: {type: int, low: 1, high: 7}
  weights: {type: categorical, choices: [uniform, distance]}
  class_balance: {type: categorical, choices: [none, oversample]}
svc:
  C: {type: float, low: 0.3, high: 30.0, log: true}
  gamma: {type: float, low: 0.001, high: 0.1, log: true}
  class_balance: {type: categorical, choices: [none, weights, oversample]}
logistic_regression:
  C: {type: float, low: 0.01, high: 10.0, log: true}
  class_balance: {type: categorical, choices: [none, weights]}
soft_vote:
  members: [svc, xgboost, logistic_regression]
  weights: {type: float, low: 0.0, high: 1.0}
"""


@pytest.fixture
def spaces(tmp_path: Path) -> dict[str, SearchSpace]:
    path = tmp_path / "spaces.yaml"
    path.write_text(SMALL_SPACES)
    return load_search_spaces(path)


@pytest.fixture
def table(tmp_path: Path, feature_frame: Frame) -> FeatureTable:
    feature_frame(per_genre=15).to_parquet(tmp_path / "t.parquet", index=False)
    return load_feature_table(str(tmp_path / "t.parquet"))


@pytest.mark.parametrize(
    "family", ["xgboost", "random_forest", "knn", "svc", "logistic_regression"]
)
def test_each_family_tunes_and_predicts_genre_names(
    family: str, table: FeatureTable, spaces: dict[str, SearchSpace]
) -> None:
    seen: list[TrialReport] = []
    result = tune(table, spaces[family], trials=4, seed=0, n_jobs=1, on_trial=seen.append)
    assert [r.number for r in seen] == [0, 1, 2, 3]
    assert result.counts["complete"] >= 1
    # the refit model answers in genre names and probabilities in genre order
    features, _ = table.part("test")
    predicted = result.classifier.predict(features)
    assert set(predicted) <= set(table.genres)
    proba = result.classifier.predict_proba(features)
    assert proba.shape == (len(features), 4)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    # separable genres: a working model gets them right
    assert result.validation.metrics["gmean"] >= 0.8
    assert result.test is not None and result.test.metrics["accuracy"] >= 0.8
    assert result.best_params["class_balance"] in ("weights", "none", "oversample")


def test_same_seed_and_data_give_the_same_best_model(
    table: FeatureTable, spaces: dict[str, SearchSpace]
) -> None:
    runs = [tune(table, spaces["xgboost"], trials=6, seed=5, n_jobs=2) for _ in range(2)]
    assert runs[0].best_params == runs[1].best_params
    assert runs[0].validation.metrics == runs[1].validation.metrics
    assert runs[0].test is not None and runs[1].test is not None
    assert runs[0].test.metrics == runs[1].test.metrics
    assert [t.value for t in runs[0].trials] == [t.value for t in runs[1].trials]


def test_a_model_refuses_features_of_another_schema(
    table: FeatureTable, spaces: dict[str, SearchSpace]
) -> None:
    classifier = tune(table, spaces["knn"], trials=1, seed=0).classifier
    features, _ = table.part("test")
    shuffled = features[list(reversed(features.columns))]  # same columns, other order: fine
    assert list(classifier.predict(shuffled)) == list(classifier.predict(features))
    with pytest.raises(SchemaError, match=r"missing .*'tempo'"):
        classifier.predict(features.drop(columns=["tempo"]))
    with pytest.raises(SchemaError, match=f"expected a 2-D array of {len(FEATURE_NAMES)} features"):
        classifier.predict(features.to_numpy()[:, :10])


def test_a_space_no_trial_can_fit_fails_with_the_first_reason(
    tmp_path: Path, table: FeatureTable
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("knn:\n  weights: sideways\n")
    with pytest.raises(TrainingError, match=r"no trial completed \(2 tried\).*'weights' parameter"):
        tune(table, load_search_spaces(path)["knn"], trials=2)


def test_knn_never_asks_for_more_neighbours_than_there_are_rows(
    tmp_path: Path, feature_frame: Frame
) -> None:
    feature_frame(per_genre=3).to_parquet(tmp_path / "tiny.parquet", index=False)
    tiny = load_feature_table(str(tmp_path / "tiny.parquet"))  # 4 training rows
    result = tune(tiny, load_search_spaces()["knn"], trials=5, seed=0)  # shipped space: up to 40
    assert result.counts == {"complete": 5, "pruned": 0, "fail": 0}
    assert result.best_params["n_neighbors"] <= 4


def test_gmean_reports_plain_and_corrected_values() -> None:
    truth = np.array(["a", "a", "b", "b", "c", "c"])
    never_c = np.array(["a", "a", "b", "b", "b", "b"])
    metrics = classification_metrics(truth, never_c)
    assert metrics["gmean"] == 0.0  # one genre never recognised: plain G-mean collapses
    assert 0.0 < metrics["gmean_corrected"] < 0.2  # ...the corrected one still ranks trials
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    perfect = classification_metrics(truth, truth)
    assert perfect["gmean"] == perfect["mcc"] == perfect["f1_macro"] == 1.0


def test_a_timeout_ends_the_study_early_with_what_it_has(
    table: FeatureTable, spaces: dict[str, SearchSpace]
) -> None:
    result = tune(table, spaces["random_forest"], trials=10_000, timeout=3, seed=0)
    assert 1 <= len(result.trials) < 10_000
    assert result.classifier.predict(table.part("test")[0]).size


def _members(table: FeatureTable, spaces: dict[str, SearchSpace]) -> dict[str, TuningResult]:
    return {
        family: tune(table, spaces[family], trials=2, seed=0, n_jobs=2)
        for family in spaces["soft_vote"].members
    }


def test_a_soft_vote_of_tuned_members_tunes_weights_and_serves_like_any_model(
    tmp_path: Path, table: FeatureTable, spaces: dict[str, SearchSpace]
) -> None:
    members = _members(table, spaces)
    result = tune(
        table,
        spaces["soft_vote"],
        trials=4,
        seed=0,
        members={family: r.best_params for family, r in members.items()},
    )
    assert result.counts["complete"] == 4
    assert {p for r in result.trials for p in r.params} == {
        "weight_svc",
        "weight_xgboost",
        "weight_logistic_regression",
    }
    params = result.best_params
    assert params["members"] == ["svc", "xgboost", "logistic_regression"]
    assert params["svc.C"] == members["svc"].best_params["C"]  # members keep their tuning
    assert result.validation.metrics["gmean"] >= 0.8
    assert result.test is not None and result.test.metrics["accuracy"] >= 0.8
    classifier = result.classifier
    features, _ = table.part("test")
    proba = classifier.predict_proba(features)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    predicted = classifier.predict(features)
    assert list(predicted) == [classifier.genres[i] for i in np.argmax(proba, axis=1)]
    vote = classifier.pipeline.named_steps["model"]
    assert isinstance(vote, SoftVoteClassifier)
    # the weighted mean of the members' probabilities, nothing else
    weights = [params[f"weight_{m}"] for m in params["members"]]
    mixed = sum(
        w * m.predict_proba(classifier.matrix(features))
        for w, m in zip(weights, vote.estimators_, strict=True)
    )
    np.testing.assert_allclose(proba, mixed / sum(weights), atol=1e-9)

    # served as a pickled GenreClassifier: one thread for every member
    from genreops.data.features import SCHEMA_HASH
    from genreops.serving.publish import META_FILE, MODEL_FILE
    from genreops.serving.runtime import load_published_model

    assert classifier.schema_hash == SCHEMA_HASH
    joblib.dump(classifier, tmp_path / MODEL_FILE)
    (tmp_path / META_FILE).write_text(json.dumps({"name": "genre-classifier", "version": "7"}))
    published = load_published_model(tmp_path)
    served = published.classifier.pipeline.named_steps["model"]
    assert served.n_jobs == 1
    assert served.estimators_[1].named_steps["model"].get_params()["n_jobs"] == 1  # xgboost
    np.testing.assert_allclose(published.predict_proba(features), proba, atol=1e-6)
    assert list(pickle.loads(pickle.dumps(classifier)).predict(features)) == list(predicted)


def test_a_soft_vote_without_its_members_tuned_names_them(
    table: FeatureTable, spaces: dict[str, SearchSpace]
) -> None:
    with pytest.raises(TrainingError, match=r"no tuned parameters for member.*xgboost"):
        tune(table, spaces["soft_vote"], trials=1, members={"svc": {}, "logistic_regression": {}})


def test_small_tables_are_scored_by_cross_validation_on_train_and_val_only(
    table: FeatureTable,
) -> None:
    rows = len(table.part("train", "val")[1])
    scheme = scheme_for(table, cv_folds=4, seed=0)
    assert scheme.cross_validated and len(scheme.folds) == 4
    assert len(scheme.codes) == rows  # test rows are never scored nor fit on while tuning
    assert sorted(scheme.scored) == list(range(rows))
    # no folds, or a table above the size threshold: the table's own train/val split
    for holdout in (scheme_for(table, cv_folds=0), scheme_for(table, cv_max_rows=rows - 1)):
        assert not holdout.cross_validated
        assert len(holdout.scored) == len(table.part("val")[1])
    # the rarest genre bounds the folds (every fold fits on every genre)
    assert len(scheme_for(table, cv_folds=50).folds) == min(
        table.part("train", "val")[1].value_counts()
    )


def test_validation_figures_come_from_the_scheme_and_the_model_is_refit_on_train_and_val(
    table: FeatureTable, spaces: dict[str, SearchSpace]
) -> None:
    cv = tune(table, spaces["logistic_regression"], trials=2, seed=0)
    holdout = tune(table, spaces["logistic_regression"], trials=2, seed=0, cv_folds=0)
    assert cv.validation.n_rows == len(table.part("train", "val")[1])
    assert cv.scheme.startswith("4-fold stratified cross-validation")
    assert holdout.validation.n_rows == len(table.part("val")[1])
    assert holdout.scheme.startswith("train/val split")
    assert cv.study_name.endswith("-cv4") and not holdout.study_name.endswith("-cv4")
    fitted_rows = cv.classifier.pipeline.named_steps["scale"].n_samples_seen_
    assert fitted_rows == len(table.part("train", "val")[1])


def test_a_calibrated_svc_answers_with_probabilities_even_from_one_row_per_genre() -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(4, 5)) + np.arange(4)[:, None] * 3
    codes = np.arange(4)
    model = CalibratedSVC(C=10.0, gamma=0.1).fit(features, codes)
    proba = model.predict_proba(features)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    assert list(model.predict(features)) == list(np.argmax(proba, axis=1))


def test_pickles_naming_the_old_tuning_module_still_load() -> None:
    """Models logged before the classifiers moved out of ``tuning`` name that module."""
    from genreops.training.models import GenreClassifier

    classifier = GenreClassifier("knn", {"n_neighbors": 3}, ["rock"], ["a"], "1", "abc", None)
    old = pickle.dumps(classifier, protocol=0).replace(
        b"genreops.training.models", b"genreops.training.tuning"
    )
    assert b"genreops.training.tuning" in old
    assert pickle.loads(old) == classifier
