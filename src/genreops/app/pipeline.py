"""The pipeline: every stage in order on a labeled corpus, and the record it leaves.

The ``pipeline`` flow (``flows/pipeline.py``: Prefect's part, a chain of the stage flows) runs
extract -> train -> register -> publish -> classify batches; ``genreops pipeline`` runs that
flow in-process and the demo triggers its deployment. This module is what they share without
Prefect: the options each stage runs with (every one left out is its setting), where each
batch's results go, the run's record (``pipeline.json`` next to the feature table) and how
that record reads to people.

The record spans the stages (extraction, training, registry, publishing, batches), so it
lives here, above them all.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from genreops.core.settings import Settings
from genreops.data.storage import S3Config, join_url, read_text, write_bytes

if TYPE_CHECKING:  # annotations only: `genreops --help` should not import MLflow and librosa
    from genreops.data.extraction import ExtractionSummary
    from genreops.training.registry import RegistrySummary
    from genreops.training.studies import TrainingSummary

SUMMARY_NAME = "pipeline.json"  # written next to the feature table


@dataclass(frozen=True)
class PipelineOptions:
    """What the stages run with besides the corpus, the families, trials and seed."""

    dask_address: str | None  # extraction: an external scheduler; None: a local cluster
    dask_workers: int  # extraction: workers of the local cluster
    window_seconds: float
    chunk_size: int
    max_failed_share: float
    study_storage: str | None  # training: Optuna storage; None: in memory
    search_space_file: str | None  # training: None: the shipped search spaces
    cv_folds: int
    model_name: str  # registering and publishing
    repository: str  # publishing: the Triton model repository

    @classmethod
    def resolve(
        cls,
        settings: Settings,
        *,
        dask_address: str | None = None,
        dask_workers: int | None = None,
        window_seconds: float | None = None,
        chunk_size: int | None = None,
        max_failed_share: float | None = None,
        study_storage: str | None = None,
        search_space_file: str | None = None,
        cv_folds: int | None = None,
        model_name: str | None = None,
        repository: str | None = None,
    ) -> PipelineOptions:
        """Each option given, else its setting (GENREOPS_DASK_ADDRESS, ...)."""

        def pick(given: Any, fallback: Any) -> Any:
            return fallback if given is None else given

        space_file = pick(search_space_file, settings.search_space_file)
        return cls(
            dask_address=pick(dask_address, settings.dask_address),
            dask_workers=pick(dask_workers, settings.dask_workers),
            window_seconds=pick(window_seconds, settings.window_seconds),
            chunk_size=pick(chunk_size, settings.extract_chunk_size),
            max_failed_share=pick(max_failed_share, settings.extract_max_failed_share),
            study_storage=pick(study_storage, settings.study_storage_url),
            search_space_file=str(space_file) if space_file else None,
            cv_folds=pick(cv_folds, settings.cv_folds),
            model_name=pick(model_name, settings.model_name),
            repository=str(pick(repository, settings.repository)),
        )


def batch_output_url(features_url: str, results_url: str | None, number: int) -> str:
    """Where batch ``number`` (from 1) writes results.csv and summary.json: a numbered
    subfolder of ``results_url``, default ``<features_url>/predictions``."""
    return join_url(results_url or join_url(features_url, "predictions"), f"batch-{number}")


def summarize(
    extraction: ExtractionSummary,
    training: TrainingSummary,
    registry: RegistrySummary,
    published: dict[str, Any],
    batches: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """The run's record: plain JSON, as the flow returns it and writes it."""
    return {
        "extracted": extraction.n_extracted,
        "reused_chunks": extraction.reused_chunks,
        "failed_clips": [failure.message for failure in extraction.failures],
        "families": {
            outcome.family: {
                "val_gmean": outcome.validation.get("gmean"),
                "test_gmean": outcome.test.get("gmean"),
                "run_id": outcome.run_id,
                "retrained": not outcome.reused,
            }
            for outcome in training.outcomes
        },
        "registered": {
            (a.alias or f"rank {a.rank}"): {
                "version": a.version,
                "family": a.candidate.family,
                "val_gmean": a.candidate.metrics.get("val_gmean"),
            }
            for a in registry.assignments
        },
        "published": published,
        "batches": list(batches),
    }


def write_summary(features_url: str, summary: dict[str, Any], *, s3: S3Config | None) -> str:
    """The record next to the feature table, for whoever triggered the run through the API."""
    url = join_url(features_url, SUMMARY_NAME)
    write_bytes(url, json.dumps(summary, indent=2).encode(), s3=s3)
    return url


def read_summary(features_url: str, *, s3: S3Config | None) -> dict[str, Any]:
    """The record the last run on ``features_url`` wrote."""
    summary: dict[str, Any] = json.loads(read_text(join_url(features_url, SUMMARY_NAME), s3=s3))
    return summary


def describe(summary: dict[str, Any]) -> str:
    """One line for the run's log."""
    retrained = [f for f, info in summary["families"].items() if info["retrained"]]
    published = summary["published"]
    return (
        f"pipeline: {summary['extracted']} clips ({summary['reused_chunks']} chunks reused); "
        f"retrained {retrained or 'nothing'}; registered "
        f"{ {k: v['version'] for k, v in summary['registered'].items()} }; repository version "
        f"{published['version']}{' (new)' if published['created'] else ' (unchanged)'}"
    )


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"


def summary_lines(summary: dict[str, Any], batch_labels: Sequence[str] = ()) -> list[str]:
    """The record for people, one line each: G-mean per family, the registered aliases, the
    published version and each batch (named by ``batch_labels``, else "Batch <n>")."""
    lines = ["Validation G-mean per family:"]
    width = max([14, *(len(family) for family in summary["families"])])
    for family, info in summary["families"].items():
        note = "" if info["retrained"] else " (reused: same table and settings)"
        lines.append(f"  {family:<{width}} {_fmt(info['val_gmean'])}{note}")
    for alias, info in summary["registered"].items():
        lines.append(
            f"{alias.capitalize():<11} version {info['version']} ({info['family']}, "
            f"val G-mean {_fmt(info['val_gmean'])})"
        )
    published = summary["published"]
    lines.append(
        f"Published repository version {published['version']}"
        + (" (new)" if published["created"] else " (unchanged)")
    )
    batches = summary.get("batches") or []
    for number, batch in enumerate(batches, start=1):
        label = batch_labels[number - 1] if number <= len(batch_labels) else f"Batch {number}"
        answered = batch["answered"] or 0
        fallback = batch["drift_answers"] / answered if answered else 0.0
        lines.append(
            f"{label:<11} {answered}/{batch['total']} answered, accuracy "
            f"{_fmt(batch['accuracy'])}, G-mean {_fmt(batch['gmean'])}; drift gate "
            f"{'opened' if batch['gate_openings'] else 'stayed closed'}, "
            f"{fallback:.0%} answered by the fallback, "
            f"{batch.get('ood_answers', 0)} flagged out of distribution"
        )
    return lines
