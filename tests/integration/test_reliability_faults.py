"""Faults injected for real while the platform works (issue 6, part 2).

One test per fault; each records its figures (tests/helpers.py ``record_reliability``) before
asserting, so a failing run still reports what happened:

* database_restart: the monitoring store on a private PostgreSQL 15 cluster that the test
  stops (``pg_ctl stop -m fast``) and restarts during client traffic; every served answer
  must end up stored (spool, then replay).
* triton_stub_killed: SIGKILL of a Python-backend stub process of the running ensemble;
  every request is answered or fails with a reason, the watchdog started with the server
  (genreops.serving.triton.watchdog) reloads the model, and the server answers again.

The pipeline stages' faults, which need no published ensemble, are in
test_reliability_pipeline_faults.py; a Triton replica killed, or refusing a version, is in the
e2e test (tests/e2e/test_platform.py), on the stack's two replicas.

Fast mode (``make test``) keeps corpora and traffic small; ``GENREOPS_RELIABILITY=full``
sends more traffic, extracts more clips and adds the harder variants.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from genreops.monitoring.store import spool_status
from genreops.serving.client import Answer, EnsembleClient, predict
from genreops.serving.triton.control import is_ready, model_ready
from genreops.serving.triton.install import STUB_NAME
from genreops.serving.triton.server import TritonPorts, watchdog_log_path
from genreops.serving.triton.watchdog import RESTART_DONE
from helpers import (
    RELIABILITY_FULL,
    alive,
    free_port,
    record_reliability,
    running_ensemble,
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
            assert wait_until(lambda v=victim: not alive(v), timeout=30)
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
