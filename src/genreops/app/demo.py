"""`make demo`: the whole platform once, through the running stack, then a summary.

Synthetic audio (a training corpus, a clean and a drifted test set) goes to the stack's S3;
the ``pipeline`` deployment is triggered through the Prefect server (so the run, its
subflows, tasks and logs are in the Prefect UI) and classifies both test sets through
Triton; ``drift-report`` then fills the drift views. Every step reuses what is already done,
so a second demo is quicker. The stack must be up (``genreops stack up``).

With ``loop`` the drifted set is kept for the closed loop instead (genreops.app.loop): the
pipeline classifies the clean set only, then the drifted clips arrive and the platform
retrains, publishes a canary and promotes it by itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from genreops.app.loop import Loop, LoopResult, drifted_clips, loop_lines, monitor_policy
from genreops.app.pipeline import read_summary
from genreops.app.pipeline import summary_lines as pipeline_lines
from genreops.core.errors import GenreopsError
from genreops.core.settings import Settings
from genreops.data.storage import ensure_bucket, join_url, upload_dir

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun

    from genreops.platform.stack import ServiceStatus

PIPELINE = "pipeline/pipeline"
DRIFT_REPORT = "drift-report/drift-report"
DRIFT_REPORTS = 4  # Evidently reports built during the demo by default; the rest later
_FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
NEEDED = ("s3", "mlflow", "prefect", "deployments", "triton")  # services the demo runs on
# URLs worth opening, by stack service
EXPLORE = {
    "prefect": "Prefect UI",
    "mlflow": "MLflow",
    "prometheus": "Prometheus",
    "drift-ui": "Drift UI",
    "triton": "Triton",
    "alertmanager": "Alertmanager",
    "monitor": "Monitor",
}


class DemoError(GenreopsError):
    """The demo could not run a step; the message names it and why."""


@dataclass(frozen=True)
class DemoPlan:
    """Where the demo's data lives: local renders, their S3 copies, the outputs."""

    workdir: Path
    raw_prefix: str
    features_url: str
    per_genre: int = 30
    clean_per_genre: int = 5
    drifted_per_genre: int = 10
    trials: int = 10
    drift_reports: int = DRIFT_REPORTS
    loop: bool = False  # then the closed loop on the drifted set (genreops.app.loop)
    loop_timeout: float = 900.0

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> DemoPlan:
        return cls(
            workdir=settings.home.resolve() / "demo",
            raw_prefix=f"s3://{settings.raw_bucket}/demo",
            features_url=f"s3://{settings.features_bucket}/demo/features",
            **options,
        )

    def sets(self) -> dict[str, tuple[int, int, bool]]:
        """name -> (clips per genre, seed, drifted)."""
        return {
            "corpus": (self.per_genre, 0, False),
            "clean": (self.clean_per_genre, 1, False),
            "drifted": (self.drifted_per_genre, 2, True),
        }

    def url(self, name: str) -> str:
        return join_url(self.raw_prefix, name)


@dataclass
class DemoResult:
    pipeline: dict[str, Any]
    flow_run_id: str
    drift_views: dict[str, Any] | None
    seconds: dict[str, float] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)  # what to open next, by name
    loop: LoopResult | None = None


def stack_services(settings: Settings) -> list[ServiceStatus]:
    """The stack's services; DemoError when one the demo runs on is not healthy."""
    from genreops.platform.stack import Stack

    services = Stack(settings).status()
    down = [row.service for row in services if row.service in NEEDED and not row.healthy]
    if down:
        raise DemoError(
            f"the stack is not up ({', '.join(down)} not healthy): "
            "run `genreops stack up` (or `make demo`, which does)"
        )
    return services


def explore_urls(services: list[ServiceStatus]) -> dict[str, str]:
    """The UIs and endpoints of the healthy services, by name."""
    return {
        EXPLORE[row.service]: row.url
        for row in services
        if row.service in EXPLORE and row.healthy and row.url
    }


Say = Callable[[str], None]


def prepare_audio(plan: DemoPlan, settings: Settings, say: Say) -> None:
    """Render the three sets (reused when unchanged) and upload them (unchanged: skipped)."""
    from genreops.data.synth import render_corpus  # scipy: not for `genreops --help`

    for name, (per_genre, seed, drifted) in plan.sets().items():
        render_corpus(plan.workdir / name, per_genre, seed=seed, drift=drifted, workers=2)
        ensure_bucket(plan.url(name), s3=settings.s3)
        report = upload_dir(plan.workdir / name, plan.url(name), s3=settings.s3)
        say(
            f"{name}: {per_genre} clips per genre{' (drifted)' if drifted else ''} -> "
            f"{plan.url(name)} ({report.uploaded} uploaded, {report.skipped} unchanged)"
        )


