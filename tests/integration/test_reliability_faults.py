"""Faults injected for real while the platform works (issue 6, part 2).

One test per fault; each records its figures (tests/helpers.py ``record_reliability``) before
asserting, so a failing run still reports what happened:

* database_restart: the monitoring store on a private PostgreSQL 15 cluster that the test
  stops (``pg_ctl stop -m fast``) and restarts during client traffic; every served answer
  must end up stored (spool, then replay).
* s3_stop_during_extraction: the embedded S3 server stopped while the extraction flow writes
  its chunks; the flow retries, and a second run reuses every finished chunk.
* triton_stub_killed: SIGKILL of a Python-backend stub process of the running ensemble;
  every request is answered or fails with a reason, the watchdog started with the server
  (genreops.serving.triton.watchdog) reloads the model, and the server answers again.
* triton_replica_refuses_a_version: one of two tritonservers on one repository cannot load
  a new version; the publication fails naming it, and both stay on the version before.
* mlflow_stop_during_register: the MLflow tracking server stopped between two alias writes of
  register-best; a clear error, and the aliases are never half-set.
* dask_worker_killed: a worker process of the local Dask cluster killed mid-extraction; the
  flow finishes with every row.

Fast mode (``make test``) keeps corpora and traffic small; ``GENREOPS_RELIABILITY=full``
sends more traffic, extracts more clips and adds the harder variants.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import pytest

from genreops.core.settings import Settings, get_settings
from genreops.data.storage import read_bytes
from genreops.monitoring.store import spool_status
from genreops.serving.client import Answer, EnsembleClient, predict
from genreops.serving.triton.control import is_ready, model_ready, repository_index
from genreops.serving.triton.install import STUB_NAME
from genreops.serving.triton.server import TritonPorts, watchdog_log_path
from genreops.serving.triton.watchdog import RESTART_DONE
from helpers import (
    RELIABILITY_FULL,
    free_port,
    record_reliability,
    render_labeled_corpus,
    running_ensemble,
    serving_options,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

FULL = RELIABILITY_FULL


# --- a private PostgreSQL cluster that the test may stop --------------------------------------

PG_BIN = Path("/usr/lib/postgresql/15/bin")


class PrivatePostgres:
    """A throw-away PostgreSQL 15 cluster on a free loopback port (initdb + pg_ctl).

    initdb refuses to run as root, so as root every command runs as the ``postgres`` user
    (``runuser``) on a directory it owns, outside pytest's root-only temp tree.
    """

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="genreops-faults-pg-"))
        self.data = self.base / "data"
        self.log = self.base / "postgres.log"
        self.port = free_port()
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            shutil.chown(self.base, "postgres", "postgres")

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [str(PG_BIN / tool), *args]
        if self.as_postgres:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        return subprocess.run(
            argv, cwd=self.base, capture_output=True, text=True, timeout=120, check=False
        )

    def _check(self, result: subprocess.CompletedProcess[str], doing: str) -> None:
        if result.returncode != 0:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{doing} failed ({result.returncode}): {result.stderr.strip()}\n{tail}"
            )

    def init(self) -> None:
        result = self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres",
                           "-E", "UTF8", "--no-sync")  # fmt: skip
        self._check(result, "initdb")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1"
        result = self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w",
                           "-t", "60", "-o", options, "start")  # fmt: skip
        self._check(result, "pg_ctl start")

    def stop(self) -> None:
        """``pg_ctl stop -m fast``: every session is cut, as in a database restart."""
        result = self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        self._check(result, "pg_ctl stop")

    def running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.data), "status").returncode == 0

    def url(self, database: str = "genreops") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> None:
        import psycopg2

        connection = psycopg2.connect(self.url("postgres"), connect_timeout=10)
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')  # fixed identifier, not input
        connection.close()

    def scalar(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        import psycopg2

        connection = psycopg2.connect(self.url(), connect_timeout=10)
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                row = cursor.fetchone()
                return row[0] if row else None
        finally:
            connection.close()

    def remove(self) -> None:
        with contextlib.suppress(Exception):
            if self.running():
                self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PrivatePostgres]:
    for tool in ("initdb", "pg_ctl", "postgres"):
        if not (PG_BIN / tool).is_file():
            pytest.skip(f"PostgreSQL 15 server binaries not installed ({PG_BIN / tool} missing)")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("running as root without runuser: initdb cannot run as root")
    cluster = PrivatePostgres()
    try:
        cluster.init()
        cluster.start()
        cluster.create_database("genreops")
        yield cluster
    finally:
        cluster.remove()


# --- the published ensemble, served with its monitoring store on that cluster ----------------


@dataclass
class Served:
    home: Path
    ports: TritonPorts
    process: subprocess.Popen[bytes]
    clean: list[str]
    postgres: PrivatePostgres
    log_path: Path

    def client(self) -> EnsembleClient:
        return EnsembleClient(self.ports.grpc_url, "grpc", timeout=60)

    def stored(self, prefix: str) -> int:
        """Predictions stored for clips under ``prefix`` (each test sends its own copies)."""
        sql = "SELECT count(*) FROM predictions WHERE substr(clip_id, 1, %s) = %s"
        return int(self.postgres.scalar(sql, (len(prefix), prefix)) or 0)

    def stubs(self, model: str) -> list[psutil.Process]:
        """The Python-backend stub processes of ``model`` (children of tritonserver)."""
        found = []
        for child in psutil.Process(self.process.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                line = " ".join(child.cmdline())
                if STUB_NAME in line and f"/{model}/" in line:
                    found.append(child)
        return found


@pytest.fixture(scope="module")
def served(
    published_ensemble: Any, private_postgres: PrivatePostgres, tmp_path_factory: Any
) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("faults-serving")
    with running_ensemble(
        published_ensemble.repository,
        home,
        database_url=private_postgres.url(),
        # a version whose stub was killed mid-request never finishes unloading (see the stub
        # test), so the stop waits out the whole exit timeout (Triton's default: 30 s)
        extra_args=["--exit-timeout-secs=5"],
    ) as (process, ports):
        yield Served(
            home,
            ports,
            process,
            published_ensemble.clean,
            private_postgres,
            home / "triton.log",
        )


def _own_copies(clips: list[str], folder: Path) -> list[str]:
    """Copies of the clips under ``folder`` (genre folders kept): their clip ids are this
    test's alone, so its stored rows can be counted apart from every other test's."""
    copies = []
    for clip in clips:
        source = Path(clip)
        target = folder / source.parent.name / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        copies.append(str(target))
    return copies


@dataclass
class Traffic:
    """Client traffic in a background thread: the clips, over and over, until stopped."""

    served: Served
    clips: list[str]
    concurrency: int = 2
    answers: list[Answer] = field(default_factory=list)
    sent: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None
    error: BaseException | None = None

    def __enter__(self) -> Traffic:
        self._thread = threading.Thread(target=self._run, name="fault-traffic", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        client = self.served.client()
        try:
            while not self._stop.is_set():
                with self._lock:
                    self.sent += len(self.clips)
                batch = predict(self.clips, client, concurrency=self.concurrency)
                with self._lock:
                    self.answers.extend(batch)
        except BaseException as error:  # reported by the test, never swallowed
            self.error = error

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=300)

    @property
    def answered(self) -> int:
        with self._lock:
            return sum(a.ok for a in self.answers)

    def wait_answered(self, more: int, timeout: float = 120.0) -> bool:
        target = self.answered + more
        return wait_until(lambda: self.answered >= target or self.error is not None, timeout)


# --- 1. the database restarts during traffic --------------------------------------------------


def test_database_restart_mid_traffic_loses_no_prediction(served: Served, tmp_path: Path) -> None:
    """``pg_ctl stop -m fast`` while answers are being written, then a restart: the writer
    spools what it cannot store and replays it; stored predictions equal served answers."""
    prefix = str(tmp_path / "db") + "/"
    clips = _own_copies(served.clean, tmp_path / "db")
    rounds = 4 if FULL else 1  # clip rounds answered in each phase (up, down, up again)
    per_phase = rounds * len(clips)
    down_at_least = 20.0 if FULL else 3.0  # seconds: several writer batches hit the outage
    spool_dir = served.home / "serving" / "spool"
    phases: dict[str, int] = {}
    spooled = 0

    def outage_seen() -> bool:
        nonlocal spooled
        spooled = max(spooled, spool_status(spool_dir).rows)
        return (
            traffic.answered - phases["before"] >= per_phase
            and spooled > 0
            and time.monotonic() - stopped >= down_at_least
        ) or traffic.error is not None

    with Traffic(served, clips) as traffic:
        assert traffic.wait_answered(per_phase), traffic.error
        phases["before"] = traffic.answered
        served.postgres.stop()
        stopped = time.monotonic()
        assert not served.postgres.running()
        wait_until(outage_seen, timeout=120)
        phases["during"] = traffic.answered - phases["before"]
        downtime = time.monotonic() - stopped
        served.postgres.start()
        assert traffic.wait_answered(per_phase), traffic.error
    phases["after"] = traffic.answered - phases["before"] - phases["during"]
    served_ok = traffic.answered
    failed = [a for a in traffic.answers if not a.ok]
    wait_until(lambda: served.stored(prefix) >= served_ok, timeout=150, every=1.0)
    time.sleep(1.0)  # a duplicate would show up now
    stored = served.stored(prefix)
    left = spool_status(spool_dir)
    record_reliability(
        "faults",
        "database_restart",
        {
            "fault": "pg_ctl stop -m fast on the monitoring store's PostgreSQL during client "
            "traffic, then pg_ctl start",
            "injected": 1,
            "survived": not failed and stored == served_ok,
            "rows_lost": served_ok - stored,
            "served": served_ok,
            "stored": stored,
            "detail": f"answers before/during/after the outage: {phases['before']}/"
            f"{phases['during']}/{phases['after']}; database down {downtime:.1f} s; "
            f"rows spooled while it was down: {spooled}; failed requests {len(failed)}; "
            f"spool rows left after replay: {left.rows}, rejected rows: {left.rejected_rows}",
        },
    )
    assert traffic.error is None, traffic.error
    assert not failed, [a.error for a in failed[:3]]
    assert phases["during"] > 0  # serving never waited for the database
    assert spooled > 0, "the outage never reached the writer: nothing was spooled"
    assert stored == served_ok, f"{stored} stored, {served_ok} served"


# --- 3. a Triton Python-backend stub process is killed ----------------------------------------


def _alive(process: psutil.Process) -> bool:
    """Running, not a zombie: tritonserver does not reap a stub it did not stop itself."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_killed_backend_stub_loses_no_request_and_the_server_answers_again(
    served: Served, tmp_path: Path
) -> None:
    """SIGKILL a preprocessor stub while requests are in flight: each request is answered or
    fails with a reason (the client retries what the server never ran), none vanishes, every
    answer is stored, the watchdog brings new instances, and afterwards every request is
    answered at the first attempt."""
    model = "preprocessor"
    prefix = str(tmp_path / "stub") + "/"
    clips = _own_copies(served.clean, tmp_path / "stub")
    rounds = 4 if FULL else 2  # clip rounds of traffic after each kill
    kills = 3 if FULL else 1
    self_wait = 30.0  # seconds given to the watchdog to bring the instance back
    notes: list[str] = []
    recovered_by_itself, reported_unready = True, False
    watchdog_log = watchdog_log_path(served.log_path)
    with Traffic(served, clips, concurrency=4) as traffic:
        assert traffic.wait_answered(len(clips)), traffic.error
        serving = {p.pid for p in served.stubs(model)}  # the instances that take requests
        for kill in range(1, kills + 1):
            before = [p for p in served.stubs(model) if p.pid in serving]
            assert before, f"no live {STUB_NAME} process of {model} under tritonserver"
            victim = before[0]
            known = {p.pid for p in served.stubs(model)}  # every stub of the model before it
            victim.send_signal(signal.SIGKILL)
            assert wait_until(lambda v=victim: not _alive(v), timeout=30)
            traffic.wait_answered(rounds * len(clips), timeout=180)
            came_back = wait_until(
                lambda k=known: len({p.pid for p in served.stubs(model)} - k) > 0,
                timeout=self_wait,
                every=1.0,
            )
            unready = not model_ready(served.ports.http_url, model)
            recovered_by_itself &= came_back
            reported_unready |= unready
            note = f"kill {kill}: stub {victim.pid}, one of {len(before)}"
            if not came_back:
                notes.append(f"{note}: no new instance within {self_wait:.0f} s")
                break
            # new stubs appear when the load starts; the swap is done when the watchdog's
            # reload call returns (it logs it), not before
            swapped = wait_until(
                lambda n=kill: watchdog_log.read_text().count(RESTART_DONE) >= n, timeout=120
            )
            assert swapped, f"{note}: the watchdog's reload of {model} did not finish"
            # Triton never finishes unloading a version whose stub died with a request in
            # flight: that version's healthy stubs idle until the server stops
            lingering = len({p.pid for p in served.stubs(model)} & known)
            notes.append(
                f"{note}: the watchdog reloaded {model}"
                + (f"; idle stubs of old versions: {lingering}" if lingering else "")
            )
            serving = {p.pid for p in served.stubs(model)} - known
            traffic.wait_answered(len(clips), timeout=180)
    sent, answers = traffic.sent, list(traffic.answers)
    answered = sum(a.ok for a in answers)
    failed = [a for a in answers if not a.ok]
    retried = sum(a.attempts > 1 for a in answers)
    after = predict(clips, served.client(), concurrency=2)
    ready_after = is_ready(served.ports.http_url) and model_ready(served.ports.http_url, model)
    wait_until(lambda: served.stored(prefix) >= answered + len(after), timeout=90, every=1.0)
    stored = served.stored(prefix)
    served_total = answered + sum(a.ok for a in after)
    reasons = dict(Counter(a.reason for a in failed))
    messages = sorted({a.error for a in failed})[:3]
    record_reliability(
        "faults",
        "triton_stub_killed",
        {
            "fault": f"SIGKILL of a {model} Python-backend stub under client traffic "
            f"({kills} kill{'s' if kills > 1 else ''})",
            "injected": kills,
            "survived": recovered_by_itself
            and len(answers) == sent
            and all(a.error and a.reason for a in failed)
            and all(a.ok and a.attempts == 1 for a in after)
            and stored == served_total,
            "rows_lost": (sent - len(answers)) + (served_total - stored),
            "served": served_total,
            "stored": stored,
            "detail": f"{sent} requests: {answered} answered ({retried} after retries), "
            f"{len(failed)} failed {reasons} {messages}; recovered by itself: "
            f"{recovered_by_itself}; reported unready: {reported_unready}; "
            + "; ".join(notes)
            + f"; afterwards {sum(a.ok for a in after)}/{len(after)} answered at the first "
            f"attempt: {all(a.attempts == 1 for a in after)}; server ready: {ready_after}",
        },
    )
    assert traffic.error is None, traffic.error
    assert recovered_by_itself, notes
    assert len(answers) == sent, f"{sent - len(answers)} requests have no outcome"
    assert all(a.error and a.reason for a in failed), failed[:3]
    assert all(a.ok for a in after), [a.error for a in after if not a.ok][:3]
    assert all(a.attempts == 1 for a in after), "a dead instance is still taking requests"
    assert ready_after
    assert stored == served_total, f"{stored} stored, {served_total} served"


