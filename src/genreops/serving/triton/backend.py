"""What every Triton Python model of ours does with Triton's own types, written once.

Runs only inside a Triton stub process (or beside the tests' stand-in), where the module
``triton_python_backend_utils`` exists. It is looked up when called, never at import: the stub
adds ``Tensor``, ``InferenceResponse``, ``MetricFamily``... to it only after model.py loads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from genreops.serving.handlers import RequestFailure, Result


def backend_utils() -> Any:
    """Triton's ``triton_python_backend_utils`` as the stub has it now."""
    import triton_python_backend_utils

    return triton_python_backend_utils


def request_inputs(request: Any, names: Sequence[str]) -> dict[str, np.ndarray | None]:
    """The request's input tensors as arrays; None for an optional input not sent."""
    pb_utils = backend_utils()
    tensors = {name: pb_utils.get_input_tensor_by_name(request, name) for name in names}
    return {name: None if t is None else t.as_numpy() for name, t in tensors.items()}


def response(result: Result) -> Any:
    """One request's answer, or its own error: the caller's fault or ours."""
    pb_utils = backend_utils()
    if isinstance(result, RequestFailure):
        code = (
            pb_utils.TritonError.INVALID_ARG
            if result.invalid_input
            else pb_utils.TritonError.INTERNAL
        )
        return pb_utils.InferenceResponse(error=pb_utils.TritonError(result.message, code))
    return pb_utils.InferenceResponse([pb_utils.Tensor(name, a) for name, a in result.items()])


def answer(handler: Any, requests: list[Any], names: Sequence[str]) -> list[Any]:
    """Each request through ``handler.execute`` (one batch), one response per request."""
    return [response(r) for r in handler.execute([request_inputs(r, names) for r in requests])]


def metric_family(name: str, description: str, kind: str) -> Any:
    """A custom metric family on the server's /metrics (``kind``: counter or gauge)."""
    family = backend_utils().MetricFamily
    return family(name=name, description=description, kind=getattr(family, kind.upper()))


def call_model(model: str, features: np.ndarray, output: str = "PROBABILITIES") -> np.ndarray:
    """Another model of the server through BLS (the predictor's fallback); raises its error."""
    pb_utils = backend_utils()
    reply = pb_utils.InferenceRequest(
        model_name=model,
        requested_output_names=[output],
        inputs=[pb_utils.Tensor("FEATURES", features)],
    ).exec()
    if reply.has_error():
        raise RuntimeError(reply.error().message())
    return np.asarray(pb_utils.get_output_tensor_by_name(reply, output).as_numpy())


def log_error(message: str) -> None:
    """To the server's log, where operators look."""
    backend_utils().Logger.log_error(message)
