"""The documented commands, run as a user would: the installed console script in a shell."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from genreops.features import FEATURE_NAMES

pytestmark = pytest.mark.e2e

GENREOPS = str(Path(sys.executable).parent / "genreops")


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GENREOPS_HOME": str(cwd / ".genreops"), "COLUMNS": "200"}
    env.pop("PREFECT_API_URL", None)  # as a new user: a temporary Prefect server per run
    return subprocess.run(
        [GENREOPS, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )


def test_help_lists_the_commands(tmp_path: Path) -> None:
    result = _run("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in ("synth", "upload", "extract", "s3-server"):
        assert command in result.stdout


def test_synth_then_extract_prints_where_the_table_is(tmp_path: Path) -> None:
    synth = _run("synth", "c", "--per-genre", "1", "--seconds", "6", cwd=tmp_path)
    assert synth.returncode == 0, synth.stderr
    assert len(list((tmp_path / "c").glob("*/*.wav"))) == 10

    extract = _run("extract", "c", "f", "--workers", "1", cwd=tmp_path)
    assert extract.returncode == 0, extract.stderr
    table_path = tmp_path / "f" / "features.parquet"
    assert f"feature table: {table_path}" in extract.stdout
    table = pd.read_parquet(table_path)
    assert len(table) == 10 and list(table.columns) == ["clip_id", "genre", *FEATURE_NAMES]
    assert json.loads((tmp_path / "f" / "manifest.json").read_text())["counts"]["failed"] == 0


def test_bad_input_gives_one_clear_line_and_exit_code_1(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = _run("extract", "empty", "f", cwd=tmp_path)
    assert result.returncode == 1
    assert "error:" in result.stderr and "no labeled audio" in result.stderr
    assert "Traceback" not in result.stderr
