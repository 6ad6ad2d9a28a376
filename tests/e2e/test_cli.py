"""The documented commands, run as a user would: the installed console script in a shell.

The whole journey (synth -> extract -> train -> register -> publish -> serve -> predict) runs
once, from a non-editable install, in tests/integration/test_install.py."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

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
