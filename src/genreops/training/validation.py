"""How a configuration is scored: k-fold cross-validation on train+val for a small table,
else the table's own train/val split; and the folds, run a few at a time.

On a small table the validation split is a few rows per genre, and a study tuned on it chases
noise. Up to ``cv_max_rows`` rows of train+val each configuration is therefore scored by
stratified k-fold cross-validation on train+val (the pooled out-of-fold predictions); larger
tables keep the train/val split.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

from genreops.data.feature_table import FeatureTable

CV_FOLDS = 4  # folds of the cross-validation objective (2 cores: two rounds of two folds)
CV_MAX_ROWS = 5000  # above this many train+val rows the table's own val split is used


@dataclass(frozen=True)
class Scheme:
    """How a configuration is scored: the rows of train+val and the folds over them.

    ``folds`` are (fit rows, scored rows) index pairs into ``features``; the train/val split
    is one such pair, k-fold cross-validation k of them. ``scored`` are the rows that get an
    out-of-fold prediction (all of train+val under cross-validation, val otherwise).
    """

    features: np.ndarray
    codes: np.ndarray
    folds: list[tuple[np.ndarray, np.ndarray]]
    description: str
    suffix: str  # in study names, so a shared storage never mixes schemes

    @property
    def cross_validated(self) -> bool:
        return len(self.folds) > 1

    @property
    def scored(self) -> np.ndarray:
        return np.sort(np.concatenate([scored for _, scored in self.folds]))


def scheme_for(
    table: FeatureTable, *, cv_folds: int = CV_FOLDS, cv_max_rows: int = CV_MAX_ROWS, seed: int = 0
) -> Scheme:
    """Cross-validation on train+val for a small table, else the table's train/val split.

    The folds never outnumber the rows of the rarest genre (every fold then fits on every
    genre); a table too small for two folds keeps its split.
    """
    features, labels = table.part("train", "val")
    code_of = {g: i for i, g in enumerate(table.genres)}
    codes = labels.map(code_of).to_numpy(dtype=np.int64)
    matrix = features.to_numpy(np.float64)
    folds = min(cv_folds, int(np.bincount(codes).min()))
    if cv_folds >= 2 and folds >= 2 and len(codes) <= cv_max_rows:
        splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
        return Scheme(
            matrix,
            codes,
            [(fit, scored) for fit, scored in splitter.split(matrix, codes)],
            f"{folds}-fold stratified cross-validation on train+val ({len(codes)} rows)",
            f"-cv{folds}",
        )
    part = table.split[table.split.isin(["train", "val"])].to_numpy()
    fit, scored = np.flatnonzero(part == "train"), np.flatnonzero(part == "val")
    return Scheme(
        matrix,
        codes,
        [(fit, scored)],
        f"train/val split ({len(fit)} -> {len(scored)} rows)",
        "",
    )


class Folds:
    """Runs one configuration's folds, two (or ``n_jobs``) at a time, in fold order.

    Each fold's model gets ``n_jobs // workers`` threads; under cross-validation BLAS pools
    are limited to that too, so the folds do not fight over the cores.
    """

    def __init__(self, scheme: Scheme, n_jobs: int) -> None:
        self.scheme = scheme
        self.workers = max(1, min(n_jobs, len(scheme.folds)))
        self.fit_jobs = max(1, n_jobs // self.workers)
        self._pool: ThreadPoolExecutor | None = None

    @contextmanager
    def running(self) -> Iterator[Folds]:
        if self.workers == 1:
            yield self
            return
        with (
            ThreadPoolExecutor(self.workers, thread_name_prefix="genreops-fold") as pool,
            threadpool_limits(limits=self.fit_jobs, user_api="blas"),
        ):
            self._pool = pool
            try:
                yield self
            finally:
                self._pool = None

    def map(self, job: Callable[[int], Any]) -> Iterator[Any]:
        """``job(fold)`` per fold, results in fold order; closing the iterator early (a pruned
        trial) cancels the folds not yet started."""
        indices = range(len(self.scheme.folds))
        if self._pool is None:
            return map(job, indices)
        return self._pool.map(job, indices)
