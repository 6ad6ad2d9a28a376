"""One starter per service: each returns a healthy process leading its own process group.

The stack (genreops.platform.stack.lifecycle) records what they return; Triton's starter writes
the record ``genreops serve`` shares itself.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genreops.core.pidfiles import STACK_OWNER
from genreops.core.processes import http_answers, start_process
from genreops.platform import s3server
from genreops.platform.stack.prefect_api import prefect_healthy, served_deployments
from genreops.platform.stack.records import utcnow
from genreops.platform.stack.services import (
    HOST,
    StackError,
    external_dask,
    stack_environment,
)
from genreops.serving.triton.server import settings_ports

if TYPE_CHECKING:
    from genreops.platform.stack.lifecycle import Stack


def start_s3(stack: Stack, limit: float) -> subprocess.Popen[bytes]:
    return s3server.start_s3_server(
        stack.home / "s3",
        HOST,
        stack.settings.s3_port,
        stack.log_file("s3"),
        timeout=limit,
        detach=True,
        tools_dir=s3server.server_dir(stack.settings),
    )


def s3_config(stack: Stack) -> Any:
    return s3server.s3_config(HOST, stack.settings.s3_port)


def ensure_buckets(stack: Stack) -> None:
    from genreops.data.storage import ensure_bucket

    s = stack.settings
    for bucket in dict.fromkeys((s.raw_bucket, s.features_bucket, s.artifacts_bucket)):
        ensure_bucket(f"s3://{bucket}", s3=s3_config(stack))


def start_mlflow(stack: Stack, limit: float) -> subprocess.Popen[bytes]:
    from genreops.platform.mlflow_server import start_mlflow_server

    backend = stack.settings.mlflow_backend_store_uri or f"sqlite:///{stack.home / 'mlflow.db'}"
    return start_mlflow_server(
        backend,
        f"s3://{stack.settings.artifacts_bucket}/mlflow",
        host=HOST,
        port=stack.settings.mlflow_port,
        s3=s3_config(stack),
        log_path=stack.log_file("mlflow"),
        timeout=limit,
    )


def prefect_env(stack: Stack) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PREFECT_HOME=str(stack.home / "prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="true",
    )
    return env


def start_prefect(stack: Stack, limit: float) -> subprocess.Popen[bytes]:
    env = prefect_env(stack)
    env.pop("PREFECT_API_URL", None)  # the server is the API; never a client of another
    database = stack.settings.prefect_database_url or env.get(
        "PREFECT_SERVER_DATABASE_CONNECTION_URL"
    )
    if not database:
        (stack.home / "prefect").mkdir(parents=True, exist_ok=True)
        database = f"sqlite+aiosqlite:///{stack.home / 'prefect' / 'prefect.db'}"
    env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database
    # the UI asks this API; left unset it would ask the default port, not ours
    env["PREFECT_UI_API_URL"] = stack.endpoints.prefect_api
    argv = [
        venv_tool("prefect"),
        "server", "start",
        "--host", HOST,
        "--port", str(stack.settings.prefect_port),
        "--analytics-off",
    ]  # fmt: skip
    return start_process(
        "the Prefect server",
        argv,
        ready=lambda: prefect_healthy(stack.endpoints.prefect_api),
        url=stack.endpoints.prefect,
        log_path=stack.log_file("prefect"),
        env=env,
        timeout=limit,
    )


def start_dask_scheduler(stack: Stack, limit: float) -> subprocess.Popen[bytes]:
    """A Dask scheduler of its own (its dashboard also serves /health and /metrics)."""
    settings = stack.settings
    argv = [
        venv_tool("dask"), "scheduler",
        "--host", HOST,
        "--port", str(settings.dask_scheduler_port),
        "--dashboard-address", f"{HOST}:{settings.dask_dashboard_port}",
    ]  # fmt: skip
    return start_process(
        "the Dask scheduler",
        argv,
        ready=lambda: stack.healthy("dask-scheduler"),
        url=stack.endpoints.url("dask-scheduler"),
        log_path=stack.log_file("dask-scheduler"),
        env=dask_env(),
        timeout=limit,
    )


def dask_env() -> dict[str, str]:
    """The CLI quiets Dask for its own output; a service logs at INFO into its log file."""
    return dict(os.environ, PYTHONUNBUFFERED="1", DASK_LOGGING__DISTRIBUTED="info")


def start_dask_workers(stack: Stack, limit: float) -> subprocess.Popen[bytes]:
    """GENREOPS_DASK_WORKERS worker processes (one thread each, each under its nanny, which
    restarts a worker that dies) on the stack's scheduler. Extraction tasks read clips from
    S3 and write chunks to S3: they get the stack's S3 settings, never a shared folder."""
    settings = stack.settings
    env = dask_env()
    env.update(stack_environment(settings))
    env.update(MLFLOW_DISABLE_TELEMETRY="true")
    argv = [
        venv_tool("dask"), "worker", stack.endpoints.dask_scheduler,
        "--nworkers", str(settings.dask_workers),
        "--nthreads", "1",
        "--host", HOST,
        "--no-dashboard",
        "--local-directory", str(stack.home / "dask"),
    ]  # fmt: skip
    return start_process(
        "the Dask workers",
        argv,
        ready=lambda: stack.healthy("dask-workers"),  # the scheduler counts them all
        url=stack.endpoints.url("dask-workers"),
        log_path=stack.log_file("dask-workers"),
        env=env,
        timeout=limit,
    )


