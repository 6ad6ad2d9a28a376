"""Prefect flow ``pipeline``: every stage in order, each one skipping what is already done.

Extraction reuses the chunks of unchanged clips, training reuses a family's finished study of
the same table and settings (unless ``retrain``), registering and publishing change nothing
when the winners did not change. So a second run on the same data costs little more than the
batch predictions at its end.
"""

from __future__ import annotations

import json
from typing import Any

from genreops.flows.extract import dask_runner, extract_features
from genreops.flows.registry import register_best
from genreops.flows.serving import batch_predict, publish
from genreops.flows.train import train_model
from prefect import flow, get_run_logger

from genreops.core.settings import get_settings
from genreops.data.storage import join_url, write_bytes

SUMMARY_NAME = "pipeline.json"  # written next to the feature table


@flow(name="pipeline")
def pipeline(
    corpus_url: str,
    features_url: str,
    families: list[str] | None = None,
    trials: int = 20,
    seed: int = 0,
    retrain: bool = False,
    predict_urls: list[str] | None = None,
    results_url: str | None = None,
) -> dict[str, Any]:
    """Extract, train, register, publish and (optionally) classify batches, end to end.

    Args:
        corpus_url: labeled audio (<genre>/<clip>.<ext>), folder or s3:// prefix.
        features_url: where the feature table goes (folder or s3:// prefix).
        families: any of xgboost, random_forest, knn, svc, logistic_regression, soft_vote
            (default: all six; soft_vote is tuned after its members).
        trials: Optuna trials per family.
        seed: seeds the split, the sampler and the models.
        retrain: tune every family again even if it was tuned on this table with these
            settings before.
        predict_urls: folders or s3:// prefixes of audio to classify once the new models are
            served (labels are taken from their folder names when they look like genres).
        results_url: where each batch's results.csv and summary.json go (one subfolder per
            batch, numbered in order); default: next to the feature table.
    """
    logger = get_run_logger()
    settings = get_settings()
    # the configured Dask cluster (GENREOPS_DASK_ADDRESS), as the CLI and the deployment use
    extract = extract_features.with_options(
        task_runner=dask_runner(settings.dask_address, settings.dask_workers)
    )
    extraction = extract(corpus_url, features_url, split_seed=seed)
    training = train_model(
        extraction.table_url,
        families=families,
        trials=trials,
        seed=seed,
        skip_trained=not retrain,
    )
    registry = register_best(table=training.table_url)  # scores of other tables don't compare
    published = publish()
    batches = []
    for number, url in enumerate(predict_urls or [], start=1):
        output = join_url(results_url or join_url(features_url, "predictions"), f"batch-{number}")
        summary = batch_predict(url, output, expect_labels_from_folders=True)
        batches.append({"input_url": url, "output_url": output, **summary})
    result: dict[str, Any] = {
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
        "batches": batches,
    }
    # the run's own record, for whoever triggered it through the API (the demo reads it)
    write_bytes(
        join_url(features_url, SUMMARY_NAME),
        json.dumps(result, indent=2).encode(),
        s3=settings.s3,
    )
    logger.info(
        "pipeline: %d clips (%d chunks reused); retrained %s; registered %s; repository "
        "version %s%s",
        extraction.n_extracted,
        extraction.reused_chunks,
        [f for f, info in result["families"].items() if info["retrained"]] or "nothing",
        {k: v["version"] for k, v in result["registered"].items()},
        published["version"],
        " (new)" if published["created"] else " (unchanged)",
    )
    return result
