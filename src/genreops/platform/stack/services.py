"""What runs where: the services in start order, their ports and endpoints, the env file.

Pure functions of the settings; nothing here starts, probes or stops a process.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from genreops.core.errors import GenreopsError
from genreops.core.settings import Settings
from genreops.platform import s3server
from genreops.serving.triton.server import TritonPorts, settings_ports

HOST = "127.0.0.1"
SERVICES = (
    "s3",
    "mlflow",
    "prefect",
    "dask-scheduler",
    "dask-workers",
    "deployments",
    "triton",
    "triton-replicas",
    "monitor",
    "alertmanager",
    "prometheus",
    "drift-ui",
)
# What must run before a service can start (``--only`` pulls these in).
DEPENDENCIES: dict[str, tuple[str, ...]] = {
    "mlflow": ("s3",),
    "dask-workers": ("dask-scheduler",),
    "deployments": ("prefect", "dask-workers"),  # extraction runs on the stack's cluster
    "alertmanager": ("monitor",),  # its one receiver
    "triton-replicas": ("triton",),  # more servers of the same repository
}
TITLES = {
    "s3": "S3 (s3rver)",
    "mlflow": "MLflow",
    "prefect": "Prefect server",
    "dask-scheduler": "Dask scheduler",
    "dask-workers": "Dask workers",
    "deployments": "Prefect deployments",
    "triton": "Triton",
    "triton-replicas": "Triton replicas",
    "monitor": "Monitor (quality gauges, alert receiver)",
    "alertmanager": "Alertmanager",
    "prometheus": "Prometheus",
    "drift-ui": "Evidently UI",
}
TIMEOUTS = {  # seconds to get healthy on a busy 2-core machine
    "s3": 60.0,
    "mlflow": 240.0,
    "prefect": 240.0,
    "dask-scheduler": 60.0,
    "dask-workers": 120.0,
    "deployments": 240.0,
    "triton": 300.0,
    "triton-replicas": 600.0,  # one after the other
    "monitor": 60.0,
    "alertmanager": 60.0,
    "prometheus": 60.0,
    "drift-ui": 120.0,
}
DEPLOYMENT_TAG = "genreops"  # carried by every deployment of flows/deployments.py
# a worker that has not polled for this long is not serving (Prefect's foreman uses 60 s)
POLL_STALE_SECONDS = 60.0
STOP_TIMEOUT = 30.0

Event = Callable[[str, str, str], None]  # (service, state, detail)


class StackError(GenreopsError):
    """The stack cannot be started, checked or stopped as asked."""


# --- what runs where ----------------------------------------------------------------------


@dataclass(frozen=True)
class Port:
    role: str
    number: int
    setting: str  # the environment variable that moves it

    def describe(self, service: str) -> str:
        role = f" {self.role}" if self.role != "http" else ""
        return f"port {self.number} ({TITLES.get(service, service)}{role}, set {self.setting})"


@dataclass(frozen=True)
class Endpoints:
    """Where each service of the stack answers, from the settings."""

    home: Path
    s3: str
    mlflow: str
    prefect: str
    dask_scheduler: str  # tcp://host:port, what GENREOPS_DASK_ADDRESS takes
    dask_dashboard: str
    triton_http: str
    triton_grpc: str  # host:port, the form tritonclient.grpc and GENREOPS_TRITON_URL take
    triton_metrics: str
    triton_replicas: tuple[TritonPorts, ...]  # replicas 1.. (GENREOPS_TRITON_REPLICAS - 1)
    monitor: str
    alertmanager: str
    prometheus: str
    drift_ui: str

    @property
    def prefect_api(self) -> str:
        return f"{self.prefect}/api"

    @classmethod
    def from_settings(cls, settings: Settings) -> Endpoints:
        def url(port: int) -> str:
            return f"http://{HOST}:{port}"

        return cls(
            home=settings.home.expanduser().resolve(),
            s3=url(settings.s3_port),
            mlflow=url(settings.mlflow_port),
            prefect=url(settings.prefect_port),
            dask_scheduler=f"tcp://{HOST}:{settings.dask_scheduler_port}",
            dask_dashboard=url(settings.dask_dashboard_port),
            triton_http=url(settings.triton_http_port),
            triton_grpc=f"{HOST}:{settings.triton_grpc_port}",
            triton_metrics=f"{url(settings.triton_metrics_port)}/metrics",
            triton_replicas=tuple(
                settings_ports(settings, i) for i in range(1, settings.triton_replicas)
            ),
            monitor=url(settings.monitor_port),
            alertmanager=url(settings.alertmanager_port),
            prometheus=url(settings.prometheus_port),
            drift_ui=url(settings.drift_ui_port),
        )

    def url(self, service: str) -> str:
        """What ``status`` shows for a service (its UI or API)."""
        return {
            "s3": self.s3,
            "mlflow": self.mlflow,
            "prefect": self.prefect,
            "dask-scheduler": f"{self.dask_dashboard}/status",
            "dask-workers": f"{self.dask_dashboard}/workers",
            "deployments": f"{self.prefect}/deployments",
            "triton": self.triton_http,
            "triton-replicas": self.triton_replicas[0].http_url if self.triton_replicas else "",
            "monitor": self.monitor,
            "alertmanager": self.alertmanager,
            "prometheus": self.prometheus,
            "drift-ui": self.drift_ui,
        }[service]


def service_ports(settings: Settings) -> dict[str, list[Port]]:
    """The ports each service binds (the deployments process binds none)."""
    return {
        "s3": [Port("http", settings.s3_port, "GENREOPS_S3_PORT")],
        "mlflow": [Port("http", settings.mlflow_port, "GENREOPS_MLFLOW_PORT")],
        "prefect": [Port("http", settings.prefect_port, "GENREOPS_PREFECT_PORT")],
        "dask-scheduler": [
            Port("scheduler", settings.dask_scheduler_port, "GENREOPS_DASK_SCHEDULER_PORT"),
            Port("dashboard", settings.dask_dashboard_port, "GENREOPS_DASK_DASHBOARD_PORT"),
        ],
        "dask-workers": [],  # each worker and nanny on a port of the kernel's choosing
        "deployments": [],
        "triton": [
            Port("http", settings.triton_http_port, "GENREOPS_TRITON_HTTP_PORT"),
            Port("gRPC", settings.triton_grpc_port, "GENREOPS_TRITON_GRPC_PORT"),
            Port("metrics", settings.triton_metrics_port, "GENREOPS_TRITON_METRICS_PORT"),
        ],
        "triton-replicas": [
            Port(f"replica {i} {role}", number, f"GENREOPS_TRITON_{role.upper()}_PORT + {10 * i}")
            for i, ports in enumerate(Endpoints.from_settings(settings).triton_replicas, 1)
            for role, number in (
                ("http", ports.http),
                ("gRPC", ports.grpc),
                ("metrics", ports.metrics),
            )
        ],
        "monitor": [Port("http", settings.monitor_port, "GENREOPS_MONITOR_PORT")],
        "alertmanager": [Port("http", settings.alertmanager_port, "GENREOPS_ALERTMANAGER_PORT")],
        "prometheus": [Port("http", settings.prometheus_port, "GENREOPS_PROMETHEUS_PORT")],
        "drift-ui": [Port("http", settings.drift_ui_port, "GENREOPS_DRIFT_UI_PORT")],
    }


def select_services(only: Iterable[str] | None) -> list[str]:
    """The services to start, in start order, with what they depend on."""
    if only is None:
        return list(SERVICES)
    wanted = {name.strip() for name in only if name.strip()}
    unknown = sorted(wanted - set(SERVICES))
    if unknown:
        raise StackError(f"unknown service {', '.join(unknown)} (known: {', '.join(SERVICES)})")
    pending = list(wanted)
    while pending:
        for dependency in DEPENDENCIES.get(pending.pop(), ()):
            if dependency not in wanted:
                wanted.add(dependency)
                pending.append(dependency)
    return [name for name in SERVICES if name in wanted]


def duplicate_ports(ports: Mapping[str, Sequence[Port]]) -> list[str]:
    """Two services configured on one port: a settings mistake, found before anything starts."""
    seen: dict[int, str] = {}
    problems = []
    for service, service_ports_ in ports.items():
        for port in service_ports_:
            here = port.describe(service)
            if port.number in seen:
                problems.append(f"{seen[port.number]} and {here} are the same port")
            else:
                seen[port.number] = here
    return problems


def busy_ports(
    services: Iterable[str],
    ports: Mapping[str, Sequence[Port]],
    in_use: Callable[[int], bool],
) -> list[str]:
    """Ports of services about to start that something else already holds."""
    return [
        f"{port.describe(service)} is already in use by another process"
        for service in services
        for port in ports[service]
        if in_use(port.number)
    ]


def stack_environment(settings: Settings, running: Iterable[str] | None = None) -> dict[str, str]:
    """The variables that point a process at the stack (``running``: only those services').

    S3 is the embedded server with its fixed public keys; MLflow clients need no S3 keys (the
    server proxies artifacts), the ``AWS_*`` lines are for tools like the aws CLI or boto3.
    """
    up = set(SERVICES if running is None else running)
    ends = Endpoints.from_settings(settings)
    env = {
        "GENREOPS_HOME": str(ends.home),
        "GENREOPS_DATABASE_URL": settings.monitoring_db_url,
    }
    if "s3" in up:
        env.update(
            GENREOPS_S3_ENDPOINT_URL=ends.s3,
            GENREOPS_S3_ACCESS_KEY_ID=s3server.ACCESS_KEY_ID,
            GENREOPS_S3_SECRET_ACCESS_KEY=s3server.SECRET_ACCESS_KEY,
            GENREOPS_S3_REGION=settings.s3_region,
            AWS_ACCESS_KEY_ID=s3server.ACCESS_KEY_ID,
            AWS_SECRET_ACCESS_KEY=s3server.SECRET_ACCESS_KEY,
            AWS_DEFAULT_REGION=settings.s3_region,
            AWS_ENDPOINT_URL_S3=ends.s3,
        )
    if "mlflow" in up:
        env["GENREOPS_MLFLOW_TRACKING_URI"] = ends.mlflow
    if "prefect" in up:
        env["PREFECT_API_URL"] = ends.prefect_api
    external = external_dask(settings)
    if external:
        env["GENREOPS_DASK_ADDRESS"] = external
    elif "dask-scheduler" in up:
        env["GENREOPS_DASK_ADDRESS"] = ends.dask_scheduler
    if "triton" in up:
        # clients spread requests over every replica (publish finds them by their records)
        replicas = [ends.triton_grpc]
        if "triton-replicas" in up:
            replicas += [ports.grpc_url for ports in ends.triton_replicas]
        env["GENREOPS_TRITON_URL"] = ",".join(replicas)
    return env


def external_dask(settings: Settings) -> str | None:
    """The user's own Dask scheduler (GENREOPS_DASK_ADDRESS, not the stack's): the stack then
    starts no scheduler or workers and points extraction there."""
    ours = Endpoints.from_settings(settings).dask_scheduler
    address = settings.dask_address
    return address if address and address.rstrip("/") != ours else None


def render_env_file(env: Mapping[str, str]) -> str:
    """``export NAME=value`` lines a POSIX shell can ``source`` (and python-dotenv reads)."""
    lines = [
        "# Written by `genreops stack up`; removed by `genreops stack down`.",
        "# genreops commands read it by themselves; `source` it for other tools.",
    ]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in env.items()]
    return "\n".join(lines) + "\n"
