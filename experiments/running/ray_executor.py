"""The Ray executor of the grid (experiments/running/grid.py): `--workers N` on a local Ray instance started and
stopped here, `--ray-address` on an existing cluster; each run a Ray task that trains in its worker's store (shared
storage where the driver's results directory is seen, else a scratch store whose checkpoints and record are
shipped back)."""


from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from common.atomic import publish
from common.errors import UserError
from common.results import DamagedFile, RunKey, RunLock, RunStore, read_checkpoint, write_atomic
from experiments.running.grid import RunSettings, say
from experiments.running.local_executor import run_one_command

GRID = ".grid"  # under the results directory: one marker file per Ray driver, to detect shared storage
CONNECT_SECONDS = 25  # an unreachable cluster is reported within this many seconds
LOG_GRACE = 1.0  # seconds Ray gets, before shutting down, to forward the workers' last lines
RETRIES = 3  # times Ray runs a task again after its worker process died


# ---- Ray ------------------------------------------------------------------------------------------------


def scratch_store(results: str) -> RunStore:
    """Where a worker that cannot see the driver's results directory keeps a run's checkpoints: on its own disk,
    under a name stable for that directory, so a task retried on the same node resumes there."""
    digest = hashlib.sha256(results.encode()).hexdigest()[:16]
    return RunStore(Path(tempfile.gettempdir()) / "lenet-repro-scratch" / digest)


def worker_root(results: str, marker: str) -> tuple[RunStore, bool]:
    """The store a worker trains in, and whether it is the driver's own results directory: it is where the worker
    sees the driver's marker file under `results` (this machine, or a shared filesystem); otherwise a scratch
    store on the worker's disk."""
    if (Path(results) / GRID / marker).exists():
        return RunStore(results), True
    return scratch_store(results), False


def take_shipped_checkpoint(store: RunStore, key: RunKey, checkpoint: bytes) -> None:
    """Put the driver's checkpoint in a worker's scratch store when it is further on than the worker's own (a
    damaged one, either side, counts as none)."""
    path = store.checkpoint_path(key)
    theirs = path.with_suffix(".driver")
    write_atomic(theirs, checkpoint)
    try:
        try:
            ahead = len(read_checkpoint(theirs)[1]["epochs"])
        except DamagedFile:
            return
        mine = store.load_checkpoint(key)
        if mine is None or ahead > len(mine[1]["epochs"]):
            publish(theirs, path, keep_previous=store.previous_checkpoint_path(key))
    finally:
        theirs.unlink(missing_ok=True)


def worker_store(key: RunKey, results: str, marker: str,
                 checkpoint: bytes | None) -> tuple[RunStore, bool, RunLock | None]:  # fmt: skip
    """The store a worker trains `key` in (see `worker_root`) and the run's trainer lock there, taken first, so a
    retry or a second driver never trains beside a living worker (None: another process holds it, and nothing was
    touched); with the lock, the driver's checkpoint is put in place when it is further on than the worker's own
    scratch copy. The caller releases the lock."""
    store, shared = worker_root(results, marker)
    lock = store.try_trainer_lock(key)
    if lock is not None and not shared and checkpoint is not None:
        try:
            take_shipped_checkpoint(store, key, checkpoint)
        except BaseException:
            lock.release()
            raise
    return store, shared, lock


