"""`python -m benchmarks.gpu_check` (or `make gpu-check`): every CUDA path once, on the machine's GPU, in one report.

The `gpu` tests (pytest -m gpu), then each path as a user meets it: a train, a deterministic train twice
(bit-identical), torch.compile over two fits of different widths (recompiles counted), a `train` killed
(SIGKILL) after a checkpoint and resumed, bit for bit against the same run left alone, a 2-worker study with
--gpus on the devices there are, `reproduce` and `evaluate` of its best trial, its served model (MLflow's
pyfunc, raw inputs) against `evaluate`, and the GPU benchmark rows. Written to test-artifacts/gpu-check.md
(and .json). Designed to finish within 5 minutes on one H100.

Without CUDA it says so in one line and exits 2. `--device cpu` is a dry pass of the same steps on the CPU
(the gpu tests, compile and the benchmark rows left out): it checks this script, not the GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "test-artifacts" / "gpu-check.md"
SMALL = {"data.name": "synthetic", "data.samples": 2000, "data.shape": [3, 16, 16], "data.num_classes": 4,
         "model.name": "small_cnn", "model.channels": [16, 32], "train.epochs": 3, "train.batch_size": 64,
         "track.visdom": "off", "track.figures": False}
# ~25 epochs of ~0.2 s: long enough to be killed after a checkpoint and before the end
KILLED = {**SMALL, "data.samples": 4000, "train.batch_size": 16, "train.epochs": 25, "train.deterministic": True,
          "model.dropout": 0.2, "train.augment": "shift", "train.shift": 1, "optim.name": "adam",
          "train.checkpoint": True, "track.log_model": True}


@dataclass
class Check:
    """Where the check runs: its device ("cuda", or "cpu" for the dry pass) and its own store in `folder`."""

    device: str
    folder: Path
    gpus: int = 0
    facts: dict[str, str] = field(default_factory=dict)  # e.g. the study's best run, for the later steps

    def config(self, **extra):
        from core.config import Config

        return Config().apply({**SMALL, "device": self.device, **extra})

    def killed(self) -> dict:
        """The config killed mid-training: smaller on the CPU, where an epoch takes longer."""
        smaller = {"data.samples": 800, "train.epochs": 12} if self.device == "cpu" else {}
        return {**KILLED, **smaller, "device": self.device}

    def cli(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "core", *args], cwd=self.folder, env=self.env(),
                              capture_output=True, text=True, timeout=timeout)

    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": os.environ["MLFLOW_TRACKING_URI"]}


@dataclass
class Outcome:
    step: str
    ok: bool
    seconds: float
    detail: str


def overrides(settings: dict) -> list[str]:
    as_text = lambda value: str(value).lower() if isinstance(value, bool) else str(value)  # noqa: E731
    return [f"{key}={as_text(value).replace(' ', '')}" for key, value in settings.items()]


def without_time(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [h | {"epoch_seconds": 0} for h in history]


# ---- the steps: each returns (ok, detail) -----------------------------------------------------------------

def gpu_tests(check: Check) -> tuple[bool, str]:
    result = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
                             "tests/test_gpu.py"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    last = (result.stdout.strip().splitlines() or ["no output"])[-1]
    (check.folder / "pytest-gpu.log").write_text(result.stdout + result.stderr)
    return result.returncode == 0, last


def train(check: Check) -> tuple[bool, str]:
    from core.train import fit

    result = fit(check.config())
    seconds = [round(h["epoch_seconds"], 3) for h in result.history]
    return result.metrics["final_val_acc"] > 0.5, f"val_acc {result.metrics['final_val_acc']:.3f}, epochs {seconds} s"


def deterministic_train(check: Check) -> tuple[bool, str]:
    import torch

    from core.train import fit

    config = {"train.deterministic": True, "model.dropout": 0.2}
    first, second = fit(check.config(**config)), fit(check.config(**config))
    torch.use_deterministic_algorithms(False)
    same = without_time(first.history) == without_time(second.history) and all(
        torch.equal(a, b) for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()))
    return same, "two runs bit-identical (history, weights)" if same else "two runs differ"


def compile_two_widths(check: Check) -> tuple[bool, str]:
    from core.train import fit

    parts = []
    for width in (16, 32):  # as two trials of a study: Dynamo is reset for each fit
        result = fit(check.config(**{"train.compile": True, "model.channels": [width, width]}))
        parts.append((width, result.extra["compile_seconds"], int(result.extra["compiled_graphs"]),
                      result.metrics["final_val_acc"]))
    ok = all(graphs <= 6 and acc > 0.5 for _, _, graphs, acc in parts)
    return ok, "; ".join(f"width {w}: compiled {s:.1f} s, {g} graphs, val_acc {a:.3f}" for w, s, g, a in parts)


def killed_and_resumed(check: Check) -> tuple[bool, str]:
    from core.resume import checkpoint_file
    from core.tracking import mlflow_store

    settings = overrides(check.killed())
    with open(check.folder / "killed.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "core", "train", *settings, "track.run_name=killed"],
                                   cwd=check.folder, env=check.env(), stdout=log, stderr=subprocess.STDOUT)
        run_id = wait_for_checkpoint(process, checkpoint_file)
        process.send_signal(signal.SIGKILL)
        process.wait()
    resumed = check.cli("train", "--resume", run_id)
    whole = check.cli("train", *settings, "track.run_name=whole")
    if resumed.returncode or whole.returncode:
        return False, f"exit codes: resume {resumed.returncode}, whole {whole.returncode}: {resumed.stderr[-300:]}"
    runs = mlflow_store.client().search_runs([mlflow_store.experiment_id("train")])
    alone = next(r for r in runs if r.info.run_name == "whole")
    again = next(r for r in runs if r.data.tags.get("resumed_from") == run_id)
    keys = ("summary/test_acc", "summary/test_loss", "summary/final_train_loss", "summary/final_val_loss")
    same = all(again.data.metrics[key] == alone.data.metrics[key] for key in keys)
    return same, (f"killed, resumed at epoch {again.data.tags.get('resumed_at_epoch')}: {', '.join(keys)} "
                  f"{'equal to' if same else 'DIFFER from'} the uninterrupted run's")


def wait_for_checkpoint(process: subprocess.Popen, checkpoint_file: Callable, timeout: float = 120) -> str:
    """The run id of a `train` process, once its first checkpoint is written."""
    from core.tracking import mlflow_store

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            running = mlflow_store.client().search_runs([mlflow_store.experiment_id("train")],
                                                        "attributes.status = 'RUNNING'")
        except Exception:  # the store is being created by the process
            running = []
        for run in running:
            if checkpoint_file(run.info.run_id).is_file():
                return run.info.run_id
        time.sleep(0.05)
    raise RuntimeError(f"no checkpoint appeared (train exited {process.poll()})")


def study_two_workers(check: Check) -> tuple[bool, str]:
    import yaml

    # 4x4 images of 10 classes: hard enough (~0.9 test accuracy) that bf16 against fp32 can change a prediction
    config = {"data": {"name": "synthetic", "samples": 2000, "shape": [1, 4, 4], "num_classes": 10},
              "model": {"name": "small_cnn", "channels": [16, 32]}, "device": check.device,
              "train": {"epochs": 3, "batch_size": 64, "deterministic": True},
              "track": {"visdom": "off", "figures": False, "log_model": True}}
    spec = {"name": "gpu_check", "seed": 0, "config": config,
            "space": {"optim.lr": {"type": "float", "low": 0.01, "high": 0.3, "log": True}},
            "objective": {"metric": "val_acc", "direction": "maximize"}, "sampler": {"name": "random"},
            "pruner": {"name": "none"}, "budget": {"trials": 4}}
    (check.folder / "study.yaml").write_text(yaml.safe_dump(spec))
    gpus = ["--gpus", ",".join(str(i) for i in range(check.gpus))] if check.gpus else []
    result = check.cli("study", "study.yaml", "--workers", "2", *gpus)
    if result.returncode:
        return False, f"exit {result.returncode}: {result.stderr.strip()[-300:]}"
    from core.tracking import mlflow_store

    trials = [r for r in mlflow_store.client().search_runs([mlflow_store.experiment_id("gpu_check")])
              if "trial_number" in r.data.tags]
    best = max(trials, key=lambda r: r.data.metrics.get("summary/final_val_acc", 0))
    check.facts["best_run"] = best.info.run_id
    seen = sorted({(r.data.tags.get("pid"), r.data.tags.get("cuda_visible_devices", "-")) for r in trials})
    return len(trials) == 4, f"4 trials by (pid, CUDA_VISIBLE_DEVICES) {seen}; --gpus {gpus[1] if gpus else 'none'}"


def reproduce_and_evaluate(check: Check) -> tuple[bool, str]:
    run_id = check.facts["best_run"]
    again = check.cli("reproduce", run_id)
    evaluated = check.cli("evaluate", run_id)
    verdict = lambda result: (result.stdout.strip().splitlines() or [result.stderr.strip()])[-1]  # noqa: E731
    first = next((line for line in again.stdout.splitlines() if line.startswith(("agree", "DIFFER"))), verdict(again))
    ok = again.returncode == 0 and evaluated.returncode == 0
    return ok, (f"reproduce: {first} (exit {again.returncode}); "
                f"evaluate: {verdict(evaluated)} (exit {evaluated.returncode})")


def served_against_evaluate(check: Check) -> tuple[bool, str]:
    import mlflow
    import numpy as np

    from core.reproduce import evaluate_logged_model
    from core.runs.logged import load_logged_weights
    from core.tracking import mlflow_store

    run_id = check.facts["best_run"]
    models = mlflow_store.client().search_logged_models([mlflow_store.experiment_id("gpu_check")]).to_list()
    served = mlflow.pyfunc.load_model(f"models:/{models[0].model_id}")
    _, prepared = load_logged_weights(run_id)
    raw, labels = prepared.data.test_x.cpu().numpy(), prepared.data.test_y.cpu().numpy()
    out = served.predict(raw)
    probabilities = np.asarray(out["probabilities"] if isinstance(out, dict) else out)
    served_acc = float((probabilities.argmax(axis=1) == labels).mean())
    _, now = evaluate_logged_model(run_id)
    ok = abs(served_acc - now["test_acc"]) <= 1 / len(labels)
    return ok, (f"served test accuracy {served_acc:.4f}, evaluate {now['test_acc']:.4f} "
                f"({'agree' if ok else 'DIFFER: the served model should give what evaluate scored'})")


def benchmark_rows(check: Check) -> tuple[bool, str]:
    from benchmarks import gpu
    from benchmarks.table import markdown

    rows = gpu.run(quick=True)
    check.facts["benchmarks"] = markdown(rows, "GPU benchmark rows (quick)")
    return bool(rows), f"{len(rows)} rows (below)"


STEPS: list[tuple[str, Callable[[Check], tuple[bool, str]], bool]] = [  # (name, step, runs in the dry pass)
    ("gpu tests (pytest -m gpu)", gpu_tests, False),
    ("train", train, True),
    ("deterministic train, twice", deterministic_train, True),
    ("torch.compile, two widths", compile_two_widths, False),
    ("train killed (SIGKILL) after a checkpoint, resumed", killed_and_resumed, True),
    ("study, 2 workers, --gpus", study_two_workers, True),
    ("reproduce and evaluate the best trial", reproduce_and_evaluate, True),
    ("served model against evaluate", served_against_evaluate, True),
    ("GPU benchmark rows", benchmark_rows, False),
]


def run_steps(check: Check, dry: bool) -> list[Outcome]:
    outcomes = []
    for name, step, in_dry_pass in STEPS:
        if dry and not in_dry_pass:
            outcomes.append(Outcome(name, True, 0.0, "left out of the dry pass"))
            continue
        started = time.perf_counter()
        try:
            ok, detail = step(check)
        except Exception as error:  # a step that breaks is reported, and the others still run
            ok, detail = False, f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            (check.folder / f"{step.__name__}.traceback").write_text(traceback.format_exc())
        outcomes.append(Outcome(name, ok, time.perf_counter() - started, detail))
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}", flush=True)
    return outcomes


def write_report(check: Check, outcomes: list[Outcome], path: Path, seconds: float) -> None:
    from benchmarks.table import machine

    lines = [f"# gpu-check ({check.device}, {seconds:.0f} s)", "", f"Machine: {machine()}", "",
             "| step | ok | seconds | detail |", "|---|---|---|---|"]
    lines += [f"| {o.step} | {'yes' if o.ok else 'NO'} | {o.seconds:.1f} | {o.detail} |" for o in outcomes]
    if "benchmarks" in check.facts:
        lines += ["", check.facts["benchmarks"]]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    path.with_suffix(".json").write_text(json.dumps({"device": check.device, "machine": machine(),
                                                     "seconds": seconds,
                                                     "steps": [asdict(o) for o in outcomes]}, indent=2) + "\n")


@contextlib.contextmanager
def own_store() -> Iterator[Path]:
    """A temporary folder with an MLflow store of its own (MLFLOW_TRACKING_URI), put back as it was after."""
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as folder:
        (Path(folder) / "mlruns").mkdir()
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder}/mlruns/mlflow.db"
        try:
            yield Path(folder)
        finally:
            if previous is None:
                os.environ.pop("MLFLOW_TRACKING_URI", None)
            else:
                os.environ["MLFLOW_TRACKING_URI"] = previous


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                        help="cpu: a dry pass of the steps on the CPU (checks this script, not a GPU)")
    parser.add_argument("--report", type=Path, default=REPORT, help=f"where to write it (default {REPORT})")
    args = parser.parse_args(argv)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.stderr.write("error: gpu-check needs a CUDA device and torch sees none (torch.cuda.is_available() is "
                         "False); run it on a machine with a GPU (--device cpu: a dry pass of the steps)\n")
        return 2
    started = time.perf_counter()
    with own_store() as folder:
        check = Check(args.device, folder, torch.cuda.device_count() if args.device == "cuda" else 0)
        outcomes = run_steps(check, dry=args.device == "cpu")
        write_report(check, outcomes, args.report, time.perf_counter() - started)
    print(f"report: {args.report}")
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
