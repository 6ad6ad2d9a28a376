"""The extract-features flow against the real embedded S3 server, on a real Dask cluster."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from genreops.flows.extract import dask_runner, extract_features
from prefect.task_runners import ThreadPoolTaskRunner

from genreops.core.errors import ExtractionError
from genreops.core.settings import get_settings
from genreops.data import extraction
from genreops.data.features import FEATURE_NAMES, SCHEMA_HASH
from genreops.data.storage import ensure_bucket, read_bytes, upload_dir
from helpers import render_labeled_corpus

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]

PER_GENRE = 3
SECONDS = 6.0


@pytest.fixture(scope="module")
def corpus_in_s3(s3_server: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A small synthetic corpus plus one corrupt file, uploaded to the embedded S3 server."""
    root = tmp_path_factory.mktemp("corpus")
    render_labeled_corpus(root, per_genre=PER_GENRE, seconds=SECONDS, seed=7)
    (root / "rock" / "broken.00099.wav").write_bytes(b"RIFF\x00\x00\x00\x00 this is not audio")
    ensure_bucket("s3://raw/corpus", s3=s3_server.config)
    ensure_bucket("s3://features/x", s3=s3_server.config)
    upload_dir(root, "s3://raw/corpus", s3=s3_server.config)
    return "s3://raw/corpus"


@pytest.fixture
def s3_settings(s3_server: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Point the flow's settings at the embedded server (the flow reads settings at its edge)."""
    config = s3_server.config
    monkeypatch.setenv("GENREOPS_S3_ENDPOINT_URL", config.endpoint_url)
    monkeypatch.setenv("GENREOPS_S3_ACCESS_KEY_ID", config.access_key_id)
    monkeypatch.setenv("GENREOPS_S3_SECRET_ACCESS_KEY", config.secret_access_key)
    monkeypatch.setenv("GENREOPS_MIN_SECONDS", "5")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _run(input_url: str, output_url: str, **kwargs: Any) -> extraction.ExtractionSummary:
    # Dask is under test in the first and last tests; the others swap in Prefect's thread pool.
    runner = kwargs.pop("runner", None) or ThreadPoolTaskRunner(max_workers=2)
    flow = extract_features.with_options(task_runner=runner)
    return flow(
        input_url=input_url, output_url=output_url, chunk_size=8, window_seconds=SECONDS, **kwargs
    )


def _table(url: str, s3: Any) -> pd.DataFrame:
    import io

    return pd.read_parquet(io.BytesIO(read_bytes(url, s3=s3)))


@pytest.mark.usefixtures("s3_settings")
def test_extracts_table_split_and_manifest_and_lists_the_corrupt_file(
    corpus_in_s3: str, s3_server: Any
) -> None:
    summary = _run(corpus_in_s3, "s3://features/run1", runner=dask_runner(workers=2))

    n_good = PER_GENRE * 10
    table = _table(summary.table_url, s3_server.config)
    assert list(table.columns) == ["clip_id", "genre", *FEATURE_NAMES]
    assert len(table) == n_good == summary.n_extracted
    assert table["genre"].value_counts().to_dict() == dict.fromkeys(
        sorted(set(table["genre"])), PER_GENRE
    )
    assert table[list(FEATURE_NAMES)].notna().all().all()

    manifest = extraction.read_manifest("s3://features/run1", s3=s3_server.config)
    assert manifest["schema"]["hash"] == SCHEMA_HASH
    assert manifest["counts"]["extracted"] == n_good and manifest["counts"]["failed"] == 1
    (failure,) = manifest["failures"]
    assert failure["clip_id"] == "rock/broken.00099.wav"
    assert failure["reason"] in {"not_audio", "corrupt"}
    assert "rock/broken.00099.wav" in failure["message"]
    assert manifest["source"]["n_clips"] == n_good + 1

    split = pd.read_csv(pd.io.common.BytesIO(read_bytes(summary.split_url, s3=s3_server.config)))
    assert sorted(split["clip_id"]) == sorted(table["clip_id"])
    assert set(split["split"]) == {"train", "val", "test"}


@pytest.mark.usefixtures("s3_settings")
def test_rerun_reuses_finished_chunks_and_gives_the_same_table(
    corpus_in_s3: str, s3_server: Any
) -> None:
    first = _run(corpus_in_s3, "s3://features/run2")
    second = _run(corpus_in_s3, "s3://features/run2")
    assert first.reused_chunks == 0
    manifest = extraction.read_manifest("s3://features/run2", s3=s3_server.config)
    assert second.reused_chunks == manifest["chunks"]["total"] > 1
    pd.testing.assert_frame_equal(
        _table(first.table_url, s3_server.config), _table(second.table_url, s3_server.config)
    )


@pytest.mark.usefixtures("s3_settings")
def test_run_fails_when_failed_share_passes_the_threshold(
    corpus_in_s3: str, s3_server: Any
) -> None:
    with pytest.raises(ExtractionError, match=r"1 of 31 clips failed"):
        _run(corpus_in_s3, "s3://features/run3", max_failed_share=0.0)
    # the manifest is still written, so the user can see what failed
    manifest = extraction.read_manifest("s3://features/run3", s3=s3_server.config)
    assert manifest["counts"]["failed"] == 1
