"""The `pipeline` flow end to end on a small corpus, and what a second run skips."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from genreops.flows.pipeline import pipeline

from genreops.app.pipeline import summary_lines
from genreops.data.synth import render_corpus

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]

GENRES = ("classical", "metal", "reggae", "jazz")


@pytest.fixture(scope="module")
def runs(home: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    render_corpus(home / "corpus", per_genre=8, seconds=8.0, genres=GENRES, workers=2)
    options = {"corpus_url": str(home / "corpus"), "features_url": str(home / "features")}
    first = pipeline(**options, families=["random_forest", "knn"], trials=2)
    second = pipeline(**options, families=["random_forest", "knn"], trials=2)
    return first, second


def test_a_first_run_extracts_trains_registers_and_publishes(
    runs: tuple[dict[str, Any], dict[str, Any]], home: Path
) -> None:
    first, _ = runs
    assert first["extracted"] == 8 * len(GENRES) and first["reused_chunks"] == 0
    assert set(first["families"]) == {"random_forest", "knn"}
    assert all(info["retrained"] for info in first["families"].values())
    assert set(first["registered"]) == {"champion", "challenger"}
    assert first["published"] == {"version": 1, "created": True, "current": 1}
    assert (home / "triton" / "repository" / "genre_ensemble" / "config.pbtxt").exists()


def test_a_second_run_on_the_same_data_redoes_nothing(
    runs: tuple[dict[str, Any], dict[str, Any]], home: Path
) -> None:
    first, second = runs
    assert second["extracted"] == first["extracted"]
    assert second["reused_chunks"] >= 1
    assert not any(info["retrained"] for info in second["families"].values())
    assert {f: i["run_id"] for f, i in second["families"].items()} == {
        f: i["run_id"] for f, i in first["families"].items()
    }
    assert second["registered"] == first["registered"]
    assert second["published"] == {"version": 1, "created": False, "current": 1}
    assert json.loads((home / "features" / "pipeline.json").read_text()) == second
    # what `genreops pipeline` and `make demo` print of it
    assert "Published repository version 1 (new)" in summary_lines(first)
    lines = summary_lines(second)
    assert sum("(reused: same table and settings)" in line for line in lines) == 2, lines
    assert "Published repository version 1 (unchanged)" in lines


def test_retrain_tunes_again_on_request(home: Path) -> None:
    again = pipeline(
        corpus_url=str(home / "corpus"),
        features_url=str(home / "features"),
        families=["knn"],
        trials=2,
        retrain=True,
    )
    assert again["families"]["knn"]["retrained"]


def test_the_cli_command_runs_the_same_flow(
    runs: tuple[dict[str, Any], dict[str, Any]], home: Path
) -> None:
    """`genreops pipeline` on the same corpus: the flow in-process, everything reused, the
    record printed as JSON and written next to the table."""
    from typer.testing import CliRunner

    from genreops.app.cli import app

    saved = dict(os.environ)  # the CLI's callback exports PREFECT_*/MLFLOW_* defaults
    try:
        result = CliRunner().invoke(
            app,
            ["pipeline", str(home / "corpus"), str(home / "features"),
             "-f", "random_forest", "-f", "knn", "--trials", "2", "-o", "json"],
        )  # fmt: skip
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["extracted"] == 8 * len(GENRES) and summary["reused_chunks"] >= 1
    assert set(summary["families"]) == {"random_forest", "knn"}
    assert not any(info["retrained"] for info in summary["families"].values())
    assert set(summary["registered"]) == {"champion", "challenger"}
    assert json.loads((home / "features" / "pipeline.json").read_text()) == summary
