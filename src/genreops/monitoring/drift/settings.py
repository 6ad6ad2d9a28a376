"""The drift record's settings, its error, and the names of the files it keeps."""

from __future__ import annotations

from dataclasses import dataclass

from genreops.core.errors import GenreopsError
from genreops.core.settings import default

REFERENCE_FILE = "reference.parquet"  # the training reference beside each published predictor
STATE_FILE = "state.json"
TESTS_FILE = "drift_tests.jsonl"
LOG_FILE = "worker.log"
WINDOWS_DIR = "windows"  # each test's window, for the drift views
WINDOWS_KEPT = 200
MIN_ROWS = 2  # fewest rows a two-sample test can use
DEFAULT_METHOD = "ks"


class DriftError(GenreopsError):
    """Drift settings, data or the drift worker cannot be used as asked."""


# ------------------------------------------------------------------------------------ settings


@dataclass(frozen=True)
class DriftSettings:
    """How often the record is written and on how many recent requests.

    ``method`` is the per-column test (``genreops.monitoring.drift.stats``: ``ks``,
    ``wasserstein``, ``jensenshannon``); ``None`` chooses per column as Evidently does, which
    switches to Wasserstein distance (threshold 0.1) for references of more than 1,000 rows
    and then flags a third of the columns of a clean 200-row window.
    """

    window: int = default("drift_window")
    min_samples: int = default("drift_min_samples")
    every: int = default("drift_test_every")
    method: str | None = DEFAULT_METHOD

    def __post_init__(self) -> None:
        problems = []
        if self.window < MIN_ROWS:
            problems.append(f"window={self.window} (needs >= {MIN_ROWS})")
        if not MIN_ROWS <= self.min_samples <= self.window:
            problems.append(f"min_samples={self.min_samples} (needs {MIN_ROWS}..window)")
        if self.every < 1:
            problems.append(f"every={self.every} (needs >= 1)")
        if self.method is not None and not self.method.strip():
            problems.append("method='' (name a stat test, or None to choose per column)")
        if problems:
            raise DriftError("invalid drift settings: " + "; ".join(problems))

    def to_argv(self) -> list[str]:
        """The worker's command-line options for these settings."""
        return [
            "--window", str(self.window),
            "--min-samples", str(self.min_samples),
            "--every", str(self.every),
            "--method", self.method or "auto",
        ]  # fmt: skip
