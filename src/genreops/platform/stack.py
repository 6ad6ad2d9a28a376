"""The native local stack: every server the pipeline needs, as plain processes on 127.0.0.1.

``genreops stack up|down|status``. Services, in start order (``down`` goes backwards):

============  ==============================================================================
s3            the embedded S3 server (s3rver), buckets kept in ``<home>/s3`` across restarts
mlflow        MLflow tracking server: SQLite under home (or a database URL), artifacts on S3
prefect       Prefect server: SQLite under home (or ``GENREOPS_PREFECT_DATABASE_URL``)
deployments   ``python -m genreops.flows.deployments``: serves every flow as a Prefect deployment
triton        Triton on the published repository, explicit model control (``genreops publish``
              hot-loads into it); with nothing published it runs with no model loaded
prometheus    Debian's prometheus scraping Triton; skipped (with how to get it) when absent
drift-ui      ``evidently ui`` on ``<home>/drift/workspace``
============  ==============================================================================

Each service runs in its own process group (``down`` stops its workers too) with its output in
``<home>/logs/<service>.log``; what the stack started is recorded in ``<home>/run/<service>.json``
(pid and process start time, so a reused pid is never signalled). Triton's record is the
``run/triton.json`` of ``genreops serve``, so both commands see the same server; a server that
``genreops serve`` started is shown and used but never stopped by the stack.

``up`` also writes ``<home>/stack.env`` (``export`` lines for a shell to ``source``); the
settings read it below every explicit setting, so commands find the running stack by
themselves. ``down`` removes it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from genreops.core.errors import GenreopsError
from genreops.core.files import atomic_write
from genreops.core.pidfiles import (
    STACK_OWNER,
    PidFileError,
    PidRecord,
    load_record,
    record_alive,
    write_record,
)
from genreops.core.processes import (
    children,
    http_answers,
    is_zombie,
    log_tail,
    port_in_use,
    process_status,
    session_leaders,
    start_process,
    start_ticks,
    wait_gone,
)
from genreops.core.settings import STACK_ENV_FILE, Settings
from genreops.platform import s3server

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
SERVICES = ("s3", "mlflow", "prefect", "deployments", "triton", "prometheus", "drift-ui")
# What must run before a service can start (``--only`` pulls these in).
DEPENDENCIES: dict[str, tuple[str, ...]] = {"mlflow": ("s3",), "deployments": ("prefect",)}
TITLES = {
    "s3": "S3 (s3rver)",
    "mlflow": "MLflow",
    "prefect": "Prefect server",
    "deployments": "Prefect deployments",
    "triton": "Triton",
    "prometheus": "Prometheus",
    "drift-ui": "Evidently UI",
}
TIMEOUTS = {  # seconds to get healthy on a busy 2-core machine
    "s3": 60.0,
    "mlflow": 240.0,
    "prefect": 240.0,
    "deployments": 240.0,
    "triton": 300.0,
    "prometheus": 60.0,
    "drift-ui": 120.0,
}
DEPLOYMENT_TAG = "genreops"  # carried by every deployment of flows/deployments.py
RUNNER_POLL_SECONDS = 2
# a runner that has not polled for this long is not serving (Prefect's foreman uses 60 s)
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
    triton_http: str
    triton_grpc: str  # host:port, the form tritonclient.grpc and GENREOPS_TRITON_URL take
    triton_metrics: str
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
            triton_http=url(settings.triton_http_port),
            triton_grpc=f"{HOST}:{settings.triton_grpc_port}",
            triton_metrics=f"{url(settings.triton_metrics_port)}/metrics",
            prometheus=url(settings.prometheus_port),
            drift_ui=url(settings.drift_ui_port),
        )

    def url(self, service: str) -> str:
        """What ``status`` shows for a service (its UI or API)."""
        return {
            "s3": self.s3,
            "mlflow": self.mlflow,
            "prefect": self.prefect,
            "deployments": f"{self.prefect}/deployments",
            "triton": self.triton_http,
            "prometheus": self.prometheus,
            "drift-ui": self.drift_ui,
        }[service]


def service_ports(settings: Settings) -> dict[str, list[Port]]:
    """The ports each service binds (the deployments process binds none)."""
    return {
        "s3": [Port("http", settings.s3_port, "GENREOPS_S3_PORT")],
        "mlflow": [Port("http", settings.mlflow_port, "GENREOPS_MLFLOW_PORT")],
        "prefect": [Port("http", settings.prefect_port, "GENREOPS_PREFECT_PORT")],
        "deployments": [],
        "triton": [
            Port("http", settings.triton_http_port, "GENREOPS_TRITON_HTTP_PORT"),
            Port("gRPC", settings.triton_grpc_port, "GENREOPS_TRITON_GRPC_PORT"),
            Port("metrics", settings.triton_metrics_port, "GENREOPS_TRITON_METRICS_PORT"),
        ],
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
    if "triton" in up:
        env["GENREOPS_TRITON_URL"] = ends.triton_grpc
    return env


def render_env_file(env: Mapping[str, str]) -> str:
    """``export NAME=value`` lines a POSIX shell can ``source`` (and python-dotenv reads)."""
    lines = [
        "# Written by `genreops stack up`; removed by `genreops stack down`.",
        "# genreops commands read it by themselves; `source` it for other tools.",
    ]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in env.items()]
    return "\n".join(lines) + "\n"


# --- pid records --------------------------------------------------------------------------


def read_record(path: Path, service: str) -> PidRecord | None:
    """The record in ``path``; None without one. A damaged file counts as stale: removed."""
    try:
        return load_record(path, service)
    except PidFileError as error:
        logger.warning("removing %s", error)
        path.unlink(missing_ok=True)
        return None


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal the process group ``pid`` leads (every service leads its own)."""
    with contextlib.suppress(ProcessLookupError):
        try:
            os.killpg(pid, sig)
        except PermissionError as error:
            raise StackError(f"not allowed to stop pid {pid}: {error}") from error


