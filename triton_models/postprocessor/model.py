"""Triton postprocessor: class probabilities -> genre names, in the published label order.

A thin adapter: tensors <-> numpy here, the work in genreops.serving.handlers.PostprocessorHandler.
A malformed request fails alone (INVALID_ARG, naming why).
"""

from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from genreops.serving.handlers import PostprocessorHandler, RequestFailure, Result

INPUTS = ("PROBABILITIES",)


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
        self.handler = PostprocessorHandler.open(args)

    def execute(self, requests: list[Any]) -> list[Any]:
        return [_response(r) for r in self.handler.execute([_inputs(r) for r in requests])]
