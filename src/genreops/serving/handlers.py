"""Each Triton Python model's batch without Triton: numpy arrays in, one result per request out.

``triton_models/*/model.py`` only turn tensors into the arrays these take and the results back
into responses. Everything else (reading ``initialize`` args, building outputs, the BLS fallback,
metrics, failing one request without failing its batch) lives here, so it is tested alone.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from genreops.core.errors import AudioError, decode_name
from genreops.data.features import FEATURE_NAMES
from genreops.serving.labels import genre_names, load_labels
from genreops.serving.preprocess import PreprocessOptions, featurize, parameters

if TYPE_CHECKING:  # the predictor's runtime (scikit-learn, the drift record) is imported by the
    # predictor and fallback models only, so the other stubs start quickly
    from genreops.serving.runtime import Decision, PredictorRuntime, PublishedModel

log = logging.getLogger(__name__)

Inputs = Mapping[str, np.ndarray | None]  # a request's input tensors by name; None: not sent
Outputs = dict[str, np.ndarray]  # a response's output tensors by name


@dataclass(frozen=True)
class RequestFailure:
    """Why one request gets no answer; the other requests of its batch are answered."""

    message: str
    invalid_input: bool = True  # True: the caller's input (INVALID_ARG); False: ours (INTERNAL)


Result = Outputs | RequestFailure


class _RefusedError(Exception):
    """Raised inside a handler to fail its request with this message."""

    def __init__(self, message: str, invalid_input: bool = True) -> None:
        super().__init__(message)
        self.failure = RequestFailure(message, invalid_input)


def model_parameters(args: Mapping[str, str]) -> dict[str, str]:
    """The model's ``config.pbtxt`` parameters from its ``initialize`` args."""
    return parameters(json.loads(args["model_config"]))


def clip_ids(
    tensor: np.ndarray | None, n: int, default: str, limit: int | None = None
) -> list[str]:
    """A request's optional CLIP_ID ``[n, 1]`` bytes as names; ``default`` when not sent."""
    if tensor is None:
        return [default] * n
    names = [decode_name(bytes(item[0]))[:limit] or default for item in tensor]
    if len(names) != n:
        raise _RefusedError(f"CLIP_ID has {len(names)} rows for {n} inputs")
    return names


def _required(inputs: Inputs, name: str) -> np.ndarray:
    array = inputs.get(name)
    if array is None:
        raise _RefusedError(f"the request has no {name} input")
    return array


def each_request(batch: list[Inputs], handle: Callable[[Inputs], Outputs]) -> list[Result]:
    """``handle`` per request; an exception fails that request only, naming its reason."""
    results: list[Result] = []
    for inputs in batch:
        try:
            results.append(handle(inputs))
        except _RefusedError as refused:
            results.append(refused.failure)
        except Exception as error:  # a bug or a broken model: still only this request
            log.exception("request failed")
            results.append(RequestFailure(f"{type(error).__name__}: {error}", False))
    return results


# -- metrics


MetricKind = Literal["counter", "gauge"]


class MetricFamilyFactory(Protocol):
    """Makes a metric family (``pb_utils.MetricFamily`` in Triton, ``MemoryFamily`` without)."""

    def __call__(self, name: str, description: str, kind: MetricKind) -> Any: ...


class MemorySeries:
    """One labelled series kept in memory, with the methods of a Triton metric."""

    def __init__(self) -> None:
        self.value = 0.0

    def increment(self, value: float) -> None:
        self.value += value

    def set(self, value: float) -> None:
        self.value = value


class MemoryFamily:
    """A metric family kept in memory: the handlers' metrics when Triton is not there."""

    def __init__(self, name: str, description: str, kind: MetricKind) -> None:
        self.name, self.description, self.kind = name, description, kind
        self.series: dict[tuple[tuple[str, str], ...], MemorySeries] = {}

    def Metric(self, labels: dict[str, str]) -> MemorySeries:  # noqa: N802 (Triton's name)
        return self.series.setdefault(tuple(sorted(labels.items())), MemorySeries())


@dataclass(frozen=True)
class MetricSpec:
    name: str
    description: str
    kind: MetricKind = "counter"