def kill_orphans(record: PidRecord) -> None:
    """SIGKILL workers left in a service's process group once its leader has exited.

    Safe although the leader is gone: Linux does not hand out a number still in use as a
    process group id, so while no *other* process has the leader's pid, the group can only hold
    that service's own children.
    """
    if process_status(record.pid) is None or (
        is_zombie(record.pid) and start_ticks(record.pid) == record.started
    ):
        _signal_group(record.pid, signal.SIGKILL)


def _session_children() -> set[int]:
    """Our child processes that lead their own session (how every service is started)."""
    return session_leaders(children(os.getpid()))


def stop_record(record: PidRecord, timeout: float = STOP_TIMEOUT) -> bool:
    """SIGTERM the recorded process group, SIGKILL after ``timeout``; False if it was gone."""
    if not record_alive(record):
        kill_orphans(record)
        return False
    _signal_group(record.pid, signal.SIGTERM)
    if not wait_gone(record.pid, timeout):
        logger.warning("%s (pid %d) ignored SIGTERM; killing it", record.service, record.pid)
        _signal_group(record.pid, signal.SIGKILL)
        if not wait_gone(record.pid, 10.0):
            raise StackError(f"{record.service} (pid {record.pid}) did not stop")
    kill_orphans(record)  # workers whose leader exited first
    return True


# --- health -------------------------------------------------------------------------------


def _post_json(url: str, payload: Mapping[str, Any], timeout: float = 5.0) -> Any:
    request = urllib.request.Request(  # noqa: S310 (http on loopback)
        url,
        data=json.dumps(payload).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=timeout) as response:
        return json.loads(response.read())


