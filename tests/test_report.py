"""The report: side-by-side tables, CSV and plots built from small real runs of both backends."""

from __future__ import annotations

import csv
import io

import pytest
from PIL import Image

from common.results import RunKey, RunStore
from experiments.analysis.report import summary_table, write_report
from experiments.running.runs import train_run


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Two recipes x two datasets x two backends x two seeds, 2 epochs on 256 examples."""
    store = RunStore(tmp_path_factory.mktemp("results"))
    for backend in ("torch", "mxnet"):
        for recipe in ("seed-torch-fixed", "d2l"):
            for dataset in ("mnist", "fashion-mnist"):
                for seed in (0, 1):
                    train_run(RunKey(backend, dataset, recipe, seed, "shared", 256, 2), store, "cpu")
    return store


@pytest.mark.slow
def test_report_puts_both_backends_side_by_side_for_both_datasets(store):
    message = write_report(store)
    assert "16 runs" in message and "4 plots" in message
    report = (store.root / "report.md").read_text()
    assert "| recipe | dataset | PyTorch test acc | MXNet test acc | same result as PyTorch |" in report
    table = [line for line in report.splitlines() if line.startswith("| `")][:4]  # the main table comes first
    assert {line.split(" | ")[1] for line in table} == {"mnist", "fashion-mnist"}
    for line in table:
        cells = line.split(" | ")
        assert sum("(n=2)" in cell for cell in cells) == 2, line  # both backends, mean ± std over 2 seeds
        assert cells[-1] == "MXNet yes |", line  # shared weights: paired by seed, the same
    differences = [line for line in report.splitlines() if "| MXNet − PyTorch |" in line]
    assert len(differences) == 4 and all(" pp [" in line and "paired (2 seeds)" in line for line in differences)
    assert "16x5x5" in report and "61,706" in report  # the recipe's layer table and notes
    drift = report[report.index("first step with gap > 1e-3"):].split("\n\n")[0].splitlines()[2:]
    assert len(drift) == 4 and all(line.split(" | ")[2] == "2" for line in drift)  # 2 seeds paired per row


@pytest.mark.slow
def test_shared_mode_backends_agree_in_the_report(store):
    write_report(store)
    rows = list(csv.DictReader(io.StringIO((store.root / "report.csv").read_text())))
    assert len(rows) == 8
    by_key = {(r["dataset"], r["recipe"], r["backend"]): r for r in rows}
    for dataset in ("mnist", "fashion-mnist"):
        for recipe in ("seed-torch-fixed", "d2l"):
            torch_row, mxnet_row = by_key[(dataset, recipe, "torch")], by_key[(dataset, recipe, "mxnet")]
            assert float(torch_row["train_loss_mean"]) == pytest.approx(float(mxnet_row["train_loss_mean"]), rel=1e-3)


@pytest.mark.slow
def test_plots_are_valid_pngs(store):
    write_report(store)
    plots = sorted((store.root / "plots").glob("*.png"))
    assert len(plots) == 4
    for path in plots:
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size[0] > 1000 and image.size[1] > 400
    report = (store.root / "report.md").read_text()
    assert all(f"plots/{path.name}" in report for path in plots)


@pytest.mark.slow
def test_report_is_a_pure_function_of_the_runs(store):
    write_report(store)
    first = (store.root / "report.md").read_bytes(), (store.root / "report.csv").read_bytes()
    write_report(store)
    assert ((store.root / "report.md").read_bytes(), (store.root / "report.csv").read_bytes()) == first


@pytest.mark.slow
def test_summary_table_lists_each_recipe_and_dataset(store):
    text = summary_table(store)
    assert text.count("shared-epochs2-limit256") == 4 and "PyTorch" in text and "MXNet" in text


def test_empty_results_say_so(tmp_path):
    assert "no runs yet" in summary_table(RunStore(tmp_path))


def test_the_main_table_stays_readable_at_five_backends():
    """One accuracy column per backend and one verdict column; differences and details go to long tables."""
    from experiments.analysis.model import group_records, side_by_side_rows
    from experiments.analysis.report import detail_table, differences_table, markdown_table

    names = ["torch", "mxnet", "numpy", "alpha", "beta"]  # the last two: records of plug-ins not installed here
    records = [_record(name, seed, "complete", [0.9 + 0.001 * seed]) for name in names for seed in range(3)]
    rows = side_by_side_rows(group_records(records))
    header, _, line = markdown_table(rows).splitlines()
    assert header == ("| recipe | dataset | PyTorch test acc | MXNet test acc | NumPy test acc | alpha test acc | "
                      "beta test acc | same result as PyTorch |")
    assert line.endswith("| MXNet yes, NumPy yes, alpha yes, beta yes |")
    assert len(differences_table(rows).splitlines()) == 2 + 4  # each backend against PyTorch
    assert len(detail_table(rows).splitlines()) == 2 + 5


def _record(backend, seed, status, accuracies):
    epochs = [{"epoch": i + 1, "train_loss": 1.0, "train_accuracy": a, "test_loss": 1.0, "test_accuracy": a,
               "seconds": 1.0} for i, a in enumerate(accuracies)]  # fmt: skip
    return {"backend": backend, "dataset": "mnist", "recipe": "d2l", "seed": seed, "mode": "shared", "limit": None,
            "epochs_override": None, "status": status, "step_losses": [1.0] * len(epochs), "epochs": epochs,
            "meta": {"device": "cpu"}}  # fmt: skip


def test_only_complete_runs_enter_the_means():
    from experiments.analysis.model import group_records, side_by_side_rows

    records = [_record("torch", 0, "complete", [0.5, 0.9]), _record("torch", 1, "complete", [0.5, 0.7]),
               _record("torch", 2, "partial", [0.1]), _record("mxnet", 0, "diverged", [])]  # fmt: skip
    (row,) = side_by_side_rows(group_records(records))
    torch_stats, mxnet_stats = row["stats"]["torch"], row["stats"]["mxnet"]
    assert torch_stats["n"] == 2 and torch_stats["test_accuracy_mean"] == pytest.approx(0.8)
    assert torch_stats["partial"] == 1 and mxnet_stats["diverged"] == 1 and mxnet_stats["n"] == 0


def test_seconds_per_epoch_is_the_median_so_one_slow_epoch_does_not_move_it():
    from experiments.analysis.model import group_records, side_by_side_rows

    fast, slow = _record("torch", 0, "complete", [0.5, 0.6, 0.7]), _record("torch", 1, "complete", [0.5, 0.6, 0.7])
    for row, seconds in zip(fast["epochs"] + slow["epochs"], [3.0, 3.0, 3.0, 3.0, 3.0, 90.0], strict=True):
        row["seconds"] = seconds
    (row,) = side_by_side_rows(group_records([fast, slow]))
    assert row["stats"]["torch"]["seconds_per_epoch"] == 3.0


def test_seed_table_shows_each_seed_and_its_epochs_on_the_plateau():
    from experiments.analysis.model import backend_entries, group_records, side_by_side_rows
    from experiments.analysis.report import seed_table

    records = [_record("torch", 0, "complete", [0.11, 0.15, 0.9]), _record("torch", 2, "complete", [0.5, 0.8, 0.95]),
               _record("torch", 1, "partial", [0.1]), _record("mxnet", 0, "complete", [0.11, 0.3, 0.91])]  # fmt: skip
    table = seed_table(backend_entries(side_by_side_rows(group_records(records)))).splitlines()
    assert table[0] == "| recipe | dataset | backend | seed 0 | seed 2 |"  # the partial seed 1 is left out
    assert table[2] == "| `d2l` | mnist | PyTorch | 90.00% (2) | 95.00% (0) |"
    assert table[3] == "| `d2l` | mnist | MXNet | 91.00% (1) |  |"


def _finals(backend, mode, accuracies, recipe="seed-torch", source="numpy-pcg64"):
    """Complete one-epoch records of `backend` in `mode`, one per seed, with these final test accuracies."""
    records = [_record(backend, seed, "complete", [a]) for seed, a in enumerate(accuracies)]
    meta = {"device": "cpu", **({"init_source": source} if mode == "shared" else {})}
    return [{**r, "mode": mode, "recipe": recipe, "meta": meta} for r in records]


def test_fidelity_table_compares_every_backend_and_mode_with_the_script():
    from experiments.analysis.model import fidelity_rows, group_records
    from experiments.analysis.report import fidelity_table

    script = [0.84, 0.85, 0.83, 0.86, 0.84, 0.85]
    records = (_finals("script", "native", script) + _finals("torch", "shared", [0.76, 0.78, 0.75, 0.77, 0.76, 0.75])
               + _finals("torch", "native", [0.845, 0.848, 0.842, 0.85, 0.844, 0.846])
               + _finals("mxnet", "native", [0.70, 0.99]))  # fmt: skip
    (row,) = fidelity_rows(group_records(records))
    lines = fidelity_table([row]).splitlines()
    assert lines[0].startswith("| recipe | dataset | run by | test acc | 95% CI of the mean | s/epoch | − script [")
    cells = {line.split(" | ")[2]: line.split(" | ") for line in lines[2:]}
    assert list(cells) == ["the blog post's script", "PyTorch, shared", "PyTorch, native", "MXNet, native"]
    reference = cells["the blog post's script"]
    assert reference[3] == "84.50% ± 1.05 (n=6)" and reference[6] == "(reference)"
    assert cells["PyTorch, shared"][-1] == "**no** |"  # 8 points below, tightly: the test rejects
    assert cells["PyTorch, native"][-1] == "yes |"  # within 2 points with 95% confidence
    # PyTorch's native runs draw their weights from torch's RNG seeded like the PyTorch script: paired by seed;
    # these shared runs drew theirs from NumPy's generator (other numbers): Welch
    assert cells["PyTorch, native"][-2].startswith("paired (6 seeds), ")
    assert cells["PyTorch, shared"][-2].startswith("Welch, ")
    replayed = _finals("torch", "shared", [0.84, 0.851, 0.83, 0.859, 0.841, 0.85], source="torch-cpu-mt19937")
    (row,) = fidelity_rows(group_records(_finals("script", "native", script) + replayed))
    assert row["entries"][1][2].test == "paired" and row["entries"][1][2].verdict == "yes"
    assert cells["MXNet, native"][-1] == "undecided |"  # two far-apart seeds cannot say


def test_no_fidelity_section_without_reference_runs():
    from experiments.analysis.model import fidelity_rows, group_records
    from experiments.analysis.report import fidelity_section

    assert fidelity_section(fidelity_rows(group_records(_finals("torch", "shared", [0.7, 0.8])))) == []


def test_shared_mode_backends_are_compared_seed_by_seed():
    from experiments.analysis.model import group_records, side_by_side_rows

    torch_runs = _finals("torch", "shared", [0.70, 0.80, 0.90], "d2l")
    mxnet_runs = _finals("mxnet", "shared", [0.7001, 0.8001, 0.9002], "d2l")
    (row,) = side_by_side_rows(group_records(torch_runs + mxnet_runs))
    assert row["comparisons"]["mxnet"].test == "paired" and row["comparisons"]["mxnet"].verdict == "yes"
    # The seeds' spread (10 points) would swamp an unpaired test; pairing removes it.
    assert row["comparisons"]["mxnet"].high - row["comparisons"]["mxnet"].low < 0.001


def test_the_report_says_which_machine_made_the_runs():
    from experiments.analysis.report import machines_table

    xeon = {"cpu": "Intel(R) Xeon(R)", "family_model_stepping": "6/143/8", "isa": ["avx2", "avx512f"], "cores": 2,
            "env": {"ONEDNN_MAX_CPU_ISA": "AVX2"}}  # fmt: skip
    records = [{"backend": "torch", "meta": {"host": "vm", "started": "2026-11-30T04:25:34+00:00"}},
               {"backend": "torch", "meta": {"machine": xeon, "started": "2026-12-02T08:00:00+00:00"}},
               {"backend": "jax", "meta": {"machine": xeon, "started": "2026-12-03T08:00:00+00:00"}}]  # fmt: skip
    table = machines_table(records)
    assert "| Intel(R) Xeon(R) (6/143/8) AVX-512 2 cores ONEDNN_MAX_CPU_ISA=AVX2 | JAX 1, PyTorch 1 | " \
           "2026-12-02 to 2026-12-03 |" in table
    assert "| not recorded (host vm) | PyTorch 1 | 2026-11-30 to 2026-11-30 |" in table
    epyc = {"cpu": "AMD EPYC", "family_model_stepping": "25/1/1", "isa": ["avx2"], "cores": 2, "env": {}}
    tf_runs = [{"backend": "tensorflow", "meta": {"machine": epyc, "started": "2026-12-05", "kernels": kernels}}
               for kernels in ({"onednn_opts": "default (on for x86)"}, {"onednn": True}, {"onednn": True})]
    assert "| AMD EPYC (25/1/1) AVX2 2 cores | TensorFlow (oneDNN off) 1, TensorFlow (oneDNN on) 2 |" \
        in machines_table(tf_runs)


def test_the_report_counts_the_runs_by_status_mode_and_backend():
    from experiments.analysis.report import runs_summary

    records = [_record("torch", 0, "complete", [0.5, 0.9]), _record("jax", 0, "complete", [0.5]),
               _record("torch", 1, "partial", [0.4]), {**_record("script", 0, "complete", [0.8]), "mode": "native"}]
    assert runs_summary(records) == ("4 run records (3 complete, 1 partial; 0.0 hours of epochs; "
                                     "shared: PyTorch 2, JAX 1; native: the blog post's script 1); 0 of them record "
                                     "their test predictions")  # fmt: skip


def test_the_seeds_that_would_decide_an_undecided_line_need_two_seeds_a_side_to_estimate():
    from experiments.analysis.model import fidelity_rows, group_records
    from experiments.analysis.report import decide_notes

    script = [0.84, 0.85, 0.83, 0.86, 0.84, 0.85]
    records = (_finals("script", "native", script) + _finals("torch", "native", [0.85, 0.83, 0.87])
               + _finals("mxnet", "native", [0.845]))  # fmt: skip
    torch_note, mxnet_note = decide_notes(fidelity_rows(group_records(records)))[2:4]
    assert torch_note.startswith("- `seed-torch` on mnist, PyTorch, native: undecided with 6 and 3 seeds; if the")
    assert "about" in torch_note and "seeds a side would decide it" in torch_note
    assert mxnet_note == ("- `seed-torch` on mnist, MXNet, native: undecided with 6 and 1 seeds; one seed has no "
                          "spread to go by: a second one will tell how many would decide it.")


def _lab(colour: str) -> tuple[float, float, float]:
    """CIE L*a*b* (D65) of a matplotlib colour: perceptual distances between plot colours."""
    from matplotlib.colors import to_rgb

    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in to_rgb(colour))
    xyz = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047, 0.2126 * r + 0.7152 * g + 0.0722 * b, (
        0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883
    fx, fy, fz = (t ** (1 / 3) if t > 216 / 24389 else (24389 / 27 * t + 16) / 116 for t in xyz)
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)


def test_every_series_of_a_plot_has_its_own_colour_and_line_style():
    """The built-in backends, the plug-in palette, the blog post's script and an unregistered backend: any two colours
    differ by at least 20 (CIE76 ΔE; 2.3 is the smallest difference the eye sees, 20 reads as another colour), and
    the registered backends' line styles differ (the curves stay apart printed in grey)."""
    import itertools
    import math

    import backends
    from experiments.analysis import plots

    built_in = {name: entry for name, entry in backends.registry().items() if not entry.plugin}  # plug-ins: PALETTE
    colours = {name: entry.style["color"] for name, entry in built_in.items()}
    colours |= {f"plug-in {i}": c for i, c in enumerate(backends.PALETTE)}
    colours |= {"unregistered": plots.UNREGISTERED_STYLE["color"]}
    close = [(a, b, round(math.dist(_lab(colours[a]), _lab(colours[b])), 1))
             for a, b in itertools.combinations(colours, 2) if math.dist(_lab(colours[a]), _lab(colours[b])) < 20]
    assert not close, f"colours too alike to tell apart: {close}"
    styles = [repr(entry.style["linestyle"]) for entry in built_in.values()]
    assert len(set(styles)) == len(styles)


