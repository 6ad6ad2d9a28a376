"""Building the Triton repository from a champion/challenger pair (no server needed)."""

from __future__ import annotations

import importlib.util
import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from genreops.core.errors import SchemaError
from genreops.data.feature_table import load_feature_table
from genreops.data.features import FEATURE_NAMES, SCHEMA_HASH
from genreops.serving.labels import load_labels
from genreops.serving.publish import (
    MODELS,
    ModelRef,
    PublishError,
    ServingOptions,
    load_order,
    publish_pair,
    read_history,
    rollback,
)
from genreops.serving.runtime import load_published_model
from genreops.training.models import GenreClassifier
from genreops.training.search_space import load_search_spaces
from genreops.training.tuning import tune
from helpers import synthetic_feature_frame

pytestmark = pytest.mark.unit


def _classifier(
    tmp_path: Path, names: tuple[str, ...] | None = None, family: str = "knn", **frame: object
) -> GenreClassifier:
    path = tmp_path / f"t{len(list(tmp_path.iterdir()))}.parquet"
    synthetic_feature_frame(per_genre=6, names=names, **frame).to_parquet(path, index=False)  # type: ignore[arg-type]
    return tune(load_feature_table(str(path)), load_search_spaces()[family], trials=1).classifier


def _pair(classifier: GenreClassifier, version: str) -> tuple[ModelRef, GenreClassifier]:
    ref = ModelRef.of(classifier, name="genre-classifier", version=version, run_id=f"run{version}")
    return ref, classifier


@pytest.fixture
def reference() -> pd.DataFrame:
    return synthetic_feature_frame(per_genre=3)[list(FEATURE_NAMES)]


def test_publish_writes_a_pinned_version_and_is_idempotent(
    tmp_path: Path, reference: pd.DataFrame
) -> None:
    model = _classifier(tmp_path)
    repo = tmp_path / "repo"
    first = publish_pair(
        repo, champion=_pair(model, "1"), challenger=_pair(model, "2"), reference=reference,
        options=ServingOptions(),
    )  # fmt: skip
    assert first.created and first.version == 1
    for name in MODELS:
        config = (repo / name / "config.pbtxt").read_text()
        assert "versions: [ 1 ]" in config and "${" not in config
        assert (repo / name / "1").is_dir()
    assert "dims: [ 4 ]" in (repo / "postprocessor" / "config.pbtxt").read_text()  # 4 genres
    loaded = load_published_model(repo / "predictor" / "1")
    assert loaded.label == "genre-classifier/1"
    assert list(load_labels(repo / "postprocessor" / "1")) == model.genres
    assert (
        json.loads((repo / "preprocessor" / "1" / "schema.json").read_text())["hash"] == SCHEMA_HASH
    )
    # each model's bytecode is there before any server imports it: a stub writing it into a
    # loaded version would make Triton take the version for changed and load it again
    for source in repo.glob("*/1/model.py"):
        assert Path(importlib.util.cache_from_source(str(source))).is_file(), source
    assert len(list(repo.glob("*/1/model.py"))) == len(MODELS) - 1  # all but the ensemble

    again = publish_pair(
        repo, champion=_pair(model, "1"), challenger=_pair(model, "2"), reference=reference,
        options=ServingOptions(),
    )  # fmt: skip
    assert not again.created and again.version == 1
    assert read_history(repo)["current"] == 1


def test_a_published_forest_is_served_flat_with_the_same_probabilities(
    tmp_path: Path, reference: pd.DataFrame
) -> None:
    forest = _classifier(tmp_path, family="random_forest")
    repo = tmp_path / "repo"
    publish_pair(
        repo, champion=_pair(forest, "1"), challenger=_pair(forest, "2"), reference=reference,
        options=ServingOptions(),
    )  # fmt: skip
    loaded = load_published_model(repo / "predictor" / "1")
    assert loaded.forest is not None
    rows = reference.to_numpy(dtype=np.float32)
    np.testing.assert_allclose(
        loaded.predict_proba(rows), forest.predict_proba(rows).astype(np.float32), rtol=1e-6
    )


