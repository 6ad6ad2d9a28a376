"""Run NVIDIA Triton Inference Server natively, from the ``nvidia-pytriton`` wheel (no Docker).

The wheel ships a complete ``tritonserver`` 2.51 with the Python backend; we use only its
binary, never the PyTriton API. Three things make it work outside the wheel's own launcher:

- the Python backend needs ``triton_python_backend_stub`` for our Python version inside
  ``backends/python/``: ``prepare_backends`` copies the wheel's backends once into the state
  directory (the venv stays untouched) and refreshes the copy when the wheel changes;
- the stub embeds Python and takes its prefix from the first ``python3`` on ``PATH``, so the
  venv's ``bin`` goes first (otherwise "No module named 'numpy'");
- the copied libraries lose their ``$ORIGIN`` RPATH, and the stub would silently load the
  system's libpython, so ``LD_LIBRARY_PATH`` names our libpython directory and the wheel's
  ``nvidia_pytriton.libs``.

"Failed to initialize NVML", "DCGM unable to start" and CUDA driver warnings in the log are
harmless on a machine without a GPU.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from genreops.core.errors import GenreopsError
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
from genreops.serving.triton.allocator import SERVER_MALLOC_ENV

logger = logging.getLogger(__name__)

DISTRIBUTION = "nvidia-pytriton"
HOST = "127.0.0.1"  # the native stack serves loopback only
BIND_HOSTS = (HOST, "0.0.0.0")  # noqa: S104 - every interface only where asked (containers)
MODEL_CONTROL_MODES = ("none", "poll", "explicit")
STUB_NAME = "triton_python_backend_stub"
STAMP_NAME = ".genreops-stamp"
# Triton waits up to 30 s (its --exit-timeout-secs) for in-flight requests after SIGTERM.
STOP_TIMEOUT = 45.0
_INSTALL_HINT = (
    f"run `make setup` (it installs {DISTRIBUTION}==0.7.0, whose wheel ships tritonserver 2.51; "
    "Linux x86_64 with glibc >= 2.35 only)"
)


class TritonError(GenreopsError):
    """The Triton server cannot be found, started, reached or stopped."""


class TritonModelError(TritonError):
    """Triton refused to load or unload a model; ``reason`` is Triton's own message."""

    def __init__(self, model: str, action: str, reason: str, url: str = "") -> None:
        self.model = model
        self.action = action
        self.reason = reason
        self.url = url
        where = f"Triton at {url}" if url else "Triton"
        super().__init__(f"{where} could not {action} model '{model}': {reason}")

    def __reduce__(self) -> tuple[type[TritonModelError], tuple[str, str, str, str]]:
        return (TritonModelError, (self.model, self.action, self.reason, self.url))


@dataclass(frozen=True)
class TritonInstall:
    """Where the wheel keeps the server; ``version`` is the wheel's (0.7.0 ships Triton 2.51)."""

    binary: Path
    backends: Path
    stub: Path
    libs: Path
    version: str


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


@dataclass(frozen=True)
class TritonPidFile:
    """A running server as recorded for other commands; ``started`` guards against PID reuse."""

    pid: int
    started: int  # process start time, clock ticks since boot (processes.start_ticks)
    ports: TritonPorts
    repository: Path
    log_path: Path | None = None


# --- installation -------------------------------------------------------------------------


def _python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def find_tritonserver(distribution: str = DISTRIBUTION) -> TritonInstall:
    """The server binary, backends and Python stub inside the installed wheel."""
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        raise TritonError(
            f"tritonserver is not installed: the Python package {distribution} is missing "
            f"from {sys.prefix}; {_INSTALL_HINT}"
        ) from None
    root = Path(str(dist.locate_file("pytriton"))) / "tritonserver"
    binary = root / "bin" / "tritonserver"
    backends = root / "backends"
    stubs = root / "python_backend_stubs"
    stub = stubs / _python_version() / STUB_NAME
    libs = Path(str(dist.locate_file("nvidia_pytriton.libs")))
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        raise TritonError(
            f"{distribution} {dist.version} has no runnable {binary}; {_INSTALL_HINT}"
        )
    if not (backends / "python" / "libtriton_python.so").is_file():
        raise TritonError(f"{distribution} {dist.version} lacks the Python backend in {backends}")
    if not stub.is_file():
        available = sorted(p.name for p in stubs.iterdir()) if stubs.is_dir() else []
        raise TritonError(
            f"{distribution} {dist.version} has no Python backend stub for Python "
            f"{_python_version()} (it has: {', '.join(available) or 'none'})"
        )
    if not libs.is_dir():
        raise TritonError(f"{distribution} {dist.version}: library folder {libs} is missing")
    return TritonInstall(
        binary=binary, backends=backends, stub=stub, libs=libs, version=dist.version
    )


