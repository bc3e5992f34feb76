"""The project's Python environments: one per framework family that cannot share the main one.

MXNet 1.9.1 imports only with numpy < 1.24, so it lives in an environment of its own (`.venv-mxnet`); everything
else (PyTorch, JAX, TensorFlow/Keras, the NumPy reference, Ray, the report, the notebook) lives in the main one
(`.venv`) at today's releases. The registry (backends/__init__.py) says which environment each backend runs in;
a run is started in its backend's interpreter, and a backend used in-process from another environment is driven
through a child of its own interpreter (backends/remote.py).

Each environment is installed exactly as its lock file says (`locks/<name>.txt`: every package at an exact
version, with hashes), by `pip install --require-hashes --no-deps`, then the project itself (editable, no
dependencies). The top-level pins a lock is made from stay readable in pyproject.toml: `[project] dependencies`
for the main environment, the dependency group of the same name for the others. `make lock` makes every lock
again (uv, pinned in pyproject.toml's [tool.lenet-repro] lock-tool); `make venv` / `make venv-NAME` install one.

An installed environment holds `lenet-repro-environment.json` in its folder: its name and its lock's sha256,
recorded with every run (`describe()`).

This module imports nothing outside the standard library: the Makefile runs it with the machine's python3
before any environment exists (`python3 common/environments.py ensure NAME`, `... lock`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

if not __package__:  # run as a script by the Makefile: the project is not installed yet
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common.atomic import write_atomic  # noqa: E402
from common.errors import UserError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LOCKS = REPO / "locks"
MARKER = "lenet-repro-environment.json"
MAIN = "main"
# The platform the locks are made for: the wheels CPython 3.11 installs on x86-64 Linux (glibc 2.28 or newer).
PYTHON_VERSION = "3.11"
PLATFORM = "x86_64-manylinux_2_28"
PYTHON_ENV = "LENET_REPRO_PYTHON_{}"  # an environment's interpreter, given by hand (plug-ins, other layouts)


@dataclass(frozen=True)
class Environment:
    """One Python environment of the project."""

    name: str
    folder: Path  # the virtual environment
    group: str | None  # pyproject.toml's dependency group of its top-level pins; None: [project] dependencies

    @property
    def lock(self) -> Path:
        return LOCKS / f"{self.name}.txt"

    @property
    def python(self) -> Path:
        return self.folder / "bin" / "python"

    def lock_digest(self) -> str:
        return hashlib.sha256(self.lock.read_bytes()).hexdigest()

    def installed_digest(self) -> str | None:
        """The sha256 of the lock this environment was installed from, None when it is not installed."""
        try:
            return json.loads((self.folder / MARKER).read_text())["lock_sha256"]
        except (OSError, ValueError, KeyError):
            return None

    def up_to_date(self) -> bool:
        return self.python.exists() and self.installed_digest() == self.lock_digest()


ENVIRONMENTS: dict[str, Environment] = {
    MAIN: Environment(MAIN, REPO / ".venv", None),
    "mxnet": Environment("mxnet", REPO / ".venv-mxnet", "mxnet"),
}


def current() -> dict[str, str | None]:
    """The environment this interpreter belongs to, as recorded with a run: its name and its lock's sha256, or
    name 'unmanaged' where the project was installed into an environment it did not build."""
    try:
        found = json.loads((Path(sys.prefix) / MARKER).read_text())
        return {"name": str(found["name"]), "lock_sha256": str(found["lock_sha256"])}
    except (OSError, ValueError, KeyError):
        return {"name": "unmanaged", "lock_sha256": None}


def current_name() -> str:
    return str(current()["name"])


def python_for(environment: str) -> str:
    """The interpreter of an environment: this one's own when it is that environment, or when this interpreter is
    not one of the project's (an environment set up by hand holds every backend it can import); else
    $LENET_REPRO_PYTHON_<NAME>, else the project's folder for it, installed if missing or stale."""
    here = current_name()
    if here in (environment, "unmanaged"):
        return sys.executable
    variable = PYTHON_ENV.format(environment.upper().replace("-", "_"))
    if os.environ.get(variable):
        return os.environ[variable]
    if environment not in ENVIRONMENTS:
        raise UserError(f"environment {environment!r} is not one of the project's ({', '.join(ENVIRONMENTS)}); "
                        f"set {variable} to its python")
    env = ENVIRONMENTS[environment]
    if not env.up_to_date():
        ensure(environment)
    return str(env.python)


def _run(command: list[str], what: str) -> None:
    result = subprocess.run(command, cwd=REPO)
    if result.returncode != 0:
        raise UserError(f"{what} failed (exit code {result.returncode}): {' '.join(command)}")


