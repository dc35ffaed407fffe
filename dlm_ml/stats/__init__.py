"""Statistics for comparing pCR models with radiologists (numpy, scipy, pandas only).

This package imports nothing else of dlm_ml (docs/design.md §2b). Each submodule
defines ``__all__``; its public names are re-exported here. To add a module,
add one ``from .module import *`` line and one ``*module.__all__`` entry.
"""

from . import calibration, clustered, decision, intervals, operating_points, patient_level, roc
from .calibration import *  # noqa: F401,F403
from .clustered import *  # noqa: F401,F403
from .decision import *  # noqa: F401,F403
from .intervals import *  # noqa: F401,F403
from .operating_points import *  # noqa: F401,F403
from .patient_level import *  # noqa: F401,F403
from .roc import *  # noqa: F401,F403

__all__ = [
    *roc.__all__,
    *clustered.__all__,
    *operating_points.__all__,
    *calibration.__all__,
    *decision.__all__,
    *patient_level.__all__,
    *intervals.__all__,
]

# Multi-reader multi-case analysis and reader agreement. ``dlm_ml.stats.mrmc`` is
# the function (it shadows the module attribute); reach the module's other names
# with ``from dlm_ml.stats.mrmc import ...``.
from . import agreement as _agreement_module  # noqa: E402
from . import mrmc as _mrmc_module
from .agreement import *  # noqa: F401,F403,E402
from .mrmc import *  # noqa: F401,F403,E402

__all__ += [*_mrmc_module.__all__, *_agreement_module.__all__]
