"""Triton preprocessor: one encoded audio file per item -> its feature vector.

A bad file fails only its own request (INVALID_ARG, message "[reason] clip: detail"); the
server and the other requests in the batch carry on.
"""

import json
import time

import numpy as np
import triton_python_backend_utils as pb_utils

from genreops.core.errors import AudioError, decode_name
from genreops.serving.runtime import PreprocessOptions, featurize, parameters
from genreops.serving.triton.allocator import keep_freed_memory


def _clip_ids(request, n):
    tensor = pb_utils.get_input_tensor_by_name(request, "CLIP_ID")
    if tensor is None:
        return ["request"] * n
    return [decode_name(bytes(item[0]))[:256] or "request" for item in tensor.as_numpy()]


class TritonPythonModel:
    def initialize(self, args):
        # Spectrograms reuse the heap instead of faulting in fresh pages per request; only in
        # this stub: tritonserver returns large buffers (see genreops.serving.triton.allocator).
        keep_freed_memory()
        config = json.loads(args["model_config"])
        self.options = PreprocessOptions.from_parameters(parameters(config))
        self.bad_family = pb_utils.MetricFamily(
            name="genreops_bad_inputs_total",
            description="Inputs the preprocessor refused, by reason",
            kind=pb_utils.MetricFamily.COUNTER,
        )
        self.time_family = pb_utils.MetricFamily(
            name="genreops_preprocess_seconds_total",
            description="Seconds spent decoding and extracting features",
            kind=pb_utils.MetricFamily.COUNTER,
        )
        self.items_family = pb_utils.MetricFamily(
            name="genreops_preprocessed_items_total",
            description="Audio files turned into feature vectors",
            kind=pb_utils.MetricFamily.COUNTER,
        )
        self.seconds = self.time_family.Metric(labels={})
        self.items = self.items_family.Metric(labels={})
        # one series per reason from the start at 0, so rate() and alerts see the first one
        self.bad = {
            reason: self.bad_family.Metric(labels={"reason": reason})
            for reason in AudioError.REASONS
        }

    def _refuse(self, reason, message):
        if reason not in self.bad:
            self.bad[reason] = self.bad_family.Metric(labels={"reason": reason})
        self.bad[reason].increment(1)
        return pb_utils.InferenceResponse(
            error=pb_utils.TritonError(f"[{reason}] {message}", pb_utils.TritonError.INVALID_ARG)
        )

    def execute(self, requests):
        responses = []
        for request in requests:
            received = time.time_ns()
            started = time.perf_counter()
            audio = pb_utils.get_input_tensor_by_name(request, "AUDIO").as_numpy()
            names = _clip_ids(request, len(audio))
            try:
                features = np.stack(
                    [
                        featurize(item[0], self.options, name)
                        for item, name in zip(audio, names, strict=True)
                    ]
                )
            except AudioError as error:
                responses.append(self._refuse(error.reason, str(error)))
                continue
            except Exception as error:  # one bad item never fails the batch
                responses.append(self._refuse("unreadable", f"{names[0]}: {error}"))
                continue
            self.seconds.increment(time.perf_counter() - started)
            self.items.increment(len(features))
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[
                        pb_utils.Tensor("FEATURES", features),
                        pb_utils.Tensor(
                            "RECEIVED_NS", np.full((len(features), 1), received, dtype=np.int64)
                        ),
                    ]
                )
            )
        return responses
