"""The label set: the ten GTZAN genres, in the order used everywhere a fixed order is needed."""

from __future__ import annotations

GENRES: tuple[str, ...] = (
    "blues",
    "classical",
    "country",
    "disco",
    "hiphop",
    "jazz",
    "metal",
    "pop",
    "reggae",
    "rock",
)