def dask_workers_connected(dashboard: str) -> int:
    """Workers the scheduler counts now (its dashboard's JSON; 0 when it does not answer)."""
    import httpx

    try:
        counts = httpx.get(f"{dashboard}/json/counts.json", timeout=5, trust_env=False).json()
        return int(counts.get("workers", 0))
    except (httpx.HTTPError, ValueError, TypeError):
        return 0


def start_deployments(stack: Stack, limit: float, launched: dt.datetime) -> subprocess.Popen[bytes]:
    env = prefect_env(stack)
    env.update(stack_environment(stack.settings))  # every endpoint, whatever runs yet
    env.update(
        PYTHONUNBUFFERED="1",
        MLFLOW_DISABLE_TELEMETRY="true",
    )
    since = launched - dt.timedelta(seconds=1)
    return start_process(
        "the Prefect deployments",
        [sys.executable, "-m", "genreops.flows.deployments"],
        ready=lambda: bool(served_deployments(stack.endpoints.prefect_api, since)),
        url=stack.endpoints.url("deployments"),
        log_path=stack.log_file("deployments"),
        env=env,
        timeout=limit,
    )


def start_triton(stack: Stack, limit: float) -> subprocess.Popen[bytes]:
    """The same server of the home as `genreops serve` starts, recorded as the stack's."""
    from genreops.serving.triton.home import start_home_server

    started = start_home_server(
        stack.settings,
        log_path=stack.log_file("triton"),
        owner=STACK_OWNER,
        extra={"launched": utcnow().isoformat()},
        timeout=limit,
    )
    return started.process


def start_triton_replicas(stack: Stack, limit: float) -> subprocess.Popen[bytes]:
    """Replicas 1.. of the home's server under one keeper process that restarts a replica that
    dies (genreops.serving.triton.replicas)."""
    settings = stack.settings
    env = dict(os.environ)
    env.update(stack_environment(settings))
    env.update(  # the stack's own, whatever the keeper's environment says
        GENREOPS_TRITON_REPOSITORY=str(settings.repository),
        GENREOPS_TRITON_HTTP_PORT=str(settings.triton_http_port),
        GENREOPS_TRITON_GRPC_PORT=str(settings.triton_grpc_port),
        GENREOPS_TRITON_METRICS_PORT=str(settings.triton_metrics_port),
        PYTHONUNBUFFERED="1",
    )
    argv = [
        sys.executable, "-m", "genreops.serving.triton.replicas",
        "--count", str(settings.triton_replicas - 1),
    ]  # fmt: skip
    return start_process(
        "the Triton replicas",
        argv,
        ready=lambda: stack.healthy("triton-replicas"),
        url=stack.endpoints.url("triton-replicas"),
        log_path=stack.log_file("triton-replicas"),
        env=env,
        timeout=limit,
    )


def start_drift_ui(stack: Stack, limit: float) -> subprocess.Popen[bytes]:
    stack.drift_workspace.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, DO_NOT_TRACK="true")
    argv = [
        venv_tool("evidently"),
        "ui",
        "--workspace", str(stack.drift_workspace),
        "--host", HOST,
        "--port", str(stack.settings.drift_ui_port),
    ]  # fmt: skip
    return start_process(
        "the Evidently UI",
        argv,
        ready=lambda: http_answers(stack.endpoints.drift_ui + "/"),
        url=stack.endpoints.drift_ui,
        log_path=stack.log_file("drift-ui"),
        env=env,
        timeout=limit,
    )


