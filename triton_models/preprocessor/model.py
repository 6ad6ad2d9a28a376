"""Triton preprocessor: one encoded audio file per item -> its feature vector.

A thin adapter (tensors <-> numpy in genreops.serving.triton.backend); the work in
genreops.serving.handlers.PreprocessorHandler.
A bad file fails only its own request (INVALID_ARG, message "[reason] clip: detail"); the
server and the other requests in the batch carry on.
"""

from typing import Any

from genreops.core.allocator import keep_freed_memory
from genreops.serving.handlers import PreprocessorHandler
from genreops.serving.triton.backend import answer, metric_family

INPUTS = ("AUDIO", "CLIP_ID")


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        # Spectrograms reuse the heap instead of faulting in fresh pages per request; only in
        # this stub: tritonserver returns large buffers (see genreops.core.allocator).
        keep_freed_memory()
        self.handler = PreprocessorHandler.open(args, metric_family)

    def execute(self, requests: list[Any]) -> list[Any]:
        return answer(self.handler, requests, INPUTS)
