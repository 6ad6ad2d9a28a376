"""Every genreops flow as a Prefect deployment, served from one process.

``python -m genreops.flows.deployments`` (started by ``genreops stack up``) registers the
deployments with the Prefect server named by ``PREFECT_API_URL`` and runs whatever is triggered
from the UI, the CLI (``prefect deployment run 'train-model/train-model' --param trials=5``) or
the REST API.
Each deployment is named after its flow, so it is addressed as ``<flow>/<flow>``. Parameters
are typed from the flow signatures and documented from their docstrings. Every deployment
carries the tag ``genreops`` (``genreops stack status`` finds the served ones by it).

Adding a deployment is one entry in ``DEPLOYMENTS``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from genreops.flows.drift import drift_report
from genreops.flows.extract import dask_runner, extract_features
from genreops.flows.feedback import record_feedback
from genreops.flows.pipeline import pipeline
from genreops.flows.registry import register_best
from genreops.flows.retrain import retrain
from genreops.flows.serving import batch_predict, publish
from genreops.flows.train import train_model
from prefect import Flow, serve
from prefect.deployments.runner import RunnerDeployment
from prefect.types.entrypoint import EntrypointType

from genreops.core.settings import Settings, get_settings

TAG = "genreops"
# Triggered runs start at the runner's next poll; Prefect's default is 10 s.
POLL_SECONDS = 2.0

AnyFlow = Flow[..., Any]


def _on_configured_dask(flow: AnyFlow, settings: Settings) -> AnyFlow:
    """Extraction uses the Dask cluster of the settings (GENREOPS_DASK_ADDRESS), as the CLI does."""
    return flow.with_options(task_runner=dask_runner(settings.dask_address, settings.dask_workers))


@dataclass(frozen=True)
class DeploymentSpec:
    """One served deployment: the flow, what it is for, and how settings configure it."""

    flow: AnyFlow
    description: str
    tags: tuple[str, ...] = ()
    configure: Callable[[AnyFlow, Settings], AnyFlow] | None = None
    interval_seconds: float | None = None  # also run on this schedule (None: on demand only)

    @property
    def name(self) -> str:
        return str(self.flow.name)


DEPLOYMENTS: list[DeploymentSpec] = [
    DeploymentSpec(
        extract_features,
        "Extract audio features of a labeled corpus (folder or s3:// prefix, GTZAN layout) "
        "into a Parquet feature table, in parallel on Dask; unchanged chunks are reused.",
        ("features",),
        configure=_on_configured_dask,
    ),
    DeploymentSpec(
        train_model,
        "Tune XGBoost, random forest, KNN, SVC, logistic regression and a soft vote of the "
        "best of them with Optuna on a feature table; every trial and the best refit model "
        "per family are tracked in MLflow.",
        ("training",),
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
    ),
    DeploymentSpec(
        drift_report,
        "Turn the drift gate's new drift tests into Evidently reports in the drift UI "
        "(also every 5 minutes on its own).",
        ("monitoring",),
        interval_seconds=300,
    ),
    DeploymentSpec(
        retrain,
        "Train on the champion's table plus every labeled clip and register the best as the "
        "canary version; the monitor service starts it when drift persists or live accuracy "
        "falls.",
        ("training",),
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
    """The deployments as Prefect objects (parameter schemas typed from the signatures)."""
    settings = settings or get_settings()
    built = []
    for spec in DEPLOYMENTS if specs is None else specs:
        flow = spec.configure(spec.flow, settings) if spec.configure else spec.flow
        deployment = flow.to_deployment(
            name=spec.name,
            description=spec.description,
            tags=[TAG, *spec.tags],
            interval=spec.interval_seconds,
            # `genreops.flows.extract.extract_features`, not a path relative to the current folder
            entrypoint_type=EntrypointType.MODULE_PATH,
        )
        built.append(cast(RunnerDeployment, deployment))  # sync call: not a coroutine
    return built


def main() -> None:
    """Serve until SIGTERM; runs start within ``PREFECT_RUNNER_POLL_FREQUENCY`` seconds."""
    if not os.environ.get("PREFECT_API_URL"):
        # without it Prefect would serve to a temporary server nobody can reach
        raise SystemExit(
            "genreops.flows.deployments serves to a Prefect server: set PREFECT_API_URL "
            "(`genreops stack up` starts both)"
        )
    poll = float(os.environ.get("PREFECT_RUNNER_POLL_FREQUENCY") or POLL_SECONDS)
    serve(*build_deployments(), query_seconds=poll)


if __name__ == "__main__":
    main()
