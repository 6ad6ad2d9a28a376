"""Capacity figures: extraction with 1 and 2 Dask workers, serving with 1 and 2 Triton
replicas, and the monitoring store's write rate on PostgreSQL.

``extraction`` (the default):

The stack's own services do the work (`genreops stack up --only s3,prefect,dask-workers` in a
temporary home, on ports of their own): the embedded S3 server holds the corpus, the
`extract-features` flow runs in this process (reporting to the stack's Prefect server) and
submits one task per chunk to the scheduler, and `dask worker` processes (one thread each)
read the clips from S3 and write their chunks back. Everything is on this machine, so the
workers share its cores with S3, the scheduler, Prefect and the flow's client: the report
gives the CPU each of them used.

Per configuration: a warm-up run on a few clips (imports and numba loading on the new worker
processes), then the timed run on the whole corpus into a fresh output. Adds a block to the
"Scaling" section of ``bench/RESULTS.md`` (``--no-record`` to skip).

    .venv/bin/python bench/scale.py                       # 200 clips x 30 s, 1 then 2 workers
    .venv/bin/python bench/scale.py extraction --clips-per-genre 10 --seconds 10 --no-record

``serving``: a short training and a published ensemble (as ``bench/serving.py`` builds them),
then one tritonserver, then a second replica on the same repository, each time loaded by the
product's client (genreops.serving.client.EnsembleClient over every replica) with 30 s clips:
clips/s, latency, CPU per clip in each stage (the preprocessor, predictor and postprocessor
stubs, the drift worker, tritonserver itself, the client) and memory per replica.

``store``: the serving processes' monitoring writer (genreops.monitoring.store.MonitoringWriter)
on the PostgreSQL server at 127.0.0.1:5432, in a schema of its own: prediction rows stored per
second, sustained.

    .venv/bin/python bench/scale.py serving --duration 60
    .venv/bin/python bench/scale.py store --rows 100000
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from machine import RESULTS, describe, record

SECTION = "## Scaling"
SECTION_INTRO = (
    "Extraction on the native stack's Dask cluster (`dask scheduler` + `dask worker`\n"
    "processes, one thread each), clips read from and chunks written to the embedded S3\n"
    "server, the `extract-features` flow as the client; everything on one machine. Goal:\n"
    "2 workers >= 1.8x the throughput of 1. Written by `bench/scale.py`; newest last.\n"
)
GOAL = 1.8
WARMUP = "s3://bench-raw/warmup"  # one clip per genre
DASK_TRIM = "MALLOC_TRIM_THRESHOLD_"  # what a Dask nanny sets for the workers it starts (65536)


@dataclass
class Measured:
    workers: int
    clips: int
    seconds: float
    cpu: dict[str, float]  # CPU seconds by process group during the timed run
    worker_rss_mb: float = 0.0  # the largest resident memory of one worker process seen

    @property
    def rate(self) -> float:
        return self.clips / self.seconds


class PeakRss:
    """The largest resident memory of any one descendant process of ``root``, sampled."""

    def __init__(self, root: int, every: float = 0.5) -> None:
        import threading

        self.root, self.every, self.peak_mb = root, every, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.every):
            try:
                members = psutil.Process(self.root).children(recursive=True)
            except psutil.NoSuchProcess:
                return
            for member in members:
                try:
                    self.peak_mb = max(self.peak_mb, member.memory_info().rss / 2**20)
                except psutil.NoSuchProcess:
                    continue

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _free_ports(count: int, first: int = 27000) -> list[int]:
    """Ports below the kernel's ephemeral range (32768+), which an outgoing connection could
    take between the two configurations' restarts."""
    found: list[int] = []
    for port in range(first, 32768):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        found.append(port)
        if len(found) == count:
            return found
    raise SystemExit("no free loopback ports below 32768")


def _cpu_seconds(pids: dict[str, list[int]]) -> dict[str, float]:
    """CPU time (user + system) of each group of processes and their children, so far."""
    totals: dict[str, float] = {}
    for group, roots in pids.items():
        total = 0.0
        for root in roots:
            try:
                process = psutil.Process(root)
                # the stack's services are this process' children too: itself alone
                family = [] if root == os.getpid() else process.children(recursive=True)
                for member in [process, *family]:
                    times = member.cpu_times()
                    total += times.user + times.system
            except psutil.NoSuchProcess:
                continue
        totals[group] = total
    return totals


