"""Triton predictor: the champion answers; the fallback (challenger) answers through BLS while
the drift gate is open or for the challenger share, and a canary on trial (BLS to ``canary``)
for the canary share. Each request is judged against the training
reference first (genreops.monitoring.novelty: an OOD score and the online drift detector that
moves the gate); the drift record's per-column tests run in their own process
(genreops.monitoring.drift).

A thin adapter (tensors <-> numpy and the BLS call in genreops.serving.triton.backend); the work in
genreops.serving.handlers.PredictorHandler. A request that cannot be answered fails alone
(its TritonError names why); the others in the batch are answered.
"""

from typing import Any

import numpy as np

from genreops.serving.handlers import PredictorHandler
from genreops.serving.triton.backend import answer, call_model, log_error, metric_family

INPUTS = ("FEATURES", "RECEIVED_NS", "CLIP_ID")


def _fallback(features: np.ndarray) -> np.ndarray:
    return call_model("fallback", features)


def _canary(features: np.ndarray) -> np.ndarray:
    return call_model("canary", features)


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        self.handler = PredictorHandler.open(
            args, metric_family, _fallback, log_error, canary=_canary
        )

    def execute(self, requests: list[Any]) -> list[Any]:
        return answer(self.handler, requests, INPUTS)

    def finalize(self) -> None:
        self.handler.close()
