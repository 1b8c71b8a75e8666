"""The best model of a study, served the way MLflow users serve models, predicts what `evaluate` does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from core.runs.logged import load_logged_weights
from core.study import load_spec, run_study
from core.train import predict
from tests.helpers import TINY_CONFIG, free_port, mlflow_client, tiny_study_spec


def wait_for(url: str, process: subprocess.Popen, seconds: float = 180) -> None:
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"the scoring server did not answer at {url} (exit code {process.poll()})")


@pytest.mark.slow
@pytest.mark.parametrize("task, objective", [("auto", "val_acc"), ("regression", "val_rmse")])
def test_the_served_best_model_takes_raw_inputs_and_predicts_what_evaluate_does(tmp_path, task, objective):
    """Classification: class probabilities; regression: values in the targets' own units (the targets'
    statistics are inside the served model), equal to what `predict` gives of the logged weights."""
    config = {**TINY_CONFIG, "task": task, "track": {**TINY_CONFIG["track"], "log_model": True}}
    spec = tiny_study_spec(tmp_path, name="serve", trials=2, config=config, objective={"metric": objective})
    outcome = run_study(load_spec(spec))
    (logged,) = mlflow_client().search_logged_models([mlflow_client().get_experiment_by_name("serve").experiment_id]
                                                     ).to_list()
    _, prepared = load_logged_weights(outcome.best_run_id)  # what evaluate loads: weights + the run's normaliser
    expected = predict(prepared.model, prepared.test, prepared.normalize, prepared.task).cpu().numpy()
    raw = prepared.data.test_x.cpu().numpy()
    assert raw.dtype == np.uint8  # as the data set stores them: 0-255 pixels, not normalised floats

    port = free_port()
    bin_folder = str(Path(sys.executable).parent)  # MLflow starts uvicorn from the environment's bin/
    env = {**os.environ, "PATH": f"{bin_folder}{os.pathsep}{os.environ.get('PATH', '')}"}
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{logged.model_id}",
               "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)]
    with open(tmp_path / "server.log", "wb") as log:
        server = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(f"http://127.0.0.1:{port}/ping", server)
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations",
                                         data=json.dumps({"inputs": raw.tolist()}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            served = np.asarray(json.loads(response.read())["predictions"])
    finally:
        server.terminate()
        server.wait(30)
    assert served.shape == expected.shape == (len(raw), 4 if task == "auto" else 1)
    assert np.allclose(served, expected, rtol=1e-5, atol=1e-5), (tmp_path / "server.log").read_text()[-2000:]
    if task == "regression":  # the synthetic targets are about 50 +- 10: the original units, not standardised ones
        truth = prepared.data.test_y.cpu().numpy()
        assert abs(served.mean() - truth.mean()) < 10 and served.std() > 1
