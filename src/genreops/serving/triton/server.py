"""Start, record and stop the native tritonserver (installed by install.py, controlled over
HTTP by control.py): ports checked first, the watchdog beside it, the pid record other
commands find it by."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genreops.core.pidfiles import (
    SERVE_OWNER,
    PidFileError,
    PidRecord,
    StopError,
    load_record,
    stop_record,
    write_record,
)
from genreops.core.processes import (
    cmdline,
    log_tail,
    pid_alive,
    port_in_use,
    start_process,
    start_ticks,
    stop_process,
)
from genreops.core.settings import Settings
from genreops.serving.triton.control import is_ready, model_ready, repository_index
from genreops.serving.triton.errors import TritonModelError, TritonServerError
from genreops.serving.triton.install import find_tritonserver, prepare_backends, triton_environment

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"  # the native stack serves loopback only
BIND_HOSTS = (HOST, "0.0.0.0")  # noqa: S104 - every interface only where asked (containers)
MODEL_CONTROL_MODES = ("none", "poll", "explicit")
# Triton waits up to 30 s (its --exit-timeout-secs) for in-flight requests after SIGTERM.
STOP_TIMEOUT = 45.0
SHM_DIR = Path("/dev/shm")  # noqa: S108 - where POSIX shared memory lives on Linux


@dataclass(frozen=True)
class TritonPorts:
    http: int = 8000
    grpc: int = 8001
    metrics: int = 8002

    @property
    def http_url(self) -> str:
        return f"http://{HOST}:{self.http}"

    @property
    def grpc_url(self) -> str:
        """``host:port``, the form tritonclient.grpc expects."""
        return f"{HOST}:{self.grpc}"

    @property
    def metrics_url(self) -> str:
        return f"http://{HOST}:{self.metrics}/metrics"


REPLICA_PORT_STEP = 10  # replica i listens on the settings' Triton ports + 10 * i


def settings_ports(settings: Settings, replica: int = 0) -> TritonPorts:
    """GENREOPS_TRITON_HTTP_PORT / _GRPC_PORT / _METRICS_PORT, shifted for replica i."""
    step = REPLICA_PORT_STEP * replica
    return TritonPorts(
        http=settings.triton_http_port + step,
        grpc=settings.triton_grpc_port + step,
        metrics=settings.triton_metrics_port + step,
    )


@dataclass(frozen=True)
class TritonPidFile:
    """A running server as recorded for other commands; ``started`` guards against PID reuse."""

    pid: int
    started: int  # process start time, clock ticks since boot (processes.start_ticks)
    ports: TritonPorts
    repository: Path
    log_path: Path | None = None


# --- start and stop -----------------------------------------------------------------------


def start_triton(
    repository: Path,
    *,
    state_dir: Path,
    ports: TritonPorts = TritonPorts(),
    log_path: Path | None = None,
    model_control: str = "explicit",
    load_models: Sequence[str] = (),
    extra_args: Sequence[str] = (),
    timeout: float = 180.0,
    host: str = HOST,
    watchdog: bool = True,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start tritonserver on ``repository`` and wait until it is usable.

    ``env``: variables set for the server and its Python stubs besides this process's own.

    ``watchdog`` also starts ``genreops.serving.triton.watchdog``
    beside it (log: ``<log>-watchdog``),
    which reloads a model whose Python stub process died; it exits within a second of the
    server (``stop_triton`` stops it at once).

    ``host`` is loopback by default; ``0.0.0.0`` (every interface) is for containers, where
    other services reach the server by its service name. Readiness is asked over loopback.

    Readiness is ``/v2/health/ready`` answering 200 and every model of ``load_models`` READY.
    The server runs with ``--strict-readiness=false``: with Triton's default a single model
    that failed to load turns ``/v2/health/ready`` to 400 for the whole server, although every
    other model keeps serving; readiness of a model is asked with ``model_ready`` instead.
    ``--exit-on-error=false`` keeps the server up when a model fails at startup; a model named
    in ``load_models`` that is not READY still fails this call (server stopped, Triton's reason
    and the log tail quoted). ``model_control="explicit"`` loads nothing but ``load_models``;
    the rest are loaded later with ``load_model``. ``extra_args`` come last, so they override
    these defaults (Triton keeps the last value of a repeated flag).
    """
    if model_control not in MODEL_CONTROL_MODES:
        raise TritonServerError(
            f"unknown Triton model control mode {model_control!r} "
            f"(choose one of {', '.join(MODEL_CONTROL_MODES)})"
        )
    if load_models and model_control != "explicit":
        raise TritonServerError(
            f"load_models needs model control 'explicit' (got {model_control!r}): "
            "in the other modes Triton loads the whole repository itself"
        )
    if host not in BIND_HOSTS:
        raise TritonServerError(f"Triton binds {' or '.join(BIND_HOSTS)}, not {host!r}")
    repository = Path(repository).resolve()
    if not repository.is_dir():
        raise TritonServerError(
            f"Triton model repository {repository} does not exist or is no folder"
        )
    _check_ports(ports)
    _remove_stale_shm(shm_prefix(ports))
    install = find_tritonserver()
    backends = prepare_backends(state_dir, install=install)
    if log_path is None:
        fd, name = tempfile.mkstemp(prefix="genreops-tritonserver-", suffix=".log")
        os.close(fd)
        log_path = Path(name)
    argv = [
        str(install.binary),
        "--model-repository", str(repository),
        "--backend-directory", str(backends),
        "--model-control-mode", model_control,
        *(f"--load-model={model}" for model in load_models),
        "--http-address", host, "--http-port", str(ports.http),
        "--grpc-address", host, "--grpc-port", str(ports.grpc),
        "--metrics-address", host, "--metrics-port", str(ports.metrics),
        "--allow-gpu-metrics=false",
        "--metrics-config=summary_latencies=true",  # p50/p99 for the dashboard
        "--log-verbose=0",
        "--exit-on-error=false",
        "--strict-readiness=false",
        # Every config.pbtxt is complete (publish renders it): without this the Python backend
        # starts one more stub per model load only to ask model.py to complete the config
        # (measured: a server ready in 3.8 s instead of 6.2, ~2 s less per model a publish loads)
        "--disable-auto-complete-config",
        # Keep no gRPC request objects for reuse: each kept one holds on to the largest
        # request it ever carried (8 by default: +40-50 MB per oversized request, measured).
        # Triton 2.51 has no option to refuse a large request before it is buffered (no
        # --http-max-input-size, no gRPC message size limit); the preprocessor refuses it.
        "--grpc-infer-allocation-pool-size=0",
        # Python-backend shared-memory regions of their own: two servers on one machine (the
        # replicas, the tests) with the default names collide, and one aborts
        # (boost::interprocess::lock_exception, seen in CI)
        f"--backend-config=python,shm-region-prefix-name={shm_prefix(ports)}",
        *extra_args,
    ]  # fmt: skip
    process = start_process(
        "Triton",
        argv,
        ready=lambda: is_ready(ports.http_url),
        url=ports.http_url,
        log_path=log_path,
        env={**triton_environment(install), **(env or {})},
        timeout=timeout,
    )
    not_ready = [m for m in load_models if not model_ready(ports.http_url, m)]
    if not_ready:
        reasons = _reasons(ports.http_url, not_ready)
        stop_triton(process)
        raise TritonModelError(
            ", ".join(not_ready),
            "load",
            f"not READY after startup ({reasons}); log {log_path}:\n{log_tail(log_path)}",
            ports.http_url,
        )
    if watchdog:
        _WATCHDOGS[process.pid] = _start_watchdog(process.pid, ports.http_url, log_path)
    return process


