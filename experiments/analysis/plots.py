"""One PNG per (variant, dataset, recipe), for a projector: every backend's curves overlaid, training and test apart."""

from __future__ import annotations

import functools
import io

import numpy as np

from backends import display_order, registry

# Each backend's colour and line style come from the registry (both differ, so the curves stay apart when printed
# in grey), the blog post's scripts' too; a backend not registered here (a plug-in's records) has a grey one.
UNREGISTERED_STYLE = {"color": "#adb5bd", "linestyle": "-"}
# The whole band drawing stays about as dark as one series' band: each series' shade is this over their number.
BAND_ALPHA = 0.3
QUARTILES_FROM = 4  # seeds from which a band is the middle half of the seeds, not all of them


def style(name: str) -> dict:
    """Colour, line style and legend label of a backend's curves."""
    entry = registry().get(name)
    if entry is None:
        return {**UNREGISTERED_STYLE, "label": name}
    return {**entry.style, "label": entry.label + (" (float64)" if entry.role == "reference" else "")}


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing running mean (window steps), so noisy per-step losses read as a curve."""
    if window <= 1 or len(values) < window:
        return values
    cumulative = np.cumsum(np.insert(values, 0, 0.0))
    head = cumulative[1:window] / np.arange(1, window)
    return np.concatenate([head, (cumulative[window:] - cumulative[:-window]) / window])


def _band(ax, x, series: list[np.ndarray], style: dict, width: float = 2.0, alpha: float = BAND_ALPHA,
          marker: str | None = None) -> None:
    """The median over seeds as a line; the band spans the middle half of the seeds (interquartile range) from
    QUARTILES_FROM seeds on, lowest to highest below that (two or more seeds).

    Either band stays within what was measured (an accuracy band never dips below 0), which mean ± std does not,
    and the middle half keeps ten seeds' bands of five frameworks apart where their extremes would cover the plot.
    """
    length = min(len(s) for s in series)
    if length == 0:
        return
    stack = np.stack([s[:length] for s in series])
    ax.plot(x[:length], np.median(stack, axis=0), color=style["color"], linestyle=style["linestyle"],
            linewidth=width, marker=marker, markersize=5)  # fmt: skip
    if len(series) > 1 and alpha > 0:
        low, high = (25, 75) if len(series) >= QUARTILES_FROM else (0, 100)
        ax.fill_between(x[:length], np.percentile(stack, low, axis=0), np.percentile(stack, high, axis=0),
                        color=style["color"], alpha=alpha, linewidth=0)  # fmt: skip


def _curves(ax, x, series: list[np.ndarray], look: dict, width: float, alpha: float, each_seed: bool,
            marker: str | None = None) -> None:
    """A backend's series: each seed as a thin line (where its seeds split), else the median and a band."""
    if not each_seed:
        _band(ax, x, series, look, width, alpha, marker=marker)
        return
    for one in series:
        ax.plot(x[: len(one)], one, color=look["color"], linestyle=look["linestyle"], linewidth=1.0, alpha=0.8,
                marker=marker, markersize=3)  # fmt: skip


def _step_gap(first: dict[int, np.ndarray], second: dict[int, np.ndarray]) -> np.ndarray | None:
    """Median over the seeds both ran of the per-step relative gap |b − a| / |a| of the training loss."""
    seeds = sorted(set(first) & set(second))
    if not seeds:
        return None
    length = min(min(len(first[s]), len(second[s])) for s in seeds)
    gaps = [np.abs(second[s][:length] - first[s][:length]) / np.maximum(np.abs(first[s][:length]), 1e-12)
            for s in seeds]  # fmt: skip
    return np.median(np.stack(gaps), axis=0)


# What each recipe is, in words, for plot titles (the recipes' fields are in docs/spec.md).
RECIPE_TITLES = {
    "seed-torch": "The blog post's PyTorch script, as written (a softmax too many)",
    "seed-torch-fixed": "The blog post's PyTorch script, its extra softmax removed",
    "seed-mxnet": "The blog post's MXNet script, as written (images resized to 96x96)",
    "seed-mxnet-28": "The blog post's MXNet script at 28x28",
    "d2l": "d2l-en's LeNet (sigmoid, average pooling)",
}
MODE_WORDS = {
    "shared": "every framework from the same initial weights and batches",
    "native": "each framework draws its own weights and batch order",
    "stock": "each framework on its own defaults",
}
DATASET_WORDS = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}
# Below this final test accuracy a 10-class network has not left its plateau (the report's PLATEAU_ACCURACY).
PLATEAU = 0.20


def title(key: tuple[str, str, str], counts: dict[str, int]) -> str:
    """A plot's title in words: the recipe, the dataset, the mode, and the seeds behind the curves (n, each
    framework's where they differ)."""
    variant, dataset, recipe = key
    mode = variant.split("-")[0]
    extra = variant[len(mode):].replace("-epochs", ", epochs ").replace("-limit", ", first ")
    labels = {style(name)["label"]: n for name, n in counts.items()}
    if len(set(labels.values())) == 1:
        seeds = f"{next(iter(labels.values()))} seeds each"
    else:
        seeds = "seeds: " + ", ".join(f"{label} {n}" for label, n in labels.items())
    return (f"{RECIPE_TITLES.get(recipe, recipe)}, on {DATASET_WORDS.get(dataset, dataset)}{extra}\n"
            f"{MODE_WORDS.get(mode, mode)}; {seeds}")


