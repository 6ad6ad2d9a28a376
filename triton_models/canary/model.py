"""Triton canary: a retrained model's class probabilities, on trial (the predictor calls it
through BLS for the canary share of traffic).

A thin adapter (tensors <-> numpy in genreops.serving.triton.backend); the work in
genreops.serving.handlers.FallbackHandler, as for the fallback. With no canary published in
this version, every request fails naming why (the predictor then answers as usual).
"""

from typing import Any

from genreops.serving.handlers import FallbackHandler
from genreops.serving.triton.backend import answer

INPUTS = ("FEATURES",)


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        self.handler = FallbackHandler.open(args, optional=True)

    def execute(self, requests: list[Any]) -> list[Any]:
        return answer(self.handler, requests, INPUTS)
