"""genreops: music-genre classification from raw audio to a monitored inference service."""

from genreops.core.errors import AudioError, GenreopsError, SchemaError, StorageError

__version__ = "0.1.0"

__all__ = ["AudioError", "GenreopsError", "SchemaError", "StorageError", "__version__"]
