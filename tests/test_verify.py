"""make verify: re-running published runs here, and the verdicts on how close they land."""

from __future__ import annotations

import json
import shutil

import pytest

from common import seal
from common.results import read_record, record_json
from experiments.cli import main
from experiments.running.runs import REPO
from experiments.studies import verify

pytestmark = pytest.mark.integration  # its tests start processes or train to the end

PUBLISHED = REPO / "docs" / "results"
RUN = "shared/mnist/d2l/torch-seed0"


def test_compare_steps_finds_the_first_difference_and_the_worst():
    assert verify.compare_steps([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == (None, 0.0)
    first, worst = verify.compare_steps([1.0, 2.0, 4.0], [1.0, 2.002, 4.0])
    assert first == 2 and worst == pytest.approx(1e-3)
    assert verify.compare_steps([1.0, None], [1.0, 2.0]) == (2, float("inf"))  # a diverged step in the record


def _record(seed=0, acc=0.98, steps=(2.3, 2.2, 2.1), threads=1):
    return {"mode": "shared", "dataset": "mnist", "recipe": "d2l", "backend": "torch", "seed": seed,
            "step_losses": list(steps), "epochs": [{"test_accuracy": acc}],
            "meta": {"threads": threads, "versions": {"torch": "2.14.1"}}}  # fmt: skip


def test_verdicts_quick_and_full():
    record = _record()
    same = {"step_losses": [2.3, 2.2, 2.1], "acc": None, "versions": {"torch": "2.14.1"}}
    drift = {**same, "step_losses": [2.3, 2.2000001, 2.1000003]}
    other = {**same, "step_losses": [2.3, 2.25, 2.1]}
    assert verify.judge(record, same, False, (0.0, 1)).verdict == "identical"
    assert verify.judge(record, drift, False, (0.0, 1)).verdict == "float drift"
    outcome = verify.judge(record, other, False, (0.0, 1))
    assert outcome.verdict == "different result" and outcome.first_diff == 2
    # full mode: the final accuracy against the seeds' spread (4 sd, at least 0.5 points)
    assert verify.judge(record, {**drift, "acc": 0.977}, True, (0.001, 10)).verdict == "float drift"
    assert verify.judge(record, {**drift, "acc": 0.96}, True, (0.001, 10)).verdict == "different result"
    assert verify.judge(record, {**drift, "acc": 0.96}, True, (0.01, 10)).verdict == "float drift"
    changed = verify.judge(record, {**same, "versions": {"torch": "2.15.0"}}, False, (0.0, 1))
    assert changed.versions == "torch 2.14.1 -> 2.15.0"


def test_a_change_of_kernels_is_named_and_its_rounding_is_drift():
    """A replay whose kernels differ from the record's (another layout, pooling kernel, instruction set) is named
    in the outcome; the rounding it brings is float drift, not a different result."""
    record = _record()
    record["meta"]["kernels"] = {"layout": "NCHW", "cpu_capability": "AVX2"}
    again = {"step_losses": [2.3, 2.2000001, 2.1000003], "acc": None, "versions": {"torch": "2.14.1"},
             "kernels": {"layout": "channels_last", "cpu_capability": "AVX2", "new entry": 1}}  # fmt: skip
    outcome = verify.judge(record, again, False, (0.0, 1))
    assert outcome.verdict == "float drift" and outcome.versions == "layout NCHW -> channels_last"
    tensorflow = {**record, "backend": "tensorflow", "meta": {**record["meta"], "kernels": {}}}
    tensorflow["meta"]["machine"] = {"isa": ["avx2"], "env": {}}  # recorded before `onednn` was: read from the ISA
    outcome = verify.judge(tensorflow, {**again, "kernels": {"onednn": True}}, False, (0.0, 1))
    assert outcome.versions == "oneDNN off -> oneDNN on"


def test_the_quick_sample_takes_the_lowest_seed_of_each_shared_group():
    records = [(None, _record(seed=s)) for s in (2, 0, 1)] + [(None, {**_record(seed=0), "mode": "native"})]
    (chosen,) = verify.quick_sample(records)
    assert chosen[1]["seed"] == 0 and chosen[1]["mode"] == "shared"


def _copy_published(tmp_path, run=RUN):
    target = tmp_path / (run + ".json")
    target.parent.mkdir(parents=True)
    shutil.copy(PUBLISHED / (run + ".json"), target)
    return target


def test_verify_replays_a_published_run_here_and_names_both_machines(tmp_path, capsys):
    _copy_published(tmp_path)
    assert main(["verify", "--results", str(tmp_path), "--steps", "3", "--json", str(tmp_path / "out.json")]) == 0
    out = capsys.readouterr().out
    assert "this machine: " in out and "made on:" in out and RUN in out
    (outcome,) = json.loads((tmp_path / "out.json").read_text())["outcomes"]
    assert outcome["steps"] == 3 and outcome["verdict"] in ("identical", "float drift")
    assert outcome["max_rel"] <= verify.STEP_TOLERANCE


def test_a_record_that_another_computation_made_is_a_different_result(tmp_path, capsys):
    path = _copy_published(tmp_path)
    record = read_record(path)
    record["step_losses"][1] *= 1.01  # as a changed recipe or batch order would show (a record as written: sealed)
    path.write_text(record_json(seal.sealed(record)))
    assert main(["verify", "--results", str(tmp_path), "--steps", "3"]) == 1
    assert "different result" in capsys.readouterr().out


def test_nothing_to_verify_is_one_line(tmp_path):
    from common.errors import UserError

    with pytest.raises(UserError, match="^no complete published runs under"):
        main(["verify", "--results", str(tmp_path)])
    _copy_published(tmp_path)
    with pytest.raises(UserError, match="matches 'nothing\\*'"):
        main(["verify", "--results", str(tmp_path), "--runs", "nothing*"])


def test_verify_says_when_tensorflow_ran_other_kernels_than_the_record():
    # An AVX2 record from before the backend pinned oneDNN on: TensorFlow had run Eigen's kernels (oneDNN off).
    epyc = {"cpu": "AMD EPYC", "family_model_stepping": "25/1/1", "isa": ["avx2"], "cores": 2, "env": {}}
    record = {**_record(), "backend": "tensorflow"}
    record["meta"] = {**record["meta"], "versions": {}, "machine": epyc, "kernels": {"onednn_opts": "default"}}
    now = {"step_losses": [2.3, 2.2000001, 2.1000003], "acc": None, "versions": {}, "kernels": {"onednn": True}}
    outcome = verify.judge(record, now, False, (0.0, 1))
    assert outcome.made_on == "AMD EPYC (25/1/1) AVX2 2 cores (oneDNN off)"
    assert outcome.versions == "oneDNN off -> oneDNN on"
    assert verify.judge(record, {**now, "kernels": {"onednn": False}}, False, (0.0, 1)).versions == ""
