"""Serving speed of ``genre_ensemble`` on the real tritonserver, and what the drift gate costs.

Builds everything in a fresh GENREOPS_HOME (a temp dir unless ``--keep DIR``): a synthetic
corpus of 30 s clips, features with a 30 s window, a short training (Prefect flow + MLflow),
champion/challenger registered and published with ``ServingOptions(window_seconds=30)``, then
the real tritonserver. Each setting is published as its own repository version and hot-loaded
(``reload_server``); settings alternate for ``--rounds`` rounds so that load from other jobs on
the shared machine hits both alike:

- drift tests on: the shipped defaults (the record's window 50, min 20, a test every 25);
- drift tests off: the same with ``drift_test_every=10**9``, so no recorded test ever runs.
  There is no switch for the gate itself: the predictor still judges every request
  (``genreops.monitoring.novelty``: its OOD score and the detector, microseconds, measured alone by
  ``bench/drift.py``) and feeds the drift worker, so "off" isolates the cost of the tests.

After each reload (and once the new drift worker is ready and the old one gone): a warm-up,
sequential requests (concurrency 1), then ``--concurrency`` threads for ``--duration`` s. Every
request is one 30 s wav file (gRPC, AUDIO [1,1] BYTES + CLIP_ID), timed by wall clock here.
Per phase it also reads Triton's per-model metrics, ``genreops_drift_tests_total`` and the CPU
time of the server's processes (tritonserver, each model's stubs, the drift worker), this
client and the whole machine (/proc).

Goals (issue): p50 <= 80 ms and p99 <= 200 ms per clip; >= 25 clips/s on 2 cores with
concurrency 4; the drift gate adds <= 10% latency. Prints a markdown block; it does not write
bench/RESULTS.md.

    .venv/bin/python bench/serving.py
    .venv/bin/python bench/serving.py --clips-per-genre 10 --duration 30 --keep /tmp/bench-home
"""

from __future__ import annotations

import os

from machine import describe

# Offline machine: telemetry only produces errors. Before Prefect or MLflow is imported.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import argparse
import itertools
import json
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np

from genreops.app.sample import TRAIN, SampleCorpus, render_sample_corpora, train_sample_models
from genreops.core.settings import get_settings
from genreops.data.features import SCHEMA_HASH
from genreops.monitoring.drift import read_state
from genreops.serving.publish import MODELS, ServingOptions, publish_registered
from genreops.serving.triton.server import TritonPorts, start_triton, stop_triton
from genreops.training.tracking import TrackingTarget

