"""Triton postprocessor: class probabilities -> genre names, in the published label order."""

from pathlib import Path

import triton_python_backend_utils as pb_utils

from genreops.serving.runtime import genre_names, load_labels


class TritonPythonModel:
    def initialize(self, args):
        self.labels = load_labels(Path(args["model_repository"]) / args["model_version"])

    def execute(self, requests):
        responses = []
        for request in requests:
            probabilities = pb_utils.get_input_tensor_by_name(request, "PROBABILITIES").as_numpy()
            responses.append(
                pb_utils.InferenceResponse(
                    [pb_utils.Tensor("GENRE", genre_names(probabilities, self.labels))]
                )
            )
        return responses
