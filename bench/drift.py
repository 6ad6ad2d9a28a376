"""Does the drift gate see real shifts fast, and stay shut on clean traffic? (issue 14)

On feature vectors from ``bench/shifts.py`` (rendered here: clean synthetic clips, six kinds
of shifted audio and clearly foreign clips), for the gate as served
(``genreops.monitoring.novelty``,
the settings' defaults) and for alternatives, it measures:

- **detection delay**: requests after a shift until the gate opens, over ``--trials`` streams
  of 30 clean requests then the shifted ones (median, 90th percentile, share never detected
  within ``--max-delay``), and requests of clean traffic until it closes again;
- **false openings** per 10,000 clean requests (``--clean-streams`` streams of 10,000 drawn
  from clean clips the reference never saw);
- **per-request OOD flag**: share of each shift's clips flagged, share of clean clips flagged;
- how separable each shift is: ROC AUC of a domain classifier (shifted vs clean, 5-fold CV).

References: the model's training features as ``genreops.training.tracking`` samples them, at two
sizes (a demo-sized model of 30 clips per genre, a GTZAN-sized one of 100 per genre), over
all schema columns and over the 57 public-table columns.

    .venv/bin/python bench/drift.py                 # ~5 min the first time (renders), ~2 min after
    .venv/bin/python bench/drift.py --variants      # also the alternatives the choice rests on

Prints a markdown block for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import sklearn
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_predict

import shifts
from genreops.core.settings import Settings
from genreops.data.features import FEATURE_NAMES
from genreops.monitoring.novelty import (
    ConformalCusum,
    NoveltyMonitor,
    NoveltyScorer,
    NoveltySettings,
)
from machine import describe

_SPECTRAL = ("chroma_stft", "rms", "spectral_centroid", "spectral_bandwidth", "rolloff",
             "zero_crossing_rate", "harmony", "perceptr")  # fmt: skip
GTZAN_COLUMNS = [  # the public table's 57 features, in its order
    *(f"{n}_{s}" for n in _SPECTRAL for s in ("mean", "var")),
    "tempo",
    *(f"mfcc{i}_{s}" for i in range(1, 21) for s in ("mean", "var")),
]
CLEAN_PREFIX = 30
STREAM = 10_000


@dataclass(frozen=True)
class Variant:
    name: str
    settings: NoveltySettings
    channels: str = "all"  # "all" (per-feature tails + joint distance) or "joint" only


def served_settings() -> NoveltySettings:
    """The gate's defaults, as ``genreops publish`` renders them from Settings."""
    s = Settings()
    return NoveltySettings(
        neighbours=s.drift_neighbours,
        ood_alpha=s.drift_ood_alpha,
        expected_run=s.drift_expected_run,
        kappa=s.drift_kappa,
        close_fraction=s.drift_close_fraction,
    )


def variants(base: NoveltySettings, all_of_them: bool) -> list[Variant]:
    served = Variant("served", base)
    if not all_of_them:
        return [served]
    return [
        served,
        Variant("joint distance channel only (no per-feature channels)", base, "joint"),
        Variant(f"kappa 0.5 (served {base.kappa})", replace(base, kappa=0.5)),
        Variant("expected run 1e4", replace(base, expected_run=1e4)),
        Variant("close at half the alarm level", replace(base, close_fraction=0.5)),
    ]


def channel_p(scorer: NoveltyScorer, x: np.ndarray, channels: str) -> np.ndarray:
    """``[rows, channels]`` p-values, as ``NoveltyMonitor.assess`` feeds its detector."""
    z = scorer.standardise(x)
    joint = scorer.p_values(scorer.knn_distances(z))[:, None]
    return joint if channels == "joint" else np.hstack([scorer.column_p_values(z), joint])


def domain_auc(clean: np.ndarray, shifted: np.ndarray) -> float:
    x = np.vstack([clean, shifted])
    y = np.r_[np.zeros(len(clean)), np.ones(len(shifted))]
    model = HistGradientBoostingClassifier(max_iter=100, random_state=0)
    proba = cross_val_predict(model, x, y, cv=5, method="predict_proba")[:, 1]
    return float(roc_auc_score(y, proba))