def test_the_colour_check_tells_alike_colours_apart():
    import math

    assert math.dist(_lab("#2b8a3e"), _lab("#2b8a3e")) == 0
    assert math.dist(_lab("#d9480f"), _lab("#e8590c")) < 20  # two oranges
    assert math.dist(_lab("#d62728"), _lab("#1f77b4")) > 20


def test_findings_leave_out_what_the_runs_cannot_say_and_compute_the_rest():
    """A finding is written only where its runs exist; the stock table counts the seeds left on the plateau; the
    cost table's minutes are the median over a framework's runs of the seconds of their epochs."""
    from experiments.analysis.findings import cost_table, findings_table, stock_table
    from experiments.analysis.model import group_records, side_by_side_rows

    assert findings_table({}, [], []) is None and cost_table({}) is None and stock_table({}) is None
    shared = [_record(b, s, "complete", [0.5, a]) for s, a in enumerate((0.90, 0.92, 0.94)) for b in ("torch", "mxnet")]
    table = findings_table(group_records(shared), side_by_side_rows(group_records(shared)), [])
    assert table.count("\n| ") == 1 and "every backend within" in table and "MXNet, `d2l` on MNIST, +0.00" in table
    finals = {"torch": (0.1135, 0.1135), "jax": (0.95, 0.97)}
    stock = [{**_record(b, s, "complete", [0.1, a]), "mode": "stock"} for b in finals for s, a in enumerate(finals[b])]
    groups = group_records(stock)
    assert "| `d2l` | MNIST | 11.35% ± 0.00 (n=2), 2 on the plateau | 96.00% ± 1.41 (n=2), 0 on the plateau |" in (
        stock_table(groups))
    table = findings_table(groups, side_by_side_rows(groups), [])
    assert "PyTorch 11.35% ± 0.00 (n=2), JAX 96.00% ± 1.41 (n=2)" in table
    assert "| `d2l` | 2 | PyTorch 0.0, JAX 0.0 |" in cost_table(groups)  # two epochs of 1 s: 2/60 minutes


