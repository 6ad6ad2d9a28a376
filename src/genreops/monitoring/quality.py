"""Live quality: how right the served answers were, once labels say what the clips really were.

Each prediction of a labeled clip is scored against its clip's latest label
(``MonitoringStore.labeled_predictions``). Scores are grouped by the model version that
answered (champion and fallback are different versions) and, optionally, by time window of
the answer; an ``all`` group pools them. The measures are the ones training reports:
accuracy, G-mean (the geometric mean of the per-genre recalls, which a model that ignores a
genre cannot hide behind) and the recall of every genre the labels name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from genreops.core.errors import GenreopsError
from genreops.core.settings import Settings

if TYPE_CHECKING:
    from genreops.monitoring.store import MonitoringStore

ALL_VERSIONS = "all"


class QualityError(GenreopsError):
    """A quality question cannot be answered as asked (a bad window or period)."""


@dataclass(frozen=True)
class Quality:
    """Scores of one group of labeled answers."""

    model_version: str  # "all" pools every version
    window_start: datetime | None  # None: the whole period
    labeled: int  # labeled answers scored
    correct: int
    accuracy: float
    gmean: float
    recall: dict[str, float] = field(default_factory=dict)  # per true genre

    @property
    def weakest(self) -> tuple[str, float] | None:
        """The genre recalled worst, which is where a retrained model should look first."""
        return min(self.recall.items(), key=lambda item: item[1]) if self.recall else None


def parse_duration(text: str, what: str) -> timedelta:
    """``"15min"``, ``"1h"``, ``"7d"``... as pandas reads them; positive."""
    try:
        value = pd.Timedelta(text).to_pytimedelta()
    except (ValueError, TypeError) as error:
        raise QualityError(f"{what} {text!r} is not a duration like 15min, 1h or 7d") from error
    if value <= timedelta(0):
        raise QualityError(f"{what} must be positive, not {text!r}")
    return value


def score(truth: Sequence[str], predicted: Sequence[str]) -> tuple[float, float, dict[str, float]]:
    """Accuracy, G-mean and the recall of every genre the labels name, for one group.

    G-mean is imbalanced-learn's multiclass one, as training and `predict` report it: a genre
    predicted but never true counts with recall 0, so a handful of labels can give 0.
    """
    import warnings

    from imblearn.metrics import geometric_mean_score

    truth_array, predicted_array = np.asarray(truth), np.asarray(predicted)
    hits = truth_array == predicted_array
    recall = {str(genre): float(hits[truth_array == genre].mean()) for genre in sorted(set(truth))}
    with warnings.catch_warnings():  # "recall is ill-defined" for such genres: that is the 0
        warnings.simplefilter("ignore")
        gmean = float(geometric_mean_score(truth_array, predicted_array, average="multiclass"))
    return float(hits.mean()), gmean, recall


def _floor(moment: datetime, window: timedelta) -> datetime:
    stamp = pd.Timestamp(moment)
    return stamp.floor(pd.Timedelta(window)).to_pydatetime()


def live_quality(
    labeled: Iterable[Mapping[str, Any]],
    *,
    window: timedelta | None = None,
    last: int | None = None,
) -> list[Quality]:
    """Scores per model version (and window), then the ``all`` pool; oldest window first.

    ``labeled`` are ``labeled_predictions`` rows (``genre``, ``true_genre``, ``served_at``,
    ``model_version``) oldest first; ``last`` keeps only the newest that many.
    """
    rows = list(labeled)
    if last is not None:
        rows = rows[-last:] if last > 0 else []
    groups: dict[tuple[str, datetime | None], list[Mapping[str, Any]]] = {}
    for row in rows:
        start = _floor(row["served_at"], window) if window else None
        groups.setdefault((str(row["model_version"]), start), []).append(row)
        groups.setdefault((ALL_VERSIONS, start), []).append(row)
    result = []
    for (version, start), members in groups.items():
        truth = [str(r["true_genre"]) for r in members]
        predicted = [str(r["genre"]) for r in members]
        accuracy, gmean, recall = score(truth, predicted)
        correct = sum(t == p for t, p in zip(truth, predicted, strict=True))
        result.append(Quality(version, start, len(members), correct, accuracy, gmean, recall))
    minimum = datetime.min.replace(tzinfo=rows[0]["served_at"].tzinfo) if rows else None
    return sorted(
        result,
        key=lambda q: (q.window_start or minimum, q.model_version == ALL_VERSIONS, q.model_version),
    )


@dataclass(frozen=True)
class QualityPolicy:
    """How live accuracy is watched: over the newest answers, from how many, against what."""

    recent_answers: int
    min_answers: int
    min_accuracy: float

    @classmethod
    def from_settings(cls, settings: Settings) -> QualityPolicy:
        return cls(
            settings.quality_recent_answers,
            settings.quality_min_answers,
            settings.min_live_accuracy,
        )


@dataclass(frozen=True)
class RecentQuality:
    """The newest labeled answers' scores; ``accuracy`` None while too few back it."""

    answers: int
    accuracy: float | None = None
    gmean: float | None = None


def recent_quality(
    store: MonitoringStore,
    policy: QualityPolicy,
    model_version: str | None = None,
    *,
    since: datetime | None = None,
) -> RecentQuality:
    """Accuracy and G-mean over the newest ``policy.recent_answers`` labeled answers (of one
    model version, or of all; served at or after ``since``), once at least
    ``policy.min_answers`` back them."""
    rows = store.labeled_predictions(
        since, newest=policy.recent_answers, model_version=model_version
    )
    if len(rows) < policy.min_answers:
        return RecentQuality(len(rows))
    accuracy, gmean, _recall = score(
        [str(r["true_genre"]) for r in rows], [str(r["genre"]) for r in rows]
    )
    return RecentQuality(len(rows), accuracy, gmean)
