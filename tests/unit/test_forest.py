"""The flat forest answers exactly as scikit-learn's RandomForestClassifier does."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier

from genreops.training.forest import FlatForest

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    x, y = make_classification(
        n_samples=400, n_features=12, n_informative=8, n_classes=5, random_state=0
    )
    return x.astype(np.float32), y


@pytest.mark.parametrize(
    "options",
    [
        {"n_estimators": 40, "random_state": 0},
        {"n_estimators": 25, "max_depth": 3, "class_weight": "balanced", "random_state": 1},
        {"n_estimators": 10, "min_samples_leaf": 7, "max_features": 0.5, "random_state": 2},
    ],
)
def test_probabilities_equal_scikit_learns(
    data: tuple[np.ndarray, np.ndarray], options: dict[str, object]
) -> None:
    x, y = data
    forest = RandomForestClassifier(**options).fit(x[:300], y[:300])  # type: ignore[arg-type]
    flat = FlatForest(forest)
    unseen = x[300:]
    np.testing.assert_allclose(flat.predict_proba(unseen), forest.predict_proba(unseen), 0, 1e-12)
    # rows exactly on a split threshold go left, as in scikit-learn
    tree = forest.estimators_[0].tree_
    on_threshold = np.repeat(unseen[:1], 3, axis=0)
    on_threshold[0, tree.feature[0]] = np.float32(tree.threshold[0])
    on_threshold[1, tree.feature[0]] = np.nextafter(np.float32(tree.threshold[0]), np.inf)
    np.testing.assert_allclose(
        flat.predict_proba(on_threshold), forest.predict_proba(on_threshold), 0, 1e-12
    )
    np.testing.assert_array_equal(flat.classes, forest.classes_)


def test_missing_values_take_the_trees_path(data: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = data
    with_gaps = x.copy()
    with_gaps[::7, 3] = np.nan  # seen in training: each split learns where NaN goes
    forest = RandomForestClassifier(n_estimators=20, random_state=0).fit(with_gaps, y)
    unseen = x[::5].copy()
    unseen[::2, 3] = np.nan
    unseen[::3, 0] = np.nan  # never missing in training
    np.testing.assert_allclose(
        FlatForest(forest).predict_proba(unseen), forest.predict_proba(unseen), 0, 1e-12
    )


def test_a_row_of_the_wrong_width_is_refused(data: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = data
    flat = FlatForest(RandomForestClassifier(n_estimators=3, random_state=0).fit(x, y))
    with pytest.raises(ValueError, match=r"shape \(n, 12\), got \(2, 11\)"):
        flat.predict_proba(x[:2, :11])