def _warm_worker() -> int:
    """What a worker's first task would pay once: importing the extraction code."""
    import numpy as np

    from genreops.data.audio import SAMPLE_RATE
    from genreops.data.features import extract_features

    noise = np.random.default_rng(0).standard_normal(SAMPLE_RATE * 5).astype(np.float32)
    return len(extract_features(noise))


def _extract_repeatedly(clip: str, times: int, keep_freed: bool) -> float:
    """Seconds to compute one clip's features ``times`` times, no I/O (a ceiling's worker);
    ``keep_freed``: the allocator as extract_chunk sets it, else as the process started."""
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = "1"  # as a Dask nanny sets them for its worker
    from genreops.core.allocator import keep_freed_memory
    from genreops.data.audio import load_audio
    from genreops.data.features import extract_features

    if keep_freed:
        keep_freed_memory()
    samples = load_audio(clip, duration=30.0)
    extract_features(samples)  # numba compiled before the clock starts
    started = time.perf_counter()
    for _ in range(times):
        extract_features(samples)
    return time.perf_counter() - started


def _in_processes(count: int, clip: Path, times: int, *, keep_freed: bool = True) -> float:
    """Slowest of ``count`` new processes, each started as Dask's nanny starts a worker (with
    MALLOC_TRIM_THRESHOLD_=65536, where glibc reads it)."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    saved = os.environ.get(DASK_TRIM)
    os.environ[DASK_TRIM] = "65536"
    try:
        with ProcessPoolExecutor(count, mp_context=get_context("spawn")) as pool:
            args = ([str(clip)] * count, [times] * count, [keep_freed] * count)
            return max(pool.map(_extract_repeatedly, *args))
    finally:
        if saved is None:
            os.environ.pop(DASK_TRIM, None)
        else:
            os.environ[DASK_TRIM] = saved


def cores_ceiling(clip: Path, times: int = 40) -> tuple[float, float, float, float]:
    """What the cores themselves allow: the feature computation alone in 1 process, then in
    2 at once (no S3, no scheduler, no client), in processes started as Dask workers with the
    allocator as extraction sets it; and alone with the allocator Dask leaves. Returns (ms/clip
    alone, ms/clip paired, throughput of 2 over 1, ms/clip alone with Dask's allocator)."""
    alone = _in_processes(1, clip, times)
    paired = _in_processes(2, clip, times)
    dasks = _in_processes(1, clip, times, keep_freed=False)
    ms = 1000 / times
    return alone * ms, paired * ms, 2 * alone / paired, dasks * ms


def _stack_pids(stack: Any) -> dict[str, list[int]]:
    pids: dict[str, list[int]] = {}
    for service in ("dask-workers", "dask-scheduler", "s3", "prefect"):
        pid_record = stack.record(service)
        pids[service] = [pid_record.pid] if pid_record is not None else []
    pids["flow (this process)"] = [os.getpid()]
    return pids


def measure(home: Path, ports: dict[str, int], workers: int, corpus: str, chunk: int) -> Measured:
    """Start the stack's S3, Prefect and a cluster of ``workers``; warm up; time one run."""
    from distributed import Client

    from genreops.core.settings import Settings, get_settings
    from genreops.data.extraction import list_clips
    from genreops.platform.stack import Stack

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        home=home, use_stack_env=False, dask_workers=workers, **ports,
    )  # fmt: skip
    stack = Stack(settings)
    stack.up(only=["s3", "prefect", "dask-workers"])
    try:
        from genreops.platform.stack.services import stack_environment

        os.environ.update(stack_environment(settings, running=["s3", "prefect", "dask-workers"]))
        get_settings.cache_clear()
        from genreops.flows.extract import dask_runner, extract_features

        flow = extract_features.with_options(
            task_runner=dask_runner(address=stack.endpoints.dask_scheduler)
        )
        clips = len(list_clips(corpus, s3=get_settings().s3))
        with Client(stack.endpoints.dask_scheduler, timeout=60) as client:
            client.run(_warm_worker)  # imports and numba loading, before the clock starts
        flow(  # and the flow's own first-run costs (Prefect client, S3 sessions)
            input_url=WARMUP, output_url=f"s3://bench-features/warmup-{workers}",
            chunk_size=1, window_seconds=30.0,
        )  # fmt: skip
        output = f"s3://bench-features/run-{workers}-{int(time.time())}"
        pids = _stack_pids(stack)
        before = _cpu_seconds(pids)
        started = time.perf_counter()
        with PeakRss(pids["dask-workers"][0]) as rss:
            summary = flow(
                input_url=corpus, output_url=output, chunk_size=chunk, window_seconds=30.0
            )
        seconds = time.perf_counter() - started
        after = _cpu_seconds(pids)
        if summary.n_extracted != clips:
            raise SystemExit(f"{summary.n_extracted} of {clips} clips extracted")
        cpu = {k: after[k] - before[k] for k in after}
        return Measured(workers, clips, seconds, cpu, rss.peak_mb)
    finally:
        stack.down()


