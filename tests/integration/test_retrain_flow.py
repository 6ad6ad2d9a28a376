"""The retrain flow on real MLflow and Prefect: the champion's table plus the labeled clips,
trained, registered as the canary; the champion stays, every step is recorded."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID

import mlflow
import pandas as pd
import pytest

from genreops.core.settings import get_settings
from genreops.monitoring.store import MonitoringStore
from genreops.serving.client import expected_genre
from helpers import SERVING_SECONDS

if TYPE_CHECKING:
    from conftest import PublishedEnsemble

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]


def test_retraining_adds_the_labeled_clips_and_registers_a_canary(
    published_ensemble: PublishedEnsemble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from genreops.flows.retrain import retrain

    source = published_ensemble.home
    shutil.copy(source / "mlflow.db", tmp_path / "mlflow.db")  # the session's registry stays
    monkeypatch.setenv("GENREOPS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GENREOPS_MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("GENREOPS_MLFLOW_ARTIFACT_ROOT", str(source / "mlartifacts"))
    monkeypatch.setenv("GENREOPS_WINDOW_SECONDS", str(SERVING_SECONDS))
    get_settings.cache_clear()
    settings = get_settings()
    drifted = published_ensemble.drifted
    with MonitoringStore(settings.monitoring_db_url) as store:
        store.ensure_schema()
        store.insert_labels({"clip_id": c, "genre": expected_genre(c)} for c in drifted)
        store.insert_labels([{"clip_id": str(tmp_path / "gone.wav"), "genre": "rock"}])
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    before = client.get_registered_model(settings.model_name).aliases

    result = retrain(reason="a test asked", families=["knn"], trials=1)

    assert (result["added"], result["left_out"]) == (len(drifted), 1)
    table = pd.read_parquet(result["table"])
    assert len(table) == result["base_rows"] + len(drifted)
    assert set(drifted) <= set(table["clip_id"])
    aliases = client.get_registered_model(settings.model_name).aliases
    assert {k: v for k, v in aliases.items() if k != "canary"} == before  # champion stays
    canary = client.get_model_version(settings.model_name, aliases["canary"])
    assert canary.tags["genreops.role"] == "canary" and canary.run_id == result["run_id"]
    assert "retrained because a test asked" in canary.tags["genreops.reason"]
    (dataset,) = client.get_run(canary.run_id).inputs.dataset_inputs
    assert result["table"] in dataset.dataset.source  # the new data version is the input
    with MonitoringStore(settings.monitoring_db_url) as store:
        events = [e for e in store.model_events() if e["event"].startswith("retrain-")]
    assert [e["event"] for e in events] == ["retrain-started", "retrain-finished"]
    assert events[1]["detail"]["canary"] == f"{settings.model_name}/{canary.version}"
    get_settings.cache_clear()


def test_the_monitor_starts_the_retrain_deployment_and_sees_it_until_it_ends() -> None:
    """The Prefect side of the monitor's trigger, on the session's real Prefect server."""
    from genreops.flows.deployments import DEPLOYMENTS, build_deployments
    from genreops.flows.retrain import retrain_run_active, start_retrain_run
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.states import Cancelled

    from genreops.monitoring.retraining import RetrainReason

    (spec,) = [s for s in DEPLOYMENTS if s.name == "retrain"]
    (deployment,) = build_deployments(get_settings(), [spec])
    deployment.apply()
    run_id = start_retrain_run(RetrainReason("drift", "the gate stayed open"))
    assert retrain_run_active(run_id)  # scheduled: no runner serves it in this test
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(run_id))
        assert run.parameters == {"reason": "the gate stayed open"}
        assert run.state is not None and run.state.type == StateType.SCHEDULED
        client.set_flow_run_state(run.id, Cancelled(), force=True)
    assert not retrain_run_active(run_id)