# --- 4. two Triton replicas on one repository -------------------------------------------------


def _loaded_versions(ports: TritonPorts, model: str) -> set[str]:
    return {
        str(entry.get("version"))
        for entry in repository_index(ports.http_url)
        if entry.get("name") == model and entry.get("state") == "READY"
    }


def test_a_publication_one_replica_refuses_leaves_both_on_the_version_before(
    published_ensemble: Any, tmp_path: Path
) -> None:
    """Two tritonservers on one repository; the second cannot load the new version (its drift
    folder for it cannot be made: a file is in the way, so its predictor fails to initialize).
    The publication fails naming it, the repository is pinned back, both replicas serve the
    version before, and clients over both get every answer. (A replica killed under traffic
    is the e2e test's, on the stack's own replicas.)"""
    from genreops.serving.publish import PublishError, publish_registered, read_history
    from genreops.training.tracking import TrackingTarget

    repository = tmp_path / "repository"
    shutil.copytree(published_ensemble.repository, repository)  # its publications stay here
    clips = _own_copies(published_ensemble.clean, tmp_path / "replicas")
    before = int(read_history(repository)["current"])
    blocker = tmp_path / "b" / "serving" / "drift" / f"v{before + 1}"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("in the way")
    registry = Settings(  # the session's registry, where the published pair came from
        _env_file=None,  # type: ignore[call-arg]
        home=published_ensemble.home,
        use_stack_env=False,
    )
    with contextlib.ExitStack() as servers:
        a, b = (
            servers.enter_context(running_ensemble(repository, tmp_path / home))[1]
            for home in ("a", "b")  # drift state and store of their own
        )
        started = time.monotonic()
        with pytest.raises(PublishError) as refused:
            publish_registered(
                TrackingTarget.from_settings(registry), repository,
                model_name=registry.model_name,
                options=replace(serving_options(), drift_window=31),  # a new version
                server_url=f"{a.http_url},{b.http_url}",
            )  # fmt: skip
        seconds = time.monotonic() - started
        loaded = {r.http_url: _loaded_versions(r, "predictor") for r in (a, b)}
        current = read_history(repository)["current"]
        answers = predict(clips, EnsembleClient(f"{a.grpc_url},{b.grpc_url}"), concurrency=2)
    message = str(refused.value)
    record_reliability(
        "faults",
        "triton_replica_refuses_a_version",
        {
            "fault": "one of two Triton replicas cannot load a new version (a file where its "
            "drift folder for that version goes)",
            "injected": 1,
            "survived": current == before
            and all(v == {str(before)} for v in loaded.values())
            and all(answer.ok for answer in answers),
            "detail": f"publish failed in {seconds:.0f} s: {message[:300]}; repository pinned "
            f"at {current} (was {before}); predictor versions loaded {loaded}; "
            f"{sum(x.ok for x in answers)}/{len(answers)} answered afterwards over both",
        },
    )
    assert b.http_url in message, message
    assert f"every replica rolled back to version {before}" in message, message
    assert current == before
    assert loaded == {a.http_url: {str(before)}, b.http_url: {str(before)}}
    assert all(answer.ok for answer in answers), [x.error for x in answers if not x.ok][:3]


