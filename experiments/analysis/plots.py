"""One PNG per (variant, dataset, recipe): every backend's curves overlaid, mean line and a band over seeds."""

from __future__ import annotations

import io

import numpy as np

from backends import order, registry
from common.results import SCRIPT_BACKEND

# Each backend's colour and line style come from the registry (both differ, so the curves stay apart when printed
# in grey); the seed's scripts have their own, and a backend not registered here (a plug-in's records) a grey one.
SCRIPT_STYLE = {"color": "#111111", "linestyle": (0, (1, 2)), "label": "seed script"}
UNREGISTERED_STYLE = {"color": "#adb5bd", "linestyle": "-"}
# The whole band drawing stays about as dark as one series' band: each series' shade is this over their number.
BAND_ALPHA = 0.3


def style(name: str) -> dict:
    """Colour, line style and legend label of a backend's curves."""
    if name == SCRIPT_BACKEND:
        return SCRIPT_STYLE
    entry = registry().get(name)
    if entry is None:
        return {**UNREGISTERED_STYLE, "label": name}
    return {**entry.style, "label": entry.label + (" (float64)" if entry.role == "reference" else "")}


def plot_order(names) -> list[str]:
    """The registered frameworks first, then the seed's script, then the reference (as the legend reads)."""
    ranked = order(set(names) - {SCRIPT_BACKEND})
    frameworks = [name for name in ranked if name not in registry() or registry()[name].role == "framework"]
    return frameworks + ([SCRIPT_BACKEND] if SCRIPT_BACKEND in names else []) + [n for n in ranked
                                                                                  if n not in frameworks]


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing running mean (window steps), so noisy per-step losses read as a curve."""
    if window <= 1 or len(values) < window:
        return values
    cumulative = np.cumsum(np.insert(values, 0, 0.0))
    head = cumulative[1:window] / np.arange(1, window)
    return np.concatenate([head, (cumulative[window:] - cumulative[:-window]) / window])


def _band(ax, x, series: list[np.ndarray], style: dict, width: float = 2.0, alpha: float = BAND_ALPHA,
          marker: str | None = None) -> None:
    """Mean over seeds as a line; the band spans the seeds, lowest to highest (two or more seeds).

    A min-max band stays within what was measured (an accuracy band never dips below 0), which mean ± std
    over three seeds does not.
    """
    length = min(len(s) for s in series)
    if length == 0:
        return
    stack = np.stack([s[:length] for s in series])
    ax.plot(x[:length], stack.mean(axis=0), color=style["color"], linestyle=style["linestyle"], linewidth=width,
            marker=marker, markersize=4)  # fmt: skip
    if len(series) > 1:
        ax.fill_between(x[:length], stack.min(axis=0), stack.max(axis=0), color=style["color"], alpha=alpha,
                        linewidth=0)


def _step_gap(first: dict[int, np.ndarray], second: dict[int, np.ndarray]) -> np.ndarray | None:
    """Median over the seeds both ran of the per-step relative gap |b − a| / |a| of the training loss."""
    seeds = sorted(set(first) & set(second))
    if not seeds:
        return None
    length = min(min(len(first[s]), len(second[s])) for s in seeds)
    gaps = [np.abs(second[s][:length] - first[s][:length]) / np.maximum(np.abs(first[s][:length]), 1e-12)
            for s in seeds]  # fmt: skip
    return np.median(np.stack(gaps), axis=0)


def plot_group(key: tuple[str, str, str], by_backend: dict) -> bytes:
    """PNG bytes: per-step training loss; in shared mode the per-step gap of each backend to the baseline on a log
    scale (the curves themselves coincide), else the losses per epoch; the accuracies per epoch. One colour and
    line style per backend and one legend for the figure; where curves coincide, the one drawn first is widest."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.lines import Line2D

    variant, dataset, recipe = key
    shared = variant.startswith("shared")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.9), dpi=110)
    names = plot_order(by_backend)
    base = next((n for n in names if n in registry() and registry()[n].baseline), None)
    alpha = BAND_ALPHA / max(1, len(names))
    steps_of: dict[str, dict[int, np.ndarray]] = {}
    for rank, backend in enumerate(names):
        group, look = by_backend[backend], style(backend)
        width = 1.2 + 1.6 * (len(names) - 1 - rank) / max(1, len(names) - 1)  # first drawn widest
        shown = [r for r in group.records if r["status"] != "partial"]  # unfinished runs would skew the mean
        steps_of[backend] = {r["seed"]: np.asarray(r["step_losses"], dtype=float) for r in shown if r["step_losses"]}
        steps = list(steps_of[backend].values())
        if steps:
            window = max(1, min(len(s) for s in steps) // 100)
            _band(axes[0], np.arange(1, max(len(s) for s in steps) + 1), [_smooth(s, window) for s in steps],
                  look, width, alpha)  # fmt: skip
        epochs = [r["epochs"] for r in shown if r["epochs"]]
        if epochs:
            x = np.arange(1, max(len(e) for e in epochs) + 1)
            panels = [(axes[2], "train_accuracy", False), (axes[2], "test_accuracy", True)]
            if not shared:
                panels += [(axes[1], "train_loss", False), (axes[1], "test_loss", True)]
            for ax, field, test in panels:
                series = [np.asarray([row[field] for row in e]) for e in epochs]
                shade = dict(look, linestyle=":" if test else look["linestyle"])
                _band(ax, x, series, shade, width, alpha, marker="s" if test else "o")
        for record in group.records:
            if record["status"] == "diverged":
                axes[0].axvline(record["diverged_at_step"], color=look["color"], linestyle=":", linewidth=1)
                axes[0].text(record["diverged_at_step"], axes[0].get_ylim()[1], f" {look['label']} diverged",
                             color=look["color"], va="top", fontsize=9)  # fmt: skip
    middle = "loss per epoch (train solid, test dotted)"
    if shared and base is not None:
        middle = f"|loss − {style(base)['label']}'s| / {style(base)['label']}'s, per step (median over seeds)"
        for backend in names:
            gap = None if backend == base else _step_gap(steps_of[base], steps_of[backend])
            if gap is not None and gap.size:
                window = max(1, len(gap) // 100)
                smooth = _smooth(gap, window)  # identical steps (a gap of 0) leave the log scale blank
                axes[1].plot(np.arange(1, len(gap) + 1), np.where(smooth > 0, smooth, np.nan),
                             color=style(backend)["color"], linestyle=style(backend)["linestyle"], linewidth=1.5)
        axes[1].set_yscale("log")
    titles = ["training loss per step (running mean)", middle, "accuracy per epoch (train solid, test dotted)"]
    for ax, title, xlabel in zip(axes, titles, ["optimiser step", "optimiser step" if shared else "epoch", "epoch"],
                                 strict=True):  # fmt: skip
        ax.set_title(title, fontsize=11)
        ax.set_xlabel(xlabel, fontsize=11)
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=10)
    axes[2].set_ylabel("accuracy", fontsize=11)
    handles = [Line2D([], [], color=style(n)["color"], linestyle=style(n)["linestyle"], linewidth=2.5,
                      label=f"{style(n)['label']} (n={len(steps_of[n])})") for n in names]  # fmt: skip
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False, fontsize=10)
    fig.suptitle(f"{recipe} on {dataset} ({variant})", fontsize=14)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()