def _parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def served_deployments(api_url: str, since: dt.datetime) -> list[str]:
    """``flow/deployment`` names of our deployments that a runner polled after ``since``.

    A serving runner polls every few seconds and the server records it (``last_polled``), so
    this tells a live deployments process from deployments left in the database.
    """
    try:
        deployments = _post_json(
            f"{api_url.rstrip('/')}/deployments/filter",
            {"deployments": {"tags": {"all_": [DEPLOYMENT_TAG]}}},
        )
        flows = _post_json(f"{api_url.rstrip('/')}/flows/filter", {})
    except (OSError, ValueError, urllib.error.URLError):
        return []
    flow_names = {f["id"]: f["name"] for f in flows}
    names = []
    for deployment in deployments:
        polled = _parse_time(deployment.get("last_polled"))
        if polled is not None and polled >= since:
            flow = flow_names.get(deployment.get("flow_id"), "?")
            names.append(f"{flow}/{deployment['name']}")
    return sorted(names)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --- status -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceStatus:
    """One line of ``genreops stack status``."""

    service: str
    state: str  # running | unhealthy | stopped | skipped
    healthy: bool
    url: str
    pid: int | None = None
    owner: str | None = None
    detail: str = ""
    log_path: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- the stack ----------------------------------------------------------------------------


