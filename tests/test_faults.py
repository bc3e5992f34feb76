"""Faults, injected for real, and what the program promises about each (docs/faults.md is the table of them):
nothing trained twice, nothing lost, no traceback, one line per problem.

Real faults: SIGKILL of a driver or of a run at named points of its writes (the test hook LENET_REPRO_FAILPOINT,
common.atomic), Ctrl-C (a real SIGINT to the command's process group) in every phase, truncated and flipped
files, a read-only results directory (capabilities dropped when the tests run as root), a file size limit
(RLIMIT_FSIZE: the write fails with EFBIG, as on a full disk), and two drivers on one results directory.
Every command starts in its own session, so that signals reach it and its children and never pytest.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import resource
import shutil
import signal
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from common import data, sources
from common.atomic import FAILPOINT_ENV, atomic_file, stale_temps
from common.errors import UserError
from common.results import BUSY_EXIT, DamagedFile, RunKey, RunStore, read_checkpoint, read_record
from experiments.running.runs import train_run

pytestmark = pytest.mark.integration  # its tests start processes or train to the end

REPO = Path(__file__).resolve().parent.parent
RECIPE, EPOCHS, LIMIT = "seed-torch-fixed", 3, 1024  # 16 steps of 64 an epoch; checkpoints after epochs 1 and 2
STEPS = LIMIT // 64
TIMING = ("seconds", "train_seconds", "examples_per_second")
WRITE_POINTS = ["atomic.created", "atomic.half", "atomic.written", "atomic.synced", "atomic.kept-previous",
                "atomic.published"]  # fmt: skip


def run_key(seed: int = 0) -> RunKey:
    return RunKey("torch", "mnist", RECIPE, seed, "shared", LIMIT, EPOCHS)


def grid_argv(results: Path, seeds: int = 1) -> list[str]:
    return ["run", "--backend", "torch", "--recipes", RECIPE, "--datasets", "mnist", "--seeds", str(seeds),
            "--epochs", str(EPOCHS), "--limit", str(LIMIT), "--device", "cpu", "--threads", "1",
            "--results", str(results)]  # fmt: skip


def one_argv(results: Path, seed: int = 0) -> list[str]:
    return ["run-one", "--backend", "torch", "--recipe", RECIPE, "--dataset", "mnist", "--seed", str(seed),
            "--epochs", str(EPOCHS), "--limit", str(LIMIT), "--device", "cpu", "--threads", "1",
            "--results", str(results)]  # fmt: skip


STARTED: list[subprocess.Popen] = []


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Runs trained in this process use one thread, as the commands here do (--threads 1): fast on a busy machine."""
    saved = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    yield
    if saved is None:
        del os.environ["OMP_NUM_THREADS"]
    else:
        os.environ["OMP_NUM_THREADS"] = saved


@pytest.fixture(autouse=True)
def _stop_what_we_started():
    """Whatever a test started (and the children in its process groups) is gone after it, pass or fail."""
    yield
    for process in STARTED:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        process.wait()
    STARTED.clear()


