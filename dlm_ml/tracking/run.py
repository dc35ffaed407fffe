"""One MLflow run lifecycle for every command: create (or reopen), then FINISHED or FAILED.

Every run dlm_ml records goes through :func:`tracked_run`, so a run whose work raised — an
error, Ctrl-C, SIGTERM turned into an exception — never stays RUNNING and never looks
finished. A SIGTERM whose interrupt was swallowed on the way (raised inside a finaliser) still
fails the run; a tracking server that stopped answering ends it with an error naming the server.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from dlm_ml.tracking.client import TrackingUnavailableError, server_gone, set_tags
from dlm_ml.utils.signals import interrupts_deferred, raise_if_sigterm_received


@contextmanager
def tracked_run(client: MlflowClient, experiment_id: str, *, run_name: str | None = None,
                tags: dict[str, str] | None = None, run_id: str | None = None) -> Iterator[str]:
    """Yield the id of a new run (or of ``run_id``, reopened as RUNNING to continue it).

    On normal exit the run is marked FINISHED; when the body raises anything (including
    ``KeyboardInterrupt`` and ``SystemExit``), or SIGTERM arrived during it
    (:func:`dlm_ml.utils.signals.raise_if_sigterm_received`), it is marked FAILED and the
    exception propagates. When the store is an HTTP server that no longer answers, the run
    cannot be marked and :class:`~dlm_ml.tracking.client.TrackingUnavailableError` says so
    (an interrupt stays an interrupt, with that message as a note). ``tags`` are set on a
    reopened run too.
    """
    # Each change of a run's state is held together against SIGTERM (dlm_ml.utils.signals): an
    # interrupt in the middle of a commit could leave the run RUNNING for good.
    with interrupts_deferred():
        if run_id is None:
            run_id = client.create_run(experiment_id, run_name=run_name, tags=dict(tags or {})).info.run_id
        else:
            client.update_run(run_id, status="RUNNING")
            if tags:
                set_tags(client, run_id, tags)
    try:
        yield run_id
        raise_if_sigterm_received()
    except BaseException as failure:
        _terminate(client, run_id, "FAILED", failure)
        raise
    _terminate(client, run_id, "FINISHED", None)


def _terminate(client: MlflowClient, run_id: str, status: str, failure: BaseException | None) -> None:
    try:
        with interrupts_deferred():
            client.set_terminated(run_id, status)
    except MlflowException as err:
        gone = server_gone(client.tracking_uri)
        if gone is None:
            raise
        unavailable = TrackingUnavailableError(f"{gone}; run {run_id} could not be marked {status} and stays "
                                               "RUNNING in the store")
        if failure is None or isinstance(failure, Exception):
            raise unavailable from (failure or err)
        failure.add_note(str(unavailable))  # KeyboardInterrupt / SystemExit propagate as they are
