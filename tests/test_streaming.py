"""Data larger than memory, in-process: streamed batches train exactly as in-memory ones, auto decides by the
budget, npy folders and users' arrays stay memory-mapped, and the standard augmentations (flip, crop)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from core.config import Config
from core.data import drop_cached_data, load_dataset
from core.errors import ConfigError, DataError
from core.streaming import Part
from core.study.spec import load_spec
from core.train import crop_images, fit, flip_images
from tests.helpers import tiny_config


@pytest.fixture(autouse=True)
def fresh_data():
    drop_cached_data()  # load_dataset keeps one set per process: each test loads its own
    yield
    drop_cached_data()


def mapped_file(tensor: torch.Tensor) -> str:
    """The file whose memory map holds `tensor`'s first byte ("" when it is in anonymous memory)."""
    address = tensor.data_ptr()
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        start, end = (int(value, 16) for value in fields[0].split("-"))
        if start <= address < end:
            return fields[5].strip() if len(fields) == 6 else ""
    return ""


def trained_weights(**overrides) -> dict[str, torch.Tensor]:
    drop_cached_data()
    torch.use_deterministic_algorithms(True)
    try:
        result = fit(tiny_config(**{"train.deterministic": True, "train.epochs": 2, "model.dropout": 0.2,
                                    **overrides}))
    finally:
        torch.use_deterministic_algorithms(False)  # a global flag: later tests must not inherit it
    return result.model.state_dict()


@pytest.mark.parametrize("workers", [0, 2])
def test_streamed_and_in_memory_runs_end_with_identical_weights(workers):
    images = {"train.augment": "[shift, flip, crop]", "train.crop_padding": 2, "model.name": "small_cnn",
              "data.shape": [1, 8, 8]}
    in_memory = trained_weights(**images, **{"data.in_memory": "true"})
    streamed = trained_weights(**images, **{"data.in_memory": "false", "data.loader_workers": workers})
    assert in_memory.keys() == streamed.keys()
    assert all(torch.equal(in_memory[name], streamed[name]) for name in in_memory)
    other_seed = trained_weights(**images, **{"data.in_memory": "false", "seed": 1})
    assert not all(torch.equal(in_memory[name], other_seed[name]) for name in in_memory)  # the check can fail


def test_auto_streams_what_exceeds_the_memory_budget():
    config = tiny_config(**{"data.samples": 400}).data
    assert not load_dataset(config).streamed  # the default budget: half the RAM
    drop_cached_data()
    config.memory_budget = 1e-6  # GiB: about 1 KB, far less than the set
    assert load_dataset(config).streamed
    drop_cached_data()
    config.in_memory = "true"
    assert not load_dataset(config).streamed


def write_npy(folder: Path, with_test: bool, samples: int = 240) -> None:
    rng = np.random.default_rng(0)
    y = np.arange(samples) % 3
    x = (rng.normal(size=(samples, 6)) + y[:, None]).astype(np.float32)
    folder.mkdir()
    cut = samples * 3 // 4 if with_test else samples
    np.save(folder / "x_train.npy", x[:cut])
    np.save(folder / "y_train.npy", y[:cut])
    if with_test:
        np.save(folder / "x_test.npy", x[cut:])
        np.save(folder / "y_test.npy", y[cut:])


@pytest.mark.parametrize("with_test", [True, False])
def test_npy_folders_are_memory_mapped_and_train(tmp_path, with_test):
    write_npy(tmp_path / "arrays", with_test)
    overrides = {"data.name": "npy", "data.path": str(tmp_path / "arrays"), "model.hidden": [16],
                 "data.memory_budget": 1e-6, "train.epochs": 8}
    config = tiny_config(**overrides)
    data = load_dataset(config.data)
    assert data.streamed and len(data.train_y) == (180 if with_test else 192)
    where = Path(mapped_file(data.train_x))
    if with_test:  # the user's own file, mapped where it lies
        assert where == tmp_path / "arrays" / "x_train.npy"
    else:  # the fixed test part was cut out once into the cache, mapped from there
        assert where.name == "train_x.npy" and where.parent.parent == tmp_path / "mlruns" / "cache"
    result = fit(config)
    assert result.history[-1]["val_acc"] > 0.6  # the three classes are well apart


def test_a_users_memory_mapped_arrays_stream_without_a_copy(tmp_path, monkeypatch):
    write_npy(tmp_path / "arrays", with_test=True)
    (tmp_path / "mapped_loader.py").write_text(
        "import numpy as np\n"
        "def load(folder):\n"
        "    return tuple(np.load(f'{folder}/{name}.npy', mmap_mode='c') for name in\n"
        "                 ('x_train', 'y_train', 'x_test', 'y_test'))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    config = tiny_config(**{"data.name": "mapped_loader:load", "data.args.folder": str(tmp_path / "arrays"),
                            "data.in_memory": "false", "model.hidden": [16]})
    data = load_dataset(config.data)
    assert data.streamed and Path(mapped_file(data.train_x)) == tmp_path / "arrays" / "x_train.npy"
    assert fit(config).history[-1]["val_acc"] > 0.6


