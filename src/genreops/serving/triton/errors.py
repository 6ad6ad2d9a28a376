"""What goes wrong with the Triton server or one of its models."""

from __future__ import annotations

from genreops.core.errors import GenreopsError


class TritonServerError(GenreopsError):
    """The Triton server cannot be found, started, reached or stopped.

    (Not ``triton_python_backend_utils.TritonError``, the per-request error our models return.)
    """


class TritonModelError(TritonServerError):
    """Triton refused to load or unload a model; ``reason`` is Triton's own message."""

    def __init__(self, model: str, action: str, reason: str, url: str = "") -> None:
        self.model = model
        self.action = action
        self.reason = reason
        self.url = url
        where = f"Triton at {url}" if url else "Triton"
        super().__init__(f"{where} could not {action} model '{model}': {reason}")

    def __reduce__(self) -> tuple[type[TritonModelError], tuple[str, str, str, str]]:
        return (TritonModelError, (self.model, self.action, self.reason, self.url))