def train_task(key: RunKey, results: str, marker: str, settings: RunSettings, checkpoint: bytes | None,
               data_dir: str | None) -> dict[str, Any] | None:
    """One run as a Ray task, in its own worker process (max_calls=1): train it, return its record; None when
    another process holds the run's trainer lock (a worker of a driver that died still trains it).

    Each epoch is checkpointed in the driver's results directory where the worker shares it, so a retry on any
    node resumes from there; otherwise on the worker's own disk (a retry on the same node resumes). A run whose
    framework lives in another environment (MXNet) is trained by a `run-one` child of that environment's
    interpreter, handed the trainer's lock as an open file.
    """
    import ray

    from experiments.running.runs import Progress, runs_here, train_run, use_threads

    use_threads(settings.threads)
    if data_dir and Path(data_dir).is_dir():
        os.environ["LENET_DATA_DIR"] = data_dir
    store, shared, lock = worker_store(key, results, marker, checkpoint)
    if lock is None:
        return None
    try:
        context = ray.get_runtime_context()
        where = {"engine": "ray", "node_ip": ray.util.get_node_ip_address(), "node_id": context.get_node_id(),
                 "shared_storage": shared}  # fmt: skip
        if runs_here(key):
            return train_run(key, store, settings.device, Progress(key, key.spec().epochs), where)
        return train_in_child(key, store, settings, lock, where)
    finally:
        lock.release()


def train_in_child(key: RunKey, store: RunStore, settings: RunSettings, lock: RunLock,
                   where: dict[str, Any]) -> dict[str, Any]:
    """Train `key` in a `run-one` child of its environment's interpreter, this process holding the run's trainer
    lock (handed down as an open file, so the child takes no lock); its record once the child is done."""
    command = [*run_one_command(key, store.root, settings), "--trainer-locked", "--where", json.dumps(where)]
    child = subprocess.run(command, pass_fds=[lock.fileno()])
    if child.returncode == 2:
        raise UserError(f"{key.label()} stopped with an error (its line is above)")
    if child.returncode != 0:
        raise RuntimeError(f"{key.label()}: the run's process ({command[0]}) exited with code {child.returncode}")
    record = store.load_record(key)
    assert record is not None
    return record


def host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of a cluster address, None for 'auto'; a UserError for anything else."""
    if address == "auto":
        return None
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"RAY_ADDRESS {address!r} is not host:port (the head's GCS address) or 'auto'")
    return host, int(port)


def check_reachable(address: str) -> None:
    """Fail within seconds, in one line, when a host:port cluster address does not answer."""
    target = host_port(address)
    if target is None:
        return
    host, port = target
    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError as error:
        raise UserError(f"no Ray cluster answers at {address} ({error.strerror or error}); "
                        "start one with `ray start --head`, or leave RAY_ADDRESS unset to run here") from None


def first_line(error: BaseException) -> str:
    """An exception's first line of text, or its type's name when it has none."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def token_available() -> bool:
    """Whether this machine holds a Ray authentication token (where Ray looks for one)."""
    return bool(os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
                or (Path.home() / ".ray" / "auth_token").is_file())  # fmt: skip


def connect(address: str | None, cpus: int) -> None:
    """Connect to the cluster at `address`, or start a local instance with `cpus` CPUs (stopped in close())."""
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")  # every per-epoch line reaches the driver
    # Workers import the project from the environment it is installed in (`pip install -e .`), as the driver does.
    options: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": True}
    if address is None:
        import ray

        ray.init(address="local", num_cpus=cpus, include_dashboard=False, **options)
        return
    check_reachable(address)
    if token_available():  # `ray start --head` turns on token authentication; a driver must then send the token
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    import ray

    # While connecting, Ray's C++ client prints a warning a second as it retries: hold stderr back, and show it
    # only if the connection succeeds; a failure is said in one line.
    saved, held = os.dup(2), tempfile.TemporaryFile()
    os.dup2(held.fileno(), 2)

    def restore() -> None:
        os.dup2(saved, 2)

    def give_up() -> None:
        restore()
        print(f"error: the Ray cluster at {address} did not answer within {CONNECT_SECONDS} s", file=sys.stderr)
        os._exit(2)

    watchdog = threading.Timer(CONNECT_SECONDS, give_up)
    watchdog.daemon = True
    watchdog.start()
    try:
        ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError) as error:
        restore()
        held.seek(0)
        if b"InvalidAuthToken" in held.read():
            raise UserError(f"the Ray cluster at {address} refused this driver's token: copy the head's "
                            "~/.ray/auth_token to this machine (or set RAY_AUTH_TOKEN)") from None  # fmt: skip
        raise UserError(f"cannot connect to the Ray cluster at {address}: {first_line(error)}") from None
    finally:
        watchdog.cancel()
        restore()
    held.seek(0)
    sys.stderr.write(held.read().decode(errors="replace"))


