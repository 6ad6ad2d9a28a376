"""What the Triton models do, without Triton: the published models, the gate and the records.

Each Python-backend model reads its ``config.pbtxt`` parameters and its version folder (written
by ``genreops.serving.publish``) through these helpers; ``genreops.serving.handlers`` turns them
into one result per request, so the triton_models/*/model.py files only move tensors.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.ensemble import RandomForestClassifier

from genreops.core.errors import SchemaError
from genreops.data.features import FEATURE_NAMES, SCHEMA_HASH, serving_columns
from genreops.monitoring.novelty import NoveltyMonitor, NoveltySettings
from genreops.serving.labels import most_likely
from genreops.serving.publish import (
    CANARY_FILE,
    CHALLENGER_FILE,
    META_FILE,
    MODEL_FILE,
    REFERENCE_FILE,
)
from genreops.training.forest import FlatForest
from genreops.training.models import GenreClassifier

log = logging.getLogger(__name__)


def novelty_settings(params: dict[str, str]) -> NoveltySettings:
    """The gate's settings from the predictor's ``config.pbtxt`` parameters."""
    default = NoveltySettings()
    return NoveltySettings(
        neighbours=int(params.get("drift_neighbours", default.neighbours)),
        ood_alpha=float(params.get("drift_ood_alpha", default.ood_alpha)),
        expected_run=float(params.get("drift_expected_run", default.expected_run)),
        kappa=float(params.get("drift_kappa", default.kappa)),
        close_fraction=float(params.get("drift_close_fraction", default.close_fraction)),
    )


@dataclass(frozen=True)
class PublishedModel:
    """A model as the repository holds it: the classifier and where it came from.

    ``columns`` are the positions of the model's own feature columns in the preprocessor's
    vector: a model may use any subset of the schema, in its own order.
    """

    classifier: GenreClassifier
    label: str  # e.g. "genre-classifier/3"
    meta: dict[str, Any]
    columns: np.ndarray
    forest: FlatForest | None = None  # the same random forest, fast on a few rows

    @classmethod
    def of(
        cls,
        classifier: GenreClassifier,
        label: str,
        meta: dict[str, Any],
        forest: FlatForest | None = None,
    ) -> PublishedModel:
        """Refuses a model the preprocessor's features cannot serve, naming why."""
        columns = serving_columns(
            classifier.feature_names, schema_version=classifier.schema_version, source=label
        )
        return cls(classifier, label, meta, columns, forest)

    def own_columns(self, features: Any) -> np.ndarray:
        """The model's columns of full preprocessor vectors ``[n, len(FEATURE_NAMES)]``."""
        features = np.asarray(features)
        if features.ndim != 2 or features.shape[1] != len(FEATURE_NAMES):
            raise SchemaError(
                f"{self.label} expects [n, {len(FEATURE_NAMES)}] feature vectors of schema "
                f"{SCHEMA_HASH}, got shape {list(features.shape)}"
            )
        return features[:, self.columns]

    def predict_proba(self, features: Any) -> np.ndarray:
        """Class probabilities for full preprocessor vectors (the model picks its columns)."""
        own = self.own_columns(features)
        if self.forest is not None:
            return self.forest.predict_proba(self.classifier.matrix(own)).astype(np.float32)
        return self.classifier.predict_proba(own).astype(np.float32)


def load_published_model(folder: Path) -> PublishedModel:
    """Load a version folder's model; only files ``genreops publish`` wrote are read."""
    meta = json.loads((folder / META_FILE).read_text())
    classifier = joblib.load(folder / MODEL_FILE)
    if not isinstance(classifier, GenreClassifier):
        raise SchemaError(f"{folder / MODEL_FILE}: not a genreops model")
    # one request is one row or a small batch: a thread pool per call costs more than it saves
    estimator = classifier.pipeline.named_steps.get("model")
    if estimator is not None and "n_jobs" in estimator.get_params():
        estimator.set_params(n_jobs=1)
    label = f"{meta['name']}/{meta['version']}"
    # samplers only act in fit, so a forest after them sees the feature matrix as it is
    if isinstance(estimator, RandomForestClassifier) and all(
        hasattr(step, "fit_resample") for _, step in classifier.pipeline.steps[:-1]
    ):
        return PublishedModel.of(classifier, label, meta, FlatForest(estimator))
    return PublishedModel.of(classifier, label, meta)