# --- extraction corpora -----------------------------------------------------------------------

CLIP_SECONDS = 6.0  # short clips: extraction cost, not coverage, is what these tests vary
CHUNK_SIZE = 2


def _corpus(root: Path, per_genre: int, seed: int) -> int:
    """A labeled synthetic corpus (10 genres); returns the number of clips."""
    return render_labeled_corpus(root, per_genre, CLIP_SECONDS, seed, workers=2)


def _run_extraction(runner: Any, input_url: str, output_url: str) -> Any:
    from genreops.flows.extract import extract_features

    flow = extract_features.with_options(task_runner=runner)
    return flow(
        input_url=input_url,
        output_url=output_url,
        chunk_size=CHUNK_SIZE,
        window_seconds=CLIP_SECONDS,
        max_failed_share=0.0,  # a clip lost to the fault must fail the run, not be skipped
    )


@pytest.fixture
def extraction_settings(monkeypatch: pytest.MonkeyPatch, s3_server: Any) -> Iterator[None]:
    """The flow reads its S3 endpoint and clip limits from settings (environment)."""
    config = s3_server.config
    monkeypatch.setenv("GENREOPS_S3_ENDPOINT_URL", str(config.endpoint_url))
    monkeypatch.setenv("GENREOPS_S3_ACCESS_KEY_ID", str(config.access_key_id))
    monkeypatch.setenv("GENREOPS_S3_SECRET_ACCESS_KEY", str(config.secret_access_key))
    monkeypatch.setenv("GENREOPS_MIN_SECONDS", "5")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


