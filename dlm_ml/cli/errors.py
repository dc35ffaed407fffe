"""How a command ends when it fails: bad input as a clean list, and every failure in the run's log.

A cohort that fails validation is the user's to fix, not a bug: the command prints every problem
(file, line, ids, message) to stderr and exits with :data:`INPUT_ERROR_EXIT`, without a
traceback. Hydra would otherwise print the exception with a traceback and leave the run's log
file (``<run folder>/<command>.log``) empty; here the reason a run failed is also written to
that log, for input errors and unexpected errors alike (the latter still raise, with their
traceback, as before).
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

from dlm_ml.data.cohort import CohortValidationError
from dlm_ml.data.imaging.integrity import ImageIntegrityError
from dlm_ml.tracking.client import TrackingUnavailableError

#: Errors of the input or the surroundings, not of the code: always a clean message. An image
#: refused when it is read in full (non-finite voxels cannot be seen from a header, so validation
#: cannot catch them); a tracking server that does not answer (its message names the URI).
INPUT_ERRORS: tuple[type[Exception], ...] = (CohortValidationError, ImageIntegrityError, TrackingUnavailableError)

#: Exit status of a command refused for its input (a cohort with errors, a refused request).
INPUT_ERROR_EXIT = 2

log = logging.getLogger("dlm_ml.cli")


def _to_log_files(text: str) -> None:
    """Write ``text`` as an ERROR record to the file handlers of the logging configuration (the
    run's log under Hydra) only: the terminal gets it once, from stderr."""
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, text, None, None)
    logger: logging.Logger | None = log
    while logger is not None:
        for handler in logger.handlers:
            if isinstance(handler, logging.FileHandler) and record.levelno >= handler.level:
                handler.handle(record)
                handler.flush()
        logger = logger.parent if logger.propagate else None


@contextmanager
def command_errors(command: str, refused: tuple[type[Exception], ...] = ()) -> Iterator[None]:
    """Run a command's body: an error of :data:`INPUT_ERRORS`, or an exception of a ``refused``
    type (the command's own deliberate refusals), is printed to stderr as ``<command>: <message>``
    (the error list, one problem a line), written to the log, and ends the process with
    :data:`INPUT_ERROR_EXIT`. Any other exception is written to the log with its traceback and
    raised on; ``SystemExit`` with a message is written to the log and passed on."""
    try:
        yield
    except (*INPUT_ERRORS, *refused) as err:
        text = f"{command}: {err}"
        _to_log_files(text)
        print(text, file=sys.stderr)
        raise SystemExit(INPUT_ERROR_EXIT) from None
    except SystemExit as stop:
        if stop.code is not None and not isinstance(stop.code, int):
            _to_log_files(str(stop.code))
        raise
    except Exception:
        _to_log_files(f"{command} failed:\n{traceback.format_exc()}")
        raise
