"""A canary that must win (issue 16, part 5) on the real tritonserver, MLflow registry and
Prefect harness: a deliberately bad candidate is published, answers its share, loses on live
labels and is withdrawn. Every step is asserted from the store, the registry and the server's
answers. The good path (the retrain flow's canary, promoted, the gate closed on the same
traffic) runs on the whole native stack in tests/e2e/test_platform.py."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from genreops.app.sample import FEATURES
from genreops.core.settings import Settings, get_settings
from genreops.monitoring.canary import PUBLISHED, WITHDRAWN, canary_on_trial, judge
from genreops.monitoring.feedback import save_labels
from genreops.monitoring.store import MonitoringStore
from genreops.serving.client import Answer, EnsembleClient, folder_labels, predict
from genreops.serving.promotion import conclude, publish_canary
from genreops.serving.publish import publish_and_record, read_history
from genreops.training import registry
from genreops.training.tracking import TrackingTarget
from helpers import SERVING_SECONDS, running_ensemble, wait_until

if TYPE_CHECKING:
    from conftest import PublishedEnsemble

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]

MIN_ANSWERS = 12


@dataclass
class Trial:
    settings: Settings
    client: EnsembleClient
    mlflow: mlflow.MlflowClient
    ensemble: PublishedEnsemble
    home: Path

    def ask(self, paths: list[str]) -> list[Answer]:
        """Send the clips (their folder is their genre), store those labels, and wait until
        the server's answers are in the store."""
        with MonitoringStore(self.settings.monitoring_db_url) as store:
            before = len(store.recent_predictions(100_000))
            answers = predict(paths, self.client, labels_from_folders=True)
            assert all(a.ok for a in answers), [a.error for a in answers if not a.ok][:3]
            report = save_labels(self.settings, folder_labels(answers), "test")
            assert report.stored == len(paths)
            assert wait_until(
                lambda: len(store.recent_predictions(100_000)) >= before + len(paths), timeout=30
            )
        return answers

    def aliases(self) -> dict[str, str]:
        aliases = self.mlflow.get_registered_model(self.settings.model_name).aliases
        return {alias: str(version) for alias, version in aliases.items()}

    def events(self) -> list[dict[str, Any]]:
        with MonitoringStore(self.settings.monitoring_db_url) as store:
            return store.model_events()


@pytest.fixture(scope="module")
def trial(
    published_ensemble: PublishedEnsemble, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Trial]:
    """A server of this module's own on a copy of the session's repository and registry (the
    canaries move aliases); GENREOPS_TRITON_CONTROL_URL points publishing at it."""
    source = published_ensemble.home
    home = tmp_path_factory.mktemp("canary")
    shutil.copy(source / "mlflow.db", home / "mlflow.db")
    shutil.copytree(published_ensemble.repository, home / "repository")
    uri = f"sqlite:///{home / 'mlflow.db'}"
    with (
        running_ensemble(home / "repository", home) as (_process, ports),
        pytest.MonkeyPatch.context() as patch,
    ):
        for name, value in {
            "GENREOPS_HOME": str(home),
            "GENREOPS_MLFLOW_TRACKING_URI": uri,
            "GENREOPS_MLFLOW_ARTIFACT_ROOT": str(source / "mlartifacts"),
            "GENREOPS_TRITON_CONTROL_URL": ports.http_url,
            "GENREOPS_TRITON_REPOSITORY": str(home / "repository"),
            "GENREOPS_WINDOW_SECONDS": str(SERVING_SECONDS),
            "GENREOPS_DRIFT_WINDOW": "30",
            "GENREOPS_DRIFT_MIN_SAMPLES": "20",
            "GENREOPS_DRIFT_TEST_EVERY": "10",
            "GENREOPS_CANARY_SHARE": "0.5",
        }.items():
            patch.setenv(name, value)
        get_settings.cache_clear()
        yield Trial(
            get_settings(),
            EnsembleClient(ports.grpc_url, "grpc"),
            mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri),
            published_ensemble,
            home,
        )
    get_settings.cache_clear()


def _answered_by(answers: list[Answer], model: str) -> int:
    return sum(a.model == model for a in answers)


def test_a_worse_canary_answers_its_share_loses_on_live_labels_and_is_withdrawn(
    trial: Trial, tmp_path: Path
) -> None:
    from genreops.flows.train import train_model

    settings, name = trial.settings, trial.settings.model_name
    before = trial.aliases()
    # the deliberately bad candidate: the champion's own table with every genre renamed
    table = pq.read_table(trial.ensemble.home / FEATURES / "features.parquet")
    genres = sorted(set(table.column("genre").to_pylist()))
    renamed = dict(zip(genres, genres[1:] + genres[:1], strict=True))
    wrong = pa.array([renamed[g] for g in table.column("genre").to_pylist()])
    index = table.schema.get_field_index("genre")
    pq.write_table(table.set_column(index, "genre", wrong), tmp_path / "bad.parquet")
    train_model(features_url=str(tmp_path / "bad.parquet"), families=["knn"], trials=1)
    bad = registry.register_canary(
        TrackingTarget.from_settings(settings), str(tmp_path / "bad.parquet"), model_name=name
    )
    published = publish_canary(settings)
    assert published.loaded and published.canary is not None
    canary = published.canary.label
    assert canary == f"{name}/{bad.version}"
    assert {k: v for k, v in trial.aliases().items() if k != "canary"} == before
    # its share is the registry's: whoever publishes next while it is on trial keeps it
    assert trial.mlflow.get_model_version(name, bad.version).tags["genreops.canary.share"] == "0.5"
    again = publish_and_record(settings.model_copy(update={"canary_share": 0.1}))
    assert not again.created and again.version == published.version

    answers = trial.ask(trial.ensemble.clean * 2)
    assert MIN_ANSWERS <= _answered_by(answers, canary) <= len(answers) - MIN_ANSWERS
    with MonitoringStore(settings.monitoring_db_url) as store:
        on_trial = canary_on_trial(store)
        assert on_trial is not None and on_trial.canary == canary
        verdict = judge(store, on_trial, MIN_ANSWERS)
    assert verdict.promote is False, verdict.message
    assert verdict.canary.accuracy is not None and verdict.incumbent.accuracy is not None
    assert verdict.canary.accuracy < 0.3 < 0.5 < verdict.incumbent.accuracy

    done = conclude(settings, verdict)
    assert trial.aliases() == before  # the champion and challenger stay, the canary is gone
    version = trial.mlflow.get_model_version(name, bad.version)
    assert version.tags["genreops.canary"] == "withdrawn"
    assert "genreops.loop.canary-withdrawn" in version.tags
    assert done.published.canary is None and done.published.loaded
    history = read_history(settings.repository)
    assert history["versions"][-1]["canary"] is None
    events = [e for e in trial.events() if e["event"] in (PUBLISHED, WITHDRAWN)]
    assert [(e["event"], e["detail"]["canary"]) for e in events] == [
        (PUBLISHED, canary),
        (WITHDRAWN, canary),
    ]
    assert events[1]["detail"]["canary_answers"]["answers"] == verdict.canary.answers
    again = trial.ask(trial.ensemble.clean)
    assert _answered_by(again, canary) == 0  # Triton serves the version without it
