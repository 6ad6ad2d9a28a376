"""The gate's judgement of each request (conformal OOD score) and its online drift detector."""

from __future__ import annotations

import math

import numpy as np
import pytest

from genreops.monitoring.novelty import (
    ConformalCusum,
    NoveltyError,
    NoveltyMonitor,
    NoveltyScorer,
    NoveltySettings,
)

pytestmark = pytest.mark.unit


def clusters(rows: int, seed: int, shift: float = 0.0, columns: int = 12) -> np.ndarray:
    """Three Gaussian clusters (like genres), some columns heavy-tailed like variances."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(0, 4, size=(3, columns))
    x = centres[rng.integers(0, 3, rows)] + rng.normal(size=(rows, columns)) + shift
    x[:, :3] = np.exp(x[:, :3] / 4)  # skewed, positive
    return x


@pytest.fixture(scope="module")
def scorer() -> NoveltyScorer:
    return NoveltyScorer(clusters(600, seed=1), neighbours=5, ood_alpha=0.05)


def test_clean_clips_are_flagged_at_about_the_chosen_rate(scorer: NoveltyScorer) -> None:
    clean = clusters(4000, seed=2)
    p = scorer.p_values(scorer.distances(clean))
    assert 0.03 < float(np.mean(p <= 0.05)) < 0.07
    assert 0.17 < float(np.mean(p <= 0.2)) < 0.23  # uniform, not only in the tail
    # the score is the distance in units of the OOD threshold: over 1 exactly when flagged
    scores = scorer.scores(scorer.distances(clean))
    assert np.array_equal(scores > 1.0, p <= 0.05)


def test_far_and_broken_clips_are_flagged(scorer: NoveltyScorer) -> None:
    far = scorer.distances(clusters(50, seed=3, shift=3.0))
    assert float(np.mean(scorer.p_values(far) <= 0.05)) > 0.9
    assert float(np.median(scorer.scores(far))) > 1.5
    broken = clusters(3, seed=4)
    broken[0, 5], broken[1, 0], broken[2, 7] = np.nan, np.inf, -np.inf
    p = scorer.p_values(scorer.distances(broken))
    assert p == pytest.approx(np.full(3, 1 / 601))  # farther than every reference row


def test_past_the_reference_range_farther_is_more_novel(scorer: NoveltyScorer) -> None:
    """Ranks alone would stop at the reference's extreme: a value twice as far past it must
    score higher, and a heavy-tailed column must not drown the others."""
    base = clusters(1, seed=16)
    ref = clusters(600, seed=1)
    steps = []
    for extra in (1.0, 5.0, 25.0):
        clip = base.copy()
        clip[0, 6] = ref[:, 6].max() + extra
        steps.append(float(scorer.distances(clip)[0]))
    assert steps[0] < steps[1] < steps[2]
    heavy = base.copy()
    heavy[0, 0] = np.quantile(ref[:, 0], 0.99)  # a large but ordinary value of a skewed column
    assert scorer.p_values(scorer.distances(heavy))[0] > 0.05


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        (np.zeros((5, 3)), "5 rows"),
        (np.zeros(30), "shape"),
        (np.c_[np.ones((20, 2)), np.full(20, np.nan)], "without any finite value"),
    ],
)
def test_unusable_references_are_refused(reference: np.ndarray, message: str) -> None:
    with pytest.raises(NoveltyError, match=message):
        NoveltyScorer(reference)


def test_wrong_width_is_refused_naming_the_shapes(scorer: NoveltyScorer) -> None:
    with pytest.raises(NoveltyError, match=r"\[n, 12\].*\[2, 5\]"):
        scorer.distances(np.zeros((2, 5)))


def test_a_reference_too_small_for_alpha_never_flags() -> None:
    small = NoveltyScorer(clusters(20, seed=5), neighbours=3, ood_alpha=0.01)
    assert math.isinf(small.ood_distance)
    far = small.distances(clusters(5, seed=6, shift=10.0))
    assert (small.scores(far) == 0).all()
    assert small.p_values(far) == pytest.approx(np.full(5, 1 / 21))  # the strongest evidence


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"neighbours": 0}, "neighbours=0"),
        ({"ood_alpha": 1.0}, "ood_alpha=1.0"),
        ({"expected_run": 1.0}, "expected_run=1.0"),
        ({"expected_run": math.inf}, "expected_run=inf"),
        ({"kappa": 0.0}, "kappa=0.0"),
        ({"close_fraction": 1.0}, "close_fraction=1.0"),
    ],
)
def test_settings_are_validated(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(NoveltyError, match=message):
        NoveltySettings(**kwargs)  # type: ignore[arg-type]


def test_clean_traffic_runs_at_least_the_expected_run_before_a_false_alarm() -> None:
    """The guarantee itself: with uniform p-values the mean run length is >= expected_run."""
    rng = np.random.default_rng(7)
    settings = NoveltySettings(expected_run=50.0)
    runs = []
    for _ in range(300):
        detector = ConformalCusum(settings)
        steps = 0
        while detector.alarms == 0:
            detector.update(rng.random(64))
            steps += 64
        runs.append(steps)
    assert np.mean(runs) >= 50.0
    # a calibrator whose mean exceeds 1 would break it: p-values skewed small alarm sooner
    skewed = ConformalCusum(settings)
    skewed.update(rng.random(500) ** 1.5)
    assert skewed.alarms > 0


def test_strong_evidence_opens_the_gate_after_the_predicted_number_of_requests() -> None:
    settings = NoveltySettings(expected_run=1e6, kappa=0.5)
    detector = ConformalCusum(settings)
    p = 1 / 1001  # the smallest p-value of a 1,000-row reference
    step = math.log(0.5) - 0.5 * math.log(p)
    statistic, gate = detector.update(np.full(40, p))
    first = int(np.flatnonzero(gate)[0]) + 1
    assert first == math.ceil(math.log(1e6) / step)
    assert statistic[first - 1] == pytest.approx(1.0)
    assert np.all(statistic <= 1.0)  # held at the alarm level while open


def test_the_gate_closes_when_clean_traffic_returns_and_hysteresis_holds() -> None:
    rng = np.random.default_rng(8)
    closes = {}
    for fraction in (0.0, 0.5):
        detector = ConformalCusum(NoveltySettings(expected_run=1e4, close_fraction=fraction))
        _, gate = detector.update(np.full(30, 0.001))
        assert gate[-1]
        statistic, gate = detector.update(rng.random(2000))
        shut = np.flatnonzero(~gate)
        closes[fraction] = int(shut[0]) + 1
        # while open, the statistic stayed above the closing level
        assert (statistic[: closes[fraction] - 1] > fraction).all()
        assert statistic[closes[fraction] - 1] <= fraction
    assert closes[0.5] < closes[0.0] < 400


def test_the_monitor_judges_a_batch_row_by_row() -> None:
    monitor = NoveltyMonitor(clusters(400, seed=9), NoveltySettings(expected_run=100.0))
    clean = monitor.assess(clusters(20, seed=10))
    assert not clean.gate_open.any()
    assert clean.score.shape == clean.p_value.shape == clean.ood.shape == (20,)
    shifted = monitor.assess(clusters(30, seed=11, shift=4.0))
    assert shifted.ood.all()
    first = int(np.flatnonzero(shifted.gate_open)[0])
    assert 0 < first < 10  # rows before the alarm are answered with the gate still closed
    assert shifted.gate_open[first:].all() and monitor.gate_open


def test_column_p_values_rank_each_feature_in_both_tails(scorer: NoveltyScorer) -> None:
    ref = clusters(600, seed=1)
    low, high = ref.min(axis=0) - 1, ref.max(axis=0) + 1
    p = scorer.column_p_values(scorer.standardise(np.vstack([low, high])))
    n, d = 600, ref.shape[1]
    assert p.shape == (2, 2 * d)
    assert p[0, :d] == pytest.approx(np.full(d, 1 / (n + 1)))  # below every value: low tail
    assert p[0, d:] == pytest.approx(np.ones(d))
    assert p[1, d:] == pytest.approx(np.full(d, 1 / (n + 1)))  # above every value: high tail
    clean = scorer.column_p_values(scorer.standardise(clusters(3000, seed=12)))
    assert 0.08 < float(np.mean(clean <= 0.1)) < 0.12  # uniform per channel


def test_a_shift_in_one_feature_alone_opens_the_gate_and_is_named() -> None:
    """A quieter recording moves a level column and little else: that feature's own channel
    opens the gate within a few requests, and the evidence names it."""
    reference = clusters(500, seed=13)
    names = [f"c{i}" for i in range(reference.shape[1])]
    monitor = NoveltyMonitor(reference, NoveltySettings(), columns=names)
    assert monitor.detector.threshold == pytest.approx(math.log(1e6 * (2 * 12 + 1)))
    quieter = clusters(40, seed=14)
    quieter[:, 4] = reference[:, 4].min() - 1.0  # one column, just below its usual range
    judged = monitor.assess(quieter)
    first = int(np.flatnonzero(judged.gate_open)[0]) + 1
    assert first <= 12
    assert "c4 low 1.00" in monitor.evidence(3)
    clean = monitor.assess(clusters(400, seed=15))
    assert not clean.gate_open[-1], "clean traffic did not close the gate"
