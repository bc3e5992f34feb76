"""The demo: the project's three findings, trained live in a few minutes, for a class.

    lenet-repro demo [--results DIR] [--device auto|cpu|gpu] [--workers N]

1. **the blog post's extra softmax**: its PyTorch script (`seed-torch`) against the same script with `forward`
   returning logits (`seed-torch-fixed`), from the same initial weights and batches, on MNIST;
2. **each framework's own defaults**: d2l-en's sigmoid LeNet (`d2l`) on MNIST in stock mode, every framework on its
   own default initialisers and generator: some leave the plateau at chance level, some do not;
3. **the same start gives the same result**: `seed-torch-fixed` in shared mode, every implementation from the same
   initial weights and batches, and each one's per-step difference from the baseline's training loss.

Then, from the committed variance study (docs/results/variance/), no training: two runs of `seed-torch-fixed` one
bit apart in one initial weight, with nearly the same accuracy, and the test images they disagree on.

Each finding trains few epochs on the whole training set (PARTS says how many) and is tested on the whole test set,
seed 0; its table sets each number beside what the committed runs (docs/results/, the recipe's full epochs, every
seed) measured. The runs are ordinary run records in RESULTS (shared-epochs3/, stock-epochs5/, ...): the demo
resumes where it stopped, and `lenet-repro compare` reads them like any others. It writes RESULTS/demo.json (the
final test accuracies, as fractions), RESULTS/demo.html (one page: the tables and plots) and RESULTS/demo.log (the
runs' own output).
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import backends
from common.arguments import choice, positive_int
from common.results import RunKey, RunStore, read_record, write_atomic
from experiments.analysis import stats as st

REPO = Path(__file__).resolve().parent.parent
PUBLISHED = REPO / "docs" / "results"
DATASET = "mnist"
SEED = 0
CHANCE = 0.10  # ten classes
PLATEAU = 0.20  # below this a 10-class network has not left its plateau (as the report counts it)

NAME = "demo"
HELP = "the three findings, trained live in a few minutes: RESULTS/demo.html and demo.json"


@dataclass(frozen=True)
class Part:
    """One finding: which runs show it."""

    name: str  # its key in demo.json
    title: str
    mode: str
    recipes: tuple[str, ...]
    epochs: int
    by: str  # what its runs are told apart by: "recipe" or "backend"

    def backends(self) -> list[str]:
        if self.mode == "stock":  # the frameworks that have defaults of their own
            return backends.with_defaults()
        if self.by == "recipe":
            return [backends.baseline()]
        return backends.names()

    def keys(self, limit: int | None = None) -> list[RunKey]:
        return [RunKey(backend, DATASET, recipe, SEED, self.mode, limit, self.epochs)
                for recipe in self.recipes for backend in self.backends()]  # fmt: skip


PARTS = (
    Part("softmax", "The blog post's extra softmax", "shared", ("seed-torch", "seed-torch-fixed"), 3, "recipe"),
    Part("defaults", "Each framework's own defaults", "stock", ("d2l",), 7, "backend"),
    Part("same_start", "The same start gives the same result", "shared", ("seed-torch-fixed",), 2, "backend"),
)


@dataclass(frozen=True)
class Config:
    results: str = "results"
    device: str = "auto"
    workers: int | None = None  # runs at once; default: one per core, each on one thread
    limit: int | None = None  # the first N training and N test examples only (a quicker, less telling look)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", default="results", help="results directory (runs, demo.json, demo.html)")
    parser.add_argument("--device", default="auto", type=choice("device", lambda: ("auto", "cpu", "gpu")))
    parser.add_argument("--workers", type=positive_int, help="runs at once (default: one per core)")
    parser.add_argument("--limit", type=positive_int,
                        help="train and test on the first N examples only (quicker; the findings may not show)")


# ---- what the runs measured ----------------------------------------------------------------------------------------


def final_accuracy(record: dict[str, Any] | None) -> float | None:
    """The test accuracy after the last epoch; None for a run that diverged or has not finished."""
    if record is None or record["status"] != "complete":
        return None
    return record["epochs"][-1]["test_accuracy"]


def published_accuracies(key: RunKey, root: Path = PUBLISHED) -> list[float]:
    """The final test accuracies of the committed full runs of the same mode, recipe, dataset and backend."""
    folder = root / key.mode / key.dataset / key.recipe
    records = [read_record(path) for path in sorted(folder.glob(f"{key.backend}-seed*.json"))]
    return [accuracy for accuracy in map(final_accuracy, records) if accuracy is not None]


def step_difference(record: dict[str, Any], baseline: dict[str, Any]) -> float | None:
    """The largest |training loss − the baseline's| over the steps both took (None when one has none)."""
    length = min(len(record["step_losses"]), len(baseline["step_losses"]))
    if not length:
        return None
    mine = np.asarray(record["step_losses"][:length], dtype=float)
    theirs = np.asarray(baseline["step_losses"][:length], dtype=float)
    return float(np.nanmax(np.abs(mine - theirs)))


