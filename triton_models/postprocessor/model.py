"""Triton postprocessor: class probabilities -> genre names, in the published label order.

A thin adapter (tensors <-> numpy in genreops.serving.triton.backend); the work in
genreops.serving.handlers.PostprocessorHandler.
A malformed request fails alone (INVALID_ARG, naming why).
"""

from typing import Any

from genreops.serving.handlers import PostprocessorHandler
from genreops.serving.triton.backend import answer

INPUTS = ("PROBABILITIES",)


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        self.handler = PostprocessorHandler.open(args)

    def execute(self, requests: list[Any]) -> list[Any]:
        return answer(self.handler, requests, INPUTS)
