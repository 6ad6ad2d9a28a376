"""A table shaped like the public GTZAN one (``filename,length,<57 features>,label``) trains,
registers, publishes and serves audio on the real tritonserver: the preprocessor computes every
column of the schema and each served model picks the 57 it was trained on."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from genreops.flows.registry import register_best
from genreops.flows.train import train_model

from genreops.core.settings import get_settings
from genreops.data.audio import load_audio
from genreops.data.features import FEATURE_NAMES, extract_features
from genreops.serving.client import EnsembleClient, predict, summarize
from genreops.serving.publish import (
    PublishError,
    PublishResult,
    ServingOptions,
    load_registered_pair,
    publish_registered,
)
from genreops.training.tracking import TrackingTarget
from helpers import running_ensemble

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]

PUBLIC_COLUMNS = list(FEATURE_NAMES[:57])  # the public table's features, in its order
OPTIONS = ServingOptions(window_seconds=10.0, max_batch=8)  # the corpus' clips are 10 s


def public_shaped_table(
    features: Path, destination: Path, extra: dict[str, float] | None = None
) -> Path:
    """Our extracted features rewritten as the public table is laid out, CSV and all."""
    table = pd.read_parquet(features / "features.parquet")
    frame = pd.DataFrame({"filename": [Path(c).name for c in table["clip_id"]], "length": 220500})
    frame = pd.concat([frame, table[PUBLIC_COLUMNS].astype(np.float64)], axis=1)
    for name, value in (extra or {}).items():
        frame[name] = value + np.arange(len(frame)) % 7  # a numeric column of our own
    frame["label"] = table["genre"]
    destination.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(destination, index=False)
    return destination


@dataclass
class PublicServed:
    published: PublishResult
    client: EnsembleClient
    champion: object  # GenreClassifier
    clean: list[str]


@pytest.fixture(scope="module")
def public_served(published_ensemble, home: Path) -> Iterator[PublicServed]:  # type: ignore[no-untyped-def]
    csv = public_shaped_table(
        published_ensemble.home / "features", home / "gtzan" / "features_30_sec.csv"
    )
    train_model(features_url=str(csv), families=["knn", "random_forest"], trials=2)
    register_best(top=2, table=str(csv))
    settings = get_settings()
    target = TrackingTarget.from_settings(settings)
    champion = load_registered_pair(target, settings.model_name).champion
    published = publish_registered(
        target, home / "repository", model_name=settings.model_name, options=OPTIONS
    )
    with running_ensemble(home / "repository", home) as (_, ports):
        yield PublicServed(
            published,
            EnsembleClient(ports.grpc_url, "grpc"),
            champion[1],
            published_ensemble.clean,
        )


def test_the_public_tables_models_are_published_with_their_own_columns(
    public_served: PublicServed,
) -> None:
    for ref in (public_served.published.champion, public_served.published.challenger):
        assert ref.feature_names == PUBLIC_COLUMNS  # `length` and `filename` are no features
        assert ref.schema_version == "custom"


def test_audio_is_classified_through_the_models_columns(public_served: PublicServed) -> None:
    answers = predict(public_served.clean, public_served.client, labels_from_folders=True)
    summary = summarize(answers)
    assert summary.failed == 0
    assert summary.accuracy is not None and summary.accuracy >= 0.6  # 10 genres: chance is 0.1
    assert {a.model for a in answers} == {public_served.published.champion.label}
    # every answer is the champion's on the 57 columns of the clip's features, computed here
    vectors = [extract_features(load_audio(a.path, duration=10.0)) for a in answers]
    own = pd.DataFrame(vectors, columns=list(FEATURE_NAMES))[PUBLIC_COLUMNS]
    champion = public_served.champion
    np.testing.assert_allclose(
        [a.probabilities for a in answers],
        champion.predict_proba(own),
        atol=1e-5,  # type: ignore[attr-defined]
    )
    assert [a.genre for a in answers] == list(champion.predict(own))  # type: ignore[attr-defined]


def test_a_model_needing_a_column_the_preprocessor_lacks_is_refused(
    published_ensemble,  # type: ignore[no-untyped-def]
    home: Path,
    public_served: PublicServed,
) -> None:
    csv = public_shaped_table(
        published_ensemble.home / "features",
        home / "own" / "features.csv",
        extra={"loudness_lufs": -14.0},
    )
    train_model(features_url=str(csv), families=["knn", "random_forest"], trials=1)
    register_best(top=2, model_name="with-loudness", table=str(csv))
    target = TrackingTarget.from_settings(get_settings())
    with pytest.raises(PublishError, match=r"needs 1 feature column\(s\) .*: 'loudness_lufs'"):
        publish_registered(
            target, home / "other-repository", model_name="with-loudness", options=OPTIONS
        )
    assert not (home / "other-repository" / "predictor").exists()
