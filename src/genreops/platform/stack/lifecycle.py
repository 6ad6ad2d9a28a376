"""The stack for one home: status, ``up`` (each service once what it needs is healthy) and
``down``."""

from __future__ import annotations

import datetime as dt
import logging
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from genreops.core.errors import GenreopsError
from genreops.core.files import atomic_write
from genreops.core.pidfiles import (
    STACK_OWNER,
    PidRecord,
    kill_orphans,
    record_alive,
    write_record,
)
from genreops.core.processes import http_answers, log_tail, port_in_use, start_ticks
from genreops.core.settings import STACK_ENV_FILE, Settings
from genreops.platform.stack import starters
from genreops.platform.stack.prefect_api import prefect_healthy, served_deployments
from genreops.platform.stack.records import (
    launched_at,
    read_record,
    session_children,
    signal_group,
    stop_record,
    utcnow,
)
from genreops.platform.stack.services import (
    DEPENDENCIES,
    HOST,
    POLL_STALE_SECONDS,
    SERVICES,
    STOP_TIMEOUT,
    TIMEOUTS,
    TITLES,
    Endpoints,
    Event,
    StackError,
    busy_ports,
    duplicate_ports,
    external_dask,
    render_env_file,
    select_services,
    service_ports,
    stack_environment,
)