SECONDS = 30.0
ENSEMBLE = "genre_ensemble"
NORMAL = ServingOptions(window_seconds=SECONDS)
NO_TESTS = replace(NORMAL, drift_test_every=10**9)
SETTINGS = {"on": NORMAL, "off": NO_TESTS}
GOAL_P50_MS, GOAL_P99_MS, GOAL_CLIPS_S, GOAL_DRIFT_PCT = 80.0, 200.0, 25.0, 10.0
MARKER = "bench-serving.json"
CLK_TCK = os.sysconf("SC_CLK_TCK")
TRITON_METRICS = (
    "nv_inference_request_success",
    "nv_inference_request_failure",
    "nv_inference_exec_count",
    "nv_inference_request_duration_us",
    "nv_inference_queue_duration_us",
    "nv_inference_compute_input_duration_us",
    "nv_inference_compute_infer_duration_us",
    "nv_inference_compute_output_duration_us",
)
DRIFT_TESTS_METRIC = "genreops_drift_tests_total"
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def say(message: str) -> None:
    """Progress goes to stderr; stdout carries only the markdown block."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------- setup


@dataclass
class Setup:
    home: Path
    train_clips: int
    served: list[Path]
    champion: str = ""
    challenger: str = ""
    train_seconds: float = 0.0


def build(
    home: Path, per_genre: int, served_per_genre: int, families: list[str], trials: int
) -> Setup:
    """Corpus, features, training and registration, or a finished earlier build in ``home``."""
    params = {
        "per_genre": per_genre,
        "served_per_genre": served_per_genre,
        "families": families,
        "trials": trials,
        "seconds": SECONDS,
        "schema": SCHEMA_HASH,
    }
    marker = home / MARKER
    started = time.perf_counter()
    say(f"rendering {per_genre}/genre training + {served_per_genre}/genre served clips")
    clips = render_sample_corpora(
        home,
        per_genre=per_genre,
        seconds=SECONDS,
        corpora=[SampleCorpus("served", per_genre=served_per_genre, seed=5)],
    )
    train_clips, served = len(clips[TRAIN]), clips["served"]
    if marker.exists() and json.loads(marker.read_text()) == params:
        say(f"{home}: reusing the trained and registered models of an earlier run")
        return Setup(home, train_clips, served)
    train_sample_models(home, seconds=SECONDS, families=families, trials=trials, say=say)
    marker.write_text(json.dumps(params))
    return Setup(home, train_clips, served, train_seconds=time.perf_counter() - started)


# ---------------------------------------------------------------------------- measurements


@dataclass
class Load:
    """What one load phase saw from the client side."""

    latencies_ms: list[float]
    seconds: float
    errors: list[str] = field(default_factory=list)
    drift_answers: int = 0
    models: Counter[str] = field(default_factory=Counter)
    correct: int = 0

    @property
    def done(self) -> int:
        return len(self.latencies_ms)

    @property
    def throughput(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0


def run_load(
    url: str,
    payloads: list[tuple[bytes, str]],
    concurrency: int,
    stop: threading.Event,
    *,
    requests: int | None = None,
    duration: float | None = None,
) -> Load:
    """``concurrency`` threads, each with its own gRPC client, one file per request."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    counter = itertools.count()
    lock = threading.Lock()
    load = Load([], 0.0)
    started = time.perf_counter()
    deadline = started + duration if duration is not None else float("inf")

    def worker() -> None:
        client = grpcclient.InferenceServerClient(url)
        outputs = [grpcclient.InferRequestedOutput(n) for n in ("GENRE", "MODEL", "DRIFT")]
        try:
            while not stop.is_set():
                i = next(counter)
                if (requests is not None and i >= requests) or time.perf_counter() >= deadline:
                    return
                data, genre = payloads[i % len(payloads)]
                audio = grpcclient.InferInput("AUDIO", [1, 1], "BYTES")
                audio.set_data_from_numpy(np.array([[data]], dtype=np.object_))
                clip = grpcclient.InferInput("CLIP_ID", [1, 1], "BYTES")
                clip.set_data_from_numpy(np.array([[f"bench-{i}".encode()]], dtype=np.object_))
                t0 = time.perf_counter()
                try:
                    result = client.infer(ENSEMBLE, [audio, clip], outputs=outputs)
                except InferenceServerException as error:
                    with lock:
                        load.errors.append(str(error))
                    continue
                ms = (time.perf_counter() - t0) * 1e3
                answer = bytes(result.as_numpy("GENRE")[0][0]).decode()
                model = bytes(result.as_numpy("MODEL")[0][0]).decode()
                drift = bool(result.as_numpy("DRIFT")[0][0])
                with lock:
                    load.latencies_ms.append(ms)
                    load.models[model] += 1
                    load.drift_answers += drift
                    load.correct += answer == genre
        finally:
            client.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    load.seconds = time.perf_counter() - started
    return load


_SAMPLE = re.compile(r"^([A-Za-z_:][\w:]*)(?:\{([^}]*)\})?\s+(\S+)")
_MODEL_LABEL = re.compile(r'model="([^"]*)"')


def scrape(metrics_url: str) -> dict[tuple[str, str], float]:
    """(metric, model) -> value summed over versions and other labels; model "" if none."""
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        text = response.read().decode()
    out: dict[tuple[str, str], float] = defaultdict(float)
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if not match or match.group(1) not in (*TRITON_METRICS, DRIFT_TESTS_METRIC):
            continue
        model = _MODEL_LABEL.search(match.group(2) or "")
        out[(match.group(1), model.group(1) if model else "")] += float(match.group(3))
    return out


