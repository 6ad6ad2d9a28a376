"""A stand-in for Triton's ``triton_python_backend_utils``: what triton_models/*/model.py use.

Installed as that module name by tests/unit/test_triton_models.py, so the model files run
unchanged without tritonserver. BLS calls (``InferenceRequest.exec``) go to the models
registered in ``MODELS``; metric families and log lines are kept for the tests to read.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np

MODELS: dict[str, Any] = {}  # model name -> a loaded TritonPythonModel, for BLS calls
FAMILIES: dict[str, MetricFamily] = {}  # metric name -> family
LOGGED: list[tuple[str, str]] = []  # (level, message)


# Not in triton_python_backend_utils.py itself: the stub adds them after model.py is imported
# (a module-level ``pb_utils.MetricFamily`` fails to load in tritonserver).
ADDED_BY_STUB = ("Tensor", "InferenceRequest", "InferenceResponse", "TritonError", "Logger",
                 "MetricFamily")  # fmt: skip


@contextlib.contextmanager
def importing() -> Iterator[None]:
    """While model.py is imported: the module as the stub has it then, without those names."""
    module = sys.modules[__name__]
    kept = {name: getattr(module, name) for name in ADDED_BY_STUB}
    for name in ADDED_BY_STUB:
        delattr(module, name)
    try:
        yield
    finally:
        for name, value in kept.items():
            setattr(module, name, value)


def reset() -> None:
    """Forget models, metrics and log lines of an earlier test."""
    MODELS.clear()
    FAMILIES.clear()
    LOGGED.clear()


class TritonError:
    UNKNOWN, INTERNAL, NOT_FOUND, INVALID_ARG, UNAVAILABLE, UNSUPPORTED, ALREADY_EXISTS = range(7)

    def __init__(self, message: str, code: int = UNKNOWN) -> None:
        self._message, self._code = message, code

    def message(self) -> str:
        return self._message

    def code(self) -> int:
        return self._code


class Tensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        if not isinstance(array, np.ndarray):
            raise TypeError(f"Tensor {name}: a numpy array is required, got {type(array)}")
        self._name, self._array = name, array

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array


class InferenceResponse:
    def __init__(
        self, output_tensors: list[Tensor] | None = None, error: TritonError | None = None
    ) -> None:
        self._tensors, self._error = list(output_tensors or []), error

    def output_tensors(self) -> list[Tensor]:
        return self._tensors

    def has_error(self) -> bool:
        return self._error is not None

    def error(self) -> TritonError | None:
        return self._error


class InferenceRequest:
    """A request a model receives, or (``exec``) a BLS call to a model in ``MODELS``."""

    def __init__(
        self,
        model_name: str = "",
        requested_output_names: list[str] | None = None,
        inputs: list[Tensor] | None = None,
    ) -> None:
        self.model_name = model_name
        self.requested_output_names = requested_output_names or []
        self._inputs = list(inputs or [])

    def inputs(self) -> list[Tensor]:
        return self._inputs

    def exec(self) -> InferenceResponse:
        model = MODELS.get(self.model_name)
        if model is None:
            return InferenceResponse(
                error=TritonError(f"model {self.model_name} is not loaded", TritonError.NOT_FOUND)
            )
        response: InferenceResponse = model.execute([self])[0]
        return response


def get_input_tensor_by_name(request: InferenceRequest, name: str) -> Tensor | None:
    return next((t for t in request.inputs() if t.name() == name), None)


def get_output_tensor_by_name(response: InferenceResponse, name: str) -> Tensor | None:
    return next((t for t in response.output_tensors() if t.name() == name), None)


class Logger:
    @staticmethod
    def log_info(message: str) -> None:
        LOGGED.append(("info", message))

    @staticmethod
    def log_warn(message: str) -> None:
        LOGGED.append(("warn", message))

    @staticmethod
    def log_error(message: str) -> None:
        LOGGED.append(("error", message))


class Metric:
    def __init__(self, labels: dict[str, str]) -> None:
        self.labels, self.value = labels, 0.0

    def increment(self, value: float) -> None:
        if value < 0:
            raise ValueError("a counter only goes up")
        self.value += value

    def set(self, value: float) -> None:
        self.value = value


class MetricFamily:
    COUNTER, GAUGE = 0, 1
    kinds: ClassVar[tuple[int, ...]] = (COUNTER, GAUGE)

    def __init__(self, name: str, description: str, kind: int) -> None:
        if kind not in self.kinds:
            raise ValueError(f"unknown metric kind {kind}")
        self.name, self.description, self.kind = name, description, kind
        self.metrics: list[Metric] = []
        FAMILIES[name] = self

    def Metric(self, labels: dict[str, str] | None = None) -> Metric:  # noqa: N802 (Triton's name)
        metric = Metric(dict(labels or {}))
        self.metrics.append(metric)
        return metric


def total(name: str, **labels: str) -> float:
    """Sum of a family's series whose labels include ``labels``."""
    family = FAMILIES[name]
    return sum(
        m.value for m in family.metrics if all(m.labels.get(k) == v for k, v in labels.items())
    )