def delays(
    p_clean: np.ndarray,
    p_shift: np.ndarray,
    settings: NoveltySettings,
    trials: int,
    max_delay: int,
    rng: np.random.Generator,
) -> tuple[list[int | None], list[int | None], int]:
    """Per trial: requests until the gate opens, clean requests until it closes again;
    and openings during the clean prefixes (false alarms)."""
    opened, closed, early = [], [], 0
    for _ in range(trials):
        detector = ConformalCusum(settings, p_clean.shape[1])
        _, gate = detector.update(p_clean[rng.integers(0, len(p_clean), CLEAN_PREFIX)])
        early += int(gate.any())
        _, gate = detector.update(p_shift[rng.integers(0, len(p_shift), max_delay)])
        hit = np.flatnonzero(gate)
        opened.append(int(hit[0]) + 1 if len(hit) else None)
        if not len(hit):
            closed.append(None)
            continue
        _, gate = detector.update(p_clean[rng.integers(0, len(p_clean), max_delay * 10)])
        shut = np.flatnonzero(~gate)
        closed.append(int(shut[0]) + 1 if len(shut) else None)
    return opened, closed, early


def false_openings(
    p_clean: np.ndarray, settings: NoveltySettings, streams: int, rng: np.random.Generator
) -> tuple[int, float]:
    """Openings over ``streams`` clean streams of STREAM requests; the largest statistic seen."""
    openings, peak = 0, 0.0
    for _ in range(streams):
        detector = ConformalCusum(settings, p_clean.shape[1])
        statistic, _ = detector.update(p_clean[rng.integers(0, len(p_clean), STREAM)])
        openings += detector.alarms
        peak = max(peak, float(statistic.max()))
    return openings, peak


def _median(values: list[int | None], cap: int) -> str:
    got = np.array([cap * 10 if v is None else v for v in values], dtype=float)
    return f"{np.median(got):.0f}" if np.median(got) < cap * 10 else f"> {cap}"


def _p90(values: list[int | None], cap: int) -> str:
    got = np.array([cap * 10 if v is None else v for v in values], dtype=float)
    value = np.percentile(got, 90)
    return f"{value:.0f}" if value < cap * 10 else f"> {cap}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200, help="streams per shift")
    parser.add_argument("--max-delay", type=int, default=300)
    parser.add_argument("--clean-streams", type=int, default=10, help="x 10,000 clean requests")
    parser.add_argument("--variants", action="store_true", help="also the alternatives")
    parser.add_argument("--per-genre", type=int, default=100, help="reference/clean clips")
    parser.add_argument("--shift-per-genre", type=int, default=10)
    parser.add_argument("--foreign", type=int, default=60)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    started = time.perf_counter()
    load_start = os.getloadavg()[0]

    training = shifts.corpus(args.per_genre, 0, args.workers)
    clean_all = shifts.corpus(args.per_genre, 1, args.workers)
    sets = {k: shifts.shifted(k, args.shift_per_genre, workers=args.workers) for k in shifts.SHIFTS}
    foreign = shifts.foreign(args.foreign, args.workers)
    rng = np.random.default_rng(0)
    base = served_settings()
    lines = [
        f"### {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: drift gate detection (`bench/drift.py`)",
        "",
        "- command: `.venv/bin/python bench/drift.py " + " ".join(sys.argv[1:]) + "`",
        f"- machine: {describe()}; load {load_start:.2f} at start",
        f"- versions: Python {platform.python_version()}, numpy {np.__version__}, "
        f"scikit-learn {sklearn.__version__}",
        f"- served settings: {base}",
        f"- data: clean synthetic clips (30 s, 10 genres) for the reference and, with another "
        f"seed, the clean stream ({len(clean_all)} clips); {args.shift_per_genre * 10} clips "
        f"per shift; {len(foreign)} foreign clips; {args.trials} streams per shift of "
        f"{CLEAN_PREFIX} clean requests then shifted ones; {args.clean_streams} x 10,000 clean",
        "",
    ]
    configs = [
        ("demo-sized model (30 clips/genre, all columns)", 30, list(FEATURE_NAMES)),
        ("GTZAN-sized model (100 clips/genre, all columns)", 100, list(FEATURE_NAMES)),
        ("GTZAN-sized model (100 clips/genre, the 57 public-table columns)", 100, GTZAN_COLUMNS),
    ]
    for title, per_genre, columns in configs:
        for variant in variants(base, args.variants and per_genre == 100):
            lines += _one_config(
                f"{title}; {variant.name}", variant, per_genre, columns, training, clean_all,
                sets, foreign, args, rng,
            )  # fmt: skip
    lines.append(f"- bench run time {time.perf_counter() - started:.0f} s")
    print("\n".join(lines))
    return 0