class Router:
    """Who answers each request: the challenger while the gate is open or for its share; a
    canary on trial for its share of all requests, gate open or not (a fair sample of the
    traffic the champion and its fallback answer)."""

    def __init__(
        self, challenger_share: float = 0.0, seed: int | None = None, canary_share: float = 0.0
    ) -> None:
        if not 0.0 <= challenger_share <= 1.0:
            raise ValueError(f"challenger_share must be within [0, 1], got {challenger_share}")
        if not 0.0 <= canary_share < 1.0:
            raise ValueError(f"canary_share must be within [0, 1), got {canary_share}")
        self.challenger_share = challenger_share
        self.canary_share = canary_share
        self._rng = np.random.default_rng(seed)

    def to_canary(self, rows: int) -> np.ndarray:
        """Per row: a ``canary_share`` sample of all rows."""
        if self.canary_share <= 0.0:
            return np.zeros(rows, dtype=bool)
        return self._rng.random(rows) < self.canary_share

    def to_challenger(self, gate_open: np.ndarray) -> np.ndarray:
        """Per row: the gate's rows, plus a ``challenger_share`` sample of the others."""
        gate = np.asarray(gate_open, dtype=bool).reshape(-1)
        if self.challenger_share <= 0.0:
            return gate.copy()
        return gate | (self._rng.random(len(gate)) < self.challenger_share)


@dataclass(frozen=True)
class Decision:
    """Who answers each row of a batch, and what the gate made of it.

    ``to_canary`` rows go to the canary first; ``to_challenger`` says who answers every other
    row (and a canary row too, should the canary fail).
    """

    to_challenger: np.ndarray
    gate_open: np.ndarray  # per row: the gate after judging this row
    ood: np.ndarray  # per row: out of the training distribution (score > 1)
    ood_score: np.ndarray  # per row: distance to the reference in units of the OOD threshold
    statistic: np.ndarray  # per row: the detector's statistic, share of its alarm level
    to_canary: np.ndarray

    def rows(self, mask: np.ndarray) -> Decision:
        """The decision for some rows only (e.g. those of the requests that are answered)."""
        return Decision(
            self.to_challenger[mask], self.gate_open[mask], self.ood[mask],
            self.ood_score[mask], self.statistic[mask], self.to_canary[mask],
        )  # fmt: skip

    def fallback_causes(self, by_fallback: np.ndarray) -> dict[str, int]:
        """How many of the rows the fallback answered it answered because of the drift gate,
        and how many as the challenger's share of normal traffic."""
        return {
            "drift": int((by_fallback & self.gate_open).sum()),
            "share": int((by_fallback & ~self.gate_open).sum()),
        }


