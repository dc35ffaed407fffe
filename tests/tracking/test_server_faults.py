"""A tracking server that is gone fails a command fast and says which server: one that dies in
the middle of a run ends the run with an error naming it (instead of minutes of retries per
call), and dlm-preprocess checks the server before any registration or patch work."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest

from dlm_ml.tracking.client import HTTP_FAIL_FAST
from tests.waiting import wait_for

#: A run that logs a metric every 0.2 s until something stops it; touches ``started`` once its
#: first metric is stored.
LOGGING_JOB = textwrap.dedent('''
    import sys
    import time
    from itertools import count
    from pathlib import Path

    from dlm_ml.tracking.client import log_metrics
    from dlm_ml.tracking.run import tracked_run
    from dlm_ml.tracking.tracker import MlflowTracker

    tracker = MlflowTracker(sys.argv[1], "faults")
    with tracked_run(tracker.client, tracker.experiment_id, run_name="server dies") as run_id:
        for step in count():
            log_metrics(tracker.client, run_id, {"loss": 1.0 / (step + 1)}, step=step)
            Path(sys.argv[2]).touch()
            time.sleep(0.2)
''')


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _client_env() -> dict[str, str]:
    """This environment without MLflow request settings of its own (the command chooses them)."""
    return {k: v for k, v in os.environ.items() if k not in HTTP_FAIL_FAST}


@pytest.fixture
def mlflow_server(tmp_path):
    """A real ``mlflow server`` on a free loopback port, in its own process group (killed with
    its workers at the end); yields (url, process)."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path}/server.db", "--artifacts-destination",
         str(tmp_path / "server_artifacts"), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        answered = wait_for(lambda: _answers(url) or server.poll() is not None, 240, poll_s=0.5)
        assert answered and server.poll() is None, \
            (tmp_path / "server.log").read_text()[-3000:]
        yield url, server
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=60)
        log.close()


@pytest.mark.slow
def test_a_server_that_dies_mid_run_ends_the_run_with_an_error_naming_it(tmp_path, mlflow_server):
    url, server = mlflow_server
    job_file, started = tmp_path / "job.py", tmp_path / "started"
    job_file.write_text(LOGGING_JOB)
    job = subprocess.Popen([sys.executable, str(job_file), url, str(started)], env=_client_env(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: started.exists() or job.poll() is not None, 240, poll_s=0.5) and job.poll() is None, \
            job.communicate()[1][-3000:]
        os.killpg(server.pid, signal.SIGKILL)  # the server and its workers die mid-run
        server.wait(timeout=60)
        # MLflow's own retry settings keep a call going for about 4 minutes, and the run makes
        # several more calls while it fails; the bound leaves time for a loaded machine.
        _, stderr = job.communicate(timeout=240)
    finally:
        if job.poll() is None:
            job.kill()
            job.wait(timeout=60)
    assert job.returncode != 0
    assert "TrackingUnavailableError" in stderr and url in stderr, stderr[-3000:]
    assert "could not be marked FAILED" in stderr


@pytest.mark.slow
def test_preprocess_with_an_unreachable_server_fails_before_any_work(tmp_path, handmade_cohort):
    url = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    cache = tmp_path / "cache_home"
    command = [str(Path(sys.executable).with_name("dlm-preprocess")), f"paths.root_dir={tmp_path}",
               f"data.cohort_dir={handmade_cohort}", "data.synthetic.enabled=false", "logger=mlflow",
               f"logger.tracking_uri={url}"]
    done = subprocess.run(command, cwd=tmp_path, env={**_client_env(), "DLM_ML_CACHE": str(cache)},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode != 0
    assert "unreachable" in done.stderr and url in done.stderr, done.stderr[-3000:]
    assert "Traceback" not in done.stderr  # one clean line
    # nothing was validated, registered or cached
    assert "patch cache" not in done.stdout
    for folder in (cache, tmp_path / "outputs" / "cache"):
        assert not folder.exists() or not any(folder.iterdir()), folder
    assert not list(tmp_path.rglob("registration.csv"))
