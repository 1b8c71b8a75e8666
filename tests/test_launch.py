"""`launch`: a study's workers as a SLURM job array (against a real one-node SLURM) or a Kubernetes manifest."""

from __future__ import annotations

import re
import time
from pathlib import Path

import optuna
import psutil
import pytest
import torch
import yaml

from core.__main__ import main
from core.resume import checkpoint_file
from tests.helpers import ROOT, TINY_CONFIG, tiny_study_spec

POSTGRES_URL = "postgresql://nobody@127.0.0.1:1/none"  # never reached: each case ends before the storage is used


def launch(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["launch", *args])
    out, err = capsys.readouterr()
    return code, out, err


# ---- bad input: one line, exit 2, nothing made ------------------------------------------------------------------
@pytest.mark.parametrize("storage, said", [("sqlite:///study.db", "SQLite cannot be shared"),
                                           ("study.journal", "a journal file on a local disk")])
def test_a_storage_the_nodes_cannot_share_is_refused(tmp_path, capsys, storage, said):
    spec = tiny_study_spec(tmp_path)
    code, out, err = launch(capsys, "slurm", str(spec), "--tasks", "2", "--storage", storage)
    assert code == 2 and said in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "study.db").exists() and not (tmp_path / "study.journal").exists()


def test_without_sbatch_it_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    code, out, err = launch(capsys, "slurm", str(tiny_study_spec(tmp_path)), "--tasks", "2", "--storage", POSTGRES_URL)
    assert code == 2 and "sbatch was not found" in err and len(err.strip().splitlines()) == 1


def test_dry_run_prints_a_requeueable_job_array_with_the_warning_signal(tmp_path, capsys):
    spec = tiny_study_spec(tmp_path, name="dry")
    code, out, err = launch(capsys, "slurm", str(spec), "train.epochs=2", "--tasks", "4", "--storage", POSTGRES_URL,
                            "--trials", "9", "--gpus-per-task", "1", "--time", "02:00:00",
                            "--partition", "gpu", "--dry-run")
    assert code == 0, err
    for line in ("#SBATCH --array=0-3", "#SBATCH --gpus-per-task=1", "#SBATCH --time=02:00:00",
                 "#SBATCH --partition=gpu", "#SBATCH --signal=USR1@120", "#SBATCH --requeue"):
        assert line in out.splitlines()
    assert out.startswith("#!/bin/bash\n")
    worker = next(line for line in out.splitlines() if line.startswith("srun "))
    assert f"core study {spec} train.epochs=2 train.checkpoint=true --name dry" in worker
    assert "--storage" not in worker and "postgresql" not in worker  # a password on a command line: seen in ps
    assert f"export CORE_STUDY_STORAGE={POSTGRES_URL}" in out.splitlines()
    assert "--trials 9" in worker and "--workers 1" in worker
    assert 'scontrol requeue "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"' in out


# ---- Kubernetes ---------------------------------------------------------------------------------------------------
def test_kubernetes_manifest_passes_the_schemas(tmp_path, capsys):
    import kubernetes_validate

    spec = tiny_study_spec(tmp_path, name="K8s_Study")
    code, out, err = launch(capsys, "k8s", str(spec), "--tasks", "3", "--storage", "postgresql://me:pw@db/studies",
                            "--image", "registry.example/core:1")
    assert code == 0, err
    objects = list(yaml.safe_load_all(out))
    assert [o["kind"] for o in objects] == ["Secret", "Job", "Job"]
    for resource in objects:
        kubernetes_validate.validate(resource, "1.30.0", strict=True)
    workers = objects[2]["spec"]
    assert workers["completionMode"] == "Indexed" and workers["completions"] == workers["parallelism"] == 3
    pod = workers["template"]["spec"]
    assert pod["restartPolicy"] == "OnFailure"
    command = pod["containers"][0]["command"]
    assert "--storage" not in command  # the worker reads CORE_STUDY_STORAGE, which the Secret fills
    assert {"name": "CORE_STUDY_STORAGE", "valueFrom": {"secretKeyRef": {"name": "k8s-study-storage", "key": "url"}}} \
        in pod["containers"][0]["env"]
    assert "postgresql://me:pw@db/studies" not in str(pod) and objects[0]["stringData"]["url"] in out
    assert objects[1]["spec"]["template"]["spec"]["containers"][0]["command"][-1] == "--create-only"


