"""Test data builders shared by the test layers (importable: tests/ is on sys.path)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil
import pytest

from genreops.core.settings import Settings, get_settings
from genreops.platform.stack import SERVICES, read_record
from genreops.serving.publish import ServingOptions
from genreops.serving.triton.server import TritonPorts, start_triton, stop_triton


def render_labeled_corpus(
    root: Path, per_genre: int, seconds: float, seed: int, *, workers: int = 1
) -> int:
    """A synthetic corpus of <genre>/<clip>.wav files only (the renderer's manifest removed, as
    a user's folder has none); returns the number of clips."""
    from genreops.data.synth import render_corpus

    render_corpus(root, per_genre=per_genre, seconds=seconds, seed=seed, workers=workers)
    (root / "manifest.json").unlink(missing_ok=True)
    return len(list(root.glob("*/*.wav")))


def synthetic_feature_frame(
    per_genre: int = 12,
    genres: tuple[str, ...] = ("blues", "classical", "metal", "pop"),
    names: tuple[str, ...] | None = None,
    seed: int = 0,
    separation: float = 2.0,
) -> pd.DataFrame:
    """A feature table in the documented shape whose genres are learnable (shifted means)."""
    from genreops.data.features import FEATURE_NAMES

    columns = list(names or FEATURE_NAMES)
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, separation, size=(len(genres), len(columns)))
    rows, labels, ids = [], [], []
    for g, genre in enumerate(genres):
        rows.append(centres[g] + rng.normal(size=(per_genre, len(columns))))
        labels += [genre] * per_genre
        ids += [f"{genre}/{genre}.{i:05d}.wav" for i in range(per_genre)]
    frame = pd.DataFrame(np.vstack(rows).astype(np.float32), columns=columns)
    frame.insert(0, "genre", labels)
    frame.insert(0, "clip_id", ids)
    return frame


# The public GTZAN feature tables (features_30_sec.csv, features_3_sec.csv): their 57 feature
# names in column order, and a typical value (median) and spread for each, as published.
_GTZAN_SPECTRAL = ("chroma_stft", "rms", "spectral_centroid", "spectral_bandwidth", "rolloff",
                   "zero_crossing_rate", "harmony", "perceptr")  # fmt: skip
GTZAN_FEATURE_NAMES = (
    *(f"{n}_{s}" for n in _GTZAN_SPECTRAL for s in ("mean", "var")),
    "tempo",
    *(f"mfcc{i}_{s}" for i in range(1, 21) for s in ("mean", "var")),
)
_GTZAN_TYPICAL = {
    "chroma_stft": (0.38, 0.08, 0.085, 0.006),  # mean: centre, spread; var: centre, spread
    "rms": (0.12, 0.06, 0.003, 0.003),
    "spectral_centroid": (2200.0, 700.0, 4.7e5, 4.0e5),
    "spectral_bandwidth": (2240.0, 520.0, 1.4e5, 9.0e4),
    "rolloff": (4570.0, 1570.0, 1.6e6, 1.2e6),
    "zero_crossing_rate": (0.10, 0.04, 0.0027, 0.0025),
    "harmony": (0.0, 0.001, 0.012, 0.012),
    "perceptr": (0.0, 0.001, 0.006, 0.006),
}