def start_monitor(stack: Stack, limit: float) -> subprocess.Popen[bytes]:
    """genreops' monitor service: live-quality gauges and the alert receiver."""
    env = dict(os.environ)
    env.update(stack_environment(stack.settings))  # the stack's monitoring store
    env.update(PYTHONUNBUFFERED="1")
    argv = [
        sys.executable, "-m", "genreops.app.cli", "monitor",
        "--host", HOST, "--port", str(stack.settings.monitor_port),
    ]  # fmt: skip
    return start_process(
        "the monitor service",
        argv,
        ready=lambda: http_answers(stack.endpoints.monitor + "/healthz", expect="{"),
        url=stack.endpoints.monitor,
        log_path=stack.log_file("monitor"),
        env=env,
        timeout=limit,
    )


def alertmanager_missing() -> str | None:
    from genreops.platform.observability import ObservabilityError, find_alertmanager

    try:
        find_alertmanager()
    except ObservabilityError as error:
        return str(error)
    return None


def start_alertmanager(stack: Stack, limit: float) -> subprocess.Popen[bytes]:
    """Alertmanager delivering every alert to the monitor service (config in ``<home>``)."""
    from genreops.platform import observability

    base = stack.home / "alertmanager"
    base.mkdir(parents=True, exist_ok=True)
    config = base / "alertmanager.yml"
    config.write_text(observability.render_alertmanager_config(f"{stack.endpoints.monitor}/alerts"))
    return observability.start_alertmanager(
        config,
        base / "data",
        port=stack.settings.alertmanager_port,
        host=HOST,
        log_path=stack.log_file("alertmanager"),
        timeout=limit,
    )


# --- Prometheus ---------------------------------------------------------------------------


def prometheus_missing() -> str | None:
    from genreops.platform.observability import ObservabilityError, find_prometheus

    try:
        find_prometheus()
    except ObservabilityError as error:
        return str(error)
    return None


def start_prometheus(stack: Stack, limit: float) -> subprocess.Popen[bytes]:
    """Prometheus scraping itself, the stack's Triton and monitor, with the project's alert
    rules, sending firing alerts to the stack's Alertmanager.

    The config is rendered for the stack's ports into ``<home>/prometheus`` (data there too),
    through genreops.platform.observability, which also renders configs/prometheus/prometheus.yml.
    """
    from genreops.platform import observability

    base = stack.home / "prometheus"
    base.mkdir(parents=True, exist_ok=True)
    settings = stack.settings
    targets = {
        observability.JOB_PROMETHEUS: [f"{HOST}:{settings.prometheus_port}"],
        # every replica: the dashboards sum their counters
        observability.JOB_TRITON: [
            f"{HOST}:{settings_ports(settings, replica).metrics}"
            for replica in range(settings.triton_replicas)
        ],
        observability.JOB_MONITOR: [f"{HOST}:{settings.monitor_port}"],
        # workers, tasks, memory of the extraction cluster (none when the user brings theirs)
        observability.JOB_DASK: (
            [] if external_dask(settings) else [f"{HOST}:{settings.dask_dashboard_port}"]
        ),
    }
    rules = None
    if observability.ALERT_RULES.is_file():  # shipped in the package (genreops.configs)
        pending = settings.alert_pending_seconds
        (base / "alerts.yml").write_text(
            observability.render_alert_rules(None if pending is None else f"{pending:g}s")
        )
        rules = "alerts.yml"
    config = base / "prometheus.yml"
    config.write_text(
        observability.render_prometheus_config(
            targets, rules_path=rules, alertmanagers=[f"{HOST}:{settings.alertmanager_port}"]
        )
    )
    return observability.start_prometheus(
        config,
        base / "data",
        port=stack.settings.prometheus_port,
        host=HOST,
        log_path=stack.log_file("prometheus"),
        timeout=limit,
    )


# --- helpers ------------------------------------------------------------------------------


def venv_tool(name: str) -> str:
    """A console script installed next to this Python (the project's venv)."""
    path = Path(sys.executable).with_name(name)
    if not path.is_file():
        found = shutil.which(name)
        if found is None:
            raise StackError(
                f"`{name}` is not installed next to {sys.executable}: run `make setup`"
            )
        return found
    return str(path)