def shm_prefix(ports: TritonPorts) -> str:
    """The Python backend's shared-memory region names of the server on these ports."""
    return f"genreops{ports.http}_"


def _remove_stale_shm(prefix: str, shm: Path = SHM_DIR) -> None:
    """Regions a killed server or stub left behind (only a clean stop removes them). The port
    is free, so no running server owns names with this prefix."""
    for region in shm.glob(f"{prefix}*"):
        with contextlib.suppress(OSError):
            region.unlink()


# tritonserver pid -> its watchdog, so stop_triton can reap it
_WATCHDOGS: dict[int, subprocess.Popen[bytes]] = {}


def watchdog_log_path(log_path: Path) -> Path:
    """Where the watchdog of a server logging to ``log_path`` writes (``triton-watchdog.log``)."""
    return log_path.with_name(f"{log_path.stem}-watchdog{log_path.suffix or '.log'}")


def _start_watchdog(server_pid: int, http_url: str, log_path: Path) -> subprocess.Popen[bytes]:
    log_file = watchdog_log_path(log_path)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "genreops.serving.triton.watchdog", "--pid", str(server_pid),
             "--url", http_url],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # not stopped by a Ctrl-C meant for the foreground
        )  # fmt: skip


def _check_ports(ports: TritonPorts) -> None:
    named = {"HTTP": ports.http, "gRPC": ports.grpc, "metrics": ports.metrics}
    if len(set(named.values())) != len(named):
        raise TritonServerError(f"Triton needs three different ports, got {ports}")
    for kind, port in named.items():
        if not 0 < port < 65536:
            raise TritonServerError(f"cannot start Triton: {kind} port {port} is not a valid port")
        if port_in_use(HOST, port):
            raise TritonServerError(
                f"cannot start Triton: the {kind} port {HOST}:{port} is already in use "
                "(another Triton or service listens there; stop it or pick other ports)"
            )


