"""Files that ship inside the genreops package: the Triton template and the configs.

Found through ``importlib.resources`` rather than relative to a source checkout, so a wheel
installed anywhere finds them (in a checkout the editable install maps the same names onto the
repository's ``triton_models/`` and ``configs/``).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from genreops.core.errors import GenreopsError


def package_dir(package: str) -> Path:
    """The folder of a data package such as ``genreops.triton_models``, as a real path.

    Callers copy, glob and hash these files, so a zip import (not a path) is refused clearly.
    """
    root = files(package)
    if not isinstance(root, Path):
        raise GenreopsError(
            f"{package} is not on the file system ({root!r}); install genreops as a wheel or "
            "an editable checkout, not from a zip"
        )
    return root


def triton_template_dir() -> Path:
    """The Triton model repository template (``triton_models/`` in the repository)."""
    return package_dir("genreops.triton_models")


def config_file(*parts: str) -> Path:
    """A file under the shipped ``configs/`` (e.g. ``config_file("search_spaces.yaml")``)."""
    return package_dir("genreops.configs").joinpath(*parts)
