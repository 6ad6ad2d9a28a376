"""Triton preprocessor: one encoded audio file per item -> its feature vector.

A thin adapter: tensors <-> numpy here, the work in genreops.serving.handlers.PreprocessorHandler.
A bad file fails only its own request (INVALID_ARG, message "[reason] clip: detail"); the
server and the other requests in the batch carry on.
"""

from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from genreops.serving.handlers import PreprocessorHandler, RequestFailure, Result
from genreops.serving.triton.allocator import keep_freed_memory

INPUTS = ("AUDIO", "CLIP_ID")


def _family(name: str, description: str, kind: str) -> Any:
    # looked up when called: the stub adds MetricFamily (and Tensor, ...) after this file loads
    family = pb_utils.MetricFamily
    return family(name=name, description=description, kind=getattr(family, kind.upper()))


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
        # Spectrograms reuse the heap instead of faulting in fresh pages per request; only in
        # this stub: tritonserver returns large buffers (see genreops.serving.triton.allocator).
        keep_freed_memory()
        self.handler = PreprocessorHandler.open(args, _family)

    def execute(self, requests: list[Any]) -> list[Any]:
        return [_response(r) for r in self.handler.execute([_inputs(r) for r in requests])]
