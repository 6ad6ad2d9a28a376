"""Extraction on the native stack's own Dask cluster: a real `dask scheduler` and `dask worker`
processes (not a LocalCluster), started by `genreops stack up`, reading clips from S3.

A worker killed mid-run loses no clip, and a worker added mid-run takes work."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from genreops.flows.extract import dask_runner, extract_features

from genreops.core.settings import Settings, get_settings
from genreops.data import extraction
from genreops.data.storage import ensure_bucket, upload_dir
from genreops.platform.stack import Stack
from genreops.platform.stack.starters import dask_workers_connected, venv_tool
from helpers import free_port, render_labeled_corpus, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]

PER_GENRE = 12  # 120 clips, one per task: far more work than a new worker needs to start
SECONDS = 6.0


@pytest.fixture(scope="module")
def corpus(s3_server: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("corpus")
    render_labeled_corpus(root, per_genre=PER_GENRE, seconds=SECONDS, seed=11)
    for bucket in ("s3://cluster-raw/x", "s3://cluster-features/x"):
        ensure_bucket(bucket, s3=s3_server.config)
    upload_dir(root, "s3://cluster-raw/corpus", s3=s3_server.config)
    return "s3://cluster-raw/corpus"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Only the stack's Dask services, in a home of their own (workers get no shared folder:
    the clips and the chunks travel through S3)."""
    home = tmp_path_factory.mktemp("cluster") / "home"
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        home=home,
        use_stack_env=False,
        dask_workers=2,
        dask_scheduler_port=free_port(),
        dask_dashboard_port=free_port(),
    )
    cluster = Stack(settings)
    try:
        rows = {row.service: row for row in cluster.up(only=["dask-workers"])}
        assert rows["dask-scheduler"].healthy and rows["dask-workers"].healthy
        yield cluster
    finally:
        cluster.down()


def _worker_pids(client: Any) -> dict[str, int]:
    return dict(client.run(os.getpid))


def test_a_worker_keeps_the_pages_of_its_spectrograms(
    stack: Stack, corpus: str, s3_server: Any
) -> None:
    """Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536, which makes glibc map
    every array of a clip's spectrograms anew: thousands of page faults per clip, ~40% of the
    worker's CPU (bench/scale.py). Extracting a chunk keeps freed memory instead."""
    from distributed import Client

    s3 = s3_server.config
    options = extraction.ExtractOptions(window_seconds=SECONDS, min_seconds=5.0)
    (chunk,) = extraction.plan_chunks(extraction.list_clips(corpus, s3=s3)[:3], 3, options)

    def page_faults() -> tuple[int, float]:  # defined here: sent to the workers by value
        import resource

        from genreops.data.audio import load_audio
        from genreops.data.features import extract_features

        def faults() -> int:
            return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

        samples = load_audio(chunk.clips[0].url, duration=SECONDS, s3=s3)
        extract_features(samples)
        before = faults()
        extract_features(samples)  # with the allocator as the nanny set it
        as_started = faults() - before
        extraction.extract_chunk(chunk, options, s3=s3)
        before = faults()
        extraction.extract_chunk(chunk, options, s3=s3)
        return as_started, (faults() - before) / len(chunk.clips)

    with Client(stack.endpoints.dask_scheduler, timeout=30) as client:
        client.restart()  # fresh worker processes, as their nanny starts them
        measured = client.run(page_faults)
    assert len(measured) == 2
    for as_started, per_clip in measured.values():
        assert as_started > 500, measured  # the nanny's setting does fault (the control)
        assert per_clip < as_started / 20, measured


def test_a_killed_worker_loses_no_clip_and_a_worker_added_mid_run_takes_work(
    stack: Stack,
    corpus: str,
    s3_server: Any,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    from distributed import Client

    monkeypatch.setenv("GENREOPS_MIN_SECONDS", "5")
    monkeypatch.setenv("GENREOPS_S3_ENDPOINT_URL", s3_server.config.endpoint_url)
    monkeypatch.setenv("GENREOPS_S3_ACCESS_KEY_ID", s3_server.config.access_key_id)
    monkeypatch.setenv("GENREOPS_S3_SECRET_ACCESS_KEY", s3_server.config.secret_access_key)
    get_settings.cache_clear()  # the flow reads its S3 settings at its edge
    request.addfinalizer(get_settings.cache_clear)
    address = stack.endpoints.dask_scheduler
    status = {row.service: row for row in stack.status()}
    assert status["dask-scheduler"].url == f"{stack.endpoints.dask_dashboard}/status"
    assert status["dask-workers"].detail.startswith("2 workers")

    flow = extract_features.with_options(task_runner=dask_runner(address=address))
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["summary"] = flow(
                input_url=corpus, output_url="s3://cluster-features/run", chunk_size=1,
                window_seconds=SECONDS,
            )  # fmt: skip
        except BaseException as error:  # the assertion below shows it
            result["error"] = error

    added: subprocess.Popen[bytes] | None = None
    with Client(address, timeout=30) as client:
        original = _worker_pids(client)
        running = threading.Thread(target=run, name="extraction")
        running.start()
        try:

            def executed() -> int:
                counts = client.run(lambda dask_worker: dask_worker.state.executed_count)
                return int(sum(counts.values()))

            assert wait_until(lambda: executed() >= 4 or not running.is_alive(), timeout=180)
            assert running.is_alive(), f"the run ended before the test could act: {result}"
            victim_address, victim = sorted(original.items())[0]
            os.kill(victim, signal.SIGKILL)  # its nanny starts a new one; its tasks move
            added = subprocess.Popen(
                [venv_tool("dask"), "worker", address, "--nworkers", "1", "--nthreads", "1",
                 "--host", "127.0.0.1", "--no-dashboard", "--name", "added-mid-run"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            running.join(timeout=600)
            assert not running.is_alive(), "the extraction did not finish"
            assert "error" not in result, result.get("error")
            info = client.scheduler_info()["workers"]
            newcomer = [a for a, w in info.items() if w.get("name") == "added-mid-run"]
            assert newcomer, f"the added worker never joined: {sorted(info)}"
            took = client.run(
                lambda dask_worker: dask_worker.state.executed_count, workers=newcomer
            )
            assert sum(took.values()) > 0, "the worker added mid-run took no task"
            assert victim_address not in info  # gone; its nanny's new worker replaced it
            assert wait_until(  # the nanny's new worker and the added one
                lambda: dask_workers_connected(stack.endpoints.dask_dashboard) == 3, timeout=60
            )
        finally:
            running.join(timeout=600)
            if added is not None:
                added.terminate()
                added.wait(timeout=30)

    summary = result["summary"]
    assert summary.n_extracted == PER_GENRE * 10  # every clip, none lost with the worker
    manifest = extraction.read_manifest("s3://cluster-features/run", s3=s3_server.config)
    assert manifest["counts"]["failed"] == 0


def test_stack_down_stops_the_scheduler_and_every_worker(stack: Stack) -> None:
    records = {s: stack.record(s) for s in ("dask-scheduler", "dask-workers")}
    assert all(records.values())
    log = stack.log_file("dask-scheduler").read_text()  # what ran is in the logs
    assert f"Scheduler at:     {stack.endpoints.dask_scheduler}" in log, log[-2000:]
    assert "Start worker at" in stack.log_file("dask-workers").read_text()
    stack.down()
    assert not any(row.healthy for row in stack.status() if row.service.startswith("dask"))
    assert not Path(stack.pid_file("dask-workers")).exists()