def test_the_one_bit_finding_comes_from_the_variance_study_where_it_has_both_arms():
    from common.data import load_dataset
    from common.results import encode_predictions
    from experiments.analysis.findings import findings_table

    labels = load_dataset("fashion-mnist").test_labels[:20]
    other = labels.copy()
    other[:2] = (other[:2] + 1) % 10  # two answers of twenty changed: churn 10%

    def run(arm, predictions):
        return {"arm": arm, "test_accuracy": float((predictions == labels).mean()),
                "predictions": encode_predictions(predictions)}

    study = {"recipe": "seed-torch-fixed", "dataset": "fashion-mnist", "limit": 20,
             "runs": [run("one-bit", labels), run("one-bit", labels), run("seed", labels), run("seed", other)]}
    assert findings_table({}, [], [{**study, "runs": study["runs"][:2]}]) is None  # no seed arm: nothing to set beside
    table = findings_table({}, [], [study])
    assert "one bit moves the accuracy 0.00 points and 0.00% of the answers; a new seed 10.00 points and 10.00%" in (
        table)


def test_a_paired_cell_says_over_which_seeds_when_the_columns_hold_different_ones():
    from experiments.analysis.model import group_records, side_by_side_rows
    from experiments.analysis.report import markdown_table

    records = [_record("torch", s, "complete", [0.5, 0.9 + s / 100]) for s in range(4)]
    records += [_record("mxnet", s, "complete", [0.5, 0.9 + s / 100]) for s in range(2)]
    table = markdown_table(side_by_side_rows(group_records(records)))
    assert "(n=4)" in table and "(n=2)" in table and "MXNet yes (over the 2 seeds both ran)" in table
    same = markdown_table(side_by_side_rows(group_records(records[:2] + records[4:])))
    assert "both ran" not in same


