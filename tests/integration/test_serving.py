"""The published genre ensemble on the real tritonserver: answers, the drift gate and the OOD
flag, bad inputs, hot publishing under load, rollback, the monitoring store and the custom
metrics."""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from genreops.core.settings import get_settings
from genreops.data.synth import render_corpus
from genreops.monitoring.store import MonitoringStore
from genreops.serving.client import Answer, EnsembleClient, predict, summarize
from genreops.serving.publish import (
    MODELS,
    PublishResult,
    ServingOptions,
    publish_registered,
    reload_server,
    rollback,
)
from genreops.serving.triton.server import TritonPorts, start_triton, stop_triton
from genreops.training.tracking import TrackingTarget
from helpers import (
    SERVING_SECONDS,
    TcpProxy,
    free_port,
    postgres_url,
    running_ensemble,
    serving_options,
    wait_until,
)

if TYPE_CHECKING:
    from conftest import PublishedEnsemble

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]

SECONDS = SERVING_SECONDS
OPTIONS = serving_options()  # the drift gate itself keeps its defaults: what a user gets


@dataclass
class Served:
    home: Path
    repository: Path
    ports: TritonPorts
    published: PublishResult
    clean: list[str]
    drifted: list[str]
    more_clean: list[str] = field(default_factory=list)  # other clean clips, never trained on
    answered: int = 0  # every answer the server gave in this module, for the store check

    def client(self) -> EnsembleClient:
        return EnsembleClient(self.ports.grpc_url, "grpc")

    def ask(self, paths: list[str], **options: object) -> list[Answer]:
        answers = predict(paths, self.client(), labels_from_folders=True, **options)  # type: ignore[arg-type]
        self.answered += sum(a.ok for a in answers)
        return answers