class Metrics:
    """A model's metric families and labelled series, made once and kept referenced: in
    Triton a family that is garbage-collected breaks the next update."""

    def __init__(
        self, specs: Mapping[str, MetricSpec], family: MetricFamilyFactory = MemoryFamily
    ) -> None:
        self.families = {key: family(s.name, s.description, s.kind) for key, s in specs.items()}
        self._series: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {}

    def series(self, key: str, **labels: str) -> Any:
        """The series (created at 0 on first use, so rate() and alerts see its first rise)."""
        index = (key, tuple(sorted(labels.items())))
        if index not in self._series:
            self._series[index] = self.families[key].Metric(labels=labels)
        return self._series[index]

    def increment(self, key: str, value: float = 1, **labels: str) -> None:
        self.series(key, **labels).increment(value)

    def set(self, key: str, value: float, **labels: str) -> None:
        self.series(key, **labels).set(value)


PREPROCESSOR_METRICS = {
    "bad": MetricSpec("genreops_bad_inputs_total", "Inputs the preprocessor refused, by reason"),
    "seconds": MetricSpec(
        "genreops_preprocess_seconds_total", "Seconds spent decoding and extracting features"
    ),
    "items": MetricSpec(
        "genreops_preprocessed_items_total", "Audio files turned into feature vectors"
    ),
}

PREDICTOR_METRICS = {
    "predictions": MetricSpec(
        "genreops_predictions_total", "Answers by genre and by the model version that gave them"
    ),
    "fallback": MetricSpec(
        "genreops_fallback_answers_total",
        "Answers given by the fallback model, by cause (drift, share)",
    ),
    "fallback_errors": MetricSpec(
        "genreops_fallback_errors_total",
        "Fallback calls that failed (the champion answered instead)",
    ),
    "canary": MetricSpec(
        "genreops_canary_answers_total", "Answers given by the canary on trial, by its version"
    ),
    "canary_errors": MetricSpec(
        "genreops_canary_errors_total",
        "Canary calls that failed (the champion or the fallback answered instead)",
    ),
    "gate": MetricSpec("genreops_drift_gate_open", "1 while the drift gate is open", "gauge"),
    "share": MetricSpec(
        "genreops_drift_share", "Share of drifted features in the latest drift test", "gauge"
    ),
    "statistic": MetricSpec(
        "genreops_drift_statistic",
        "The drift detector's statistic as a share of its alarm level",
        "gauge",
    ),
    "ood": MetricSpec(
        "genreops_ood_answers_total",
        "Answers to clips out of the training distribution (OOD flag)",
    ),
    "tests": MetricSpec(
        "genreops_drift_tests_total", "Drift tests run against the training reference"
    ),
}


# -- the four models


class PreprocessorHandler:
    """One encoded audio file per item -> its feature vector and the time it was received.

    A bad file fails its own request (message ``[reason] clip: detail``, counted by reason).
    """

    def __init__(self, options: PreprocessOptions, metrics: Metrics) -> None:
        self.options = options
        self.metrics = metrics
        for reason in AudioError.REASONS:  # every reason's series exists from the start
            metrics.series("bad", reason=reason)
        metrics.series("seconds")
        metrics.series("items")

    @classmethod
    def open(
        cls, args: Mapping[str, str], family: MetricFamilyFactory = MemoryFamily
    ) -> PreprocessorHandler:
        options = PreprocessOptions.from_parameters(model_parameters(args))
        return cls(options, Metrics(PREPROCESSOR_METRICS, family))

    def _refuse(self, reason: str, message: str) -> _RefusedError:
        self.metrics.increment("bad", 1, reason=reason)
        return _RefusedError(f"[{reason}] {message}")

    def handle(self, inputs: Inputs) -> Outputs:
        received = time.time_ns()
        started = time.perf_counter()
        audio = inputs.get("AUDIO")
        if audio is None or len(audio) == 0:
            raise self._refuse("empty", "request: no AUDIO item")
        try:
            names = clip_ids(inputs.get("CLIP_ID"), len(audio), "request", limit=256)
        except _RefusedError as refused:
            raise self._refuse("unreadable", f"request: {refused}") from None
        try:
            features = np.stack(
                [
                    featurize(item[0], self.options, name)
                    for item, name in zip(audio, names, strict=True)
                ]
            )
        except AudioError as error:
            raise self._refuse(error.reason, str(error)) from error
        except Exception as error:  # an unexpected decoder error is still this file's fault
            raise self._refuse("unreadable", f"{names[0]}: {error}") from error
        self.metrics.increment("seconds", time.perf_counter() - started)
        self.metrics.increment("items", len(features))
        return {
            "FEATURES": features,
            "RECEIVED_NS": np.full((len(features), 1), received, dtype=np.int64),
        }

    def execute(self, batch: list[Inputs]) -> list[Result]:
        return each_request(batch, self.handle)


