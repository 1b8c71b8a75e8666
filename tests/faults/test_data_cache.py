"""The decode-once cache of an image folder, through the CLI: built once however many processes want it, a
study over its memory budget streams from it, and its faults (a killed build, a damaged file, a full disk, a
file that cannot be decoded) each end the way the brief says."""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from PIL import Image

from core.config import DataConfig
from core.data import load_dataset
from tests.faults.test_full_disk import small_disk
from tests.helpers import TINY_CONFIG, all_runs, run_cli, start_cli, tiny_overrides, tiny_study_spec

pytestmark = pytest.mark.slow

DECODED = "once into the cache"  # the one line a build logs
PER_CLASS = 200  # 600 images: more than image_folder.PARALLEL_FROM, so worker processes decode them


def write_pngs(root: Path, per_class: int = PER_CLASS, size: int = 8) -> None:
    rng = np.random.default_rng(0)
    for label in range(3):
        (root / f"class{label}").mkdir(parents=True)
        for index in range(per_class):
            pixels = rng.integers(0, 60, (size, size, 3)) + 90 * label  # the classes apart by brightness
            Image.fromarray(pixels.astype(np.uint8)).save(root / f"class{label}" / f"{index:05d}.png")


def folder_overrides(root: Path, **more) -> list[str]:
    return tiny_overrides(**{"data.name": "image_folder", "data.root": str(root), "train.epochs": 1, **more})


def entries(store: Path) -> list[Path]:
    """The cache's entries and leftovers (staging folders start with a dot; lock files are not folders)."""
    cache = store / "cache"
    return sorted(path for path in cache.iterdir() if path.is_dir()) if cache.is_dir() else []


def test_a_two_worker_study_over_its_budget_builds_the_cache_once_and_streams(tmp_path, isolated_store):
    write_pngs(tmp_path / "pictures")
    config = {**TINY_CONFIG, "data": {"name": "image_folder", "root": str(tmp_path / "pictures"),
                                      "memory_budget": 1e-5}}  # GiB: 10 KiB, the set is 115 KiB
    spec = tiny_study_spec(tmp_path, "folder", trials=4, config=config)
    studied = run_cli("study", str(spec), "--workers", "2", timeout=600)
    assert studied.returncode == 0, studied.stderr[-3000:]
    assert studied.stderr.count(DECODED) == 1, studied.stderr[-3000:]
    trials = [run for run in all_runs("folder") if run.data.tags.get("trial_number")]
    assert len(trials) == 4 and {run.info.status for run in trials} == {"FINISHED"}
    assert {run.data.tags["data_batches"] for run in trials} == {"streamed"}
    (entry,) = entries(isolated_store)
    assert not entry.name.startswith(".")


def test_two_commands_at_once_build_the_cache_once(tmp_path, isolated_store):
    write_pngs(tmp_path / "pictures")
    first, second = (start_cli("train", *folder_overrides(tmp_path / "pictures")) for _ in range(2))
    outputs = [process.communicate(timeout=300) for process in (first, second)]
    assert first.returncode == second.returncode == 0, outputs
    assert sum(stderr.count(DECODED) for _, stderr in outputs) == 1, outputs
    runs = all_runs("train")
    assert len(runs) == 2 and len({run.data.tags["data_fingerprint"] for run in runs}) == 1
    assert len(entries(isolated_store)) == 1


def test_a_killed_build_leaves_no_half_cache_and_no_process(tmp_path, isolated_store, caplog):
    write_pngs(tmp_path / "pictures", per_class=2000, size=16)  # long enough to be killed midway
    building = start_cli("train", *folder_overrides(tmp_path / "pictures"))
    deadline = time.monotonic() + 120
    while not any(path.name.startswith(".") for path in entries(isolated_store)):
        assert building.poll() is None and time.monotonic() < deadline, building.communicate()
        time.sleep(0.01)
    time.sleep(0.5)  # into the decoding
    family = [building.pid] + [child.pid for child in psutil.Process(building.pid).children(recursive=True)]
    os.kill(building.pid, signal.SIGKILL)
    building.communicate()
    time.sleep(2)
    assert [pid for pid in family if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"] == []
    assert not [path for path in entries(isolated_store) if not path.name.startswith(".")]  # nothing to map
    with caplog.at_level(logging.INFO, logger="core.data_cache"):  # the next command, in this process
        data = load_dataset(DataConfig(name="image_folder", root=str(tmp_path / "pictures")))
    assert len(data.train_y) + len(data.test_y) == 6000 and caplog.text.count(DECODED) == 1
    (entry,) = entries(isolated_store)  # the killed build's staging folder was removed
    assert not entry.name.startswith(".")


def test_a_full_disk_while_caching_is_one_line_exit_3(tmp_path, isolated_store):
    write_pngs(tmp_path / "pictures", size=32)  # 1.8 MB decoded
    with small_disk(isolated_store, "512k") as store:
        full = run_cli("train", *folder_overrides(tmp_path / "pictures"))
        problems = [line for line in full.stderr.splitlines() if line.strip()]
        assert full.returncode == 3 and len(problems) == 1, full.stderr[-3000:]
        assert str(store / "cache") in problems[0]
        assert entries(store) == []  # neither an entry nor a staging folder


def test_a_file_that_cannot_be_decoded_is_one_line_naming_it_before_any_run(tmp_path, isolated_store):
    write_pngs(tmp_path / "pictures")
    broken = tmp_path / "pictures" / "class1" / "00100.png"
    broken.write_bytes(broken.read_bytes()[:40])  # a PNG cut short
    refused = run_cli("train", *folder_overrides(tmp_path / "pictures"))
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr[-3000:]
    assert str(broken) in refused.stderr
    assert all_runs() == [] and entries(isolated_store) == []
