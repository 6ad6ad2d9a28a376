"""Extraction throughput on the native stack's Dask cluster with 1 and 2 workers.

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
    .venv/bin/python bench/scale.py --clips-per-genre 10 --seconds 10 --no-record
"""

from __future__ import annotations

import argparse
import os
import socket
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


@dataclass
class Measured:
    workers: int
    clips: int
    seconds: float
    cpu: dict[str, float]  # CPU seconds by process group during the timed run

    @property
    def rate(self) -> float:
        return self.clips / self.seconds


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
        summary = flow(input_url=corpus, output_url=output, chunk_size=chunk, window_seconds=30.0)
        seconds = time.perf_counter() - started
        after = _cpu_seconds(pids)
        if summary.n_extracted != clips:
            raise SystemExit(f"{summary.n_extracted} of {clips} clips extracted")
        return Measured(workers, clips, seconds, {k: after[k] - before[k] for k in after})
    finally:
        stack.down()


def render(args: argparse.Namespace, runs: list[Measured], load: tuple[float, float]) -> str:
    one, two = runs
    ratio = two.rate / one.rate
    lines = [
        f"### {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {one.clips} clips x {args.seconds:g} s, "
        f"chunks of {args.chunk}",
        "",
        f"- machine: {describe()}; 1-min load average {load[0]:.2f} at start, {load[1]:.2f} at end",
        "- where: scheduler, workers, S3 server, Prefect server and the flow on this machine",
        "",
        "| workers | seconds | clips/s | worker CPU ms/clip | other CPU ms/clip (S3, scheduler, "
        "Prefect, flow) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        worker_cpu = run.cpu["dask-workers"]
        other = sum(v for k, v in run.cpu.items() if k != "dask-workers")
        lines.append(
            f"| {run.workers} | {run.seconds:.1f} | {run.rate:.2f} | "
            f"{1000 * worker_cpu / run.clips:.0f} | {1000 * other / run.clips:.0f} |"
        )
    lines += [
        "",
        f"- 2 workers: **{ratio:.2f}x** the throughput of 1 (goal >= {GOAL}x: "
        f"{'met' if ratio >= GOAL else 'not met'})",
        "- CPU by process group, 2 workers: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in two.cpu.items()),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips-per-genre", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--chunk", type=int, default=8, help="clips per Dask task")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()

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
    runs = []
    for workers in (1, 2):
        run = measure(home, ports, workers, "s3://bench-raw/corpus", args.chunk)
        print(f"{workers} worker(s): {run.clips} clips in {run.seconds:.1f} s, {run.rate:.2f}/s")
        runs.append(run)
    block = render(args, runs, (load_start, os.getloadavg()[0]))
    print(block)
    if not args.no_record:
        record(block, SECTION, SECTION_INTRO)
        print(f"recorded in {RESULTS}")


if __name__ == "__main__":
    main()
