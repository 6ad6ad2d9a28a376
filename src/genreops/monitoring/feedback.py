"""Ground truth after the fact: what served clips really were, stored as labels by clip id.

A feedback file is CSV (a header naming a clip column and a genre column) or JSON (a list of
objects with those keys, or one object mapping clip -> genre). The clip is the id a
prediction was stored under, which is the path or s3:// URL `genreops predict` and
`batch-predict` were given; a relative local path is also tried as an absolute one. Labels
of clips with no prediction yet are stored as well (the prediction may come later) and
counted as unknown; nothing read is dropped without a reason.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genreops.core.errors import GenreopsError
from genreops.core.settings import Settings
from genreops.data.storage import S3Config, read_bytes
from genreops.monitoring.store import (
    LABELS_TABLE,
    MonitoringStore,
    MonitoringUnavailableError,
    MonitoringWriter,
)

CLIP_COLUMNS = ("clip_id", "clip", "path", "file", "filename")
GENRE_COLUMNS = ("genre", "label", "true_genre")
MAX_FEEDBACK_BYTES = 64 * 1024 * 1024  # a label is a line; 64 MB is millions of them
CLIP_LENGTH = int(getattr(LABELS_TABLE.c.clip_id.type, "length", 512))
GENRE_LENGTH = int(getattr(LABELS_TABLE.c.genre.type, "length", 128))


class FeedbackError(GenreopsError):
    """A feedback file cannot be read as a whole (the message names it and why)."""


@dataclass
class FeedbackReport:
    """What one feedback source gave: labels stored or spooled, unknown clips, rows refused."""

    source: str
    stored: int = 0
    spooled: int = 0  # the database was away: kept on disk, replayed by the next writer
    unknown: list[str] = field(default_factory=list)  # stored, but no prediction has that id
    refused: list[str] = field(default_factory=list)  # "row N: reason"
    rejected: int = 0  # refused by the database itself: in the spool folder's rejected file
    checked: bool = True  # False: the database was away, so unknown clips were not looked up

    @property
    def received(self) -> int:
        return self.stored + self.spooled + self.rejected + len(self.refused)


def _pick(names: Iterable[str], wanted: tuple[str, ...], what: str, source: str) -> str:
    by_lower = {name.strip().lower(): name for name in names}
    for name in wanted:
        if name in by_lower:
            return by_lower[name]
    raise FeedbackError(
        f"{source}: no {what} column (one of {', '.join(wanted)}); found {', '.join(by_lower)}"
    )


def parse_feedback(text: str, source: str) -> tuple[list[tuple[str, str]], list[str]]:
    """``(clip, genre)`` pairs in file order, and the rows refused with their reasons."""
    stripped = text.lstrip()
    rows: list[Mapping[str, Any]]
    if stripped.startswith(("[", "{")):
        try:
            data = json.loads(text)
        except ValueError as error:
            raise FeedbackError(f"{source}: not valid JSON ({error})") from error
        if isinstance(data, dict):
            rows = [{"clip_id": clip, "genre": genre} for clip, genre in data.items()]
        elif isinstance(data, list):
            rows = [row if isinstance(row, dict) else {"": row} for row in data]
        else:
            raise FeedbackError(f"{source}: JSON must be a list of objects or one object")
        if not rows:
            return [], []
        names = {name for row in rows for name in row}
        clip_key = _pick(names, CLIP_COLUMNS, "clip", source)
        genre_key = _pick(names, GENRE_COLUMNS, "genre", source)
    else:
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames:
            raise FeedbackError(f"{source}: empty, or no CSV header")
        clip_key = _pick(reader.fieldnames, CLIP_COLUMNS, "clip", source)
        genre_key = _pick(reader.fieldnames, GENRE_COLUMNS, "genre", source)
        rows = list(reader)
    pairs: list[tuple[str, str]] = []
    refused: list[str] = []
    for number, row in enumerate(rows, start=1):
        clip, genre = row.get(clip_key), row.get(genre_key)
        if not isinstance(clip, str) or not clip.strip():
            refused.append(f"row {number}: no clip")
        elif not isinstance(genre, str) or not genre.strip():
            refused.append(f"row {number} ({clip.strip()}): no genre")
        elif len(clip.strip()) > CLIP_LENGTH or len(genre.strip()) > GENRE_LENGTH:
            # the store would cut them, and a cut clip id matches no prediction
            refused.append(f"row {number}: clip or genre longer than the store keeps")
        else:
            pairs.append((clip.strip(), genre.strip()))
    return pairs, refused


def read_feedback(
    location: str | Path, *, s3: S3Config | None = None
) -> tuple[list[tuple[str, str]], list[str]]:
    """``parse_feedback`` of a file or s3:// object, refused over MAX_FEEDBACK_BYTES unread."""
    data = read_bytes(location, s3=s3, max_bytes=MAX_FEEDBACK_BYTES)  # errors name the file
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise FeedbackError(f"{location}: not UTF-8 text ({error.reason})") from error
    return parse_feedback(text, str(location))


def save_labels(
    settings: Settings,
    pairs: Sequence[tuple[str, str]],
    source: str,
    refused: Sequence[str] = (),
    *,
    check_known: bool = True,
) -> FeedbackReport:
    """``record_labels`` into the monitoring store and spool folder of ``settings``."""
    with MonitoringStore(settings.monitoring_db_url) as store:
        with contextlib.suppress(MonitoringUnavailableError):
            store.ensure_schema()  # a first use makes the SQLite folder; away: labels spool
        return record_labels(
            store, settings.monitoring_spool_dir, pairs, source, refused, check_known=check_known
        )


def record_labels(
    store: MonitoringStore,
    spool_dir: Path,
    pairs: Sequence[tuple[str, str]],
    source: str,
    refused: Sequence[str] = (),
    *,
    check_known: bool = True,
) -> FeedbackReport:
    """Store every pair as a label, through the same writer (and spool) as predictions.

    A local path is matched as given, else as absolute. With the database away the labels
    are spooled and replayed like predictions; unknown clips are then not looked up.
    """
    report = FeedbackReport(source=source, refused=list(refused))
    known: set[str] | None = None
    absolute: dict[str, str] = {}
    if check_known and pairs:
        absolute = {clip: str(Path(clip).resolve()) for clip, _ in pairs if "://" not in clip}
        try:
            store.ensure_schema(create_parent=False)  # a missing folder is a store away
            known = store.predicted_clip_ids([*(clip for clip, _ in pairs), *absolute.values()])
        except MonitoringUnavailableError:
            report.checked = False
    with MonitoringWriter(store, spool_dir) as writer:
        for clip, genre in pairs:
            if known is not None and clip not in known:
                if absolute.get(clip) in known:
                    clip = absolute[clip]
                else:
                    report.unknown.append(clip)
            writer.submit_label({"clip_id": clip, "genre": genre, "source": source})
    stats = writer.stats()
    report.stored, report.spooled = stats.stored, stats.spooled
    report.rejected = stats.rejected + stats.lost
    return report