def prepare_backends(state_dir: Path, *, install: TritonInstall | None = None) -> Path:
    """``<state_dir>/triton/backends``: the wheel's backends plus our Python's stub.

    Copied once and reused while the stamp (wheel version, Python version, source) matches;
    a new copy is built aside and swapped in, so a concurrent start never sees half a folder.
    """
    install = install or find_tritonserver()
    target = Path(state_dir) / "triton" / "backends"
    stamp = (
        f"{DISTRIBUTION} {install.version}\npython {_python_version()}\n"
        f"source {install.backends}\nstub {install.stub}\n"
    )
    if _stamp_matches(target, stamp):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".backends-", dir=target.parent))
    try:
        shutil.copytree(install.backends, staging, dirs_exist_ok=True)
        stub = staging / "python" / STUB_NAME
        shutil.copy2(install.stub, stub)
        stub.chmod(0o755)
        (staging / STAMP_NAME).write_text(stamp)
        old = target.with_name(f".backends-old-{uuid.uuid4().hex}")
        with contextlib.suppress(FileNotFoundError):
            target.rename(old)
        try:
            staging.rename(target)
        except OSError:
            if not _stamp_matches(target, stamp):  # not a concurrent twin: a real failure
                raise
        shutil.rmtree(old, ignore_errors=True)
    except OSError as error:
        raise TritonError(f"cannot prepare Triton backends in {target}: {error}") from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("prepared Triton backends in %s (%s %s)", target, DISTRIBUTION, install.version)
    return target


def _stamp_matches(target: Path, stamp: str) -> bool:
    try:
        current = (target / STAMP_NAME).read_text()
    except OSError:
        return False
    return current == stamp and (target / "python" / STUB_NAME).is_file()


