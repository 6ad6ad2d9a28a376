"""Every genreops flow as a Prefect deployment on a work pool, run by Prefect workers.

``python -m genreops.flows.deployments`` (started by ``genreops stack up``) creates the work pool
(GENREOPS_WORK_POOL, a process pool by default) with its two queues, registers the deployments
with the Prefect server named by ``PREFECT_API_URL``, then becomes a Prefect worker of that pool
(``prefect worker start --pool genreops``). More workers on any machine with genreops installed
and the same settings take runs too: ``prefect worker start --pool genreops``. Runs are
triggered from the UI, the CLI (``prefect deployment run 'train-model/train-model' --param
trials=5``) or the REST API.

Heavy flows (extraction, training, the pipeline) go to the pool's ``heavy`` queue, limited to
GENREOPS_HEAVY_RUN_CONCURRENCY runs at once; the rest to ``default``, which workers serve first.
The pool as a whole runs at most GENREOPS_WORK_POOL_CONCURRENCY flows. Runs over a limit wait
in the Scheduled state.

Each deployment is named after its flow, so it is addressed as ``<flow>/<flow>``. Parameters
are typed from the flow signatures and documented from their docstrings. Every deployment
carries the tag ``genreops`` (``genreops stack status`` finds the served ones by it).

Adding a deployment is one entry in ``DEPLOYMENTS``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from genreops.flows.drift import drift_report
from genreops.flows.extract import extract_features
from genreops.flows.feedback import record_feedback
from genreops.flows.pipeline import pipeline
from genreops.flows.registry import register_best
from genreops.flows.retrain import retrain
from genreops.flows.serving import batch_predict, publish
from genreops.flows.train import train_model
from prefect import Flow
from prefect.deployments.runner import RunnerDeployment
from prefect.types.entrypoint import EntrypointType

from genreops.core.settings import Settings, get_settings

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

TAG = "genreops"
# Triggered runs start at the worker's next poll; Prefect's default is 10 s.
POLL_SECONDS = 2.0
HEAVY_QUEUE = "heavy"  # extraction, training, the pipeline: GENREOPS_HEAVY_RUN_CONCURRENCY
LIGHT_QUEUE = "default"  # Prefect's own name for a pool's first queue; served first

AnyFlow = Flow[..., Any]


@dataclass(frozen=True)
class DeploymentSpec:
    """One served deployment: the flow, what it is for, and how settings configure it."""

    flow: AnyFlow
    description: str
    tags: tuple[str, ...] = ()
    heavy: bool = False  # long and CPU-bound: the pool's heavy queue
    # also run on the interval (seconds) this Settings field gives; None or 0: on demand only
    interval_setting: str | None = None

    def interval(self, settings: Settings) -> float | None:
        if self.interval_setting is None:
            return None
        return float(getattr(settings, self.interval_setting)) or None

    @property
    def name(self) -> str:
        return str(self.flow.name)


DEPLOYMENTS: list[DeploymentSpec] = [
    DeploymentSpec(
        extract_features,
        "Extract audio features of a labeled corpus (folder or s3:// prefix, GTZAN layout) "
        "into a Parquet feature table, in parallel on Dask; unchanged chunks are reused.",
        ("features",),
        heavy=True,
    ),
    DeploymentSpec(
        train_model,
        "Tune XGBoost, random forest, KNN, SVC, logistic regression and a soft vote of the "
        "best of them with Optuna on a feature table; every trial and the best refit model "
        "per family are tracked in MLflow.",
        ("training",),
        heavy=True,
    ),
    DeploymentSpec(
        register_best,
        "Register the best training runs by validation G-mean and set the champion and "
        "challenger aliases in the MLflow registry.",
        ("registry",),
    ),
    DeploymentSpec(
        publish,
        "Publish the registered champion/challenger as a new Triton model repository version "
        "and hot-load it into the running server.",
        ("serving",),
    ),
    DeploymentSpec(
        batch_predict,
        "Classify every audio file under a folder or s3:// prefix with the served ensemble; "
        "writes results.csv and summary.json.",
        ("serving",),
    ),
    DeploymentSpec(
        pipeline,
        "Every stage in order on a labeled corpus: extract, train, register, publish, then "
        "classify the given batches; unchanged inputs are not re-extracted and an unchanged "
        "feature table is not retrained unless retrain is set.",
        ("pipeline",),
        heavy=True,
    ),
    DeploymentSpec(
        drift_report,
        "Turn the drift gate's new drift tests into Evidently reports in the drift UI "
        "(also on its own every GENREOPS_DRIFT_REPORT_EVERY_SECONDS, 5 minutes by default).",
        ("monitoring",),
        interval_setting="drift_report_every_seconds",
    ),
    DeploymentSpec(
        retrain,
        "Train on the champion's table plus every labeled clip and register the best as the "
        "canary version; the monitor service starts it when drift persists or live accuracy "
        "falls.",
        ("training",),
        heavy=True,
    ),
    DeploymentSpec(
        record_feedback,
        "Store the true genres of served clips from a labels file (CSV or JSON, local or "
        "s3://) in the monitoring store, joined to their predictions by clip id.",
        ("monitoring",),
    ),
]


def deployment_names() -> list[str]:
    """``<flow>/<deployment>`` of every served deployment, as ``prefect deployment run`` takes."""
    return [f"{spec.name}/{spec.name}" for spec in DEPLOYMENTS]


def build_deployments(
    settings: Settings | None = None, specs: list[DeploymentSpec] | None = None
) -> list[RunnerDeployment]:
    """The deployments as Prefect objects on the work pool (parameter schemas typed from the
    signatures)."""
    settings = settings or get_settings()
    built = []
    for spec in DEPLOYMENTS if specs is None else specs:
        deployment = spec.flow.to_deployment(
            name=spec.name,
            description=spec.description,
            tags=[TAG, *spec.tags],
            interval=spec.interval(settings),
            # `genreops.flows.extract.extract_features`: a worker imports it from any folder
            entrypoint_type=EntrypointType.MODULE_PATH,
            work_pool_name=settings.work_pool,
            work_queue_name=HEAVY_QUEUE if spec.heavy else LIGHT_QUEUE,
            job_variables=_job_variables(settings),
        )
        built.append(cast(RunnerDeployment, deployment))  # sync call: not a coroutine
    return built


def _job_variables(settings: Settings) -> dict[str, Any]:
    """A process worker starts runs in the folder the deployments were registered from (where a
    ``.env`` is read), not in a temporary one."""
    return {"working_dir": str(Path.cwd())} if settings.work_pool_type == "process" else {}


def ensure_work_pool(client: SyncPrefectClient, settings: Settings) -> None:
    """The work pool and its queues with the limits of the settings; limits of an existing pool
    are brought up to date, its type and job template are left as they are."""
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.workers.base import BaseWorker

    pool = settings.work_pool
    worker_class = BaseWorker.get_worker_class_from_type(settings.work_pool_type)
    try:
        client.create_work_pool(
            WorkPoolCreate(
                name=pool,
                type=settings.work_pool_type,
                description="genreops flows (flows/deployments.py)",
                # a type whose worker is not installed here (kubernetes, docker) gets its
                # worker's default template when that worker first polls
                base_job_template=worker_class.get_default_base_job_template()
                if worker_class
                else {},
                concurrency_limit=settings.work_pool_concurrency,
            )
        )
    except ObjectAlreadyExists:
        client.update_work_pool(
            pool, WorkPoolUpdate(concurrency_limit=settings.work_pool_concurrency)
        )
    queues = {LIGHT_QUEUE: (None, 1), HEAVY_QUEUE: (settings.heavy_run_concurrency, 2)}
    for name, (limit, priority) in queues.items():
        try:
            queue = client.read_work_queue_by_name(name, work_pool_name=pool)
        except ObjectNotFound:
            client.create_work_queue(
                name, work_pool_name=pool, concurrency_limit=limit, priority=priority
            )
            continue
        client.update_work_queue(queue.id, concurrency_limit=limit, priority=priority)


def register(
    settings: Settings | None = None, specs: list[DeploymentSpec] | None = None
) -> list[str]:
    """Create the work pool and register the deployments to it (idempotent: a second call
    updates them); the ``flow/deployment`` names registered."""
    from prefect.client.orchestration import get_client

    settings = settings or get_settings()
    with get_client(sync_client=True) as client:
        ensure_work_pool(client, settings)
    built = build_deployments(settings, specs)
    for deployment in built:
        deployment.apply()
    return [f"{deployment.flow_name}/{deployment.name}" for deployment in built]


def worker_command(settings: Settings, worker_args: Sequence[str] = ()) -> list[str]:
    """``prefect worker start`` on the pool, with the Python running this."""
    return [
        sys.executable, "-m", "prefect", "worker", "start",
        "--pool", settings.work_pool,
        "--install-policy", "never",  # the worker's packages come from our lock file
        *worker_args,
    ]  # fmt: skip


def worker_defaults() -> dict[str, str]:
    """Prefect settings of the worker, unless the environment says otherwise: it polls often,
    and its health-check server (``--with-healthcheck``) listens on loopback only."""
    return {
        "PREFECT_WORKER_QUERY_SECONDS": str(POLL_SECONDS),
        "PREFECT_WORKER_WEBSERVER_HOST": "127.0.0.1",
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Register, then run as a worker of the pool until SIGTERM (its process replaces this one)."""
    parser = argparse.ArgumentParser(
        prog="python -m genreops.flows.deployments",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Other arguments go to `prefect worker start` (e.g. --with-healthcheck, "
        "--name, --limit).",
    )
    parser.add_argument(
        "--register-only", action="store_true", help="register the deployments, start no worker"
    )
    options, worker_args = parser.parse_known_args(argv)
    if not os.environ.get("PREFECT_API_URL"):
        # without it Prefect would register to a temporary server nobody can reach
        raise SystemExit(
            "genreops.flows.deployments registers to a Prefect server: set PREFECT_API_URL "
            "(`genreops stack up` starts both)"
        )
    settings = get_settings()
    names = register(settings)
    print(f"{len(names)} deployments registered to work pool {settings.work_pool!r}", flush=True)
    if options.register_only:
        return
    for name, value in worker_defaults().items():
        os.environ.setdefault(name, value)
    command = worker_command(settings, worker_args)
    os.execv(command[0], command)  # noqa: S606 -- our own interpreter, no shell


if __name__ == "__main__":
    main()
