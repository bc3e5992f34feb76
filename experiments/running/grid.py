"""The run grid: every unfinished run of a `run` command, trained one after another in child processes (the
default), or as Ray tasks: `--workers N` on a local Ray instance started and stopped here, `--ray-address` on an
existing Ray cluster. The runs, their records and the report are the same either way.

One scheduler serves both: it takes each run's lock (common.results.RunLock) before handing the run to an
executor and holds it until the record is back, so two drivers on one results directory never train the same
run at once; a run another driver holds is skipped and taken up later if it is still unfinished.

The lock also outlives a driver that dies (SIGKILL, the OOM killer): the process that trains a run holds a lock
of its own, the trainer's lock, taken before it imports a framework (`run-one`, or a Ray task in the store it
trains in), and a sequential driver hands its own lock on the run down to its `run-one` child as an open file.
A driver sees a run whose trainer's lock is held as another driver's: it waits for it, never trains beside it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from common.atomic import publish
from common.errors import UserError
from common.results import BUSY_EXIT, DamagedFile, RunKey, RunLock, RunStore, read_checkpoint, write_atomic
from experiments.running.runs import check_same_run, format_seconds, python_for_run

GRID = ".grid"  # under the results directory: one marker file per Ray driver, to detect shared storage
CONNECT_SECONDS = 25  # an unreachable cluster is reported within this many seconds
LOG_GRACE = 1.0  # seconds Ray gets, before shutting down, to forward the workers' last lines
RETRIES = 3  # times Ray runs a task again after its worker process died
STOP_SECONDS = 30  # a child asked to stop (SIGTERM) that has not after this long is killed


@dataclass(frozen=True)
class RunSettings:
    """What every run of one grid is trained with, besides its key."""

    device: str
    threads: int | None  # None: the backend's default (every core)


class Executor(Protocol):
    """Trains runs somewhere; the scheduler gives it at most `capacity` at once."""

    capacity: int

    def submit(self, key: RunKey, lock: RunLock | None = None) -> None: ...  # lock: the run's, held by the driver
    # finished runs and their records; None for a run another process turned out to be training (taken up later)
    def wait(self, timeout: float) -> list[tuple[RunKey, dict[str, Any] | None]]: ...
    def close(self) -> None: ...  # stop whatever still runs (its checkpoints stay) and release everything


def finished(store: RunStore, key: RunKey) -> bool:
    """Whether the run's record is complete or diverged (a stored run with other settings is refused). A damaged
    record is not finished: the process that trains the run sets it aside, says so, and trains the run again."""
    try:
        record = store.load_record(key)
    except DamagedFile:
        return False
    if record is None:
        return False
    check_same_run(key, record, key.spec())
    return record["status"] != "partial"


class GridProgress:
    """One overall line on stderr whenever a run starts or ends: done / running / total and an ETA.

    With `expected` (seconds each run should take, e.g. from the committed runs' records: `expected_seconds`), the
    ETA is known from the start: what is left of the expected time, scaled by how the finished runs compared with
    their expectation, over the runs at once; else it is the mean time of the runs finished so far."""

    def __init__(self, total: int, done: int, capacity: int, stream=sys.stderr,
                 expected: dict[RunKey, float] | None = None, todo: list[RunKey] | None = None,
                 name: str = "grid") -> None:  # fmt: skip
        self.total, self.done, self.capacity, self.stream = total, done, capacity, stream
        self.expected, self.name = expected or {}, name
        self.left = set(todo or ())  # the runs not finished yet (for the expected-time ETA)
        self.started: dict[RunKey, float] = {}
        self.durations: list[float] = []
        self.taken: list[tuple[float, float]] = []  # (seconds it took, seconds expected) of the finished runs
        self.shown: tuple[int, int] | None = None

    def start(self, key: RunKey) -> None:
        self.started[key] = time.monotonic()

    def requeue(self, key: RunKey) -> None:
        """A started run went back to the waiting ones."""
        self.started.pop(key, None)

    def finish(self, key: RunKey | None, trained: bool = True) -> None:
        began = self.started.pop(key, None) if key else None
        if trained and began is not None:
            self.durations.append(time.monotonic() - began)
            if key in self.expected:
                self.taken.append((self.durations[-1], self.expected[key]))
        self.left.discard(key)
        self.done += 1

    def eta(self) -> str:
        left = self.total - self.done
        if not left:
            return "0s"
        if self.expected and self.left.issubset(self.expected):
            scale = sum(t for t, _ in self.taken) / sum(e for _, e in self.taken) if self.taken else 1.0
            now = time.monotonic()
            seconds = sum(max(self.expected[k] * scale - (now - self.started[k] if k in self.started else 0.0), 0.0)
                          for k in self.left)  # fmt: skip
            return format_seconds(seconds / min(self.capacity, left))
        if not self.durations:
            return "known after the first run"
        mean = sum(self.durations) / len(self.durations)
        return format_seconds(mean * left / min(self.capacity, left))

    def line(self) -> None:
        """Print the line if anything changed since it was last printed."""
        running = len(self.started)
        waiting = self.total - self.done - running
        if (self.done, running) == self.shown:
            return
        self.shown = (self.done, running)
        self.stream.write(f"[{self.name}] {self.done}/{self.total} runs done, {running} running, {waiting} waiting, "
                          f"ETA {self.eta()}\n")  # fmt: skip
        self.stream.flush()


def expected_seconds(keys: list[RunKey], published: RunStore, start: float = 15.0) -> dict[RunKey, float]:
    """What each run should take, from the full-data runs in `published` of the same mode, recipe, dataset and
    backend: the median seconds of an epoch times the run's epochs (times its share of the training examples under
    --limit), plus `start` seconds of a process's start-up. A run with no such records is left out."""
    from statistics import median

    from common.results import read_record

    out = {}
    for key in keys:
        folder = published.root / key.mode / key.dataset / key.recipe
        epochs = [row for path in sorted(folder.glob(f"{key.backend}-seed*.json"))
                  for row in read_record(path)["epochs"][1:]]  # the first epoch also traces and warms up
        if epochs:
            examples = median(row["examples_per_second"] * row["train_seconds"] for row in epochs)
            share = min(1.0, key.limit / examples) if key.limit else 1.0
            out[key] = start + median(row["seconds"] for row in epochs) * share * key.spec().epochs
    return out


