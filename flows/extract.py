"""Prefect flow ``extract-features``: list an input, extract chunks on Dask, write the outputs."""

from __future__ import annotations

import time
from typing import Any, Self, cast

from genreops.flows import progress
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE
from prefect.futures import as_completed
from prefect.task_runners import TaskRunner
from prefect_dask import DaskTaskRunner

from genreops.core.settings import get_settings
from genreops.data import extraction
from genreops.data.extraction import Chunk, ChunkResult, ExtractionSummary, ExtractOptions
from genreops.data.storage import S3Config


def dask_runner(address: str | None = None, workers: int = 2) -> DaskTaskRunner:
    """An external scheduler when given an address, else a local cluster of processes."""
    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": workers,
            "threads_per_worker": 1,
            "processes": True,
            # loopback only, and a free port so two runs never clash over 8787
            "host": "127.0.0.1",
            "dashboard_address": "127.0.0.1:0",
        }
    )


class ConfiguredDaskRunner(DaskTaskRunner):
    """The cluster named by the settings of the process that runs the flow, chosen when the run
    starts (Prefect duplicates the runner then): a Prefect worker's run, which imports the flow
    afresh, extracts on GENREOPS_DASK_ADDRESS like the CLI does; without one, a local cluster."""

    def duplicate(self) -> Self:
        settings = get_settings()
        chosen = dask_runner(settings.dask_address, settings.dask_workers)
        return type(self)(address=chosen.address, cluster_kwargs=chosen.cluster_kwargs)


@task(name="extract-chunk", retries=3, retry_delay_seconds=[2, 5, 15], cache_policy=NONE)
def extract_chunk_task(
    chunk: Chunk, options: ExtractOptions, output_url: str, s3: S3Config
) -> ChunkResult:
    return extraction.extract_or_reuse_chunk(chunk, options, output_url, s3=s3)


@flow(name="extract-features", task_runner=cast("TaskRunner[Any]", ConfiguredDaskRunner()))
def extract_features(
    input_url: str,
    output_url: str,
    chunk_size: int = 32,
    max_failed_share: float = 0.05,
    split_seed: int = 0,
    window_seconds: float = 30.0,
    offset_seconds: float = 0.0,
) -> ExtractionSummary:
    """Extract features of a labeled corpus (GTZAN layout, local or s3://) into a table.

    Args:
        input_url: folder or s3:// prefix holding <genre>/<clip>.<ext>.
        output_url: folder or s3:// prefix for features.parquet, split.csv and manifest.json.
        chunk_size: clips per Dask task.
        max_failed_share: fail the run when more than this share of clips is unreadable.
        split_seed: seed of the stratified train/val/test split.
        window_seconds: analysis window taken from each clip.
        offset_seconds: where the window starts.
    """
    logger = get_run_logger()
    started = time.perf_counter()
    settings = get_settings()
    options = ExtractOptions(
        offset=offset_seconds,
        window_seconds=window_seconds,
        min_seconds=settings.min_seconds,
        max_seconds=settings.max_seconds,
        max_file_bytes=settings.max_file_bytes,
    )
    clips = extraction.list_clips(input_url, s3=settings.s3)
    chunks = extraction.plan_chunks(clips, chunk_size, options)
    progress.start(len(clips))
    logger.info("%d clips from %s in %d chunks", len(clips), input_url, len(chunks))

    futures = [extract_chunk_task.submit(c, options, output_url, settings.s3) for c in chunks]
    results = []
    for future in as_completed(futures):
        result = future.result()
        results.append(result)
        logger.info(
            "chunk %s: %d ok, %d failed%s",
            result.chunk_id,
            len(result.clip_ids),
            len(result.failures),
            " (reused)" if result.reused else "",
        )
        progress.advance(result.n_clips)

    summary = extraction.finalize(
        input_url=input_url,
        output_url=output_url,
        clips=clips,
        results=results,
        options=options,
        max_failed_share=max_failed_share,
        split_seed=split_seed,
        started_at=started,
        s3=settings.s3,
    )
    for failure in summary.failures:
        logger.warning("skipped %s", failure.message)
    logger.info("wrote %s (%d rows)", summary.table_url, summary.n_extracted)
    return summary
