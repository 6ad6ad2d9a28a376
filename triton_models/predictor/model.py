"""Triton predictor: the champion answers; the fallback (challenger) answers through BLS while
the drift gate is open or for the canary share. Each request is judged against the training
reference first (genreops.monitoring.novelty: an OOD score and the online drift detector that
moves the gate); the drift record's Evidently tests run in their own process
(genreops.monitoring.drift).

A thin adapter: tensors <-> numpy and the BLS call here, the work in
genreops.serving.handlers.PredictorHandler. A request that cannot be answered fails alone
(its TritonError names why); the others in the batch are answered.
"""

from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from genreops.serving.handlers import PredictorHandler, RequestFailure, Result

INPUTS = ("FEATURES", "RECEIVED_NS", "CLIP_ID")


def _family(name: str, description: str, kind: str) -> Any:
    # looked up when called: the stub adds MetricFamily (and Tensor, ...) after this file loads
    family = pb_utils.MetricFamily
    return family(name=name, description=description, kind=getattr(family, kind.upper()))


def _fallback(features: np.ndarray) -> np.ndarray:
    """The fallback model's probabilities through BLS; raises when it answers an error."""
    answer = pb_utils.InferenceRequest(
        model_name="fallback",
        requested_output_names=["PROBABILITIES"],
        inputs=[pb_utils.Tensor("FEATURES", features)],
    ).exec()
    if answer.has_error():
        raise RuntimeError(answer.error().message())
    return pb_utils.get_output_tensor_by_name(answer, "PROBABILITIES").as_numpy()


def _inputs(request: Any) -> dict[str, np.ndarray | None]:
    tensors = {name: pb_utils.get_input_tensor_by_name(request, name) for name in INPUTS}
    return {name: None if t is None else t.as_numpy() for name, t in tensors.items()}


def _response(result: Result) -> Any:
    if isinstance(result, RequestFailure):
        code = (
            pb_utils.TritonError.INVALID_ARG
            if result.invalid_input
            else pb_utils.TritonError.INTERNAL
        )
        return pb_utils.InferenceResponse(error=pb_utils.TritonError(result.message, code))
    return pb_utils.InferenceResponse([pb_utils.Tensor(name, a) for name, a in result.items()])


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        self.handler = PredictorHandler.open(args, _family, _fallback, pb_utils.Logger.log_error)

    def execute(self, requests: list[Any]) -> list[Any]:
        return [_response(r) for r in self.handler.execute([_inputs(r) for r in requests])]

    def finalize(self) -> None:
        self.handler.close()