def seeds_split(records: list[dict]) -> bool:
    """Whether some seeds left the plateau and others did not (a mean of the two draws a curve no seed follows)."""
    finals = [r["epochs"][-1]["test_accuracy"] for r in records if r["epochs"]]
    return bool(finals) and min(finals) < PLATEAU <= max(finals)


def plot_group(key: tuple[str, str, str], by_backend: dict) -> bytes:
    """PNG bytes, large type for a projector: training loss per step, then (shared mode) each backend's per-step gap
    to the baseline on a log scale, or (native, stock) training accuracy per epoch, then test accuracy per epoch.
    Training and test are separate panels, so each backend keeps one colour and line style. Shared mode draws the
    mean over seeds without a band (the seeds' curves are the frameworks'); native and stock the mean and a band
    over seeds, except for a backend whose seeds split (some leave the plateau, some do not): each seed thin."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    variant, dataset, recipe = key
    shared = variant.startswith("shared")
    plt.rcParams.update({"font.size": 14, "axes.titlesize": 15, "axes.labelsize": 14, "legend.fontsize": 14})
    fig, axes = plt.subplots(1, 3, figsize=(17, 6.2), dpi=90)
    names = display_order(by_backend)  # the frameworks, the blog post's script, the reference: as the legend reads
    base = next((n for n in names if n in registry() and registry()[n].baseline), None)
    alpha = BAND_ALPHA / max(1, len(names))
    steps_of: dict[str, dict[int, np.ndarray]] = {}
    split: list[str] = []
    for rank, backend in enumerate(names):
        group, look = by_backend[backend], style(backend)
        width = 1.8 + 1.6 * (len(names) - 1 - rank) / max(1, len(names) - 1)  # first drawn widest
        shown = [r for r in group.records if r["status"] != "partial"]  # unfinished runs would skew the mean
        steps_of[backend] = {r["seed"]: np.asarray(r["step_losses"], dtype=float) for r in shown if r["step_losses"]}
        each_seed = not shared and seeds_split([r for r in shown if r["status"] == "complete"])
        split += [look["label"]] if each_seed else []
        draw = functools.partial(_curves, look=look, width=width, alpha=0.0 if shared else alpha, each_seed=each_seed)
        steps = list(steps_of[backend].values())
        if steps:
            window = max(1, min(len(s) for s in steps) // 100)
            draw(axes[0], np.arange(1, max(len(s) for s in steps) + 1), [smooth(s, window) for s in steps])
        epochs = [r["epochs"] for r in shown if r["epochs"]]
        if epochs:
            x = np.arange(1, max(len(e) for e in epochs) + 1)
            draw(axes[2], x, [100 * np.asarray([row["test_accuracy"] for row in e]) for e in epochs], marker="o")
            if not shared:
                draw(axes[1], x, [100 * np.asarray([row["train_accuracy"] for row in e]) for e in epochs], marker="o")
        for record in group.records:
            if record["status"] == "diverged":
                axes[0].axvline(record["diverged_at_step"], color=look["color"], linestyle=":", linewidth=1)
                axes[0].text(record["diverged_at_step"], axes[0].get_ylim()[1], f" {look['label']} diverged",
                             color=look["color"], va="top", fontsize=12)  # fmt: skip
    middle = ("training accuracy after each epoch", "epoch", "training accuracy (%)")
    if shared and base is not None:
        middle = (f"training loss: |difference from {style(base)['label']}|\nrelative, per step (median over seeds)",
                  "optimiser step", "relative difference (log scale)")
        for backend in names:
            gap = None if backend == base else _step_gap(steps_of[base], steps_of[backend])
            if gap is not None and gap.size:
                window = max(1, len(gap) // 100)
                smoothed = smooth(gap, window)  # identical steps (a gap of 0) leave the log scale blank
                axes[1].plot(np.arange(1, len(gap) + 1), np.where(smoothed > 0, smoothed, np.nan),
                             color=style(backend)["color"], linestyle=style(backend)["linestyle"], linewidth=2)
        axes[1].set_yscale("log")
    panels = [("training loss per step (running mean)", "optimiser step", "loss"), middle,
              ("test accuracy after each epoch", "epoch", "test accuracy (%)")]
    for ax, (text, xlabel, ylabel) in zip(axes, panels, strict=True):
        ax.set_title(text)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
    counts = {n: len(steps_of[n]) for n in names}
    handles = [Line2D([], [], color=style(n)["color"], linestyle=style(n)["linestyle"], linewidth=3,
                      label=style(n)["label"] + (" (each seed: they split)" if style(n)["label"] in split else ""))
               for n in names]  # fmt: skip
    if not shared and max(counts.values(), default=0) > 1:
        handles.append(Patch(color="#888888", alpha=0.35, label="line: median over seeds; band: the middle half"
                             if max(counts.values()) >= QUARTILES_FROM else "line: median; band: every seed"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), frameon=False)
    fig.suptitle(title(key, counts), fontsize=17)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()
