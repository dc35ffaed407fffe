"""One MLflow run lifecycle for every command: create (or reopen), then FINISHED or FAILED.

Every run dlm_ml records goes through :func:`tracked_run`, so a run whose work raised — an
error, Ctrl-C, SIGTERM turned into an exception — never stays RUNNING and never looks
finished.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from mlflow.tracking import MlflowClient

from dlm_ml.tracking.client import set_tags
from dlm_ml.utils.signals import interrupts_deferred


@contextmanager
def tracked_run(client: MlflowClient, experiment_id: str, *, run_name: str | None = None,
                tags: dict[str, str] | None = None, run_id: str | None = None) -> Iterator[str]:
    """Yield the id of a new run (or of ``run_id``, reopened as RUNNING to continue it).

    On normal exit the run is marked FINISHED; when the body raises anything (including
    ``KeyboardInterrupt`` and ``SystemExit``) it is marked FAILED and the exception propagates.
    ``tags`` are set on a reopened run too.
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
    except BaseException:
        with interrupts_deferred():
            client.set_terminated(run_id, "FAILED")
        raise
    with interrupts_deferred():
        client.set_terminated(run_id, "FINISHED")
