"""Prefect flow ``pipeline``: every stage in order, each one skipping what is already done.

Extraction reuses the chunks of unchanged clips, training reuses a family's finished study of
the same table and settings (unless ``retrain``), registering and publishing change nothing
when the winners did not change. So a second run on the same data costs little more than the
batch predictions at its end. The record and the options are genreops.app.pipeline's.
"""

from __future__ import annotations

from typing import Any

from genreops.flows.extract import dask_runner, extract_features
from genreops.flows.registry import register_best
from genreops.flows.serving import batch_predict, publish
from genreops.flows.train import train_model
from prefect import flow, get_run_logger

from genreops.app import pipeline as record
from genreops.core.settings import get_settings


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
    window_seconds: float | None = None,
    chunk_size: int | None = None,
    max_failed_share: float | None = None,
    dask_address: str | None = None,
    dask_workers: int | None = None,
    study_storage: str | None = None,
    search_space_file: str | None = None,
    cv_folds: int | None = None,
    model_name: str | None = None,
    repository: str | None = None,
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
        window_seconds: analysis window (default: GENREOPS_WINDOW_SECONDS).
        chunk_size: clips per extraction task (default: GENREOPS_EXTRACT_CHUNK_SIZE).
        max_failed_share: extraction fails above this share of bad clips (default:
            GENREOPS_EXTRACT_MAX_FAILED_SHARE).
        dask_address: Dask scheduler for extraction (default: GENREOPS_DASK_ADDRESS; none: a
            local cluster of GENREOPS_DASK_WORKERS workers).
        dask_workers: workers of the local Dask cluster (default: GENREOPS_DASK_WORKERS).
        study_storage: Optuna storage URL (default: GENREOPS_STUDY_STORAGE_URL; none: memory).
        search_space_file: search spaces YAML (default: GENREOPS_SEARCH_SPACE_FILE, else the
            shipped one).
        cv_folds: folds of the tuning objective (default: GENREOPS_CV_FOLDS).
        model_name: registered model name (default: GENREOPS_MODEL_NAME).
        repository: Triton model repository (default: GENREOPS_TRITON_REPOSITORY).
    """
    logger = get_run_logger()
    settings = get_settings()
    options = record.PipelineOptions.resolve(
        settings,
        dask_address=dask_address,
        dask_workers=dask_workers,
        window_seconds=window_seconds,
        chunk_size=chunk_size,
        max_failed_share=max_failed_share,
        study_storage=study_storage,
        search_space_file=search_space_file,
        cv_folds=cv_folds,
        model_name=model_name,
        repository=repository,
    )
    extract = extract_features.with_options(
        task_runner=dask_runner(options.dask_address, options.dask_workers)
    )
    extraction = extract(
        corpus_url,
        features_url,
        chunk_size=options.chunk_size,
        max_failed_share=options.max_failed_share,
        split_seed=seed,
        window_seconds=options.window_seconds,
    )
    training = train_model(
        extraction.table_url,
        families=families,
        trials=trials,
        seed=seed,
        study_storage=options.study_storage,
        search_space_file=options.search_space_file,
        skip_trained=not retrain,
        cv_folds=options.cv_folds,
    )
    # scores of other tables don't compare
    registry = register_best(model_name=options.model_name, table=training.table_url)
    published = publish(repository=options.repository, model_name=options.model_name)
    batches = []
    for number, url in enumerate(predict_urls or [], start=1):
        output = record.batch_output_url(features_url, results_url, number)
        summary = batch_predict(url, output, expect_labels_from_folders=True)
        batches.append({"input_url": url, "output_url": output, **summary})
    result = record.summarize(extraction, training, registry, published, batches)
    record.write_summary(features_url, result, s3=settings.s3)
    logger.info("%s", record.describe(result))
    return result
