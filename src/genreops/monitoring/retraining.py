"""When to retrain by itself: drift that persists, or live accuracy that falls, rate-limited.

The monitor service asks ``why_retrain`` every ``GENREOPS_RETRAIN_CHECK_SECONDS`` (and at once
when Alertmanager reports GenreopsDriftGateOpen or GenreopsLiveAccuracyLow firing):

* **drift persists**: the recorded drift tests say the gate has been open, without a closed
  test in between, for ``GENREOPS_RETRAIN_GATE_OPEN_SECONDS`` or more;
* **accuracy falls**: over the newest ``GENREOPS_QUALITY_RECENT_ANSWERS`` labeled answers (at
  least ``GENREOPS_QUALITY_MIN_ANSWERS`` of them) fewer than ``GENREOPS_MIN_LIVE_ACCURACY``
  matched their labels.

``RetrainWatcher`` then starts a run through the callable it is given (the Prefect deployment
``retrain``, wired by ``genreops monitor``; this module knows nothing of Prefect) and records
a ``retrain-triggered`` model event with the reason and the run. It starts at most one run at a
time (a run the callable still reports active blocks the next) and none within
``GENREOPS_RETRAIN_COOLDOWN_SECONDS`` of the last trigger, whatever the reason. A run that ended
without completing (failed, crashed, cancelled) gets a ``retrain-failed`` event with Prefect's
message; the cool-down still applies, so a flow that fails at once is not restarted every check.

While a canary is on trial (genreops.monitoring.canary) no run starts: each check judges the
canary instead and, once its verdict is in, hands it to the ``conclude`` callable (promotion or
withdrawal and the new publication, wired by ``genreops monitor``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from genreops.core.settings import Settings
from genreops.monitoring.canary import CanaryVerdict, canary_on_trial, judge
from genreops.monitoring.quality import QualityPolicy, recent_quality
from genreops.monitoring.store import MonitoringError, MonitoringStore, MonitoringWriter, utc_now

log = logging.getLogger(__name__)

TRIGGERED = "retrain-triggered"  # the model event of a run the monitor started
FAILED = "retrain-failed"  # that run ended without completing
STREAK_TESTS = 5000  # drift tests read back to find where the current open streak began
RETRAIN_ALERTS = frozenset({"GenreopsDriftGateOpen", "GenreopsLiveAccuracyLow"})


@dataclass(frozen=True)
class RetrainPolicy:
    """The settings that decide, in one place."""

    gate_open_seconds: float
    quality: QualityPolicy  # the live accuracy watched, as the monitor's gauge shows it
    cooldown_seconds: float
    canary_min_answers: int = 50

    @classmethod
    def from_settings(cls, settings: Settings) -> RetrainPolicy:
        return cls(
            gate_open_seconds=settings.retrain_gate_open_seconds,
            quality=QualityPolicy.from_settings(settings),
            cooldown_seconds=settings.retrain_cooldown_seconds,
            canary_min_answers=settings.canary_min_answers,
        )


@dataclass(frozen=True)
class RetrainReason:
    """Why a run should start: ``drift`` or ``accuracy``, said for people and as figures."""

    kind: str
    message: str
    figures: dict[str, Any] = field(default_factory=dict)


def serving_since(store: MonitoringStore) -> datetime | None:
    """When what serves now was put in place (the newest publication or rollback): evidence
    from before it was about other models (seen: a promoted canary retrained at once on the
    open gate its predecessor's traffic had left in the store)."""
    events = [*store.model_events(limit=1, event="publish")]
    events += store.model_events(limit=1, event="rollback")
    return max((e["at"] for e in events), default=None)


def gate_open_since(store: MonitoringStore, after: datetime | None = None) -> datetime | None:
    """When the current run of open-gate drift tests began (only tests after ``after``
    count); None while the gate is closed."""
    since = None
    for test in store.recent_drift_tests(STREAK_TESTS):  # newest first
        if not test["gate_open"] or (after is not None and test["tested_at"] < after):
            break
        since = test["tested_at"]
    return since


def why_retrain(
    store: MonitoringStore, policy: RetrainPolicy, now: datetime | None = None
) -> RetrainReason | None:
    """The reason to retrain now, if there is one (drift first: it is the earlier signal)."""
    now = now or utc_now()
    serving = serving_since(store)
    since = gate_open_since(store, serving)
    if since is not None:
        seconds = (now - since).total_seconds()
        if seconds >= policy.gate_open_seconds:
            return RetrainReason(
                "drift",
                f"the drift gate has been open for {seconds:.0f} s "
                f"(GENREOPS_RETRAIN_GATE_OPEN_SECONDS={policy.gate_open_seconds:g})",
                {"gate_open_since": since.isoformat(), "gate_open_seconds": round(seconds, 1)},
            )
    recent = recent_quality(store, policy.quality, since=serving)
    minimum = policy.quality.min_accuracy
    if recent.accuracy is not None and recent.gmean is not None and recent.accuracy < minimum:
        return RetrainReason(
            "accuracy",
            f"live accuracy {recent.accuracy:.3f} over the newest {recent.answers} labeled "
            f"answers is below GENREOPS_MIN_LIVE_ACCURACY={minimum:g}",
            {
                "accuracy": round(recent.accuracy, 4),
                "gmean": round(recent.gmean, 4),
                "answers": recent.answers,
            },
        )
    return None


def last_trigger(store: MonitoringStore) -> dict[str, Any] | None:
    """The newest ``retrain-triggered`` model event, if any."""
    events = store.model_events(limit=1, event=TRIGGERED)
    return events[0] if events else None


@dataclass(frozen=True)
class RunState:
    """Where a retraining run is: still scheduled or running, or ended (and why, when it did
    not complete)."""

    active: bool
    failure: str | None = None  # e.g. "FAILED: Flow run encountered an exception: ..."


StartRun = Callable[[RetrainReason], str]  # starts a retraining run, returns its id
RunStateOf = Callable[[str], RunState]  # where that run is
Conclude = Callable[[CanaryVerdict], object]  # promotes or withdraws the canary, publishes
RecordStep = Callable[[str, dict[str, Any]], None]  # records a model event (and tags it)


@dataclass(frozen=True)
class LoopActions:
    """What the monitor may do by itself; ``genreops monitor`` wires Prefect and the registry."""

    start_run: StartRun
    run_state: RunStateOf
    conclude: Conclude | None = None
    record_step: RecordStep | None = None


class RetrainWatcher:
    """The monitor's background check: decide, rate-limit, start, record."""

    def __init__(
        self,
        store: MonitoringStore,
        writer: MonitoringWriter,
        policy: RetrainPolicy,
        start_run: StartRun,
        run_state: RunStateOf,
        every_seconds: float,
        conclude: Conclude | None = None,
        record_step: RecordStep | None = None,
    ) -> None:
        self.store, self.writer, self.policy = store, writer, policy
        self.start_run, self.run_state = start_run, run_state
        self.every_seconds = every_seconds
        self.conclude = conclude  # None: a canary's verdict is only logged
        self.record_step = record_step  # None: the trigger goes to the store through writer
        self.status = "not checked yet"  # the last check's outcome (/healthz, `demo --loop`)
        self._settled: set[str] = set()  # runs seen ended (a failure is recorded once)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="genreops-retrain", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)

    def wake(self) -> None:
        """Check now (an alert that may call for retraining arrived)."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.check()
            except Exception as error:  # the next check may succeed: never let the thread die
                self.status = f"the last check failed: {type(error).__name__}: {error}"
                log.exception("retraining check failed")
            self._wake.wait(self.every_seconds)
            self._wake.clear()

    def blocked(self, now: datetime) -> str | None:
        """Why no run may start now (a run still going, or the cool-down), or None."""
        last = last_trigger(self.store)
        if last is None:
            return None
        run_id = str((last.get("detail") or {}).get("run_id", ""))
        if run_id and run_id not in self._settled and self.run_state(run_id).active:
            return f"retraining run {run_id} is still going"
        ready_at = last["at"] + timedelta(seconds=self.policy.cooldown_seconds)
        if now < ready_at:
            return f"cooling down until {ready_at.isoformat(timespec='seconds')}"
        return None

    def judge_canary(self) -> CanaryVerdict | None:
        """The verdict on the canary on trial, if one is (concluded when it is in)."""
        trial = canary_on_trial(self.store)
        if trial is None:
            return None
        verdict = judge(self.store, trial, self.policy.canary_min_answers)
        if verdict.promote is None or self.conclude is None:
            log.info("%s", verdict.message)
            return verdict
        self.conclude(verdict)
        log.warning("%s", verdict.message)
        return verdict

    def note_failed_run(self) -> None:
        """The last run the monitor started, once it ended without completing: recorded."""
        last = last_trigger(self.store)
        run_id = str(((last or {}).get("detail") or {}).get("run_id", ""))
        if not run_id or run_id in self._settled:
            return
        state = self.run_state(run_id)
        if state.active:
            return
        self._settled.add(run_id)
        recorded = self.store.model_events(limit=20, event=FAILED)  # by an earlier monitor?
        if state.failure is None or any(
            (e.get("detail") or {}).get("run_id") == run_id for e in recorded
        ):
            return
        self._record(FAILED, {"run_id": run_id, "message": state.failure})
        log.error("retraining run %s ended without a canary: %s", run_id, state.failure)

    def check(self, now: datetime | None = None) -> str | None:
        """One decision; returns the id of the run it started, if it started one."""
        now = now or utc_now()
        try:
            self.note_failed_run()
        except Exception as error:  # Prefect away: noted at a later check; the canary goes on
            log.warning("cannot read the last retraining run's state: %s", error)
        try:
            verdict = self.judge_canary()
            if verdict is not None:
                self.status = verdict.message
                return None  # a canary on trial (or just concluded): no retraining meanwhile
            reason = why_retrain(self.store, self.policy, now)
            if reason is None:
                self.status = "no reason to retrain"
                return None
            blocked = self.blocked(now)
        except MonitoringError as error:
            self.status = f"the monitoring store: {error}"
            log.warning("retraining check: %s", error)
            return None
        if blocked:
            self.status = f"retraining wanted ({reason.message}) but {blocked}"
            log.info("%s", self.status)
            return None
        run_id = self.start_run(reason)
        detail = {
            "reason": reason.kind,
            "message": reason.message,
            "figures": reason.figures,
            "run_id": run_id,
        }
        self._record(TRIGGERED, detail, now)
        self.status = f"retraining run {run_id} started: {reason.message}"
        log.warning("retraining started (run %s): %s", run_id, reason.message)
        return run_id

    def _record(self, event: str, detail: dict[str, Any], at: datetime | None = None) -> None:
        """A model event the next check must already see (one run at a time)."""
        if self.record_step is not None:
            self.record_step(event, detail)  # flushed, and tagged in MLflow
        else:
            self.writer.submit_model_event(
                {"event": event, "at": at or utc_now(), "detail": detail}
            )
            self.writer.flush(timeout=10)
