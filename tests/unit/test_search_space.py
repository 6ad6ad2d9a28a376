"""Search spaces come from YAML and are checked before a single trial runs."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from genreops.errors import TrainingError
from genreops.search_space import FAMILIES, load_search_spaces

pytestmark = pytest.mark.unit


def test_the_shipped_spaces_cover_every_family() -> None:
    spaces = load_search_spaces()
    assert sorted(spaces) == sorted(FAMILIES)
    for space in spaces.values():
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        params = space.suggest(study.ask())
        assert set(params) == set(space.params)


def test_fixed_values_pass_through_and_ranges_are_sampled(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "knn:\n  n_neighbors: {type: int, low: 3, high: 5}\n  weights: distance\n"
        "  class_balance: {type: categorical, choices: [none, oversample]}\n"
    )
    space = load_search_spaces(path)["knn"]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = [space.suggest(study.ask()) for _ in range(20)]
    assert {p["weights"] for p in seen} == {"distance"}
    assert {p["n_neighbors"] for p in seen} <= {3, 4, 5}
    assert {p["class_balance"] for p in seen} == {"none", "oversample"}
    assert space.fixed() == {"weights": "distance"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "knn:\n  n_neighbors: {type: int, low: 9, high: 2}\n",
            r"knn\.n_neighbors: .*low 9 > high 2",
        ),
        ("knn:\n  p: {type: categorical}\n", r"knn\.p\.choices"),
        ("svm:\n  c: 1\n", "unknown model family 'svm'"),
        ("knn:\n  class_balance: weights\n", r"knn\.class_balance: 'weights' is not one of"),
        ("xgboost:\n  eta: {type: float, low: 0, high: 1, log: true}\n", "log range needs low > 0"),
        ("knn: [1, 2\n", "not valid YAML"),
    ],
)
def test_bad_spaces_name_the_family_and_parameter(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(TrainingError, match=message):
        load_search_spaces(path)


def test_a_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="search space file not found"):
        load_search_spaces(tmp_path / "nope.yaml")
