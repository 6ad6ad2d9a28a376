"""Training and registry against a real `mlflow server` whose artifacts live on the S3 server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pytest
from genreops.flows.registry import register_best
from genreops.flows.train import train_model

from genreops.core.settings import get_settings
from genreops.data.features import FEATURE_NAMES
from genreops.data.storage import ensure_bucket, list_objects, write_bytes
from genreops.platform.mlflow_server import server_url, start_mlflow_server, stop_mlflow_server
from helpers import free_port, synthetic_feature_frame

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]

BUCKET = "s3://mlflow-artifacts"
TABLES = "s3://feature-tables"


@pytest.fixture(scope="module")
def tracking_server(s3_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    base = tmp_path_factory.mktemp("mlflow-server")
    ensure_bucket(BUCKET, s3=s3_server.config)
    port = free_port()
    process = start_mlflow_server(
        f"sqlite:///{base / 'mlflow.db'}",
        f"{BUCKET}/runs",
        port=port,
        s3=s3_server.config,
        log_path=base / "mlflow.log",
    )
    try:
        yield server_url(port=port)
    finally:
        stop_mlflow_server(process)


@pytest.fixture
def server_settings(tracking_server: str, s3_server: Any, tmp_path: Path) -> Iterator[None]:
    """The client side: the server URL and genreops' own S3 settings (for the feature table),
    but no AWS_* keys or MLflow S3 endpoint: MLflow's artifacts go through the server."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GENREOPS_HOME", str(tmp_path / "home"))
        patch.setenv("GENREOPS_MLFLOW_TRACKING_URI", tracking_server)
        patch.setenv("GENREOPS_S3_ENDPOINT_URL", s3_server.config.endpoint_url)
        patch.setenv("GENREOPS_S3_ACCESS_KEY_ID", s3_server.config.access_key_id)
        patch.setenv("GENREOPS_S3_SECRET_ACCESS_KEY", s3_server.config.secret_access_key)
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL"):
            patch.delenv(name, raising=False)
        get_settings.cache_clear()
        yield
    get_settings.cache_clear()


@pytest.mark.usefixtures("server_settings")
def test_train_from_s3_register_and_load_through_the_server_with_artifacts_on_s3(
    s3_server: Any, tracking_server: str, tmp_path: Path
) -> None:
    frame = synthetic_feature_frame(per_genre=9, seed=2)
    ensure_bucket(TABLES, s3=s3_server.config)
    write_bytes(f"{TABLES}/t/features.parquet", frame.to_parquet(index=False), s3=s3_server.config)
    summary = train_model(features_url=f"{TABLES}/t", families=["knn", "random_forest"], trials=2)
    assert {o.family for o in summary.outcomes} == {"knn", "random_forest"}
    assert summary.table_url == f"{TABLES}/t/features.parquet"

    registered = register_best(top=2)
    assert [a.alias for a in registered.assignments] == ["champion", "challenger"]
    assert not (tmp_path / "home" / "mlartifacts").exists()  # nothing went to local files

    objects = [o.relative for o in list_objects(f"{BUCKET}/runs", s3=s3_server.config)]
    assert any(p.endswith("confusion_matrix_val.png") for p in objects)
    assert any(p.endswith("MLmodel") for p in objects)

    mlflow.set_tracking_uri(tracking_server)
    mlflow.set_registry_uri(tracking_server)
    model = mlflow.pyfunc.load_model("models:/genre-classifier@champion")
    predicted = model.predict(frame[list(FEATURE_NAMES)])
    assert set(predicted) <= set(frame["genre"])