def test_kubernetes_needs_an_image(tmp_path, capsys):
    code, out, err = launch(capsys, "k8s", str(tiny_study_spec(tmp_path)), "--tasks", "2", "--storage", POSTGRES_URL)
    assert code == 2 and "--image" in err and not out


@pytest.mark.parametrize("given", ["option", "environment"])
def test_create_only_makes_the_study_and_its_parent_once(tmp_path, capsys, monkeypatch, given):
    """What launch does before workers start (and each Kubernetes worker's init container): twice is once. A
    launched worker has its storage in CORE_STUDY_STORAGE, not as --storage."""
    from mlflow.tracking import MlflowClient

    spec, storage = tiny_study_spec(tmp_path, name="made"), str(tmp_path / "made.journal")
    if given == "environment":
        monkeypatch.setenv("CORE_STUDY_STORAGE", storage)
    for _ in range(2):
        assert main(["study", str(spec), *(["--storage", storage] if given == "option" else []), "--create-only"]) == 0
    study = optuna.load_study(study_name="made", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(storage)))
    assert not study.trials
    client = MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("made").experiment_id])
    assert [r.info.run_id for r in runs] == [study.user_attrs["mlflow_parent_run_id"]]
    assert runs[0].info.status == "FINISHED"


# ---- a real SLURM ---------------------------------------------------------------------------------------------------
@pytest.fixture
def slurm(monkeypatch):
    from tests.slurm import throwaway_slurm

    with throwaway_slurm() as cluster:
        monkeypatch.setenv("SLURM_CONF", str(cluster.config))
        monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the tasks import this checkout (sbatch passes the environment)
        yield cluster


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.parametrize("option, said", [(("--partition", "nope"), "invalid partition"),
                                          (("--time", "bad"), "Invalid --time")])
def test_a_refused_submission_is_one_line_and_makes_nothing(tmp_path, capsys, slurm, option, said):
    # the storage is never reached: SLURM's answer comes before the study is made (else this would be an outage)
    code, out, err = launch(capsys, "slurm", str(tiny_study_spec(tmp_path)), "--tasks", "2",
                            "--storage", POSTGRES_URL, *option)
    assert code == 2 and said in err and len(err.strip().splitlines()) == 1
    assert not slurm.squeue("-t", "all")


PREEMPTED_CONFIG = {**TINY_CONFIG, "data": {**TINY_CONFIG["data"], "samples": 8000},
                    "train": {"epochs": 20, "batch_size": 32, "deterministic": True}}


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.postgres
def test_a_study_on_slurm_survives_preemption_and_the_warning_signal(tmp_path, capsys, monkeypatch, slurm):
    """One task is preempted (SIGTERM, requeued by SLURM), another gets SLURM's warning signal (it finishes its
    epoch and requeues itself): 12 trials finish, both cut trials resume from their checkpoints, bit for bit."""
    from tests.postgres import throwaway_cluster

    spec = tiny_study_spec(tmp_path, name="on_slurm", trials=12, config=PREEMPTED_CONFIG,
                           objective={"metric": "val_loss", "direction": "minimize"})
    with throwaway_cluster("studies") as database:
        storage = f"{database.url}/studies"
        code, out, err = launch(capsys, "slurm", str(spec), "--tasks", "3", "--storage", storage)
        assert code == 0, err
        job = re.search(r"submitted job array (\d+)", out).group(1)
        study = optuna.load_study(study_name="on_slurm", storage=storage)
        preempted, first = _a_trial_past_its_first_epoch(study)
        slurm.run("scontrol", "requeue", f"{job}_{first}")  # SLURM stops the task (SIGTERM) and queues it again
        _wait_pending(slurm, f"{job}_{first}")
        warned, second = _a_trial_past_its_first_epoch(study, not_task=first)
        slurm.run("scancel", "--signal=USR1", f"{job}_{second}")  # as --signal=USR1@120 sends it before the end
        _wait_pending(slurm, f"{job}_{second}")  # the task's script requeued it (exit 138)
        for task in (first, second):
            slurm.run("scontrol", "update", f"jobid={job}_{task}", "StartTime=now")  # else held ~121 s
        slurm.wait(lambda: not slurm.squeue("-j", job), 400, step=1)
        _check_the_study(study, {preempted: "SIGTERM", warned: "SIGUSR1"})
    assert not [p for p in psutil.process_iter(["cmdline"]) if str(spec) in " ".join(p.info["cmdline"] or [])]