def _reasons(url: str, models: Sequence[str]) -> str:
    try:
        index = {entry.get("name"): entry for entry in repository_index(url)}
    except TritonServerError as error:
        return str(error)
    parts = []
    for model in models:
        entry = index.get(model)
        if entry is None:
            parts.append(f"{model}: not in the model repository")
        else:
            state = entry.get("state") or "not loaded"
            parts.append(f"{model}: {state} {entry.get('reason', '')}".rstrip())
    return "; ".join(parts)


def stop_triton(process: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> None:
    """Stop a server from ``start_triton``, its Python stubs and its watchdog."""
    stop_process(process, timeout=timeout)
    watchdog = _WATCHDOGS.pop(process.pid, None)
    if watchdog is not None:  # it exits by itself once the server is gone
        stop_process(watchdog, timeout=5.0)


def write_pid_file(
    path: Path,
    process: subprocess.Popen[bytes],
    ports: TritonPorts,
    repository: Path,
    *,
    log_path: Path | None = None,
    owner: str = SERVE_OWNER,
    extra: dict[str, Any] | None = None,
) -> TritonPidFile:
    """Record a running server so that another command can find and stop it."""
    started = start_ticks(process.pid)
    if started is None:
        raise TritonServerError(f"cannot record Triton pid {process.pid}: the process is gone")
    info = TritonPidFile(
        pid=process.pid,
        started=started,
        ports=ports,
        repository=Path(repository).resolve(),
        log_path=log_path,
    )
    ports_field = {"http": ports.http, "grpc": ports.grpc, "metrics": ports.metrics}
    record = PidRecord(
        service="triton",
        pid=info.pid,
        started=info.started,
        owner=owner,
        url=ports.http_url,
        log_path=str(log_path) if log_path else None,
        extra={"ports": ports_field, "repository": str(info.repository), **(extra or {})},
    )
    write_record(Path(path), record)
    return info


def read_pid_file(path: Path) -> TritonPidFile | None:
    """The recorded server, or None without a file; a damaged file raises TritonServerError."""
    try:
        record = load_record(Path(path), "triton")
        if record is None:
            return None
        ports = record.extra["ports"]
        return TritonPidFile(
            pid=record.pid,
            started=record.started,
            ports=TritonPorts(int(ports["http"]), int(ports["grpc"]), int(ports["metrics"])),
            repository=Path(record.extra["repository"]),
            log_path=Path(record.log_path) if record.log_path else None,
        )
    except (PidFileError, KeyError, TypeError, ValueError) as error:
        raise TritonServerError(
            f"Triton pid file {path} is unreadable or damaged: {error}"
        ) from error


def server_pid_file(home: Path, replica: int = 0) -> Path:
    """Where `genreops serve` and the stack record the server they started (replica i > 0 of
    the stack: ``triton-<i>.json``)."""
    return Path(home).resolve() / "run" / (f"triton-{replica}.json" if replica else "triton.json")


def running_server_url(home: Path) -> str | None:
    """The HTTP URLs of the servers recorded under ``home`` that answer as ready, comma-
    separated (replica 0 first); None when none does."""
    run = Path(home).resolve() / "run"
    records = sorted(run.glob("triton-*.json"), key=lambda p: p.stem)
    urls = []
    for path in [server_pid_file(home), *records]:
        try:
            info = read_pid_file(path)
        except TritonServerError:
            continue  # a damaged record of another replica does not hide the others
        if info is not None and is_ready(info.ports.http_url):
            urls.append(info.ports.http_url)
    return ",".join(urls) or None


def stop_from_pid_file(path: Path, timeout: float = STOP_TIMEOUT) -> bool:
    """Stop the server a pid file names; False (and the file removed) when none runs.

    The process group is signalled only while its leader still is the tritonserver that was
    recorded (same start time, same binary name), so a reused pid is never killed.
    """
    path = Path(path)
    info = read_pid_file(path)
    if info is None:
        return False
    if not _is_recorded_server(info):
        logger.info("removing stale Triton pid file %s (pid %d is gone)", path, info.pid)
        path.unlink(missing_ok=True)
        return False
    record = PidRecord(service="triton", pid=info.pid, started=info.started)
    try:
        stopped = stop_record(record, timeout)
    except StopError as error:
        raise TritonServerError(f"{error}; pid file {path} kept") from error
    path.unlink(missing_ok=True)
    if stopped:
        logger.info("stopped Triton (pid %d) from %s", info.pid, path)
    return stopped


def _is_recorded_server(info: TritonPidFile) -> bool:
    if not pid_alive(info.pid) or start_ticks(info.pid) != info.started:
        return False
    argv = cmdline(info.pid)
    return argv is not None and bool(argv) and Path(argv[0]).name == "tritonserver"
