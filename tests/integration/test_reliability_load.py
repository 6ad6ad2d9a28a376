"""Load on the published genre ensemble (issue 6, part 3): a soak near the measured capacity
and an overload step at twice capacity, on the real tritonserver over gRPC.

The server's capacity on this machine is measured first (closed loop, a few clients), so the
test adapts to a busy machine. The soak then sends an open-loop steady rate near capacity,
cycling every clean clip (the same few clips repeated would be a drifted window), and must
answer every request with flat memory. The overload step sends twice capacity: every request
is answered or shed with a clear error (the preprocessor's bounded queue), the server stays
live and ready, and a low rate afterwards is answered with soak-like latency again.

Figures go to test-output/reliability/load/{soak,overload}.json (``make reliability`` runs the
issue's size: a 5-minute soak, a 60 s overload step).
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import psutil
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from genreops.serving.triton.control import is_ready, model_ready
from genreops.serving.triton.server import TritonPorts
from helpers import RELIABILITY_FULL, record_reliability, running_ensemble

if TYPE_CHECKING:
    import subprocess
    from typing import Self

    from conftest import PublishedEnsemble

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

ENSEMBLE = "genre_ensemble"
OUTPUTS = ("GENRE", "PROBABILITIES", "MODEL", "DRIFT")
# fast (`make test`): ~1 min of load after the server start; full: the size (~10 min)
CAPACITY_SECONDS = 20.0 if RELIABILITY_FULL else 8.0
CAPACITY_CLIENTS = 4
SOAK_SECONDS = 300.0 if RELIABILITY_FULL else 20.0
SOAK_WARMUP_SECONDS = 30.0 if RELIABILITY_FULL else 5.0  # at the soak rate, before "start"
SOAK_SHARE = 0.75 if RELIABILITY_FULL else 0.7  # of capacity (fast: margin for a busy machine)
OVERLOAD_SECONDS = 60.0 if RELIABILITY_FULL else 12.0
OVERLOAD_FACTOR = 2.0
RECOVERY_SECONDS = 30.0 if RELIABILITY_FULL else 8.0
RECOVERY_SHARE = 0.25
# Memory may settle during a 20 s run (allocator arenas, caches); 5 min must stay flat.
MEMORY_GROWTH_LIMIT_PCT = 5.0 if RELIABILITY_FULL else 15.0
CLIENT_TIMEOUT = 120.0  # s: only a request the server never answers gets near it


# --- the server -------------------------------------------------------------------------------


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    ports: TritonPorts
    log_path: Path
    clips: list[str]
    inputs: list[list[grpcclient.InferInput]]  # one prepared request per clean clip
    figures: dict[str, Any] = field(default_factory=dict)  # shared between the tests

    def alive(self) -> bool:
        return self.process.poll() is None

    def ready(self) -> bool:
        """Live, ready, and the ensemble ready (readiness is not strict: see start_triton)."""
        url = self.ports.http_url
        return self.alive() and is_ready(url, timeout=10.0) and model_ready(url, ENSEMBLE, 10.0)

    def memory_mb(self) -> float:
        """RSS of tritonserver and every process below it (model stubs, the drift worker)."""
        try:
            root = psutil.Process(self.process.pid)
            processes = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return float("nan")
        total = 0
        for process in processes:
            try:
                total += process.memory_info().rss
            except psutil.NoSuchProcess:  # a stub that just exited
                continue
        return total / 2**20


def _request(path: str) -> list[grpcclient.InferInput]:
    """AUDIO [1,1] BYTES (the encoded file) + CLIP_ID, built once and reused read-only."""
    audio = grpcclient.InferInput("AUDIO", [1, 1], "BYTES")
    audio.set_data_from_numpy(np.array([[Path(path).read_bytes()]], dtype=np.object_))
    clip = grpcclient.InferInput("CLIP_ID", [1, 1], "BYTES")
    clip.set_data_from_numpy(np.array([[Path(path).name.encode()]], dtype=np.object_))
    return [audio, clip]


@pytest.fixture(scope="module")
def server(
    published_ensemble: PublishedEnsemble, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The published repository (product defaults, incl. the bounded queue) on a real
    tritonserver with this module's own home (drift state, monitoring store)."""
    home = tmp_path_factory.mktemp("load")
    # a busy shared machine has needed minutes to load 7 models
    with running_ensemble(published_ensemble.repository, home, timeout=600) as (process, ports):
        clips = published_ensemble.clean
        yield Server(process, ports, home / "triton.log", clips, [_request(c) for c in clips])


# --- load generators ------------------------------------------------------------------------


