"""The pipeline's options and record (genreops.app.pipeline), without Prefect: what each stage
runs with, where batches go, the record the run writes and how it reads to people."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from genreops.app import pipeline as record
from genreops.core.settings import Settings
from genreops.data.extraction import ExtractionSummary, Failure
from genreops.training import registry
from genreops.training.studies import FamilyOutcome, TrainingSummary

pytestmark = pytest.mark.unit


def _settings(tmp_path: Path, **values: Any) -> Settings:
    no_dotenv: dict[str, Any] = {"_env_file": None}
    return Settings(home=tmp_path / "home", use_stack_env=False, **no_dotenv, **values)


def test_options_left_out_are_the_settings(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path, window_seconds=6.0, extract_chunk_size=7, dask_workers=3,
        study_storage_url="sqlite:///s.db", cv_folds=0, model_name="m",
        search_space_file=tmp_path / "spaces.yaml",
    )  # fmt: skip
    options = record.PipelineOptions.resolve(settings)
    assert options == record.PipelineOptions(
        dask_address=None,
        dask_workers=3,
        window_seconds=6.0,
        chunk_size=7,
        max_failed_share=settings.extract_max_failed_share,
        study_storage="sqlite:///s.db",
        search_space_file=str(tmp_path / "spaces.yaml"),
        cv_folds=0,
        model_name="m",
        repository=str(settings.repository),
    )


def test_options_given_win_even_when_falsy(tmp_path: Path) -> None:
    settings = _settings(tmp_path, cv_folds=4, extract_max_failed_share=0.5)
    options = record.PipelineOptions.resolve(
        settings, cv_folds=0, max_failed_share=0.0, repository="r", dask_address="tcp://h:1"
    )
    assert (options.cv_folds, options.max_failed_share) == (0, 0.0)
    assert (options.repository, options.dask_address) == ("r", "tcp://h:1")


def test_batches_go_to_numbered_folders() -> None:
    assert record.batch_output_url("s3://f/x", None, 2) == "s3://f/x/predictions/batch-2"
    assert record.batch_output_url("s3://f/x", "/tmp/out", 1) == "/tmp/out/batch-1"


def _summary() -> dict[str, Any]:
    extraction = ExtractionSummary(
        "o", "o/features.parquet", "o/split.csv", "o/manifest.json", 5, 4,
        [Failure("blues.1", "c/blues/1.wav", "decode", "bad header")], reused_chunks=1,
    )  # fmt: skip
    training = TrainingSummary("o/features.parquet", "abc", {"train": 3})
    training.outcomes = [
        FamilyOutcome(
            "knn", "r1", "runs:/r1/model", "s", {}, {"gmean": 0.8}, {"gmean": 0.7},
            {"complete": 2}, 1.0, reused=True,
        ),
        FamilyOutcome(
            "svc", "r2", "runs:/r2/model", "s", {}, {"gmean": 0.9}, {}, {"complete": 2}, 1.0
        ),
    ]  # fmt: skip
    candidate = registry.Candidate("r2", "svc", "runs:/r2/model", "1", "abc", {"val_gmean": 0.9}, 0)
    registered = registry.RegistrySummary(
        "genre-classifier", 2, [registry.Assignment(1, "champion", "5", candidate, "best")]
    )
    published = {"version": 3, "created": True, "current": 3}
    batch = {
        "input_url": "b", "output_url": "o/b", "total": 4, "answered": 4, "drift_answers": 1,
        "gate_openings": 1, "accuracy": 0.75, "gmean": 0.5, "ood_answers": 0,
    }  # fmt: skip
    return record.summarize(extraction, training, registered, published, [batch])


def test_the_record_names_every_stage() -> None:
    summary = _summary()
    assert summary["extracted"] == 4 and summary["reused_chunks"] == 1
    assert summary["failed_clips"] == ["bad header"]
    assert summary["families"] == {
        "knn": {"val_gmean": 0.8, "test_gmean": 0.7, "run_id": "r1", "retrained": False},
        "svc": {"val_gmean": 0.9, "test_gmean": None, "run_id": "r2", "retrained": True},
    }
    assert summary["registered"] == {
        "champion": {"version": "5", "family": "svc", "val_gmean": 0.9}
    }
    assert summary["published"]["version"] == 3 and len(summary["batches"]) == 1


def test_the_record_is_written_next_to_the_table_and_read_back(tmp_path: Path) -> None:
    summary = _summary()
    url = record.write_summary(str(tmp_path), summary, s3=None)
    assert url == str(tmp_path / record.SUMMARY_NAME)
    assert record.read_summary(str(tmp_path), s3=None) == summary


def test_the_record_for_people() -> None:
    summary = _summary()
    lines = record.summary_lines(summary)
    assert lines[0] == "Validation G-mean per family:"
    assert lines[1] == "  knn            0.800 (reused: same table and settings)"
    assert lines[2] == "  svc            0.900"
    assert lines[3] == "Champion    version 5 (svc, val G-mean 0.900)"
    assert lines[4] == "Published repository version 3 (new)"
    assert lines[5].startswith("Batch 1     4/4 answered, accuracy 0.750, G-mean 0.500; drift")
    assert "25% answered by the fallback" in lines[5]
    assert record.summary_lines(summary, ["Clean set"])[5].startswith("Clean set   4/4")
    assert record.describe(summary) == (
        "pipeline: 4 clips (1 chunks reused); retrained ['svc']; registered "
        "{'champion': '5'}; repository version 3 (new)"
    )