def _wait_pending(slurm, task: str) -> None:
    slurm.wait(lambda: "PENDING" in slurm.squeue("-j", task, "-o", "%T"), 60)


def _a_trial_past_its_first_epoch(study: optuna.Study, not_task: str = "", seconds: float = 300) -> tuple[int, str]:
    """A running trial with a checkpoint (an epoch done), and the array task of the worker running it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for trial in study.get_trials(states=(optuna.trial.TrialState.RUNNING,)):
            run_id, pid = trial.user_attrs.get("mlflow_run_id"), trial.user_attrs.get("pid")
            if not (run_id and pid and checkpoint_file(run_id).exists()) or "retry_of" in trial.user_attrs:
                continue  # (a retry cut again would resume in a chain: one cut per trial keeps the checks plain)
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue  # it just ended
            task = next(v for v in environ if v.startswith(b"SLURM_ARRAY_TASK_ID=")).split(b"=")[1].decode()
            if task != not_task:
                return trial.number, task
        time.sleep(0.1)
    raise TimeoutError("no trial got past its first epoch")


def _check_the_study(study: optuna.Study, cut: dict[int, str]) -> None:
    from mlflow.tracking import MlflowClient

    from core.runs.logged import logged_run
    from core.train import fit

    trials, states, client = study.get_trials(), optuna.trial.TrialState, MlflowClient()
    assert sum(t.state == states.COMPLETE for t in trials) == 12
    assert not [t.number for t in trials if t.state in (states.RUNNING, states.WAITING)]
    runs = client.search_runs([client.get_experiment_by_name("on_slurm").experiment_id])
    assert not [r.info.run_id for r in runs if r.info.status == "RUNNING"]
    for number, signal_name in cut.items():
        killed = trials[number].user_attrs["mlflow_run_id"]
        assert trials[number].state == states.FAIL and client.get_run(killed).info.status == "KILLED"
        retry = next(t for t in trials if t.user_attrs.get("retry_of") == number)
        assert retry.user_attrs["retry_reason"] == f"stopped by {signal_name}"  # handed back, not swept as dead
        assert retry.state == states.COMPLETE and retry.user_attrs["resumed_from"] == killed
        resumed = client.get_run(retry.user_attrs["mlflow_run_id"])
        assert resumed.data.tags["resumed_from"] == killed
        epochs_kept = len(client.get_metric_history(killed, "epoch/val_loss"))
        if signal_name == "SIGUSR1":  # the epoch it was in finished and was saved: none is trained twice
            assert int(resumed.data.tags["resumed_at_epoch"]) == epochs_kept
        config = logged_run(resumed.info.run_id)[1]
        try:
            assert fit(config).metrics["final_val_loss"] == retry.value  # went on bit for bit (deterministic CPU)
        finally:
            torch.use_deterministic_algorithms(False)  # a global flag: later tests must not inherit it
