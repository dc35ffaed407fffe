"""MLflow tracking: the client helpers, run provenance, comparing and reproducing runs."""

from dlm_ml.tracking.client import *  # noqa: F401,F403
