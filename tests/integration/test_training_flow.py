"""The train-model and register-best flows against a real MLflow store (SQLite, local files)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
from genreops.flows.registry import register_best
from genreops.flows.train import TrainingSummary, train_model

from genreops.core.errors import SchemaError, TrainingError
from genreops.core.settings import get_settings
from genreops.data.datasets import stratified_split
from genreops.data.features import FEATURE_NAMES, SCHEMA_HASH
from genreops.training.models import SoftVoteClassifier
from genreops.training.search_space import FAMILIES, load_search_spaces
from genreops.training.tracking import experiment_name, load_classifier
from helpers import gtzan_public_frame, synthetic_feature_frame

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]

TRIALS = 3


def write_extraction_output(folder: Path, frame: pd.DataFrame) -> Path:
    """What `genreops extract` leaves behind: table, split and manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(folder / "features.parquet", index=False)
    split = stratified_split(frame["clip_id"].tolist(), frame["genre"].tolist(), seed=0)
    pd.DataFrame({"clip_id": frame["clip_id"], "split": frame["clip_id"].map(split)}).to_csv(
        folder / "split.csv", index=False
    )
    (folder / "manifest.json").write_text(json.dumps({"counts": {"extracted": len(frame)}}))
    return folder


@pytest.fixture(scope="module")
def trained(home: Path) -> tuple[TrainingSummary, Path]:
    folder = write_extraction_output(home / "features", synthetic_feature_frame(per_genre=12))
    summary = train_model(features_url=str(folder), trials=TRIALS, seed=0)
    return summary, folder


def _client() -> Any:
    mlflow.set_tracking_uri(get_settings().mlflow_uri)
    return mlflow.MlflowClient()


def test_each_family_gets_an_experiment_with_one_parent_run_and_nested_trials(
    trained: tuple[TrainingSummary, Path], home: Path
) -> None:
    summary, _ = trained
    assert [o.family for o in summary.outcomes] == list(FAMILIES)
    assert (home / "mlflow.db").exists()
    client = _client()
    for outcome in summary.outcomes:
        experiment = client.get_experiment_by_name(experiment_name(outcome.family))
        assert experiment.artifact_location.startswith((home / "mlartifacts").as_uri())
        runs = client.search_runs([experiment.experiment_id])
        trials = [r for r in runs if r.data.tags.get("genreops.kind") == "trial"]
        assert len(trials) == TRIALS
        assert {r.data.tags["mlflow.parentRunId"] for r in trials} == {outcome.run_id}
        tuned = set(load_search_spaces()[outcome.family].as_dict()) - {"members"}
        assert all(set(r.data.params) & tuned for r in trials)


@pytest.mark.parametrize("family", FAMILIES)
def test_the_parent_run_holds_metrics_evidence_dataset_and_model(
    trained: tuple[TrainingSummary, Path], family: str
) -> None:
    summary, folder = trained
    client = _client()
    outcome = next(o for o in summary.outcomes if o.family == family)
    run = client.get_run(outcome.run_id)
    assert run.data.params["validation"].startswith("4-fold stratified cross-validation")
    for split in ("val", "test"):
        for name in (
            "accuracy",
            "balanced_accuracy",
            "precision_macro",
            "recall_macro",
            "f1_macro",
            "mcc",
            "gmean",
        ):
            assert 0.0 <= run.data.metrics[f"{split}_{name}"] <= 1.0 or name == "mcc"
    assert run.data.tags["genreops.schema_hash"] == SCHEMA_HASH
    assert run.data.tags["genreops.split_source"] == str(folder / "split.csv")
    artifacts = {a.path for a in client.list_artifacts(outcome.run_id)}
    assert {
        "confusion_matrix_val.png",
        "confusion_matrix_test.png",
        "classification_report_val.txt",
        "classification_report_test.txt",
        "feature_schema.json",
        "extraction_manifest.json",
        "reference_features.parquet",
    } <= artifacts
    inputs = run.inputs.dataset_inputs
    assert len(inputs) == 1 and inputs[0].dataset.digest
    assert inputs[0].dataset.source and str(folder / "features.parquet") in inputs[0].dataset.source
    model = mlflow.models.get_model_info(outcome.model_uri)
    assert model.signature.inputs.input_names() == list(FEATURE_NAMES)
    assert model.signature.params is not None
    # every family loads as a pyfunc that answers in genre names and genre-ordered probabilities
    table = pd.read_parquet(folder / "features.parquet")
    pyfunc = mlflow.pyfunc.load_model(outcome.model_uri)
    predicted = pyfunc.predict(table[list(FEATURE_NAMES)])
    assert set(predicted) <= set(table["genre"])
    assert (predicted.to_numpy() == table["genre"].to_numpy()).mean() > 0.8
    proba = pyfunc.predict(table[list(FEATURE_NAMES)].head(3), params={"output": "probabilities"})
    assert list(proba.columns) == sorted(table["genre"].unique())
    assert proba.to_numpy().sum(axis=1) == pytest.approx(1.0)