def test_the_model_quotes_its_own_tables_rows_and_figures():
    """A page's excerpt is the report's table with only the rows asked for (and no column they leave empty); a
    single figure is read from the same groups as the tables."""
    from common.results import RunStore
    from experiments.analysis.report import Report

    records = [_record(b, s, "complete", [0.1, 0.5 + s / 10]) for b in ("torch", "mxnet") for s in range(3)]
    model = Report(records, *_model_parts(records), "")
    model.text = "## shared\n\n| recipe | dataset | backend | a | b |\n|---|---|---|---|---|\n" \
                 "| `d2l` | mnist | PyTorch | 1 |  |\n| `d2l` | mnist | MXNet | 2 |  |\n"
    assert model.excerpt("shared", "| recipe |", {"backend": "MXNet"}) == (
        "| recipe | dataset | backend | a |\n|---|---|---|---|\n| `d2l` | mnist | MXNet | 2 |")
    assert model.accuracy("shared", "mnist", "d2l", "torch", seed=2) == "70.00%"
    assert model.accuracy("shared", "mnist", "d2l", "torch", epoch=1) == "10.00%"
    assert model.seed_range("shared", "mnist", "d2l", "mxnet") == "50.00% to 70.00%"
    assert model.plateau_epochs("shared", "mnist", "d2l", "torch") == "1 / 1 / 1"
    assert model.left_plateau("shared", "mnist", "d2l", "torch") == "3 of 3"
    with pytest.raises(KeyError):
        model.accuracy("shared", "mnist", "d2l", "jax")
    assert RunStore  # the model is built from a store's records in Report.build