@dataclass
class Outcome:
    sent: float  # time.monotonic() when sent
    latency: float = math.nan  # s, client side, until the answer or the error came back
    kind: str = "pending"  # ok | shed | failed
    error: str = ""
    drift: bool = False


def _classify(error: InferenceServerException) -> str:
    """Shed: Triton refused the request for load (queue full or queue timeout, UNAVAILABLE)."""
    message = (error.message() or "").lower()
    if "unavailable" in str(error.status()).lower() and (
        "queue" in message or "timeout" in message
    ):
        return "shed"
    return "failed"


def _infer_sync(client: grpcclient.InferenceServerClient, inputs: list[Any]) -> Outcome:
    outcome = Outcome(sent=time.monotonic())
    try:
        result = client.infer(
            ENSEMBLE,
            inputs,
            outputs=[grpcclient.InferRequestedOutput(n) for n in OUTPUTS],
            client_timeout=CLIENT_TIMEOUT,
        )
    except InferenceServerException as error:
        outcome.kind, outcome.error = _classify(error), str(error)
    else:
        outcome.kind = "ok"
        outcome.drift = bool(result.as_numpy("DRIFT")[0][0])
    outcome.latency = time.monotonic() - outcome.sent
    return outcome


def closed_loop(server: Server, clients: int, seconds: float) -> list[Outcome]:
    """``clients`` threads, each sending its next clip as soon as the last was answered."""
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker(offset: int) -> None:
        client = grpcclient.InferenceServerClient(server.ports.grpc_url)
        i = offset
        while time.monotonic() < deadline:
            outcome = _infer_sync(client, server.inputs[i % len(server.inputs)])
            with lock:
                outcomes.append(outcome)
            i += clients
        client.close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def open_loop(server: Server, rate: float, seconds: float, *, start_at: int = 0) -> list[Outcome]:
    """A steady ``rate`` (requests/s) for ``seconds``, whatever the server does: requests are
    sent on schedule (asynchronously), never held back by slow answers; then waits for all."""
    client = grpcclient.InferenceServerClient(server.ports.grpc_url)
    count = max(1, round(rate * seconds))
    outcomes = [Outcome(sent=math.nan) for _ in range(count)]
    done = threading.Semaphore(0)
    outputs = [grpcclient.InferRequestedOutput(n) for n in OUTPUTS]

    def finished(outcome: Outcome, result: Any, error: InferenceServerException | None) -> None:
        outcome.latency = time.monotonic() - outcome.sent
        if error is not None:
            outcome.kind, outcome.error = _classify(error), str(error)
        else:
            outcome.kind = "ok"
            outcome.drift = bool(result.as_numpy("DRIFT")[0][0])
        done.release()

    began = time.monotonic()
    for i, outcome in enumerate(outcomes):
        pause = began + i / rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        outcome.sent = time.monotonic()
        try:
            client.async_infer(
                ENSEMBLE,
                server.inputs[(start_at + i) % len(server.inputs)],
                callback=lambda result, error, o=outcome: finished(o, result, error),
                outputs=outputs,
                client_timeout=CLIENT_TIMEOUT,
            )
        except InferenceServerException as error:  # could not even be sent
            finished(outcome, None, error)
    for _ in outcomes:
        if not done.acquire(timeout=CLIENT_TIMEOUT + 30):
            break
    client.close()
    for outcome in outcomes:
        if outcome.kind == "pending":
            outcome.kind, outcome.error = "failed", "no answer and no error from the client"
    return outcomes


class _EverySecond:
    """Calls ``sample`` once a second in a background thread between enter and exit."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.began = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self.began = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(1.0):
                return

    def sample(self) -> None:
        raise NotImplementedError


class MemorySampler(_EverySecond):
    """RSS of the server's process tree once a second, with the seconds since entering."""

    def __init__(self, server: Server) -> None:
        super().__init__(server)
        self.samples: list[tuple[float, float]] = []

    def sample(self) -> None:
        self.samples.append((time.monotonic() - self.began, self.server.memory_mb()))

    def until(self, seconds: float) -> float:
        """The last sample at or before ``seconds``."""
        earlier = [mb for t, mb in self.samples if t <= seconds]
        return earlier[-1] if earlier else self.samples[0][1]


class ReadinessWatch(_EverySecond):
    """Asks the server whether it is live and ready every second while load runs."""

    def __init__(self, server: Server) -> None:
        super().__init__(server)
        self.checks: list[bool] = []

    def sample(self) -> None:
        self.checks.append(self.server.ready())


def _percentile_ms(outcomes: list[Outcome], q: float) -> float:
    latencies = [o.latency for o in outcomes if o.kind == "ok"]
    if not latencies:
        return math.nan
    return round(float(np.percentile(latencies, q)) * 1000, 1)