def _one_config(
    title: str,
    variant: Variant,
    per_genre: int,
    columns: list[str],
    training: pd.DataFrame,
    clean_all: pd.DataFrame,
    sets: dict[str, pd.DataFrame],
    foreign: pd.DataFrame,
    args: argparse.Namespace,
    rng: np.random.Generator,
) -> list[str]:
    settings = variant.settings
    # the model's training split (~70 %) of per_genre clips per genre, as tracking samples it
    rows = training.groupby("label").head(per_genre).sample(frac=0.7, random_state=0)

    def fit(exclude: str | None = None) -> NoveltyScorer:
        kept = rows if exclude is None else rows[rows["label"] != exclude]
        values = kept[columns].to_numpy(np.float64)
        return NoveltyScorer(values, settings.neighbours, settings.ood_alpha)

    scorer = fit()
    clean = clean_all[columns].to_numpy(np.float64)
    monitor = NoveltyMonitor(rows[columns].to_numpy(np.float64), settings)
    t0 = time.perf_counter()
    for i in range(200):
        monitor.assess(clean[i : i + 1])
    per_request_us = (time.perf_counter() - t0) / 200 * 1e6
    flagged_clean = float(np.mean(scorer.p_values(scorer.distances(clean)) <= settings.ood_alpha))
    p_clean = channel_p(scorer, clean, variant.channels)
    openings, peak = false_openings(p_clean, settings, args.clean_streams, rng)
    out = [
        f"**{title}** — reference {len(rows)} rows x {len(columns)}; "
        f"{per_request_us:.0f} us per request (`assess`: score + detector); clean clips "
        "flagged OOD "
        f"{100 * flagged_clean:.1f} %; false openings {openings} in "
        f"{args.clean_streams * STREAM:,} clean requests (highest statistic "
        f"{peak:.2f} of the alarm level)",
        "",
        "| shift | domain AUC | median delay | p90 delay | early alarms | median close | "
        "OOD flagged |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    every = {**sets, "foreign": foreign}
    medians = []
    for kind, frame in every.items():
        shifted = frame[columns].to_numpy(np.float64)
        judge, clean_kind, p_base = scorer, clean, p_clean
        if kind == "held_out":  # the model never saw this genre; its clean traffic neither
            judge = fit(exclude=shifts.HELD_OUT)
            clean_kind = clean_all[clean_all["label"] != shifts.HELD_OUT][columns].to_numpy()
            p_base = channel_p(judge, clean_kind, variant.channels)
        auc = domain_auc(clean_kind[: 4 * len(shifted)], shifted)
        opened, closed, early = delays(
            p_base, channel_p(judge, shifted, variant.channels), settings, args.trials,
            args.max_delay, rng,
        )  # fmt: skip
        flagged = float(np.mean(judge.p_values(judge.distances(shifted)) <= settings.ood_alpha))
        if auc >= 0.9:
            medians.append(np.median([args.max_delay * 10 if v is None else v for v in opened]))
        out.append(
            f"| {kind} | {auc:.3f} | {_median(opened, args.max_delay)} | "
            f"{_p90(opened, args.max_delay)} | {early} | {_median(closed, args.max_delay * 10)} "
            f"| {100 * flagged:.0f} % |"
        )
    out += [
        "",
        "Median over the shifts with AUC >= 0.9 of the median delay: "
        f"**{_median([int(m) for m in medians], args.max_delay)} requests**."
        if medians
        else "",
        "",
    ]
    return out


if __name__ == "__main__":
    sys.exit(main())
