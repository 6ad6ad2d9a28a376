"""``python -m genreops.monitoring.drift``: the drift worker (see ``worker.main``)."""

import sys

from genreops.monitoring.drift.worker import main

sys.exit(main())
