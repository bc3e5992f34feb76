"""MNIST and Fashion-MNIST: find, verify, cache and load the IDX files (numpy and stdlib only). Where the files come
from, without internet, is common/sources.py; the `data` command is experiments/datasets.py.

Files live in `<data dir>/<dataset>/` under their original IDX names, gzipped (`.gz`) or not. Every load
checks the decompressed content (gzip integrity, IDX header, sha256) unless a verified cache entry for the
very same source file (path, size, mtime, ctime, inode) exists under `<data dir>/.cache/`.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from common.atomic import atomic_file
from common.errors import UserError, unknown_name

DATASETS = ("mnist", "fashion-mnist")
SPLITS = ("train", "test")
IMAGE_FILES = {"train": "train-images-idx3-ubyte", "test": "t10k-images-idx3-ubyte"}
LABEL_FILES = {"train": "train-labels-idx1-ubyte", "test": "t10k-labels-idx1-ubyte"}
FILE_NAMES = (IMAGE_FILES["train"], LABEL_FILES["train"], IMAGE_FILES["test"], LABEL_FILES["test"])
NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28)
IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension
CLASS_NAMES = {
    "mnist": tuple(str(digit) for digit in range(10)),
    "fashion-mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
}

DATA_DIR_ENV = "LENET_DATA_DIR"
REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE_VERSION = 1  # bump when the cache layout or the meaning of a cached array changes
REDO = "delete it and run `make data` (or put a good copy in its place)"


class Expected(NamedTuple):
    """Byte size and sha256 of one file's decompressed content."""

    size: int
    sha256: str