def _stat(pid: int | str) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of a process, from /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK_TCK


def _kind(pid: int, root: int) -> str:
    if pid == root:
        return "tritonserver"
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "other"
    if "genreops.monitoring.drift" in cmdline:
        return "drift worker"
    if "triton_python_backend_stub" in cmdline:
        for model in MODELS:
            if f"/{model}/" in cmdline:
                return f"{model} stub(s)"
        return "other stub(s)"
    return "other"


def server_processes(root: int) -> dict[int, tuple[str, float]]:
    """pid -> (kind, CPU seconds) for tritonserver and every descendant."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(entry.name)
            if stat is not None:
                parents[int(entry.name)], cpu[int(entry.name)] = stat
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    return {pid: (_kind(pid, root), cpu[pid]) for pid in tree if pid in cpu}


def machine_busy() -> float:
    """CPU seconds the whole machine spent busy since boot (all cores)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / CLK_TCK


@dataclass
class Snapshot:
    at: float
    metrics: dict[tuple[str, str], float]
    processes: dict[int, tuple[str, float]]
    client_cpu: float
    machine: float
    drift_state: dict[str, Any]

    @classmethod
    def take(cls, metrics_url: str, root: int, drift_dir: Path) -> Snapshot:
        times = os.times()
        return cls(
            time.perf_counter(),
            scrape(metrics_url),
            server_processes(root),
            times.user + times.system,
            machine_busy(),
            read_state(drift_dir) or {},
        )


@dataclass
class Phase:
    setting: str
    round: int
    concurrency: int
    load: Load
    load_avg: tuple[float, float]  # 1-min load average at start and end
    metrics: dict[tuple[str, str], float]  # deltas
    cpu: dict[str, float]  # CPU seconds by process kind, "client", "machine", "other"
    drift_tests: float  # genreops_drift_tests_total delta
    state_tests: int  # tests_run delta from the worker's state.json
    coalesced: int


def measure(
    setting: str,
    round_no: int,
    concurrency: int,
    run: Any,
    metrics_url: str,
    root: int,
    drift_dir: Path,
) -> Phase:
    load_start = os.getloadavg()[0]
    before = Snapshot.take(metrics_url, root, drift_dir)
    load = run()
    time.sleep(0.5)  # the predictor's metric and state.json catch up
    after = Snapshot.take(metrics_url, root, drift_dir)
    keys = set(before.metrics) | set(after.metrics)
    deltas = {k: after.metrics.get(k, 0.0) - before.metrics.get(k, 0.0) for k in keys}
    cpu: dict[str, float] = defaultdict(float)
    for pid, (kind, seconds) in after.processes.items():
        cpu[kind] += seconds - before.processes.get(pid, (kind, 0.0))[1]
    server = sum(cpu.values())
    cpu["client (this process)"] = after.client_cpu - before.client_cpu
    cpu["machine"] = after.machine - before.machine
    cpu["other processes"] = cpu["machine"] - server - cpu["client (this process)"]
    b, a = before.drift_state, after.drift_state
    return Phase(
        setting,
        round_no,
        concurrency,
        load,
        (load_start, os.getloadavg()[0]),
        deltas,
        dict(cpu),
        deltas.get((DRIFT_TESTS_METRIC, ""), 0.0),
        int(a.get("tests_run", 0)) - int(b.get("tests_run", 0)),
        int(a.get("tests_coalesced", 0)) - int(b.get("tests_coalesced", 0)),
    )


