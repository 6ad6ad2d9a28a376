"""Training benchmarks: tuning speed on a 1,000 x 60 table, model quality on the synthetic corpus.

    .venv/bin/python bench/training.py speed     # 3 families x 20 trials, real MLflow store
    .venv/bin/python bench/training.py corpus    # synth, extract, train, register via the CLI

``speed``: goal < 3 minutes for all three families x 20 trials on 2 cores, including the MLflow
logging of every trial and of the refit models (no Prefect server: its start-up is not
training). ``corpus``: goal champion test G-mean >= 0.85 with >= 30 clips per genre.
Prints a Markdown block to paste into bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import make_classification

from machine import describe

FAMILIES = ("xgboost", "random_forest", "knn")
GENREOPS = str(Path(sys.executable).with_name("genreops"))


def machine() -> str:
    load = os.getloadavg()[0]
    return f"{describe()}, Python {platform.python_version()}; 1-min load {load:.2f}"


def speed(rows: int, features: int, trials: int, seed: int) -> str:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")
    from genreops import tracking
    from genreops.feature_table import load_feature_table
    from genreops.search_space import load_search_spaces
    from genreops.training import tune

    x, y = make_classification(
        n_samples=rows,
        n_features=features,
        n_informative=features // 2,
        n_classes=10,
        n_clusters_per_class=2,
        class_sep=1.2,
        random_state=seed,
    )
    frame = pd.DataFrame(x, columns=[f"f{i:02d}" for i in range(features)])
    frame.insert(0, "genre", [f"genre{c}" for c in y])
    frame.insert(0, "clip_id", [f"clip{i:05d}" for i in range(rows)])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "table.parquet")
        frame.to_parquet(path, index=False)
        table = load_feature_table(str(path))
        target = tracking.TrackingTarget(f"sqlite:///{tmp}/mlflow.db", f"{tmp}/artifacts")
        spaces = load_search_spaces()
        lines = [
            "| family | trials ok/pruned/failed | tune + refit s | MLflow logging s | "
            "best val G-mean | test accuracy |",
            "|---|---|---:|---:|---:|---:|",
        ]
        target.experiment_id("knn")  # create the store first: not training time
        started = time.perf_counter()
        for family in FAMILIES:
            with tracking.study_run(target, family, table) as (_, log_trial):
                tuned = time.perf_counter()
                result = tune(table, spaces[family], trials=trials, seed=seed, on_trial=log_trial)
                logging_started = time.perf_counter()
                tracking.log_result(result, table, spaces[family].as_dict())
                logged = time.perf_counter()
            counts = result.counts
            lines.append(
                f"| {family} | {counts['complete']}/{counts['pruned']}/{counts['fail']} | "
                f"{logging_started - tuned:.1f} | {logged - logging_started:.1f} | "
                f"{result.validation.metrics['gmean']:.3f} | "
                f"{result.test.metrics['accuracy'] if result.test else float('nan'):.3f} |"
            )
            print(lines[-1], flush=True)
        total = time.perf_counter() - started
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join(
        [
            f"### {stamp}: {rows} x {features} table, 3 families x {trials} trials",
            "",
            f"- command: `.venv/bin/python bench/training.py speed --trials {trials}`; "
            "make_classification, 10 classes, seed "
            f"{seed}; shipped search spaces; trial runs and refit models logged to MLflow "
            "(SQLite + local artifacts)",
            f"- machine: {machine()}",
            "",
            *lines,
            "",
            f"- total **{total:.0f} s** (goal < 180 s): {'met' if total < 180 else 'NOT met'}",
            "",
        ]
    )


def _cli(args: Sequence[str], env: dict[str, str], cwd: Path) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(
        [GENREOPS, *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode:
        raise SystemExit(f"genreops {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - started, result.stdout


def corpus(per_genre: int, trials: int, seed: int, keep: Path | None) -> str:
    from genreops.registry import list_versions
    from genreops.tracking import TrackingTarget

    work = keep or Path(tempfile.mkdtemp(prefix="genreops-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GENREOPS_HOME": str(work / "home"), "COLUMNS": "200"}
    env.pop("PREFECT_API_URL", None)
    timings = {}
    timings["synth"], _ = _cli(
        ["synth", "corpus", "--per-genre", str(per_genre), "--seed", str(seed), "--workers", "2"],
        env,
        work,
    )
    timings["extract"], _ = _cli(["extract", "corpus", "features"], env, work)
    timings["train"], trained = _cli(
        ["train", "features", "--model", "all", "--trials", str(trials), "--seed", str(seed)],
        env,
        work,
    )
    timings["register"], _ = _cli(["register"], env, work)
    print(trained)
    rows = list_versions(TrackingTarget(f"sqlite:///{work / 'home' / 'mlflow.db'}"))
    table = [
        "| version | aliases | family | val G-mean | test G-mean | test accuracy |",
        "|---|---|---|---:|---:|---:|",
    ]
    champion_gmean = float("nan")
    for row in rows:
        metrics = row.metrics
        table.append(
            f"| {row.version} | {', '.join(row.aliases) or '-'} | {row.family} | "
            f"{metrics.get('val_gmean', np.nan):.3f} | {metrics.get('test_gmean', np.nan):.3f} | "
            f"{metrics.get('test_accuracy', np.nan):.3f} |"
        )
        if "champion" in row.aliases:
            champion_gmean = metrics.get("test_gmean", np.nan)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join(
        [
            f"### {stamp}: synthetic corpus, {per_genre} clips/genre, {trials} trials per family",
            "",
            f"- commands: `genreops synth corpus --per-genre {per_genre} --seed {seed}`, "
            f"`genreops extract corpus features`, `genreops train features --model all "
            f"--trials {trials}`, `genreops register` (fresh GENREOPS_HOME)",
            f"- machine: {machine()}",
            "- wall time (s, incl. each command's start-up): "
            + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()),
            "",
            *table,
            "",
            f"- champion test G-mean **{champion_gmean:.3f}** (goal >= 0.85): "
            f"{'met' if champion_gmean >= 0.85 else 'NOT met'}",
            "",
        ]
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("speed", "corpus"))
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--features", type=int, default=60)
    parser.add_argument("--per-genre", type=int, default=30)
    parser.add_argument("--keep", type=Path, help="work folder to keep (corpus)")
    args = parser.parse_args(argv)
    if args.what == "speed":
        text = speed(args.rows, args.features, args.trials, args.seed)
    else:
        text = corpus(args.per_genre, args.trials, args.seed, args.keep)
    print()
    print(text)


if __name__ == "__main__":
    main()
