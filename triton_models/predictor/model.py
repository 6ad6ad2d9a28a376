"""Triton predictor: the champion answers; the fallback (challenger) answers through BLS while
the drift gate is open or for the canary share. Each request is judged against the training
reference first
(genreops.monitoring.novelty: an OOD score and the online drift detector that moves the
gate); the drift record's Evidently tests run in their own process (genreops.monitoring.drift).
"""

import json
import time
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from genreops.core.errors import decode_name
from genreops.serving.runtime import PredictorRuntime, parameters


def _clip_ids(request, n):
    tensor = pb_utils.get_input_tensor_by_name(request, "CLIP_ID")
    if tensor is None:
        return [""] * n
    return [decode_name(bytes(item[0])) for item in tensor.as_numpy()]


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        folder = Path(args["model_repository"]) / args["model_version"]
        self.runtime = PredictorRuntime.open(folder, parameters(config))
        counter, gauge = pb_utils.MetricFamily.COUNTER, pb_utils.MetricFamily.GAUGE
        # families stay referenced on self: a collected family breaks the next update
        self.families = {
            "predictions": pb_utils.MetricFamily(
                name="genreops_predictions_total",
                description="Answers by genre and by the model version that gave them",
                kind=counter,
            ),
            "fallback": pb_utils.MetricFamily(
                name="genreops_fallback_answers_total",
                description="Answers given by the fallback model, by cause (drift, canary)",
                kind=counter,
            ),
            "fallback_errors": pb_utils.MetricFamily(
                name="genreops_fallback_errors_total",
                description="Fallback calls that failed (the champion answered instead)",
                kind=counter,
            ),
            "gate": pb_utils.MetricFamily(
                name="genreops_drift_gate_open",
                description="1 while the drift gate is open",
                kind=gauge,
            ),
            "share": pb_utils.MetricFamily(
                name="genreops_drift_share",
                description="Share of drifted features in the latest drift test",
                kind=gauge,
            ),
            "statistic": pb_utils.MetricFamily(
                name="genreops_drift_statistic",
                description="The drift detector's statistic as a share of its alarm level",
                kind=gauge,
            ),
            "ood": pb_utils.MetricFamily(
                name="genreops_ood_answers_total",
                description="Answers to clips out of the training distribution (OOD flag)",
                kind=counter,
            ),
            "tests": pb_utils.MetricFamily(
                name="genreops_drift_tests_total",
                description="Drift tests run against the training reference",
                kind=counter,
            ),
        }
        self.metrics = {}
        self.tests_seen = 0
        # series exist from the start at 0, so rate() and alerts see their first increase
        for cause in ("drift", "canary"):
            self._metric("fallback", cause=cause)
        self._metric("fallback_errors")
        self._metric("tests")
        self._metric("gate")
        self._metric("statistic")
        self._metric("ood")

    def _metric(self, family, **labels):
        key = (family, tuple(sorted(labels.items())))
        if key not in self.metrics:
            self.metrics[key] = self.families[family].Metric(labels=labels)
        return self.metrics[key]

    def _update_drift_metrics(self, decision, state):
        self._metric("gate").set(1.0 if decision.gate_open[-1] else 0.0)
        self._metric("statistic").set(float(decision.statistic[-1]))
        if decision.ood.any():
            self._metric("ood").increment(int(decision.ood.sum()))
        last = state.get("last_test") or {}
        if "drifted_share" in last:
            self._metric("share").set(float(last["drifted_share"]))
        tests = int(state.get("tests_run", 0))
        if tests > self.tests_seen:
            self._metric("tests").increment(tests - self.tests_seen)
            self.tests_seen = tests

    def execute(self, requests):
        blocks = [pb_utils.get_input_tensor_by_name(r, "FEATURES").as_numpy() for r in requests]
        received = [
            pb_utils.get_input_tensor_by_name(r, "RECEIVED_NS").as_numpy() for r in requests
        ]
        features = np.concatenate(blocks)
        decision = self.runtime.route(features)
        to_challenger = decision.to_challenger
        champion = self.runtime.champion
        # each row is scored once: by the champion, or (gate open / canary) by the fallback
        probabilities = np.empty((len(features), len(self.runtime.labels)), dtype=np.float32)
        if not to_challenger.all():
            probabilities[~to_challenger] = champion.predict_proba(features[~to_challenger])
        if to_challenger.any():
            call = pb_utils.InferenceRequest(
                model_name="fallback",
                requested_output_names=["PROBABILITIES"],
                inputs=[pb_utils.Tensor("FEATURES", features[to_challenger])],
            )
            answer = call.exec()
            if answer.has_error():
                pb_utils.Logger.log_error(f"fallback failed: {answer.error().message()}")
                self._metric("fallback_errors").increment(int(to_challenger.sum()))
                probabilities[to_challenger] = champion.predict_proba(features[to_challenger])
                to_challenger = np.zeros_like(to_challenger)
            else:
                tensor = pb_utils.get_output_tensor_by_name(answer, "PROBABILITIES")
                probabilities[to_challenger] = tensor.as_numpy()
                for cause in ("drift", "canary"):
                    if decision.answered_by(cause):
                        self._metric("fallback", cause=cause).increment(decision.answered_by(cause))
        models = self.runtime.model_labels(to_challenger)
        clip_ids = [c for r, b in zip(requests, blocks, strict=True) for c in _clip_ids(r, len(b))]
        genres = self.runtime.observe(
            features,
            probabilities,
            models,
            decision=decision,
            clip_ids=clip_ids,
            received_ns=np.concatenate(received).reshape(-1),
            now_ns=time.time_ns(),
        )
        for genre, model in zip(genres, models, strict=True):
            self._metric("predictions", genre=genre, model=model).increment(1)
        self._update_drift_metrics(decision, self.runtime.drift_state())

        responses, start = [], 0
        for block in blocks:
            rows = slice(start, start + len(block))
            start += len(block)
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[
                        pb_utils.Tensor("PROBABILITIES", probabilities[rows]),
                        pb_utils.Tensor(
                            "MODEL",
                            np.array([[m.encode()] for m in models[rows]], dtype=np.object_),
                        ),
                        pb_utils.Tensor("DRIFT", decision.gate_open[rows].reshape(-1, 1)),
                        pb_utils.Tensor("OOD", decision.ood[rows].reshape(-1, 1)),
                        pb_utils.Tensor("OOD_SCORE", decision.ood_score[rows].reshape(-1, 1)),
                    ]
                )
            )
        return responses

    def finalize(self):
        self.runtime.close()
