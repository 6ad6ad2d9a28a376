"""Is the synthetic corpus a fair stand-in for GTZAN? Separability, drift visibility, render speed.

Renders ``--per-genre`` clips per genre with ``genreops.data.synth.render_corpus`` (timed), extracts
the platform's features from the written wav files, and reports:

- 5-fold stratified CV accuracy of good off-the-shelf classifiers (target: ~0.85-0.97, i.e.
  learnable but not trivially separable), per-genre recall and the confusion matrix;
- a drift check: a clean and a ``drift=True`` corpus rendered with another seed are compared
  feature by feature (two-sample KS test) and by a domain classifier (ROC AUC); a clean corpus
  with that other seed is the control, where neither should fire;
- accuracy of a model trained on the clean corpus when it meets drifted audio.

    .venv/bin/python bench/synth.py                      # 40 clips/genre, 30 s, 2 workers
    .venv/bin/python bench/synth.py --per-genre 20 --seconds 10
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from pathlib import Path

import numpy as np
from scipy import stats
from sklearn.base import ClassifierMixin, clone
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.metrics import confusion_matrix, roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from genreops.data.audio import load_audio
from genreops.data.features import FEATURE_NAMES, extract_features
from genreops.data.genres import GENRES
from genreops.data.synth import GENERATOR_VERSION, clip_seed, render_clip, render_corpus


def _features_of(path: str) -> np.ndarray:
    return extract_features(load_audio(path, duration=None))


def corpus(
    out: Path, per_genre: int, seconds: float, seed: int, drift: bool, workers: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """Render (timed) and extract one corpus: features, labels, seconds spent rendering."""
    start = time.perf_counter()
    render_corpus(out, per_genre, seconds, seed, drift=drift, workers=workers)
    render_s = time.perf_counter() - start
    files = sorted(out.glob("*/*.wav"))
    labels = np.array([f.parent.name for f in files])
    with ProcessPoolExecutor(max_workers=workers) as pool:
        feats = list(pool.map(_features_of, [str(f) for f in files], chunksize=4))
    return np.vstack(feats), labels, render_s


def models(seed: int) -> dict[str, ClassifierMixin]:
    return {
        "random_forest": RandomForestClassifier(n_estimators=500, random_state=seed, n_jobs=2),
        "hist_gbt": HistGradientBoostingClassifier(
            max_iter=300, learning_rate=0.08, random_state=seed
        ),
        "svc_rbf": make_pipeline(StandardScaler(), SVC(C=10.0, gamma="scale")),
        "knn": make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=5)),
    }


def report_confusion(y: np.ndarray, pred: np.ndarray, genres: Sequence[str]) -> None:
    cm = confusion_matrix(y, pred, labels=list(genres))
    short = [g[:5] for g in genres]
    print("confusion (rows: true, cols: predicted)")
    print(" " * 10 + " ".join(f"{s:>5}" for s in short) + "  recall")
    for g, row in zip(genres, cm, strict=True):
        recall = row[list(genres).index(g)] / max(row.sum(), 1)
        print(f"{g:>9} " + " ".join(f"{v:5d}" for v in row) + f"  {recall:.2f}")


def ks_share(ref: np.ndarray, cur: np.ndarray) -> float:
    """Share of features whose two-sample KS test says p < 0.05 (Evidently's default test)."""
    pvals = np.array([stats.ks_2samp(ref[:, j], cur[:, j]).pvalue for j in range(ref.shape[1])])
    return float(np.mean(pvals < 0.05))


def window_shares(
    ref: np.ndarray, cur: np.ndarray, size: int, seed: int, draws: int = 20
) -> tuple[float, float]:
    """KS share for random windows of ``size`` clips, like a serving drift gate sees: mean, min."""
    rng = np.random.default_rng(seed)
    size = min(size, len(cur))
    shares = [ks_share(ref, cur[rng.choice(len(cur), size, replace=False)]) for _ in range(draws)]
    return float(np.mean(shares)), float(np.min(shares))


def drift_check(ref: np.ndarray, cur: np.ndarray, seed: int) -> tuple[float, float]:
    """KS p < 0.05 share over all features, and a domain classifier's CV ROC AUC."""
    x = np.vstack([ref, cur])
    d = np.r_[np.zeros(len(ref)), np.ones(len(cur))]
    clf = RandomForestClassifier(n_estimators=300, random_state=seed, n_jobs=2)
    cv = StratifiedKFold(5, shuffle=True, random_state=seed)
    proba = cross_val_predict(clf, x, d, cv=cv, method="predict_proba")[:, 1]
    return ks_share(ref, cur), float(roc_auc_score(d, proba))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--per-genre", type=int, default=40)
    parser.add_argument("--drift-per-genre", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--speed-clips", type=int, default=20, help="clips timed in one process")
    parser.add_argument("--window", type=int, default=50, help="clips per drift-gate window")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument(
        "--out", type=Path, default=None, help="keep the corpora here (default: a temp dir)"
    )
    args = parser.parse_args(argv)
    if args.per_genre < 2 or args.drift_per_genre < 1:
        parser.error("need --per-genre >= 2 and --drift-per-genre >= 1")
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]

    with tempfile.TemporaryDirectory(prefix="genreops-bench-synth-") as tmp:
        root = args.out or Path(tmp)
        n_clips = args.per_genre * len(GENRES)
        print(
            f"generator v{GENERATOR_VERSION}: {args.per_genre} clips/genre x {args.seconds:g} s, "
            f"seed {args.seed}, {args.workers} workers, {len(FEATURE_NAMES)} features"
        )
        start = time.perf_counter()
        for i in range(args.speed_clips):
            render_clip(GENRES[i % len(GENRES)], clip_seed(args.seed + 100, i), args.seconds)
        serial = (time.perf_counter() - start) / max(args.speed_clips, 1)
        print(f"render_clip, one process: {serial:.3f} s/clip ({args.speed_clips} clips)")
        x, y, render_s = corpus(
            root / "clean", args.per_genre, args.seconds, args.seed, False, args.workers
        )
        print(
            f"render: {n_clips} clips in {render_s:.1f} s = {render_s / n_clips:.3f} s/clip wall "
            f"({render_s * args.workers / n_clips:.3f} s/clip per core)"
        )

        folds = min(5, args.per_genre)
        cv = StratifiedKFold(folds, shuffle=True, random_state=args.seed)
        best = None
        for name, model in models(args.seed).items():
            pred = cross_val_predict(model, x, y, cv=cv)
            acc = float(np.mean(pred == y))
            print(f"{folds}-fold CV accuracy {name:>13}: {acc:.3f}")
            if best is None or acc > best[1]:
                best = (name, acc, pred)
        assert best is not None
        print(f"best: {best[0]}")
        report_confusion(y, best[2], GENRES)

        other = args.seed + 1
        dn = args.drift_per_genre
        xc, yc, _ = corpus(root / "control", dn, args.seconds, other, False, args.workers)
        xd, yd, drift_s = corpus(root / "drift", dn, args.seconds, other, True, args.workers)
        print(f"drift render: {dn * len(GENRES)} clips in {drift_s:.1f} s")
        share_c, auc_c = drift_check(x, xc, args.seed)
        share_d, auc_d = drift_check(x, xd, args.seed)
        print(
            f"control (clean seed {other} vs clean seed {args.seed}): "
            f"KS p<0.05 share {share_c:.2f}, domain AUC {auc_c:.2f}"
        )
        print(
            f"drift   (drift seed {other} vs clean seed {args.seed}): "
            f"KS p<0.05 share {share_d:.2f}, domain AUC {auc_d:.2f}"
        )
        mean_c, min_c = window_shares(x, xc, args.window, args.seed)
        mean_d, min_d = window_shares(x, xd, args.window, args.seed)
        print(
            f"{args.window}-clip windows, KS p<0.05 share (mean/min of 20): "
            f"control {mean_c:.2f}/{min_c:.2f}, drift {mean_d:.2f}/{min_d:.2f}"
        )
        final = clone(models(args.seed)[best[0]]).fit(x, y)
        acc_c = float(np.mean(final.predict(xc) == yc))
        acc_d = float(np.mean(final.predict(xd) == yd))
        print(
            f"{best[0]} trained on clean: accuracy {acc_c:.3f} on fresh clean clips, "
            f"{acc_d:.3f} on drifted clips"
        )
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}, {date.today()}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