def test_the_soft_vote_is_made_of_this_runs_tuned_members(
    trained: tuple[TrainingSummary, Path],
) -> None:
    summary, _ = trained
    assert summary.outcomes[-1].family == "soft_vote"  # tuned after its members
    by_family = {o.family: o for o in summary.outcomes}
    vote = load_classifier(by_family["soft_vote"].model_uri)
    model = vote.pipeline.named_steps["model"]
    assert isinstance(model, SoftVoteClassifier)
    assert [family for family, _ in model.members] == ["svc", "xgboost", "logistic_regression"]
    for family, params in model.members:
        assert params == by_family[family].best_params
    # serving makes a model single-threaded with set_params(n_jobs=1): it reaches the members
    model.set_params(n_jobs=1)
    assert model.estimators_[1].named_steps["model"].get_params()["n_jobs"] == 1


def test_register_best_sets_both_aliases_and_changes_nothing_when_rerun(
    trained: tuple[TrainingSummary, Path],
) -> None:
    summary, _ = trained
    first = register_best(top=2)
    ranked = sorted(summary.outcomes, key=lambda o: -o.validation["gmean"])
    assert [a.alias for a in first.assignments] == ["champion", "challenger"]
    assert first.assignments[0].candidate.run_id == ranked[0].run_id
    assert first.assignments[0].candidate.family != first.assignments[1].candidate.family
    client = _client()
    model = client.get_registered_model("genre-classifier")
    assert {k: str(v) for k, v in model.aliases.items()} == {
        "champion": first.assignments[0].version,
        "challenger": first.assignments[1].version,
    }
    champion = client.get_model_version_by_alias("genre-classifier", "champion")
    assert champion.tags["genreops.role"] == "champion"
    assert "rank 1 of 6 finished runs by val_gmean" in champion.tags["genreops.reason"]
    assert champion.tags["genreops.schema_hash"] == SCHEMA_HASH

    def state() -> list[tuple[str, dict[str, str], int]]:
        versions = client.search_model_versions("name='genre-classifier'")
        return sorted((v.version, dict(v.tags), v.last_updated_timestamp) for v in versions)

    before = (state(), client.get_registered_model("genre-classifier").aliases)
    again = register_best(top=2)
    assert not again.changed
    assert (state(), client.get_registered_model("genre-classifier").aliases) == before


def test_the_champion_loads_from_the_registry_and_predicts_genre_names(
    trained: tuple[TrainingSummary, Path],
) -> None:
    _, folder = trained
    register_best(top=2)
    table = pd.read_parquet(folder / "features.parquet")
    model = mlflow.pyfunc.load_model("models:/genre-classifier@champion")
    predicted = model.predict(table[list(FEATURE_NAMES)])
    assert list(predicted) and set(predicted) <= set(table["genre"])
    assert (predicted.to_numpy() == table["genre"].to_numpy()).mean() > 0.8
    proba = model.predict(table[list(FEATURE_NAMES)].head(3), params={"output": "probabilities"})
    assert list(proba.columns) == sorted(table["genre"].unique())
    assert load_classifier("models:/genre-classifier@challenger").genres == list(proba.columns)