def test_a_new_pair_becomes_version_2_and_rollback_returns_to_1(
    tmp_path: Path, reference: pd.DataFrame
) -> None:
    model = _classifier(tmp_path)
    repo = tmp_path / "repo"
    publish_pair(
        repo, champion=_pair(model, "1"), challenger=_pair(model, "2"), reference=reference,
        options=ServingOptions(),
    )  # fmt: skip
    second = publish_pair(
        repo, champion=_pair(model, "3"), challenger=_pair(model, "1"), reference=reference,
        options=ServingOptions(),
    )  # fmt: skip
    assert second.version == 2
    assert "versions: [ 2 ]" in (repo / "predictor" / "config.pbtxt").read_text()
    entry = rollback(repo)
    assert entry["version"] == 1 and read_history(repo)["current"] == 1
    for name in MODELS:
        assert "versions: [ 1 ]" in (repo / name / "config.pbtxt").read_text()
    with pytest.raises(PublishError, match="no earlier published version"):
        rollback(repo)


def test_a_canary_loads_before_the_predictor_that_calls_it_and_leaves_after_it(
    tmp_path: Path, reference: pd.DataFrame
) -> None:
    """While a server swaps versions, the predictor in place must find what it calls: a new
    canary is loaded before the predictor sending it traffic, an emptied canary slot only
    after the predictor that no longer does (a promotion, a withdrawal)."""
    model = _classifier(tmp_path)
    repo = tmp_path / "repo"
    options = ServingOptions()
    pair = {"champion": _pair(model, "1"), "challenger": _pair(model, "2")}
    publish_pair(repo, **pair, canary=_pair(model, "3"), reference=reference, options=options)
    with_canary = load_order(repo)
    assert with_canary == MODELS
    assert with_canary.index("canary") < with_canary.index("predictor")
    publish_pair(repo, **pair, reference=reference, options=options)  # the canary withdrawn
    without = load_order(repo)
    assert sorted(without) == sorted(MODELS) and without[-1] == MODELS[-1]  # the ensemble last
    assert without.index("predictor") < without.index("canary")
    assert without.index("fallback") < without.index("predictor")


def test_a_model_on_a_subset_of_the_columns_is_served_from_the_full_vectors(
    tmp_path: Path, reference: pd.DataFrame
) -> None:
    # the public GTZAN table's 57 columns, in another order than the preprocessor's
    public = tuple(reversed(FEATURE_NAMES[:57]))
    champion = _classifier(tmp_path, names=public, family="random_forest")
    challenger = _classifier(tmp_path)  # all columns
    repo = tmp_path / "repo"
    publish_pair(
        repo, champion=_pair(champion, "1"), challenger=_pair(challenger, "2"),
        reference=reference[list(public)], options=ServingOptions(),
    )  # fmt: skip
    meta = json.loads((repo / "predictor" / "1" / "model.json").read_text())
    assert meta["feature_names"] == list(public)
    served = load_published_model(repo / "predictor" / "1")
    fallback = load_published_model(repo / "fallback" / "1")
    vectors = reference.to_numpy(dtype=np.float32)  # what the preprocessor sends: every column
    np.testing.assert_allclose(
        served.predict_proba(vectors),
        champion.predict_proba(reference[list(public)]).astype(np.float32),
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        fallback.predict_proba(vectors), challenger.predict_proba(vectors).astype(np.float32),
        rtol=1e-6,
    )  # fmt: skip
    with pytest.raises(SchemaError, match=rf"expects \[n, {len(FEATURE_NAMES)}\]"):
        served.predict_proba(vectors[:, :57])
    with pytest.raises(PublishError, match=r"drift reference .* does not have the model's columns"):
        publish_pair(
            tmp_path / "other", champion=_pair(champion, "1"), challenger=_pair(challenger, "2"),
            reference=reference, options=ServingOptions(),
        )  # fmt: skip


