"""Triton fallback: the challenger's class probabilities (called by the predictor through BLS)."""

from pathlib import Path

import triton_python_backend_utils as pb_utils

from genreops.serving.runtime import load_published_model


class TritonPythonModel:
    def initialize(self, args):
        self.model = load_published_model(Path(args["model_repository"]) / args["model_version"])

    def execute(self, requests):
        responses = []
        for request in requests:
            features = pb_utils.get_input_tensor_by_name(request, "FEATURES").as_numpy()
            try:
                probabilities = self.model.predict_proba(features)
            except Exception as error:  # fail this request, not the batch
                responses.append(
                    pb_utils.InferenceResponse(
                        error=pb_utils.TritonError(str(error), pb_utils.TritonError.INVALID_ARG)
                    )
                )
                continue
            responses.append(
                pb_utils.InferenceResponse([pb_utils.Tensor("PROBABILITIES", probabilities)])
            )
        return responses
