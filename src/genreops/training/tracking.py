"""MLflow tracking: one experiment per family, a parent run per study, a nested run per trial.

The parent run holds everything needed to judge and reuse the refit model: parameters,
validation and test metrics, confusion matrices and reports, the training table as a dataset
input, the feature schema and extraction manifest, a reference sample of training features
(the drift baseline for serving) and the model as a pyfunc that predicts genre names.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import pandas as pd

# Offline machines: MLflow's telemetry only produces errors. Must precede the import.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
import mlflow
from mlflow.models import infer_signature

from genreops.core.errors import GenreopsError, TrainingError
from genreops.core.processes import http_answers
from genreops.core.settings import Settings
from genreops.data.feature_table import FeatureTable
from genreops.training.evaluation import Evaluation
from genreops.training.models import GenreClassifier
from genreops.training.tuning import TrialReport, TuningResult

log = logging.getLogger(__name__)

EXPERIMENT_PREFIX = "genreops-"
MODEL_ARTIFACT = "model"
REFERENCE_ROWS = 2000
REFERENCE_FILE = "reference_features.parquet"  # a sample of the training rows
# A retrained model's drift reference, when given: the traffic it was retrained for (publish
# prefers it to REFERENCE_FILE)
DRIFT_REFERENCE_FILE = "drift_reference.parquet"
OUTPUTS = ("genre", "probabilities")
# Tags the registry relies on (stable names).
TAG_KIND = "genreops.kind"
TAG_FAMILY = "genreops.family"
TAG_SCHEMA_VERSION = "genreops.schema_version"
TAG_SCHEMA_HASH = "genreops.schema_hash"
TAG_MODEL_URI = "genreops.model_uri"
TAG_STUDY_KEY = "genreops.study_key"
TAG_TABLE_URL = "genreops.table_url"
TAG_TABLE_DIGEST = "genreops.table_digest"
TAG_GENRES = "genreops.genres"  # JSON list: the registry pairs only runs that know the same
KIND_TRAINING = "training"
KIND_TRIAL = "trial"
# What a logged model needs at load time besides genreops itself.
_MODEL_REQUIREMENTS = (
    "numpy",
    "pandas",
    "scikit-learn",
    "imbalanced-learn",
    "xgboost",
    "cloudpickle",
    "mlflow",
)


def experiment_name(family: str) -> str:
    return f"{EXPERIMENT_PREFIX}{family}"


@dataclass(frozen=True)
class TrackingTarget:
    """Where runs go: a tracking URI and, for stores without a server, an artifact root."""

    tracking_uri: str
    artifact_root: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> TrackingTarget:
        return cls(settings.mlflow_uri, settings.mlflow_artifacts)

    @property
    def is_server(self) -> bool:
        return self.tracking_uri.startswith(("http://", "https://"))

    def activate(self) -> None:
        """Point MLflow here; a server that does not answer fails now, not after minutes of
        MLflow's own retries."""
        if self.is_server and not http_answers(
            f"{self.tracking_uri.rstrip('/')}/health", timeout=5.0, expect="OK"
        ):
            raise GenreopsError(
                f"MLflow tracking server {self.tracking_uri} is not answering "
                "(is it running? check GENREOPS_MLFLOW_TRACKING_URI)"
            )
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)

    def experiment_id(self, family: str) -> str:
        """The family's experiment, created on first use with artifacts in the right place."""
        self.activate()
        client = mlflow.MlflowClient()
        name = experiment_name(family)
        existing = client.get_experiment_by_name(name)
        if existing is not None:
            return str(existing.experiment_id)
        location = None
        if not self.is_server and self.artifact_root:
            # a server decides for itself (proxied artifacts); a bare store needs a root
            root = self.artifact_root.rstrip("/")
            location = f"{root}/{name}" if "://" in root else Path(root, name).resolve().as_uri()
        try:
            return str(client.create_experiment(name, artifact_location=location))
        except mlflow.exceptions.MlflowException:
            # another process created it between our lookup and create
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
            return str(found.experiment_id)


class GenrePyfunc(mlflow.pyfunc.PythonModel):  # type: ignore[name-defined]
    """Predicts genre names; ``params={"output": "probabilities"}`` gives one column per genre.

    Serving can also take ``unwrap_python_model().classifier`` for the ``GenreClassifier``.
    """

    def __init__(self, classifier: GenreClassifier) -> None:
        self.classifier = classifier

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> Any:
        output = (params or {}).get("output", "genre")
        if output not in OUTPUTS:
            raise TrainingError(f"unknown output {output!r}; use one of {OUTPUTS}")
        if output == "probabilities":
            proba = self.classifier.predict_proba(model_input)
            return pd.DataFrame(proba, columns=self.classifier.genres)
        return pd.Series(self.classifier.predict(model_input), name="genre", dtype=object)


