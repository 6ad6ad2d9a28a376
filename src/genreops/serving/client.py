"""The batch-inference client of ``genre_ensemble``: files in, one answer or one error each.

Files are read here and sent as bytes (no shared filesystem with the server). Requests carry
``--batch-size`` files; when the server refuses a multi-file request (one bad file fails its
whole request), its files are resent one by one so each bad file fails alone. Requests the
server never ran are retried with backoff (inference is idempotent): connection failures, and
a model instance whose backend process has died; refusals of the input are not. Every answer
says how many attempts it took, and a failure keeps the server's last message.

Several Triton replicas on one repository: requests go to them in turn, and one the server
never ran is sent at once to another replica; a replica that failed so is passed over for
``REPLICA_REST_SECONDS`` (it may be restarting; until its models are loaded it answers "not
ready" or "unknown model", which sends the request elsewhere too).
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from genreops.core.errors import GenreopsError, ObjectTooLargeError
from genreops.data.audio import SUPPORTED_EXTENSIONS
from genreops.data.storage import S3Config, is_s3_url, list_objects, read_bytes

log = logging.getLogger(__name__)

ENSEMBLE = "genre_ensemble"
PROTOCOLS = ("grpc", "http")
ATTEMPTS = 4  # per request: the first try and up to three retries (0.5, 1, 2 s apart)
REPLICA_REST_SECONDS = 5.0  # a replica that failed a request is passed over this long


class ClientError(GenreopsError):
    """The server cannot be reached or the inputs cannot be listed."""


@dataclass
class Answer:
    """One input's outcome; ``error`` is empty when the server answered."""

    path: str
    genre: str = ""
    model: str = ""
    drift: bool | None = None
    probabilities: list[float] = field(default_factory=list)
    error: str = ""
    reason: str = ""
    expected: str = ""
    seconds: float = 0.0
    attempts: int = 0  # requests sent for this input (more than 1: retried)
    ood: bool | None = None  # the clip is out of the model's training distribution
    ood_score: float | None = None  # its distance to the training data / the OOD threshold

    @property
    def ok(self) -> bool:
        return not self.error


def list_inputs(paths: Sequence[str], *, s3: S3Config | None = None) -> list[str]:
    """Files as given; folders and s3:// prefixes expanded to the audio files inside them."""
    found: list[str] = []
    for path in paths:
        if is_s3_url(path) or Path(path).is_dir():
            items = list_objects(path, s3=s3)
            found += [
                i.url
                for i in items
                if PurePosixPath(i.relative).suffix.lower() in SUPPORTED_EXTENSIONS
            ]
        else:
            found.append(path)  # a missing file becomes that file's error, not the batch's
    return found


def expected_genre(path: str) -> str:
    """The GTZAN convention: the genre is the name of the folder holding the file."""
    return PurePosixPath(path.replace("\\", "/")).parent.name


def folder_labels(answers: Iterable[Answer]) -> list[tuple[str, str]]:
    """``(clip id, genre)`` of every input whose genre its folder says: labels to store."""
    return [(a.path, a.expected) for a in answers if a.expected]


def _retryable(error: BaseException) -> bool:
    """Worth sending again: the server never ran the request.

    That is a server that cannot be reached, and a model instance whose Python backend
    process has died (Triton refuses the request with "Stub process '<instance>' is not
    healthy" without running it; the model's other instances may answer). Errors about the
    input itself are final.
    """
    text = str(error).lower()
    if any(
        word in text
        for word in ("unavailable", "connection refused", "failed to connect", "reset by peer")
    ):
        return True
    return "stub process" in text and "not healthy" in text


def _not_on_this_replica(error: BaseException) -> bool:
    """The server runs but does not serve the ensemble now (loading it after a restart, or an
    unload): another replica may. Alone, that is a final error worth reporting as it is."""
    text = str(error).lower()
    return ENSEMBLE in text and any(
        word in text
        for word in ("not ready", "unknown model", "not found", "no available versions")
    )


