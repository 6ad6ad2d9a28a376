"""The one typed settings object; the only place endpoints, buckets and credentials are read.

Build it once at an edge (CLI, flow, Triton model) with ``get_settings()`` and pass what a
library function needs explicitly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from genreops.core.errors import NoveltyError


@dataclass(frozen=True)
class S3Config:
    """Where and how to reach S3; picklable so it can travel to Dask workers."""

    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: str | None = None

    def __repr__(self) -> str:  # never print the secret
        return f"S3Config(endpoint_url={self.endpoint_url!r}, region={self.region!r})"


@dataclass(frozen=True)
class NoveltySettings:
    """How requests are judged; genreops.monitoring.novelty explains each number's role."""

    neighbours: int = 5
    ood_alpha: float = 0.01
    expected_run: float = 1_000_000.0
    kappa: float = 0.3
    close_fraction: float = 0.0

    def __post_init__(self) -> None:
        problems = []
        if self.neighbours < 1:
            problems.append(f"neighbours={self.neighbours} (needs >= 1)")
        if not 0.0 < self.ood_alpha < 1.0:
            problems.append(f"ood_alpha={self.ood_alpha} (needs 0 < alpha < 1)")
        if not (math.isfinite(self.expected_run) and self.expected_run > 1.0):
            problems.append(f"expected_run={self.expected_run} (needs a finite value > 1)")
        if not 0.0 < self.kappa < 1.0:
            problems.append(f"kappa={self.kappa} (needs 0 < kappa < 1)")
        if not 0.0 <= self.close_fraction < 1.0:
            problems.append(f"close_fraction={self.close_fraction} (needs 0 <= f < 1)")
        if problems:
            raise NoveltyError("invalid novelty settings: " + "; ".join(problems))


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
    cv_folds: int = Field(
        default=4,
        ge=0,
        description="Tuning scores each configuration by k-fold cross-validation on train+val "
        "(0 or 1: the table's train/val split).",
    )
    cv_max_rows: int = Field(
        default=5000,
        ge=0,
        description="Tables with more train+val rows than this keep their train/val split.",
    )
    study_storage_url: str | None = Field(
        default=None,
        description="Optuna storage (SQLAlchemy URL) shared by parallel tuning workers; "
        "default in memory.",
    )
    database_url: str | None = Field(
        default=None, description="Monitoring store (SQLAlchemy URL); default SQLite under home."
    )
    triton_url: str = Field(
        default="127.0.0.1:8001",
        description="Triton gRPC host:port, or several replicas comma-separated (clients "
        "spread requests over them).",
    )
    triton_replicas: int = Field(
        default=1,
        ge=1,
        le=8,
        description="tritonserver processes the native stack runs on the published "
        "repository; replica i > 0 listens on the Triton ports + 10 * i.",
    )
    serving_replica: int = Field(
        default=0,
        ge=0,
        le=7,
        description="Which replica a Triton server process is (set by whoever starts it): its "
        "drift state and monitoring spool are its own (serving/replica-<i>; 0: serving/).",
    )
    triton_repository: Path | None = Field(
        default=None, description="Published Triton model repository; default under home."
    )
    challenger_share: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Share of normal traffic the challenger answers (beside the drift gate's "
        "requests); the canary has its own share.",
    )
    canary_share: float = Field(
        default=0.2,
        ge=0,
        lt=1,
        description="Share of all traffic a published canary answers (gate open or not).",
    )
    canary_min_answers: int = Field(
        default=50,
        ge=1,
        description="Labeled answers the canary, and the champion with its fallback, each "
        "need since the canary was published before the monitor promotes or withdraws it.",
    )
    triton_control_url: str | None = Field(
        default=None,
        description="Triton HTTP URL that publish, promotion and rollback load new versions "
        "into, or several replicas comma-separated; None: the server `genreops serve` or the "
        "stack runs for this home, if any.",
    )
    drift_expected_run: float = Field(
        default=NoveltySettings.expected_run,
        gt=1,
        description="Drift gate: clean requests expected between false alarms (at least); "
        "the alarm level is its logarithm.",
    )
    drift_ood_alpha: float = Field(
        default=NoveltySettings.ood_alpha,
        gt=0,
        lt=1,
        description="A request is out of distribution when fewer than this share of training "
        "clips are as far from the rest (its conformal p-value).",
    )
    drift_neighbours: int = Field(
        default=NoveltySettings.neighbours,
        ge=1,
        description="Nearest training clips a request's distance averages.",
    )
    drift_kappa: float = Field(
        default=NoveltySettings.kappa,
        gt=0,
        lt=1,
        description="Drift detector's calibrator exponent: lower weighs rare, strong evidence.",
    )
    drift_close_fraction: float = Field(
        default=NoveltySettings.close_fraction,
        ge=0,
        lt=1,
        description="The gate closes when the detector falls to this share of its alarm level.",
    )
    drift_window: int = Field(
        default=50, ge=10, description="Recent requests in each recorded drift test."
    )
    drift_min_samples: int = Field(
        default=20, ge=10, description="Requests in the window before tests are recorded."
    )
    drift_test_every: int = Field(
        default=25, ge=1, description="Requests between recorded drift tests."
    )
    drift_report_every_seconds: float = Field(
        default=300.0,
        ge=0,
        description="The drift-report deployment also runs on this interval (each Evidently "
        "report costs seconds of CPU); 0 = only when asked for.",
    )
    serving_max_queue_size: int = Field(
        default=64,
        ge=0,
        description="Requests waiting for the preprocessor before more are refused "
        "(UNAVAILABLE: load shedding); 0 = no bound.",
    )
    serving_queue_timeout_seconds: float = Field(
        default=30.0,
        ge=0,
        description="Longest wait in the preprocessor's queue before a request is refused; "
        "0 = no bound.",
    )
    prefect_api_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("GENREOPS_PREFECT_API_URL", "PREFECT_API_URL"),
        description="Prefect server API; None runs flows against a temporary local server.",
    )
    dask_address: str | None = Field(
        default=None, description="Dask scheduler tcp://host:port; None starts a local cluster."
    )
    dask_workers: int = Field(
        default=2,
        ge=1,
        description="Dask worker processes: of the local cluster a run starts, or the native "
        "stack's `dask worker` (one thread each).",
    )
    work_pool: str = Field(
        default="genreops",
        min_length=1,
        description="Prefect work pool the deployments are registered to and its workers poll.",
    )
    work_pool_type: str = Field(
        default="process",
        min_length=1,
        description="Type of the work pool when it is created (process; kubernetes or docker "
        "with their Prefect integration installed on the workers).",
    )
    work_pool_concurrency: int = Field(
        default=3, ge=1, description="Flow runs of the work pool at once, whatever their kind."
    )
    heavy_run_concurrency: int = Field(
        default=1,
        ge=1,
        description="Extraction, training and pipeline runs at once (the work pool's `heavy` "
        "queue), so two heavy runs never starve serving on a small machine.",
    )

    # Live quality and alerts (labels that came back; the monitor service, Alertmanager).
    quality_recent_answers: int = Field(
        default=100, ge=1, description="Newest labeled answers the live accuracy gauge covers."
    )
    quality_min_answers: int = Field(
        default=20,
        ge=1,
        description="Labeled answers needed before the live accuracy gauge is published.",
    )
    min_live_accuracy: float = Field(
        default=0.6,
        ge=0,
        le=1,
        description="Live accuracy over the newest labeled answers below this fires an alert.",
    )
    retrain_gate_open_seconds: float = Field(
        default=900.0,
        gt=0,
        description="Retrain once the drift gate has stayed open this long (seconds).",
    )
    retrain_cooldown_seconds: float = Field(
        default=3600.0,
        ge=0,
        description="Least time between two retraining runs the monitor starts (seconds).",
    )
    retrain_check_seconds: float = Field(
        default=30.0, gt=0, description="How often the monitor checks whether to retrain."
    )
    retrain_auto: bool = Field(
        default=True,
        description="The monitor starts retraining runs by itself (needs a Prefect server "
        "with the deployments served, as `genreops stack up` runs them).",
    )
    retrain_trials: int = Field(
        default=5, ge=1, description="Optuna trials per family in a retraining run."
    )
    alert_pending_seconds: float | None = Field(
        default=None,
        ge=0,
        description="The native stack's Prometheus fires every alert rule this long after "
        "its condition holds, instead of the rule's own `for:` (demos); None keeps the rules.",
    )
    alert_webhook_url: str | None = Field(
        default=None,
        description="Where the monitor forwards every alert notification it records (JSON "
        "POST, Alertmanager's payload); None keeps them in the store only.",
    )

    # Audio limits, enforced before and during decoding.
    window_seconds: float = Field(default=30.0, gt=0, description="Analysis window length.")
    min_seconds: float = Field(default=5.0, gt=0, description="Shortest usable clip.")
    max_seconds: float = Field(default=900.0, gt=0, description="Longest accepted clip.")
    max_file_bytes: int = Field(default=200 * 1024 * 1024, gt=0, description="Largest input.")

    extract_chunk_size: int = Field(default=32, ge=1, description="Clips per extraction task.")
    extract_max_failed_share: float = Field(
        default=0.05, ge=0, le=1, description="Extraction fails above this share of bad files."
    )

    # The native stack (`genreops stack up`): its ports on 127.0.0.1 and its servers' databases.
    s3_port: int = Field(default=4568, ge=1, le=65535, description="Embedded S3 server port.")
    s3_server_dir: Path | None = Field(
        default=None,
        description="Folder whose node_modules holds the embedded S3 server (npm s3rver; "
        "`npm ci --prefix DIR` with tools/s3's package files); default: the checkout's tools/s3.",
    )
    mlflow_port: int = Field(default=5000, ge=1, le=65535, description="MLflow server port.")
    prefect_port: int = Field(default=4200, ge=1, le=65535, description="Prefect server port.")
    triton_http_port: int = Field(default=8000, ge=1, le=65535, description="Triton HTTP port.")
    triton_grpc_port: int = Field(default=8001, ge=1, le=65535, description="Triton gRPC port.")
    triton_metrics_port: int = Field(
        default=8002, ge=1, le=65535, description="Triton Prometheus metrics port."
    )
    prometheus_port: int = Field(default=9090, ge=1, le=65535, description="Prometheus port.")
    dask_scheduler_port: int = Field(
        default=8786, ge=1, le=65535, description="The native stack's Dask scheduler port."
    )
    dask_dashboard_port: int = Field(
        default=8787, ge=1, le=65535, description="The Dask scheduler's dashboard (native stack)."
    )
    drift_ui_port: int = Field(default=8085, ge=1, le=65535, description="Evidently UI port.")
    alertmanager_port: int = Field(
        default=9093, ge=1, le=65535, description="Alertmanager port (native stack)."
    )
    monitor_port: int = Field(
        default=9095,
        ge=1,
        le=65535,
        description="The monitor service: quality gauges and the alert receiver.",
    )
    mlflow_backend_store_uri: str | None = Field(
        default=None,
        description="Database of the stack's MLflow server (e.g. postgresql://...); "
        "default SQLite under home.",
    )
    prefect_database_url: str | None = Field(
        default=None,
        description="Database of the stack's Prefect server (postgresql+asyncpg://...); "
        "default SQLite under home.",
    )
    use_stack_env: bool = Field(
        default=True,
        description="Read <home>/stack.env (written by `genreops stack up`) below every "
        "explicit setting, so commands find the running stack.",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Explicit settings first (arguments, environment, ``.env``), then the stack's file."""
        stack = _StackEnvSource(settings_cls, init_settings, env_settings, dotenv_settings)
        return init_settings, env_settings, dotenv_settings, stack, file_secret_settings

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
    def drift_workspace(self) -> Path:
        """Evidently workspace of the drift views (absolute)."""
        return self.home.resolve() / "drift" / "workspace"

    @property
    def serving_dir(self) -> Path:
        """Drift state and the monitoring spool of this Triton replica's processes
        (absolute)."""
        return serving_dir(self.home, self.serving_replica)

    @property
    def serving_dirs(self) -> list[Path]:
        """Those of every replica that has served from this home (replica 0 first)."""
        root = serving_dir(self.home, 0)
        replicas = [p for p in root.glob("replica-*") if p.name.removeprefix("replica-").isdigit()]
        return [root, *sorted(replicas, key=lambda p: int(p.name.removeprefix("replica-")))]

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


STACK_ENV_FILE = "stack.env"


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() not in ("0", "false", "no", "off", "")


class _StackEnvSource(PydanticBaseSettingsSource):
    """``<home>/stack.env``: the endpoints of the stack `genreops stack up` started.

    It exists from `stack up` until `stack down` and ranks below every explicit setting, so
    an exported variable or ``.env`` still wins. The file lives under ``home``, which is
    itself a setting: it is found from the explicit sources. ``GENREOPS_USE_STACK_ENV=false``
    ignores it (the test suite does, so a running stack cannot leak into tests).
    """

    def __init__(
        self, settings_cls: type[BaseSettings], *explicit: PydanticBaseSettingsSource
    ) -> None:
        super().__init__(settings_cls)
        self._explicit = explicit  # highest priority first

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads the whole file at once

    def __call__(self) -> dict[str, Any]:
        chosen: dict[str, Any] = {}
        for source in reversed(self._explicit):
            chosen.update(source())
        if not _truthy(chosen.get("use_stack_env", True)):
            return {}
        path = Path(str(chosen.get("home") or self.settings_cls.model_fields["home"].default))
        path = path.expanduser() / STACK_ENV_FILE
        if not path.is_file():
            return {}
        values = DotEnvSettingsSource(self.settings_cls, env_file=path)()
        for name in ("home", "use_stack_env"):  # the file never moves itself
            values.pop(name, None)
        return values


def default(name: str) -> Any:
    """A setting's default, so option objects built without settings share the one source."""
    return Settings.model_fields[name].default


def serving_dir(home: Path, replica: int) -> Path:
    """Serving state of one Triton replica: replica 0 (the only one, usually) in
    ``serving/``, replica i in ``serving/replica-<i>``."""
    root = home.resolve() / "serving"
    return root / f"replica-{replica}" if replica else root


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings read once per process; tests build ``Settings(...)`` directly instead."""
    return Settings()
