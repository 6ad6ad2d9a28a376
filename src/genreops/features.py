"""Stable public names (DESIGN contract) for the feature schema; they live in data.features."""

from genreops.data.features import FEATURE_NAMES, SCHEMA_HASH, SCHEMA_VERSION, extract_features

__all__ = ["FEATURE_NAMES", "SCHEMA_HASH", "SCHEMA_VERSION", "extract_features"]