def wait_for_drift_worker(drift_dir: Path, root: int, timeout: float = 180.0) -> None:
    """The new version's worker is ready and no old one is left."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        workers = [k for k, _ in server_processes(root).values() if k == "drift worker"]
        if (read_state(drift_dir) or {}).get("ready") and len(workers) == 1:
            return
        time.sleep(0.5)
    raise RuntimeError(f"drift worker in {drift_dir} not ready alone after {timeout:.0f} s")


# ----------------------------------------------------------------------------------- report


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def change(new: float, base: float) -> float:
    return (new - base) / base * 100.0 if base else float("nan")


def met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def report(
    args: argparse.Namespace,
    setup: Setup,
    phases: list[Phase],
    meta: dict[str, str],
    load_avg: tuple[float, float],
    payload_bytes: int,
    test_seconds: list[float],
) -> str:
    lines = [
        f"### {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: genre_ensemble on tritonserver, "
        f"one 30 s wav per request, gRPC",
        "",
        "- command: `.venv/bin/python bench/serving.py " + " ".join(sys.argv[1:]) + "`",
        f"- machine: {describe()}, shared with other jobs; 1-min load average {load_avg[0]:.2f} "
        f"at start, {load_avg[1]:.2f} at end (per phase below); the client runs on the same "
        "2 cores (its CPU is counted below)",
        f"- versions: Python {platform.python_version()}, tritonserver {meta['triton']} "
        f"(nvidia-pytriton {metadata.version('nvidia-pytriton')}), tritonclient "
        f"{metadata.version('tritonclient')}, numpy {np.__version__}, librosa "
        f"{metadata.version('librosa')}, scikit-learn {metadata.version('scikit-learn')}, "
        f"xgboost {metadata.version('xgboost')}, evidently {metadata.version('evidently')}, "
        f"genreops {metadata.version('genreops')} (schema {SCHEMA_HASH})",
        "- thread settings passed to the server: "
        + (", ".join(f"{k}={os.environ[k]}" for k in THREAD_VARS if k in os.environ) or "none")
        + " (the Python stubs inherit this environment)",
        f"- models: champion {meta['champion']}, challenger {meta['challenger']}; trained on "
        f"{setup.train_clips} synthetic clips x 30 s ({args.families}, {args.trials} trials"
        f"/family)",
        f"- served: {len(setup.served)} other synthetic clips x 30 s, 16-bit wav "
        f"({payload_bytes / 1e6:.2f} MB each), cycled; warm-up {args.warmup} requests after "
        "each reload",
        f"- serving options: window 30 s, max_batch {NORMAL.max_batch}, "
        f"{NORMAL.preprocess_instances} preprocessor instances, 1 predictor instance; drift "
        f"**on** = window {NORMAL.drift_window}, min {NORMAL.drift_min_samples}, a test every "
        f"{NORMAL.drift_test_every} samples; drift **off** = the same with "
        "`drift_test_every=10**9` (no recorded test runs; the predictor still judges every "
        "request and feeds the drift worker, so those costs are in both)",
        f"- order: {', '.join(f'{p.setting}' for p in phases if p.concurrency == 1)} "
        "(alternating which comes first; each a new repository version, hot-loaded; measured "
        "once the new drift worker was ready and the old one gone)",
        "",
        "| drift tests | round | concurrency | requests | errors | clips/s | p50 ms | p90 ms "
        "| p99 ms | mean ms | max ms | load 1-min | drift tests run | other jobs' CPU (cores) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for p in phases:
        lat = p.load.latencies_ms
        tests = f"{p.drift_tests:.0f}"
        if p.state_tests != p.drift_tests or p.coalesced:
            tests += f" (worker: {p.state_tests} run, {p.coalesced} coalesced)"
        lines.append(
            f"| {p.setting} | {p.round} | {p.concurrency} | {p.load.done} | {len(p.load.errors)} "
            f"| {p.load.throughput:.1f} | {pct(lat, 50):.1f} | {pct(lat, 90):.1f} "
            f"| {pct(lat, 99):.1f} | {np.mean(lat):.1f} | {max(lat):.1f} "
            f"| {p.load_avg[0]:.2f} → {p.load_avg[1]:.2f} | {tests} "
            f"| {p.cpu['other processes'] / p.load.seconds:.2f} |"
        )
    lines.append("")

    def pooled(setting: str, concurrency: int) -> tuple[list[float], float, list[Phase]]:
        chosen = [p for p in phases if p.setting == setting and p.concurrency == concurrency]
        lat = [x for p in chosen for x in p.load.latencies_ms]
        done = sum(p.load.done for p in chosen)
        seconds = sum(p.load.seconds for p in chosen)
        return lat, done / seconds if seconds else 0.0, chosen

    c = args.concurrency
    on1, _, on1_phases = pooled("on", 1)
    off1, _, _ = pooled("off", 1)
    on4, on4_tput, _ = pooled("on", c)
    off4, off4_tput, _ = pooled("off", c)
    errors = [e for p in phases for e in p.load.errors]
    drift_answers = sum(p.load.drift_answers for p in phases)
    correct = sum(p.load.correct for p in on1_phases)
    answered = sum(p.load.done for p in on1_phases)
    models = Counter[str]()
    for p in phases:
        models.update(p.load.models)
    lines += [
        "Goals, with the drift gate as shipped (drift tests on), all rounds pooled:",
        "",
        f"- sequential p50 **{pct(on1, 50):.1f} ms** (goal <= {GOAL_P50_MS:.0f}): "
        f"{met(pct(on1, 50) <= GOAL_P50_MS)}; p99 **{pct(on1, 99):.1f} ms** (goal <= "
        f"{GOAL_P99_MS:.0f}): {met(pct(on1, 99) <= GOAL_P99_MS)}",
        f"- concurrency {c}: **{on4_tput:.1f} clips/s** (goal >= {GOAL_CLIPS_S:.0f}): "
        f"{met(on4_tput >= GOAL_CLIPS_S)}; p50 {pct(on4, 50):.1f} ms, p99 {pct(on4, 99):.1f} ms",
        f"- drift tests on vs off: sequential p50 **{change(pct(on1, 50), pct(off1, 50)):+.1f}%**"
        f" ({pct(off1, 50):.1f} → {pct(on1, 50):.1f} ms), mean "
        f"{change(float(np.mean(on1)), float(np.mean(off1))):+.1f}%, p99 "
        f"{change(pct(on1, 99), pct(off1, 99)):+.1f}%; concurrency {c} p50 "
        f"**{change(pct(on4, 50), pct(off4, 50)):+.1f}%** ({pct(off4, 50):.1f} → "
        f"{pct(on4, 50):.1f} ms), throughput {change(on4_tput, off4_tput):+.1f}% "
        f"({off4_tput:.1f} → {on4_tput:.1f} clips/s); goal <= {GOAL_DRIFT_PCT:.0f}% added "
        f"latency: {met(change(pct(on1, 50), pct(off1, 50)) <= GOAL_DRIFT_PCT)} sequential, "
        f"{met(change(pct(on4, 50), pct(off4, 50)) <= GOAL_DRIFT_PCT)} at concurrency {c}",
        f"- answers: {sum(p.load.done for p in phases)} ok, {len(errors)} failed"
        + (f" (first: {errors[0][:200]})" if errors else "")
        + f"; DRIFT true on {drift_answers}; by model "
        + ", ".join(f"{m} {n}" for m, n in sorted(models.items()))
        + f"; sequential accuracy on the served clips {correct / max(answered, 1):.2f}",
        f"- drift tests in the worker while drift tests were on (warm-ups and reloads "
        f"included): {len(test_seconds)}, "
        + (
            f"median {np.median(test_seconds):.1f} s each (min {min(test_seconds):.1f}, "
            f"max {max(test_seconds):.1f})"
            if test_seconds
            else "none finished"
        ),
        "",
        "Server side (Triton's metrics over each phase, rounds pooled; mean ms per request; "
        "a model's compute time is its batch's, counted once per request in the batch):",
        "",
        "| drift tests | concurrency | model | requests | mean batch | queue ms | compute ms "
        "| request ms |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for setting in SETTINGS:
        for conc in (1, c):
            chosen = [p for p in phases if p.setting == setting and p.concurrency == conc]
            for model in (ENSEMBLE, "preprocessor", "predictor", "fallback", "postprocessor"):

                def total(name: str, model: str = model, chosen: list[Phase] = chosen) -> float:
                    return sum(p.metrics.get((name, model), 0.0) for p in chosen)

                n = total("nv_inference_request_success")
                if n <= 0:
                    continue
                execs = total("nv_inference_exec_count")
                compute = sum(
                    total(f"nv_inference_compute_{k}_duration_us")
                    for k in ("input", "infer", "output")
                )
                lines.append(
                    f"| {setting} | {conc} | {model} | {n:.0f} | "
                    f"{n / execs if execs else float('nan'):.2f} | "
                    f"{total('nv_inference_queue_duration_us') / n / 1e3:.2f} | "
                    f"{compute / n / 1e3:.2f} | "
                    f"{total('nv_inference_request_duration_us') / n / 1e3:.2f} |"
                )
    lines += [
        "",
        "CPU time per answered clip (ms, /proc utime+stime, rounds pooled; a process that "
        "exited during a phase is missing):",
        "",
    ]
    kinds = sorted({k for p in phases for k in p.cpu if k not in ("machine", "other processes")})
    kinds = [k for k in kinds if k != "client (this process)"] + ["client (this process)"]
    lines.append("| drift tests | concurrency | " + " | ".join(kinds) + " | server total |")
    lines.append("|---|---:|" + "---:|" * (len(kinds) + 1))
    for setting in SETTINGS:
        for conc in (1, c):
            chosen = [p for p in phases if p.setting == setting and p.concurrency == conc]
            done = sum(p.load.done for p in chosen) or 1
            per = {k: sum(p.cpu.get(k, 0.0) for p in chosen) / done * 1e3 for k in kinds}
            server = sum(v for k, v in per.items() if k != "client (this process)")
            lines.append(
                f"| {setting} | {conc} | "
                + " | ".join(f"{per[k]:.1f}" for k in kinds)
                + f" | {server:.1f} |"
            )
    if setup.train_seconds:
        lines += [
            "",
            f"- setup (corpus, features, training, registry): {setup.train_seconds:.0f} s",
        ]
    return "\n".join(lines)


# -------------------------------------------------------------------------------------- main


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # so that the finally blocks stop the server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips-per-genre", type=int, default=10, help="training clips/genre")
    parser.add_argument("--served-per-genre", type=int, default=4, help="served clips/genre")
    parser.add_argument("--families", default="knn,random_forest,xgboost")
    parser.add_argument("--trials", type=int, default=5, help="Optuna trials per family")
    parser.add_argument("--duration", type=float, default=30.0, help="s per concurrent phase")
    parser.add_argument("--requests", type=int, default=200, help="sequential requests/phase")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2, help="rounds of on and off (ABBA order)")
    parser.add_argument("--keep", type=Path, help="work in DIR and keep it (reused if complete)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _terminate)

    load_start = os.getloadavg()[0]
    for name in [n for n in os.environ if n.startswith("GENREOPS_")]:
        del os.environ[name]  # a self-contained run: nothing from the caller's stack
    temp = None
    if args.keep:
        home = args.keep.resolve()
    else:
        temp = tempfile.mkdtemp(prefix="genreops-bench-serving-")
        home = Path(temp)
    home.mkdir(parents=True, exist_ok=True)
    os.environ["GENREOPS_HOME"] = str(home)
    get_settings.cache_clear()
    process: subprocess.Popen[bytes] | None = None
    stop = threading.Event()
    try:
        families = [f.strip() for f in args.families.split(",") if f.strip()]
        setup = build(home, args.clips_per_genre, args.served_per_genre, families, args.trials)
        settings = get_settings()
        for stale in ("repository", "serving"):
            shutil.rmtree(home / stale, ignore_errors=True)  # from an earlier --keep run
        target = TrackingTarget.from_settings(settings)
        repository = home / "repository"
        payloads = [(p.read_bytes(), p.parent.name) for p in setup.served]

        say("publishing (drift tests on) and starting tritonserver")
        published = publish_registered(
            target, repository, model_name=settings.model_name, options=NORMAL
        )
        ports = _ports()
        process = start_triton(
            repository,
            state_dir=home,
            ports=ports,
            log_path=home / "triton.log",
            load_models=list(MODELS),
        )
        import tritonclient.grpc as grpcclient

        meta = {
            "triton": grpcclient.InferenceServerClient(ports.grpc_url)
            .get_server_metadata()
            .version,
            "champion": f"{published.champion.label} ({published.champion.family})",
            "challenger": f"{published.challenger.label} ({published.challenger.family})",
        }
        phases: list[Phase] = []
        tests_by_version: dict[Path, list[float]] = {}
        # ABBA: on, off, off, on, ...: each setting as often first in a round as second, so
        # what drifts over a run (warm caches, the first phase after the start) cancels out
        order = [s for r in range(args.rounds) for s in (list(SETTINGS)[:: 1 - 2 * (r % 2)])]
        for index, setting in enumerate(order):
            round_no = index // len(SETTINGS) + 1
            if index > 0 and setting != order[index - 1]:
                say(f"publishing drift tests {setting} and reloading")
                published = publish_registered(
                    target,
                    repository,
                    model_name=settings.model_name,
                    options=SETTINGS[setting],
                    server_url=ports.http_url,
                )
            drift_dir = settings.serving_dir / "drift" / f"v{published.version}"
            wait_for_drift_worker(drift_dir, process.pid)
            time.sleep(2.0)
            warm = run_load(ports.grpc_url, payloads, 1, stop, requests=args.warmup)
            if warm.errors:
                raise RuntimeError(f"warm-up failed: {warm.errors[0]}")
            say(f"round {round_no}, drift tests {setting}: {args.requests} sequential requests")
            phases.append(
                measure(
                    setting,
                    round_no,
                    1,
                    lambda: run_load(ports.grpc_url, payloads, 1, stop, requests=args.requests),
                    ports.metrics_url,
                    process.pid,
                    drift_dir,
                )
            )
            say(f"round {round_no}, drift tests {setting}: concurrency {args.concurrency}")
            phases.append(
                measure(
                    setting,
                    round_no,
                    args.concurrency,
                    lambda: run_load(
                        ports.grpc_url,
                        payloads,
                        args.concurrency,
                        stop,
                        duration=args.duration,
                    ),
                    ports.metrics_url,
                    process.pid,
                    drift_dir,
                )
            )
            tests_by_version[drift_dir] = _test_seconds(drift_dir)  # a version's file grows
            last = phases[-1]
            say(
                f"  {last.load.throughput:.1f} clips/s, p50 "
                f"{pct(last.load.latencies_ms, 50):.1f} ms, {last.drift_tests:.0f} drift tests"
            )
        text = report(
            args,
            setup,
            phases,
            meta,
            (load_start, os.getloadavg()[0]),
            len(payloads[0][0]),
            [t for tests in tests_by_version.values() for t in tests],
        )
    finally:
        stop.set()
        if process is not None:
            say("stopping tritonserver")
            stop_triton(process)
        get_settings.cache_clear()
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
    print(text)
    return 0


def _test_seconds(drift_dir: Path) -> list[float]:
    """How long each drift test the worker recorded in ``drift_dir`` took."""
    path = drift_dir / "drift_tests.jsonl"
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    return [float(json.loads(x).get("seconds") or 0.0) for x in lines if x.strip()]


def _ports() -> TritonPorts:
    """Three free loopback ports (asked of the OS, so nothing else holds them right now)."""
    import socket

    found = []
    sockets = []
    for _ in range(3):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sockets.append(sock)
        found.append(sock.getsockname()[1])
    for sock in sockets:
        sock.close()
    return TritonPorts(http=found[0], grpc=found[1], metrics=found[2])


if __name__ == "__main__":
    sys.exit(main())