def triton_environment(
    install: TritonInstall, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment tritonserver and its Python stubs need (see the module docstring)."""
    env = dict(os.environ if base is None else base)
    python_bin = str(Path(sys.executable).parent)  # the venv's bin, holding its python3
    env["PATH"] = os.pathsep.join(p for p in (python_bin, env.get("PATH", "")) if p)
    # Each model instance is its own process: BLAS/OpenMP pools per stub only oversubscribe
    # the cores (measured: feature extraction took ~2x the CPU with default thread pools).
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(name, "1")
    # The server gives large buffers back (a request's size is the client's choice); the
    # preprocessor's stubs keep freed memory through mallopt (genreops.serving.triton.allocator).
    for name, value in SERVER_MALLOC_ENV.items():
        env.setdefault(name, value)
    lib_dirs: list[str] = []
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir:
        lib_dirs.append(str(libdir))
    base_lib = str(Path(sys.base_prefix) / "lib")
    if base_lib not in lib_dirs:
        lib_dirs.append(base_lib)
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        logger.warning(
            "this Python has no shared libpython; the Triton Python stub may load another one"
        )
    lib_dirs.append(str(install.libs))
    if env.get("LD_LIBRARY_PATH"):
        lib_dirs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(lib_dirs)
    return env


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
        raise TritonError(
            f"unknown Triton model control mode {model_control!r} "
            f"(choose one of {', '.join(MODEL_CONTROL_MODES)})"
        )
    if load_models and model_control != "explicit":
        raise TritonError(
            f"load_models needs model control 'explicit' (got {model_control!r}): "
            "in the other modes Triton loads the whole repository itself"
        )
    if host not in BIND_HOSTS:
        raise TritonError(f"Triton binds {' or '.join(BIND_HOSTS)}, not {host!r}")
    repository = Path(repository).resolve()
    if not repository.is_dir():
        raise TritonError(f"Triton model repository {repository} does not exist or is no folder")
    _check_ports(ports)
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
        # Keep no gRPC request objects for reuse: each kept one holds on to the largest
        # request it ever carried (8 by default: +40-50 MB per oversized request, measured).
        # Triton 2.51 has no option to refuse a large request before it is buffered (no
        # --http-max-input-size, no gRPC message size limit); the preprocessor refuses it.
        "--grpc-infer-allocation-pool-size=0",
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
        raise TritonError(f"Triton needs three different ports, got {ports}")
    for kind, port in named.items():
        if not 0 < port < 65536:
            raise TritonError(f"cannot start Triton: {kind} port {port} is not a valid port")
        if port_in_use(HOST, port):
            raise TritonError(
                f"cannot start Triton: the {kind} port {HOST}:{port} is already in use "
                "(another Triton or service listens there; stop it or pick other ports)"
            )


def _reasons(url: str, models: Sequence[str]) -> str:
    try:
        index = {entry.get("name"): entry for entry in repository_index(url)}
    except TritonError as error:
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
        raise TritonError(f"cannot record Triton pid {process.pid}: the process is gone")
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
    """The recorded server, or None without a file; a damaged file raises TritonError."""
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
        raise TritonError(f"Triton pid file {path} is unreadable or damaged: {error}") from error


def server_pid_file(home: Path) -> Path:
    """Where `genreops serve` and the stack record the server they started."""
    return Path(home).resolve() / "run" / "triton.json"


def running_server_url(home: Path) -> str | None:
    """The HTTP URL of the server recorded under ``home``, if it still answers as ready."""
    info = read_pid_file(server_pid_file(home))
    if info is None or not is_ready(info.ports.http_url):
        return None
    return info.ports.http_url


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
        raise TritonError(f"{error}; pid file {path} kept") from error
    path.unlink(missing_ok=True)
    if stopped:
        logger.info("stopped Triton (pid %d) from %s", info.pid, path)
    return stopped


def _is_recorded_server(info: TritonPidFile) -> bool:
    if not pid_alive(info.pid) or start_ticks(info.pid) != info.started:
        return False
    argv = cmdline(info.pid)
    return argv is not None and bool(argv) and Path(argv[0]).name == "tritonserver"


# --- Triton's HTTP API, through tritonclient.http -----------------------------------------
#
# tritonclient.http (over geventhttpclient) never consults HTTP_PROXY/HTTPS_PROXY/NO_PROXY:
# geventhttpclient goes through a proxy only when given ``proxy_host``, which tritonclient
# never passes, so these loopback calls cannot be routed via a proxy. One client per call
# (they are cheap, and gevent's hub is per thread: the watchdog calls from its own thread).

_T = TypeVar("_T")

# Triton's empty-body error, as tritonclient words it; reported as "(no message)" as before.
_EMPTY_ANSWER = "client received an empty response from the server."


def _base_url(url: str) -> str:
    """``host:port`` or an http(s) URL, as an http(s) URL without a trailing slash."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = f"http://{url}"
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise TritonError(f"not an HTTP URL of a Triton server: {url}")
    return url


def _triton(url: str, timeout: float, call: Callable[[Any], _T]) -> _T:
    """``call(client)`` with a ``tritonclient.http.InferenceServerClient`` for ``url``.

    Triton's own error answers propagate as ``InferenceServerException``; a server that
    cannot be reached (refused, timed out, unresolvable) is a TritonError naming the URL.
    """
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    base = _base_url(url)
    parts = urllib.parse.urlsplit(base)
    client = None
    try:
        # tritonclient takes host:port[/path] without the scheme; https is its ``ssl`` flag
        client = httpclient.InferenceServerClient(
            parts.netloc + parts.path,
            connection_timeout=timeout,
            network_timeout=timeout,
            ssl=parts.scheme == "https",
        )
        return call(client)
    except InferenceServerException:
        raise
    except Exception as error:  # socket, DNS, TLS and parse errors of geventhttpclient
        raise TritonError(f"cannot reach Triton at {base}: {error}") from error
    finally:
        if client is not None:
            client.close()


def _error_text(error: Exception) -> str:
    """Triton's message from an ``InferenceServerException`` (its raw body when not JSON)."""
    details = getattr(error, "debug_details", lambda: None)()
    message = getattr(error, "message", lambda: str(error))()
    text = str(details) if details is not None else str(message or "")
    if text == _EMPTY_ANSWER:
        text = ""
    return text.strip().rstrip(";").strip() or "(no message)"


def load_model(url: str, name: str, *, timeout: float = 600.0) -> None:
    """Load (or reload, if changed) a model; TritonModelError carries Triton's message."""
    from tritonclient.utils import InferenceServerException

    try:
        _triton(url, timeout, lambda client: client.load_model(name))
    except InferenceServerException as error:
        raise TritonModelError(name, "load", _error_text(error), _base_url(url)) from error
    logger.info("Triton at %s loaded model %s", _base_url(url), name)


def restart_model_instances(url: str, model: str, *, timeout: float = 600.0) -> float:
    """Reload ``model`` with its current configuration plus a fresh parameter, so Triton
    builds new instances (a plain load of an unchanged model does nothing). Seconds taken."""
    from tritonclient.utils import InferenceServerException

    try:
        config = dict(_triton(url, 10.0, lambda client: client.get_model_config(model)))
        config.setdefault("parameters", {})["genreops_restart"] = {"string_value": uuid.uuid4().hex}
        started = time.monotonic()
        _triton(url, timeout, lambda client: client.load_model(model, config=json.dumps(config)))
    except InferenceServerException as error:
        raise TritonModelError(model, "restart", _error_text(error), _base_url(url)) from error
    return time.monotonic() - started


def unload_model(
    url: str, name: str, *, unload_dependents: bool = False, timeout: float = 120.0
) -> None:
    """Unload a model and wait until it is gone: in-flight requests done, ``finalize`` run.

    Triton answers at once and unloads in the background (state UNLOADING, ~1 s even for a
    trivial Python model while its stub shuts down).
    """
    from tritonclient.utils import InferenceServerException

    try:
        _triton(
            url,
            timeout,
            lambda client: client.unload_model(name, unload_dependents=unload_dependents),
        )
    except InferenceServerException as error:
        raise TritonModelError(name, "unload", _error_text(error), _base_url(url)) from error
    deadline = time.monotonic() + timeout
    while _model_states(url, name) & {"READY", "UNLOADING"}:
        if time.monotonic() > deadline:
            raise TritonModelError(
                name, "unload", f"still unloading after {timeout:.0f} s", _base_url(url)
            )
        time.sleep(0.1)
    logger.info("Triton at %s unloaded model %s", _base_url(url), name)


def _model_states(url: str, name: str) -> set[str]:
    return {str(e.get("state")) for e in repository_index(url) if e.get("name") == name}


def repository_index(url: str) -> list[dict[str, Any]]:
    """Every model of the repository with its ``state`` (absent: never loaded) and ``reason``."""
    from tritonclient.utils import InferenceServerException

    try:
        entries = _triton(url, 10.0, lambda client: client.get_model_repository_index())
    except InferenceServerException as error:
        raise TritonError(
            f"Triton at {_base_url(url)} cannot list its models: {_error_text(error)}"
        ) from error
    return [dict(entry) for entry in entries]


def is_ready(url: str, timeout: float = 2.0) -> bool:
    """True when the server answers ``/v2/health/ready`` with 200."""
    try:
        return bool(_triton(url, timeout, lambda client: client.is_server_ready()))
    except TritonError:
        return False


def model_ready(url: str, name: str, timeout: float = 2.0) -> bool:
    """True when some version of ``name`` is loaded and READY."""
    try:
        return bool(_triton(url, timeout, lambda client: client.is_model_ready(name)))
    except TritonError:
        return False
