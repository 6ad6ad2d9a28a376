"""What the train-model flow decides, without Prefect or MLflow: which families run in which
order, when a study is the same study, how a finished run is read back, where a soft vote's
members come from, and how one family's failure is reported."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

from genreops.core.errors import TrainingError
from genreops.training import studies, tracking
from genreops.training.search_space import FAMILIES, SOFT_VOTE, load_search_spaces
from genreops.training.studies import FamilyOutcome

pytestmark = pytest.mark.unit

SPACES = load_search_spaces()


def _table(digest: str = "d" * 64) -> Any:
    """What the studies read of a FeatureTable for bookkeeping (no features needed)."""
    return SimpleNamespace(
        url="t.parquet",
        digest=digest,
        schema_hash="abc",
        split=pd.Series(["train"] * 6 + ["val"] * 2 + ["test"] * 2),
        describe_columns=lambda: "label 'genre', id 'clip_id'",
    )


def _outcome(family: str, **params: Any) -> FamilyOutcome:
    return FamilyOutcome(
        family, f"run-{family}", f"runs:/run-{family}/model", "s", params, {"gmean": 0.5}, {},
        {"complete": 1, "pruned": 0, "fail": 0}, 1.0,
    )  # fmt: skip


# --- choose_families ------------------------------------------------------------------------


def test_every_family_with_a_space_by_default_and_the_soft_vote_last() -> None:
    chosen = studies.choose_families(None, SPACES)
    assert set(chosen) == set(FAMILIES) and chosen[-1] == SOFT_VOTE


def test_asked_families_keep_their_order_without_repeats_vote_last() -> None:
    chosen = studies.choose_families([SOFT_VOTE, "knn", "svc", "knn"], SPACES)
    assert chosen == ["knn", "svc", SOFT_VOTE]


def test_unknown_family_and_missing_space_fail_before_any_study() -> None:
    with pytest.raises(TrainingError, match="unknown model family 'lasso'"):
        studies.choose_families(["knn", "lasso"], SPACES)
    only_knn = {"knn": SPACES["knn"]}
    with pytest.raises(TrainingError, match=r"no search space for svc in spaces\.yaml"):
        studies.choose_families(["knn", "svc"], only_knn, "spaces.yaml")


# --- family_study_key -----------------------------------------------------------------------


def _key(family: str, **changes: Any) -> str:
    options: dict[str, Any] = {
        "trials": 5, "timeout": None, "seed": 0, "cv_folds": 4, "cv_max_rows": 5000,
    }  # fmt: skip
    options.update(changes)
    return studies.family_study_key(_table(), family, SPACES[family], **options)


def test_the_study_key_is_the_tracking_key_of_table_space_and_settings() -> None:
    """Keys of studies already in MLflow must still match: the same payload as before."""
    expected = tracking.study_key(
        "d" * 64, "knn", SPACES["knn"].as_dict(),
        trials=5, timeout=None, seed=0, cv_folds=4, cv_max_rows=5000,
    )  # fmt: skip
    assert _key("knn") == expected
    assert _key("knn", seed=1) != expected
    assert _key("knn", cv_folds=0) != expected


def test_members_change_a_soft_votes_key_only() -> None:
    members = {"svc": {"C": 1.0}}
    assert _key("knn", members=members) == _key("knn")
    assert _key(SOFT_VOTE, members=members) != _key(SOFT_VOTE, members={"svc": {"C": 2.0}})


# --- outcome_of_run -------------------------------------------------------------------------


def test_a_finished_run_reads_back_as_a_reused_outcome() -> None:
    run = SimpleNamespace(
        info=SimpleNamespace(run_id="r9"),
        data=SimpleNamespace(
            metrics={
                "val_gmean": 0.8,
                "val_accuracy": 0.9,
                "test_gmean": 0.7,
                "trials_complete": 4.0,
                "trials_pruned": 1.0,
            },
            params={"study_name": "genreops-knn", "family": "knn", "n_neighbors": "7"},
            tags={tracking.TAG_MODEL_URI: "runs:/r9/model"},
        ),
    )
    outcome = studies.outcome_of_run(run, "knn")
    assert outcome.reused and outcome.seconds == 0.0
    assert (outcome.run_id, outcome.model_uri, outcome.study_name) == (
        "r9", "runs:/r9/model", "genreops-knn",
    )  # fmt: skip
    assert outcome.best_params == {"n_neighbors": 7}  # typed back, bookkeeping left out
    assert outcome.validation == {"gmean": 0.8, "accuracy": 0.9}
    assert outcome.test == {"gmean": 0.7}
    assert outcome.trials == {"complete": 4, "pruned": 1, "fail": 0}


# --- member_params ------------------------------------------------------------------------


def test_members_come_from_this_run_else_an_earlier_study_of_the_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[tuple[str, str]] = []

    def latest(target: Any, family: str, digest: str) -> Any:
        asked.append((family, digest))
        if family != "xgboost":
            return None
        return SimpleNamespace(
            info=SimpleNamespace(run_id="old"),
            data=SimpleNamespace(params={"max_depth": "3", "seed": "0"}),
        )

    monkeypatch.setattr(tracking, "latest_study", latest)
    found, sources = studies.member_params(
        None,
        _table("e" * 64),
        ["svc", "xgboost"],
        [_outcome("svc", C=2.0)],  # type: ignore[arg-type]
    )
    assert found == {"svc": {"C": 2.0}, "xgboost": {"max_depth": 3}}
    assert asked == [("xgboost", "e" * 64)]  # this run's svc is not looked up
    assert sources == [
        "svc: run run-svc (this run)",
        "xgboost: run old (earlier study of this table)",
    ]
    with pytest.raises(TrainingError, match=r"no tuned knn model.*--family knn --family soft_vote"):
        studies.member_params(None, _table(), ["svc", "knn"], [_outcome("svc")])  # type: ignore[arg-type]


# --- train_families -----------------------------------------------------------------------


def test_one_failed_family_does_not_stop_the_others_and_all_failures_are_named() -> None:
    tuned: list[tuple[str, Any]] = []

    def tune_one(family: str, members: Any) -> FamilyOutcome:
        tuned.append((family, members))
        if family == "svc":
            raise TrainingError("no trial completed")
        return _outcome(family)

    with pytest.raises(TrainingError) as raised:
        studies.train_families(
            _table(),
            ["svc", "knn", "random_forest"],
            SPACES,
            tune_one,
            target=None,  # type: ignore[arg-type]
        )
    assert [family for family, _ in tuned] == ["svc", "knn", "random_forest"]
    assert str(raised.value) == "svc: no trial completed (finished: knn, random_forest)"


def test_a_soft_vote_gets_the_members_tuned_in_this_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracking, "latest_study", lambda *args: None)
    members = SPACES[SOFT_VOTE].members
    seen: dict[str, Any] = {}

    def tune_one(family: str, given: Any) -> FamilyOutcome:
        seen[family] = given
        return _outcome(family, depth=len(seen))

    summary = studies.train_families(
        _table(),
        [*members, SOFT_VOTE],
        SPACES,
        tune_one,
        target=None,  # type: ignore[arg-type]
    )
    assert [o.family for o in summary.outcomes] == [*members, SOFT_VOTE]
    assert seen[SOFT_VOTE] == {m: {"depth": i} for i, m in enumerate(members, start=1)}
    assert all(seen[m] is None for m in members)
    assert summary.rows == {"train": 6, "val": 2, "test": 2}
    assert (summary.table_url, summary.schema_hash) == ("t.parquet", "abc")