class FallbackHandler:
    """The challenger's (or the canary's) class probabilities; the predictor calls it
    through BLS. ``model`` None: this version publishes none (the canary slot off trial)."""

    def __init__(self, model: PublishedModel | None) -> None:
        self.model = model

    @classmethod
    def open(cls, args: Mapping[str, str], optional: bool = False) -> FallbackHandler:
        """``optional``: a version folder without a model is a slot with nobody in it."""
        # spelled out: the unpickling check traces the folder to Triton's own args
        from genreops.serving.publish import MODEL_FILE
        from genreops.serving.runtime import load_published_model

        folder = Path(args["model_repository"]) / args["model_version"]
        if optional and not (folder / MODEL_FILE).exists():
            return cls(None)
        return cls(load_published_model(folder))

    def handle(self, inputs: Inputs) -> Outputs:
        features = _required(inputs, "FEATURES")
        if self.model is None:
            raise _RefusedError("no model is published in this slot", invalid_input=False)
        try:
            probabilities = self.model.predict_proba(features)
        except Exception as error:  # schema errors and the like: the caller's features
            raise _RefusedError(str(error)) from error
        return {"PROBABILITIES": probabilities}

    def execute(self, batch: list[Inputs]) -> list[Result]:
        return each_request(batch, self.handle)


class PostprocessorHandler:
    """Class probabilities -> genre names, in the published label order."""

    def __init__(self, labels: np.ndarray) -> None:
        self.labels = labels

    @classmethod
    def open(cls, args: Mapping[str, str]) -> PostprocessorHandler:
        return cls(load_labels(Path(args["model_repository"]) / args["model_version"]))

    def handle(self, inputs: Inputs) -> Outputs:
        probabilities = _required(inputs, "PROBABILITIES")
        if probabilities.ndim != 2 or probabilities.shape[1] != len(self.labels):
            raise _RefusedError(
                f"PROBABILITIES must be [n, {len(self.labels)}], got {list(probabilities.shape)}"
            )
        return {"GENRE": genre_names(probabilities, self.labels)}

    def execute(self, batch: list[Inputs]) -> list[Result]:
        return each_request(batch, self.handle)


@dataclass(frozen=True)
class _Accepted:
    """A request whose inputs are valid, and its rows in the batch's feature matrix."""

    index: int
    rows: slice
    clip_ids: list[str]


def _predictor_inputs(inputs: Inputs) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A request's features, receive times and clip ids, or why they cannot be scored."""
    features = _required(inputs, "FEATURES")
    width = len(FEATURE_NAMES)
    if features.ndim != 2 or features.shape[1] != width or len(features) == 0:
        raise _RefusedError(f"FEATURES must be [n, {width}], got {list(features.shape)}")
    features = features.astype(np.float32, copy=False)
    bad = np.flatnonzero(~np.isfinite(features).all(axis=1))
    if len(bad):
        raise _RefusedError(f"FEATURES row {int(bad[0])} is not finite (NaN or infinite)")
    received = _required(inputs, "RECEIVED_NS").reshape(-1).astype(np.int64, copy=False)
    if len(received) != len(features):
        raise _RefusedError(f"RECEIVED_NS has {len(received)} rows for {len(features)} features")
    return features, received, clip_ids(inputs.get("CLIP_ID"), len(features), "")