def who(part: Part, key: RunKey) -> str:
    return key.recipe if part.by == "recipe" else key.backend


def display(part: Part, name: str) -> str:
    return f"`{name}`" if part.by == "recipe" else backends.label(name)


def measure(part: Part, store: RunStore, limit: int | None = None) -> dict[str, dict[str, Any]]:
    """{recipe or backend: {accuracy, published, difference (same start: from the baseline, per step)}}."""
    records = {who(part, key): store.load_record(key) for key in part.keys(limit)}
    base = records.get(backends.baseline())
    out = {}
    for key in part.keys(limit):
        record = records[who(part, key)]
        row: dict[str, Any] = {"accuracy": final_accuracy(record), "published": published_accuracies(key)}
        if part.name == "same_start" and record is not None and base is not None and key.backend != base["backend"]:
            row["difference"] = step_difference(record, base)
        out[who(part, key)] = row
    return out


def sentence(part: Part, rows: dict[str, dict[str, Any]]) -> str:
    """The finding in one plain sentence, from what was measured."""
    acc = {name: row["accuracy"] for name, row in rows.items() if row["accuracy"] is not None}
    epochs = f"{part.epochs} epoch{'s' if part.epochs > 1 else ''}"
    if part.name == "softmax" and len(acc) == 2:
        quirk, fixed = acc["seed-torch"], acc["seed-torch-fixed"]
        return (f"After {epochs}, the blog post's script reaches {quirk:.1%} and the same script without its extra "
                f"softmax {fixed:.1%}: {100 * (fixed - quirk):.1f} points apart, from the same weights and batches.")
    if part.name == "defaults":
        left = [backends.label(n) for n, a in acc.items() if a >= PLATEAU]
        stuck = [backends.label(n) for n, a in acc.items() if a < PLATEAU]
        return (f"After {epochs} of the same recipe, each framework on its own default initialisers: "
                + (f"{and_list(left)} left the plateau" if left else "none left the plateau")
                + (f"; {and_list(stuck)} still guess{'es' if len(stuck) == 1 else ''} at chance level (about "
                   f"{CHANCE:.0%})." if stuck else "."))  # fmt: skip
    if part.name == "same_start" and acc:
        base = acc.get(backends.baseline())
        spread = max(abs(a - base) for a in acc.values()) if base is not None else float("nan")
        steps = [row["difference"] for row in rows.values() if row.get("difference") is not None]
        return (f"From the same initial weights and batches, every implementation ends within {100 * spread:.2f} "
                f"points of {backends.label(backends.baseline())} after {epochs}; their training losses differ by "
                f"at most {max(steps):.1e} at any step: float rounding, which grows as training goes on."
                if steps else "")
    return ""


