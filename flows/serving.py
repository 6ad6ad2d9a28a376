"""Prefect flows ``publish`` and ``batch-predict``: thin wrappers over
genreops.serving's publish and client."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from genreops.core.settings import get_settings
from genreops.data.storage import join_url, write_bytes
from genreops.monitoring.feedback import save_labels
from genreops.serving import client
from genreops.serving.publish import publish_and_record, read_history


@flow(name="publish")
def publish(
    repository: str | None = None, server_url: str | None = None, model_name: str | None = None
) -> dict[str, Any]:
    """Publish the registered champion/challenger as a new repository version.

    Args:
        repository: model repository folder (default: GENREOPS_HOME/triton/repository).
        server_url: Triton HTTP URL to hot-load into (explicit model control); default: the
            server `genreops serve` or `genreops stack` runs, if any.
        model_name: registered model name (default: the `GENREOPS_MODEL_NAME` setting).
    """
    logger = get_run_logger()
    result = publish_and_record(
        get_settings(),
        Path(repository) if repository else None,
        model_name=model_name,
        server_url=server_url,
    )
    logger.info(
        "%s version %d: champion %s, challenger %s%s",
        "published" if result.created else "already published",
        result.version,
        result.champion.label,
        result.challenger.label,
        f"; loaded into {result.server_url}" if result.loaded else "",
    )
    return {
        "version": result.version,
        "created": result.created,
        "current": read_history(result.repository)["current"],
    }


@flow(name="batch-predict")
def batch_predict(
    input_url: str,
    output_url: str,
    url: str | None = None,
    protocol: str = "grpc",
    batch_size: int = 1,
    concurrency: int = 4,
    expect_labels_from_folders: bool = False,
) -> dict[str, Any]:
    """Classify every audio file under a folder or s3:// prefix with the served ensemble.

    Writes ``results.csv`` (one row per file: genre, model, drift, error, probabilities) and
    ``summary.json`` under ``output_url``. The server itself records every answer in the
    monitoring store.

    Args:
        input_url: folder or s3:// prefix of audio files (any depth).
        output_url: folder or s3:// prefix for results.csv and summary.json.
        url: Triton host:port (default: GENREOPS_TRITON_URL).
        protocol: grpc or http.
        batch_size: files per request.
        concurrency: requests in flight.
        expect_labels_from_folders: each file's folder is its true genre: adds accuracy, and
            stores the genres as labels in the monitoring store.
    """
    logger = get_run_logger()
    settings = get_settings()
    paths = client.list_inputs([input_url], s3=settings.s3)
    ensemble = client.EnsembleClient(url or settings.triton_url, protocol)
    labels = ensemble.labels()
    answers = client.predict(
        paths,
        ensemble,
        batch_size=batch_size,
        concurrency=concurrency,
        labels_from_folders=expect_labels_from_folders,
        max_bytes=settings.max_file_bytes,
        s3=settings.s3,
    )
    for answer in answers:
        if not answer.ok:
            logger.warning("%s: %s", answer.path, answer.error)
    summary = client.summarize(answers)
    result = asdict(summary)
    if expect_labels_from_folders:  # the folders' genres are ground truth: keep it
        labels_saved = save_labels(
            settings, client.folder_labels(answers), f"batch-predict {input_url}", check_known=False
        )
        result["labels_stored"] = labels_saved.stored
        result["labels_spooled"] = labels_saved.spooled
    write_bytes(
        join_url(output_url, "results.csv"), client.render(answers, labels, "csv"), s3=settings.s3
    )
    write_bytes(
        join_url(output_url, "summary.json"), json.dumps(result, indent=2).encode(),
        s3=settings.s3,
    )  # fmt: skip
    logger.info(
        "%d of %d classified; by model %s; accuracy %s",
        summary.answered,
        summary.total,
        summary.by_model,
        "-" if summary.accuracy is None else f"{summary.accuracy:.3f}",
    )
    return result
