"""Retraining that starts itself (issue 16, part 4): when, how often, and its record."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from genreops.monitoring.canary import PUBLISHED, WITHDRAWN, canary_on_trial, judge
from genreops.monitoring.quality import QualityPolicy
from genreops.monitoring.retraining import (
    FAILED,
    TRIGGERED,
    LoopActions,
    RetrainPolicy,
    RetrainReason,
    RetrainWatcher,
    RunState,
    why_retrain,
)
from genreops.monitoring.store import MonitoringStore, MonitoringWriter

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
POLICY = RetrainPolicy(
    gate_open_seconds=900,
    quality=QualityPolicy(recent_answers=10, min_answers=5, min_accuracy=0.6),
    cooldown_seconds=3600,
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MonitoringStore]:
    with MonitoringStore(f"sqlite:///{tmp_path / 'monitoring.db'}") as created:
        created.ensure_schema()
        yield created


def drift_tests(store: MonitoringStore, *states: tuple[int, bool]) -> None:
    """(minutes before NOW, gate open) per test."""
    store.insert_drift_tests(
        {"tested_at": NOW - timedelta(minutes=m), "window_size": 50, "drifted_share": 0.5,
         "dataset_drift": open_, "gate_open": open_}
        for m, open_ in states
    )  # fmt: skip


def labeled_answers(store: MonitoringStore, right: int, wrong: int) -> None:
    rows = [("rock", "rock")] * right + [("rock", "jazz")] * wrong
    store.insert_predictions(
        {"clip_id": f"{n}.wav", "genre": answer, "model_version": "m/1",
         "served_at": NOW - timedelta(minutes=30 - n)}
        for n, (_, answer) in enumerate(rows)
    )  # fmt: skip
    store.insert_labels({"clip_id": f"{n}.wav", "genre": t} for n, (t, _) in enumerate(rows))


def test_drift_that_persists_past_the_setting_calls_for_retraining(
    store: MonitoringStore,
) -> None:
    drift_tests(store, (40, False), (20, True), (10, True), (1, True))
    reason = why_retrain(store, POLICY, NOW)
    assert reason is not None and reason.kind == "drift"
    assert reason.figures["gate_open_seconds"] == 1200.0


def test_a_gate_that_closed_in_between_starts_its_count_again(store: MonitoringStore) -> None:
    drift_tests(store, (20, True), (12, False), (10, True), (1, True))  # open for 10 min
    assert why_retrain(store, POLICY, NOW) is None


def test_live_accuracy_below_the_minimum_calls_for_retraining(store: MonitoringStore) -> None:
    labeled_answers(store, right=2, wrong=6)
    reason = why_retrain(store, POLICY, NOW)
    assert reason is not None and reason.kind == "accuracy"
    assert reason.figures["accuracy"] == 0.25 and reason.figures["answers"] == 8


def test_too_few_labeled_answers_never_call_for_it(store: MonitoringStore) -> None:
    labeled_answers(store, right=0, wrong=4)  # accuracy 0, but 4 < 5 answers
    assert why_retrain(store, POLICY, NOW) is None


@pytest.mark.parametrize("event", ["publish", "rollback"])
def test_evidence_about_models_no_longer_serving_never_calls_for_it(
    store: MonitoringStore, event: str
) -> None:
    """A promoted canary, a new publication or a rollback starts the count again: the open
    gate and the wrong answers before it were the replaced models'."""
    drift_tests(store, (40, True), (30, True), (20, True))
    labeled_answers(store, right=2, wrong=6)
    assert why_retrain(store, POLICY, NOW) is not None
    changed = NOW - timedelta(minutes=10)
    store.insert_model_events([{"at": changed, "event": event, "detail": {"version": 2}}])
    assert why_retrain(store, POLICY, NOW) is None
    drift_tests(store, (9, True), (1, True))  # the new models' own traffic drifts too
    assert why_retrain(store, POLICY, NOW) is None  # open for 8 min only
    reason = why_retrain(store, POLICY, NOW + timedelta(minutes=8))
    assert reason is not None and reason.kind == "drift"
    assert reason.figures["gate_open_since"] == (NOW - timedelta(minutes=9)).isoformat()