def test_an_npy_file_that_would_unpickle_is_refused(tmp_path):
    write_npy(tmp_path / "arrays", with_test=False)
    np.save(tmp_path / "arrays" / "y_train.npy", np.array([{"a": 1}] * 240, dtype=object), allow_pickle=True)
    config = tiny_config(**{"data.name": "npy", "data.path": str(tmp_path / "arrays")})
    with pytest.raises(DataError, match="y_train.npy"):
        load_dataset(config.data)


def test_streamed_statistics_are_a_pass_over_the_training_part():
    from core.data import channel_stats

    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2 * 3, 1, 4, 4) % 7
    index = torch.tensor([0, 2, 5])
    mean, std = channel_stats(Part(x, torch.zeros(6), index), chunk_values=32, device=torch.device("cpu"))
    chosen = x[index]
    assert torch.allclose(mean.flatten(), chosen.mean().reshape(1)) and torch.allclose(std.flatten(),
                                                                                       chosen.std().reshape(1))


def test_flip_and_crop_are_seeded_and_keep_every_pixel_from_the_image():
    images = torch.arange(4 * 3 * 6 * 6, dtype=torch.float32).reshape(4, 3, 6, 6)
    draw = lambda function, *args: function(images, *args, torch.Generator().manual_seed(5))  # noqa: E731
    flipped = draw(flip_images)
    assert torch.equal(flipped, draw(flip_images))  # seeded
    for image, original in zip(flipped, images):
        assert torch.equal(image, original) or torch.equal(image, original.flip(2))
    cropped = draw(crop_images, 2)
    assert cropped.shape == images.shape and torch.equal(cropped, draw(crop_images, 2))
    assert not torch.equal(cropped, images)  # some offset is not zero
    for image, original in zip(cropped, images):  # reflection brings in no value the image lacks
        assert set(image.flatten().tolist()) <= set(original.flatten().tolist())


def test_augment_is_a_list_checked_and_searchable(tmp_path):
    config = Config()
    config.set("train.augment", "[flip, crop]")
    assert config.train.augment == ["flip", "crop"]
    with pytest.raises(ConfigError, match="train.augment"):
        Config().apply({"train.augment": ["flip", "rotate"]}).validate()
    spec = tmp_path / "augment.yaml"
    spec.write_text("name: augment\nconfig: {data: {name: digits}}\nspace:\n"
                    "  train.augment: {type: categorical, choices: [\"[]\", \"[flip]\", \"[flip, crop]\"]}\n")
    assert load_spec(spec).params[0].choices == ["[]", "[flip]", "[flip, crop]"]
    vectors = tiny_config(**{"data.shape": [8], "train.augment": "[flip]"})
    with pytest.raises(ConfigError, match="applies to images"):
        fit(vectors)


def test_an_image_folder_is_decoded_once_at_the_size_it_trains_at(tmp_path, isolated_store):
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in range(2):
        (tmp_path / "pictures" / f"c{label}").mkdir(parents=True)
        for index, (width, height) in enumerate([(40, 30), (17, 23), (32, 32), (9, 50), (64, 48)]):
            pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "pictures" / f"c{label}" / f"{index}.png")
    config = tiny_config(**{"data.name": "image_folder", "data.root": str(tmp_path / "pictures"),
                            "data.resize": 6, "data.test_fraction": 0.2}).data
    data = load_dataset(config)
    assert data.train_x.shape == (8, 3, 6, 6) and data.test_x.shape == (2, 3, 6, 6)
    (entry,) = (isolated_store / "cache").glob("*/train_x.npy")
    assert entry.stat().st_size < 8 * 3 * 6 * 6 + 200  # the small images and a header, not 64x48 ones
    assert Path(mapped_file(data.train_x)) == entry


def test_image_folders_take_torchvisions_extensions():
    from torchvision.datasets.folder import IMG_EXTENSIONS

    from core import image_folder

    assert image_folder.IMG_EXTENSIONS == IMG_EXTENSIONS


def test_a_replaced_npy_file_is_loaded_again_in_the_same_process(tmp_path):
    write_npy(tmp_path / "arrays", with_test=True)
    config = tiny_config(**{"data.name": "npy", "data.path": str(tmp_path / "arrays")}).data
    before = load_dataset(config).fingerprint
    x = np.load(tmp_path / "arrays" / "x_train.npy")
    np.save(tmp_path / "arrays" / "x_train.npy", x + 1)  # a study worker's next trial must see the new data
    assert load_dataset(config).fingerprint != before


def test_a_damaged_cache_file_is_detected_and_rebuilt(tmp_path, isolated_store, caplog):
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in range(2):
        (tmp_path / "pictures" / f"c{label}").mkdir(parents=True)
        for index in range(10):
            pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "pictures" / f"c{label}" / f"{index}.png")
    config = tiny_config(**{"data.name": "image_folder", "data.root": str(tmp_path / "pictures")}).data
    built = load_dataset(config).fingerprint
    (damaged,) = (isolated_store / "cache").glob("*/train_x.npy")
    with open(damaged, "r+b") as handle:
        handle.truncate(damaged.stat().st_size // 2)
    drop_cached_data()  # the next command
    with caplog.at_level("INFO", logger="core.data_cache"):
        rebuilt = load_dataset(config)
    assert "damaged" in caplog.text and "once into the cache" in caplog.text
    assert rebuilt.fingerprint == built and damaged.stat().st_size == rebuilt.train_x.nbytes + 128
