"""Records you can trust: every record is sealed with a digest of its content (common/seal.py); a record changed
afterwards is named in one line and left out of every table; a results directory that does not exist, or holds no
records, is one line and a non-zero exit, and nothing is created."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from common import seal
from common.results import RunStore, read_record, record_json, write_atomic
from experiments.analysis.report import write_report

pytestmark = pytest.mark.integration  # its tests start processes or train to the end

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = REPO / "docs" / "results"
# A few committed runs: one recipe and dataset, three backends, two seeds.
SAMPLE = [f"shared/mnist/d2l/{backend}-seed{seed}.json" for backend in ("torch", "mxnet", "jax") for seed in (0, 1)]
CHANGED = "shared/mnist/d2l/jax-seed1.json"


def copy_of_published(root: Path, names: list[str] = SAMPLE) -> RunStore:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(PUBLISHED / name, root / name)
    return RunStore(root)


def lenet_repro(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "experiments", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def test_every_committed_record_is_sealed_and_matches():
    store = RunStore(PUBLISHED)
    records = store.records(report=lambda line: None)
    assert not store.left_out, store.left_out[:3]
    assert len(records) == len(store.record_paths()) >= 491


def test_a_seal_is_over_the_content_not_its_layout():
    """A seal is over the record's numbers, not the file's layout: the step losses packed or written out in full,
    indented or not, the same seal; one number changed, another."""
    record = read_record(PUBLISHED / SAMPLE[0])
    assert seal.problem(record) is None
    assert seal.problem(json.loads(json.dumps(record, indent=4))) is None  # the losses in full, another layout
    assert json.loads((PUBLISHED / SAMPLE[0]).read_text())["step_losses"]["encoding"].endswith("-base64")
    record["epochs"][-1]["test_accuracy"] += 1e-4
    assert "does not match its seal" in seal.problem(record)


def test_packed_losses_read_back_bit_for_bit():
    """float32 losses packed as float32, the float64 reference's as float64, a non-finite one (None) kept."""
    from common.results import decode_losses, encode_losses

    framework = [float(np.float32(v)) for v in (2.302585, 1.25, 0.0001)] + [None]
    reference = [2.302585092994046, 1e-300]
    assert encode_losses(framework)["encoding"] == "float32-base64"
    assert encode_losses(reference)["encoding"] == "float64-base64"
    for losses in (framework, reference, []):
        assert decode_losses(json.loads(json.dumps(encode_losses(losses)))) == losses
    assert decode_losses([1.0, None]) == [1.0, None]  # a record written before the losses were packed


def _change_one_digit(path: Path) -> None:
    """The last digit of the final test accuracy, edited in the file's text (as a hand or a merge would)."""
    text = path.read_text()
    before = json.dumps(json.loads(text)["epochs"][-1]["test_accuracy"])
    after = before[:-1] + ("1" if before[-1] != "1" else "2")
    head, found, tail = text.rpartition(f'"test_accuracy": {before}')
    assert found
    path.write_text(head + f'"test_accuracy": {after}' + tail)


def _change_a_step_loss(path: Path) -> None:
    record = read_record(path)
    record["step_losses"][100] *= 1.001
    write_atomic(path, record_json(record).encode())  # written without a new seal: the old one stays


def _remove_a_field(path: Path) -> None:
    record = read_record(path)
    del record["meta"]["threads"]
    write_atomic(path, record_json(record).encode())


def _remove_the_seal(path: Path) -> None:
    record = read_record(path)
    del record["seal"]
    write_atomic(path, record_json(record).encode())


@pytest.mark.parametrize(("change", "said"), [
    (_change_one_digit, "does not match its seal"),
    (_change_a_step_loss, "does not match its seal"),
    (_remove_a_field, "does not match its seal"),
    (_remove_the_seal, "has no seal"),
])  # fmt: skip
def test_a_changed_record_is_named_and_left_out_and_the_others_report_the_same(tmp_path, change, said):
    untouched = copy_of_published(tmp_path / "untouched", [name for name in SAMPLE if name != CHANGED])
    write_report(untouched)
    store = copy_of_published(tmp_path / "changed")
    change(store.root / CHANGED)
    result = lenet_repro("compare", "--results", str(store.root))
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith(f"warning: run record {store.root / CHANGED}: ") and said in lines[0]
    assert "(1 left out: see above)" in result.stdout
    assert (store.root / "report.csv").read_text() == (untouched.root / "report.csv").read_text()
    assert "1 more left out" in (store.root / "report.md").read_text()
    # sealed again on purpose, it is back in the tables
    again = lenet_repro("compare", "--results", str(store.root), "--accept-changed")
    assert again.returncode == 0 and "sealed as it is now" in again.stderr and "left out" not in again.stdout
    assert seal.problem(read_record(store.root / CHANGED)) is None


def test_verify_leaves_a_changed_record_out_in_one_line(tmp_path):
    store = copy_of_published(tmp_path, [SAMPLE[0], CHANGED])
    _change_a_step_loss(store.root / CHANGED)
    result = lenet_repro("verify", "--results", str(store.root), "--runs", "nothing/*")
    assert f"warning: run record {store.root / CHANGED}: its content does not match its seal" in result.stderr
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].startswith("error: no published run")


@pytest.mark.parametrize("command", [["compare"], ["verify"]])
def test_a_missing_or_empty_results_directory_is_one_line_and_creates_nothing(tmp_path, command):
    missing = tmp_path / "typo"
    result = lenet_repro(*command, "--results", str(missing))
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "no results directory" in result.stderr
    assert not missing.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    result = lenet_repro(*command, "--results", str(empty))
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert list(empty.iterdir()) == []


def test_make_compare_with_a_mistyped_results_directory_fails_in_one_line(tmp_path):
    result = subprocess.run(["make", "--no-print-directory", "compare", f"RESULTS={tmp_path / 'typo'}"], cwd=REPO,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode != 0 and "error: no results directory" in result.stderr
    assert not (tmp_path / "typo").exists()


def test_a_record_written_by_a_run_is_sealed(tmp_path):
    store = copy_of_published(tmp_path, [SAMPLE[0]])
    record = read_record(store.root / SAMPLE[0])
    from common.results import RunKey

    key = RunKey("torch", "mnist", "d2l", 0, "shared")
    store.save_record(key, {k: v for k, v in record.items() if k != "seal"})
    saved = read_record(store.record_path(key))
    assert seal.problem(saved) is None and saved["seal"]["code"].startswith("lenet-repro ")


def test_study_files_are_sealed_and_a_changed_one_is_one_line(tmp_path):
    from common.errors import UserError

    for path in sorted((REPO / "docs" / "studies").glob("*.json")):
        seal.read_json(path, "study file")  # every committed study file matches its seal
    study = json.loads((REPO / "docs" / "studies" / "order-d2l-mnist.json").read_text())
    study["runs"][0]["test_accuracy"] += 0.01
    changed = tmp_path / "order-d2l-mnist.json"
    changed.write_text(json.dumps(study, indent=1))
    with pytest.raises(UserError, match=r"study file .*order-d2l-mnist.json: its content does not match its seal"):
        seal.read_json(changed, "study file")
    result = lenet_repro("order-study", "--out", str(tmp_path), "--seeds", "1")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "does not match its seal" in result.stderr
