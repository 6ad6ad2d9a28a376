"""One exception family, so callers can catch every expected failure with one clause; and how
the names in its messages are shown."""

from __future__ import annotations


def printable(text: str) -> str:
    """``text`` fit for one line of a message or a log: control characters (NUL, newlines),
    invisible formatting (a right-to-left override) and undecodable bytes (surrogate escapes)
    are written as escapes; printable text in any script stays as it is."""
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
    )


def decode_name(raw: bytes) -> str:
    """A name received as bytes (a file name, a request's clip id) as text: UTF-8, each byte
    that is not UTF-8 written as ``\\xNN``, so the name stays unique, readable and storable."""
    return raw.decode("utf-8", "backslashreplace")


class GenreopsError(Exception):
    """Base of every error genreops raises on purpose; the message is meant for users."""


class AudioError(GenreopsError):
    """A clip cannot be used; ``reason`` is a stable code (metrics and manifests group by it)."""

    REASONS = (
        "not_audio",
        "corrupt",
        "empty",
        "silent",
        "too_short",
        "too_long",
        "too_large",
        "bad_sample_rate",
        "unsupported",
        "unreadable",
    )

    def __init__(self, clip: str, reason: str, detail: str) -> None:
        if reason not in self.REASONS:
            raise ValueError(f"unknown AudioError reason {reason!r}")
        self.clip = clip
        self.reason = reason
        self.detail = detail
        # The clip is named as it can be shown: a NUL would cut the message short in C layers
        # (Triton), a newline would forge log lines, a lone surrogate cannot be encoded.
        super().__init__(f"{printable(clip)}: {detail}")

    def __reduce__(self) -> tuple[type[AudioError], tuple[str, str, str]]:
        # Keeps the fields when the error crosses a process boundary (Dask, Prefect results).
        return (AudioError, (self.clip, self.reason, self.detail))


class SchemaError(GenreopsError):
    """Features, tables or models disagree about the feature schema or table shape."""


class StorageError(GenreopsError):
    """A local path or S3 object cannot be listed, read or written."""


class ObjectNotFoundError(StorageError):
    """The object, file or bucket does not exist: a problem of that item, not of the store."""


class ObjectTooLargeError(StorageError):
    """The object is over the size limit; refused before its body is read."""


class StorageUnavailableError(StorageError):
    """The store cannot be reached or is failing; worth retrying later, never a per-item verdict."""


class ExtractionError(GenreopsError):
    """A feature-extraction run failed as a whole (for example too many bad files)."""


class TrainingError(GenreopsError):
    """A model cannot be trained: unusable table, search space or split."""


class RegistryError(GenreopsError):
    """The model registry cannot be read or brought to the requested state."""


class NoveltyError(GenreopsError):
    """Novelty settings or the reference cannot be used as asked."""
