"""Stage 1, data: audio decoding, GTZAN-layout datasets, storage, features, extraction, tables."""