def run_deployment_and_wait(
    name: str, parameters: dict[str, Any], say: Say, *, poll: float = 2.0
) -> Any:
    """Trigger a deployment through the Prefect API and follow it and its subflows."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.deployments import run_deployment

    try:
        run = cast(
            "FlowRun", run_deployment(name, parameters=parameters, timeout=0, as_subflow=False)
        )  # called outside an event loop: the sync variant
    except Exception as error:  # ObjectNotFound, connection refused, ...
        raise DemoError(
            f"cannot trigger deployment {name!r}: {error} (is `genreops stack up` running?)"
        ) from error
    say(f"triggered {name}: flow run {run.name} ({run.id})")
    seen: dict[str, str] = {}
    flow_names: dict[Any, str] = {}
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(run.id)
            children = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id])
                ),
                sort=FlowRunSort.EXPECTED_START_TIME_ASC,
                limit=100,
            )
            for child in children:
                state = str(child.state.name) if child.state else "?"
                if seen.get(str(child.id)) != state:
                    seen[str(child.id)] = state
                    if child.flow_id not in flow_names:
                        flow_names[child.flow_id] = str(client.read_flow(child.flow_id).name)
                    say(f"  {flow_names[child.flow_id]}: {state}")
            state_type = run.state.type.value if run.state else "PENDING"
            if state_type in _FINAL:
                break
            time.sleep(poll)
    if state_type != "COMPLETED":
        message = run.state.message if run.state else ""
        raise DemoError(
            f"deployment {name} ended {state_type}: {message} (see the run {run.id} in the "
            "Prefect UI for its logs)"
        )
    return run


def run_demo(settings: Settings, plan: DemoPlan, say: Say) -> DemoResult:
    """Every step of the demo on the running stack; raises DemoError naming the step that
    failed (first of all: a service of the stack that is not healthy)."""
    services = stack_services(settings)
    monitor_url = ""
    policy: dict[str, Any] = {}
    if plan.loop:  # before anything: a monitor that would take hours says so now
        from genreops.platform.stack import Stack

        monitor_url = Stack(settings).endpoints.monitor
        policy = monitor_policy(monitor_url)
        say(
            f"loop: the monitor retrains after {policy.get('gate_open_seconds', 0):g} s of open "
            f"gate, the canary answers {100 * float(policy.get('canary_share', 0)):.0f}% and "
            f"is judged on {policy.get('canary_min_answers')} labeled answers"
        )
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    prepare_audio(plan, settings, say)
    seconds["audio"] = time.perf_counter() - started

    started = time.perf_counter()
    run = run_deployment_and_wait(
        PIPELINE,
        {
            "corpus_url": plan.url("corpus"),
            "features_url": plan.features_url,
            "trials": plan.trials,
            # the loop sends the drifted set itself, later
            "predict_urls": [plan.url("clean")] + ([] if plan.loop else [plan.url("drifted")]),
        },
        say,
    )
    seconds["pipeline"] = time.perf_counter() - started
    summary = read_summary(plan.features_url, s3=settings.s3)

    started = time.perf_counter()
    views = None
    try:
        if plan.drift_reports:
            run_deployment_and_wait(DRIFT_REPORT, {"limit": plan.drift_reports}, say)
            views = {"status": "updated"}
        else:
            say("drift views: left to the scheduled drift-report run (--drift-reports 0)")
    except DemoError as error:  # the views are a bonus; the summary must still print
        say(f"drift views not updated: {error}")
    seconds["drift_views"] = time.perf_counter() - started
    loop = None
    if plan.loop:
        started = time.perf_counter()
        say("the loop: drifted audio arrives")
        loop = Loop(
            settings,
            drifted_clips(plan.workdir),
            say,
            monitor_url=monitor_url,
            timeout=plan.loop_timeout,
            canary_min_answers=int(policy.get("canary_min_answers") or 0) or None,
        ).run()
        seconds["loop"] = time.perf_counter() - started
    return DemoResult(summary, str(run.id), views, seconds, explore_urls(services), loop)


def summary_lines(result: DemoResult) -> list[str]:
    """The demo's closing summary, one line each."""
    lines = pipeline_lines(result.pipeline, ("Clean set", "Drifted set"))
    if result.loop is not None:
        lines += loop_lines(result.loop)
    lines.append(
        "Time: " + ", ".join(f"{step} {seconds:.0f} s" for step, seconds in result.seconds.items())
    )
    lines.append("Explore:")
    width = max((len(name) for name in result.urls), default=0)
    lines.extend(f"  {name:<{width}} {url}" for name, url in result.urls.items())
    return lines
