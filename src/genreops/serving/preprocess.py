"""What the preprocessor model does to one encoded file, and how a model reads its parameters.

Kept apart from the predictor's runtime so that the preprocessor's (and the postprocessor's)
Python stubs start without importing scikit-learn, MLflow or the drift record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from genreops.core.errors import SchemaError
from genreops.data.audio import load_audio
from genreops.data.features import SCHEMA_HASH, extract_features


def parameters(model_config: dict[str, Any]) -> dict[str, str]:
    """A model's ``parameters { key, value { string_value } }`` as a plain dict."""
    return {
        key: str(value.get("string_value", ""))
        for key, value in (model_config.get("parameters") or {}).items()
    }


@dataclass(frozen=True)
class PreprocessOptions:
    window_seconds: float = 30.0
    min_seconds: float = 5.0
    max_seconds: float = 900.0
    max_file_bytes: int = 200 * 1024 * 1024

    @classmethod
    def from_parameters(cls, params: dict[str, str]) -> PreprocessOptions:
        expected = params.get("schema_hash", SCHEMA_HASH)
        if expected != SCHEMA_HASH:
            raise SchemaError(
                f"the repository expects feature schema {expected}, this genreops computes "
                f"{SCHEMA_HASH}; publish again with this version"
            )
        return cls(
            window_seconds=float(params.get("window_seconds", cls.window_seconds)),
            min_seconds=float(params.get("min_seconds", cls.min_seconds)),
            max_seconds=float(params.get("max_seconds", cls.max_seconds)),
            max_file_bytes=int(params.get("max_file_bytes", cls.max_file_bytes)),
        )


def featurize(audio: bytes, options: PreprocessOptions, name: str = "request") -> np.ndarray:
    """Encoded file -> float32 feature vector; raises AudioError naming the item and reason."""
    samples = load_audio(
        bytes(audio),
        duration=options.window_seconds,
        name=name,
        min_seconds=options.min_seconds,
        max_seconds=options.max_seconds,
        max_bytes=options.max_file_bytes,
    )
    return extract_features(samples).astype(np.float32)