def _requirements() -> list[str]:
    pins = []
    for package in _MODEL_REQUIREMENTS:
        try:
            pins.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            pins.append(package)
    return pins


class TrialLogger:
    """``on_trial`` callback that records each trial as a nested run of the study's parent run."""

    def __init__(self, parent_run_id: str, experiment_id: str, family: str) -> None:
        self.client = mlflow.MlflowClient()
        self.parent_run_id = parent_run_id
        self.experiment_id = experiment_id
        self.family = family

    def __call__(self, report: TrialReport) -> None:
        entities = mlflow.entities
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"{self.family}-trial-{report.number}",
            tags={
                "mlflow.parentRunId": self.parent_run_id,
                TAG_KIND: KIND_TRIAL,
                TAG_FAMILY: self.family,
                "genreops.trial_state": report.state,
                **({"genreops.error": report.error[:4000]} if report.error else {}),
            },
        )
        now = int(pd.Timestamp.now("UTC").timestamp() * 1000)
        metrics = [entities.Metric("trial_seconds", report.seconds, now, 0)]
        if report.value is not None:
            metrics.append(entities.Metric("val_gmean_corrected", report.value, now, 0))
        params = [entities.Param(k, str(v)[:6000]) for k, v in report.params.items()]
        self.client.log_batch(run.info.run_id, metrics=metrics, params=params)
        status = {"complete": "FINISHED", "pruned": "KILLED"}.get(report.state, "FAILED")
        self.client.set_terminated(run.info.run_id, status=status)


