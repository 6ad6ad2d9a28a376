"""Two-sample drift tests for one column, with scipy: the tests Evidently's drift preset runs.

The record tests each numeric column of a window against the training reference. These are
Evidently's tests for numerical columns, with its names, default thresholds and verdicts
(``tests/unit/test_drift.py`` checks them against Evidently's own report), computed directly:
~0.1 s for 57 columns where a report takes seconds.

=============== ============================================== ========= ====================
method          score                                          threshold drifted when
=============== ============================================== ========= ====================
``ks``          two-sample Kolmogorov-Smirnov p-value           0.05      score <= threshold
``wasserstein`` Wasserstein distance / std of the reference     0.1       score >= threshold
``jensenshannon`` Jensen-Shannon distance of the histograms     0.1       score >= threshold
=============== ============================================== ========= ====================

``method=None`` picks per column as Evidently does: for a reference of up to 1,000 rows KS,
or for a column with at most five distinct values a chi-square test (three to five) or a
two-proportion Z-test (one or two); for a larger reference Wasserstein, or Jensen-Shannon for
five values or fewer. Missing values are dropped before a column gets here.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats
from scipy.spatial import distance

from genreops.monitoring.drift.settings import DriftError

LARGE_REFERENCE = 1000  # rows above which Evidently's own choice moves to distances
FEW_VALUES = 5  # distinct values at or below which a column is tested as categories


@dataclass(frozen=True)
class StatTest:
    """One two-sample test: its score of (reference, current) and when that score is drift."""

    name: str
    display_name: str
    threshold: float
    score: Callable[[np.ndarray, np.ndarray], float]
    drifted: Callable[[float, float], bool]  # (score, threshold)


def _ks(reference: np.ndarray, current: np.ndarray) -> float:
    return float(stats.ks_2samp(reference, current).pvalue)


def _wasserstein(reference: np.ndarray, current: np.ndarray) -> float:
    norm = max(float(np.std(reference)), 0.001)
    return float(stats.wasserstein_distance(reference, current) / norm)


def _counts(reference: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """How often each side holds every value either side holds."""
    values = np.union1d(reference, current)
    ref = np.array([np.count_nonzero(reference == v) for v in values], dtype=np.float64)
    cur = np.array([np.count_nonzero(current == v) for v in values], dtype=np.float64)
    return ref, cur


def _jensenshannon(reference: np.ndarray, current: np.ndarray) -> float:
    if len(np.unique(reference)) > 20:  # binned on common edges (Sturges' rule)
        edges = np.histogram_bin_edges(np.concatenate([reference, current]), bins="sturges")
        ref = np.histogram(reference, edges)[0] / len(reference)
        cur = np.histogram(current, edges)[0] / len(current)
    else:
        ref, cur = _counts(reference, current)
        ref, cur = ref / len(reference), cur / len(current)
    return float(distance.jensenshannon(ref, cur))


def _chisquare(reference: np.ndarray, current: np.ndarray) -> float:
    ref, cur = _counts(reference, current)
    expected = ref * (len(current) / len(reference))
    return float(stats.chisquare(cur, expected).pvalue)


def _z(reference: np.ndarray, current: np.ndarray) -> float:
    """Two-proportion Z-test on "is not the smallest value"."""
    values = np.union1d(reference, current)
    if len(values) == 1:
        return 1.0
    p1 = float(np.mean(reference != values[0]))
    p2 = float(np.mean(current != values[0]))
    n1, n2 = len(reference), len(current)
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    z = (p1 - p2) / math.sqrt(pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2))
    return float(2 * (1 - stats.norm.cdf(abs(z))))


def _at_most(score: float, threshold: float) -> bool:
    return score <= threshold


def _below(score: float, threshold: float) -> bool:
    return score < threshold


def _at_least(score: float, threshold: float) -> bool:
    return score >= threshold


KS = StatTest("ks", "K-S p_value", 0.05, _ks, _at_most)
WASSERSTEIN = StatTest("wasserstein", "Wasserstein distance (normed)", 0.1, _wasserstein, _at_least)
JENSENSHANNON = StatTest("jensenshannon", "Jensen-Shannon distance", 0.1, _jensenshannon, _at_least)
CHISQUARE = StatTest("chisquare", "chi-square p_value", 0.05, _chisquare, _below)
Z = StatTest("z", "Z-test p_value", 0.05, _z, _below)
METHODS = {test.name: test for test in (KS, WASSERSTEIN, JENSENSHANNON)}  # asked for by name


def choose(reference: np.ndarray, current: np.ndarray) -> StatTest:
    """The test Evidently picks for a numerical column of these samples."""
    distinct = len(np.unique(np.concatenate([reference, current])))
    if len(reference) <= LARGE_REFERENCE:
        if distinct > FEW_VALUES:
            return KS
        return CHISQUARE if distinct > 2 else Z
    return WASSERSTEIN if distinct > FEW_VALUES else JENSENSHANNON


def stat_test(method: str) -> StatTest:
    """The test called ``method``; DriftError names the ones there are otherwise."""
    test = METHODS.get(method)
    if test is None:
        raise DriftError(
            f"stat test {method!r} is not one of {', '.join(METHODS)} (or None: chosen per column)"
        )
    return test


def column_score(reference: np.ndarray, current: np.ndarray, method: str | None) -> dict[str, Any]:
    """One column's entry in a drift test: score (None if not finite), method, threshold,
    drifted. Both samples are finite and non-empty."""
    test = stat_test(method) if method is not None else choose(reference, current)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant columns make scipy warn
        score = test.score(reference, current)
    return {
        "score": score if math.isfinite(score) else None,
        "method": test.display_name,
        "threshold": test.threshold,
        "drifted": bool(test.drifted(score, test.threshold)),
    }
