"""The genres a published version answers with: read by the postprocessor, written by publish.

Light on purpose (numpy only): the postprocessor's stub should not import the predictor's
runtime to turn probabilities into names.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

LABELS_FILE = "labels.json"


def load_labels(folder: Path) -> np.ndarray:
    return np.asarray(json.loads((folder / LABELS_FILE).read_text()), dtype=object)


def most_likely(probabilities: np.ndarray, labels: np.ndarray) -> list[str]:
    """Row-wise most likely genre."""
    return [str(g) for g in labels[np.argmax(probabilities, axis=1)]]


def genre_names(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Row-wise most likely genre, as bytes for a TYPE_STRING tensor of shape [n, 1]."""
    return np.array([[g.encode()] for g in most_likely(probabilities, labels)], dtype=np.object_)
