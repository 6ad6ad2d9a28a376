"""The monitoring store's errors: one base, and the two a writer acts on (retry, set aside)."""

from __future__ import annotations

from genreops.core.errors import GenreopsError


class MonitoringError(GenreopsError):
    """The monitoring store cannot be used as asked (bad URL, unknown table, refused schema)."""


class MonitoringUnavailableError(MonitoringError):
    """The database cannot be reached or used right now; worth retrying later."""


class InvalidRowError(MonitoringError):
    """A row cannot be stored: a field has the wrong type, or the database refused it."""