def gtzan_public_frame(
    per_genre: int = 10,
    genres: tuple[str, ...] = ("blues", "classical", "metal", "pop"),
    segments: int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """A table shaped like the public GTZAN one, generated (never downloaded): columns
    ``filename,length,<57 features>,label``, values in the published ranges, genres learnable.

    ``segments``: None is the 30 s table (``blues.00000.wav``, length 661794); a number is the
    3 s table with that many rows per song (``blues.00000.3.wav``, length 66149).
    """
    rng = np.random.default_rng(seed)
    typical = []  # (centre, spread) per feature
    for name in GTZAN_FEATURE_NAMES:
        stem, kind = name.rsplit("_", 1) if name != "tempo" else ("tempo", "mean")
        if stem == "tempo":
            typical.append((120.0, 25.0))
        elif stem.startswith("mfcc"):
            k = int(stem[4:])
            mean = {1: (-145.0, 100.0), 2: (100.0, 30.0)}.get(k, (30.0 / k, 12.0))
            typical.append(mean if kind == "mean" else (3000.0 / k, 1500.0 / k))
        else:
            values = _GTZAN_TYPICAL[stem]
            typical.append(values[:2] if kind == "mean" else values[2:])
    centres, spreads = (np.array(v) for v in zip(*typical, strict=True))
    # variances, tempo and spectral levels are positive and skewed: log-normal around the centre
    signed = ("mfcc", "harmony_mean", "perceptr_mean")
    positive = np.array(
        [n.endswith("_var") or not n.startswith(signed) for n in GTZAN_FEATURE_NAMES]
    )
    log_spread = np.log1p(spreads / np.abs(np.where(positive, centres, 1.0)))
    rows, names, labels = [], [], []
    per_song = segments or 1
    for genre in genres:
        shift = rng.normal(0.0, 1.0, size=len(centres))
        for song in range(per_genre):
            z = shift + 0.6 * rng.normal(size=(per_song, len(centres)))
            rows.append(
                np.where(positive, centres * np.exp(0.5 * log_spread * z), centres + spreads * z)
            )
            for segment in range(per_song):
                part = "" if segments is None else f".{segment}"
                names.append(f"{genre}.{song:05d}{part}.wav")
                labels.append(genre)
    frame = pd.DataFrame(np.vstack(rows), columns=list(GTZAN_FEATURE_NAMES))
    length = 661794 if segments is None else 66149
    frame.insert(0, "length", length - rng.integers(0, 3, size=len(frame)) * (length // 200))
    frame.insert(0, "filename", names)
    frame["label"] = labels
    return frame


def wait_until(condition: Callable[[], bool], timeout: float = 60.0, every: float = 0.5) -> bool:
    """Poll ``condition`` until it holds (True) or ``timeout`` s pass (its last answer)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return condition()


_HANDED_OUT: set[int] = set()
WORKER_PORTS = 2000  # loopback ports of its own for each pytest-xdist worker, below the kernel's
FIRST_WORKER_PORT = 20000  # ephemeral range (32768+): no port of one worker is another's


def _worker_ports() -> range | None:
    """This pytest-xdist worker's own port range (gw0, gw1, ...); None outside xdist."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw"):
        return None
    start = FIRST_WORKER_PORT + WORKER_PORTS * int(worker[2:])
    return range(start, start + WORKER_PORTS)


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A free loopback port never handed out before in this process.

    The kernel may give the same ephemeral port to two back-to-back calls once the first
    socket is closed; two services told the same port would then collide (seen in CI). Under
    pytest-xdist each worker hands out ports from a range of its own, so two workers never
    pick the same port either.
    """
    own = _worker_ports()
    if own is not None:
        for port in own:
            if port not in _HANDED_OUT and _bindable(port):
                _HANDED_OUT.add(port)
                return port
        raise RuntimeError(f"no free port left in {own} for {os.environ['PYTEST_XDIST_WORKER']}")
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as docker-compose and kustomize read them (no quotes, no expansion)."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{path}: not KEY=VALUE: {line!r}"
            values[key.strip()] = value
    return values


def settings_env_names() -> set[str]:
    """Every environment name genreops' Settings reads: GENREOPS_<field> and aliases."""
    names = set()
    for field_name, field in Settings.model_fields.items():
        names.add(f"GENREOPS_{field_name.upper()}")
        alias = field.validation_alias
        choices = getattr(alias, "choices", [alias] if isinstance(alias, str) else [])
        names.update(c.upper() for c in choices if isinstance(c, str))
    return names


def ensemble_answers(metrics_url: str) -> int:
    """Requests a Triton server's ensemble answered (its own counter; 0 after a restart)."""
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        text = response.read().decode()
    return int(
        sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("nv_inference_request_success{") and 'model="genre_ensemble"' in line
        )
    )


def alive(process: psutil.Process) -> bool:
    """Running, not a zombie (tritonserver does not reap a stub it did not stop itself)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def free_port_block(size: int) -> int:
    """The first of ``size`` consecutive free loopback ports, all handed out (a Triton server
    and its replicas on ports + 10 * i)."""
    own = _worker_ports() or range(40000, 60000)
    for first in range(own.start, own.stop - size):
        block = range(first, first + size)
        if all(p not in _HANDED_OUT and _bindable(p) for p in block):
            _HANDED_OUT.update(block)
            return first
    raise RuntimeError(f"no {size} consecutive free ports in {own}")


# --- PostgreSQL (the server on this machine: 127.0.0.1:5432, user postgres, trust auth) ---

HOST, PORT = "127.0.0.1", 5432
SERVER = f"postgresql://postgres@{HOST}:{PORT}"
DATABASE = "genreops_test"  # created once, never dropped; each session uses its own schemas


def ensure_schema_at_once(url: str, count: int = 4) -> tuple[list[list[str]], list[BaseException]]:
    """``count`` monitoring stores on ``url`` run ``ensure_schema()`` at the same moment, each in
    its own thread (like Triton instances starting together): what each reported changing,
    and every error raised."""
    from genreops.monitoring.store import MonitoringStore

    barrier = threading.Barrier(count)
    said: list[list[str]] = []
    errors: list[BaseException] = []

    def run() -> None:
        store = MonitoringStore(url)
        try:
            barrier.wait()
            said.append(store.ensure_schema())
        except BaseException as error:
            errors.append(error)
        finally:
            store.close()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return said, errors


def postgres_or_skip() -> Any:
    """psycopg2, once the test database exists; skips the test without a local PostgreSQL."""
    psycopg2 = pytest.importorskip("psycopg2")
    try:
        connection = psycopg2.connect(f"{SERVER}/postgres", connect_timeout=5)
    except psycopg2.OperationalError as error:
        pytest.skip(f"no PostgreSQL at {HOST}:{PORT} (user postgres): {error}")
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
        if cursor.fetchone() is None:
            with contextlib.suppress(psycopg2.errors.DuplicateDatabase):  # a racing session
                cursor.execute(f'CREATE DATABASE "{DATABASE}"')  # fixed identifier, not input
    connection.close()
    return psycopg2


def postgres_url(schema: str, port: int = PORT) -> str:
    """A URL into ``schema`` of the test database, optionally through a proxy port."""
    return f"postgresql://postgres@{HOST}:{port}/{DATABASE}?options=-csearch_path%3D{schema}"


class TcpProxy:
    """Forwards 127.0.0.1:port to PostgreSQL; ``stop`` drops the listener and every connection."""

    def __init__(self, port: int, target: tuple[str, int] = (HOST, PORT)) -> None:
        self.port = port
        self.target = target
        self.connections = 0
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((HOST, self.port))
        listener.listen(64)
        self._listener = listener
        self._acceptor = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._acceptor.start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
                self.connections += 1
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept() on Linux
            self._listener.close()
            self._listener = None
        if self._acceptor is not None:
            self._acceptor.join(timeout=10)
            self._acceptor = None
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for end in sockets:
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()


# --- the native stack, run as a user runs it ------------------------------------------

GENREOPS = str(Path(sys.executable).with_name("genreops"))
PORT_SETTINGS = (
    "GENREOPS_S3_PORT",
    "GENREOPS_MLFLOW_PORT",
    "GENREOPS_PREFECT_PORT",
    "GENREOPS_TRITON_HTTP_PORT",
    "GENREOPS_TRITON_GRPC_PORT",
    "GENREOPS_TRITON_METRICS_PORT",
    "GENREOPS_PROMETHEUS_PORT",
    "GENREOPS_DRIFT_UI_PORT",
    "GENREOPS_MONITOR_PORT",
    "GENREOPS_ALERTMANAGER_PORT",
    "GENREOPS_DASK_SCHEDULER_PORT",
    "GENREOPS_DASK_DASHBOARD_PORT",
)


TEST_REPLICAS = 2  # Triton replicas a test stack may run (GENREOPS_TRITON_REPLICAS)


class Cli:
    """Runs `genreops` in a clean environment: only this test's home and ports."""

    def __init__(self, home: Path, cwd: Path) -> None:
        self.home = home
        self.cwd = cwd
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("GENREOPS_", "PREFECT_", "AWS_", "MLFLOW_"))
        }
        self.env["GENREOPS_HOME"] = str(home)
        self.ports = {name: free_port() for name in PORT_SETTINGS if "_TRITON_" not in name}
        triton = free_port_block(3 + 10 * (TEST_REPLICAS - 1))  # replica i: ports + 10 i
        self.ports.update(
            GENREOPS_TRITON_HTTP_PORT=triton,
            GENREOPS_TRITON_GRPC_PORT=triton + 1,
            GENREOPS_TRITON_METRICS_PORT=triton + 2,
        )
        self.env.update({name: str(port) for name, port in self.ports.items()})

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [GENREOPS, *args],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        if check and result.returncode != 0:
            logs = "\n".join(
                f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                for p in sorted((self.home / "logs").glob("*.log"))
            )
            raise AssertionError(
                f"genreops {' '.join(args)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}\n{logs}"
            )
        return result

    def status(self) -> dict[str, dict[str, Any]]:
        rows = json.loads(self("stack", "status", "--output", "json", check=False).stdout)
        return {row["service"]: row for row in rows}

    @property
    def prefect_api(self) -> str:
        return f"http://127.0.0.1:{self.ports['GENREOPS_PREFECT_PORT']}/api"


