"""`genreops demo --loop`: the closed loop on the running stack, each step timed.

Drifted audio is sent to Triton → the drift gate opens → the alert is delivered (Prometheus →
Alertmanager → the monitor's receiver) → the drifted clips' labels arrive → the monitor starts
the ``retrain`` deployment by itself → the flow publishes its canary → labeled traffic judges
the canary → the monitor promotes (or withdraws) it → the same drifted traffic again, now
answered by the promoted model with the gate closed.

Every step is read from where the platform records it (the answers Triton gave, the monitoring
store's model events and alerts), never from printed text, so the summary is what happened.
The demo only sends traffic and labels; the decisions are the monitor's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from genreops.core.errors import GenreopsError
from genreops.core.settings import Settings
from genreops.monitoring.canary import PROMOTED, PUBLISHED, WITHDRAWN, canary_on_trial, judge
from genreops.monitoring.retraining import FAILED, TRIGGERED
from genreops.monitoring.store import MonitoringStore

Say = Callable[[str], None]
DRIFT_ALERT = "GenreopsDriftGateOpen"
STEPS = {  # model event -> what the summary calls the step
    TRIGGERED: "retraining triggered",
    "retrain-started": "retraining run started",
    FAILED: "retraining run failed",
    "retrain-finished": "canary trained and registered",
    PUBLISHED: "canary published",
    PROMOTED: "canary promoted",
    WITHDRAWN: "canary withdrawn",
}
SLOW_GATE_SECONDS = 300.0  # a monitor that waits longer than this makes the loop too slow


class LoopError(GenreopsError):
    """The loop stopped at a step; the message names it and what was seen."""


@dataclass
class LoopResult:
    """When each step happened, in seconds after the first drifted request."""

    steps: list[tuple[str, float, str]] = field(default_factory=list)  # (step, seconds, detail)
    promoted: str | None = None
    withdrawn: str | None = None


def monitor_policy(monitor_url: str) -> dict[str, Any]:
    """The running monitor's loop settings (its /healthz); LoopError when it cannot retrain."""
    import httpx

    try:
        health = httpx.get(f"{monitor_url}/healthz", timeout=5, trust_env=False).json()
    except (httpx.HTTPError, ValueError) as error:
        raise LoopError(f"the monitor at {monitor_url} does not answer ({error})") from error
    if not health.get("retraining"):
        raise LoopError(
            "the monitor does not start retraining runs (GENREOPS_RETRAIN_AUTO off, or no "
            "Prefect server): restart the stack with `make demo_loop`"
        )
    policy: dict[str, Any] = health.get("policy") or {}
    if float(policy.get("gate_open_seconds", 0)) > SLOW_GATE_SECONDS:
        raise LoopError(
            f"the monitor retrains after the gate has been open "
            f"{policy['gate_open_seconds']:g} s: too slow for a demo. Restart it with the "
            "loop's settings: `genreops stack down && make demo_loop`"
        )
    return policy