# The official files' content (docs/seed.md, "The datasets"); digests of the decompressed IDX files, so any
# faithful .gz works.
EXPECTED: dict[str, dict[str, Expected]] = {
    "mnist": {
        "train-images-idx3-ubyte": Expected(
            47040016, "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
        "train-labels-idx1-ubyte": Expected(
            60008, "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
        "t10k-images-idx3-ubyte": Expected(
            7840016, "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
        "t10k-labels-idx1-ubyte": Expected(
            10008, "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": Expected(
            47040016, "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
        "train-labels-idx1-ubyte": Expected(
            60008, "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
        "t10k-images-idx3-ubyte": Expected(
            7840016, "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
        "t10k-labels-idx1-ubyte": Expected(
            10008, "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
    },
}

StrPath = str | os.PathLike[str]
Log = Callable[[str], object]


class DataFileError(UserError):
    """A data file that is present but wrong; `problem` is the message without the advice."""

    def __init__(self, problem: str, advice: str = REDO) -> None:
        super().__init__(f"{problem}; {advice}")
        self.problem = problem


@dataclass(frozen=True, eq=False)
class Dataset:
    """Both splits of one dataset: uint8 images (N, 28, 28) and int64 labels (N,)."""

    name: str
    train_images: np.ndarray = field(repr=False)
    train_labels: np.ndarray = field(repr=False)
    test_images: np.ndarray = field(repr=False)
    test_labels: np.ndarray = field(repr=False)


# ---------------------------------------------------------------------------------------------------------
# Locating files


def data_dir(override: StrPath | None = None) -> Path:
    """The data folder: `override`, else $LENET_DATA_DIR, else <repo root>/data."""
    if override is not None and str(override) != "":
        return Path(override).expanduser().absolute()
    from_env = os.environ.get(DATA_DIR_ENV)
    if from_env:
        return Path(from_env).expanduser().absolute()
    return REPO_ROOT / "data"


def check_dataset(dataset: str) -> str:
    """Return `dataset` if it is known, else raise the standard unknown-name error."""
    if dataset not in DATASETS:
        raise unknown_name("dataset", dataset, DATASETS)
    return dataset


def find_file(dataset: str, name: str, root: StrPath | None = None) -> Path | None:
    """The existing copy of IDX file `name` (`.gz` preferred, else uncompressed), or None."""
    folder = data_dir(root) / check_dataset(dataset)
    for candidate in (folder / f"{name}.gz", folder / name):
        if candidate.is_file():
            return candidate
    return None


def _require_file(dataset: str, name: str, root: Path) -> Path:
    """The file to read for `name`, or a one-line error saying how to get it."""
    found = find_file(dataset, name, root)
    if found is not None:
        return found
    folder = root / dataset
    raise UserError(
        f"missing {dataset} file {folder / name}.gz: get it with `make data` "
        f"(or `python -m common.data --data-dir {root} provision {dataset}`), "
        f"or place {name}.gz or {name} in {folder}/ by hand")


# ---------------------------------------------------------------------------------------------------------
# Verifying content: gzip first, then the IDX header, then sha256 (cheapest, most precise message first)


def _read_content(path: Path, shown: str) -> bytes:
    """The decompressed bytes of `path`, with gzip damage and read errors reported as one line."""
    try:
        if not path.name.endswith(".gz"):
            return path.read_bytes()
        if path.stat().st_size == 0:  # gzip happily "decompresses" an empty file to nothing
            raise DataFileError(f"{shown} is a truncated gzip file (it is empty)")
        with gzip.open(path, "rb") as stream:
            return stream.read()
    except EOFError:
        raise DataFileError(f"{shown} is a truncated gzip file") from None
    except (gzip.BadGzipFile, zlib.error) as error:  # BadGzipFile is an OSError: catch it first
        raise DataFileError(f"{shown} is not a valid gzip file ({error})") from None
    except OSError as error:
        raise UserError(f"cannot read {shown}: {error.strerror or error}") from None


def _kind(name: str) -> str:
    """'images' or 'labels', from an IDX file name."""
    return "images" if "-images-" in name else "labels"


def parse_idx(content: bytes, kind: str, shown: str = "IDX data") -> np.ndarray:
    """Check an IDX header (magic, dimensions, length) and return the payload as a read-only uint8 array."""
    magic, ndim = (IMAGES_MAGIC, 3) if kind == "images" else (LABELS_MAGIC, 1)
    header = 4 + 4 * ndim
    if len(content) < header:
        raise DataFileError(f"{shown} has an IDX length mismatch: {len(content)} bytes, "
                            f"shorter than the {header}-byte {kind} header")
    found = int.from_bytes(content[:4], "big")
    if found != magic:
        hint = " (its content is gzip-compressed: add .gz to its name)" if content[:2] == b"\x1f\x8b" else ""
        raise DataFileError(f"{shown} has a bad IDX magic number 0x{found:08x}, "
                            f"expected 0x{magic:08x} for {kind}{hint}")
    dims = tuple(int.from_bytes(content[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    if kind == "images" and dims[1:] != IMAGE_SHAPE:
        raise DataFileError(f"{shown} has bad IDX dimensions {'x'.join(map(str, dims))}, "
                            f"expected Nx{IMAGE_SHAPE[0]}x{IMAGE_SHAPE[1]} images")
    declared = header + math.prod(dims)
    if len(content) != declared:
        raise DataFileError(f"{shown} has an IDX length mismatch: the header declares "
                            f"{'x'.join(map(str, dims))} ({declared} bytes) "
                            f"but the content is {len(content)} bytes")
    return np.frombuffer(content, np.uint8, offset=header).reshape(dims)


def _check_digest(content: bytes, expected: Expected, shown: str) -> None:
    """Compare the sha256 of the decompressed content with the published one."""
    actual = hashlib.sha256(content).hexdigest()
    if actual != expected.sha256:
        size = "" if len(content) == expected.size else f", {len(content)} bytes instead of {expected.size}"
        raise DataFileError(f"checksum mismatch for {shown}: expected sha256 {expected.sha256}, "
                            f"got {actual} (of the decompressed content{size})")


def verify_file(path: Path, dataset: str, name: str, shown: str | None = None) -> np.ndarray:
    """Fully check one IDX file (gzip, header, sha256) and return its payload as a read-only uint8 array."""
    shown = shown or str(path)
    content = _read_content(path, shown)
    array = parse_idx(content, _kind(name), shown)
    _check_digest(content, EXPECTED[dataset][name], shown)
    return array


# ---------------------------------------------------------------------------------------------------------
# Verified cache: one .npz per source file, named by a key of the source's identity; zip CRCs catch rot


def _expected_shape(dataset: str, name: str) -> tuple[int, ...]:
    """The array shape implied by the expected decompressed size."""
    size = EXPECTED[dataset][name].size
    if _kind(name) == "images":
        return ((size - 16) // math.prod(IMAGE_SHAPE), *IMAGE_SHAPE)
    return (size - 8,)


def _cache_path(root: Path, dataset: str, name: str, source: Path) -> Path:
    """Where the verified array of `source` is cached; any change to the source changes the name."""
    stat = source.stat()  # taken BEFORE reading, so a change during the read can only cause a re-check
    key = json.dumps([CACHE_VERSION, str(source.resolve()), stat.st_size, stat.st_mtime_ns,
                      stat.st_ctime_ns, stat.st_ino, EXPECTED[dataset][name].sha256])
    return root / ".cache" / dataset / f"{source.name}--{hashlib.sha256(key.encode()).hexdigest()[:24]}.npz"


def _read_cache(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """The cached array, or None when absent or damaged (it is ours: it is simply rebuilt)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            array = archive["data"]  # reading the whole member makes zipfile check its CRC-32
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error):
        return None
    if array.dtype != np.uint8 or array.shape != shape:
        return None
    return array


def _write_cache(path: Path, array: np.ndarray) -> None:
    """Store a verified array atomically, dropping older entries for its source; failures cost only speed."""
    try:
        with atomic_file(path) as staged:
            np.savez(staged.stream, data=array)
        source_name = path.name.rsplit("--", 1)[0]
        for stale in path.parent.glob(f"{source_name}--*.npz"):
            if stale != path:
                stale.unlink(missing_ok=True)
    except OSError:
        pass  # a read-only or full data folder still loads, just without the speed-up


def _load_file(root: Path, dataset: str, name: str, use_cache: bool) -> np.ndarray:
    """The verified uint8 array of one IDX file, from the cache when it still matches the source."""
    source = _require_file(dataset, name, root)
    cache = _cache_path(root, dataset, name, source)
    if use_cache:
        cached = _read_cache(cache, _expected_shape(dataset, name))
        if cached is not None:
            return cached
    array = verify_file(source, dataset, name).copy()  # copy: callers get a writable array
    _write_cache(cache, array)
    return array


# ---------------------------------------------------------------------------------------------------------
# Loading


def _load_split(dataset: str, split: str, root: Path, use_cache: bool) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of one split, checked to agree in count."""
    images = _load_file(root, dataset, IMAGE_FILES[split], use_cache)
    labels = _load_file(root, dataset, LABEL_FILES[split], use_cache)
    if len(images) != len(labels):  # only reachable with substituted digests, but cheap to state clearly
        raise UserError(f"{dataset} {split} split in {root / dataset} has {len(images)} images "
                        f"but {len(labels)} labels; {REDO}")
    return images, labels.astype(np.int64)


def load_split(dataset: str, split: str, root: StrPath | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One split: (images uint8 (N, 28, 28), labels int64 (N,)), verified or from the verified cache."""
    check_dataset(dataset)
    if split not in SPLITS:
        raise unknown_name("split", split, SPLITS)
    return _load_split(dataset, split, data_dir(root), use_cache=True)


def _load_all(dataset: str, root: StrPath | None, use_cache: bool) -> Dataset:
    """Both splits of `dataset` as a Dataset."""
    folder = data_dir(root)
    train = _load_split(check_dataset(dataset), "train", folder, use_cache)
    test = _load_split(dataset, "test", folder, use_cache)
    return Dataset(dataset, train[0], train[1], test[0], test[1])


def load_dataset(dataset: str, root: StrPath | None = None) -> Dataset:
    """Both splits of `dataset`, verified or from the verified cache."""
    return _load_all(dataset, root, use_cache=True)


def verify(dataset: str, root: StrPath | None = None) -> Dataset:
    """Re-check every file of `dataset` ignoring the cache, refresh the cache, and return the data."""
    return _load_all(dataset, root, use_cache=False)


# ---------------------------------------------------------------------------------------------------------
# Summary


def describe(data: Dataset) -> str:
    """A few lines: examples per split and per class."""
    names = CLASS_NAMES[data.name]
    lines = [f"{data.name}: {len(data.train_labels)} train + {len(data.test_labels)} test examples, "
             f"{IMAGE_SHAPE[0]}x{IMAGE_SHAPE[1]} uint8 images, {NUM_CLASSES} classes"]
    if names[0] != "0":
        lines.append("  classes: " + ", ".join(f"{index} {label}" for index, label in enumerate(names)))
    for split, labels in (("train", data.train_labels), ("test", data.test_labels)):
        counts = np.bincount(labels, minlength=NUM_CLASSES)
        lines.append(f"  {split:<5} per class: " + " ".join(f"{c}:{n}" for c, n in enumerate(counts)))
    return "\n".join(lines)


def summary(dataset: str, root: StrPath | None = None) -> str:
    """Short summary of `dataset`: examples per split and per class."""
    return describe(load_dataset(dataset, root))