def _counts(outcomes: list[Outcome]) -> Counter[str]:
    return Counter(o.kind for o in outcomes)


def _errors(outcomes: list[Outcome], kind: str, limit: int = 3) -> list[str]:
    return [o.error for o in outcomes if o.kind == kind][:limit]


def _timeline(outcomes: list[Outcome], slices: int = 10) -> list[dict[str, Any]]:
    """Per slice of the send time: requests, answers, sheds and median latency (diagnosis)."""
    began = min(o.sent for o in outcomes)
    span = max(o.sent for o in outcomes) - began or 1.0
    parts: list[list[Outcome]] = [[] for _ in range(slices)]
    for o in outcomes:
        parts[min(slices - 1, int((o.sent - began) / span * slices))].append(o)
    rows = []
    for k, part in enumerate(parts):
        counts = _counts(part)
        rows.append(
            {
                "t_s": round(k * span / slices, 1),
                "sent": len(part),
                "ok": counts["ok"],
                "shed": counts["shed"],
                "failed": counts["failed"],
                "p50_ms": _percentile_ms(part, 50),
            }
        )
    return rows


def _load_average() -> list[float]:
    """The machine's 1/5/15-minute load: other jobs share these cores (context for figures)."""
    return [round(x, 2) for x in os.getloadavg()]


def _growth_pct(start: float, end: float) -> float:
    return round((end - start) / start * 100, 2) if start > 0 else math.nan


@pytest.fixture(scope="module")
def capacity(server: Server) -> float:
    """Answers per second the server sustains here, now (closed loop, a few clients)."""
    warm = closed_loop(server, CAPACITY_CLIENTS, 3.0)  # every stub warm, caches filled
    assert all(o.kind == "ok" for o in warm), _errors(warm, "failed") + _errors(warm, "shed")
    rps, outcomes = measure_capacity(server)
    server.figures["capacity"] = {
        "clients": CAPACITY_CLIENTS,
        "seconds": CAPACITY_SECONDS,
        "answered": sum(o.kind == "ok" for o in outcomes),
        "failed": sum(o.kind != "ok" for o in outcomes),
        "p50_ms": _percentile_ms(outcomes, 50),
    }
    assert all(o.kind == "ok" for o in outcomes), _errors(outcomes, "failed")
    return rps


def measure_capacity(server: Server) -> tuple[float, list[Outcome]]:
    """Answers per second of a closed loop of a few clients, and their outcomes."""
    began = time.monotonic()
    outcomes = closed_loop(server, CAPACITY_CLIENTS, CAPACITY_SECONDS)
    return sum(o.kind == "ok" for o in outcomes) / (time.monotonic() - began), outcomes


# --- the tests -------------------------------------------------------------------------------