class Loop:
    """Sends the demo's traffic and labels, and watches the store for the platform's steps."""

    def __init__(
        self,
        settings: Settings,
        drifted: list[str],
        say: Say,
        *,
        monitor_url: str,
        timeout: float = 900.0,
        poll: float = 2.0,
        canary_min_answers: int | None = None,
    ) -> None:
        from genreops.serving.client import EnsembleClient

        self.settings, self.drifted, self.say = settings, drifted, say
        self.monitor_url = monitor_url
        self.monitor_status = ""  # what the monitor's last check said (its /healthz)
        self.timeout, self.poll = timeout, poll
        # the monitor's (its /healthz policy), which judges; this process's settings otherwise
        self.canary_min_answers = canary_min_answers or settings.canary_min_answers
        self.client = EnsembleClient(settings.triton_url, "grpc")
        self.result = LoopResult()
        self.started = time.monotonic()
        self.first_request = datetime.now(UTC)  # the clock of the summary's seconds
        self.since = self.first_request  # the events that belong to this loop

    def step(self, name: str, detail: str = "", at: datetime | None = None) -> None:
        seconds = ((at or datetime.now(UTC)) - self.first_request).total_seconds()
        self.result.steps.append((name, seconds, detail))
        self.say(f"[{seconds:6.1f} s] {name}{': ' + detail if detail else ''}")

    def send(self, *, labeled: bool) -> list[Any]:
        """The drifted clips through Triton; their folder genres stored as labels if asked."""
        from genreops.serving.client import predict

        answers = predict(self.drifted, self.client, labels_from_folders=True, concurrency=4)
        failed = [a for a in answers if not a.ok]
        if failed:
            raise LoopError(f"{len(failed)} drifted clips were refused: {failed[0].error}")
        if labeled:
            self.store_labels(answers)
        return answers

    def store_labels(self, answers: list[Any]) -> Any:
        """The folder genre of every answered clip, as its label (none may be lost)."""
        from genreops.monitoring.feedback import save_labels
        from genreops.serving.client import folder_labels

        report = save_labels(self.settings, folder_labels(answers), "demo --loop")
        if report.stored + report.spooled != len(answers):
            raise LoopError(f"labels not all stored: {report}")
        return report

    def run(self) -> LoopResult:
        with MonitoringStore(self.settings.monitoring_db_url) as store:
            in_flight = cycle_in_flight(store)
        if in_flight is not None:  # earlier drift already started one: it is this loop's
            self.since = in_flight
            self.say(
                f"a retraining cycle is under way (triggered at {in_flight:%H:%M:%S}, before "
                "this loop): following it"
            )
        answers = self.send(labeled=False)
        opened = sum(bool(a.drift) for a in answers)
        if not opened:
            raise LoopError(
                f"{len(answers)} drifted clips did not open the drift gate: the champion "
                "already knows this audio (a loop ran before in this home?)"
            )
        self.step(
            "drifted audio answered",
            f"{len(answers)} clips, the gate open for {opened} (the fallback answered them)",
        )
        report = self.store_labels(answers)
        self.step("labels arrived", f"{report.stored} stored, {report.spooled} spooled")
        seen: set[str] = set()
        alerted = False
        concluded: str | None = None
        trial_gone = False  # the canary's trial was over without a verdict at the last look
        deadline = self.started + self.timeout
        with MonitoringStore(self.settings.monitoring_db_url) as store:
            while concluded is None:
                if time.monotonic() > deadline:
                    done = ", ".join(name for name, _, _ in self.result.steps)
                    raise LoopError(
                        f"no promotion or withdrawal within {self.timeout:.0f} s (seen: {done}; "
                        f"the monitor: {self.monitor_status or 'no answer'}); see "
                        "`genreops models`, the Prefect UI and the monitor's log"
                    )
                self._watch_monitor()
                if not alerted:
                    alerted = self._alert_delivered(store)
                for event in store.model_events(limit=50):
                    name = event["event"]
                    if name in STEPS and name not in seen and event["at"] >= self.since:
                        seen.add(name)
                        self.step(STEPS[name], _describe(event), at=event["at"])
                        if name == FAILED:
                            raise LoopError(
                                f"the retraining run failed: {_describe(event)} (its logs: "
                                "the Prefect UI); the monitor tries again after its cool-down"
                            )
                        if name in (PROMOTED, WITHDRAWN):
                            concluded = name
                            self._record_conclusion(event)
                if PUBLISHED in seen and concluded is None:
                    trial = canary_on_trial(store)
                    if trial is None:
                        if trial_gone:  # twice: not a conclusion recorded between two reads
                            raise LoopError(
                                "the canary's trial ended without a verdict: a newer "
                                "publication serves without it (see `genreops models`)"
                            )
                        trial_gone = True
                    elif judge(store, trial, self.canary_min_answers).promote is None:
                        # labeled traffic judges the canary; no more once the monitor can
                        # decide, so its publication does not compete with the demo's load
                        self.send(labeled=True)
                time.sleep(self.poll)
            if not alerted:  # the alert's delivery is slower than the loop on a fast machine
                self._wait_for_alert(store, deadline)
        self._same_traffic_again()
        return self.result

    def _watch_monitor(self) -> None:
        """What the monitor's last check decided, said when it changes (a cool-down or a run
        still going shows here rather than as a silent wait)."""
        import httpx

        try:
            health = httpx.get(f"{self.monitor_url}/healthz", timeout=5, trust_env=False).json()
            status = str(health.get("retraining_status") or "")
        except (httpx.HTTPError, ValueError) as error:
            status = f"does not answer ({error})"
        if status and status != self.monitor_status:
            self.say(f"         the monitor: {status}")
        self.monitor_status = status

    def _alert_delivered(self, store: MonitoringStore) -> bool:
        for alert in store.recent_alerts(50):
            if (
                alert["alertname"] == DRIFT_ALERT
                and alert["status"] == "firing"
                and alert["received_at"] >= self.since
            ):
                self.step(
                    "drift alert delivered",
                    f"{alert['source']} -> the monitor's receiver ({alert['receiver'] or '-'})",
                )
                return True
        return False

    def _wait_for_alert(self, store: MonitoringStore, deadline: float) -> None:
        while time.monotonic() < deadline:
            if self._alert_delivered(store):
                return
            time.sleep(self.poll)
        self.step("drift alert not delivered", "is Prometheus/Alertmanager running?")

    def _record_conclusion(self, event: dict[str, Any]) -> None:
        canary = str((event.get("detail") or {}).get("canary"))
        if event["event"] == PROMOTED:
            self.result.promoted = canary
        else:
            self.result.withdrawn = canary

    def _same_traffic_again(self) -> None:
        answers = self.send(labeled=True)
        tail = answers[len(answers) // 2 :]  # the gate's verdict once the window is full
        closed = not any(a.drift for a in tail)
        models = sorted({a.model for a in answers})
        self.step(
            "the same drifted traffic again",
            f"answered by {', '.join(models)}; gate {'closed' if closed else 'still open'}",
        )


def cycle_in_flight(store: MonitoringStore) -> datetime | None:
    """When the retraining cycle still under way was triggered (a run going or a canary on
    trial: no promotion or withdrawal since); None when there is none."""
    for event in reversed(store.model_events(limit=50)):  # newest first
        if event["event"] in (PROMOTED, WITHDRAWN, FAILED):
            return None
        if event["event"] == TRIGGERED:
            at: datetime = event["at"]
            return at
    return None


def _describe(event: dict[str, Any]) -> str:
    detail = event.get("detail") or {}
    name = event["event"]
    if name == TRIGGERED:
        return str(detail.get("message", ""))
    if name == "retrain-started":
        return f"{detail.get('labels', 0)} labels, base {detail.get('base', '?')}"
    if name == "retrain-finished":
        return (
            f"{detail.get('canary')} ({detail.get('family')}), +{detail.get('added', 0)} "
            f"labeled clips, validation G-mean {float(detail.get('val_gmean') or 0):.3f}"
        )
    if name == PUBLISHED:
        share = float(detail.get("share") or 0)
        return f"{detail.get('canary')} answers {100 * share:.0f}% of all traffic"
    if name == FAILED:
        return f"run {detail.get('run_id')}: {detail.get('message')}"
    return str(detail.get("message", ""))


def loop_lines(result: LoopResult) -> list[str]:
    """The loop's part of the demo summary: each step with its time."""
    lines = ["The loop (seconds after the first drifted request):"]
    ordered = sorted(result.steps, key=lambda step: step[1])  # a cycle may predate the loop
    lines += [f"  {seconds:6.1f} s  {name}" for name, seconds, _ in ordered]
    if result.promoted:
        lines.append(f"Promoted: {result.promoted} is the champion")
    if result.withdrawn:
        lines.append(f"Withdrawn: {result.withdrawn}; the champion stays")
    return lines


def drifted_clips(workdir: Path) -> list[str]:
    return sorted(str(p) for p in (workdir / "drifted").glob("*/*.wav"))