def api(url: str) -> Any:
    """GET a JSON answer (Prometheus, the Evidently UI); Prefect goes through Prefect's client,
    ``genreops.platform.stack.prefect_api.prefect_client``."""
    request = urllib.request.Request(url)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=30) as response:
        return json.loads(response.read())


def recorded(home: Path) -> dict[str, Any]:
    records = {}
    for service in SERVICES:
        record = read_record(home / "run" / f"{service}.json", service)
        if record is not None:
            records[service] = record
    return records


def start_monitor(
    folder: Path, port: int, database_url: str, **settings: str
) -> subprocess.Popen[bytes]:
    """`genreops monitor` as the stack runs it, on ``database_url``, with more settings."""
    from genreops.core.processes import http_answers, start_process

    env = {
        **os.environ,
        "GENREOPS_HOME": str(folder / "home"),
        "GENREOPS_DATABASE_URL": database_url,
        "GENREOPS_USE_STACK_ENV": "false",
        **settings,
    }
    url = f"http://127.0.0.1:{port}"
    return start_process(
        "the monitor service",
        [sys.executable, "-m", "genreops.app.cli", "monitor", "--port", str(port)],
        ready=lambda: http_answers(f"{url}/healthz", expect="{"),
        url=url,
        log_path=folder / "monitor.log",
        env=env,
    )


