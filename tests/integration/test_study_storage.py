"""Several workers tune one Optuna study through a shared PostgreSQL storage."""

from __future__ import annotations

import multiprocessing
import uuid
from pathlib import Path

import optuna
import pytest

from genreops.core.errors import TrainingError
from genreops.data.feature_table import load_feature_table
from genreops.training.search_space import load_search_spaces
from genreops.training.tuning import tune
from helpers import DATABASE, SERVER, postgres_or_skip, synthetic_feature_frame

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def storage_url() -> str:
    postgres_or_skip()  # creates the test database once; each test uses its own study name
    return f"{SERVER}/{DATABASE}"


def _worker(table_path: str, storage: str, study: str, seed: int) -> None:
    table = load_feature_table(table_path)
    tune(table, load_search_spaces()["knn"], trials=4, seed=seed, storage=storage, study_name=study)


def test_two_processes_tune_one_study(storage_url: str, tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    synthetic_feature_frame(per_genre=10).to_parquet(path, index=False)
    study = f"test-{uuid.uuid4().hex[:12]}"
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_worker, args=(str(path), storage_url, study, seed))
        for seed in (1, 2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
    assert [w.exitcode for w in workers] == [0, 0]
    trials = optuna.load_study(study_name=study, storage=storage_url).trials
    assert len(trials) == 8
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)


def test_an_unreachable_storage_is_reported_without_the_password(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    synthetic_feature_frame(per_genre=4).to_parquet(path, index=False)
    table = load_feature_table(str(path))
    with pytest.raises(
        TrainingError, match=r"study storage 127\.0\.0\.1:1/x: cannot open"
    ) as caught:
        tune(
            table,
            load_search_spaces()["knn"],
            trials=1,
            storage="postgresql://u:secret@127.0.0.1:1/x",
        )
    assert "secret" not in str(caught.value)
