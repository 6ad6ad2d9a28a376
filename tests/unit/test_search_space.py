"""Search spaces come from YAML and are checked before a single trial runs."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from genreops.core.errors import TrainingError
from genreops.training.search_space import FAMILIES, load_search_spaces

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
        ("svc:\n  class_balance: sideways\n", r"svc\.class_balance: 'sideways' is not one of"),
        ("soft_vote:\n  members: [svc, lasso]\n", r"soft_vote\.members: 'lasso' is not one of"),
        ("soft_vote:\n  members: [svc]\n", r"soft_vote\.members: need two or more"),
        ("soft_vote:\n  members: [svc, svc]\n", r"soft_vote\.members: need two or more"),
        ("soft_vote:\n  members: [svc, soft_vote]\n", r"'soft_vote' is not one of"),
        ("soft_vote:\n  members: svc\n", r"soft_vote\.members: expected a list"),
        ("soft_vote:\n  weights: 0\n", r"soft_vote\.weights: expected a positive number"),
        (
            "soft_vote:\n  weights: {type: float, low: -1, high: 1}\n",
            r"soft_vote\.weights: weights cannot be negative",
        ),
        ("soft_vote:\n  class_balance: weights\n", r"soft_vote\.class_balance: unknown"),
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


def test_the_new_families_accept_class_weights_and_the_soft_vote_names_its_members(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "svc:\n  C: 1.0\n  class_balance: {type: categorical, choices: [weights, oversample]}\n"
        "logistic_regression:\n  class_balance: weights\n"
        "soft_vote:\n  members: [knn, svc]\n  weights: 2\n"
    )
    spaces = load_search_spaces(path)
    vote = spaces["soft_vote"]
    assert vote.members == ("knn", "svc")
    assert vote.fixed() == {"weight_knn": 2, "weight_svc": 2}
    assert vote.as_dict() == {"members": ["knn", "svc"], "weight_knn": 2, "weight_svc": 2}
    shipped = load_search_spaces()["soft_vote"]
    assert shipped.members == ("svc", "xgboost", "logistic_regression")


def test_cli_family_choices_match_the_families() -> None:
    from genreops.app.cli.training import FAMILY_CHOICES

    assert (*FAMILIES, "all") == FAMILY_CHOICES