def endpoints(urls: str | Sequence[str]) -> list[str]:
    """``host:port`` endpoints from one address, a comma-separated list, or a list of either;
    duplicates dropped, order kept."""
    parts = [urls] if isinstance(urls, str) else list(urls)
    split = (p.strip() for part in parts for p in part.split(","))
    found = list(dict.fromkeys(p for p in split if p))
    if not found:
        raise ClientError("no Triton address given")
    return found


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    log.warning(
        "inference attempt %d failed (%s); retrying", state.attempt_number, _error_text(error)
    )


class EnsembleClient:
    """A thread-safe wrapper over tritonclient for ``genre_ensemble`` on one or several
    replicas (``urls``: an address, a comma-separated list or a list; one client per thread
    and replica)."""

    def __init__(
        self, urls: str | Sequence[str], protocol: str = "grpc", timeout: float = 60.0
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ClientError(f"protocol must be one of {PROTOCOLS}, not {protocol!r}")
        self.urls = endpoints(urls)
        self.url = ",".join(self.urls)
        self.protocol, self.timeout = protocol, timeout
        self._local = threading.local()
        self._turn = itertools.count()
        self._resting: dict[str, float] = {}  # replica -> monotonic time it is tried again
        self._lock = threading.Lock()

    def _client(self, url: str) -> Any:
        clients: dict[str, Any] = self._local.__dict__.setdefault("clients", {})
        if url not in clients:
            if self.protocol == "grpc":
                import tritonclient.grpc as triton
            else:
                import tritonclient.http as triton
            clients[url] = triton.InferenceServerClient(url)
            self._local.module = triton
        return clients[url]

    def _pick(self) -> str:
        """The next replica in turn that is not resting; if all are, the one that rests least."""
        now = time.monotonic()
        with self._lock:
            start = next(self._turn)
            order = [self.urls[(start + i) % len(self.urls)] for i in range(len(self.urls))]
            awake = [url for url in order if self._resting.get(url, 0.0) <= now]
            return awake[0] if awake else min(order, key=lambda url: self._resting[url])

    def _rest(self, url: str) -> None:
        with self._lock:
            self._resting[url] = time.monotonic() + REPLICA_REST_SECONDS

    def _another_awake(self, url: str) -> bool:
        now = time.monotonic()
        with self._lock:
            return any(u != url and self._resting.get(u, 0.0) <= now for u in self.urls)

    def labels(self) -> list[str]:
        """Genre names in probability order, from the published ensemble's config (the first
        replica that answers)."""
        errors = []
        for url in self.urls:
            try:
                config = self._client(url).get_model_config(ENSEMBLE)
                break
            except Exception as error:
                errors.append(f"{url}: {_error_text(error)}")
        else:
            raise ClientError(f"cannot read {ENSEMBLE}'s config ({'; '.join(errors)})")
        if self.protocol == "grpc":
            params = {k: v.string_value for k, v in config.config.parameters.items()}
        else:
            params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        return [g for g in params.get("labels", "").split(",") if g]

    def infer(self, payloads: Sequence[bytes], clip_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """One inference request, retried as ``_retryable`` allows (see ``last_attempts``):
        at once on another replica when one is awake, else after a back-off."""
        several = len(self.urls) > 1
        backoff = wait_exponential(multiplier=0.5, max=8)
        failed_on: dict[int, str] = {}  # attempt -> the replica that failed it

        def wait(state: RetryCallState) -> float:
            failed = failed_on.get(state.attempt_number, "")
            return 0.0 if several and self._another_awake(failed) else backoff(state)

        def worth_retrying(error: BaseException) -> bool:
            return _retryable(error) or (several and _not_on_this_replica(error))

        retrying = Retrying(
            retry=retry_if_exception(worth_retrying),
            stop=stop_after_attempt(ATTEMPTS + len(self.urls) - 1),
            wait=wait,
            before_sleep=_log_retry,
            reraise=True,
        )
        self._local.attempts = 0
        for attempt in retrying:
            with attempt:
                number = attempt.retry_state.attempt_number
                self._local.attempts = number
                url = self._pick()
                try:
                    return self._infer_once(url, payloads, clip_ids)
                except Exception as error:
                    if worth_retrying(error):
                        failed_on[number] = url
                        self._rest(url)
                    raise
        raise AssertionError("unreachable: tenacity reraises the last error")

    def last_attempts(self) -> int:
        """Requests sent by this thread's last ``infer`` call."""
        return int(getattr(self._local, "attempts", 0))

    def _infer_once(
        self, url: str, payloads: Sequence[bytes], clip_ids: Sequence[str]
    ) -> dict[str, np.ndarray]:
        client = self._client(url)
        triton = self._local.module
        audio = np.array([[p] for p in payloads], dtype=np.object_)
        # surrogateescape: a path that is not UTF-8 is sent as its own bytes
        ids = np.array([[c.encode("utf-8", "surrogateescape")] for c in clip_ids], dtype=np.object_)
        inputs = [triton.InferInput("AUDIO", list(audio.shape), "BYTES")]
        inputs.append(triton.InferInput("CLIP_ID", list(ids.shape), "BYTES"))
        inputs[0].set_data_from_numpy(audio)
        inputs[1].set_data_from_numpy(ids)
        names = ("GENRE", "PROBABILITIES", "MODEL", "DRIFT", "OOD", "OOD_SCORE")
        outputs = [triton.InferRequestedOutput(n) for n in names]
        kwargs = {"client_timeout": self.timeout} if self.protocol == "grpc" else {}
        result = client.infer(ENSEMBLE, inputs, outputs=outputs, **kwargs)
        return {n: result.as_numpy(n) for n in names}


def _reason(message: str) -> str:
    """The preprocessor prefixes refusals with ``[reason]``; other errors are ``server``."""
    start = message.find("[")
    end = message.find("]", start)
    return message[start + 1 : end] if 0 <= start < end else "server"


def _error_text(error: BaseException | None) -> str:
    message = getattr(error, "message", None)
    text = message() if callable(message) else str(error)
    return " ".join(str(text).split())


def predict(
    paths: Sequence[str],
    client: EnsembleClient,
    *,
    batch_size: int = 1,
    concurrency: int = 4,
    labels_from_folders: bool = False,
    max_bytes: int = 200 * 1024 * 1024,
    s3: S3Config | None = None,
    on_answer: Callable[[Answer], None] | None = None,
) -> list[Answer]:
    """Answers in input order; a file that cannot be read or is refused gets its error."""
    answers = [
        Answer(path=p, expected=expected_genre(p) if labels_from_folders else "") for p in paths
    ]

    def read(index: int) -> bytes | None:
        try:
            return read_bytes(paths[index], s3=s3, max_bytes=max_bytes)
        except GenreopsError as error:
            answers[index].error = str(error)
            too_large = isinstance(error, ObjectTooLargeError)
            answers[index].reason = "too_large" if too_large else "unreadable"
            return None

    def send(indices: list[int]) -> list[int]:
        started = time.perf_counter()
        payloads = {i: read(i) for i in indices}
        ready = [i for i in indices if payloads[i] is not None]
        if not ready:
            return indices
        try:
            out = client.infer([payloads[i] or b"" for i in ready], [paths[i] for i in ready])
        except Exception as error:
            if len(ready) > 1:  # find the bad file(s): each one alone
                for i in ready:
                    send([i])
                return indices
            answer = answers[ready[0]]
            answer.attempts = client.last_attempts()
            answer.error = _error_text(error)
            # "unavailable": the server never ran it (unreachable, or a dead backend process);
            # sending it again later may succeed, unlike a refusal of the input
            answer.reason = "unavailable" if _retryable(error) else _reason(answer.error)
            if answer.attempts > 1:
                answer.error += f" (after {answer.attempts} attempts)"
            return indices
        attempts = client.last_attempts()
        seconds = (time.perf_counter() - started) / len(ready)
        for row, i in enumerate(ready):
            answer = answers[i]
            answer.genre = bytes(out["GENRE"][row][0]).decode()
            answer.model = bytes(out["MODEL"][row][0]).decode()
            answer.drift = bool(out["DRIFT"][row][0])
            answer.ood = bool(out["OOD"][row][0])
            answer.ood_score = round(float(out["OOD_SCORE"][row][0]), 4)
            answer.probabilities = [float(p) for p in out["PROBABILITIES"][row]]
            answer.seconds = seconds
            answer.attempts = attempts
        return indices

    batches = [
        list(range(i, min(i + batch_size, len(paths)))) for i in range(0, len(paths), batch_size)
    ]
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        futures = [pool.submit(send, batch) for batch in batches]
        for future in as_completed(futures):
            for i in future.result():
                if on_answer is not None:
                    on_answer(answers[i])
    return answers


@dataclass
class Summary:
    total: int
    answered: int
    failed: int
    by_genre: dict[str, int]
    by_model: dict[str, int]
    by_reason: dict[str, int]
    drift_answers: int
    gate_openings: int
    ood_answers: int
    accuracy: float | None = None
    gmean: float | None = None


def summarize(answers: Sequence[Answer]) -> Summary:
    ok = [a for a in answers if a.ok]
    openings, previous = 0, False
    for answer in ok:  # in input order: how often the gate went from closed to open
        if answer.drift and not previous:
            openings += 1
        previous = bool(answer.drift)
    summary = Summary(
        total=len(answers),
        answered=len(ok),
        failed=len(answers) - len(ok),
        by_genre=dict(Counter(a.genre for a in ok).most_common()),
        by_model=dict(Counter(a.model for a in ok).most_common()),
        by_reason=dict(Counter(a.reason for a in answers if not a.ok).most_common()),
        drift_answers=sum(bool(a.drift) for a in ok),
        gate_openings=openings,
        ood_answers=sum(bool(a.ood) for a in ok),
    )
    labelled = [a for a in ok if a.expected]
    if labelled:
        from imblearn.metrics import geometric_mean_score

        truth = [a.expected for a in labelled]
        predicted = [a.genre for a in labelled]
        summary.accuracy = float(np.mean([t == p for t, p in zip(truth, predicted, strict=True)]))
        summary.gmean = float(geometric_mean_score(truth, predicted, average="multiclass"))
    return summary


def rows(answers: Iterable[Answer], labels: Sequence[str]) -> list[dict[str, Any]]:
    """One flat row per input: path, genre, model, drift, ood, ood_score, error, reason,
    expected, p_<genre>..."""
    table = []
    for a in answers:
        row: dict[str, Any] = {
            "path": a.path,
            "genre": a.genre,
            "model": a.model,
            "drift": "" if a.drift is None else a.drift,
            "ood": "" if a.ood is None else a.ood,
            "ood_score": "" if a.ood_score is None else a.ood_score,
            "error": a.error,
            "reason": a.reason,
            "expected": a.expected,
        }
        for i, label in enumerate(labels):
            row[f"p_{label}"] = a.probabilities[i] if i < len(a.probabilities) else ""
        table.append(row)
    return table


def render(answers: Sequence[Answer], labels: Sequence[str], fmt: str) -> bytes:
    """CSV or JSON bytes of :func:`rows` (for a local file or an s3:// object)."""
    table = rows(answers, labels)
    if fmt == "json":
        return json.dumps(table, indent=1).encode()
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(table[0]) if table else ["path"])
    writer.writeheader()
    writer.writerows(table)
    return buffer.getvalue().encode()
