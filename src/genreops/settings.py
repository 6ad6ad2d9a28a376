"""The one typed settings object; the only place endpoints, buckets and credentials are read.

Build it once at an edge (CLI, flow, Triton model) with ``get_settings()`` and pass what a
library function needs explicitly.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from genreops.storage import S3Config


class Settings(BaseSettings):
    """All knobs, from ``GENREOPS_*`` environment variables or an optional ``.env`` file."""

    model_config = SettingsConfigDict(
        env_prefix="GENREOPS_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    home: Path = Field(
        default=Path(".genreops"), description="Root of all local state (data, logs, stores)."
    )

    # S3: any endpoint (the embedded server, LocalStack, MinIO, AWS). Unset keys fall back to
    # boto3's usual credential chain (AWS_* variables, ~/.aws, instance roles).
    s3_endpoint_url: str | None = Field(default=None, description="S3 endpoint; None means AWS.")
    s3_region: str = Field(default="us-east-1")
    s3_access_key_id: str | None = Field(default=None)
    s3_secret_access_key: SecretStr | None = Field(default=None)
    raw_bucket: str = Field(default="genreops-raw", description="Bucket for uploaded audio.")
    features_bucket: str = Field(default="genreops-features", description="Feature tables.")
    artifacts_bucket: str = Field(default="genreops-artifacts", description="MLflow artifacts.")

    mlflow_tracking_uri: str | None = Field(
        default=None, description="MLflow tracking URI; default SQLite under home."
    )
    mlflow_artifact_root: str | None = Field(
        default=None,
        description="Artifact root when the tracking URI is a database, not a server "
        "(a folder or s3:// prefix); default: mlartifacts under home.",
    )
    model_name: str = Field(default="genre-classifier", description="Registered model name.")
    search_space_file: Path | None = Field(
        default=None, description="Optuna search spaces (YAML); default configs/search_spaces.yaml."
    )
    study_storage_url: str | None = Field(
        default=None,
        description="Optuna storage (SQLAlchemy URL) shared by parallel tuning workers; "
        "default in memory.",
    )
    database_url: str | None = Field(
        default=None, description="Monitoring store (SQLAlchemy URL); default SQLite under home."
    )
    triton_url: str = Field(default="127.0.0.1:8001", description="Triton gRPC host:port.")
    triton_repository: Path | None = Field(
        default=None, description="Published Triton model repository; default under home."
    )
    challenger_share: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Canary: share of normal traffic the challenger answers.",
    )
    drift_window: int = Field(
        default=200, ge=10, description="Recent requests in the drift window."
    )
    drift_min_samples: int = Field(default=50, ge=10, description="Window size before testing.")
    drift_test_every: int = Field(default=50, ge=1, description="Requests between drift tests.")
    drift_share: float = Field(
        default=0.5, gt=0, le=1, description="Share of drifted features that opens the gate."
    )
    prefect_api_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("GENREOPS_PREFECT_API_URL", "PREFECT_API_URL"),
        description="Prefect server API; None runs flows against a temporary local server.",
    )
    dask_address: str | None = Field(
        default=None, description="Dask scheduler tcp://host:port; None starts a local cluster."
    )
    dask_workers: int = Field(default=2, ge=1, description="Workers of the local Dask cluster.")

    # Audio limits, enforced before and during decoding.
    window_seconds: float = Field(default=30.0, gt=0, description="Analysis window length.")
    min_seconds: float = Field(default=5.0, gt=0, description="Shortest usable clip.")
    max_seconds: float = Field(default=900.0, gt=0, description="Longest accepted clip.")
    max_file_bytes: int = Field(default=200 * 1024 * 1024, gt=0, description="Largest input.")

    extract_chunk_size: int = Field(default=32, ge=1, description="Clips per extraction task.")
    extract_max_failed_share: float = Field(
        default=0.05, ge=0, le=1, description="Extraction fails above this share of bad files."
    )

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    @property
    def mlflow_uri(self) -> str:
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{(self.home / 'mlflow.db').resolve()}"

    @property
    def serving_dir(self) -> Path:
        """Drift state and the monitoring spool of the serving processes (absolute)."""
        return self.home.resolve() / "serving"

    @property
    def monitoring_spool_dir(self) -> Path:
        return self.serving_dir / "spool"

    @property
    def repository(self) -> Path:
        return (self.triton_repository or self.home / "triton" / "repository").resolve()

    @property
    def mlflow_artifacts(self) -> str:
        return self.mlflow_artifact_root or str((self.home / "mlartifacts").resolve())

    @property
    def monitoring_db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'monitoring.db').resolve()}"

    @property
    def s3(self) -> S3Config:
        secret = self.s3_secret_access_key
        return S3Config(
            endpoint_url=self.s3_endpoint_url,
            region=self.s3_region,
            access_key_id=self.s3_access_key_id,
            secret_access_key=secret.get_secret_value() if secret else None,
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings read once per process; tests build ``Settings(...)`` directly instead."""
    return Settings()