def test_models_needing_other_columns_a_retired_schema_or_other_genres_are_refused(
    tmp_path: Path, reference: pd.DataFrame
) -> None:
    model = _classifier(tmp_path)
    custom = _classifier(tmp_path, names=("mfcc1_mean", "loudness_db", "bpm_confidence"))
    retired = replace(model, schema_version="1")
    other_genres = _classifier(tmp_path, genres=("jazz", "rock", "pop"))
    repo = tmp_path / "repo"
    with pytest.raises(PublishError) as refused:
        publish_pair(
            repo, champion=_pair(model, "1"), challenger=_pair(custom, "2"), reference=reference,
            options=ServingOptions(),
        )  # fmt: skip
    message = str(refused.value)
    assert message.startswith("challenger genre-classifier/2 (knn, run run2) needs 2 feature")
    assert "'loudness_db', 'bpm_confidence'" in message and "'mfcc1_mean'" not in message
    with pytest.raises(PublishError, match=r"schema v1, which is retired .* retrain it"):
        publish_pair(
            repo, champion=_pair(retired, "1"), challenger=_pair(model, "2"), reference=reference,
            options=ServingOptions(),
        )  # fmt: skip
    with pytest.raises(PublishError, match="know different genres"):
        publish_pair(
            repo, champion=_pair(model, "1"), challenger=_pair(other_genres, "2"),
            reference=reference, options=ServingOptions(),
        )  # fmt: skip
    assert not (repo / "predictor").exists()  # nothing half-written


def test_the_drift_gate_settings_reach_the_predictor_from_the_environment(
    tmp_path: Path, reference: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    from genreops.core.settings import Settings
    from genreops.serving.preprocess import parameters
    from genreops.serving.runtime import novelty_settings

    monkeypatch.setenv("GENREOPS_DRIFT_EXPECTED_RUN", "5000")
    monkeypatch.setenv("GENREOPS_DRIFT_KAPPA", "0.45")
    monkeypatch.setenv("GENREOPS_DRIFT_OOD_ALPHA", "0.02")
    monkeypatch.setenv("GENREOPS_DRIFT_CLOSE_FRACTION", "0.25")
    model = _classifier(tmp_path)
    published = publish_pair(
        tmp_path / "repo", champion=_pair(model, "1"), challenger=_pair(model, "2"),
        reference=reference, options=ServingOptions.from_settings(Settings()),
    )  # fmt: skip
    text = (tmp_path / "repo" / "predictor" / "config.pbtxt").read_text()
    config = json_format.MessageToDict(
        text_format.Parse(text, model_config_pb2.ModelConfig()), preserving_proto_field_name=True
    )
    settings = novelty_settings(parameters(config))
    assert (settings.expected_run, settings.kappa) == (5000.0, 0.45)
    assert (settings.ood_alpha, settings.close_fraction, settings.neighbours) == (0.02, 0.25, 5)
    outputs = {o["name"] for o in config["output"]}
    assert {"DRIFT", "OOD", "OOD_SCORE"} <= outputs
    assert published.version == 1


def _publish_in_another_process(
    repo: Path,
    model: GenreClassifier,
    reference: pd.DataFrame,
    champion: str,
    ready: Any,
    start: Any,
) -> int:
    ready.put(champion)
    start.wait()  # every publisher reads the history at the same moment
    return publish_pair(
        repo, champion=_pair(model, champion), challenger=_pair(model, "1"),
        reference=reference, options=ServingOptions(),
    ).version  # fmt: skip


def test_publishers_in_several_processes_at_once_each_get_their_own_version(
    tmp_path: Path, reference: pd.DataFrame
) -> None:
    """The monitor promoting a canary, a pipeline and the retrain flow may publish at the same
    moment: each publication must be a version of its own, none written over another."""
    model = _classifier(tmp_path)
    repo = tmp_path / "repo"
    context = multiprocessing.get_context("spawn")
    manager = context.Manager()
    ready, start = manager.Queue(), manager.Event()
    champions = ["11", "12", "13", "14"]
    with manager, ProcessPoolExecutor(len(champions), mp_context=context) as pool:
        futures = [
            pool.submit(_publish_in_another_process, repo, model, reference, champion, ready, start)
            for champion in champions
        ]
        for _ in champions:  # every publisher started, waiting for the same moment
            ready.get(timeout=120)
        start.set()
        versions = sorted(future.result(timeout=120) for future in futures)
    assert versions == [1, 2, 3, 4]
    history = read_history(repo)
    published = {v["champion"]["version"]: v["version"] for v in history["versions"]}
    assert sorted(published) == champions and sorted(published.values()) == versions
    for champion, version in published.items():  # each version holds its own champion
        assert load_published_model(repo / "predictor" / str(version)).label == (
            f"genre-classifier/{champion}"
        )
