"""The published genre ensemble on the real tritonserver: answers, drift gate, bad inputs,
hot publishing under load, rollback, the monitoring store and the custom metrics."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from flows.registry import register_best
from flows.train import train_model

from genreops.client import Answer, EnsembleClient, predict, summarize
from genreops.extraction import ExtractOptions, extract_in_process
from genreops.monitoring import MonitoringStore
from genreops.publish import (
    MODELS,
    PublishResult,
    ServingOptions,
    publish_registered,
    reload_server,
    rollback,
)
from genreops.settings import get_settings
from genreops.synth import render_corpus
from genreops.tracking import TrackingTarget
from genreops.triton_server import TritonPorts, start_triton, stop_triton
from helpers import TcpProxy, free_port, postgres_url, running_ensemble, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]

SECONDS = 10.0
OPTIONS = ServingOptions(
    window_seconds=SECONDS,
    drift_window=30,
    drift_min_samples=20,
    drift_test_every=10,
    max_batch=8,
)


@dataclass
class Served:
    home: Path
    repository: Path
    ports: TritonPorts
    published: PublishResult
    clean: list[str]
    drifted: list[str]
    answered: int = 0  # every answer the server gave in this module, for the store check

    def client(self) -> EnsembleClient:
        return EnsembleClient(self.ports.grpc_url, "grpc")

    def ask(self, paths: list[str], **options: object) -> list[Answer]:
        answers = predict(paths, self.client(), labels_from_folders=True, **options)  # type: ignore[arg-type]
        self.answered += sum(a.ok for a in answers)
        return answers


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("serving")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GENREOPS_HOME", str(home))
        get_settings.cache_clear()
        render_corpus(home / "train", per_genre=20, seconds=SECONDS, seed=0, workers=2)
        render_corpus(home / "clean", per_genre=3, seconds=SECONDS, seed=5, workers=2)
        render_corpus(home / "drifted", per_genre=5, seconds=SECONDS, seed=6, drift=True, workers=2)
        extract_in_process(
            str(home / "train"), str(home / "features"), ExtractOptions(window_seconds=SECONDS)
        )
        train_model(
            features_url=str(home / "features"), families=["knn", "random_forest"], trials=3
        )
        register_best(top=2)
        settings = get_settings()
        target = TrackingTarget.from_settings(settings)
        repository = home / "repository"
        published = publish_registered(
            target, repository, model_name=settings.model_name, options=OPTIONS
        )
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
                published,
                clean=sorted(str(p) for p in (home / "clean").glob("*/*.wav")),
                drifted=sorted(str(p) for p in (home / "drifted").glob("*/*.wav")),
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


def test_drifted_traffic_opens_the_gate_and_clean_traffic_closes_it(served: Served) -> None:
    deadline = time.monotonic() + 240
    drifted: list[Answer] = []
    while not any(a.drift for a in drifted) and time.monotonic() < deadline:
        drifted += served.ask(served.drifted)
    gated = [a for a in drifted if a.drift]
    assert gated, "the gate never opened on drifted audio"
    assert {a.model for a in gated} == {served.published.challenger.label}
    clean: list[Answer] = []
    while (not clean or clean[-1].drift) and time.monotonic() < deadline + 240:
        clean += served.ask(served.clean)
    assert not clean[-1].drift, "the gate never closed again on clean audio"
    assert clean[-1].model == served.published.champion.label


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
            results.extend(served.ask(served.clean, concurrency=2))

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
        reload_server(served.ports.http_url)
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