def ensure(name: str, base_python: str | None = None) -> Environment:
    """Install environment `name` from its lock unless it is already installed from that very lock."""
    if name not in ENVIRONMENTS:
        raise UserError(f"unknown environment {name!r}; valid: {', '.join(ENVIRONMENTS)}")
    env = ENVIRONMENTS[name]
    if not env.lock.exists():
        raise UserError(f"{env.lock} is missing: run `make lock`")
    if env.up_to_date():
        return env
    # one installer at a time (two test workers, or two commands, may ask for the same environment at once)
    env.folder.parent.joinpath(".cache").mkdir(exist_ok=True)
    with open(env.folder.parent / ".cache" / f"install-{name}.lock", "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        if not env.up_to_date():
            _install(env, base_python)
    return env


def _install(env: Environment, base_python: str | None) -> None:
    name = env.name
    print(f"[env] installing the {name} environment into {env.folder.name}/ from {env.lock.relative_to(REPO)}",
          file=sys.stderr, flush=True)
    if not env.python.exists():
        _run([base_python or _base_python(), "-m", "venv", str(env.folder)], f"creating {env.folder.name}")
    (env.folder / MARKER).unlink(missing_ok=True)
    pip = [str(env.python), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    _run([*pip, "--require-hashes", "--no-deps", "-r", str(env.lock)], f"installing {env.lock.name}")
    extra = sorted(_installed(env) - _allowed(env))
    if extra:  # installed before, no longer locked: the environment holds what its lock says, and no more
        _run([str(env.python), "-m", "pip", "uninstall", "--disable-pip-version-check", "-q", "-y", *extra],
             f"removing {', '.join(extra)}")
    _run([*pip, "--no-deps", "-e", str(REPO)], "installing the project")
    marker = {"name": name, "lock_sha256": env.lock_digest()}
    write_atomic(env.folder / MARKER, (json.dumps(marker) + "\n").encode())


def locked_names(lock_file: Path) -> set[str]:
    """The packages a lock file pins, by normalised name."""
    return {_normalise(line.split("==")[0]) for line in lock_file.read_text().splitlines()
            if line and line[0].isalnum() and "==" in line}  # fmt: skip


def _normalise(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(".", "-")


def _installed(env: Environment) -> set[str]:
    out = subprocess.run([str(env.python), "-m", "pip", "list", "--disable-pip-version-check", "--format=json"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return {_normalise(entry["name"]) for entry in json.loads(out)}


def _allowed(env: Environment) -> set[str]:
    """What may stay installed: the lock's packages, those of the locks that extend it (`main-lab`), pip's own
    tools and the project."""
    allowed = {"pip", "setuptools", "wheel", "lenet-repro"} | locked_names(env.lock)
    for name in EXTRA_LOCKS:
        if name.startswith(f"{env.name}-"):
            allowed |= locked_names(LOCKS / f"{name}.txt")
    return allowed


def _base_python() -> str:
    """A CPython of the locks' version to create an environment with."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == PYTHON_VERSION:
        return sys.executable
    found = shutil.which(f"python{PYTHON_VERSION}")
    if found:
        return found
    raise UserError(f"the locks are made for Python {PYTHON_VERSION}; no python{PYTHON_VERSION} found")


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


# Locks beside the environments': the main environment with the `lab` extra (JupyterLab, `make notebook`).
EXTRA_LOCKS = {"main-lab": ["pyproject.toml", "--extra", "lab"]}


def lock(names: list[str] | None = None) -> None:
    """Make the lock files again from pyproject.toml's pins, with the pinned uv (installed in .cache/)."""
    settings = pyproject()["tool"]["lenet-repro"]
    tool = REPO / ".cache" / "lock-tool"
    uv = tool / "bin" / "uv"
    if not uv.exists():
        _run([sys.executable, "-m", "venv", str(tool)], "creating .cache/lock-tool")
        _run([str(tool / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q",
              settings["lock-tool"]], "installing the lock tool")
    overrides = LOCKS / "overrides.txt"
    LOCKS.mkdir(exist_ok=True)
    sources = {name: ["--group", f"pyproject.toml:{env.group}"] if env.group else ["pyproject.toml"]
               for name, env in ENVIRONMENTS.items()} | EXTRA_LOCKS  # fmt: skip
    for name in names or list(sources):
        target = (LOCKS / f"{name}.txt").relative_to(REPO)
        _run([str(uv), "pip", "compile", *sources[name], "--override", str(overrides.relative_to(REPO)),
              "--python-version", PYTHON_VERSION, "--python-platform", PLATFORM, "--generate-hashes",
              "--quiet", "--custom-compile-command", "make lock", "-o", str(target)], f"locking {name}")
        print(f"[env] {target}: {count_packages(REPO / target)} packages", file=sys.stderr)


def count_packages(lock_file: Path) -> int:
    return len(locked_names(lock_file))


def main(argv: list[str]) -> int:
    usage = "usage: python3 common/environments.py ensure NAME | lock [NAME ...] | python NAME"
    if not argv:
        print(usage, file=sys.stderr)
        return 2
    try:
        if argv[0] == "ensure" and len(argv) == 2:
            ensure(argv[1])
        elif argv[0] == "lock":
            lock(argv[1:] or None)
        elif argv[0] == "python" and len(argv) == 2:
            print(python_for(argv[1]))
        else:
            print(usage, file=sys.stderr)
            return 2
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
