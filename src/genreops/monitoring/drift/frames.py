"""The wire between the predictor and the drift worker, and the worker's rolling window.

Frames on the worker's stdin: a 4-byte little-endian payload length followed by the payload,
``rows x (n_features + 3)`` little-endian float32 values: each row's features, then what the
gate said of it: its novelty score, the detector's statistic and the gate (0 or 1), in the
order of ``NOVELTY_FIELDS``.
"""

from __future__ import annotations

import logging
import struct
import threading
from collections import deque
from typing import BinaryIO

import numpy as np

from genreops.monitoring.drift.settings import DriftSettings

log = logging.getLogger(__name__)

FRAME_HEADER = struct.Struct("<I")
FRAME_DTYPE = np.dtype("<f4")
MAX_FRAME_BYTES = 64 * 1024 * 1024  # a larger length prefix means a corrupt stream
_READ_BYTES = 1 << 20
# what the gate said of each row, after its features in a frame
NOVELTY_FIELDS = ("ood_score", "drift_statistic", "gate_open")


def encode_frame(features: np.ndarray) -> bytes:
    """One frame for the worker: a vector ``[n_features]`` or a batch ``[rows, n_features]``."""
    payload = np.ascontiguousarray(features, dtype=FRAME_DTYPE).tobytes()
    return FRAME_HEADER.pack(len(payload)) + payload


class RollingWindow:
    """The rolling window, filled by the reader thread; it marks when a test is due.

    A test falls due every ``every`` rows once ``min_samples`` are in, and at every row where
    the gate opens or closes. A due test takes a copy of the window at that moment. If another
    falls due while a test is still running, the newer copy replaces the waiting one (counted
    in ``coalesced``), unless the waiting one marks a gate change: those are never lost.
    """

    def __init__(self, n_features: int, settings: DriftSettings, seen: int = 0) -> None:
        self.n_features = n_features
        self.width = n_features + len(NOVELTY_FIELDS)
        self.settings = settings
        self.rows: deque[np.ndarray] = deque(maxlen=settings.window)
        self.cond = threading.Condition()
        self.samples_seen = seen
        self.last_due = seen
        self.due: deque[tuple[np.ndarray, int, bool]] = deque()  # rows, seen, gate changed
        self.coalesced = 0
        self.rejected_frames = 0
        self.gate_open = False
        self.eof = False
        self.error: str | None = None

    def add(self, values: np.ndarray) -> None:
        s = self.settings
        gate_column = self.width - 1
        with self.cond:
            for row in values:
                self.rows.append(row)
                self.samples_seen += 1
                gate = bool(row[gate_column] > 0.5)
                changed, self.gate_open = gate != self.gate_open, gate
                periodic = (
                    len(self.rows) >= s.min_samples and self.samples_seen - self.last_due >= s.every
                )
                if changed or periodic:
                    if self.due and not self.due[-1][2]:
                        self.due.pop()
                        self.coalesced += 1
                    self.due.append((np.array(self.rows), self.samples_seen, changed))
                    self.last_due = self.samples_seen
            if self.due:
                self.cond.notify_all()

    def read(self, stream: BinaryIO) -> None:
        """Reader thread: drain ``stream`` into the window until EOF, so the pipe never fills.

        Takes whatever is available per read (up to 1 MiB): while a report holds the GIL each
        read waits up to the switch interval for it, so frame-by-frame reads would take in only
        a few hundred frames a second.
        """
        read_some = getattr(stream, "read1", stream.read)
        buffer = bytearray()
        try:
            while True:
                chunk = read_some(_READ_BYTES)
                if not chunk:
                    if buffer:
                        log.warning("stdin ended inside a frame; %d bytes dropped", len(buffer))
                    return
                buffer += chunk
                blocks, used = self._frames(buffer)
                del buffer[:used]
                if blocks:
                    self.add(blocks[0] if len(blocks) == 1 else np.concatenate(blocks))
        except _CorruptStreamError as exc:
            self.error = str(exc)
        except (OSError, ValueError) as exc:  # a closed or broken stdin ends the worker too
            self.error = f"reading stdin failed: {exc}"
        finally:
            with self.cond:
                self.eof = True
                self.cond.notify_all()

    def _frames(self, buffer: bytearray) -> tuple[list[np.ndarray], int]:
        """The complete frames at the start of ``buffer`` and how many bytes they take."""
        row_bytes = self.width * FRAME_DTYPE.itemsize
        blocks: list[np.ndarray] = []
        offset = 0
        while len(buffer) - offset >= FRAME_HEADER.size:
            (size,) = FRAME_HEADER.unpack_from(buffer, offset)
            if size > MAX_FRAME_BYTES:
                raise _CorruptStreamError(
                    f"frame of {size} bytes (limit {MAX_FRAME_BYTES}): corrupt stream"
                )
            start = offset + FRAME_HEADER.size
            if start + size > len(buffer):
                break
            if size == 0 or size % row_bytes:
                self.rejected_frames += 1
                if self.rejected_frames <= 5:
                    log.warning(
                        "dropped a frame of %d bytes: not whole rows of %d float32 values",
                        size,
                        self.width,
                    )
            else:
                count = size // FRAME_DTYPE.itemsize  # copied: the buffer is reused
                values = np.frombuffer(buffer, dtype=FRAME_DTYPE, count=count, offset=start)
                blocks.append(values.reshape(-1, self.width).copy())
            offset = start + size
        return blocks, offset


class _CorruptStreamError(Exception):
    pass
