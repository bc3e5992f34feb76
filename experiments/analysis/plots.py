"""One PNG per (variant, dataset, recipe): every backend's curves overlaid, mean line and a band over seeds."""

from __future__ import annotations

import io

import numpy as np

from backends import order, registry
from common.results import SCRIPT_BACKEND

# Each backend's colour and line style come from the registry (both differ, so the curves stay apart when printed
# in grey); the seed's scripts have their own, and a backend not registered here (a plug-in's records) a grey one.
SCRIPT_STYLE = {"color": "#2b8a3e", "linestyle": "-.", "label": "seed script"}


def style(name: str) -> dict:
    """Colour, line style and legend label of a backend's curves."""
    if name == SCRIPT_BACKEND:
        return SCRIPT_STYLE
    entry = registry().get(name)
    if entry is None:
        return {"color": "#495057", "linestyle": "-", "label": name}
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


def _band(ax, x, series: list[np.ndarray], style: dict, label: str | None = None, marker: str | None = None) -> None:
    """Mean over seeds as a line; the band spans the seeds, lowest to highest (two or more seeds).

    A min-max band stays within what was measured (an accuracy band never dips below 0), which mean ± std
    over three seeds does not.
    """
    length = min(len(s) for s in series)
    if length == 0:
        return
    stack = np.stack([s[:length] for s in series])
    mean = stack.mean(axis=0)
    ax.plot(x[:length], mean, color=style["color"], linestyle=style["linestyle"], linewidth=2, label=label,
            marker=marker, markersize=5)
    if len(series) > 1:
        ax.fill_between(x[:length], stack.min(axis=0), stack.max(axis=0), color=style["color"], alpha=0.2,
                        linewidth=0)


def plot_group(key: tuple[str, str, str], by_backend: dict) -> bytes:
    """PNG bytes: per-step training loss, per-epoch losses, per-epoch accuracies."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    variant, dataset, recipe = key
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), dpi=110)
    for backend in plot_order(by_backend):
        group, look = by_backend[backend], style(backend)
        label = look["label"]
        shown = [r for r in group.records if r["status"] != "partial"]  # unfinished runs would skew the mean
        steps = [np.asarray(r["step_losses"], dtype=float) for r in shown if r["step_losses"]]
        if steps:
            window = max(1, min(len(s) for s in steps) // 100)
            _band(axes[0], np.arange(1, max(len(s) for s in steps) + 1), [_smooth(s, window) for s in steps],
                  look, f"{label} (n={len(steps)})")  # fmt: skip
        epochs = [r["epochs"] for r in shown if r["epochs"]]
        if epochs:
            x = np.arange(1, max(len(e) for e in epochs) + 1)
            for ax, field, suffix, dashed in [(axes[1], "train_loss", "train", False),
                                               (axes[1], "test_loss", "test", True),
                                               (axes[2], "train_accuracy", "train", False),
                                               (axes[2], "test_accuracy", "test", True)]:  # fmt: skip
                series = [np.asarray([row[field] for row in e]) for e in epochs]
                shade = dict(look, linestyle=":" if dashed else look["linestyle"])
                _band(ax, x, series, shade, f"{label} {suffix}", marker="o" if not dashed else "s")
        for record in group.records:
            if record["status"] == "diverged":
                axes[0].axvline(record["diverged_at_step"], color=look["color"], linestyle=":", linewidth=1)
                axes[0].text(record["diverged_at_step"], axes[0].get_ylim()[1], f" {label} diverged",
                             color=look["color"], va="top", fontsize=9)  # fmt: skip
    titles = ["training loss per step (running mean)", "loss per epoch", "accuracy per epoch"]
    for ax, title, xlabel in zip(axes, titles, ["optimiser step", "epoch", "epoch"], strict=True):
        ax.set_title(title, fontsize=12)
        ax.set_xlabel(xlabel, fontsize=11)
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=10)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=9)
    axes[2].set_ylabel("accuracy", fontsize=11)
    shown = " vs ".join(style(name)["label"] for name in plot_order(by_backend))
    fig.suptitle(f"{recipe} on {dataset} ({variant}): {shown}", fontsize=14)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()