# --- memory over repeated hostile input (issue 14) ---------------------------------------

EARLY_PASSES = 5  # their highest reading is the high-water mark a process may return to
LATE_PASSES = 3  # their lowest reading must not be above it...
GROWTH_TOLERANCE = 0.10  # ...by more than this: a process keeping ~20 MB a pass fails


def memory_grew(by_pass: Sequence[Sequence[float]]) -> bool:
    """A leak lifts even the lowest late reading above every earlier one; a high-water mark
    (reached, left and reached again) or overlap-dependent buffers do not.

    ``by_pass``: one process's readings of each pass (one or more per pass). tritonserver's
    RSS moves between levels with how many requests happen to overlap (seen: 250, 203, 207,
    232, 226, 266 MB; and 350, 286 x 4, 313, 355, 354, 354 MB: pass 1's level, left, then
    reached again), so any rule on single readings or on floors alone trips on it. A leak keeps
    growing (before issue 14's fix: 46 -> 903 MB over seven passes) and fails this."""
    early = max(value for reading in by_pass[:EARLY_PASSES] for value in reading)
    late = min(value for reading in by_pass[-LATE_PASSES:] for value in reading)
    return late > early * (1 + GROWTH_TOLERANCE)


# --- reliability figures (docs/RELIABILITY.md, issue 6) -------------------------------

# `make test` runs every reliability test in its fast size; `make reliability` sets "full".
RELIABILITY_FULL = os.environ.get("GENREOPS_RELIABILITY", "fast") == "full"
RELIABILITY_OUT = Path(
    os.environ.get(
        "GENREOPS_RELIABILITY_OUT",
        Path(__file__).resolve().parents[1] / "test-output" / "reliability",
    )
)


def record_reliability(section: str, name: str, figures: dict[str, Any]) -> Path:
    """Keep one result's figures for tools/reliability_report.py (one JSON file per result).

    ``section`` is one of bad_inputs, faults, load, security; ``name`` identifies the result
    within it (a door, a fault, a phase, a check). Written before the test's assertions, so a
    failing run still reports what it measured.
    """
    folder = RELIABILITY_OUT / section
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    payload = {"section": section, "name": name, "mode": "full" if RELIABILITY_FULL else "fast"}
    path.write_text(json.dumps({**payload, **figures}, indent=2, default=str) + "\n")
    return path


@contextlib.contextmanager
def running_ensemble(
    repository: Path,
    home: Path,
    *,
    database_url: str | None = None,
    state_dir: Path | None = None,
    log_path: Path | None = None,
    timeout: float = 180.0,
    extra_args: Sequence[str] = (),
    ports: TritonPorts | None = None,
) -> Iterator[tuple[subprocess.Popen[bytes], TritonPorts]]:
    """The ensemble of ``repository`` on a real tritonserver (``ports`` None: free ones; every
    model loaded) whose Python stubs keep their state under ``home``: drift state and the
    monitoring store (SQLite there unless ``database_url``). Stopped on exit."""
    from genreops.serving.publish import MODELS

    ports = ports or TritonPorts(http=free_port(), grpc=free_port(), metrics=free_port())
    with pytest.MonkeyPatch.context() as patch:  # the stubs read settings at start
        patch.setenv("GENREOPS_HOME", str(home))
        if database_url is None:
            patch.delenv("GENREOPS_DATABASE_URL", raising=False)
        else:
            patch.setenv("GENREOPS_DATABASE_URL", database_url)
        get_settings.cache_clear()
        try:
            process = start_triton(
                repository,
                state_dir=state_dir or home,
                ports=ports,
                log_path=log_path or home / "triton.log",
                load_models=list(MODELS),  # the fallback is not in the ensemble graph (BLS)
                timeout=timeout,
                extra_args=extra_args,
            )
        finally:
            get_settings.cache_clear()
    try:
        yield process, ports
    finally:
        stop_triton(process)


SERVING_SECONDS = 10.0  # clip length of the serving corpora (and the serving window)


def serving_options() -> ServingOptions:
    """Small drift windows, so a few dozen drifted clips open the gate."""
    return ServingOptions(
        window_seconds=SERVING_SECONDS,
        drift_window=30,
        drift_min_samples=20,
        drift_test_every=10,
        max_batch=8,
    )
