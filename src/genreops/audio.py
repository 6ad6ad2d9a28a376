"""Stable public name (DESIGN contract): ``genreops.audio.load_audio``; lives in data.audio."""

from genreops.data.audio import SAMPLE_RATE, SUPPORTED_EXTENSIONS, load_audio

__all__ = ["SAMPLE_RATE", "SUPPORTED_EXTENSIONS", "load_audio"]
