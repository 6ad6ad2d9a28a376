"""Tracking targets fail fast and clearly when the server is not there."""

from __future__ import annotations

import pytest

from genreops.core.errors import GenreopsError
from genreops.training.registry import list_versions
from genreops.training.tracking import TrackingTarget
from helpers import free_port

pytestmark = pytest.mark.unit


def test_an_absent_tracking_server_is_reported_at_once() -> None:
    # MLflow itself would retry for minutes and then raise its own error
    target = TrackingTarget(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(GenreopsError, match="is not answering"):
        list_versions(target)