class RayExecutor:
    """Runs as Ray tasks: each asks for `threads` CPUs (and a GPU with --device gpu) and runs in a fresh worker
    process; a task whose worker dies is run again by Ray and resumes from its last checkpoint."""

    def __init__(self, store: RunStore, settings: RunSettings, address: str | None, workers: int | None) -> None:
        self.store, self.settings = store, settings
        threads = settings.threads or 1
        connect(address, (workers or 1) * threads)
        import ray  # after connect(), which sets what Ray reads at import

        resources = ray.cluster_resources()
        if settings.device == "gpu" and not resources.get("GPU"):
            ray.shutdown()  # a task asking for a GPU would wait for one forever
            raise UserError("DEVICE=gpu asked for, but the Ray cluster has no GPU; use DEVICE=auto or cpu")
        self.marker = uuid.uuid4().hex
        write_atomic(store.root / GRID / self.marker, socket.gethostname().encode())
        if workers:
            self.capacity = workers
        else:
            slots = int(resources.get("CPU", 1)) // threads
            if settings.device == "gpu":
                slots = min(slots, int(resources["GPU"]))
            self.capacity = max(1, slots)
        self.task = ray.remote(
            num_cpus=threads, num_gpus=1 if settings.device == "gpu" else 0, max_calls=1, max_retries=RETRIES,
            retry_exceptions=False)(train_task)  # fmt: skip
        self.running: dict[Any, RunKey] = {}
        self.data_dir = os.environ.get("LENET_DATA_DIR")
        where = "a local Ray instance" if address is None else f"the Ray cluster at {address}"
        say(f"{where}: up to {self.capacity} runs at once, {threads} thread(s) each")

    def submit(self, key: RunKey, lock: RunLock | None = None) -> None:
        path = self.store.checkpoint_path(key)
        checkpoint = path.read_bytes() if path.exists() else None
        ref = self.task.remote(key, str(self.store.root.resolve()), self.marker, self.settings, checkpoint,
                               self.data_dir)  # fmt: skip
        self.running[ref] = key

    def wait(self, timeout: float) -> list[tuple[RunKey, dict[str, Any] | None]]:
        import ray

        if not self.running:
            return []
        ready, _ = ray.wait(list(self.running), num_returns=1, timeout=timeout)
        results = []
        for ref in ready:
            key = self.running.pop(ref)
            try:
                record = ray.get(ref)
            except ray.exceptions.RayTaskError as error:
                cause = error.cause
                if isinstance(cause, UserError):
                    raise UserError(str(cause)) from None
                raise UserError(f"{key.label()} failed: {type(cause).__name__}: {cause}; "
                                "run the same command again to resume it") from None  # fmt: skip
            except ray.exceptions.RayError as error:
                raise UserError(f"{key.label()} could not finish on Ray after {RETRIES} retries ({first_line(error)}); "
                                "run the same command again to resume it") from None  # fmt: skip
            if record is None:  # another process holds the run's trainer lock
                results.append((key, None))
                continue
            self.store.save_record(key, record)  # already there when the worker shares the directory
            self.store.remove_checkpoint(key)
            results.append((key, record))
        return results

    def close(self) -> None:
        import ray

        if not ray.is_initialized():
            return
        for ref in self.running:
            ray.cancel(ref, force=True)  # the runs keep their last checkpoints
        self.running.clear()
        (self.store.root / GRID / self.marker).unlink(missing_ok=True)
        time.sleep(LOG_GRACE)  # Ray forwards the workers' last lines to this terminal
        ray.shutdown()  # a local instance stops with it