def test_a_csv_table_trains_too(home: Path) -> None:
    path = home / "csv" / "table.csv"
    path.parent.mkdir()
    synthetic_feature_frame(per_genre=9, seed=4).to_csv(path, index=False)
    summary = train_model(features_url=str(path), families=["knn"], trials=2)
    assert summary.table_url == str(path)
    assert summary.outcomes[0].validation["gmean"] > 0.5


def test_a_non_numeric_column_stops_the_flow_naming_it(home: Path) -> None:
    path = home / "bad.csv"
    synthetic_feature_frame().assign(comment="nice").to_csv(path, index=False)
    with pytest.raises(SchemaError, match="'comment'"):
        train_model(features_url=str(path), families=["knn"], trials=1)


def test_a_failing_family_does_not_cost_the_others_their_study(home: Path) -> None:
    spaces = home / "spaces.yaml"
    spaces.write_text("knn:\n  weights: sideways\nrandom_forest:\n  n_estimators: 20\n")
    folder = write_extraction_output(home / "f2", synthetic_feature_frame(per_genre=6, seed=9))
    with pytest.raises(
        TrainingError, match=r"knn: .*no trial completed.*\(finished: random_forest\)"
    ):
        train_model(
            features_url=str(folder),
            families=["knn", "random_forest"],
            trials=1,
            search_space_file=str(spaces),
        )


def test_the_public_3_second_table_trains_with_songs_kept_together(home: Path) -> None:
    """GTZAN's features_3_sec.csv shape (generated): filename/label/length recognised, the
    split grouped by song, and how the table was read recorded on the run."""
    path = home / "gtzan" / "features_3_sec.csv"
    path.parent.mkdir()
    frame = gtzan_public_frame(per_genre=6, segments=3, seed=2).rename(columns={"label": "style"})
    frame.to_csv(path, index=False)
    summary = train_model(
        features_url=str(path.parent), families=["knn"], trials=2, label_column="style"
    )
    assert summary.table_url == str(path)
    assert "label 'style'; ids 'filename'; 57 features; not features: 'length'" in summary.columns
    assert "split grouped by song" in summary.columns
    tags = _client().get_run(summary.outcomes[0].run_id).data.tags
    assert tags["genreops.label_column"] == "style"
    assert tags["genreops.dropped_columns"] == "length"
    assert tags["genreops.split_groups"].startswith("song")
    assert "grouped by song" in tags["genreops.split_source"]


def test_a_soft_vote_alone_takes_its_members_from_earlier_studies_of_the_table(
    trained: tuple[TrainingSummary, Path],
) -> None:
    summary, folder = trained
    again = train_model(features_url=str(folder), families=["soft_vote"], trials=2, seed=1)
    (outcome,) = again.outcomes
    members = load_classifier(outcome.model_uri).pipeline.named_steps["model"].members
    by_family = {o.family: o for o in summary.outcomes}
    assert {f: p for f, p in members} == {f: by_family[f].best_params for f, _ in members}
    # with nothing changed, skip_trained reuses every study, the soft vote's included
    reused = train_model(features_url=str(folder), trials=TRIALS, seed=0, skip_trained=True)
    assert all(o.reused for o in reused.outcomes)
    assert [o.run_id for o in reused.outcomes] == [o.run_id for o in summary.outcomes]


def test_a_soft_vote_without_tuned_members_says_which_to_train(home: Path) -> None:
    folder = write_extraction_output(home / "f3", synthetic_feature_frame(per_genre=6, seed=3))
    with pytest.raises(
        TrainingError,
        match=r"soft_vote: no tuned xgboost, logistic_regression model on this table.*"
        r"--family xgboost --family logistic_regression --family soft_vote.*\(finished: svc\)",
    ):
        train_model(features_url=str(folder), families=["soft_vote", "svc"], trials=1)
