"""Triton fallback: the challenger's class probabilities (called by the predictor through BLS).

A thin adapter (tensors <-> numpy in genreops.serving.triton.backend); the work in
genreops.serving.handlers.FallbackHandler.
A request that cannot be scored fails alone (INVALID_ARG, naming why).
"""

from typing import Any

from genreops.serving.handlers import FallbackHandler
from genreops.serving.triton.backend import answer

INPUTS = ("FEATURES",)


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        self.handler = FallbackHandler.open(args)

    def execute(self, requests: list[Any]) -> list[Any]:
        return answer(self.handler, requests, INPUTS)