class Runs:
    """The retraining runs a watcher starts (Prefect's part, tested on a real server)."""

    def __init__(self) -> None:
        self.started: list[RetrainReason] = []
        self.active: set[str] = set()
        self.failures: dict[str, str] = {}  # ended runs that did not complete: why
        self.asked: list[str] = []

    def start(self, reason: RetrainReason) -> str:
        self.started.append(reason)
        run_id = f"run-{len(self.started)}"
        self.active.add(run_id)
        return run_id

    def state(self, run_id: str) -> RunState:
        self.asked.append(run_id)
        return RunState(run_id in self.active, self.failures.get(run_id))


def test_one_run_at_a_time_then_a_cool_down_and_every_trigger_recorded(
    store: MonitoringStore, tmp_path: Path
) -> None:
    labeled_answers(store, right=1, wrong=9)
    runs = Runs()
    with MonitoringWriter(store, tmp_path / "spool") as writer:
        watcher = RetrainWatcher(store, writer, POLICY, runs.start, runs.state, 30)
        assert watcher.check(NOW) == "run-1"
        assert watcher.check(NOW + timedelta(minutes=1)) is None  # run-1 still going
        runs.active.clear()
        assert watcher.check(NOW + timedelta(minutes=30)) is None  # finished, cooling down
        assert watcher.check(NOW + timedelta(minutes=61)) == "run-2"
    events: list[dict[str, Any]] = [e for e in store.model_events() if e["event"] == TRIGGERED]
    assert [e["detail"]["run_id"] for e in events] == ["run-1", "run-2"]
    assert not [e for e in store.model_events() if e["event"] == FAILED]  # run-1 completed
    assert events[0]["detail"]["reason"] == "accuracy"
    assert "below GENREOPS_MIN_LIVE_ACCURACY=0.6" in events[0]["detail"]["message"]
    assert len(runs.started) == 2