logger = logging.getLogger(__name__)


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
            return starters.prometheus_missing()
        if service == "alertmanager":
            return starters.alertmanager_missing()
        if service == "triton-replicas" and self.settings.triton_replicas == 1:
            return "one Triton server (GENREOPS_TRITON_REPLICAS=1)"
        if service in ("dask-scheduler", "dask-workers"):
            external = external_dask(self.settings)
            if external:
                return f"extraction uses the cluster at GENREOPS_DASK_ADDRESS={external}"
        return None

    # health
    def healthy(self, service: str, record: PidRecord | None = None) -> bool:
        ends = self.endpoints
        if service == "s3":
            return http_answers(ends.s3 + "/")
        if service == "mlflow":
            return http_answers(ends.mlflow + "/health", expect="OK")
        if service == "prefect":
            return prefect_healthy(ends.prefect_api)
        if service == "dask-scheduler":
            return http_answers(ends.dask_dashboard + "/health", expect="ok")
        if service == "dask-workers":
            return (
                starters.dask_workers_connected(ends.dask_dashboard) >= self.settings.dask_workers
            )
        if service == "deployments":
            return bool(self._served_since(record))
        if service == "triton":
            from genreops.serving.triton.control import is_ready

            return is_ready(ends.triton_http)
        if service == "triton-replicas":
            return self._replicas_ready() == len(ends.triton_replicas)
        if service == "monitor":
            return http_answers(ends.monitor + "/healthz", expect="{")
        if service == "alertmanager":
            return http_answers(ends.alertmanager + "/-/ready", expect="OK")
        if service == "prometheus":
            return http_answers(ends.prometheus + "/-/ready")
        if service == "drift-ui":
            return http_answers(ends.drift_ui + "/")
        raise StackError(f"unknown service {service}")

    def _replicas_ready(self) -> int:
        """Replicas that answer as ready *and* have their record written: the keeper writes
        it just after the server turns ready, and publishers find replicas by their records."""
        from genreops.serving.triton.control import is_ready
        from genreops.serving.triton.server import TritonServerError, read_pid_file, server_pid_file

        ready = 0
        for replica, ports in enumerate(self.endpoints.triton_replicas, start=1):
            try:
                record = read_pid_file(server_pid_file(self.home, replica))
            except TritonServerError:
                continue  # being written
            ready += record is not None and record.ports == ports and is_ready(ports.http_url)
        return ready

    def _served_since(self, record: PidRecord | None) -> list[str]:
        since = utcnow() - dt.timedelta(seconds=POLL_STALE_SECONDS)
        launched = launched_at(record)
        if launched is not None and launched > since:
            since = launched  # polls of an earlier worker do not count for this one
        return served_deployments(self.endpoints.prefect_api, since)

    def _detail(self, service: str, record: PidRecord | None) -> str:
        if service == "deployments":
            served = self._served_since(record)
            if not served:
                return "no worker polling yet"
            return f"{len(served)} deployments served (work pool {self.settings.work_pool})"
        if service == "triton":
            return self._triton_detail()
        if service == "triton-replicas":
            ready = self._replicas_ready()
            return (
                f"{ready} of {len(self.endpoints.triton_replicas)} more servers ready "
                "(GENREOPS_TRITON_REPLICAS, ports + 10 each)"
            )
        if service == "s3":
            return f"data in {self.home / 's3'}"
        if service == "drift-ui":
            return f"workspace {self.drift_workspace}"
        if service == "monitor":
            return "alert receiver at /alerts, quality gauges at /metrics"
        if service == "alertmanager":
            return f"notifies {self.endpoints.monitor}/alerts"
        if service == "dask-scheduler":
            return f"{self.endpoints.dask_scheduler} (GENREOPS_DASK_ADDRESS of the stack)"
        if service == "dask-workers":
            connected = starters.dask_workers_connected(self.endpoints.dask_dashboard)
            return f"{connected} workers, 1 thread each (GENREOPS_DASK_WORKERS)"
        return ""

    def _triton_detail(self) -> str:
        from genreops.serving.publish import ENSEMBLE, read_history
        from genreops.serving.triton.control import model_ready

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
        """Start what is not running, each once the services it needs are healthy; idempotent."""
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

        self._bring_up_all(selected, timeout, emit)
        self.write_env_file()
        return self.status()

    def _bring_up_all(self, selected: list[str], timeout: float | None, emit: Event) -> None:
        """Each service as soon as what it needs is up, the others side by side (the Python
        servers spend their start importing, so two cores start them in about half the time).
        After a failure nothing new starts; what is starting finishes, then the error is raised.
        """
        done: set[str] = set()
        failures: list[GenreopsError] = []
        waiting = list(selected)
        before = session_children()
        with ThreadPoolExecutor(max_workers=len(SERVICES), thread_name_prefix="stack-up") as pool:
            starting: dict[Future[None], str] = {}
            try:
                while True:
                    needs = {s: set(DEPENDENCIES.get(s, ())) & set(selected) for s in waiting}
                    for service in [s for s in waiting if needs[s] <= done and not failures]:
                        waiting.remove(service)
                        starting[pool.submit(self._bring_up, service, timeout, emit)] = service
                    if not starting:
                        break
                    finished, _ = wait(starting, return_when=FIRST_COMPLETED)
                    for future in finished:
                        service = starting.pop(future)
                        try:
                            future.result()
                            done.add(service)
                        except GenreopsError as error:
                            failures.append(error)
            except BaseException:  # Ctrl-C: stop what this call started; the starts then fail
                for pid in session_children() - before:
                    signal_group(pid, signal.SIGTERM)
                raise
        if failures:
            raise failures[0]

    def _bring_up(self, service: str, timeout: float | None, emit: Event) -> None:
        """One service healthy: started, or waited for when it already runs (or skipped)."""
        limit = timeout or TIMEOUTS[service]
        missing = self.missing(service)
        if missing:
            emit(service, "skipped", missing)
            return
        record = self.record(service)
        try:
            if record is not None:
                self._await_running(service, record, limit, emit)
            else:
                self._start(service, limit, emit)
            if service == "s3":
                starters.ensure_buckets(self)
        except GenreopsError:
            emit(service, "failed", "see the error below")
            raise

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
        launched = utcnow()
        start: dict[str, Callable[[float], subprocess.Popen[bytes]]] = {
            "s3": lambda t: starters.start_s3(self, t),
            "mlflow": lambda t: starters.start_mlflow(self, t),
            "prefect": lambda t: starters.start_prefect(self, t),
            "dask-scheduler": lambda t: starters.start_dask_scheduler(self, t),
            "dask-workers": lambda t: starters.start_dask_workers(self, t),
            "deployments": lambda t: starters.start_deployments(self, t, launched),
            "triton": lambda t: starters.start_triton(self, t),
            "triton-replicas": lambda t: starters.start_triton_replicas(self, t),
            "monitor": lambda t: starters.start_monitor(self, t),
            "alertmanager": lambda t: starters.start_alertmanager(self, t),
            "prometheus": lambda t: starters.start_prometheus(self, t),
            "drift-ui": lambda t: starters.start_drift_ui(self, t),
        }
        try:
            process = start[service](limit)
        except GenreopsError as error:
            raise StackError(f"{TITLES[service]} failed to start: {error}") from error
        if service != "triton":  # starters.start_triton writes the record `genreops serve` shares
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
            # Triton drains requests; the replicas' keeper stops its servers one by one; the
            # Prefect worker holds nothing to drain, and its shutdown can hang on its API calls
            timeout = {"triton": 60.0, "triton-replicas": 180.0, "deployments": 10.0}.get(
                service, STOP_TIMEOUT
            )
            if stop_record(record, timeout=timeout):
                stopped.append(service)
                emit(service, "stopped", f"pid {record.pid}")
            else:
                emit(service, "stopped", f"pid {record.pid} was already gone")
            path.unlink(missing_ok=True)
        self.env_file.unlink(missing_ok=True)
        return stopped


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