# --- 2. the S3 server stops during extraction -------------------------------------------------


@pytest.mark.usefixtures("prefect_harness", "extraction_settings")
def test_s3_stop_during_extraction_is_retried_and_resumed_without_redoing_chunks(
    s3_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stop the S3 server once some chunks are written. Fast mode restarts it as soon as a
    chunk task has failed on it (Prefect retries the task); full mode keeps it down past the
    task's retries (the run fails) and restarts it. Either way a second run finishes the
    table and reuses every chunk written before the stop, untouched."""
    from prefect.task_runners import ThreadPoolTaskRunner

    from genreops.data import extraction
    from genreops.data.storage import ensure_bucket, s3_client, upload_dir

    config = s3_server.config
    n_clips = _corpus(tmp_path / "corpus", per_genre=6 if FULL else 2, seed=11)
    n_chunks = -(-n_clips // CHUNK_SIZE)
    run = uuid.uuid4().hex[:10]
    input_url, output_url = f"s3://faults-raw/{run}", f"s3://faults-features/{run}"
    ensure_bucket(input_url, s3=config)
    ensure_bucket(output_url, s3=config)
    upload_dir(tmp_path / "corpus", input_url, s3=config)
    stop_after = max(2, n_chunks // 4)  # chunks written before the server goes away
    # full: down longer than a chunk task's four attempts (2 + 5 + 15 s apart, each ending
    # after botocore's own retries), so the run fails and the second run must resume;
    # fast: down until a task attempt has failed on it, and at least a few seconds
    hold = 90.0 if FULL else 5.0

    attempts: Counter[str] = Counter()
    failures: list[str] = []
    real = extraction.extract_or_reuse_chunk

    def observed(chunk: Any, options: Any, out: str, *, s3: Any = None) -> Any:
        """Counts each task attempt; the real function does the work unchanged."""
        attempts[chunk.chunk_id] += 1
        try:
            return real(chunk, options, out, s3=s3)
        except Exception as error:
            failures.append(f"{chunk.chunk_id}: {type(error).__name__}: {error}"[:300])
            raise

    monkeypatch.setattr(extraction, "extract_or_reuse_chunk", observed)

    def chunk_objects() -> dict[str, tuple[str, Any]]:
        listed = s3_client(config).list_objects_v2(
            Bucket="faults-features", Prefix=f"{run}/{extraction.CHUNKS_DIR}/"
        )
        return {o["Key"]: (o["ETag"], o["LastModified"]) for o in listed.get("Contents", [])}

    before_stop: dict[str, tuple[str, Any]] = {}
    timings: dict[str, float] = {}

    def fault() -> None:
        wait_until(lambda: len(chunk_objects()) >= stop_after, timeout=600, every=0.2)
        before_stop.update(chunk_objects())
        s3_server.stop()
        timings["stopped"] = time.monotonic()
        try:
            time.sleep(hold)
            wait_until(lambda: bool(failures), timeout=90, every=0.2)
        finally:
            s3_server.start()
            timings["down"] = time.monotonic() - timings["stopped"]

    injector = threading.Thread(target=fault, name="s3-fault", daemon=True)
    injector.start()
    runner = ThreadPoolTaskRunner(max_workers=2)
    first_error: BaseException | None = None
    try:
        first = _run_extraction(runner, input_url, output_url)
    except Exception as error:  # full mode: the retries run out while S3 is away
        first, first_error = None, error
    injector.join(timeout=300)
    assert not injector.is_alive() and s3_server.process is not None
    first_attempts = dict(attempts)
    retried = sum(n > 1 for n in first_attempts.values())
    attempts.clear()
    second = _run_extraction(ThreadPoolTaskRunner(max_workers=2), input_url, output_url)
    recomputed = sum(attempts.values()) - second.reused_chunks
    after = chunk_objects()
    untouched = sum(after.get(key) == value for key, value in before_stop.items())
    table = pd.read_parquet(io.BytesIO(read_bytes(second.table_url, s3=config)))
    first_outcome = (
        f"finished ({first.n_extracted} rows, {first.reused_chunks} chunks reused)"
        if first is not None
        else f"failed: {str(first_error).splitlines()[0][:200]}"
    )
    record_reliability(
        "faults",
        "s3_stop_during_extraction",
        {
            "fault": "embedded S3 server stopped during the extraction flow after "
            f"{len(before_stop)} of {n_chunks} chunks were written, restarted "
            f"{timings.get('down', 0):.1f} s later",
            "injected": 1,
            "survived": len(table) == n_clips
            and untouched == len(before_stop)
            and (first is not None or second.reused_chunks >= len(before_stop)),
            "rows_lost": n_clips - len(table),
            "served": None,
            "stored": None,
            "detail": f"{len(failures)} chunk attempts failed on the missing server "
            f"(e.g. {failures[0] if failures else '-'}); Prefect retried {retried} chunk "
            f"tasks; first run {first_outcome}; second run reused {second.reused_chunks} of "
            f"{n_chunks} chunks and extracted {recomputed}; {untouched} of {len(before_stop)} "
            "chunk objects written before the stop unchanged (ETag, LastModified)",
        },
    )
    assert before_stop, "the server was never stopped"
    assert failures, "the outage never reached a chunk task"
    if first is None:
        assert isinstance(first_error, Exception)
    else:
        assert retried >= 1 and first.n_extracted == n_clips
    assert len(table) == second.n_extracted == n_clips
    assert sorted(table["clip_id"]) == sorted(
        str(p.relative_to(tmp_path / "corpus")) for p in (tmp_path / "corpus").glob("*/*.wav")
    )
    assert untouched == len(before_stop), "a chunk finished before the stop was written again"
    assert second.reused_chunks >= len(before_stop)
    if first is not None:
        assert second.reused_chunks == n_chunks and recomputed == 0


# --- 5. a Dask worker dies mid-extraction -----------------------------------------------------


def _dask_workers(me: psutil.Process, known: set[int]) -> list[psutil.Process]:
    """Worker processes the local cluster spawned (multiprocessing spawn, not the tracker)."""
    found = []
    for child in me.children(recursive=True):
        if child.pid in known:
            continue
        with contextlib.suppress(psutil.Error):
            line = " ".join(child.cmdline())
            if "spawn_main" in line and _alive(child):
                found.append(child)
    return found


@pytest.mark.usefixtures("prefect_harness", "extraction_settings")
def test_dask_worker_killed_mid_extraction_the_flow_finishes(tmp_path: Path) -> None:
    """SIGKILL a worker process of the flow's local Dask cluster (processes=True) while it
    extracts: the nanny starts a new one, the scheduler runs the lost task again, and the
    flow writes every row."""
    from genreops.flows.extract import dask_runner

    n_clips = _corpus(tmp_path / "corpus", per_genre=6 if FULL else 2, seed=12)
    n_chunks = -(-n_clips // CHUNK_SIZE)
    output = tmp_path / "features"
    kills = 2 if FULL else 1
    me = psutil.Process()
    known = {p.pid for p in me.children(recursive=True)}
    killed: list[str] = []

    def chunks_done() -> int:
        return len(list((output / "chunks").glob("*.parquet")))

    def fault() -> None:
        for kill in range(1, kills + 1):
            target = kill * max(1, n_chunks // (kills + 2))
            if not wait_until(
                lambda t=target: chunks_done() >= t and len(_dask_workers(me, known)) >= 2,
                timeout=600,
                every=0.2,
            ):
                return
            victim = _dask_workers(me, known)[0]
            known.add(victim.pid)  # its replacement is a new process
            victim.send_signal(signal.SIGKILL)
            done = chunks_done()
            replaced = wait_until(lambda: len(_dask_workers(me, known)) >= 2, timeout=60)
            killed.append(
                f"worker {victim.pid} after {done} of {n_chunks} chunks "
                f"({'replaced by the nanny' if replaced else 'not replaced within 60 s'})"
            )

    injector = threading.Thread(target=fault, name="dask-fault", daemon=True)
    injector.start()
    error: BaseException | None = None
    summary = None
    try:
        summary = _run_extraction(dask_runner(workers=2), str(tmp_path / "corpus"), str(output))
    except Exception as caught:
        error = caught
    injector.join(timeout=60)
    table = pd.read_parquet(output / "features.parquet") if summary is not None else None
    rows = 0 if table is None else len(table)
    record_reliability(
        "faults",
        "dask_worker_killed",
        {
            "fault": f"SIGKILL of {len(killed)} Dask worker process(es) of the extraction "
            "flow's local cluster mid-run",
            "injected": len(killed),
            "survived": summary is not None and rows == n_clips,
            "rows_lost": n_clips - rows,
            "served": None,
            "stored": None,
            "detail": f"{n_clips} clips in {n_chunks} chunks; killed {killed}; "
            + (
                f"flow finished with {rows} rows"
                if error is None
                else f"flow failed: {str(error).splitlines()[0][:300]}"
            ),
        },
    )
    assert error is None, error
    assert len(killed) == kills, f"no worker to kill: {killed}"
    assert summary is not None and summary.n_extracted == rows == n_clips


# --- 4. MLflow stops during register-best -----------------------------------------------------


@dataclass
class TrackingServer:
    """A real ``mlflow server`` (SQLite store, local artifacts) that the test may restart."""

    base: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        from genreops.platform.mlflow_server import server_url

        return server_url(port=self.port)

    def start(self) -> None:
        from genreops.platform.mlflow_server import start_mlflow_server

        self.process = start_mlflow_server(
            f"sqlite:///{self.base / 'mlflow.db'}",
            str(self.base / "artifacts"),
            port=self.port,
            log_path=self.base / "mlflow.log",
            timeout=300,
        )

    def stop(self) -> None:
        from genreops.platform.mlflow_server import stop_mlflow_server

        if self.process is not None:
            stop_mlflow_server(self.process)
            self.process = None


@pytest.fixture
def tracking_server(tmp_path: Path) -> Iterator[TrackingServer]:
    server = TrackingServer(tmp_path / "mlflow-server", free_port())
    server.base.mkdir()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _register_best_with_fault(
    server: TrackingServer, scenario: str, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """register-best with the server stopped just before or just after the first alias
    write (and restarted in the background); returns the writes tried and the error."""
    import mlflow
    from genreops.flows.registry import register_best

    from genreops.core.errors import RegistryError

    writes: list[str] = []
    restarts: list[threading.Thread] = []
    real = mlflow.MlflowClient.set_registered_model_alias

    def stop_and_restart() -> None:
        server.stop()
        thread = threading.Thread(target=server.start, name="mlflow-restart")
        thread.start()  # the server comes back while register-best is failing
        restarts.append(thread)

    def hooked(self: Any, model: str, alias: str, version: Any) -> None:
        writes.append(f"{alias}->{version}")
        if len(writes) == 1 and scenario.startswith("before"):
            stop_and_restart()
        real(self, model, alias, version)
        if len(writes) == 1 and scenario.startswith("after"):
            stop_and_restart()

    message = ""
    with monkeypatch.context() as patch:
        patch.setattr(mlflow.MlflowClient, "set_registered_model_alias", hooked)
        try:
            register_best(top=2, restore_timeout_seconds=300)
        except RegistryError as error:
            message = str(error)
    for thread in restarts:
        thread.join(timeout=300)
    assert server.process is not None, "the tracking server did not come back"
    return {"scenario": scenario, "message": message, "writes": writes}


@pytest.mark.usefixtures("prefect_harness")
def test_mlflow_stop_during_register_best_fails_clearly_and_leaves_no_half_set_aliases(
    tracking_server: TrackingServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two registered versions whose aliases register-best wants to swap. The tracking
    server is stopped right after the first alias write (full mode also: right before it)
    and restarted; register-best must fail naming the server and the step, and the aliases
    must afterwards be either both the old ones or both the new ones."""
    import mlflow
    from genreops.flows.registry import register_best
    from genreops.flows.train import train_model

    from helpers import synthetic_feature_frame

    monkeypatch.setenv("GENREOPS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GENREOPS_MLFLOW_TRACKING_URI", tracking_server.url)
    # MLflow's own client retries a request for ~4 minutes; one quick retry keeps this short
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    get_settings.cache_clear()
    name = get_settings().model_name
    table = tmp_path / "table" / "features.parquet"
    table.parent.mkdir()
    synthetic_feature_frame(per_genre=9, seed=2).to_parquet(table, index=False)
    train_model(features_url=str(table), families=["knn", "random_forest"], trials=2)
    first = register_best(top=2)
    client = mlflow.MlflowClient(tracking_uri=tracking_server.url, registry_uri=tracking_server.url)

    def aliases() -> dict[str, str]:
        found = client.get_registered_model(name).aliases or {}
        return {alias: str(version) for alias, version in found.items()}

    new = {a.alias or "": a.version for a in first.assignments}
    old = {"champion": new["challenger"], "challenger": new["champion"]}  # swapped by hand
    scenarios = ["after the first alias write", *(["before the first alias write"] if FULL else [])]
    outcomes = []
    for scenario in scenarios:
        for alias, version in old.items():
            client.set_registered_model_alias(name, alias, version)
        assert aliases() == old
        outcome = _register_best_with_fault(tracking_server, scenario, monkeypatch)
        state = aliases()
        outcomes.append({**outcome, "aliases": state, "consistent": state in (old, new)})
    final = register_best(top=2)
    final_aliases = aliases()
    half_set = sum(not o["consistent"] for o in outcomes)
    clear = all(
        o["message"] and tracking_server.url in o["message"] and "alias" in o["message"]
        for o in outcomes
    )
    record_reliability(
        "faults",
        "mlflow_stop_during_register",
        {
            "fault": "MLflow tracking server stopped during register-best ("
            + "; ".join(scenarios)
            + "), restarted while it failed",
            "injected": len(scenarios),
            "survived": half_set == 0 and clear and final_aliases == new,
            "rows_lost": half_set,  # alias pairs left half-set
            "served": None,
            "stored": None,
            "detail": " | ".join(
                f"{o['scenario']}: writes {o['writes']}, aliases after the restart "
                f"{o['aliases']} (old {old}, new {new}); error: {o['message'][:400]}"
                for o in outcomes
            )
            + f" | rerun once the server is back: {final.changes}",
        },
    )
    for outcome in outcomes:
        assert outcome["message"], f"{outcome['scenario']}: register-best did not fail"
        assert tracking_server.url in outcome["message"] and "alias" in outcome["message"]
        assert outcome["consistent"], f"{outcome['scenario']}: half-set {outcome['aliases']}"
    assert final_aliases == new