def study_key(table_digest: str, family: str, space: dict[str, Any], **settings: Any) -> str:
    """What a study was asked to do: the same key means the same table, space and settings."""
    payload = json.dumps(
        {"table": table_digest, "family": family, "space": space, "settings": settings},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _newest_study(target: TrackingTarget, family: str, condition: str) -> Any | None:
    """The newest finished run of ``family`` matching ``condition`` that logged a model."""
    target.activate()
    experiment = mlflow.MlflowClient().get_experiment_by_name(experiment_name(family))
    if experiment is None:
        return None
    runs = mlflow.MlflowClient().search_runs(
        [experiment.experiment_id],
        filter_string=f"{condition} and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=10,
    )
    return next((run for run in runs if TAG_MODEL_URI in run.data.tags), None)


def find_study(target: TrackingTarget, family: str, key: str) -> Any | None:
    """The newest finished study of ``family`` with this key and a logged model, if any."""
    return _newest_study(target, family, f"tags.`{TAG_STUDY_KEY}` = '{key}'")


def latest_study(target: TrackingTarget, family: str, table_digest: str) -> Any | None:
    """The newest finished study of ``family`` on this table (any settings) with a model."""
    return _newest_study(
        target,
        family,
        f"tags.`{TAG_TABLE_DIGEST}` = '{table_digest}' and tags.`{TAG_KIND}` = '{KIND_TRAINING}'",
    )


def run_params(run: Any) -> dict[str, Any]:
    """A training run's tuned parameters with their types back (MLflow stores strings)."""
    return {
        name: _typed(value) for name, value in run.data.params.items() if name not in RUN_PARAMS
    }


# what log_result records besides the model's own parameters
RUN_PARAMS = frozenset({"family", "seed", "trials_requested", "study_name", "validation"})


def _typed(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text  # a plain word such as sqrt or sigmoid


@contextmanager
def study_run(
    target: TrackingTarget,
    family: str,
    table: FeatureTable,
    run_name: str | None = None,
    key: str | None = None,
) -> Iterator[tuple[Any, TrialLogger]]:
    """The parent run of one study; yields (run, trial logger). A failed study ends FAILED."""
    target.activate()
    experiment_id = target.experiment_id(family)
    tags = {
        **({TAG_STUDY_KEY: key} if key else {}),
        TAG_KIND: KIND_TRAINING,
        TAG_FAMILY: family,
        TAG_SCHEMA_VERSION: table.schema_version,
        TAG_SCHEMA_HASH: table.schema_hash,
        TAG_TABLE_URL: table.url,
        TAG_TABLE_DIGEST: table.digest,
        **({TAG_GENRES: genres} if len(genres := json.dumps(table.genres)) <= 5000 else {}),
        "genreops.split_source": table.split_source,
        **{f"genreops.{k}": v for k, v in table.columns_read.items()},
    }
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags) as run:
        yield run, TrialLogger(run.info.run_id, experiment_id, family)


def _confusion_figure(evaluation: Evaluation, genres: list[str]) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from sklearn.metrics import ConfusionMatrixDisplay

    display = ConfusionMatrixDisplay(evaluation.confusion, display_labels=genres)
    display.plot(xticks_rotation=45, colorbar=False)
    display.ax_.set_title(f"{evaluation.split} ({evaluation.n_rows} clips)")
    display.figure_.set_size_inches(8, 7)
    display.figure_.tight_layout()
    return display.figure_


def log_result(
    result: TuningResult,
    table: FeatureTable,
    space: dict[str, Any],
    *,
    settings_summary: dict[str, Any] | None = None,
) -> str:
    """Log the refit model and its evidence into the active parent run; returns the model URI."""
    from matplotlib import pyplot

    classifier = result.classifier
    mlflow.log_params(
        {
            **{k: str(v) for k, v in result.best_params.items()},
            "family": result.family,
            "seed": result.seed,
            "trials_requested": len(result.trials),
            "study_name": result.study_name,
            "validation": result.scheme,
        }
    )
    evaluations = [result.validation] + ([result.test] if result.test else [])
    metrics = {f"{e.split}_{k}": v for e in evaluations for k, v in e.metrics.items()}
    metrics.update(
        {
            "best_trial": result.best_trial,
            "trials_complete": result.counts["complete"],
            "trials_pruned": result.counts["pruned"],
            "trials_failed": result.counts["fail"],
            "tuning_seconds": result.seconds,
        }
    )
    mlflow.log_metrics(metrics)

    frame = table.frame()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "source can be interpreted in multiple ways"
        dataset = mlflow.data.from_pandas(  # type: ignore[attr-defined]
            frame, source=table.url, targets="genre", name=f"features-{table.digest[:8]}"
        )
    mlflow.log_input(dataset, context="training")

    for evaluation in evaluations:
        figure = _confusion_figure(evaluation, classifier.genres)
        mlflow.log_figure(figure, f"confusion_matrix_{evaluation.split}.png")
        pyplot.close(figure)
        mlflow.log_text(evaluation.report, f"classification_report_{evaluation.split}.txt")
    mlflow.log_dict(
        {
            "schema_version": table.schema_version,
            "schema_hash": table.schema_hash,
            "feature_names": table.feature_names,
            "genres": classifier.genres,
        },
        "feature_schema.json",
    )
    mlflow.log_dict({"family": result.family, "space": space}, "search_space.json")
    if table.manifest is not None:
        mlflow.log_dict(table.manifest, "extraction_manifest.json")
    if settings_summary:
        mlflow.log_dict(settings_summary, "run_settings.json")

    train_x, _ = table.part("train")
    reference = train_x.sample(n=min(REFERENCE_ROWS, len(train_x)), random_state=result.seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, REFERENCE_FILE)
        reference.reset_index(drop=True).to_parquet(path, index=False)
        mlflow.log_artifact(str(path))

    example = table.features.head(5)
    signature = infer_signature(
        example,
        pd.Series(classifier.predict(example), name="genre"),
        params={"output": "genre"},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        info = mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT,
            python_model=GenrePyfunc(classifier),
            signature=signature,
            input_example=example,
            pip_requirements=_requirements(),
        )
    mlflow.set_tag(TAG_MODEL_URI, info.model_uri)
    return str(info.model_uri)


def log_drift_reference(target: TrackingTarget, run_id: str, frame: pd.DataFrame) -> None:
    """``frame`` (the model's feature columns) as the run's drift reference."""
    target.activate()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, DRIFT_REFERENCE_FILE)
        frame.reset_index(drop=True).to_parquet(path, index=False)
        mlflow.MlflowClient().log_artifact(run_id, str(path))


def load_classifier(model_uri: str) -> GenreClassifier:
    """The ``GenreClassifier`` inside a logged or registered model (for serving)."""
    model = mlflow.pyfunc.load_model(model_uri)
    classifier = model.unwrap_python_model().classifier
    if not isinstance(classifier, GenreClassifier):
        raise TrainingError(f"{model_uri}: not a genreops model")
    return classifier
