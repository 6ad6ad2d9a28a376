"""Tuning and refitting without any tracking server: the stage logic alone."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from genreops.errors import SchemaError, TrainingError
from genreops.feature_table import FeatureTable, load_feature_table
from genreops.features import FEATURE_NAMES
from genreops.search_space import SearchSpace, load_search_spaces
from genreops.training import TrialReport, classification_metrics, tune

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


@pytest.mark.parametrize("family", ["xgboost", "random_forest", "knn"])
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