class PredictorRuntime:
    """The predictor's state: champion, router, the gate, drift record and monitoring writer.

    ``novelty`` (``genreops.monitoring.novelty.NoveltyMonitor``)
    judges each request and drives the gate;
    without it the gate stays closed. ``monitor`` and ``writer`` are duck-typed
    (``genreops.monitoring.drift.DriftMonitor``,
    ``genreops.monitoring.store.MonitoringWriter``) so tests can
    run this without processes.
    """

    def __init__(
        self,
        champion: PublishedModel,
        challenger_label: str,
        router: Router,
        *,
        novelty: NoveltyMonitor | None = None,
        monitor: Any | None = None,
        writer: Any | None = None,
        repository_version: int | None = None,
        canary_label: str | None = None,
    ) -> None:
        self.champion = champion
        self.challenger_label = challenger_label
        self.canary_label = canary_label  # a retrained version on trial, if any
        self.router = router
        self.novelty = novelty
        self.monitor = monitor
        self.writer = writer
        self.repository_version = repository_version
        self.labels = np.asarray(champion.classifier.genres, dtype=object)
        self._tests_offset = 0
        # drift tests finish in the worker whenever they finish, also when no request comes:
        # a background thread passes them on to the store (the request path only reads)
        self._recording = threading.Lock()
        self._closing = threading.Event()
        self._recorder: threading.Thread | None = None
        if monitor is not None and writer is not None:
            self._recorder = threading.Thread(
                target=self._record_loop, name="drift-tests-to-store", daemon=True
            )
            self._recorder.start()

    @classmethod
    def open(cls, folder: Path, params: dict[str, str]) -> PredictorRuntime:
        """Everything a published predictor version needs, from its folder and settings."""
        from genreops.core.settings import get_settings
        from genreops.monitoring.drift import (
            DriftMonitor,
            DriftSettings,
            read_reference,
            reference_columns,
        )
        from genreops.monitoring.store import MonitoringWriter

        settings = get_settings()
        champion = load_published_model(folder)
        challenger = json.loads((folder / CHALLENGER_FILE).read_text())
        canary_path = folder / CANARY_FILE  # absent in versions published before canaries
        canary = json.loads(canary_path.read_text()) if canary_path.exists() else None
        version = int(folder.name) if folder.name.isdigit() else None
        drift = DriftSettings(
            window=int(params.get("drift_window", DriftSettings.window)),
            min_samples=int(params.get("drift_min_samples", DriftSettings.min_samples)),
            every=int(params.get("drift_test_every", DriftSettings.every)),
        )
        # the gate judges the champion's own columns against its training sample
        columns = reference_columns(folder / REFERENCE_FILE, from_reference=True)
        if columns != list(champion.classifier.feature_names):
            raise SchemaError(
                f"{folder / REFERENCE_FILE}: the drift reference's columns are not those of "
                f"{champion.label}; publish again"
            )
        novelty = NoveltyMonitor(
            read_reference(folder / REFERENCE_FILE, columns).to_numpy(np.float64),
            novelty_settings(params),
            columns=columns,
        )
        monitor = DriftMonitor(
            folder / REFERENCE_FILE,
            settings.serving_dir / "drift" / f"v{version}",
            drift,
            columns_from_reference=True,
        )
        monitor.start()
        writer = MonitoringWriter(
            settings.monitoring_db_url, spool_dir=settings.monitoring_spool_dir
        )
        return cls(
            champion,
            f"{challenger['name']}/{challenger['version']}",
            Router(
                float(params.get("challenger_share", 0.0)),
                canary_share=float(params.get("canary_share", 0.0)) if canary else 0.0,
            ),
            novelty=novelty,
            monitor=monitor,
            writer=writer,
            repository_version=version,
            canary_label=f"{canary['name']}/{canary['version']}" if canary else None,
        )

    def route(self, features: np.ndarray) -> Decision:
        """Judge each row of full preprocessor vectors in order (this moves the gate), then
        pick who answers it."""
        rows = len(features)
        to_canary = self.router.to_canary(rows) if self.canary_label else np.zeros(rows, dtype=bool)
        if self.novelty is None:
            closed = np.zeros(rows, dtype=bool)
            zeros = np.zeros(rows, dtype=np.float32)
            return Decision(
                self.router.to_challenger(closed), closed, closed, zeros, zeros, to_canary
            )
        was_open = self.novelty.gate_open
        judged = self.novelty.assess(self.champion.own_columns(features))
        if judged.gate_open.any() and not was_open:
            log.warning(
                "drift gate opened: the fallback answers; strongest evidence (share of the "
                "alarm level): %s",
                ", ".join(self.novelty.evidence()),
            )
        elif was_open and not judged.gate_open[-1]:
            log.warning("drift gate closed: the champion answers again")
        return Decision(
            to_challenger=self.router.to_challenger(judged.gate_open),
            gate_open=judged.gate_open,
            ood=judged.ood,
            ood_score=judged.score.astype(np.float32),
            statistic=judged.statistic.astype(np.float32),
            to_canary=to_canary,
        )

    def model_labels(self, to_challenger: np.ndarray, to_canary: np.ndarray) -> np.ndarray:
        labels = np.where(to_challenger, self.challenger_label, self.champion.label)
        return np.where(to_canary, self.canary_label or "", labels).astype(object)

    def role(self, model: str) -> str:
        """``champion``, ``challenger`` or ``canary``: who gave an answer, as the store says."""
        if model == self.champion.label:
            return "champion"
        return "canary" if model == self.canary_label else "challenger"

    def genres_of(self, probabilities: np.ndarray) -> list[str]:
        return most_likely(probabilities, self.labels)

    def drift_state(self) -> dict[str, Any]:
        return self.monitor.state() if self.monitor is not None else {}

    def _record_loop(self) -> None:
        while not self._closing.wait(1.0):
            try:
                self._record_drift_tests()
            except (OSError, ValueError) as error:  # a bad line must not stop the recording
                log.warning("cannot pass drift tests to the store: %s", error)

    def _record_drift_tests(self) -> None:
        """Lines the worker appended to drift_tests.jsonl since we last looked."""
        path = Path(self.monitor.tests_path) if self.monitor is not None else None
        if path is None or self.writer is None or not path.exists():
            return
        with self._recording:  # the recorder thread and close() may both get here
            with path.open("rb") as handle:
                handle.seek(self._tests_offset)
                data = handle.read()
            complete = data[: data.rfind(b"\n") + 1]  # a line still being written waits
            self._tests_offset += len(complete)
            for line in complete.splitlines():
                test = json.loads(line)
                self.writer.submit_drift_test(  # unique test ids: a re-read stores nothing twice
                    {
                        "test_id": test["test_id"],
                        "tested_at": test["tested_at"],
                        "window_size": test["window_size"],
                        "drifted_share": test["drifted_share"],
                        "dataset_drift": test["dataset_drift"],
                        "gate_open": test.get("gate_open", False),
                        "statistic": test.get("statistic"),
                        "ood_share": test.get("ood_share"),
                        "column_scores": test.get("column_scores", {}),
                        "reference": self.champion.label,
                        "seconds": test.get("seconds"),
                    }
                )

    def observe(
        self,
        features: np.ndarray,
        probabilities: np.ndarray,
        models: np.ndarray,
        *,
        decision: Decision,
        clip_ids: list[str],
        received_ns: np.ndarray,
        now_ns: int,
    ) -> list[str]:
        """Feed the drift record and record every answer (both leave the request path);
        returns the genre of each row."""
        genres = self.genres_of(probabilities)
        if self.monitor is not None:
            judgement = np.column_stack(
                [decision.ood_score, decision.statistic, decision.gate_open]
            )
            self.monitor.submit(self.champion.own_columns(features), judgement)
        if self.writer is None:
            return genres
        for row in range(len(features)):
            model = str(models[row])
            self.writer.submit_prediction(
                {
                    "clip_id": clip_ids[row] if row < len(clip_ids) else "",
                    "genre": genres[row],
                    "confidence": float(probabilities[row].max()),
                    "probabilities": {
                        str(g): round(float(p), 6)
                        for g, p in zip(self.labels, probabilities[row], strict=True)
                    },
                    "model_version": model,
                    "model_role": self.role(model),
                    "drift_gate_open": bool(decision.gate_open[row]),
                    "ood": bool(decision.ood[row]),
                    "ood_score": round(float(decision.ood_score[row]), 6),
                    "latency_ms": max(0.0, (now_ns - int(received_ns[row])) / 1e6),
                    "repository_version": self.repository_version,
                }
            )
        return genres

    def close(self) -> None:
        self._closing.set()
        if self._recorder is not None:
            self._recorder.join(timeout=10)
        if self.monitor is not None:
            self.monitor.stop()  # lets a due test finish
            self._record_drift_tests()
        if self.writer is not None:
            self.writer.close()