def test_soak_near_capacity_answers_everything_with_flat_memory(
    server: Server, capacity: float
) -> None:
    rate = SOAK_SHARE * capacity
    # Memory is compared between two idle moments with the same traffic behind them: after a
    # warm-up at the soak's rate and after the soak, each once every request was answered (a
    # sample taken under load also counts the requests queued at that instant).
    warm = open_loop(server, rate, SOAK_WARMUP_SECONDS)
    start_mb = server.memory_mb()
    with MemorySampler(server) as memory:
        outcomes = open_loop(server, rate, SOAK_SECONDS, start_at=len(warm))
    end_mb = server.memory_mb()
    sent_for = max(o.sent for o in outcomes) - min(o.sent for o in outcomes)
    series = memory.samples[:: max(1, len(memory.samples) // 10)]
    counts = _counts(outcomes)
    p50 = _percentile_ms(outcomes, 50)
    server.figures["soak_p50_ms"] = p50
    # Other jobs share these cores: when requests failed, was the machine slower by then?
    capacity_after = None if counts["ok"] == len(outcomes) else measure_capacity(server)[0]
    record_reliability(
        "load",
        "soak",
        {
            "duration_s": round(sent_for, 1),
            "target_rate": round(rate, 2),
            "requests": len(outcomes),
            "failures": counts["failed"] + counts["shed"],
            "shed": counts["shed"],
            "p50_ms": p50,
            "p99_ms": _percentile_ms(outcomes, 99),
            "memory_start_mb": round(start_mb, 1),
            "memory_end_mb": round(end_mb, 1),
            "memory_growth_pct": _growth_pct(start_mb, end_mb),
            "recovered": None,
            "capacity_rps": round(capacity, 2),
            "max_ms": round(max(o.latency for o in outcomes) * 1000, 1),
            "clips_cycled": len(server.clips),
            "drift_answers": sum(o.drift for o in outcomes),
            "memory_peak_mb": round(max(mb for _, mb in memory.samples), 1),
            "memory_series_mb": [[round(t), round(mb, 1)] for t, mb in series],
            "warmup": {
                "seconds": SOAK_WARMUP_SECONDS,
                "requests": len(warm),
                "failures": len(warm) - _counts(warm)["ok"],
            },
            "capacity_run": server.figures.get("capacity"),
            "capacity_after_rps": None if capacity_after is None else round(capacity_after, 2),
            "errors": _errors(outcomes, "failed") + _errors(outcomes, "shed"),
            "timeline": _timeline(outcomes),
            "load_average": _load_average(),
        },
    )
    everything = warm + outcomes
    assert all(o.kind == "ok" for o in everything), _errors(everything, "failed") + _errors(
        everything, "shed"
    )
    assert server.ready()
    assert _growth_pct(start_mb, end_mb) < MEMORY_GROWTH_LIMIT_PCT, series


def test_overload_sheds_or_queues_stays_ready_and_recovers(server: Server, capacity: float) -> None:
    client = grpcclient.InferenceServerClient(server.ports.grpc_url)
    policy = client.get_model_config("preprocessor").config.dynamic_batching.default_queue_policy
    client.close()
    soak_p50 = server.figures.get("soak_p50_ms")
    if soak_p50 is None or math.isnan(soak_p50):  # the soak did not run: a short baseline
        soak_p50 = _percentile_ms(open_loop(server, SOAK_SHARE * capacity, 5.0), 50)
    rate = OVERLOAD_FACTOR * capacity
    with ReadinessWatch(server) as watch, MemorySampler(server) as memory:
        outcomes = open_loop(server, rate, OVERLOAD_SECONDS)
        drained = time.monotonic() - memory.began  # every request answered or refused
        low_rate = max(1.0, RECOVERY_SHARE * capacity)
        after = open_loop(server, low_rate, RECOVERY_SECONDS, start_at=len(outcomes))
    counts, after_counts = _counts(outcomes), _counts(after)
    after_p50 = _percentile_ms(after, 50)
    # back near the soak's latency: within twice its median (a quarter of its rate here)
    recovered = (
        after_counts["ok"] == len(after)
        and not math.isnan(after_p50)
        and after_p50 <= max(2 * soak_p50, soak_p50 + 250.0)
    )
    ready_after = server.ready()
    start_mb, end_mb = memory.samples[0][1], memory.until(drained)
    record_reliability(
        "load",
        "overload",
        {
            "duration_s": OVERLOAD_SECONDS,
            "target_rate": round(rate, 2),
            "requests": len(outcomes),
            "failures": counts["failed"],
            "shed": counts["shed"],
            "p50_ms": _percentile_ms(outcomes, 50),
            "p99_ms": _percentile_ms(outcomes, 99),
            "memory_start_mb": round(start_mb, 1),
            "memory_end_mb": round(end_mb, 1),
            "memory_growth_pct": _growth_pct(start_mb, end_mb),
            "recovered": recovered,
            "capacity_rps": round(capacity, 2),
            "answered": counts["ok"],
            "max_ms": round(max(o.latency for o in outcomes) * 1000, 1),
            "drained_after_s": round(drained, 1),
            "memory_peak_mb": round(max(mb for _, mb in memory.samples), 1),
            "queue_limit": policy.max_queue_size,
            "queue_timeout_s": policy.default_timeout_microseconds / 1e6,
            "ready_checks": len(watch.checks),
            "not_ready_checks": watch.checks.count(False),
            "ready_after": ready_after,
            "recovery": {
                "rate": round(low_rate, 2),
                "requests": len(after),
                "failures": len(after) - after_counts["ok"],
                "p50_ms": after_p50,
                "p99_ms": _percentile_ms(after, 99),
                "soak_p50_ms": soak_p50,
            },
            "shed_errors": sorted({o.error for o in outcomes if o.kind == "shed"})[:3],
            "errors": _errors(outcomes, "failed") + _errors(after, "failed"),
            "timeline": _timeline(outcomes),
            "load_average": _load_average(),
        },
    )
    # the product bounds its queue: overload is refused, not stored up without limit
    assert policy.max_queue_size > 0 or policy.default_timeout_microseconds > 0
    # every request answered or refused with a clear error; nothing lost, hung or crashed
    assert counts["failed"] == 0, _errors(outcomes, "failed")
    assert counts["ok"] + counts["shed"] == len(outcomes)
    assert server.alive() and ready_after
    assert watch.checks and all(watch.checks), f"{watch.checks.count(False)} not-ready checks"
    assert recovered, (after_counts, after_p50, soak_p50, _errors(after, "failed"))
    assert counts["ok"] > 0  # and it kept serving meanwhile