def _as_from_a_terminal() -> None:
    """In the child before exec: SIGINT as a command typed at a terminal gets it. A test run started in the
    background of a non-interactive shell (`nohup make test &`) inherits SIGINT ignored, and Python then installs
    no KeyboardInterrupt handler, so Ctrl-C tests would test the shell instead of the command."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(argv: list[str], env: dict[str, str] | None = None, **popen) -> subprocess.Popen:
    """`python -m experiments ...` in a new session (its own process group), stdout and stderr captured."""
    also = popen.pop("preexec_fn", None)

    def before_exec() -> None:
        _as_from_a_terminal()
        if also:
            also()

    process = subprocess.Popen([sys.executable, "-m", "experiments", *argv], cwd=REPO, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                               preexec_fn=before_exec, env={**os.environ, **(env or {})}, **popen)  # fmt: skip
    STARTED.append(process)
    return process


def finish(process: subprocess.Popen, expect: int = 0, timeout: float = 600) -> str:
    """Wait for a command; fail with its output unless it exited with `expect`; return its stderr."""
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == expect, f"exit {process.returncode}, expected {expect}\n{out}\n{err}"
    assert "Traceback" not in err, err
    return err


def failpoint(point: str, nth: int = 1, action: str = "kill", match: str = "") -> dict[str, str]:
    return {FAILPOINT_ENV: f"{point}:{nth}:{action}:{match}"}


def wait_for(condition, timeout: float = 300, process: subprocess.Popen | None = None, what: str = "") -> None:
    """Poll `condition` until it holds (fail after `timeout` s, or if `process` ended first)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            output = process.stderr.read() if process.stderr else ""
            pytest.fail(f"the command ended (exit {process.returncode}) before {what}\n{output}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def numbers(record: dict) -> tuple[list, list]:
    """What must be identical between a disturbed run and an undisturbed one: losses and accuracies."""
    return record["step_losses"], [{k: v for k, v in e.items() if k not in TIMING} for e in record["epochs"]]


def error_lines(stderr: str, prefix: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(prefix)]


def leftovers(root: Path) -> list[Path]:
    """Temporary files of interrupted writes, and anything set aside as damaged, anywhere under `root`."""
    return sorted(p for p in root.rglob("*") if ".tmp" in p.name or p.name.endswith(".damaged"))


def check_every_file_is_whole(root: Path) -> None:
    """Every run record, checkpoint and verified data cache file under `root` reads back complete (temporary
    files aside)."""
    for path in root.rglob("*"):
        if ".tmp" in path.name or not path.is_file():
            continue
        if path.suffix == ".npz" and ".checkpoints" in path.parts:
            read_checkpoint(path)
        elif path.suffix == ".npz":
            with np.load(path) as archive:
                assert archive["data"].size, path  # reading the whole member checks its zip CRC-32
        elif path.suffix == ".json" and "-seed" in path.name:
            read_record(path)


def stop_in_epoch(epoch: int, step: int = 3):
    """A progress callback that stops an in-process run at `step` of `epoch` (0-based), as a crash would."""

    def progress(e, s, total, row=None):
        if e == epoch and s == step:
            raise _Stop

    return progress


class _Stop(Exception):
    pass


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[int, dict]:
    """The undisturbed grid, seeds 0 and 1, trained by the command line: the numbers every fault must end with."""
    root = tmp_path_factory.mktemp("undisturbed")
    finish(start(grid_argv(root, seeds=2)))
    store = RunStore(root)
    return {seed: store.load_record(run_key(seed)) for seed in (0, 1)}


@pytest.fixture(scope="module")
def whole(tmp_path_factory) -> dict:
    """The undisturbed run, trained in this process (the in-process faults compare with it)."""
    return train_run(run_key(), RunStore(tmp_path_factory.mktemp("whole")), "cpu")


def stopped_in_third_epoch(root: Path) -> RunStore:
    """A run stopped in its third epoch, in-process: checkpoint of epoch 2, the previous one of epoch 1."""
    store = RunStore(root)
    with pytest.raises(_Stop):
        train_run(run_key(), store, "cpu", stop_in_epoch(2))
    assert len(store.load_record(run_key())["epochs"]) == 2
    assert len(read_checkpoint(store.previous_checkpoint_path(run_key()))[1]["epochs"]) == 1
    return store


def damage(path: Path, how: str) -> None:
    content = path.read_bytes()
    if how == "truncated":
        path.write_bytes(content[: len(content) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "flipped":  # one bit of one byte, as bit rot does: the high bit (invalid UTF-8 in a JSON file)
        middle = len(content) // 2
        if path.suffix == ".npz":  # in the middle of the largest array's bytes: the zip's local headers hold fields
            # that readers take from the central directory instead (a flip there leaves every array intact)
            with zipfile.ZipFile(path) as archive:
                largest = max(archive.infolist(), key=lambda info: info.compress_size)
            start = largest.header_offset + 30 + len(largest.filename.encode()) + len(largest.extra)
            middle = start + largest.compress_size // 2
        path.write_bytes(content[:middle] + bytes([content[middle] ^ 0x80]) + content[middle + 1:])
    elif how == "garbage":
        path.write_bytes(os.urandom(len(content)))
    else:
        raise ValueError(how)


# ---------------------------------------------------------------------------------------------------------
# The one write helper


@pytest.mark.parametrize("point", WRITE_POINTS)
def test_a_write_killed_at_any_point_leaves_the_old_file_or_the_new_one_whole(point, tmp_path):
    target, previous = tmp_path / "file.bin", tmp_path / "file.prev.bin"
    old, new = b"old" * 1000, b"new" * 2000
    target.write_bytes(old)
    script = ("import sys; from pathlib import Path; from common.atomic import write_atomic; "
              "write_atomic(Path(sys.argv[1]), b'new' * 2000, keep_previous=Path(sys.argv[2]))")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", script, str(target), str(previous)], cwd=REPO,
                            env={**os.environ, **failpoint(point)}, capture_output=True)  # fmt: skip
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert target.read_bytes() == (new if point == "atomic.published" else old)
    if point in ("atomic.kept-previous", "atomic.published"):
        assert previous.read_bytes() == old
    else:
        assert not previous.exists()
    for temp in stale_temps(target) + stale_temps(previous):
        assert temp.name.startswith("."), "a killed write leaves at most a hidden temporary file"


def test_a_write_that_fails_is_one_line_and_leaves_nothing(tmp_path):
    target = tmp_path / "file.bin"
    target.write_bytes(b"old")
    script = ("import resource, sys; from pathlib import Path; from common.atomic import write_atomic; "
              "resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000)); "
              "from common.errors import run_cli; run_cli(lambda argv: write_atomic(Path(sys.argv[1]), b'x' * 5000))")
    result = subprocess.run([sys.executable, "-c", script, str(target)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [result.stderr.strip()] and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: cannot write {target}: File too large; ")
    assert target.read_bytes() == b"old" and sorted(tmp_path.iterdir()) == [target]


def test_create_exclusive_never_replaces_a_file_that_appeared_meanwhile(tmp_path):
    target = tmp_path / "train-labels-idx1-ubyte.gz"
    with atomic_file(target, exclusive=True) as staged:
        staged.stream.write(b"ours")
        target.write_bytes(b"theirs")  # another process placed the file while ours was being written
    assert not staged.published and target.read_bytes() == b"theirs" and sorted(tmp_path.iterdir()) == [target]


def test_provisioning_keeps_a_data_file_placed_after_its_check(tmp_path, monkeypatch):
    """The race check-then-rename lost: the file appears after provisioning looked, before it publishes."""
    folder = tmp_path / "mnist"
    folder.mkdir()
    source = data.find_file("mnist", data.LABEL_FILES["test"], data.data_dir())
    if source is None:
        pytest.skip("the real MNIST files are absent (`make data`)")
    fetched = tmp_path / "fetched" / source.name
    fetched.parent.mkdir()
    shutil.copyfile(source, fetched)
    placed = folder / source.name
    real_verify = data.verify_file

    def verify_while_someone_places_it(path, *args, **kwargs):
        array = real_verify(path, *args, **kwargs)
        placed.write_bytes(b"placed by someone else")
        return array

    monkeypatch.setattr(sources, "verify_file", verify_while_someone_places_it)
    monkeypatch.setattr(sources, "find_file", lambda *args: None)  # as if it looked just before the file appeared
    assert sources._install(fetched, folder, "mnist", data.LABEL_FILES["test"]) is None
    assert placed.read_bytes() == b"placed by someone else" and sorted(folder.iterdir()) == [placed]


def test_every_file_the_project_writes_goes_through_the_one_helper():
    """Renames and temp files live in common/atomic.py only: no hand-written copy with rules of its own."""
    pattern = re.compile(r"os\.replace\(|os\.rename\(|\.rename\(|mkstemp\(|shutil\.move\(|NamedTemporaryFile\(")
    wrong = [f"{path.relative_to(REPO)}:{number}: {line.strip()}"
             for folder in ("common", "experiments") for path in sorted((REPO / folder).rglob("*.py"))
             if path != REPO / "common" / "atomic.py"
             for number, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]  # fmt: skip
    assert not wrong, "write through common.atomic instead:\n" + "\n".join(wrong)


# ---------------------------------------------------------------------------------------------------------
# Damaged checkpoints, records and lock files (in this process: the run's own code paths)


@pytest.mark.parametrize("how", ["truncated", "flipped", "empty", "garbage", "no record inside"])
def test_a_damaged_checkpoint_is_set_aside_and_the_run_resumes_from_the_previous_epoch(how, whole, tmp_path,
                                                                                      capsys):  # fmt: skip
    store = stopped_in_third_epoch(tmp_path)
    path = store.checkpoint_path(run_key())
    if how == "no record inside":
        np.savez(path, w=np.ones(3))  # a whole zip file, but not a checkpoint
    else:
        damage(path, how)
    capsys.readouterr()
    record = train_run(run_key(), store, "cpu")
    (line,) = error_lines(capsys.readouterr().err, "warning:")
    assert line.startswith(f"warning: checkpoint {path} is damaged (")
    assert line.endswith("set aside as torch-seed0.npz.damaged; resuming from the previous epoch's checkpoint "
                         "(epoch 1)")  # fmt: skip
    assert numbers(record) == numbers(whole) and record["meta"]["attempts"][-1]["from_epoch"] == 1
    assert not path.exists() and not store.previous_checkpoint_path(run_key()).exists()
    assert path.with_name(path.name + ".damaged").exists(), "kept for a look"


def test_stopped_again_after_resuming_from_the_previous_checkpoint_it_resumes_from_it_once_more(whole, tmp_path,
                                                                                                capsys):  # fmt: skip
    # The damaged checkpoint was set aside and the run went on from the previous epoch's; it was stopped again before
    # its next epoch's checkpoint was written, so only the previous epoch's is left.
    store = stopped_in_third_epoch(tmp_path)
    path = store.checkpoint_path(run_key())
    damage(path, "truncated")
    with pytest.raises(_Stop):
        train_run(run_key(), store, "cpu", stop_in_epoch(1))
    assert not path.exists() and store.previous_checkpoint_path(run_key()).exists()
    capsys.readouterr()
    record = train_run(run_key(), store, "cpu")
    (line,) = error_lines(capsys.readouterr().err, "warning:")
    assert line == f"warning: checkpoint {path} is missing; resuming from the previous epoch's checkpoint (epoch 1)"
    assert numbers(record) == numbers(whole) and record["meta"]["attempts"][-1]["from_epoch"] == 1


def test_with_both_checkpoints_damaged_the_run_starts_again_and_says_so(whole, tmp_path, capsys):
    store = stopped_in_third_epoch(tmp_path)
    damage(store.checkpoint_path(run_key()), "truncated")
    damage(store.previous_checkpoint_path(run_key()), "flipped")
    capsys.readouterr()
    record = train_run(run_key(), store, "cpu")
    (line,) = error_lines(capsys.readouterr().err, "warning:")
    assert "the previous epoch's checkpoint is damaged too" in line
    assert line.endswith("no earlier checkpoint is left, so this run starts again from its first epoch")
    assert numbers(record) == numbers(whole) and record["meta"]["attempts"][-1]["from_epoch"] == 0


def test_a_partial_record_without_its_checkpoints_is_trained_again_and_says_so(whole, tmp_path, capsys):
    # What a fresh checkout holds when a partial record was kept and the ignored .checkpoints/ were not.
    store = stopped_in_third_epoch(tmp_path)
    store.checkpoint_path(run_key()).unlink()
    store.previous_checkpoint_path(run_key()).unlink()
    capsys.readouterr()
    record = train_run(run_key(), store, "cpu")
    (line,) = error_lines(capsys.readouterr().err, "warning:")
    assert line == (f"warning: run record {store.record_path(run_key())} has 2 epoch(s) but no checkpoint to resume "
                    "them from (checkpoints stay in the results directory's .checkpoints/ on the machine that made "
                    "them): the run is trained again from its first epoch")  # fmt: skip
    assert numbers(record) == numbers(whole) and [a["from_epoch"] for a in record["meta"]["attempts"]] == [0]


@pytest.mark.parametrize("how", ["truncated", "flipped", "empty", "garbage", "lacks fields", "not an object"])
def test_a_damaged_record_is_set_aside_and_the_run_goes_on_from_its_checkpoint(how, whole, tmp_path, capsys):
    store = stopped_in_third_epoch(tmp_path)
    path = store.record_path(run_key())
    if how == "lacks fields":
        path.write_text(json.dumps({"backend": "torch"}))
    elif how == "not an object":
        path.write_text("[1, 2]")
    else:
        damage(path, how)
    with pytest.raises(DamagedFile) as caught:
        read_record(path)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)
    capsys.readouterr()
    record = train_run(run_key(), store, "cpu")
    (line,) = error_lines(capsys.readouterr().err, "warning:")
    assert line.startswith(f"warning: run record {path} is damaged (")
    assert line.endswith("set aside as torch-seed0.json.damaged; the run continues from its checkpoint (epoch 2)")
    assert numbers(record) == numbers(whole) and record["meta"]["attempts"][-1]["from_epoch"] == 2
    assert store.load_record(run_key())["status"] == "complete"


def test_a_damaged_record_of_a_finished_run_is_trained_again_and_the_report_says_what_to_do(whole, tmp_path,
                                                                                           capsys):  # fmt: skip
    from experiments.analysis.report import write_report
    from experiments.running.grid import finished

    store = RunStore(tmp_path)
    store.save_record(run_key(), whole)
    damage(store.record_path(run_key()), "truncated")
    with pytest.raises(UserError) as caught:  # the report cannot guess the numbers: one line, what to do
        write_report(store)
    message = str(caught.value)
    assert "\n" not in message and f"run record {store.record_path(run_key())} is damaged" in message
    assert "run the `lenet-repro run` command that trains it again" in message
    assert not finished(store, run_key()), "a driver schedules the run again"
    capsys.readouterr()
    record = train_run(run_key(), store, "cpu")
    (line,) = error_lines(capsys.readouterr().err, "warning:")
    assert line.endswith("set aside as torch-seed0.json.damaged; the run is trained again from its first epoch")
    assert numbers(record) == numbers(whole)


@pytest.mark.parametrize("how", ["truncated", "flipped", "empty", "garbage"])
def test_a_lock_file_locks_whatever_its_content(how, tmp_path):
    store = RunStore(tmp_path)
    store.try_lock(run_key()).release()
    path = store.lock_path(run_key())
    path.write_bytes(b"pid 123 on host x\n")
    damage(path, how)
    lock = store.try_lock(run_key())
    assert lock is not None and store.try_lock(run_key()) is None, "the content is never read"
    lock.release()


def test_a_lock_file_that_is_not_a_file_is_one_line(tmp_path):
    store = RunStore(tmp_path)
    store.lock_path(run_key()).mkdir(parents=True)
    with pytest.raises(DamagedFile, match="is not a regular file; remove it"):
        store.try_lock(run_key())
    result = subprocess.run([sys.executable, "-m", "experiments", *grid_argv(tmp_path)], cwd=REPO, timeout=300,
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (f"error: lock file {store.lock_path(run_key())} is not a regular file; remove "
                                     f"it (`rm -r {store.lock_path(run_key())}`: it holds nothing but the lock) "
                                     "and run the same command again")  # fmt: skip
    store.lock_path(run_key()).rmdir()
    assert store.try_lock(run_key()) is not None


# ---------------------------------------------------------------------------------------------------------
# A results directory that is read-only


def _drop_write_privileges() -> None:
    """In the child, before exec: root without the capabilities that let it write anywhere (permissions apply)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2, 3):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            os._exit(99)


def run_without_write_access(argv: list[str], mechanism: str, results: Path) -> subprocess.CompletedProcess:
    """The command with `results` read-only for it: by its permission bits (as root: with the capabilities that
    override them dropped), or by a read-only bind mount of it in a mount namespace of its own."""
    command, preexec = [sys.executable, "-m", "experiments", *argv], None
    if mechanism == "read-only mount":
        command = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                   'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" && exec "$@"', str(results), *command]
    elif os.geteuid() == 0:
        preexec = _drop_write_privileges
    result = subprocess.run(command, cwd=REPO, timeout=300, capture_output=True, text=True,
                            preexec_fn=preexec)  # fmt: skip
    if result.returncode == 99:
        pytest.skip("running as root without the right to drop capabilities: permissions cannot be enforced")
    return result


def make_read_only(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        path.chmod(stat.S_IMODE(path.stat().st_mode) & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


@pytest.mark.parametrize("mechanism", ["permissions", "read-only mount"])
@pytest.mark.parametrize("content", ["empty", "a stopped run"])
def test_a_read_only_results_directory_is_one_line(content, mechanism, tmp_path):
    if mechanism == "read-only mount":
        probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                                f"mount --bind {tmp_path} {tmp_path}"], capture_output=True)  # fmt: skip
        if probe.returncode != 0:
            pytest.skip(f"no private mount namespace here ({probe.stderr.decode().strip()})")
    results = tmp_path / "results"
    results.mkdir()
    if content == "a stopped run":
        stopped_in_third_epoch(results)
        RunStore(results).try_lock(run_key()).release()
    if mechanism == "permissions":
        make_read_only(results)
    reason = "Permission denied" if mechanism == "permissions" else "Read-only file system"
    try:
        for argv, refused in ((grid_argv(results), "cannot open the lock file"),
                              (one_argv(results), "cannot open the lock file"),
                              (["compare", "--results", str(results)], "cannot write")):  # fmt: skip
            if content == "empty" and argv[0] == "compare":  # nothing to report: said before anything is written
                result = run_without_write_access(argv, mechanism, results)
                assert result.returncode == 2 and result.stderr.strip() == (
                    f"error: {results} holds no run records: train some first (make reproduce-<backend> "
                    f"RESULTS={results}), or give another directory")
                continue
            result = run_without_write_access(argv, mechanism, results)
            assert result.returncode == 2, result.stderr
            (line,) = result.stderr.splitlines()
            assert line.startswith(f"error: {refused} {results}/") and f": {reason}; " in line, line
            assert "is not writable here: make it writable (or use another directory)" in line
    finally:
        for path in [results, *results.rglob("*")]:
            path.chmod(stat.S_IMODE(path.stat().st_mode) | stat.S_IWUSR)


# ---------------------------------------------------------------------------------------------------------
# Killed drivers and runs, on the command line


def run_one_processes(results: Path) -> dict[int, list[int]]:
    """Living `run-one` processes training in `results`: seed -> pids."""
    found: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if b"run-one" in argv and str(results).encode() in argv and state != "Z":
            seed = int(argv[argv.index(b"--seed") + 1])
            found.setdefault(seed, []).append(int(proc.name))
    return found


@pytest.mark.parametrize("locked", [True, False])
def test_a_run_one_that_finds_its_run_trained_elsewhere_stops_before_training(locked, tmp_path):
    """The trainer's lock, held here as a process of a killed driver would hold it: a driver's child (--locked)
    exits with BUSY_EXIT and says nothing (its driver says it); a run-one started by hand says it in one line."""
    store = RunStore(tmp_path)
    lock = store.try_trainer_lock(run_key())
    result = subprocess.run([sys.executable, "-m", "experiments", *one_argv(tmp_path), *(["--locked"] * locked)],
                            cwd=REPO, capture_output=True, text=True, timeout=300)  # fmt: skip
    lock.release()
    if locked:
        assert (result.returncode, result.stderr) == (BUSY_EXIT, "")
    else:
        assert result.returncode == 2 and result.stderr == (
            f"error: {run_key().label()} is being trained by another process; run it again when that one ends\n")
    assert store.load_record(run_key()) is None and not store.checkpoint_path(run_key()).exists()


@pytest.mark.slow
def test_a_driver_waits_for_a_run_whose_trainer_lives_on_then_trains_it(reference, tmp_path):
    """A run whose trainer's lock another process holds (a run-one left by a killed driver, a Ray worker not yet
    gone) is skipped, waited for, and trained here once that process has stopped."""
    store = RunStore(tmp_path / "results")
    lock = store.try_trainer_lock(run_key())
    log = tmp_path / "stderr.txt"
    with log.open("w") as stream:
        driver = subprocess.Popen([sys.executable, "-m", "experiments", *grid_argv(store.root)], cwd=REPO,
                                  stdout=subprocess.DEVNULL, stderr=stream, start_new_session=True)  # fmt: skip
    STARTED.append(driver)
    skipped = f"{run_key().label()} is being trained by another process: skipped; taken up here if it stops"
    wait_for(lambda: skipped in log.read_text(), process=driver, what="the driver to skip the run")
    assert driver.poll() is None and store.load_record(run_key()) is None, "it waits, and trains nothing meanwhile"
    lock.release()
    assert driver.wait(timeout=600) == 0, log.read_text()
    assert "Traceback" not in log.read_text()
    record = store.load_record(run_key())
    assert len(record["meta"]["attempts"]) == 1 and numbers(record) == numbers(reference[0])


def holds(pid: int, path: str) -> bool:
    """Whether process `pid` has `path` open (read from /proc: no lock is touched)."""
    try:
        return any(os.readlink(fd) == path for fd in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False


@pytest.mark.slow
def test_a_driver_killed_mid_grid_then_restarted_trains_each_run_once(reference, tmp_path):
    """kill -9 of the driver while its run trains, then the same command at once."""
    store = RunStore(tmp_path)
    first = start(grid_argv(tmp_path, seeds=2))
    trainer_lock = str(store.trainer_lock_path(run_key(0)))
    wait_for(lambda: any(holds(pid, trainer_lock) for pid in run_one_processes(tmp_path).get(0, [])),
             process=first, what="the run-one child holding its run's trainer lock")  # fmt: skip
    os.kill(first.pid, signal.SIGKILL)  # the driver only: its run-one child is not told
    first.wait()
    second = start(grid_argv(tmp_path, seeds=2))
    most = 0
    while second.poll() is None:  # every 0.1 s: never two processes training one run (holding its trainer lock; a
        # child of the second driver that finds the lock held exits without training)
        training = {seed: [pid for pid in pids if holds(pid, str(store.trainer_lock_path(run_key(seed))))]
                    for seed, pids in run_one_processes(tmp_path).items()}  # fmt: skip
        most = max([most, *map(len, training.values())])
        assert all(len(pids) <= 1 for pids in training.values()), training
        time.sleep(0.1)
    err = finish(second)
    assert most == 1
    label = run_key(0).label()
    assert f"{label} is being trained by another driver: skipped; taken up here if it stops" in err
    assert f"{label} was finished by another driver" in err
    for seed in (0, 1):
        record = store.load_record(run_key(seed))
        assert record["status"] == "complete" and len(record["meta"]["attempts"]) == 1, "trained once"
        assert numbers(record) == numbers(reference[seed])
    assert leftovers(tmp_path) == []


@pytest.mark.slow
@pytest.mark.parametrize(("point", "match"), [(point, "/.checkpoints/") for point in WRITE_POINTS]
                         + [("atomic.half", ".json")])  # fmt: skip
def test_a_run_killed_at_any_point_of_a_checkpoint_write_resumes_to_the_same_numbers(point, match, reference,
                                                                                     tmp_path):  # fmt: skip
    """SIGKILL in the second checkpoint write (after epoch 2; the first one is kept as the fallback)."""
    store = RunStore(tmp_path)
    nth = 1 if point == "atomic.kept-previous" else 2  # the first write has no previous checkpoint to keep
    finish(start(one_argv(tmp_path), failpoint(point, nth, "kill", match)), expect=-signal.SIGKILL)
    check_every_file_is_whole(tmp_path)
    checkpoint = read_checkpoint(store.checkpoint_path(run_key()))[1]
    done = 2 if point == "atomic.published" or match == ".json" else 1
    assert len(checkpoint["epochs"]) == done, "the checkpoint holds the last epoch whose write completed"
    finish(start(one_argv(tmp_path)))
    record = store.load_record(run_key())
    assert record["status"] == "complete" and numbers(record) == numbers(reference[0])
    assert [a["from_epoch"] for a in record["meta"]["attempts"]] == [0, done]
    assert leftovers(tmp_path) == [], "the resumed run removed the killed write's temporary file"
    assert not store.checkpoint_path(run_key()).exists() and not store.previous_checkpoint_path(run_key()).exists()


@pytest.mark.slow
@pytest.mark.parametrize(("stop_at_step", "resumes_from"), [(STEPS + 8, 0), (2 * STEPS + 8, 1)])
def test_a_truncated_checkpoint_is_one_line_and_the_same_command_completes_the_run(stop_at_step, resumes_from,
                                                                                   reference, tmp_path):  # fmt: skip
    """The issue's second reproduction: stopped after an epoch, its checkpoint truncated to half, run again."""
    store = RunStore(tmp_path)
    finish(start(one_argv(tmp_path), failpoint("run.step", stop_at_step)), expect=-signal.SIGKILL)
    path = store.checkpoint_path(run_key())
    damage(path, "truncated")
    err = finish(start(grid_argv(tmp_path)))
    (line,) = error_lines(err, "warning:")
    assert line.startswith(f"warning: checkpoint {path} is damaged (BadZipFile: ")
    assert line.endswith("resuming from the previous epoch's checkpoint (epoch 1)" if resumes_from else
                         "no earlier checkpoint is left, so this run starts again from its first epoch")  # fmt: skip
    assert error_lines(err, "error:") == []
    record = store.load_record(run_key())
    assert record["status"] == "complete" and numbers(record) == numbers(reference[0])
    assert record["meta"]["attempts"][-1]["from_epoch"] == resumes_from


def _limit_file_size(limit: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing the process

    return apply


@pytest.mark.slow
def test_a_disk_that_fills_up_mid_write_is_one_line_and_the_next_run_resumes(reference, tmp_path):
    store = RunStore(tmp_path)
    finish(start(one_argv(tmp_path), failpoint("run.step", STEPS + 8)), expect=-signal.SIGKILL)  # in epoch 2
    path = store.checkpoint_path(run_key())
    size = path.stat().st_size
    # Room for every file as large as epoch 1's checkpoint, not for epoch 2's (about 1 kB larger): its write fails.
    err = finish(start(grid_argv(tmp_path), preexec_fn=_limit_file_size(size + 200)), expect=2)
    (line,) = error_lines(err, "error:")
    assert line.startswith(f"error: cannot write {path}: File too large; the file is larger than this process "
                           "may write")  # fmt: skip
    assert line.endswith("then run the same command again (finished work is kept)")
    assert len(read_checkpoint(path)[1]["epochs"]) == 1 and path.stat().st_size == size, "the old one is whole"
    assert len(store.load_record(run_key())["epochs"]) == 1 and leftovers(tmp_path) == []
    finish(start(grid_argv(tmp_path)))  # space freed: the same command
    record = store.load_record(run_key())
    assert record["status"] == "complete" and numbers(record) == numbers(reference[0])
    assert [a["from_epoch"] for a in record["meta"]["attempts"]] == [0, 1], "the failed attempt saved nothing"


@pytest.mark.slow
def test_ctrl_c_in_every_phase_is_one_line_and_the_run_still_ends_with_the_same_numbers(reference, tmp_path):
    """A real SIGINT to the command's process group (as a terminal sends it) in the warm-up, data, training,
    checkpoint and report phases, and a SIGTERM to the driver, one after another on one results directory."""
    store = RunStore(tmp_path / "results")
    data_dir = tmp_path / "data"  # the real files, but no verified cache yet: loading the data writes one
    (data_dir / "mnist").mkdir(parents=True)
    for name in data.FILE_NAMES:
        source = data.find_file("mnist", name, data.data_dir())
        (data_dir / "mnist" / source.name).symlink_to(source)
    env = {data.DATA_DIR_ENV: str(data_dir)}
    phases = [("warm-up", failpoint("run.warm-up", 1, "interrupt"), 0),
              ("data", failpoint("atomic.written", 1, "interrupt", "/.cache/"), 0),
              ("training", failpoint("run.step", STEPS + 8, "interrupt"), 1),
              ("checkpoint write", failpoint("atomic.half", 1, "interrupt", "/.checkpoints/"), 1)]  # fmt: skip
    for phase, hook, epochs in phases:
        err = finish(start(grid_argv(store.root), {**env, **hook}), expect=130)
        assert [line for line in err.splitlines() if "stopped" in line or "interrupted" in line] == [
            "[grid] stopped: every finished epoch is checkpointed; run the same command again to resume"], phase
        assert error_lines(err, "error:") == [] and leftovers(tmp_path) == [], phase
        check_every_file_is_whole(tmp_path)
        record = store.load_record(run_key())
        assert (len(record["epochs"]) if record else 0) == epochs, phase
    assert list((data_dir / ".cache" / "mnist").glob("*.npz")), "the data phase's cache is written by now"
    # SIGTERM to the driver alone (`kill PID`; SIGHUP, a closed terminal, is handled alike): it stops its child too.
    driver = start(grid_argv(store.root), env)
    trainer_lock = str(store.trainer_lock_path(run_key()))
    wait_for(lambda: any(holds(pid, trainer_lock) for pid in run_one_processes(store.root).get(0, [])),
             process=driver, what="the run-one child holding its run's trainer lock")  # fmt: skip
    os.kill(driver.pid, signal.SIGTERM)
    err = finish(driver, expect=130)
    assert error_lines(err, "[grid] stopped:") == [
        "[grid] stopped: every finished epoch is checkpointed; run the same command again to resume"]
    assert run_one_processes(store.root) == {} and leftovers(tmp_path) == [], "no trainer left behind"
    check_every_file_is_whole(tmp_path)
    finish(start(grid_argv(store.root), env))
    record = store.load_record(run_key())
    assert record["status"] == "complete" and numbers(record) == numbers(reference[0])
    # The report: stopped while writing report.md, then written whole by the same command.
    compare = ["compare", "--results", str(store.root)]
    err = finish(start(compare, failpoint("atomic.half", 1, "interrupt", "report.md")), expect=130)
    assert err.strip() == "interrupted: finished work is saved; run the same command again to resume"
    assert not (store.root / "report.md").exists() and leftovers(tmp_path) == []
    finish(start(compare))
    assert "| recipe |" in (store.root / "report.md").read_text()


# ---------------------------------------------------------------------------------------------------------
# Ray: a sequential and a Ray driver at once, and a Ray driver killed


def ray_trainers(session: int) -> list[int]:
    """Living Ray workers running a train_task, started by the driver whose session is `session`."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit() or not (proc / "cmdline").read_bytes().startswith(b"ray::train_task"):
                continue
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[3]) == session:  # state, parent, group, session
            found.append(int(proc.name))
    return found


# A run-one that turns SIGTERM into SystemExit, then forks a child that runs a second thread and waits in its main
# thread for a lock nobody releases (a DataLoader worker of the blog post's MXNet script waiting for its next task).
# SIGTERM is blocked on the child's main thread, so the kernel must hand it to the other thread, as it may in a
# real worker: a handler there would only be noted for the main thread, which never wakes to run it.
_FORKED_WORKER = """
import os, signal, sys, threading, time
from experiments.cli import unwind_on_sigterm
unwind_on_sigterm()
ready, tell = os.pipe()
pid = os.fork()
if pid == 0:
    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    os.write(tell, b"x")
    lock = threading.Lock()
    lock.acquire()
    lock.acquire()
    os._exit(0)
os.read(ready, 1)
os.kill(pid, signal.SIGTERM)
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        print(os.waitstatus_to_exitcode(status))
        sys.exit(0)
    time.sleep(0.05)
os.kill(pid, signal.SIGKILL)
print("still running")
"""


def test_a_process_forked_by_a_run_dies_on_sigterm_whichever_thread_gets_it():
    """run-one unwinds on SIGTERM, but what it forks gets the default back: Pool.terminate() of the seed MXNet
    script's loaders sends its workers SIGTERM and waits for them, and a handler inherited there could leave a
    worker alive and the run waiting for it forever."""
    result = subprocess.run([sys.executable, "-c", _FORKED_WORKER], cwd=REPO, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(-signal.SIGTERM)], result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.ray
def test_a_sequential_and_a_ray_driver_at_once_then_a_killed_ray_driver_never_train_one_run_twice(reference,
                                                                                                   tmp_path):
    store = RunStore(tmp_path)
    samples = []

    def trainers(results: Path, ray_driver: subprocess.Popen) -> int:
        """Processes training the grid's one run now: run-one children, and the Ray driver's workers."""
        count = len(run_one_processes(results).get(0, [])) + len(ray_trainers(ray_driver.pid))
        samples.append(count)
        return count

    # Both drivers at once, on the same one-run grid: one of them trains it, the other waits and finds it done.
    ray_driver = start([*grid_argv(tmp_path), "--workers", "1"])
    sequential = start(grid_argv(tmp_path))
    while ray_driver.poll() is None or sequential.poll() is None:
        assert trainers(tmp_path, ray_driver) <= 1
        time.sleep(0.1)
    finish(ray_driver)
    finish(sequential)
    record = store.load_record(run_key())
    assert len(record["meta"]["attempts"]) == 1 and numbers(record) == numbers(reference[0])
    assert max(samples) == 1, "it was trained, by one of them"

    # A Ray driver killed while its worker trains; a sequential driver started at once waits for that worker.
    again = RunStore(tmp_path / "again")
    ray_driver = start([*grid_argv(again.root), "--workers", "1"])
    wait_for(lambda: again.checkpoint_path(run_key()).exists(), process=ray_driver, what="the first checkpoint")
    os.kill(ray_driver.pid, signal.SIGKILL)
    sequential = start(grid_argv(again.root))
    while sequential.poll() is None:
        assert trainers(again.root, ray_driver) <= 1
        time.sleep(0.1)
    finish(sequential)
    record = again.load_record(run_key())
    assert record["status"] == "complete" and numbers(record) == numbers(reference[0])
    assert all(attempt["from_epoch"] >= 1 for attempt in record["meta"]["attempts"][1:])


def test_the_failpoint_hook_is_inert_unless_named(tmp_path, monkeypatch):
    """The test hook costs nothing and does nothing in normal use (no variable, or another point)."""
    from common import atomic

    monkeypatch.delenv(FAILPOINT_ENV, raising=False)
    atomic.failpoint("atomic.half", tmp_path)
    monkeypatch.setenv(FAILPOINT_ENV, "run.step:1:kill")
    atomic.failpoint("atomic.half", tmp_path)
    monkeypatch.setenv(FAILPOINT_ENV, "atomic.half:1:kill:no-such-path")
    atomic.failpoint("atomic.half", tmp_path)
