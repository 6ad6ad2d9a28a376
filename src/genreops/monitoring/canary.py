"""Does a canary earn its promotion? Its live accuracy against that of the models it would
replace, on the same period and the same kind of traffic.

A canary is on trial from its ``canary-published`` model event until a ``canary-promoted`` or
``canary-withdrawn`` one. The predictor sends it a random share of all requests (gate open or
not), so the answers the champion and its fallback gave in the same period are a fair sample of
the same traffic: the canary is compared with them (the *incumbent*), not with the champion's
answers alone, which while drift holds would be only the clips the gate let through.

Once the canary and the incumbent each have ``GENREOPS_CANARY_MIN_ANSWERS`` labeled answers
since the publication, the verdict is: promote when the canary's accuracy is at least the
incumbent's, withdraw otherwise. Ties promote: the canary was trained on more, newer data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from genreops.monitoring.quality import score

if TYPE_CHECKING:
    from genreops.monitoring.store import MonitoringStore

PUBLISHED = "canary-published"
PROMOTED = "canary-promoted"
WITHDRAWN = "canary-withdrawn"
TRIAL_EVENTS_READ = 200  # model events read back to find the canary on trial


@dataclass(frozen=True)
class CanaryTrial:
    """A canary on trial: which version, and since when it answers."""

    canary: str  # "genre-classifier/7"
    since: datetime

    @property
    def version(self) -> str:
        return self.canary.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Side:
    """One side of the comparison: labeled answers and how many were right."""

    answers: int
    correct: int
    gmean: float | None

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.answers if self.answers else None


@dataclass(frozen=True)
class CanaryVerdict:
    trial: CanaryTrial
    canary: Side
    incumbent: Side
    promote: bool | None  # None: too few labeled answers yet
    min_answers: int

    @property
    def message(self) -> str:
        if self.promote is None:
            return (
                f"{self.trial.canary} on trial: {self.canary.answers} labeled answers of "
                f"{self.min_answers} (the champion and fallback: {self.incumbent.answers})"
            )
        verb = "promoted" if self.promote else "withdrawn"
        relation = ">=" if self.promote else "<"
        return (
            f"{self.trial.canary} {verb}: live accuracy {self.canary.accuracy:.3f} over "
            f"{self.canary.answers} labeled answers {relation} {self.incumbent.accuracy:.3f} "
            f"of the champion and fallback over {self.incumbent.answers}, same period"
        )

    def figures(self) -> dict[str, Any]:
        """What the model event, the MLflow tags and the demo record."""

        def side(s: Side) -> dict[str, Any]:
            rounded = None if s.accuracy is None else round(s.accuracy, 4)
            gmean = None if s.gmean is None else round(s.gmean, 4)
            return {"answers": s.answers, "correct": s.correct, "accuracy": rounded, "gmean": gmean}

        return {
            "canary": self.trial.canary,
            "since": self.trial.since.isoformat(),
            "canary_answers": side(self.canary),
            "incumbent_answers": side(self.incumbent),
            "min_answers": self.min_answers,
            "message": self.message,
        }


def canary_on_trial(store: MonitoringStore) -> CanaryTrial | None:
    """The newest published canary, unless it was promoted or withdrawn since, or a newer
    publication serves without it (its alias was moved by hand and published)."""
    concluded: set[str] = set()
    served: str | None = None  # the canary the newest publication serves ("": none)
    for event in reversed(store.model_events(limit=TRIAL_EVENTS_READ)):  # newest first
        detail = event.get("detail") or {}
        canary = str(detail.get("canary") or "")
        if event["event"] in (PROMOTED, WITHDRAWN):
            concluded.add(canary)
        elif event["event"] == "publish" and served is None and "canary" in detail:
            served = canary
        elif event["event"] == PUBLISHED and canary:
            if canary in concluded or served not in (None, canary):
                return None
            return CanaryTrial(canary, event["at"])
    return None


def _side(rows: list[dict[str, Any]]) -> Side:
    if not rows:
        return Side(0, 0, None)
    truth = [str(r["true_genre"]) for r in rows]
    predicted = [str(r["genre"]) for r in rows]
    _accuracy, gmean, _recall = score(truth, predicted)
    return Side(len(rows), sum(t == p for t, p in zip(truth, predicted, strict=True)), gmean)


def judge(store: MonitoringStore, trial: CanaryTrial, min_answers: int) -> CanaryVerdict:
    """The canary's labeled answers since its publication against everyone else's."""
    rows = store.labeled_predictions(since=trial.since)
    canary = _side([r for r in rows if r["model_version"] == trial.canary])
    incumbent = _side([r for r in rows if r["model_version"] != trial.canary])
    promote = None
    if canary.answers >= min_answers and incumbent.answers >= min_answers:
        assert canary.accuracy is not None and incumbent.accuracy is not None
        promote = canary.accuracy >= incumbent.accuracy
    return CanaryVerdict(trial, canary, incumbent, promote, min_answers)