def test_a_firing_drift_alert_makes_the_monitor_check_at_once(
    store: MonitoringStore, tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from genreops.core.settings import Settings
    from genreops.monitoring.service import create_app
    from helpers import wait_until

    runs = Runs()
    settings = Settings(  # checks at start, then hourly: only the alert can make it check now
        home=tmp_path / "home", use_stack_env=False, retrain_check_seconds=3600
    )
    alert = {"status": "firing", "labels": {"alertname": "GenreopsDriftGateOpen"}}
    actions = LoopActions(runs.start, runs.state)
    with TestClient(create_app(settings, store, actions)) as client:
        assert client.get("/healthz").json()["retraining"] is True
        assert not wait_until(lambda: len(runs.started) > 0, timeout=2)  # nothing to retrain
        now = datetime.now(UTC)
        store.insert_drift_tests(
            {"tested_at": now - timedelta(minutes=m), "window_size": 50, "drifted_share": 0.5,
             "dataset_drift": True, "gate_open": True}
            for m in (30, 20, 10)
        )  # fmt: skip
        client.post("/alerts", json={"alerts": [alert]})
        assert wait_until(lambda: len(runs.started) == 1, timeout=10)
        status = client.get("/healthz").json()["retraining_status"]  # what `demo --loop` shows
        assert wait_until(
            lambda: "run-1 started" in client.get("/healthz").json()["retraining_status"], 5
        ), status
    assert [e["detail"]["reason"] for e in store.model_events() if e["event"] == TRIGGERED] == [
        "drift"
    ]


def test_a_run_that_failed_is_recorded_once_and_the_cool_down_still_holds(
    store: MonitoringStore, tmp_path: Path
) -> None:
    """A flow that fails at once must not be restarted every check, and the failure must be
    visible (``genreops models``, Grafana, `demo --loop`) with Prefect's message."""
    labeled_answers(store, right=1, wrong=9)
    runs = Runs()
    with MonitoringWriter(store, tmp_path / "spool") as writer:
        watcher = RetrainWatcher(store, writer, POLICY, runs.start, runs.state, 30)
        assert watcher.check(NOW) == "run-1"
        assert "run-1 started" in watcher.status
        runs.active.clear()
        runs.failures["run-1"] = "FAILED: Flow run encountered an exception: no champion"
        assert watcher.check(NOW + timedelta(minutes=1)) is None
        assert "cooling down until" in watcher.status
        asked = len(runs.asked)
        assert watcher.check(NOW + timedelta(minutes=2)) is None
        assert len(runs.asked) == asked  # an ended run is not asked about again
        again = RetrainWatcher(store, writer, POLICY, runs.start, runs.state, 30)
        assert again.check(NOW + timedelta(minutes=3)) is None  # a restarted monitor: no repeat
        assert again.check(NOW + timedelta(minutes=61)) == "run-2"
    failed = [e for e in store.model_events() if e["event"] == FAILED]
    assert [e["detail"] for e in failed] == [
        {"run_id": "run-1", "message": "FAILED: Flow run encountered an exception: no champion"}
    ]


# -- the canary's trial


def canary_published(store: MonitoringStore, canary: str, at: datetime) -> None:
    store.insert_model_events([{"event": PUBLISHED, "at": at, "detail": {"canary": canary}}])


def answers(
    store: MonitoringStore, model: str, right: int, wrong: int, start: int = 0, minutes: int = 10
) -> None:
    """Labeled answers of ``model`` served ``minutes`` before NOW (clip ids from ``start``)."""
    rows = [("rock", "rock")] * right + [("rock", "jazz")] * wrong
    ids = [f"{model}-{start + n}.wav" for n in range(len(rows))]
    store.insert_predictions(
        {"clip_id": i, "genre": answer, "model_version": model,
         "served_at": NOW - timedelta(minutes=minutes)}
        for i, (_, answer) in zip(ids, rows, strict=True)
    )  # fmt: skip
    store.insert_labels({"clip_id": i, "genre": t} for i, (t, _) in zip(ids, rows, strict=True))


def test_a_canary_waits_for_enough_labels_on_both_sides_then_the_better_one_wins(
    store: MonitoringStore,
) -> None:
    answers(store, "m/1", right=0, wrong=30, minutes=40)  # before the canary: not its period
    canary_published(store, "m/3", NOW - timedelta(minutes=20))
    trial = canary_on_trial(store)
    assert trial is not None and trial.canary == "m/3" and trial.version == "3"
    answers(store, "m/3", right=4, wrong=0)
    answers(store, "m/1", right=3, wrong=2, start=100)
    waiting = judge(store, trial, min_answers=5)
    assert waiting.promote is None and "4 labeled answers of 5" in waiting.message
    answers(store, "m/3", right=0, wrong=2, start=100)  # canary 4/6 against champion 3/5
    verdict = judge(store, trial, min_answers=5)
    assert verdict.promote is True
    figures = verdict.figures()["canary_answers"]
    assert (figures["answers"], figures["correct"], figures["accuracy"]) == (6, 4, 0.6667)
    assert verdict.figures()["incumbent_answers"]["accuracy"] == 0.6
    answers(store, "m/3", right=0, wrong=1, start=200)  # 4/7 = 0.571 < 0.6
    assert judge(store, trial, min_answers=5).promote is False


def test_a_concluded_canary_is_no_longer_on_trial(store: MonitoringStore) -> None:
    assert canary_on_trial(store) is None
    canary_published(store, "m/3", NOW - timedelta(minutes=30))
    store.insert_model_events(
        [{"event": WITHDRAWN, "at": NOW - timedelta(minutes=20), "detail": {"canary": "m/3"}},
         {"event": "publish", "at": NOW - timedelta(minutes=19), "detail": {"canary": None}}]
    )  # fmt: skip
    assert canary_on_trial(store) is None
    canary_published(store, "m/4", NOW - timedelta(minutes=5))
    trial = canary_on_trial(store)
    assert trial is not None and trial.canary == "m/4"


def test_no_retraining_while_a_canary_is_on_trial_and_its_verdict_is_handed_on(
    store: MonitoringStore, tmp_path: Path
) -> None:
    labeled_answers(store, right=1, wrong=9)  # accuracy alone would call for retraining
    canary_published(store, "m/3", NOW - timedelta(minutes=20))
    runs, verdicts = Runs(), []
    policy = RetrainPolicy(POLICY.gate_open_seconds, POLICY.quality, 0, canary_min_answers=3)
    with MonitoringWriter(store, tmp_path / "spool") as writer:
        watcher = RetrainWatcher(
            store, writer, policy, runs.start, runs.state, 30,
            conclude=verdicts.append,
        )  # fmt: skip
        assert watcher.check(NOW) is None and not verdicts  # too few canary answers yet
        answers(store, "m/3", right=1, wrong=2)
        answers(store, "m/1", right=3, wrong=0)
        assert watcher.check(NOW) is None
    assert runs.started == []
    (verdict,) = verdicts
    assert verdict.promote is False and verdict.trial.canary == "m/3"
    assert "m/3 withdrawn: live accuracy 0.333 over 3 labeled answers < 1.000" in verdict.message


def test_the_demo_loop_follows_a_cycle_already_under_way(store: MonitoringStore) -> None:
    from genreops.app.loop import LoopResult, cycle_in_flight, loop_lines

    assert cycle_in_flight(store) is None
    at = NOW - timedelta(minutes=3)
    store.insert_model_events(
        [{"event": TRIGGERED, "at": at - timedelta(hours=1)},
         {"event": WITHDRAWN, "at": at - timedelta(minutes=30), "detail": {"canary": "m/2"}},
         {"event": TRIGGERED, "at": at}, {"event": PUBLISHED, "at": NOW, "detail": {}}]
    )  # fmt: skip
    assert cycle_in_flight(store) == at  # the newest trigger, not yet concluded
    store.insert_model_events([{"event": FAILED, "at": NOW, "detail": {"run_id": "r"}}])
    assert cycle_in_flight(store) is None  # its run failed: a new cycle must start
    lines = loop_lines(LoopResult([("canary published", -12.5, "")], promoted="m/3"))
    assert lines[1] == "   -12.5 s  canary published" and lines[-1].startswith("Promoted: m/3")


def test_a_canary_published_away_by_hand_is_no_longer_on_trial(store: MonitoringStore) -> None:
    canary_published(store, "m/3", NOW - timedelta(minutes=30))
    store.insert_model_events(  # the publication that put it on trial, then one by hand
        [{"event": "publish", "at": NOW - timedelta(minutes=31), "detail": {"canary": "m/3"}}]
    )
    assert canary_on_trial(store) is not None
    store.insert_model_events(
        [{"event": "publish", "at": NOW - timedelta(minutes=5), "detail": {"canary": None}}]
    )
    assert canary_on_trial(store) is None


def test_a_soft_vote_champion_is_retrained_with_its_members() -> None:
    from genreops.flows.retrain import with_members

    assert with_members(["random_forest", "knn"]) == ["random_forest", "knn"]
    families = with_members(["soft_vote", "random_forest"])
    assert families[-1] == "soft_vote" and "random_forest" in families
    assert {"svc", "xgboost", "logistic_regression"} <= set(families)  # the default members


def test_prefect_away_does_not_stop_the_canarys_verdict(
    store: MonitoringStore, tmp_path: Path
) -> None:
    """Reading the last run's state needs Prefect; judging the canary needs only the store."""
    store.insert_model_events(
        [{"event": TRIGGERED, "at": NOW - timedelta(minutes=30), "detail": {"run_id": "r"}}]
    )
    canary_published(store, "m/3", NOW - timedelta(minutes=20))
    answers(store, "m/3", right=3, wrong=0)
    answers(store, "m/1", right=1, wrong=2, start=100)
    verdicts: list[Any] = []

    def prefect_away(run_id: str) -> RunState:
        raise ConnectionError("All connection attempts failed")

    policy = RetrainPolicy(POLICY.gate_open_seconds, POLICY.quality, 0, canary_min_answers=3)
    with MonitoringWriter(store, tmp_path / "spool") as writer:
        watcher = RetrainWatcher(
            store, writer, policy, Runs().start, prefect_away, 30, conclude=verdicts.append
        )
        assert watcher.check(NOW) is None
    (verdict,) = verdicts
    assert verdict.promote is True and "m/3 promoted" in watcher.status
