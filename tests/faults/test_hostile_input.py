"""Hostile files and values (issue 34): a data file that runs code, a link loop, /proc as data, a learning rate
past float32, a device as storage, control characters in names, two resumes of one run at once. Each bad
input is one line on stderr, exit code 2, and nothing created; nothing of the attacker's runs."""

from __future__ import annotations

import os
import pickle
import time
from pathlib import Path

import numpy as np
import pytest

from core.__main__ import main
from tests.formats import write_cifar10
from tests.helpers import tiny_overrides, tiny_study_spec

TINY = tiny_overrides(**{"train.epochs": 1})


def listing(folder: Path) -> set[Path]:
    return set(folder.rglob("*"))


def refused(capsys, tmp_path: Path, *argv: str) -> str:
    """Run the CLI in this process: one line on stderr, exit code 2, nothing created under tmp_path."""
    before = listing(tmp_path)
    code = main(list(argv))
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, lines)
    assert listing(tmp_path) == before, f"created {listing(tmp_path) - before}"
    return lines[0]


class RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_cifar_batch_that_runs_code_is_refused_without_running_it(tmp_path, capsys):
    images = np.zeros((10, 3, 32, 32), dtype=np.uint8)
    folder = write_cifar10(tmp_path / "data", images, np.arange(10) % 10, images, np.arange(10) % 10)
    marker = tmp_path / "ran"
    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": RunsCode(marker), b"labels": [0]}, protocol=2))
    line = refused(capsys, tmp_path, "train", *TINY, "data.name=cifar10", f"data.root={tmp_path / 'data'}")
    assert not marker.exists()
    assert "data_batch_3" in line and "posix.system" in line


@pytest.mark.timeout(60)  # before the fix it never ended
def test_a_link_loop_in_an_image_folder_ends_at_once(tmp_path):
    from PIL import Image

    from core.data import load_image_folder
    from tests.helpers import tiny_config

    for label in ("a", "b"):
        folder = tmp_path / "images" / label
        folder.mkdir(parents=True)
        for index in range(3):
            Image.fromarray(np.full((4, 4), 40 * index, dtype=np.uint8)).save(folder / f"{index}.png")
        (folder / "loop").symlink_to(folder)  # torchvision's walk follows both: 2**40 paths
        (folder / "up").symlink_to(folder.parent)
    config = tiny_config(**{"data.name": "image_folder", "data.root": str(tmp_path / "images")}).data
    started = time.monotonic()
    dataset = load_image_folder(config)
    assert time.monotonic() - started < 5
    assert len(dataset.train_y) + len(dataset.test_y) == 6  # each image once, none through the links


def test_an_unreadable_image_folder_is_one_line(tmp_path, capsys):
    line = refused(capsys, tmp_path, "train", *TINY, "data.name=image_folder", "data.root=/proc")
    assert "cannot read /proc/" in line  # a folder of /proc/<pid>/ that not even root may list


def test_a_learning_rate_beyond_float32_is_one_line(tmp_path, capsys):
    line = refused(capsys, tmp_path, "train", *TINY, "optim.lr=1e308")
    assert "optim.lr=1e+308" in line and "float32" in line


def test_a_device_as_storage_is_one_line(tmp_path, capsys):
    spec = tiny_study_spec(tmp_path)
    line = refused(capsys, tmp_path, "study", str(spec), "--storage", "/dev/null")
    assert "not a regular file" in line


@pytest.mark.parametrize("name", ["a\x1b[2J\x1b[31mfake", "one\ntwo", "over\rwrite"])
def test_control_characters_in_names_are_refused_shown_escaped(tmp_path, capsys, name):
    line = refused(capsys, tmp_path, "train", *TINY, f"track.run_name={name}")
    assert "control characters" in line and "\x1b" not in line and "\r" not in line


def test_control_characters_in_a_study_name_are_refused(tmp_path, capsys):
    spec = tiny_study_spec(tmp_path, name="tiny")
    spec.write_text(spec.read_text().replace("name: tiny", 'name: "study\\e]0;owned\\a"'))  # YAML's escapes
    line = refused(capsys, tmp_path, "study", str(spec))
    assert "control characters" in line


def test_a_second_resume_of_the_same_run_is_refused(tmp_path, capsys, isolated_store):
    from core import resume as resuming
    from core.runs import FitHooks, Place, tracked_fit
    from tests.helpers import tiny_config
    from tests.test_resume import Preempted, newest_run, stop_at

    with pytest.raises(Preempted):  # a run that ended early, with its checkpoint
        tracked_fit(tiny_config(**{"train.epochs": 4, "train.checkpoint": True}), Place("twice", "run"),
                    FitHooks(should_stop=stop_at(2)))
    run_ids = [newest_run("twice")]
    first = resuming.find(run_ids[0])  # the first resume, still going on in this process
    try:
        line = refused(capsys, tmp_path, "train", "--resume", run_ids[0])
    finally:
        for handle in resuming._HELD:
            handle.close()
        resuming._HELD.clear()
    assert "being resumed by another process" in line and first.run_id == run_ids[0]


@pytest.mark.slow
def test_an_archived_read_only_store_can_be_evaluated(tmp_path, isolated_store):
    import subprocess

    from tests.helpers import mlflow_client, run_cli

    assert run_cli("train", *TINY, "track.log_model=true", cwd=tmp_path).returncode == 0  # with its weights
    run_id = mlflow_client().search_runs([e.experiment_id for e in mlflow_client().search_experiments()])[0].info.run_id
    if os.geteuid() == 0:  # root writes through permissions: a read-only bind mount, as an archive would be
        mounted = subprocess.run(["mount", "--bind", isolated_store, isolated_store]).returncode == 0 and \
            subprocess.run(["mount", "-o", "remount,ro,bind", isolated_store]).returncode == 0
        if not mounted:
            subprocess.run(["umount", isolated_store])
            pytest.skip("root without the right to mount: no read-only folder to test with")
    else:
        os.chmod(isolated_store, 0o555)
    try:
        result = run_cli("evaluate", run_id, cwd=tmp_path)
        trained = run_cli("train", *TINY, cwd=tmp_path)  # writing to it is still one line
    finally:
        subprocess.run(["umount", isolated_store]) if os.geteuid() == 0 else os.chmod(isolated_store, 0o755)
    assert result.returncode == 0 and "match" in result.stdout, result.stderr
    assert trained.returncode == 2 and "cannot write" in trained.stderr