@pytest.fixture(scope="module")
def served(
    published_ensemble: PublishedEnsemble, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """The session's published ensemble on a server of this module's own: a copy of the
    repository (these tests publish and roll back), its own home for the store and drift
    state, the session's MLflow registry to publish from."""
    source = published_ensemble.home
    home = tmp_path_factory.mktemp("serving")
    repository = home / "repository"
    shutil.copytree(published_ensemble.repository, repository)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GENREOPS_HOME", str(home))
        patch.setenv("GENREOPS_MLFLOW_TRACKING_URI", f"sqlite:///{source / 'mlflow.db'}")
        patch.setenv("GENREOPS_MLFLOW_ARTIFACT_ROOT", str(source / "mlartifacts"))
        get_settings.cache_clear()
        render_corpus(home / "more-clean", per_genre=12, seconds=SECONDS, seed=7, workers=2)
        ports = TritonPorts(http=free_port(), grpc=free_port(), metrics=free_port())
        process = start_triton(
            repository,
            state_dir=home,
            ports=ports,
            log_path=home / "triton.log",
            load_models=list(MODELS),  # the fallback is not in the ensemble graph (BLS)
        )
        try:
            yield Served(
                home,
                repository,
                ports,
                published_ensemble.published,
                clean=published_ensemble.clean,
                drifted=published_ensemble.drifted,
                more_clean=sorted(str(p) for p in (home / "more-clean").glob("*/*.wav")),
            )
        finally:
            stop_triton(process)
    get_settings.cache_clear()


def test_clean_clips_are_answered_by_the_champion(served: Served) -> None:
    answers = served.ask(served.clean)
    summary = summarize(answers)
    assert summary.failed == 0
    assert summary.accuracy is not None and summary.accuracy >= 0.85
    assert {a.model for a in answers} == {served.published.champion.label}
    assert not any(a.drift for a in answers)
    assert served.client().labels() == served.published.champion.genres


def test_a_shift_opens_the_gate_at_once_and_clean_traffic_closes_it(served: Served) -> None:
    """The acceptance check of issue 14, one request at a time: 30 clean clips, then clips
    recorded differently (the --drift corpus): most are answered by the fallback with
    DRIFT = true; clean traffic closes the gate again, and long clean traffic never opens it."""
    champion, challenger = served.published.champion.label, served.published.challenger.label
    clean = served.ask(served.clean, concurrency=1)
    assert len(clean) == 30 and not any(a.drift for a in clean)
    drifted = served.ask(served.drifted, concurrency=1)
    gated = [a for a in drifted if a.drift]
    assert len(gated) >= 0.7 * len(drifted), [a.drift for a in drifted]
    first = next(i for i, a in enumerate(drifted) if a.drift)
    assert all(a.drift for a in drifted[first:]), "the gate closed while the shift went on"
    assert {a.model for a in gated} == {challenger}

    closing: list[Answer] = []
    for _ in range(10):  # clean traffic brings the detector's evidence back down
        closing += served.ask(served.clean, concurrency=1)
        if not closing[-1].drift:
            break
    assert not closing[-1].drift, "the gate never closed again on clean audio"
    reopened = next(i for i, a in enumerate(closing) if not a.drift)
    assert not any(a.drift for a in closing[reopened:])
    assert closing[-1].model == champion

    steady = served.ask(served.more_clean, concurrency=2)
    assert not any(a.drift for a in steady), "clean traffic opened the gate"
    assert {a.model for a in steady} == {champion}
    assert sum(bool(a.ood) for a in steady) <= 0.05 * len(steady)


def _foreign_clips(folder: Path) -> list[str]:
    """Clearly not music: speech (espeak-ng), white noise and a tone (sox)."""
    folder.mkdir(parents=True, exist_ok=True)
    seconds = str(SECONDS)
    made = {
        "speech.wav": ["espeak-ng", "-w", str(folder / "speech.wav"),
                       "Good evening. Here is the news. The weather stays mild tonight, with "
                       "light winds from the west and a little rain before morning."],
        "noise.wav": ["sox", "-n", "-r", "22050", str(folder / "noise.wav"), "synth", seconds,
                      "whitenoise", "gain", "-10"],
        "tone.wav": ["sox", "-n", "-r", "22050", str(folder / "tone.wav"), "synth", seconds,
                     "sine", "440", "gain", "-6"],
    }  # fmt: skip
    for argv in made.values():
        assert shutil.which(argv[0]), f"{argv[0]} is not installed (make setup installs it)"
        subprocess.run(argv, check=True, capture_output=True)
    return [str(folder / name) for name in made]


def test_foreign_clips_are_flagged_in_the_predict_output(served: Served, tmp_path: Path) -> None:
    """One strange clip is flagged at once (the OOD column), before any window could drift."""
    from typer.testing import CliRunner

    from genreops.app.cli import app

    foreign = _foreign_clips(tmp_path / "foreign")
    output = tmp_path / "results.csv"
    result = CliRunner().invoke(
        app,
        ["predict", *foreign, *served.clean[:6], "--url", served.ports.grpc_url,
         "--concurrency", "1", "--save", str(output)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    flagged = re.search(r"out of distribution (\d+)", " ".join(result.output.split()))
    assert flagged and int(flagged.group(1)) >= 3, result.output
    rows = {row["path"]: row for row in csv.DictReader(output.open())}
    served.answered += len(rows)
    for path in foreign:
        assert rows[path]["ood"] == "True", rows[path]
        assert float(rows[path]["ood_score"]) > 1.0
    for path in served.clean[:6]:
        assert float(rows[path]["ood_score"]) >= 0.0


def test_folder_genres_become_labels_and_live_quality_agrees_with_predict(
    served: Served, tmp_path: Path
) -> None:
    """`predict --expect-labels-from-folders` stores the folders' genres as ground truth; the
    store's answers scored against them give the accuracy predict itself reported."""
    import json

    from typer.testing import CliRunner

    from genreops.app.cli import app
    from genreops.monitoring.quality import ALL_VERSIONS, live_quality

    clips = []  # clips never sent before (new ids), in their genre folders
    for source in map(Path, served.more_clean[::3][:8]):
        (tmp_path / source.parent.name).mkdir(exist_ok=True)
        clips.append(str(shutil.copy(source, tmp_path / source.parent.name / source.name)))
    result = CliRunner().invoke(
        app,
        ["predict", *clips, "--url", served.ports.grpc_url, "--expect-labels-from-folders",
         "-o", "json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    reported = json.loads(result.stdout)
    served.answered += reported["summary"]["answered"]
    assert (reported["labels"]["stored"], reported["labels"]["spooled"]) == (8, 0)
    store = MonitoringStore(get_settings().monitoring_db_url)

    def joined() -> list[dict[str, object]]:
        return [row for row in store.labeled_predictions() if row["clip_id"] in clips]

    assert wait_until(lambda: len(joined()) == 8, timeout=60), joined()
    assert all(row["true_genre"] == Path(str(row["clip_id"])).parent.name for row in joined())
    (pooled,) = [q for q in live_quality(joined()) if q.model_version == ALL_VERSIONS]
    assert pooled.labeled == 8
    assert pooled.accuracy == pytest.approx(reported["summary"]["accuracy"])
    assert pooled.gmean == pytest.approx(reported["summary"]["gmean"])


def test_bad_files_fail_alone_with_their_reason(served: Served, tmp_path: Path) -> None:
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage")
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not audio at all")
    render_corpus(tmp_path / "short", per_genre=1, seconds=1.0, seed=3, genres=["rock"])
    short = next((tmp_path / "short").glob("*/*.wav"))
    bad = [str(tmp_path / n) for n in ("corrupt.wav", "empty.wav", "notes.txt")] + [str(short)]
    answers = served.ask(served.clean[:4] + bad, batch_size=4, concurrency=2)
    assert [a.ok for a in answers[:4]] == [True] * 4
    reasons = {Path(a.path).name: a.reason for a in answers[4:]}
    assert all(not a.ok for a in answers[4:])
    assert reasons["empty.wav"] == "empty"
    assert reasons[short.name] == "too_short"
    assert reasons["corrupt.wav"] in ("corrupt", "not_audio")
    assert reasons["notes.txt"] in ("not_audio", "corrupt")
    assert all(a.error for a in answers[4:])
    assert served.ask(served.clean[:1])[0].ok  # the server carries on


def test_publishing_during_load_fails_no_request_and_rollback_works(served: Served) -> None:
    settings = get_settings()
    stop = threading.Event()
    results: list[Answer] = []

    def load() -> None:
        # every clean clip in turn: a window of a few clips repeated is a drifted window
        while not stop.is_set():
            results.extend(served.ask(served.clean, concurrency=1))

    worker = threading.Thread(target=load)
    worker.start()
    try:
        time.sleep(1.0)
        newer = publish_registered(
            TrackingTarget.from_settings(settings),
            served.repository,
            model_name=settings.model_name,
            options=ServingOptions(**{**OPTIONS.__dict__, "challenger_share": 0.5}),
            server_url=served.ports.http_url,
        )
        assert newer.created and newer.version == served.published.version + 1
        time.sleep(2.0)
        rollback(served.repository)
        reload_server(served.ports.http_url, served.repository)
        time.sleep(1.0)
    finally:
        stop.set()
        worker.join(timeout=120)
    failed = [a for a in results if not a.ok]
    assert results and not failed, failed[:3]
    # version 2 sent about half of the traffic to the challenger (canary); after the
    # rollback version 1 answers with the champion only again
    after = served.ask(served.clean[:6])
    assert {a.model for a in after} == {served.published.champion.label}


def _metrics(served: Served) -> str:
    with urllib.request.urlopen(served.ports.metrics_url, timeout=10) as response:
        return response.read().decode()


def _metric_total(served: Served, name: str) -> int:
    total = 0.0
    for line in _metrics(served).splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def test_custom_metrics_are_on_the_metrics_endpoint(served: Served) -> None:
    served.ask(served.clean[:3])
    text = _metrics(served)
    for name in (
        "genreops_predictions_total",
        "genreops_drift_gate_open",
        "genreops_drift_statistic",
        "genreops_ood_answers_total",
        "genreops_preprocessed_items_total",
        "genreops_preprocess_seconds_total",
    ):
        assert name in text, name
    assert _metric_total(served, "genreops_predictions_total") >= 3
    assert f'model="{served.published.champion.label}"' in text


def test_every_answer_and_drift_test_is_in_the_store(served: Served) -> None:
    """Last in this module: every answer any test above received was stored."""
    assert served.answered > 0
    store = MonitoringStore(get_settings().monitoring_db_url)
    assert wait_until(lambda: store.count("predictions") == served.answered, timeout=60), (
        f"{store.count('predictions')} stored, {served.answered} answered"
    )
    run = [line for f in (served.home / "serving" / "drift").glob("*/drift_tests.jsonl")
           for line in f.read_text().splitlines() if line.strip()]  # fmt: skip
    assert wait_until(lambda: store.count("drift_tests") == len(run), timeout=30)
    predictions = store.recent_predictions(served.answered)
    assert all(p["ood"] is not None and p["ood_score"] is not None for p in predictions)
    assert {p["clip_id"].rsplit("/", 1)[-1] for p in predictions if p["ood"]} >= {
        "speech.wav",
        "noise.wav",
        "tone.wav",
    }
    tests = store.recent_drift_tests(len(run))
    opened = [t for t in tests if t["gate_open"] and t["dataset_drift"]]
    assert opened and all(t["statistic"] is not None for t in tests)


def test_on_postgresql_an_outage_mid_traffic_loses_nothing(
    served: Served, make_schema: Callable[[], str], tmp_path: Path
) -> None:
    """A second server on the same repository, its store on PostgreSQL behind a proxy that
    we cut during traffic: every answer and drift test still lands, once."""
    schema = make_schema()
    proxy = TcpProxy(free_port())
    proxy.start()
    try:
        with running_ensemble(
            served.repository,
            tmp_path / "home",
            database_url=postgres_url(schema, proxy.port),
            state_dir=tmp_path,
            log_path=tmp_path / "triton.log",
        ) as (_, ports):
            other = Served(tmp_path, served.repository, ports, served.published, served.clean, [])
            other.ask(served.clean)
            proxy.stop()  # the database host goes away while traffic goes on
            for _ in range(3):
                other.ask(served.clean)
            proxy.start()
            other.ask(served.clean)
            store = MonitoringStore(postgres_url(schema))
            assert wait_until(lambda: store.count("predictions") == other.answered, timeout=90), (
                f"{store.count('predictions')} stored, {other.answered} answered"
            )
            assert other.answered == 5 * len(served.clean)
    finally:
        proxy.stop()