def _model_parts(records):
    from experiments.analysis.model import group_records, side_by_side_rows

    groups = group_records(records)
    return groups, side_by_side_rows(groups)


def test_which_releases_and_processors_made_each_mode():
    from experiments.analysis.report import made_by_table

    old = {**_record("jax", 0, "complete", [0.9]), "meta": {"versions": {"jax": "0.4.23"}, "device": "cpu"}}
    new = {**_record("jax", 1, "complete", [0.9]),
           "meta": {"versions": {"jax": "0.10.2"}, "device": "cpu",
                    "machine": {"cpu": "AMD EPYC", "isa": ["avx2"], "cores": 2}}}  # fmt: skip
    table = made_by_table([new, old])
    assert "| shared | 2 | JAX: jax 0.4.23, jax 0.10.2 | AMD EPYC, AVX2; not recorded |" in table


def test_a_plots_title_says_in_words_what_it_shows_and_marks_unequal_seeds():
    from experiments.analysis.plots import seeds_split, title

    assert title(("shared", "mnist", "seed-torch"), {"torch": 10, "mxnet": 10}).endswith(
        "every framework from the same initial weights and batches; 10 seeds each")
    assert "seeds: PyTorch 40, JAX 20" in title(("shared", "fashion-mnist", "seed-torch"), {"torch": 40, "jax": 20})
    assert title(("stock", "mnist", "d2l"), {"torch": 3}).startswith("d2l-en's LeNet")
    split = [_record("torch", s, "complete", [0.1, a]) for s, a in enumerate((0.11, 0.62))]
    assert seeds_split(split) and not seeds_split(split[:1])


