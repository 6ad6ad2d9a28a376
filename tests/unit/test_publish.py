"""Building the Triton repository from a champion/challenger pair (no server needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from genreops.feature_table import load_feature_table
from genreops.features import FEATURE_NAMES, SCHEMA_HASH
from genreops.publish import (
    MODELS,
    ModelRef,
    PublishError,
    ServingOptions,
    publish_pair,
    read_history,
    rollback,
)
from genreops.search_space import load_search_spaces
from genreops.serving import load_labels, load_published_model
from genreops.training import GenreClassifier, tune
from helpers import synthetic_feature_frame

pytestmark = pytest.mark.unit


def _classifier(
    tmp_path: Path, names: tuple[str, ...] | None = None, family: str = "knn", **frame: object
) -> GenreClassifier:
    path = tmp_path / f"t{len(list(tmp_path.iterdir()))}.parquet"
    synthetic_feature_frame(per_genre=6, names=names, **frame).to_parquet(path, index=False)  # type: ignore[arg-type]
    return tune(load_feature_table(str(path)), load_search_spaces()[family], trials=1).classifier


def _pair(classifier: GenreClassifier, version: str) -> tuple[ModelRef, GenreClassifier]:
    ref = ModelRef(
        name="genre-classifier",
        version=version,
        run_id=f"run{version}",
        family=classifier.family,
        schema_hash=classifier.schema_hash,
        genres=classifier.genres,
    )
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


def test_models_of_another_schema_or_other_genres_are_refused(
    tmp_path: Path, reference: pd.DataFrame
) -> None:
    model = _classifier(tmp_path)
    custom = _classifier(tmp_path, names=("a", "b", "c"))
    other_genres = _classifier(tmp_path, genres=("jazz", "rock", "pop"))
    repo = tmp_path / "repo"
    with pytest.raises(PublishError, match=r"feature schema .* but the serving preprocessor"):
        publish_pair(
            repo, champion=_pair(model, "1"), challenger=_pair(custom, "2"), reference=reference,
            options=ServingOptions(),
        )  # fmt: skip
    with pytest.raises(PublishError, match="know different genres"):
        publish_pair(
            repo, champion=_pair(model, "1"), challenger=_pair(other_genres, "2"),
            reference=reference, options=ServingOptions(),
        )  # fmt: skip
    assert not (repo / "predictor").exists()  # nothing half-written