def and_list(items: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return " and ".join([", ".join(items[:-1]), items[-1]] if len(items) > 1 else items)


def table_rows(part: Part, rows: dict[str, dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """The finding's table: header and rows of text."""
    epochs = get_full_epochs(part)
    header = ["run by" if part.by == "backend" else "recipe", f"test accuracy after {part.epochs} epoch"
              + ("s" if part.epochs > 1 else "") + " (seed 0)", f"committed runs, {epochs} epochs (mean ± std (n))"]
    if part.name == "same_start":
        header.append(f"largest per-step loss difference from {backends.label(backends.baseline())}")
    body = []
    for name, row in rows.items():
        published = row["published"]
        mean, std = (float(np.mean(published)), float(np.std(published, ddof=1)) if len(published) > 1 else 0.0)
        cells = [display(part, name), "—" if row["accuracy"] is None else f"{row['accuracy']:.2%}",
                 st.pm(mean, std, len(published), digits=2, percent=True) if published else "—"]
        if part.name == "same_start":
            cells.append("—" if row.get("difference") is None else f"{row['difference']:.1e}")
        body.append(cells)
    return header, body


def get_full_epochs(part: Part) -> int:
    """The recipe's own epochs (what the committed runs trained)."""
    from common import spec

    return spec.get_recipe(part.recipes[0]).epochs


def text_table(header: list[str], body: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
                     for row in [header, *body])  # fmt: skip


# ---- the page ------------------------------------------------------------------------------------------------------


def figure(part: Part, store: RunStore, limit: int | None = None) -> bytes:
    """PNG bytes for a projector: large type, one colour per framework (the registry's), train and test apart by
    panel. softmax: test accuracy per epoch and training loss per step for the two recipes; defaults: test accuracy
    per epoch per framework, chance drawn; same start: training loss per step, and |loss − the baseline's| on a log
    axis."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from experiments.analysis.plots import smooth, style

    plt.rcParams.update({"font.size": 15, "axes.titlesize": 17, "legend.fontsize": 14})
    records = [(key, store.load_record(key)) for key in part.keys(limit)]
    records = [(key, r) for key, r in records if r is not None and r["epochs"]]
    fig, axes = plt.subplots(1, 2, figsize=(14, 5.6), dpi=100)
    colours = {"seed-torch": "#d62728", "seed-torch-fixed": "#1f77b4"}
    base = next((r for key, r in records if key.backend == backends.baseline()), None)
    for key, record in records:
        look = style(key.backend) if part.by == "backend" else {"color": colours.get(key.recipe, "#555555"),
                                                                 "label": key.recipe}  # fmt: skip
        losses = np.asarray(record["step_losses"], dtype=float)
        steps = np.arange(1, len(losses) + 1)
        if part.name == "defaults":
            epochs = [row["epoch"] for row in record["epochs"]]
            axes[0].plot(epochs, [100 * row["test_accuracy"] for row in record["epochs"]], color=look["color"],
                         linewidth=3, marker="o", markersize=8, label=look["label"])  # fmt: skip
            axes[1].plot(steps, smooth(losses, 10), color=look["color"], linewidth=2.5, label=look["label"])
        elif part.name == "softmax":
            epochs = [0] + [row["epoch"] for row in record["epochs"]]
            axes[0].plot(epochs, [100 * CHANCE] + [100 * row["test_accuracy"] for row in record["epochs"]],
                         color=look["color"], linewidth=3, marker="o", markersize=8, label=look["label"])
            axes[1].plot(steps, smooth(losses, 20), color=look["color"], linewidth=2.5, label=look["label"])
        else:
            axes[0].plot(steps, smooth(losses, 20), color=look["color"], linewidth=2.5, label=look["label"])
            if base is not None and record is not base:
                n = min(len(losses), len(base["step_losses"]))
                gap = np.abs(losses[:n] - np.asarray(base["step_losses"][:n], dtype=float))
                axes[1].plot(np.arange(1, n + 1), np.where(gap > 0, gap, np.nan), color=look["color"], linewidth=1.2,
                             label=look["label"])  # fmt: skip
    if part.name == "same_start":
        axes[0].set(title="training loss per step (running mean)", xlabel="optimiser step", ylabel="loss")
        axes[1].set(title=f"|loss − {backends.label(backends.baseline())}'s| per step", xlabel="optimiser step",
                    yscale="log")
    else:
        axes[0].axhline(100 * CHANCE, color="#777777", linestyle="--", linewidth=1.5)
        axes[0].text(0.02, 100 * CHANCE + 1.5, "chance", color="#555555", transform=axes[0].get_yaxis_transform())
        axes[0].set(title="test accuracy after each epoch", xlabel="epoch", ylabel="test accuracy (%)", ylim=(0, 100))
        axes[1].set(title="training loss per step (running mean)", xlabel="optimiser step", ylabel="loss")
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].legend(loc="best", frameon=False)
    fig.suptitle(f"{part.title}: MNIST, seed 0", fontsize=19)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


PAGE_STYLE = """
body { font-family: "DejaVu Sans", Arial, sans-serif; font-size: 20px; line-height: 1.4; max-width: 1400px;
       margin: 1.5em auto; padding: 0 1em; color: #111; }
h1 { font-size: 34px; } h2 { font-size: 27px; margin-top: 1.6em; border-bottom: 2px solid #999; }
table { border-collapse: collapse; margin: 0.6em 0; } th, td { border: 1px solid #bbb; padding: 6px 12px; }
th { background: #eee; text-align: left; } td { text-align: right; } td:first-child { text-align: left; }
img { max-width: 100%; } .sentence { font-size: 23px; font-weight: bold; }
"""


def page(parts: list[tuple[Part, str, list[str], list[list[str]], bytes]], seconds: float,
         limit: int | None = None) -> str:
    """demo.html: every finding's sentence, table and plot, the plots inside the page (it loads nothing)."""
    data = f"the first {limit} training and test examples" if limit else "the whole training and test sets"
    body = ["<h1>lenet-repro: the findings, live</h1>",
            f"<p>Trained on this computer in {seconds / 60:.1f} minutes: MNIST, {data}, "
            f"seed {SEED}. The committed runs in the last column trained each recipe's full epochs on every seed "
            "(<code>docs/results/</code>).</p>"]  # fmt: skip
    for part, said, header, rows, png in parts:
        cells = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        lines = "".join("<tr>" + "".join(f"<td>{html.escape(c.strip('`'))}</td>" for c in row) + "</tr>"
                        for row in rows)  # fmt: skip
        body += [f"<h2>{html.escape(part.title)}</h2>", f'<p class="sentence">{html.escape(said)}</p>',
                 f"<table><tr>{cells}</tr>{lines}</table>" if header else "",
                 f'<img alt="{html.escape(part.title)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">']
    return ('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>lenet-repro demo</title>\n'
            f"<style>{PAGE_STYLE}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n")


# ---- the job -------------------------------------------------------------------------------------------------------


ONE_BIT = ("seed-torch-fixed", "fashion-mnist")  # the committed variance study the demo shows two runs of


def one_bit_figure(study: dict[str, Any], pair: dict[str, Any], shown: int = 12) -> bytes:
    """PNG: the first test images two runs one bit apart disagree on, each with its label and both answers."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from common import data

    dataset = data.load_dataset(study["dataset"])
    classes = data.CLASS_NAMES.get(study["dataset"]) or [str(c) for c in range(10)]
    picks = pair["images"][:shown]
    fig, axes = plt.subplots(2, (len(picks) + 1) // 2, figsize=(16, 6.4), dpi=90, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, index in zip(axes.flat, picks, strict=False):
        ax.imshow(dataset.test_images[index], cmap="gray_r")
        a, b = (classes[int(p[index])] for p in pair["predicted"])
        ax.set_title(f"{classes[int(dataset.test_labels[index])]}\n{a} | {b}", fontsize=13)
    fig.suptitle("Test images two runs one bit apart disagree on: the label, then the answer of the run as drawn | "
                 "with one bit flipped", fontsize=16)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def one_bit_section() -> tuple[dict[str, Any], str, bytes] | None:
    """From the committed variance study: two runs of the same recipe, one bit apart in one initial weight, with
    (nearly) the same accuracy, and the images they disagree on. None where the study has no such pair."""
    from experiments.analysis.variance import one_bit_apart, read_studies

    study = next((s for s in read_studies(PUBLISHED) if (s["recipe"], s["dataset"]) == ONE_BIT), None)
    pair = one_bit_apart(study) if study else None
    if pair is None:
        return None
    first, second = pair["accuracy"]
    said = (f"Two runs of `{study['recipe']}` on Fashion-MNIST, the same in everything but the lowest bit of one "
            f"initial weight ({pair['runs'][1]['flipped']}), end at {first:.2%} and {second:.2%}, and disagree on "
            f"{len(pair['images'])} of the {len(pair['predicted'][0]):,} test images.")  # fmt: skip
    numbers = {"accuracy": [first, second], "disagree": int(len(pair["images"])), "flipped": pair["runs"][1]["flipped"]}
    return numbers, said, one_bit_figure(study, pair)


def run(config: Config) -> int:
    from experiments.running.grid import RunSettings, expected_seconds, run_keys
    from experiments.running.local_executor import SubprocessExecutor
    from experiments.running.runs import format_seconds

    store = RunStore(config.results)
    store.root.mkdir(parents=True, exist_ok=True)
    workers = config.workers or len(os.sched_getaffinity(0))
    settings = RunSettings(config.device, max(1, len(os.sched_getaffinity(0)) // workers))
    log = store.root / "demo.log"
    expected = {key: seconds for part in PARTS
                for key, seconds in expected_seconds(part.keys(config.limit), RunStore(PUBLISHED)).items()}
    total = sum(len(part.keys()) for part in PARTS)
    print(f"lenet-repro demo: three findings, {total} runs on MNIST ({workers} at a time), expected about "
          f"{format_seconds(sum(expected.values()) / workers)}; the runs' own output goes to {log}", flush=True)
    began = time.monotonic()
    shown, measured = [], {}
    for number, part in enumerate(PARTS, 1):
        print(f"\n[{number}/{len(PARTS)}] {part.title} ({part.mode} mode, {part.epochs} epoch"
              f"{'s' if part.epochs > 1 else ''})", flush=True)  # fmt: skip
        keys = sorted(part.keys(config.limit), key=lambda k: -expected.get(k, 0.0))  # longest first: cores stay busy
        run_keys(keys, store, lambda: SubprocessExecutor(store, settings, capacity=workers, log=log), expected,
                 name="demo")  # fmt: skip
        rows = measure(part, store, config.limit)
        said = sentence(part, rows)
        header, body = table_rows(part, rows)
        print(text_table(header, [[cell.strip("`") for cell in row] for row in body]))
        print(said, flush=True)
        measured[part.name] = {name: row["accuracy"] for name, row in rows.items()}
        shown.append((part, said, header, body, figure(part, store, config.limit)))
    seconds = time.monotonic() - began
    one_bit = one_bit_section()
    if one_bit is not None:
        numbers, said, png = one_bit
        measured["one_bit"] = numbers
        print(f"\n[from the committed runs] {said}")
        extra = Part("one_bit", "Two runs, one bit apart", "shared", ("seed-torch-fixed",), 10, "recipe")
        shown.append((extra, said, [], [], png))
    write_atomic(store.root / "demo.json", (json.dumps(measured, indent=2) + "\n").encode())
    write_atomic(store.root / "demo.html", page(shown, seconds, config.limit).encode())
    print(f"\ndone in {format_seconds(seconds)}: {store.root / 'demo.html'} (open it in a browser), "
          f"{store.root / 'demo.json'}")
    return 0
