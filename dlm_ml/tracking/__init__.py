"""MLflow tracking: the client helpers, run provenance, the fold recorder, reproducing runs."""

from dlm_ml.tracking.client import *  # noqa: F401,F403
from dlm_ml.tracking.provenance import git_diff, git_state, hardware, package_versions  # noqa: F401