class PredictorHandler:
    """The champion answers; the fallback (challenger) answers the rows the gate or the
    challenger share sends it, and when it fails the champion answers them instead. A canary
    on trial answers its share first; the rows it cannot answer go the usual way.

    Each request is checked alone first, so a malformed one fails alone; the valid ones are
    judged and scored together (one pass moves the gate, in arrival order). Recording the
    answers (drift record, store, metrics) never takes an answer away.
    """

    def __init__(
        self,
        runtime: PredictorRuntime,
        metrics: Metrics,
        fallback: Callable[[np.ndarray], np.ndarray] | None = None,
        log_error: Callable[[str], None] = log.error,
        canary: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        self.runtime = runtime
        self.metrics = metrics
        self.fallback = fallback  # features -> probabilities; raises when it cannot answer
        self.canary = canary  # the same, for the canary model
        self.log_error = log_error
        self.tests_seen = 0
        for cause in ("drift", "share"):  # series exist from the start at 0
            metrics.series("fallback", cause=cause)
        for key in ("fallback_errors", "canary_errors", "tests", "gate", "statistic", "ood"):
            metrics.series(key)
        if runtime.canary_label:
            metrics.series("canary", model=runtime.canary_label)

    @classmethod
    def open(
        cls,
        args: Mapping[str, str],
        family: MetricFamilyFactory = MemoryFamily,
        fallback: Callable[[np.ndarray], np.ndarray] | None = None,
        log_error: Callable[[str], None] = log.error,
        canary: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> PredictorHandler:
        # spelled out: the unpickling check traces the folder to Triton's own args
        folder = Path(args["model_repository"]) / args["model_version"]
        from genreops.serving.runtime import PredictorRuntime

        runtime = PredictorRuntime.open(folder, model_parameters(args))
        return cls(runtime, Metrics(PREDICTOR_METRICS, family), fallback, log_error, canary)

    def execute(self, batch: list[Inputs]) -> list[Result]:
        results: list[Result | None] = [None] * len(batch)
        accepted: list[_Accepted] = []
        blocks: list[np.ndarray] = []
        received: list[np.ndarray] = []
        start = 0
        for index, inputs in enumerate(batch):
            try:
                features, times, names = _predictor_inputs(inputs)
            except _RefusedError as refused:
                results[index] = refused.failure
                continue
            except Exception as error:  # e.g. a dtype numpy cannot convert: this request only
                results[index] = RequestFailure(f"unreadable inputs: {error}")
                continue
            accepted.append(_Accepted(index, slice(start, start + len(features)), names))
            blocks.append(features)
            received.append(times)
            start += len(features)
        if accepted:
            try:
                answers = self._answer(accepted, np.concatenate(blocks), np.concatenate(received))
            except Exception as error:  # shared state (the gate) failed: no request is answered
                log.exception("predictor batch failed")
                failure = RequestFailure(
                    f"predictor failed: {type(error).__name__}: {error}", False
                )
                answers = {request.index: failure for request in accepted}
            for index, result in answers.items():
                results[index] = result
        return [r if r is not None else RequestFailure("not answered", False) for r in results]

    def _answer(
        self, accepted: list[_Accepted], features: np.ndarray, received_ns: np.ndarray
    ) -> dict[int, Result]:
        decision = self.runtime.route(features)
        probabilities = np.full((len(features), len(self.runtime.labels)), np.nan, dtype=np.float32)
        failed: dict[int, RequestFailure] = {}
        to_canary = self._ask_canary(features, decision, probabilities)
        to_challenger = self._score(features, decision, probabilities, accepted, failed, ~to_canary)
        models = self.runtime.model_labels(to_challenger, to_canary)
        answered = np.ones(len(features), dtype=bool)
        for request in accepted:
            if request.index in failed:
                answered[request.rows] = False
        self._record(features, probabilities, models, decision, accepted, received_ns, answered)
        results: dict[int, Result] = dict(failed)
        for request in accepted:
            if request.index in failed:
                continue
            rows = request.rows
            results[request.index] = {
                "PROBABILITIES": probabilities[rows],
                "MODEL": np.array([[str(m).encode()] for m in models[rows]], dtype=np.object_),
                "DRIFT": decision.gate_open[rows].reshape(-1, 1),
                "OOD": decision.ood[rows].reshape(-1, 1),
                "OOD_SCORE": decision.ood_score[rows].reshape(-1, 1),
            }
        return results

    def _score(
        self,
        features: np.ndarray,
        decision: Decision,
        probabilities: np.ndarray,
        accepted: list[_Accepted],
        failed: dict[int, RequestFailure],
        left: np.ndarray,
    ) -> np.ndarray:
        """Fill the ``left`` rows of ``probabilities``: each once, by the champion or the
        fallback; returns which rows the fallback answered."""
        to_challenger = decision.to_challenger & left
        if (left & ~to_challenger).any():
            self._champion(features, left & ~to_challenger, probabilities, accepted, failed)
        if not to_challenger.any():
            return to_challenger
        answer = self._call("fallback", self.fallback, features, to_challenger, probabilities)
        if answer is None:  # the champion answers instead
            self._champion(features, to_challenger, probabilities, accepted, failed)
            return np.zeros_like(to_challenger)
        probabilities[to_challenger] = answer
        for cause, rows in decision.fallback_causes(to_challenger).items():
            if rows:
                self.metrics.increment("fallback", rows, cause=cause)
        return to_challenger

    def _ask_canary(
        self, features: np.ndarray, decision: Decision, probabilities: np.ndarray
    ) -> np.ndarray:
        """The canary's share of rows, answered by the canary; returns which rows it answered
        (none when it fails: they go the usual way)."""
        rows = decision.to_canary
        if not rows.any():
            return rows.copy()
        answer = self._call("canary", self.canary, features, rows, probabilities)
        if answer is None:
            return np.zeros_like(rows)
        probabilities[rows] = answer
        self.metrics.increment("canary", int(rows.sum()), model=str(self.runtime.canary_label))
        return rows.copy()

    def _call(
        self,
        name: str,
        model: Callable[[np.ndarray], np.ndarray] | None,
        features: np.ndarray,
        rows: np.ndarray,
        probabilities: np.ndarray,
    ) -> np.ndarray | None:
        """``model``'s probabilities for ``rows`` (a BLS call), or None when it cannot answer
        them (logged, counted in ``<name>_errors``)."""
        try:
            if model is None:
                raise RuntimeError(f"no {name} model to call")
            answer = np.asarray(model(features[rows]), dtype=np.float32)
            if answer.shape != (int(rows.sum()), probabilities.shape[1]):
                raise ValueError(f"{name} answered shape {list(answer.shape)}")
        except Exception as error:
            self.log_error(f"{name} failed: {error}")
            self.metrics.increment(f"{name}_errors", int(rows.sum()))
            return None
        return answer

    def _champion(
        self,
        features: np.ndarray,
        rows: np.ndarray,
        probabilities: np.ndarray,
        accepted: list[_Accepted],
        failed: dict[int, RequestFailure],
    ) -> None:
        """The champion scores ``rows`` in one call; if that fails, request by request, so
        only the requests it cannot score fail (it keeps no state: trying again is safe)."""
        champion = self.runtime.champion
        try:
            probabilities[rows] = champion.predict_proba(features[rows])
            return
        except Exception:
            log.warning("%s failed on the batch; scoring request by request", champion.label)
        for request in accepted:
            own = np.zeros_like(rows)
            own[request.rows] = rows[request.rows]
            if not own.any() or request.index in failed:
                continue
            try:
                probabilities[own] = champion.predict_proba(features[own])
            except Exception as error:
                failed[request.index] = RequestFailure(f"{champion.label} failed: {error}")

    def _record(
        self,
        features: np.ndarray,
        probabilities: np.ndarray,
        models: np.ndarray,
        decision: Decision,
        accepted: list[_Accepted],
        received_ns: np.ndarray,
        answered: np.ndarray,
    ) -> None:
        """Drift record, store and metrics for the answered rows; a failure is logged only."""
        names = [name for request in accepted for name in request.clip_ids]
        try:
            kept = decision.rows(answered)
            if answered.any():
                genres = self.runtime.observe(
                    features[answered],
                    probabilities[answered],
                    models[answered],
                    decision=kept,
                    clip_ids=[n for n, a in zip(names, answered, strict=True) if a],
                    received_ns=received_ns[answered],
                    now_ns=time.time_ns(),
                )
                for genre, model in zip(genres, models[answered], strict=True):
                    self.metrics.increment("predictions", 1, genre=genre, model=str(model))
            self._drift_metrics(decision, kept, self.runtime.drift_state())
        except Exception as error:
            log.exception("recording the answers failed")
            self.log_error(f"recording the answers failed: {error}")

    def _drift_metrics(self, decision: Decision, answered: Decision, state: dict[str, Any]) -> None:
        """The gate after the whole batch; OOD counts the answered rows only."""
        self.metrics.set("gate", 1.0 if decision.gate_open[-1] else 0.0)
        self.metrics.set("statistic", float(decision.statistic[-1]))
        if answered.ood.any():
            self.metrics.increment("ood", int(answered.ood.sum()))
        last = state.get("last_test") or {}
        if "drifted_share" in last:
            self.metrics.set("share", float(last["drifted_share"]))
        tests = int(state.get("tests_run", 0))
        if tests > self.tests_seen:
            self.metrics.increment("tests", tests - self.tests_seen)
            self.tests_seen = tests

    def close(self) -> None:
        self.runtime.close()
