"""An image folder (torchvision's ImageFolder layout) decoded in parallel worker processes.

The files are listed by torchvision's rules; the fixed test part (when there is no test/ folder) is chosen
from the labels before anything is decoded, so the images go straight into the arrays they end in: the
decode-once cache's memory-mapped files (core/data_cache.py), or arrays in memory with data.cache=false.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from core.errors import DataError

CHUNK = 256  # files per task of a decoding worker
PARALLEL_FROM = 2 * CHUNK  # fewer files are decoded in this process: starting workers costs more
# torchvision's ImageFolder extensions (torchvision.datasets.folder.IMG_EXTENSIONS, which a test checks), kept
# here: importing torchvision for them costs every command about 2 s
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def image_files(folder: Path, classes: list[str], files_under: Callable[[Path], list[str]]) -> list[tuple[str, int]]:
    """(path, class index) of every image under folder/<class>/, by torchvision's rules (extensions, order)."""
    unknown = sorted(entry.name for entry in folder.iterdir() if entry.is_dir() and entry.name not in classes)
    if folder.name == "test" and unknown:
        raise DataError(f"image_folder: {folder} has class folders the training part lacks: {', '.join(unknown)}")
    if not classes:
        raise DataError(f"image_folder: {folder} has no class folders (expected {folder}/<class>/<image file>)")
    files = [(path, index) for index, name in enumerate(classes) if (folder / name).is_dir()
             for path in files_under(folder / name) if path.lower().endswith(IMG_EXTENSIONS)]
    if not files:
        raise DataError(f"image_folder: no image files ({', '.join(IMG_EXTENSIONS)}) in the class folders of "
                        f"{folder}")
    return files


def image_format(path: str) -> tuple[str, tuple[int, int]]:
    """The mode ("L" for greyscale, else "RGB") and size every image is decoded to: the first image's."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return ("L" if image.mode in ("1", "L", "I;16", "I") else "RGB"), image.size
    except (OSError, Image.DecompressionBombError) as error:
        raise DataError(f"image_folder: cannot read {path}: {_first_line(error)}") from None


def sample_shape(mode: str, size: tuple[int, int]) -> tuple[int, int, int]:
    width, height = size
    return (1 if mode == "L" else 3), height, width


def decode_into(target: np.ndarray, paths: list[str], mode: str, size: tuple[int, int]) -> None:
    """Decode `paths` into `target` (N, C, H, W) uint8: in worker processes for many files, the chunks written
    in order as they come back; the first file that cannot be decoded is one DataError naming it."""
    chunks = [paths[start:start + CHUNK] for start in range(0, len(paths), CHUNK)]
    if len(paths) < PARALLEL_FROM:
        for index, chunk in enumerate(chunks):
            target[index * CHUNK:index * CHUNK + len(chunk)] = decode(chunk, mode, size)
        return
    workers = min(len(os.sched_getaffinity(0)), len(chunks))
    # spawn: the caller may hold torch's threads, which a fork would copy half-locked
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                                initializer=_worker_start) as pool:
        try:
            for index, images in enumerate(pool.map(decode, chunks, [mode] * len(chunks), [size] * len(chunks))):
                target[index * CHUNK:index * CHUNK + len(images)] = images
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _worker_start() -> None:
    from core.signals import end_with_parent

    end_with_parent()  # a killed command leaves no decoding worker behind


def decode(paths: list[str], mode: str, size: tuple[int, int]) -> np.ndarray:
    """uint8 images (N, C, H, W) at `mode` and `size` (resized bilinearly when a file differs)."""
    from PIL import Image

    out = np.empty((len(paths), *sample_shape(mode, size)), dtype=np.uint8)
    for index, path in enumerate(paths):
        try:
            with Image.open(path) as image:
                image = image.convert(mode)
                if image.size != size:
                    image = image.resize(size, Image.Resampling.BILINEAR)
                pixels = np.asarray(image, dtype=np.uint8)
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            raise DataError(f"image_folder: cannot read {path}: {_first_line(error)}") from None
        out[index] = pixels[None] if mode == "L" else pixels.transpose(2, 0, 1)
    return out


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