def say(text: str) -> None:
    print(f"[grid] {text}", file=sys.stderr, flush=True)


def outcome(record: dict[str, Any]) -> str:
    """How a finished run ended, in a few words."""
    if record["status"] == "diverged":
        return f"diverged at step {record['diverged_at_step']}"
    last = record["epochs"][-1]
    return f"{record['status']}, {len(record['epochs'])} epochs, test acc {last['test_accuracy']:.4f}"


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # Ctrl-C, `kill`, a closed terminal


class Stops:
    """While the scheduler runs, Ctrl-C, SIGTERM and SIGHUP only raise a flag, which the scheduler checks between
    its steps: a KeyboardInterrupt raised at any bytecode could leave a lock inside `subprocess` held, and the
    driver would then hang for ever waiting for the child it is stopping."""

    def __init__(self) -> None:
        self.signals: list[int] = []
        self.saved: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            self.saved = {sig: signal.signal(sig, self._flag) for sig in STOP_SIGNALS}

    def _flag(self, signum, frame) -> None:
        self.signals.append(signum)

    def check(self) -> None:
        if self.signals:
            raise KeyboardInterrupt

    def restore(self) -> None:
        """The handlers there were before."""
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)


def run_keys(keys: list[RunKey], store: RunStore, make_executor: Callable[[], Executor],
             expected: dict[RunKey, float] | None = None, name: str = "grid") -> None:
    """Train every unfinished run in `keys`, each under its lock, with an executor made only when there is work
    (a finished run is never scheduled). Ctrl-C, SIGTERM and SIGHUP stop the runs and keep their checkpoints.
    `expected`: seconds each run should take, for an ETA from the start; `name`: the progress lines' prefix."""
    todo = [key for key in keys if not finished(store, key)]
    if not todo:
        return
    held: dict[RunKey, RunLock] = {}
    told: set[RunKey] = set()

    def busy_elsewhere(key: RunKey) -> None:
        """Say once that another process trains `key`; it is waited for like another driver's run."""
        if key not in told:
            say(f"{key.label()} is being trained by another process: skipped; taken up here if it stops")
            told.add(key)
    waiting = False
    executor = make_executor()
    progress = GridProgress(len(keys), len(keys) - len(todo), executor.capacity, expected=expected, todo=todo,
                            name=name)
    stops = Stops()
    try:
        while todo or held:
            stops.check()
            for key in list(todo):
                if len(held) >= executor.capacity:
                    break
                lock = store.try_lock(key)
                if lock is None:
                    if key not in told:
                        say(f"{key.label()} is being trained by another driver: skipped; taken up here if it stops")
                        told.add(key)
                    continue
                if store.trainer_busy(key):  # a process of a driver that died (or a lone run-one) still trains it
                    lock.release()
                    busy_elsewhere(key)
                    continue
                todo.remove(key)
                if finished(store, key):  # the other driver finished it meanwhile
                    lock.release()
                    say(f"{key.label()} was finished by another driver")
                    progress.finish(key, trained=False)
                    continue
                held[key] = lock
                executor.submit(key, lock)
                progress.start(key)
            progress.line()
            if not held:
                if todo and told.issuperset(todo):  # every run left is another driver's: wait for it
                    if not waiting:
                        say(f"waiting for {len(todo)} run(s) another driver is training")
                    waiting = True
                    time.sleep(0.5)
                continue
            for key, record in executor.wait(timeout=0.25):  # short: Ctrl-C is seen between waits
                held.pop(key).release()
                if record is None:  # another process took it up meanwhile: wait for it like another driver's
                    progress.requeue(key)
                    todo.append(key)
                    busy_elsewhere(key)
                    continue
                progress.finish(key)
                say(f"{key.label()}: {outcome(record)}")
        progress.line()
    except KeyboardInterrupt:
        say("stopped: every finished epoch is checkpointed; run the same command again to resume")
        raise SystemExit(130) from None
    finally:
        try:
            executor.close()  # stops what still runs; its checkpoints stay (a second Ctrl-C meanwhile: ignored)
        finally:
            stops.restore()
            for lock in held.values():
                lock.release()


