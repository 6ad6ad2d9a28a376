"""How far each clip is from the training reference, and an online drift detector built on it.

Why this method (measured in ``bench/drift.py``, figures in ``bench/RESULTS.md``): per-column
two-sample tests over a long window missed real music entirely (issue 14): they wait for a
window to fill and dilute new traffic with old. Here every request is judged on its own
against the model's training features, and the evidence is accumulated over requests with a
false-alarm rate that holds by construction:

1. **Conformal p-values per request.** A clip gets one p-value per feature and tail (its rank
   among the reference's values: ``p = (1 + #{reference values at least as low}) / (n + 1)``,
   and the same for high), plus a joint one: its mean Euclidean distance to its
   ``neighbours`` nearest reference rows, ranked among the reference rows' own
   leave-one-out distances. Distances are measured on rank-normal scores (each feature
   through the reference's ranks onto a normal scale, so that no heavy-tailed column rules
   them), extended past the reference's range in robust units (median/IQR; non-finite values
   count as very far), so that how far out a value lies still counts; the leave-one-out rows
   are transformed without themselves. For clips like the training data each p-value is
   uniform whatever the features' distribution.
2. **Per-request OOD flag.** The joint p-value ``<= ood_alpha`` flags a clip as out of
   distribution at once (false flags on about ``ood_alpha`` of clean clips). Its ``score`` is
   the distance in units of that threshold (> 1: flagged).
3. **Online detection (conformal CUSUM per channel).** Each p-value of each channel (2 x
   columns + 1) becomes an e-value with the power calibrator ``e = kappa * p ** (kappa - 1)``
   (mean <= 1 for uniform ``p``); each channel keeps a CUSUM ``S = max(0, S + ln e)`` and an
   alarm is raised when one reaches ``ln(expected_run x channels)``. ``exp(S)`` never exceeds
   the Shiryaev-Roberts statistic, whose mean grows by at most one per clean request, so each
   channel alarms falsely at most once per ``expected_run x channels`` clean requests on
   average and all channels together at most once per ``expected_run`` (Vovk et al.,
   "Testing randomness online", 2021; Volkhonskiy et al., "Inductive conformal martingales
   for change-point detection", 2017). Exact for exchangeable p-values; with a fixed
   reference of ``n`` rows it holds up to the reference's sampling noise, which the
   benchmark measures. Per-feature channels see a shift in a few columns (a quieter or
   band-limited recording) within a few requests; the joint channel sees clips whose values
   are each ordinary but whose combination is new (a genre the model never saw).
4. **Gate with hysteresis.** The gate opens on an alarm. Channels are held at the alarm
   level; a channel that alarmed is done once clean traffic has brought it back down to
   ``close_fraction`` of it (its evidence cancelled), and the gate closes when every channel
   that alarmed is done (one that alarms again rejoins).

Costs: a request is a distance computation and a rank per feature against the reference
(~1,000 x 91 floats): a few hundred microseconds, measured by ``bench/drift_costs.py``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special, stats

from genreops.core.errors import NoveltyError
from genreops.core.settings import NoveltySettings

log = logging.getLogger(__name__)

FAR = 1e3  # a non-finite feature counts as this many scale units from the reference's median
MIN_REFERENCE_ROWS = 10


@dataclass(frozen=True)
class Assessment:
    """Per row: ``score`` (distance / OOD threshold: > 1 is out of distribution), the joint
    conformal ``p_value``, the ``ood`` flag, and the detector's ``statistic`` (its highest
    channel as a share of the alarm level) and ``gate_open`` after the row."""

    score: np.ndarray
    p_value: np.ndarray
    ood: np.ndarray
    statistic: np.ndarray
    gate_open: np.ndarray


class NoveltyScorer:
    """Conformal p-values of clips against the reference (module docstring, 1-2)."""

    def __init__(self, reference: Any, neighbours: int = 5, ood_alpha: float = 0.01) -> None:
        values = np.asarray(reference, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] < 1:
            raise NoveltyError(f"reference must be [rows, columns], got shape {values.shape}")
        rows = values.shape[0]
        if rows < max(MIN_REFERENCE_ROWS, neighbours + 1):
            raise NoveltyError(
                f"reference has {rows} rows; novelty needs >= "
                f"{max(MIN_REFERENCE_ROWS, neighbours + 1)}"
            )
        finite = np.where(np.isfinite(values), values, np.nan)
        if np.isnan(finite).all(axis=0).any():
            raise NoveltyError("reference has a column without any finite value")
        self.center = np.nanmedian(finite, axis=0)
        q75, q25 = np.nanpercentile(finite, [75, 25], axis=0)
        scale = (q75 - q25) / 1.349  # the standard deviation of a normal with this IQR
        spread = np.nanstd(finite, axis=0)
        self.scale = np.where(scale > 0, scale, np.where(spread > 0, spread, 1.0))
        self.neighbours = neighbours
        self.reference = self._standardise(values)
        self.sorted = np.sort(self.reference, axis=0)
        # every column in one sorted array: z is clipped to +-FAR, so columns 4 FAR apart
        # never interleave, and one searchsorted ranks a whole row
        self._offsets = 4.0 * FAR * np.arange(self.reference.shape[1])
        self._flat = (self.sorted + self._offsets).T.ravel()
        self.points = self._gaussian(self.reference)  # where distances are measured
        self._squared_norms = (self.points * self.points).sum(axis=1)
        self.calibration = np.sort(self._leave_one_out())
        self.ood_alpha = ood_alpha
        self.ood_distance = self._ood_distance(ood_alpha)

    @property
    def n_features(self) -> int:
        return int(self.reference.shape[1])

    @property
    def channels(self) -> int:
        """Low and high tail of each feature, then the joint distance."""
        return 2 * self.n_features + 1

    def standardise(self, features: Any) -> np.ndarray:
        """``[n, n_features]`` features in the reference's robust units (checked)."""
        values = np.asarray(features, dtype=np.float64)
        if values.ndim == 1:
            values = values[None, :]
        if values.ndim != 2 or values.shape[1] != self.n_features:
            raise NoveltyError(
                f"novelty expects [n, {self.n_features}] features, got {list(np.shape(features))}"
            )
        return self._standardise(values)

    def _standardise(self, values: np.ndarray) -> np.ndarray:
        z = (values - self.center) / self.scale
        return np.nan_to_num(np.clip(z, -FAR, FAR), nan=FAR)

    def counts(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per value: reference values below it, and at most it, column by column."""
        shifted = z + self._offsets
        start = len(self.sorted) * np.arange(z.shape[1])
        below = np.searchsorted(self._flat, shifted, side="left") - start
        at_most = np.searchsorted(self._flat, shifted, side="right") - start
        return below, at_most

    def _gaussian(
        self, z: np.ndarray, counts: tuple[np.ndarray, np.ndarray] | None = None
    ) -> np.ndarray:
        """Each feature through the reference's ranks onto a normal scale, so that no column's
        long tail rules the distance; past the reference's range, robust units are added to
        the extreme normal score, so that how far out a value is still counts."""
        n = len(self.sorted)
        below, at_most = counts if counts is not None else self.counts(z)
        g = special.ndtri((0.5 * (below + at_most) + 0.5) / (n + 1.0))
        return _extended(g, z - self.sorted[-1], self.sorted[0] - z, 0.5 / (n + 1.0))

    def _leave_one_out_points(self) -> np.ndarray:
        """Each reference row as the transform would place it if it were not in the reference:
        its rank among the others, and past their range when it is a column's extreme."""
        z, srt, n = self.reference, self.sorted, len(self.reference)
        ranks = stats.rankdata(z, axis=0) - 1.0  # average ranks of ties, from 0
        g = special.ndtri((ranks + 0.5) / n)  # among the n - 1 others
        return _extended(g, z - srt[-2], srt[1] - z, 0.5 / n)  # past the others' extremes

    def _knn(self, points: np.ndarray, skip: np.ndarray | None = None) -> np.ndarray:
        """Mean distance to the nearest reference points; ``skip[i]``: a row to leave out."""
        squared = (
            (points * points).sum(axis=1)[:, None]
            + self._squared_norms[None, :]
            - 2.0 * points @ self.points.T
        )  # |a - b|^2 expanded; float64 keeps the cancellation harmless at these scales
        if skip is not None:
            squared[np.arange(len(points)), skip] = np.inf
        k = self.neighbours
        nearest = np.partition(squared, k - 1, axis=1)[:, :k]
        return np.sqrt(np.maximum(nearest, 0.0)).mean(axis=1)

    def knn_distances(
        self, z: np.ndarray, counts: tuple[np.ndarray, np.ndarray] | None = None
    ) -> np.ndarray:
        """Mean distance of standardised rows to their nearest reference rows."""
        return self._knn(self._gaussian(z, counts))

    def _leave_one_out(self) -> np.ndarray:
        points = self._leave_one_out_points()
        rows = np.arange(len(points))
        blocks = [  # bounded memory for large references
            self._knn(points[start : start + 512], rows[start : start + 512])
            for start in range(0, len(rows), 512)
        ]
        return np.concatenate(blocks)

    def _ood_distance(self, alpha: float) -> float:
        """The distance above which ``p <= alpha``; inf when the reference is too small."""
        n = len(self.calibration)
        allowed = math.floor(alpha * (n + 1) + 1e-9) - 1  # reference scores allowed above
        if allowed < 0:
            return math.inf
        return float(self.calibration[n - 1 - allowed])

    def distances(self, features: Any) -> np.ndarray:
        return self.knn_distances(self.standardise(features))

    def p_values(self, distances: np.ndarray) -> np.ndarray:
        """Joint conformal p-values: the share of reference rows at least this far (plus one)."""
        n = len(self.calibration)
        at_least = n - np.searchsorted(self.calibration, distances, side="left")
        return (1.0 + at_least) / (n + 1.0)

    def column_p_values(
        self, z: np.ndarray, counts: tuple[np.ndarray, np.ndarray] | None = None
    ) -> np.ndarray:
        """``[n, 2 x n_features]`` conformal p-values of standardised rows: each feature's low
        tail, then each feature's high tail."""
        n = len(self.sorted)
        below, at_most = counts if counts is not None else self.counts(z)
        return np.hstack([1.0 + at_most, 1.0 + n - below]) / (n + 1.0)

    def scores(self, distances: np.ndarray) -> np.ndarray:
        """Distance in units of the OOD threshold (> 1: out of distribution)."""
        if not math.isfinite(self.ood_distance):
            return np.zeros_like(distances)
        return distances / max(self.ood_distance, 1e-12)


def _extended(g: np.ndarray, high: np.ndarray, low: np.ndarray, tail: float) -> np.ndarray:
    """Normal scores past the reference's range: the extreme score plus the robust units by
    which a value lies beyond it (``high``/``low`` > 0)."""
    edge = float(special.ndtri(1.0 - tail))
    g = np.where(high > 0, edge + high, g)
    return np.where(low > 0, -edge - low, g)


class ConformalCusum:
    """The online detector and gate over ``channels`` p-value streams (module docstring, 3-4)."""

    def __init__(self, settings: NoveltySettings | None = None, channels: int = 1) -> None:
        if channels < 1:
            raise NoveltyError(f"channels={channels} (needs >= 1)")
        self.settings = settings or NoveltySettings()
        self.threshold = math.log(self.settings.expected_run * channels)
        self.close_level = self.settings.close_fraction * self.threshold
        self.statistics = np.zeros(channels)
        self.alarmed = np.zeros(channels, dtype=bool)  # alarmed, not yet back to close_level
        self.is_open = False
        self.alarms = 0

    def log_evidence(self, p_values: np.ndarray) -> np.ndarray:
        kappa = self.settings.kappa
        p = np.clip(np.asarray(p_values, dtype=np.float64), 1e-300, 1.0)
        return math.log(kappa) + (kappa - 1.0) * np.log(p)

    def update(self, p_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Feed ``[rows, channels]`` p-values in arrival order (``[rows]`` for one channel);
        the statistic (highest channel, share of the alarm level) and the gate after each."""
        p = np.asarray(p_values, dtype=np.float64)
        evidence = self.log_evidence(p.reshape(len(p), -1))
        if evidence.shape[1] != len(self.statistics):
            raise NoveltyError(
                f"expected p-values of {len(self.statistics)} channels, got {evidence.shape[1]}"
            )
        statistic = np.empty(len(evidence))
        gate = np.empty(len(evidence), dtype=bool)
        s = self.statistics
        for i, step in enumerate(evidence):
            np.clip(s + step, 0.0, self.threshold, out=s)
            hit = s >= self.threshold
            if hit.any():
                if not self.is_open:
                    self.alarms += 1
                self.is_open = True
                self.alarmed |= hit
            elif self.is_open:
                self.alarmed &= s > self.close_level  # a channel's evidence is cancelled
                self.is_open = bool(self.alarmed.any())
            statistic[i], gate[i] = s.max() / self.threshold, self.is_open
        return statistic, gate


class NoveltyMonitor:
    """Scorer and detector together: what the predictor calls once per batch."""

    def __init__(
        self,
        reference: Any,
        settings: NoveltySettings | None = None,
        columns: Sequence[str] | None = None,
    ) -> None:
        self.settings = settings or NoveltySettings()
        self.scorer = NoveltyScorer(reference, self.settings.neighbours, self.settings.ood_alpha)
        names = list(columns) if columns is not None else [
            f"feature {i}" for i in range(self.scorer.n_features)
        ]  # fmt: skip
        if len(names) != self.scorer.n_features:
            raise NoveltyError(f"{len(names)} column names for {self.scorer.n_features} columns")
        self.channel_names = [*(f"{c} low" for c in names), *(f"{c} high" for c in names)]
        self.channel_names.append(f"joint distance ({self.settings.neighbours} nearest)")
        if math.isinf(self.scorer.ood_distance):
            log.warning(
                "the drift reference has %d rows: too few to flag a clip out of distribution "
                "at ood_alpha=%g (needs >= %d); the drift gate still works",
                len(self.scorer.calibration),
                self.settings.ood_alpha,
                math.ceil(1 / self.settings.ood_alpha) - 1,
            )
        self.detector = ConformalCusum(self.settings, self.scorer.channels)

    def assess(self, features: Any) -> Assessment:
        z = self.scorer.standardise(features)
        counts = self.scorer.counts(z)
        distances = self.scorer.knn_distances(z, counts)
        p = self.scorer.p_values(distances)
        statistic, gate = self.detector.update(
            np.hstack([self.scorer.column_p_values(z, counts), p[:, None]])
        )
        return Assessment(
            score=self.scorer.scores(distances),
            p_value=p,
            ood=p <= self.settings.ood_alpha,
            statistic=statistic,
            gate_open=gate,
        )

    @property
    def gate_open(self) -> bool:
        return self.detector.is_open

    def evidence(self, limit: int = 5) -> list[str]:
        """The channels with the most evidence now, strongest first (why the gate is open)."""
        s = self.detector.statistics
        top = np.argsort(-s)[:limit]
        return [
            f"{self.channel_names[i]} {s[i] / self.detector.threshold:.2f}" for i in top if s[i] > 0
        ]