def test_the_report_ranks_the_variance_studys_arms_and_draws_them(tmp_path):
    """A results directory's variance/ files become the section "Where the difference comes from": each arm with two
    runs or more, ranked by its spread, and a plot; the run summary counts the records with predictions."""
    from common import seal
    from common.data import load_dataset
    from common.results import encode_predictions

    labels = load_dataset("mnist").test_labels[:100]
    wrong = labels.copy()
    wrong[:10] = (wrong[:10] + 1) % 10

    def run(arm, k, predicted):
        return {"arm": arm, "k": k, "test_accuracy": float((predicted == labels).mean()),
                "predictions": encode_predictions(predicted)}  # fmt: skip

    study = {"recipe": "d2l", "dataset": "mnist", "limit": 100,
             "runs": [run("rerun", 0, labels), run("rerun", 1, labels), run("seed", 0, labels), run("seed", 1, wrong),
                      run("order", 0, labels)]}  # fmt: skip
    seal.write_json(tmp_path / "variance" / "variance-d2l-mnist-limit100.json", study)
    store = RunStore(tmp_path)
    store.save_record(RunKey("torch", "mnist", "d2l", 0), {**_record("torch", 0, "complete", [0.9]),
                                                           "predictions": encode_predictions(labels)})  # fmt: skip
    write_report(store)
    text = (tmp_path / "report.md").read_text()
    start = text.index("## Where the difference comes from")
    section = text[start : text.index("\n## ", start + 1)]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "what varies" not in line]
    assert [row.split(" | ")[0] for row in rows] == ["| both (a new seed)", "| nothing (the same run again)"]
    assert "10.00%" in rows[0] and "bitwise equal" in rows[1]  # the churn of the two seeds; the reruns alike
    assert (tmp_path / "plots" / "variance_d2l_mnist.png").stat().st_size > 10_000
    assert "1 of them record their test predictions" in text