class Stack:
    """The native stack for one ``GENREOPS_HOME`` (all paths absolute)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.endpoints = Endpoints.from_settings(settings)
        self.home = self.endpoints.home
        self.run_dir = self.home / "run"
        self.log_dir = self.home / "logs"
        self.env_file = self.home / STACK_ENV_FILE
        self.ports = service_ports(settings)

    # paths
    def pid_file(self, service: str) -> Path:
        if service == "triton":  # shared with `genreops serve`
            from genreops.serving.triton.server import server_pid_file

            return server_pid_file(self.home)
        return self.run_dir / f"{service}.json"

    def log_file(self, service: str) -> Path:
        return self.log_dir / f"{service}.log"

    @property
    def drift_workspace(self) -> Path:
        return self.settings.drift_workspace

    # what this machine lacks
    def missing(self, service: str) -> str | None:
        """Why a service cannot run here (it is then skipped), or None."""
        if service == "prometheus":
            return _prometheus_missing()
        return None

    # health
    def healthy(self, service: str, record: PidRecord | None = None) -> bool:
        ends = self.endpoints
        if service == "s3":
            return http_answers(ends.s3 + "/")
        if service == "mlflow":
            return http_answers(ends.mlflow + "/health", expect="OK")
        if service == "prefect":
            return http_answers(ends.prefect_api + "/health", expect="true")
        if service == "deployments":
            return bool(self._served_since(record))
        if service == "triton":
            from genreops.serving.triton.server import is_ready

            return is_ready(ends.triton_http)
        if service == "prometheus":
            return http_answers(ends.prometheus + "/-/ready")
        if service == "drift-ui":
            return http_answers(ends.drift_ui + "/")
        raise StackError(f"unknown service {service}")

    def _served_since(self, record: PidRecord | None) -> list[str]:
        since = _utcnow() - dt.timedelta(seconds=POLL_STALE_SECONDS)
        launched = _parse_time((record.extra.get("launched") if record else None) or None)
        if launched is not None and launched > since:
            since = launched  # polls of an earlier runner do not count for this one
        return served_deployments(self.endpoints.prefect_api, since)

    def _detail(self, service: str, record: PidRecord | None) -> str:
        if service == "deployments":
            served = self._served_since(record)
            return f"{len(served)} deployments served" if served else "no runner polling yet"
        if service == "triton":
            return self._triton_detail()
        if service == "s3":
            return f"data in {self.home / 's3'}"
        if service == "drift-ui":
            return f"workspace {self.drift_workspace}"
        return ""

    def _triton_detail(self) -> str:
        from genreops.serving.publish import ENSEMBLE, read_history
        from genreops.serving.triton.server import model_ready

        repository = self.settings.repository
        current = read_history(repository)["current"] if repository.exists() else None
        if current is None:
            return "no model loaded: waiting for `genreops publish`"
        if model_ready(self.endpoints.triton_http, ENSEMBLE):
            return f"serving published version {current}"
        return f"version {current} published but {ENSEMBLE} not loaded"

    # records
    def record(self, service: str) -> PidRecord | None:
        return read_record(self.pid_file(service), service)

    def _clean_stale(self, service: str) -> PidRecord | None:
        """The live record of a service; a stale one is removed (and its orphans killed)."""
        record = self.record(service)
        if record is not None and not record_alive(record):
            logger.info("removing stale pid file of %s (pid %d is gone)", service, record.pid)
            kill_orphans(record)
            self.pid_file(service).unlink(missing_ok=True)
            return None
        return record

    def running_services(self) -> list[str]:
        return [s for s in SERVICES if (r := self.record(s)) is not None and record_alive(r)]

    # status
    def status(self) -> list[ServiceStatus]:
        rows = []
        for service in SERVICES:
            url = self.endpoints.url(service)
            record = self.record(service)
            log = str(self.log_file(service))
            if record is not None and record_alive(record):
                healthy = self.healthy(service, record)
                rows.append(
                    ServiceStatus(
                        service,
                        "running" if healthy else "unhealthy",
                        healthy,
                        url,
                        record.pid,
                        record.owner,
                        self._detail(service, record) if healthy else "not answering",
                        record.log_path or log,
                    )
                )
                continue
            missing = self.missing(service)
            if missing:
                rows.append(ServiceStatus(service, "skipped", False, url, detail=missing))
                continue
            notes = [f"stale pid file (pid {record.pid} is gone)"] if record else []
            notes += [
                f"{port.describe(service)} is held by another process"
                for port in self.ports[service]
                if port_in_use(HOST, port.number)
            ]
            rows.append(
                ServiceStatus(service, "stopped", False, url, detail="; ".join(notes), log_path=log)
            )
        return rows

    # up
    def up(
        self,
        only: Iterable[str] | None = None,
        timeout: float | None = None,
        on_event: Event | None = None,
    ) -> list[ServiceStatus]:
        """Start what is not running, in order, each healthy before the next; idempotent."""
        emit = on_event or (lambda service, state, detail: None)
        selected = select_services(only)
        problems = duplicate_ports(self.ports)
        if problems:
            raise StackError("the stack's ports clash: " + "; ".join(problems))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)

        to_start = []
        for service in selected:
            if self.missing(service) is None and self._clean_stale(service) is None:
                to_start.append(service)
        busy = busy_ports(to_start, self.ports, lambda port: port_in_use(HOST, port))
        if busy:
            raise StackError(
                "cannot start the stack: "
                + "; ".join(busy)
                + " (stop it, or move the service with the setting named)"
            )

        for service in selected:
            limit = timeout or TIMEOUTS[service]
            missing = self.missing(service)
            if missing:
                emit(service, "skipped", missing)
                continue
            record = self.record(service)
            try:
                if record is not None:
                    self._await_running(service, record, limit, emit)
                else:
                    self._start(service, limit, emit)
                if service == "s3":
                    self._ensure_buckets()
            except GenreopsError:
                emit(service, "failed", "see the error below")
                raise

        self.write_env_file()
        return self.status()

    def _await_running(self, service: str, record: PidRecord, limit: float, emit: Event) -> None:
        """A service already running: fine when healthy, waited for while it gets there."""
        by = "" if record.owner == STACK_OWNER else f", started by {record.owner}"
        if service == "triton":
            self._check_triton_ports(record)
        if self.healthy(service, record):
            emit(service, "running", f"already running (pid {record.pid}{by})")
            return
        emit(service, "waiting", f"pid {record.pid}{by} is running but not answering yet")
        deadline = time.monotonic() + limit
        while not self.healthy(service, record):
            if not record_alive(record):
                raise StackError(
                    f"{TITLES[service]} (pid {record.pid}) exited; log {record.log_path}:\n"
                    f"{log_tail(Path(record.log_path) if record.log_path else None)}"
                )
            if time.monotonic() > deadline:
                raise StackError(
                    f"{TITLES[service]} (pid {record.pid}) runs but is not healthy after "
                    f"{limit:.0f} s (`genreops stack down` and `up` restart it); "
                    f"log {record.log_path}:\n"
                    f"{log_tail(Path(record.log_path) if record.log_path else None)}"
                )
            time.sleep(0.5)
        emit(service, "running", f"healthy (pid {record.pid}{by})")

    def _check_triton_ports(self, record: PidRecord) -> None:
        """A Triton from `genreops serve` may listen elsewhere than the settings say."""
        s = self.settings
        wanted = {"http": s.triton_http_port, "grpc": s.triton_grpc_port}
        wanted["metrics"] = s.triton_metrics_port
        actual = record.extra.get("ports")
        if isinstance(actual, dict) and {k: actual.get(k) for k in wanted} != wanted:
            raise StackError(
                f"the running Triton (pid {record.pid}, started by {record.owner}) listens on "
                f"ports {actual}, not the stack's {wanted}: stop it (`genreops serve --stop`) "
                "or set GENREOPS_TRITON_HTTP_PORT/_GRPC_PORT/_METRICS_PORT to its ports"
            )

    def _start(self, service: str, limit: float, emit: Event) -> None:
        emit(service, "starting", self.endpoints.url(service))
        log = self.log_file(service)
        if log.exists():  # the previous run's log stays one start longer, as <service>.log.1
            log.replace(log.with_name(log.name + ".1"))
        began = time.monotonic()
        launched = _utcnow()
        starters: dict[str, Callable[[float], subprocess.Popen[bytes]]] = {
            "s3": self._start_s3,
            "mlflow": self._start_mlflow,
            "prefect": self._start_prefect,
            "deployments": lambda t: self._start_deployments(t, launched),
            "triton": self._start_triton,
            "prometheus": self._start_prometheus,
            "drift-ui": self._start_drift_ui,
        }
        before = _session_children()
        try:
            process = starters[service](limit)
        except GenreopsError as error:
            raise StackError(f"{TITLES[service]} failed to start: {error}") from error
        except BaseException:  # Ctrl-C while waiting: leave no unrecorded service behind
            for pid in _session_children() - before:
                _signal_group(pid, signal.SIGTERM)
            raise
        if service != "triton":  # _start_triton writes the record `genreops serve` shares
            ticks = start_ticks(process.pid)
            if ticks is None:
                raise StackError(f"{TITLES[service]} (pid {process.pid}) exited right away")
            write_record(
                self.pid_file(service),
                PidRecord(
                    service,
                    process.pid,
                    ticks,
                    STACK_OWNER,
                    self.endpoints.url(service),
                    str(self.log_file(service)),
                    {"launched": launched.isoformat()},
                ),
            )
        emit(service, "ready", f"pid {process.pid}, {time.monotonic() - began:.1f} s")

    # starters (each returns a healthy process leading its own process group)
    def _start_s3(self, limit: float) -> subprocess.Popen[bytes]:
        return s3server.start_s3_server(
            self.home / "s3",
            HOST,
            self.settings.s3_port,
            self.log_file("s3"),
            timeout=limit,
            detach=True,
            tools_dir=s3server.server_dir(self.settings),
        )

    def _s3_config(self) -> Any:
        return s3server.s3_config(HOST, self.settings.s3_port)

    def _ensure_buckets(self) -> None:
        from genreops.data.storage import ensure_bucket

        s = self.settings
        for bucket in dict.fromkeys((s.raw_bucket, s.features_bucket, s.artifacts_bucket)):
            ensure_bucket(f"s3://{bucket}", s3=self._s3_config())

    def _start_mlflow(self, limit: float) -> subprocess.Popen[bytes]:
        from genreops.platform.mlflow_server import start_mlflow_server

        backend = self.settings.mlflow_backend_store_uri or f"sqlite:///{self.home / 'mlflow.db'}"
        return start_mlflow_server(
            backend,
            f"s3://{self.settings.artifacts_bucket}/mlflow",
            host=HOST,
            port=self.settings.mlflow_port,
            s3=self._s3_config(),
            log_path=self.log_file("mlflow"),
            timeout=limit,
        )

    def _prefect_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            PREFECT_HOME=str(self.home / "prefect"),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            DO_NOT_TRACK="true",
        )
        return env

    def _start_prefect(self, limit: float) -> subprocess.Popen[bytes]:
        env = self._prefect_env()
        env.pop("PREFECT_API_URL", None)  # the server is the API; never a client of another
        database = self.settings.prefect_database_url or env.get(
            "PREFECT_SERVER_DATABASE_CONNECTION_URL"
        )
        if not database:
            (self.home / "prefect").mkdir(parents=True, exist_ok=True)
            database = f"sqlite+aiosqlite:///{self.home / 'prefect' / 'prefect.db'}"
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database
        # the UI asks this API; left unset it would ask the default port, not ours
        env["PREFECT_UI_API_URL"] = self.endpoints.prefect_api
        argv = [
            _venv_tool("prefect"),
            "server", "start",
            "--host", HOST,
            "--port", str(self.settings.prefect_port),
            "--analytics-off",
        ]  # fmt: skip
        return start_process(
            "the Prefect server",
            argv,
            ready=lambda: http_answers(self.endpoints.prefect_api + "/health", expect="true"),
            url=self.endpoints.prefect,
            log_path=self.log_file("prefect"),
            env=env,
            timeout=limit,
        )

    def _start_deployments(self, limit: float, launched: dt.datetime) -> subprocess.Popen[bytes]:
        env = self._prefect_env()
        env.update(stack_environment(self.settings))  # every endpoint, whatever runs yet
        env.update(
            PREFECT_RUNNER_POLL_FREQUENCY=str(RUNNER_POLL_SECONDS),
            PYTHONUNBUFFERED="1",
            MLFLOW_DISABLE_TELEMETRY="true",
        )
        since = launched - dt.timedelta(seconds=1)
        return start_process(
            "the Prefect deployments",
            [sys.executable, "-m", "genreops.flows.deployments"],
            ready=lambda: bool(served_deployments(self.endpoints.prefect_api, since)),
            url=self.endpoints.url("deployments"),
            log_path=self.log_file("deployments"),
            env=env,
            timeout=limit,
        )

    def _start_triton(self, limit: float) -> subprocess.Popen[bytes]:
        from genreops.serving.publish import MODELS, read_history
        from genreops.serving.triton.server import TritonPorts, start_triton, write_pid_file

        s = self.settings
        ports = TritonPorts(s.triton_http_port, s.triton_grpc_port, s.triton_metrics_port)
        repository = s.repository
        repository.mkdir(parents=True, exist_ok=True)
        published = read_history(repository)["current"]
        log_path = self.log_file("triton")
        # the Python stubs read settings too: absolute home, as `genreops serve` does
        with _environ(GENREOPS_HOME=str(self.home)):
            process = start_triton(
                repository,
                state_dir=self.home,
                ports=ports,
                log_path=log_path,
                load_models=list(MODELS) if published else [],
                timeout=limit,
            )
        write_pid_file(
            self.pid_file("triton"),
            process,
            ports,
            repository,
            log_path=log_path,
            owner=STACK_OWNER,
            extra={"launched": _utcnow().isoformat()},
        )
        return process

    def _start_prometheus(self, limit: float) -> subprocess.Popen[bytes]:
        return _start_prometheus(self, limit)

    def _start_drift_ui(self, limit: float) -> subprocess.Popen[bytes]:
        self.drift_workspace.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, DO_NOT_TRACK="true")
        argv = [
            _venv_tool("evidently"),
            "ui",
            "--workspace", str(self.drift_workspace),
            "--host", HOST,
            "--port", str(self.settings.drift_ui_port),
        ]  # fmt: skip
        return start_process(
            "the Evidently UI",
            argv,
            ready=lambda: http_answers(self.endpoints.drift_ui + "/"),
            url=self.endpoints.drift_ui,
            log_path=self.log_file("drift-ui"),
            env=env,
            timeout=limit,
        )

    # env file
    def write_env_file(self) -> Path:
        env = stack_environment(self.settings, self.running_services())
        atomic_write(self.env_file, render_env_file(env))
        return self.env_file

    # down
    def down(self, on_event: Event | None = None) -> list[str]:
        """Stop, in reverse order, what the stack started; returns the services stopped."""
        emit = on_event or (lambda service, state, detail: None)
        stopped = []
        for service in reversed(SERVICES):
            path = self.pid_file(service)
            record = read_record(path, service)
            if record is None:
                continue
            if record.owner != STACK_OWNER:
                if record_alive(record):
                    emit(service, "left running", f"pid {record.pid}, started by {record.owner}")
                    continue
                path.unlink(missing_ok=True)
                continue
            emit(service, "stopping", f"pid {record.pid}")
            timeout = 60.0 if service == "triton" else STOP_TIMEOUT  # Triton drains requests
            if stop_record(record, timeout=timeout):
                stopped.append(service)
                emit(service, "stopped", f"pid {record.pid}")
            else:
                emit(service, "stopped", f"pid {record.pid} was already gone")
            path.unlink(missing_ok=True)
        self.env_file.unlink(missing_ok=True)
        return stopped


# --- Prometheus ---------------------------------------------------------------------------


def _prometheus_missing() -> str | None:
    from genreops.platform.observability import ObservabilityError, find_prometheus

    try:
        find_prometheus()
    except ObservabilityError as error:
        return str(error)
    return None


def _start_prometheus(stack: Stack, limit: float) -> subprocess.Popen[bytes]:
    """Prometheus scraping itself and the stack's Triton, with the project's alert rules.

    The config is rendered for the stack's ports into ``<home>/prometheus`` (data there too),
    through genreops.platform.observability, which also renders configs/prometheus/prometheus.yml.
    """
    from genreops.platform import observability

    base = stack.home / "prometheus"
    base.mkdir(parents=True, exist_ok=True)
    targets = {
        observability.JOB_PROMETHEUS: [f"{HOST}:{stack.settings.prometheus_port}"],
        observability.JOB_TRITON: [f"{HOST}:{stack.settings.triton_metrics_port}"],
    }
    rules = None
    if observability.ALERT_RULES.is_file():  # shipped in the package (genreops.configs)
        shutil.copyfile(observability.ALERT_RULES, base / "alerts.yml")
        rules = "alerts.yml"
    config = base / "prometheus.yml"
    config.write_text(observability.render_prometheus_config(targets, rules_path=rules))
    return observability.start_prometheus(
        config,
        base / "data",
        port=stack.settings.prometheus_port,
        host=HOST,
        log_path=stack.log_file("prometheus"),
        timeout=limit,
    )


# --- helpers ------------------------------------------------------------------------------


def _venv_tool(name: str) -> str:
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


@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    """Set environment variables for a child started inside the block, then restore them."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def up(
    settings: Settings,
    only: Iterable[str] | None = None,
    timeout: float | None = None,
    on_event: Event | None = None,
) -> list[ServiceStatus]:
    return Stack(settings).up(only, timeout, on_event)


def down(settings: Settings, on_event: Event | None = None) -> list[str]:
    return Stack(settings).down(on_event)


def status(settings: Settings) -> list[ServiceStatus]:
    return Stack(settings).status()
