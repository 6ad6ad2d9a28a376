"""``python -m genreops.app.cli``: the same as the ``genreops`` console script."""

from genreops.app.cli import app

app()
