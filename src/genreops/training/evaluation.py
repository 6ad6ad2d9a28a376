"""How a model is judged: the metrics every model is compared by, per split.

Plain multiclass G-mean is 0 whenever one genre gets no recall; the corrected G-mean
(``correction=GMEAN_CORRECTION``) keeps a signal for the tuner and is reported beside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from imblearn.metrics import classification_report_imbalanced, geometric_mean_score
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    classification_report,
    confusion_matrix,
    matthews_corrcoef,
    precision_recall_fscore_support,
)

from genreops.training.models import GenreClassifier

GMEAN_CORRECTION = 1e-3


def corrected_gmean(codes: np.ndarray, predicted: np.ndarray) -> float:
    """Multiclass G-mean with ``GMEAN_CORRECTION``: what the studies maximise."""
    return float(
        geometric_mean_score(codes, predicted, average="multiclass", correction=GMEAN_CORRECTION)
    )


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """The metrics every model is judged and compared by (names are stable MLflow keys)."""
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, average="macro", zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "precision_macro": float(precision),
        "recall_macro": float(recall),
        "f1_macro": float(f1),
        "mcc": float(matthews_corrcoef(y_true, y_pred)),
        "gmean": float(geometric_mean_score(y_true, y_pred, average="multiclass")),
        "gmean_corrected": float(
            geometric_mean_score(y_true, y_pred, average="multiclass", correction=GMEAN_CORRECTION)
        ),
    }


@dataclass(frozen=True)
class Evaluation:
    """How a model did on one split: metrics, confusion matrix and a printable report."""

    split: str
    metrics: dict[str, float]
    confusion: np.ndarray
    report: str
    n_rows: int


def evaluate(
    classifier: GenreClassifier, features: pd.DataFrame, labels: pd.Series, split: str
) -> Evaluation:
    return evaluate_predictions(
        labels.to_numpy(dtype=object), classifier.predict(features), classifier.genres, split
    )


def evaluate_predictions(
    truth: np.ndarray, predicted: np.ndarray, genres: list[str], split: str
) -> Evaluation:
    """Metrics, confusion matrix and reports of genre-name predictions."""
    report = classification_report(truth, predicted, labels=genres, zero_division=0, digits=3)
    imbalanced = classification_report_imbalanced(
        truth, predicted, labels=genres, zero_division=0, digits=3
    )
    return Evaluation(
        split=split,
        metrics=classification_metrics(truth, predicted),
        confusion=confusion_matrix(truth, predicted, labels=genres),
        report=f"{report}\n{imbalanced}",
        n_rows=len(truth),
    )