def render(
    args: argparse.Namespace,
    runs: list[Measured],
    load: tuple[float, float],
    ceiling: tuple[float, float, float, float],
) -> str:
    one, two = runs
    ratio = two.rate / one.rate
    lines = [
        f"### {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {one.clips} clips x {args.seconds:g} s, "
        f"chunks of {args.chunk}",
        "",
        f"- command: `.venv/bin/python bench/scale.py {' '.join(sys.argv[1:])}`",
        f"- machine: {describe()}; 1-min load average {load[0]:.2f} at start, {load[1]:.2f} at end",
        "- where: scheduler, workers, S3 server, Prefect server and the flow on this machine",
        "",
        "| workers | seconds | clips/s | worker CPU ms/clip | other CPU ms/clip (S3, scheduler, "
        "Prefect, flow) | peak RSS of a worker process MB |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        worker_cpu = run.cpu["dask-workers"]
        other = sum(v for k, v in run.cpu.items() if k != "dask-workers")
        lines.append(
            f"| {run.workers} | {run.seconds:.1f} | {run.rate:.2f} | "
            f"{1000 * worker_cpu / run.clips:.0f} | {1000 * other / run.clips:.0f} | "
            f"{run.worker_rss_mb:.0f} |"
        )
    lines += [
        "",
        f"- 2 workers: **{ratio:.2f}x** the throughput of 1 (goal >= {GOAL}x: "
        f"{'met' if ratio >= GOAL else 'not met'})",
        "- CPU by process group, 2 workers: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in two.cpu.items()),
        f"- the cores' own ceiling (the feature computation alone, no I/O): {ceiling[0]:.0f} "
        f"ms/clip in 1 process, {ceiling[1]:.0f} ms/clip each in 2 at once: **{ceiling[2]:.2f}x**",
        f"- the same alone with the allocator as Dask's nanny leaves it (MALLOC_TRIM_THRESHOLD_="
        f"65536; extraction keeps freed memory instead): {ceiling[3]:.0f} ms/clip",
    ]
    return "\n".join(lines) + "\n"


def extraction(args: argparse.Namespace) -> None:
    from genreops.data.storage import ensure_bucket, upload_dir
    from genreops.data.synth import render_corpus
    from genreops.platform import s3server

    base = Path(tempfile.mkdtemp(prefix="genreops-scale-"))
    names = ("s3_port", "prefect_port", "dask_scheduler_port", "dask_dashboard_port")
    ports = dict(zip(names, _free_ports(len(names)), strict=True))
    # the flow reports to the stack's Prefect server (set before Prefect is imported)
    os.environ["PREFECT_API_URL"] = f"http://127.0.0.1:{ports['prefect_port']}/api"
    corpus_dir, warmup_dir = base / "corpus", base / "warmup"
    print(f"rendering {args.clips_per_genre} clips per genre x {args.seconds:g} s in {base}")
    render_corpus(corpus_dir, per_genre=args.clips_per_genre, seconds=args.seconds, seed=5)
    render_corpus(warmup_dir, per_genre=1, seconds=args.seconds, seed=6)
    for folder in (corpus_dir, warmup_dir):
        (folder / "manifest.json").unlink(missing_ok=True)

    from genreops.core.settings import Settings
    from genreops.platform.stack import Stack

    home = base / "home"
    uploader = Stack(Settings(_env_file=None, home=home, use_stack_env=False, **ports))  # type: ignore[call-arg]
    uploader.up(only=["s3"])
    try:
        s3 = s3server.s3_config("127.0.0.1", ports["s3_port"])
        for bucket in ("s3://bench-raw/x", "s3://bench-features/x"):
            ensure_bucket(bucket, s3=s3)
        upload_dir(corpus_dir, "s3://bench-raw/corpus", s3=s3)
        upload_dir(warmup_dir, WARMUP, s3=s3)
    finally:
        uploader.down()

    load_start = os.getloadavg()[0]
    ceiling = cores_ceiling(next(corpus_dir.glob("*/*.wav")))
    print(
        f"the cores' ceiling: {ceiling[2]:.2f}x ({ceiling[0]:.0f} / {ceiling[1]:.0f} ms/clip); "
        f"{ceiling[3]:.0f} ms/clip with Dask's allocator settings"
    )
    runs = []
    for workers in (1, 2):
        run = measure(home, ports, workers, "s3://bench-raw/corpus", args.chunk)
        print(f"{workers} worker(s): {run.clips} clips in {run.seconds:.1f} s, {run.rate:.2f}/s")
        runs.append(run)
    block = render(args, runs, (load_start, os.getloadavg()[0]), ceiling)
    print(block)
    if not args.no_record:
        record(block, SECTION, SECTION_INTRO)
        print(f"recorded in {RESULTS}")


# --- serving: 1 and 2 Triton replicas ---------------------------------------------------------


@dataclass
class Served:
    replicas: int
    concurrency: int
    seconds: float
    latencies_ms: list[float]
    errors: list[str]
    cpu: dict[str, float]  # CPU seconds by stage during the timed load
    rss_mb: list[float]  # resident memory of each replica (server, stubs, drift worker)

    @property
    def rate(self) -> float:
        return len(self.latencies_ms) / self.seconds


def _load(
    client: Any, payloads: list[bytes], concurrency: int, seconds: float
) -> tuple[list[float], list[str], float]:
    """``concurrency`` threads sending one clip per request for ``seconds``."""
    import itertools
    import threading

    counter, lock = itertools.count(), threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    started = time.perf_counter()
    deadline = started + seconds

    def worker() -> None:
        while time.perf_counter() < deadline:
            i = next(counter)
            t0 = time.perf_counter()
            try:
                client.infer([payloads[i % len(payloads)]], [f"scale-{i}"])
            except Exception as error:  # counted: a failed request is a result here
                with lock:
                    errors.append(str(error)[:200])
                continue
            with lock:
                latencies.append((time.perf_counter() - t0) * 1e3)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors, time.perf_counter() - started


def _stage_cpu(roots: list[int]) -> dict[str, float]:
    """CPU seconds by stage over every replica's process tree, and this client's."""
    from serving import server_processes

    totals: dict[str, float] = {}
    for root in roots:
        for kind, seconds in server_processes(root).values():
            totals[kind] = totals.get(kind, 0.0) + seconds
    me = psutil.Process().cpu_times()
    totals["client (this process)"] = me.user + me.system
    return totals


def _rss_mb(root: int) -> float:
    process = psutil.Process(root)
    members = [process, *process.children(recursive=True)]
    total = 0
    for member in members:
        try:
            total += member.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total / 2**20


def serving_scaling(args: argparse.Namespace) -> None:
    from genreops.core.settings import get_settings
    from genreops.serving.client import EnsembleClient
    from genreops.serving.publish import MODELS, publish_registered
    from genreops.serving.triton.server import TritonPorts, start_triton, stop_triton
    from genreops.training.tracking import TrackingTarget
    from serving import NORMAL, build, say

    for name in [n for n in os.environ if n.startswith("GENREOPS_")]:
        del os.environ[name]  # self-contained: nothing from the caller's stack
    home = Path(tempfile.mkdtemp(prefix="genreops-scale-serving-"))
    os.environ["GENREOPS_HOME"] = str(home)
    get_settings.cache_clear()
    setup = build(home, args.train_per_genre, args.served_per_genre, args.families, args.trials)
    settings = get_settings()
    repository = home / "repository"
    published = publish_registered(
        TrackingTarget.from_settings(settings), repository,
        model_name=settings.model_name, options=NORMAL,
    )  # fmt: skip
    payloads = [path.read_bytes() for path in setup.served]
    ports = _free_ports(6)
    servers: list[tuple[Any, TritonPorts]] = []
    runs: list[Served] = []
    load_start = os.getloadavg()[0]
    try:
        for replica in range(2):
            replica_ports = TritonPorts(*ports[3 * replica : 3 * replica + 3])
            say(f"starting replica {replica}")
            process = start_triton(
                repository,
                state_dir=home / f"replica-{replica}",
                ports=replica_ports,
                log_path=home / f"triton-{replica}.log",
                load_models=list(MODELS),
                env={"GENREOPS_HOME": str(home), "GENREOPS_SERVING_REPLICA": str(replica)},
            )
            servers.append((process, replica_ports))
            warm = EnsembleClient(replica_ports.grpc_url)
            _load(warm, payloads, 1, args.warmup)  # its stubs' first requests
            client = EnsembleClient([p.grpc_url for _, p in servers])
            for concurrency in args.concurrency:
                roots = [proc.pid for proc, _ in servers]
                before = _stage_cpu(roots)
                latencies, errors, seconds = _load(client, payloads, concurrency, args.duration)
                after = _stage_cpu(roots)
                run = Served(
                    len(servers), concurrency, seconds, latencies, errors,
                    {k: after[k] - before.get(k, 0.0) for k in after},
                    [_rss_mb(r) for r in roots],
                )  # fmt: skip
                say(
                    f"{run.replicas} replica(s), concurrency {concurrency}: {run.rate:.2f} clips/s"
                    f", {len(errors)} errors"
                )
                runs.append(run)
    finally:
        for process, _ in servers:
            stop_triton(process)
    block = render_serving(args, runs, published, (load_start, os.getloadavg()[0]))
    print(block)
    if not args.no_record:
        record(block, SECTION, SECTION_INTRO)
        print(f"recorded in {RESULTS}")


def _pct(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if values else float("nan")


STAGES = (
    "preprocessor stub(s)",
    "predictor stub(s)",
    "fallback stub(s)",
    "postprocessor stub(s)",
    "drift worker",
    "tritonserver",
    "client (this process)",
)


def render_serving(
    args: argparse.Namespace, runs: list[Served], published: Any, load: tuple[float, float]
) -> str:
    lines = [
        f"### {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: serving, 1 and 2 Triton replicas, "
        f"30 s clips, {args.duration:g} s per load",
        "",
        f"- command: `.venv/bin/python bench/scale.py {' '.join(sys.argv[1:])}`",
        f"- machine: {describe()}; 1-min load average {load[0]:.2f} at start, {load[1]:.2f} at end",
        f"- models: champion {published.champion.label} ({published.champion.family}), "
        f"challenger {published.challenger.label} ({published.challenger.family}); the drift "
        "gate and its tests on (shipped defaults); the client (EnsembleClient over every "
        "replica) on the same cores",
        "",
        "| replicas | concurrency | clips/s | p50 ms | p99 ms | errors | CPU ms/clip: "
        + " / ".join(s.replace(" stub(s)", "").replace(" (this process)", "") for s in STAGES)
        + " | total CPU ms/clip | RSS MB per replica |",
        "|---:|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for run in runs:
        answered = max(1, len(run.latencies_ms))
        per_clip = [1000 * run.cpu.get(stage, 0.0) / answered for stage in STAGES]
        total = 1000 * sum(run.cpu.values()) / answered
        lines.append(
            f"| {run.replicas} | {run.concurrency} | {run.rate:.2f} | "
            f"{_pct(run.latencies_ms, 50):.0f} | {_pct(run.latencies_ms, 99):.0f} | "
            f"{len(run.errors)} | {' / '.join(f'{v:.0f}' for v in per_clip)} | {total:.0f} | "
            f"{', '.join(f'{mb:.0f}' for mb in run.rss_mb)} |"
        )
    best = {r: max((x.rate for x in runs if x.replicas == r), default=0.0) for r in (1, 2)}
    if best[1] > 0:
        lines += [
            "",
            f"- best throughput: 1 replica {best[1]:.2f} clips/s, 2 replicas {best[2]:.2f} "
            f"clips/s ({best[2] / best[1]:.2f}x) on the same cores",
        ]
    return "\n".join(lines) + "\n"


# --- the monitoring store's write rate on PostgreSQL ---------------------------------------


def store_rate(args: argparse.Namespace) -> None:
    import uuid

    import psycopg2

    from genreops.monitoring.store import MonitoringStore, MonitoringWriter

    server = "postgresql://postgres@127.0.0.1:5432"
    database = "genreops_bench"
    admin = psycopg2.connect(f"{server}/postgres", connect_timeout=5)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
        if cursor.fetchone() is None:
            cursor.execute(f'CREATE DATABASE "{database}"')  # fixed name: bench data only
    admin.close()
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    connection = psycopg2.connect(f"{server}/{database}", connect_timeout=5)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE SCHEMA "{schema}"')  # generated identifier
    url = f"{server}/{database}?options=-csearch_path%3D{schema}"
    spool = Path(tempfile.mkdtemp(prefix="genreops-scale-spool-"))
    genres = ["blues", "classical", "country", "disco", "hiphop",
              "jazz", "metal", "pop", "reggae", "rock"]  # fmt: skip
    try:
        store = MonitoringStore(url)
        store.ensure_schema()
        writer = MonitoringWriter(store, spool)
        load_start = os.getloadavg()[0]
        started = time.perf_counter()
        cpu_before = psutil.Process().cpu_times()
        for i in range(args.rows):
            while writer.submitted - writer.stored - writer.spooled > 8000:
                time.sleep(0.005)  # keep the queue from overflowing into the spool
            writer.submit_prediction(
                {
                    "clip_id": f"bench/{i}.wav",
                    "genre": genres[i % 10],
                    "confidence": 0.8,
                    "probabilities": {g: 0.1 for g in genres},
                    "model_version": "genre-classifier/1",
                    "model_role": "champion",
                    "drift_gate_open": False,
                    "ood": False,
                    "ood_score": 0.01,
                    "latency_ms": 120.0,
                    "repository_version": 1,
                }
            )
        writer.flush(timeout=600)
        seconds = time.perf_counter() - started
        cpu_after = psutil.Process().cpu_times()
        stored, spooled = writer.stored, writer.spooled
        writer.close()
        counted = store.count("predictions")
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP SCHEMA "{schema}" CASCADE')  # this run's rows only
        connection.close()
    client_cpu = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
    block = "\n".join(
        [
            f"### {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: monitoring store on PostgreSQL, "
            f"{args.rows} prediction rows",
            "",
            f"- command: `.venv/bin/python bench/scale.py {' '.join(sys.argv[1:])}`",
            f"- machine: {describe()}; 1-min load average {load_start:.2f} at start; "
            "PostgreSQL 15 on the same machine (127.0.0.1:5432)",
            f"- one MonitoringWriter (the serving processes' writer: batches of "
            f"{writer.batch_size}, one transaction each): **{stored / seconds:,.0f} rows/s** "
            f"sustained ({stored} stored, {spooled} spooled, {counted} counted in the table, "
            f"{seconds:.1f} s); the writing process used {1000 * client_cpu / max(1, stored):.2f} "
            "ms CPU per row",
            "",
        ]
    )
    print(block)
    if not args.no_record:
        record(block, SECTION, SECTION_INTRO)
        print(f"recorded in {RESULTS}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-record", action="store_true")
    parts = parser.add_subparsers(dest="what")
    extract = parts.add_parser("extraction", help="1 and 2 Dask workers (the default)")
    for options in (parser, extract):  # `scale.py --clips-per-genre 10` still works
        options.add_argument("--clips-per-genre", type=int, default=20)
        options.add_argument("--seconds", type=float, default=30.0)
        options.add_argument(
            "--chunk",
            type=int,
            default=None,
            help="clips per Dask task (default: the setting)",
        )
    serve = parts.add_parser("serving", help="1 and 2 Triton replicas")
    serve.add_argument("--train-per-genre", type=int, default=8)
    serve.add_argument("--served-per-genre", type=int, default=4)
    serve.add_argument("--families", type=lambda v: v.split(","), default=["knn", "random_forest"])
    serve.add_argument("--trials", type=int, default=2)
    serve.add_argument("--duration", type=float, default=60.0, help="seconds per load")
    serve.add_argument("--warmup", type=float, default=10.0, help="seconds per new replica")
    serve.add_argument(
        "--concurrency", type=lambda v: [int(x) for x in v.split(",")], default=[4, 8]
    )
    store = parts.add_parser("store", help="the monitoring store's write rate on PostgreSQL")
    store.add_argument("--rows", type=int, default=100_000)
    for sub in (extract, serve, store):
        sub.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    if getattr(args, "chunk", 0) is None:  # the product's own default
        from genreops.core.settings import Settings

        args.chunk = Settings(_env_file=None).extract_chunk_size
    if args.what == "serving":
        serving_scaling(args)
    elif args.what == "store":
        store_rate(args)
    else:
        extraction(args)


if __name__ == "__main__":
    main()
