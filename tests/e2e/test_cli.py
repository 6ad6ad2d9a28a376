"""The documented commands, run as a user would: the installed console script in a shell."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from genreops.data.features import FEATURE_NAMES, SCHEMA_HASH
from helpers import gtzan_public_frame

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("prefect_harness")]

GENREOPS = str(Path(sys.executable).parent / "genreops")


def _run(*args: str, cwd: Path, new_user: bool = False) -> subprocess.CompletedProcess[str]:
    """``new_user``: no Prefect server configured, so each flow run starts a temporary one
    (20-30 s each on 2 cores); otherwise the session's Prefect server (``prefect_harness``)."""
    env = {**os.environ, "GENREOPS_HOME": str(cwd / ".genreops"), "COLUMNS": "200"}
    if new_user:
        env.pop("PREFECT_API_URL", None)
    return subprocess.run(
        [GENREOPS, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )


def test_help_lists_the_commands(tmp_path: Path) -> None:
    result = _run("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in (
        "synth", "upload", "extract", "s3-server", "train", "register", "models", "publish",
        "rollback", "serve", "predict", "pipeline",
    ):  # fmt: skip
        assert command in result.stdout


def test_synth_extract_train_register_models(tmp_path: Path) -> None:
    """The documented journey: corpus -> features -> six tuned families -> two aliases."""
    synth = _run("synth", "c", "--per-genre", "3", "--seconds", "6", "--workers", "2", cwd=tmp_path)
    assert synth.returncode == 0, synth.stderr
    assert len(list((tmp_path / "c").glob("*/*.wav"))) == 30

    extract = _run("extract", "c", "f", "--workers", "1", "--window", "6", cwd=tmp_path)
    assert extract.returncode == 0, extract.stderr
    table_path = tmp_path / "f" / "features.parquet"
    assert f"feature table: {table_path}" in extract.stdout
    table = pd.read_parquet(table_path)
    assert len(table) == 30 and list(table.columns) == ["clip_id", "genre", *FEATURE_NAMES]
    assert json.loads((tmp_path / "f" / "manifest.json").read_text())["counts"]["failed"] == 0

    train = _run("train", "f", "--family", "all", "--trials", "3", cwd=tmp_path)
    assert train.returncode == 0, train.stderr
    for family in ("xgboost", "random_forest", "knn", "svc", "logistic_regression", "soft_vote"):
        assert family in train.stdout
    assert train.stdout.count("3/0/0") == 6  # trials ok/pruned/failed per family

    register = _run("register", cwd=tmp_path)
    assert register.returncode == 0, register.stderr
    assert "champion" in register.stdout and "challenger" in register.stdout
    again = _run("register", cwd=tmp_path)
    assert "registry already up to date" in again.stdout

    models = _run("models", cwd=tmp_path)
    assert models.returncode == 0, models.stderr
    rows = [
        line for line in models.stdout.splitlines() if "champion" in line or "challenger" in line
    ]
    assert len(rows) == 2 and all(SCHEMA_HASH in row for row in rows)


def test_train_refuses_a_non_numeric_column_by_name(tmp_path: Path) -> None:
    frame = pd.DataFrame({"genre": ["rock", "pop"] * 6, "tempo": range(12), "note": ["x"] * 12})
    frame.to_csv(tmp_path / "t.csv", index=False)
    result = _run("train", "t.csv", "--trials", "1", cwd=tmp_path)
    assert result.returncode == 1
    assert re.search(r"feature column 'note' \(\w+\) is not numeric", result.stderr)
    assert "Traceback" not in result.stderr


def test_train_on_the_public_gtzan_table_as_downloaded(tmp_path: Path) -> None:
    """features_30_sec.csv's shape (generated, never downloaded), its folder given as is."""
    (tmp_path / "Data").mkdir()
    gtzan_public_frame(per_genre=8).to_csv(tmp_path / "Data" / "features_30_sec.csv", index=False)
    train = _run("train", "Data", "--family", "knn", "--trials", "2", cwd=tmp_path, new_user=True)
    assert train.returncode == 0, train.stderr
    assert "columns: label 'label'; ids 'filename'; 57 features; not features: 'length'" in (
        train.stdout
    )
    assert "features_30_sec.csv" in train.stdout and "2/0/0" in train.stdout
    # a numeric row index (to_csv's default) would leak the order of the genres: refused
    gtzan_public_frame(per_genre=4).to_csv(tmp_path / "indexed.csv")
    refused = _run("train", "indexed.csv", "--trials", "1", cwd=tmp_path)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "'Unnamed: 0' looks like metadata" in refused.stderr
    assert "--drop-column" in refused.stderr


def test_bad_input_gives_one_clear_line_and_exit_code_1(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = _run("extract", "empty", "f", cwd=tmp_path)
    assert result.returncode == 1
    assert "error:" in result.stderr and "no labeled audio" in result.stderr
    assert "Traceback" not in result.stderr
