"""The deployments on a Prefect work pool, run by a real `prefect worker` process
(``python -m genreops.flows.deployments``), on the session's real Prefect server.

Heavy runs (extraction) wait for each other under the pool's heavy-queue limit, while a light
run goes ahead of a waiting heavy one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pandas as pd
import pytest

from genreops.core.settings import Settings
from helpers import render_labeled_corpus, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]

PER_GENRE = 1  # 10 clips of 5 s: the limits are under test, not extraction
SECONDS = 5.0


@pytest.fixture(scope="module")
def pool_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A pool of this module's own, so no other test's deployments or worker share it."""
    home = tmp_path_factory.mktemp("pool") / "home"
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        home=home,
        use_stack_env=False,
        work_pool=f"genreops-test-{uuid.uuid4().hex[:8]}",
        work_pool_concurrency=3,
        heavy_run_concurrency=1,
    )


def _worker_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENREOPS_")}
    env.update(
        GENREOPS_HOME=str(settings.home),
        GENREOPS_USE_STACK_ENV="false",
        GENREOPS_WORK_POOL=settings.work_pool,
        GENREOPS_WORK_POOL_CONCURRENCY=str(settings.work_pool_concurrency),
        GENREOPS_HEAVY_RUN_CONCURRENCY=str(settings.heavy_run_concurrency),
        GENREOPS_DASK_WORKERS="1",  # extraction's local cluster: one process per run
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture(scope="module")
def worker(pool_settings: Settings) -> Iterator[Callable[[], subprocess.Popen[str]]]:
    """Started only when the test has queued its runs, so its first poll sees all of them."""
    log = pool_settings.home.parent / "worker.log"
    process: subprocess.Popen[str] | None = None

    def start() -> subprocess.Popen[str]:
        nonlocal process
        process = subprocess.Popen(
            [sys.executable, "-m", "genreops.flows.deployments"],
            cwd=pool_settings.home.parent,
            env=_worker_env(pool_settings),
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its flow-run children go with it
        )
        return process

    yield start
    if process is not None and process.poll() is None:
        # its runs are over; Prefect's worker may hang in a graceful shutdown (seen in CI)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def _run(client: Any, name: str, **parameters: Any) -> UUID:
    deployment = client.read_deployment_by_name(f"{name}/{name}")
    return client.create_flow_run_from_deployment(deployment.id, parameters=parameters).id


def test_the_worker_runs_heavy_runs_one_at_a_time_and_light_ones_beside_them(
    pool_settings: Settings, worker: Callable[[], subprocess.Popen[str]], tmp_path: Path
) -> None:
    from genreops.flows.deployments import HEAVY_QUEUE, LIGHT_QUEUE, deployment_names, register
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType

    corpus = tmp_path / "corpus"
    clips = render_labeled_corpus(corpus, per_genre=PER_GENRE, seconds=SECONDS, seed=5)
    assert register(pool_settings) == deployment_names()

    with get_client(sync_client=True) as client:
        pool = client.read_work_pool(pool_settings.work_pool)
        assert (pool.type, pool.concurrency_limit) == ("process", 3)
        heavy = client.read_work_queue_by_name(HEAVY_QUEUE, work_pool_name=pool.name)
        light = client.read_work_queue_by_name(LIGHT_QUEUE, work_pool_name=pool.name)
        assert heavy.concurrency_limit == 1 and light.concurrency_limit is None
        assert light.priority < heavy.priority  # a free worker takes light runs first
        for name, queue in [("extract-features", HEAVY_QUEUE), ("drift-report", LIGHT_QUEUE)]:
            deployment = client.read_deployment_by_name(f"{name}/{name}")
            assert (deployment.work_pool_name, deployment.work_queue_name) == (pool.name, queue)

        # queued before any worker polls: two heavy runs, then a light one
        first, second = (
            _run(client, "extract-features", input_url=str(corpus), output_url=str(tmp_path / o))
            for o in ("first", "second")
        )
        light_run = _run(client, "drift-report")
        process = worker()

        def ended() -> bool:
            states = [client.read_flow_run(r).state for r in (first, second, light_run)]
            return all(s is not None and s.is_final() for s in states) or process.poll() is not None

        assert wait_until(ended, timeout=240, every=1.0), "the runs did not end within 240 s"
        runs = {key: client.read_flow_run(r) for key, r in [("first", first), ("second", second),
                                                            ("light", light_run)]}  # fmt: skip
    log = (pool_settings.home.parent / "worker.log").read_text(errors="replace")
    assert process.poll() is None, f"the worker exited {process.returncode}:\n{log}"
    for key, run in runs.items():
        assert run.state is not None and run.state.type == StateType.COMPLETED, (key, run.state)
        assert run.work_pool_name == pool_settings.work_pool and run.infrastructure_pid
    a, b, c = runs["first"], runs["second"], runs["light"]
    assert a.start_time and a.end_time and b.start_time and c.start_time
    ordered = sorted([a, b], key=lambda run: run.start_time)  # type: ignore[arg-type,return-value]
    assert ordered[1].start_time >= ordered[0].end_time  # type: ignore[operator]  # one at a time
    assert c.start_time < ordered[1].start_time  # the light run did not wait behind it
    for output in ("first", "second"):  # both extracted every clip
        assert len(pd.read_parquet(tmp_path / output / "features.parquet")) == clips
    assert "registered to work pool" in log