def run_one_command(key: RunKey, results: Path, settings: RunSettings) -> list[str]:
    """`python -m experiments run-one ...` for one key, its lock already held by this driver, in the interpreter of
    the run's environment."""
    command = [python_for_run(key), "-m", "experiments", "run-one", "--backend", key.backend, "--recipe", key.recipe,
               "--dataset", key.dataset, "--seed", str(key.seed), "--results", str(results),
               "--device", settings.device, "--mode", key.mode, "--locked"]  # fmt: skip
    command += ["--epochs", str(key.epochs)] if key.epochs else []
    command += ["--limit", str(key.limit)] if key.limit else []
    command += ["--threads", str(settings.threads)] if settings.threads else []
    return command


class SubprocessExecutor:
    """The default: one run at a time (or `capacity` at once), each in a child process (no two frameworks ever share
    one). With `log`, the children's output goes to that file instead of this terminal.

    The child gets the driver's lock on its run as an open file (pass_fds): an flock belongs to the open file, so
    the run stays locked for as long as the child trains, even if the driver is killed; and the child takes the
    run's trainer lock itself."""

    def __init__(self, store: RunStore, settings: RunSettings, capacity: int = 1, log: Path | None = None) -> None:
        self.store, self.settings, self.capacity, self.log = store, settings, capacity, log
        self.children: dict[RunKey, subprocess.Popen] = {}

    def submit(self, key: RunKey, lock: RunLock | None = None) -> None:
        # the environment too: NumPy's BLAS reads its thread count only there, when NumPy is imported
        env = {**os.environ, "OMP_NUM_THREADS": str(self.settings.threads)} if self.settings.threads else None
        # Ctrl-C is the driver's to handle (it stops the child with SIGTERM): the child starts with SIGINT blocked
        # (a signal mask is inherited), so it never dies of it half-way through starting up, with a traceback.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        output = open(self.log, "a") if self.log is not None else None  # noqa: SIM115 (the child keeps its copy)
        try:
            self.children[key] = subprocess.Popen(run_one_command(key, self.store.root, self.settings), env=env,
                                                  pass_fds=[lock.fileno()] if lock is not None else [],
                                                  stdout=output, stderr=output)  # fmt: skip
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            if output is not None:
                output.close()

    def wait(self, timeout: float) -> list[tuple[RunKey, dict[str, Any] | None]]:
        deadline = time.monotonic() + timeout
        while True:
            done = [(key, child) for key, child in self.children.items() if child.poll() is not None]
            if done or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        results = []
        for key, child in done:
            del self.children[key]
            if child.returncode == BUSY_EXIT:  # another process trains the run (a driver that died left it)
                results.append((key, None))
                continue
            if child.returncode == 2:
                raise SystemExit(2)  # the child already printed its one-line error
            if child.returncode != 0:
                raise UserError(f"{key.label()} stopped with exit code {child.returncode}; "
                                "run the same command again to resume it")  # fmt: skip
            results.append((key, self.store.load_record(key)))
        return results

    def close(self) -> None:
        for child in self.children.values():
            if child.poll() is None:
                child.terminate()  # the child unwinds (no temporary file left); the run keeps its last checkpoint
            try:
                child.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                child.kill()  # its writes are atomic: a kill loses nothing finished
                child.wait()
        self.children.clear()


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


def make_executor(store: RunStore, settings: RunSettings, workers: int | None, address: str | None) -> Executor:
    """Sequential child processes unless --workers or a Ray address asks for Ray."""
    if workers is None and not address:
        return SubprocessExecutor(store, settings)
    return RayExecutor(store, settings, address or None, workers)


def default_threads(workers: int | None, address: str | None) -> int | None:
    """Threads per run when THREADS is not given: every core sequentially, cores / WORKERS on a local Ray
    instance, 1 on a cluster (each run asks for one CPU there)."""
    if address:
        return 1
    if workers:
        return max(1, len(os.sched_getaffinity(0)) // workers)
    return None
