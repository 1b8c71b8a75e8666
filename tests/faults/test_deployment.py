"""Faults of a real deployment: a torn journal, two first starts at once, damaged stores, impossible values."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.study.storage import cut_torn_tail
from tests.helpers import run_cli, start_cli, tiny_overrides, tiny_study_spec

TINY = tiny_overrides(**{"train.epochs": 1})


def listing(folder: Path) -> set[Path]:
    return set(folder.rglob("*"))


def assert_one_line_exit_2(result, before: set[Path], folder: Path) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert listing(folder) == before, f"created {listing(folder) - before}"
    return lines[0]


def test_torn_last_record_is_cut_back_and_kept_beside(tmp_path):
    journal = tmp_path / "optuna.journal"
    journal.write_bytes(b'{"op_code":0,"worker_id":"a"}\n{"op_code":5,"worker_id":"a","tri')
    assert cut_torn_tail(journal) == len(b'{"op_code":5,"worker_id":"a","tri')
    assert journal.read_bytes() == b'{"op_code":0,"worker_id":"a"}\n'
    [torn] = tmp_path.glob("optuna.journal.torn-*")
    assert torn.read_bytes() == b'{"op_code":5,"worker_id":"a","tri'
    assert cut_torn_tail(journal) == 0  # a whole journal is left alone


def test_damage_that_is_not_a_torn_tail_is_left_alone(tmp_path):
    journal = tmp_path / "optuna.journal"
    damaged = b'{"op_code":0}\nnot json\n{"op_code":5,"worker_id":"a","tri'
    journal.write_bytes(damaged)
    assert cut_torn_tail(journal) == 0
    assert journal.read_bytes() == damaged


@pytest.mark.slow
def test_torn_journal_study_and_other_studies_go_on(tmp_path):
    spec = tiny_study_spec(tmp_path, trials=3)
    assert run_cli("study", str(spec), cwd=tmp_path).returncode == 0
    journal = tmp_path / "mlruns" / "optuna.journal"
    os.truncate(journal, journal.stat().st_size - 30)  # a full disk or a kill mid-write
    again = run_cli("study", str(spec), "--trials", "4", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "half-written record" in again.stderr
    assert len(list(journal.parent.glob("optuna.journal.torn-*"))) == 1
    other = run_cli("study", str(spec), "--name", "other", cwd=tmp_path)
    assert other.returncode == 0, other.stderr


@pytest.mark.slow
def test_two_first_starts_at_once_in_an_empty_folder(tmp_path):
    for round_number in range(3):
        folder = tmp_path / f"round{round_number}"
        folder.mkdir()
        spec = tiny_study_spec(folder, trials=2)
        env = {"MLFLOW_TRACKING_URI": f"sqlite:///{folder}/mlruns/mlflow.db"}
        processes = [start_cli("study", str(spec), cwd=folder, **env) for _ in range(2)]
        for process in processes:
            _, stderr = process.communicate(timeout=300)
            assert process.returncode == 0, stderr[-2000:]


@pytest.mark.slow
def test_two_first_starts_on_a_new_optuna_sqlite(tmp_path):
    spec = tiny_study_spec(tmp_path, trials=2)
    processes = [start_cli("study", str(spec), "--storage", f"sqlite:///{tmp_path}/o/optuna.db", cwd=tmp_path)
                 for _ in range(2)]
    for process in processes:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr[-2000:]


NAME = "n" * 5000
CASES = {
    "negative seed": lambda d: ["train", *TINY, "seed=-5"],
    "seed too large": lambda d: ["train", *TINY, "seed=99999999999999999999999"],
    "storage is a directory": lambda d: ["study", str(tiny_study_spec(d)), "--storage", str(d / "studies")],
    "journal of random bytes": lambda d: ["study", str(tiny_study_spec(d)), "--storage", str(d / "random.journal")],
    "model larger than the memory": lambda d: ["train", *TINY, "model.hidden=[1000000000]"],
    "5000-character study name": lambda d: ["study", str(tiny_study_spec(d)), "--name", NAME],
    "5000-character experiment name": lambda d: ["train", *TINY, f"track.experiment={NAME}"],
}


def prepare_case(folder: Path, case: str) -> None:
    (folder / "studies").mkdir()
    (folder / "random.journal").write_bytes(os.urandom(5000))


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_unclear_errors_are_one_line_exit_2(tmp_path, case):
    args = CASES[case](tmp_path)
    prepare_case(tmp_path, case)
    before = listing(tmp_path)
    line = assert_one_line_exit_2(run_cli(*args, cwd=tmp_path, timeout=120), before, tmp_path)
    assert len(line) < 300, line
    if "memory" in case:
        assert "parameters" in line and "GiB" in line


@pytest.mark.slow
@pytest.mark.parametrize("verb", ["train", "study", "reproduce"])
def test_mlflow_store_of_random_bytes_is_one_line_exit_2(tmp_path, verb):
    store = tmp_path / "mlruns" / "mlflow.db"
    store.parent.mkdir()
    store.write_bytes(os.urandom(100_000))
    args = {"train": ["train", *TINY], "study": ["study", str(tiny_study_spec(tmp_path))],
            "reproduce": ["reproduce", "0123456789abcdef"]}[verb]
    before = listing(tmp_path)
    line = assert_one_line_exit_2(run_cli(*args, cwd=tmp_path, timeout=120), before, tmp_path)
    assert "not a SQLite database" in line
