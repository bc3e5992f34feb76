"""The pages rendered from their templates: README.md and docs/*.md from docs/src/*.md.j2 (Jinja2).

    lenet-repro docs            # renders every template into its page
    lenet-repro docs --check    # says which committed pages differ from their render (exit 1), writes nothing

A template holds no figure typed by hand outside a code block: every measured number (percentages, points,
intervals, ratios, times, counts of runs) is a placeholder filled from the committed records and measurements:

    report    the published report of docs/results/ (experiments.analysis.report.Report): its
              tables (`report.results`, `report.findings`, `report.costs`, ...) and figures
    timings   docs/timings.json: what each of the README's commands takes (`lenet-repro timings`)
    stats     experiments.analysis.stats: the confidence level and the margin of the verdicts (CONFIDENCE, MARGIN)
    takes     how long a command's runs take, from the committed runs' epoch times (`takes("torch", "d2l", "mnist")`)
    studies   the committed studies' summaries (`studies.summary("order-d2l-mnist")`)
    spec      a recipe's parameters and FLOPs (`spec.parameters("seed-torch")`)
    const     a constant of the code (`const("experiments.running.local_executor", "STOP_SECONDS")`)
    measured  a committed output of a command, whole (`measured("docs/speed/bench.txt")`)
    upgrade   the upgrade's tables (experiments.analysis.upgrade)
    speed     the figures of the speed commands' outputs in docs/speed/ (experiments.analysis.speed_outputs)

docs/src/README.md.j2 renders README.md at the top; any other docs/src/NAME.md.j2 renders docs/NAME.md.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass
from pathlib import Path

from common.errors import UserError
from common.results import write_atomic

REPO = Path(__file__).resolve().parent.parent
SOURCES = REPO / "docs" / "src"
TIMINGS = REPO / "docs" / "timings.json"

NAME = "docs"
HELP = "render README.md and docs/*.md from their templates in docs/src/ (figures from the committed records)"

# What a measured figure looks like in prose (tests/test_docs.py holds every template to having none outside code):
# a percentage, a ± or n=, an interval, a ratio, a time, a count of runs or seeds.
TYPED_FIGURE = re.compile(
    r"\d(?:[\d,.]*\d)?\s?%|±\s?\d|\bn=\d|\[[-+−]?\d[\d.]*,|\b\d+(?:\.\d+)?x(?![\d\w])"
    r"|\b\d+(?:\.\d+)?\s?(?:points?|minutes?|min|hours?|h|seconds?|s|ms|s/epoch)\b|\b\d+ (?:runs|seeds)\b"
)


def typed_figures(template: str) -> list[str]:
    """The measured-looking figures typed into a template's prose: code blocks, inline code and Jinja2 tags are
    left out (a figure there is a command or a placeholder)."""
    prose = re.sub(r"```.*?```", "", template, flags=re.DOTALL)
    prose = re.sub(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", "", prose, flags=re.DOTALL)
    prose = re.sub(r"`[^`\n]*`", "", prose)
    return [m.group(0) for m in TYPED_FIGURE.finditer(prose)]


def page_of(template: Path) -> Path:
    """The page a template renders: README.md.j2 the top-level README, NAME.md.j2 docs/NAME.md."""
    name = template.name.removesuffix(".j2")
    return REPO / name if name == "README.md" else REPO / "docs" / name


def templates() -> list[Path]:
    return sorted(SOURCES.glob("*.md.j2"))


def context() -> dict:
    """What the templates are filled from: the published report's model and the timings file."""
    from experiments.analysis import stats, upgrade
    from experiments.analysis.report import published_report
    from experiments.analysis.speed_outputs import SpeedOutputs
    from experiments.commands import names as command_names

    return {"report": published_report(), "timings": Timings.load(), "stats": stats, "takes": takes,
            "studies": Studies(), "spec": SpecFigures(), "const": const, "measured": measured,
            "upgrade": upgrade, "speed": SpeedOutputs(), "commands": command_names()}


def measured(path: str) -> str:
    """A committed output of a command (docs/speed/*.txt), as the command wrote it."""
    return (REPO / path).read_text().rstrip("\n")


def const(module: str, name: str) -> object:
    """A constant of the code, by module and name: a page quotes the value the code holds, not a copy."""
    import importlib

    return getattr(importlib.import_module(module), name)


class Studies:
    """The committed studies (docs/studies/*.json), each as its own module's summary prints it."""

    def arm(self, name: str, arm: str) -> str:
        """One arm's final test accuracy over its seeds, mean ± std (n)."""
        from experiments.analysis import stats
        from experiments.studies.arms import by_arm

        values = by_arm(self._read(name), lambda r: r["test_accuracy"])[arm]
        summary = stats.summarize(values)
        return stats.pm(summary.mean, summary.std, summary.n, 2, True)

    def summary(self, name: str) -> str:
        from experiments.studies import init_study, init_weights, order_study

        module = {"order": order_study, "init-weights": init_weights, "init": init_study}
        prefix = next(p for p in ("init-weights", "order", "init") if name.startswith(p + "-"))
        return module[prefix].summary(self._read(name))

    def _read(self, name: str) -> dict:
        """A committed study's file, its seal checked (common.seal.read_json)."""
        from common import seal

        return seal.read_json(REPO / "docs" / "studies" / f"{name}.json", "study file")


class SpecFigures:
    """Figures of a recipe's network, from the spec: its parameters and its forward MFLOP per image."""

    def parameters(self, recipe: str) -> str:
        from common import spec

        return f"{spec.parameter_count(spec.get_recipe(recipe)):,}"

    def mflops(self, recipe: str) -> str:
        from common import spec

        return f"{spec.flops_per_example(spec.get_recipe(recipe))[0] / 1e6:.2f}"


def takes(backends: str, recipes: str, dataset: str, mode: str = "shared", epochs: int | None = None,
          seeds: int = 1) -> str:
    """How long `make reproduce-<backend> ...` of these runs takes on a 2-core machine, one after another, from the
    committed runs' epoch times (experiments.running.grid.expected_seconds): '2 minutes'."""
    from common.results import RunKey, RunStore
    from experiments.analysis.report import PUBLISHED
    from experiments.running.grid import expected_seconds

    keys = [RunKey(backend, dataset, recipe, seed, mode, None, epochs) for backend in backends.split(",")
            for recipe in recipes.split(",") for seed in range(seeds)]  # fmt: skip
    expected = expected_seconds(keys, RunStore(PUBLISHED))
    missing = [key.label() for key in keys if key not in expected]
    if missing:
        raise UserError(f"no committed runs to time {missing[0]} by")
    return duration(sum(expected.values()))


@dataclass(frozen=True)
class Timings:
    """docs/timings.json: for each command, its seconds and how they were had (measured, or from the records)."""

    commands: dict

    @classmethod
    def load(cls, path: Path = TIMINGS) -> Timings:
        return cls(json.loads(path.read_text())["commands"] if path.exists() else {})

    def __getitem__(self, command: str) -> str:
        """The command's time in words: '4.9 minutes', '11 hours'."""
        if command not in self.commands:
            where = TIMINGS.relative_to(REPO) if TIMINGS.is_relative_to(REPO) else TIMINGS
            raise UserError(f"{where} has no time for `{command}`: measure it with "
                            f"`lenet-repro timings --measure {command}`")  # fmt: skip
        return duration(self.commands[command]["seconds"])

    def machine(self, command: str) -> str:
        return self.commands[command]["machine"]

    def how(self, command: str) -> str:
        return self.commands[command]["how"]


def duration(seconds: float) -> str:
    """A time as a reader says it: seconds under two minutes, minutes under two hours, else hours."""
    if seconds < 90:
        return f"{seconds:.0f} seconds"
    if seconds < 7200:
        return f"{seconds / 60:.0f} minute{'s' if round(seconds / 60) != 1 else ''}"
    return f"{seconds / 3600:.1f} hours"


def render(template: Path, values: dict) -> str:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    environment = Environment(loader=FileSystemLoader(SOURCES), undefined=StrictUndefined, keep_trailing_newline=True,
                              autoescape=False)  # fmt: skip
    return environment.get_template(template.name).render(**values)


def differing(values: dict | None = None) -> list[Path]:
    """The committed pages that are not what their templates render."""
    values = values if values is not None else context()
    return [page_of(t) for t in templates() if not page_of(t).exists() or page_of(t).read_text() != render(t, values)]


@dataclass(frozen=True)
class Config:
    check: bool = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--check", action="store_true",
                        help="say which pages differ from their render (exit 1) instead of writing them")


def run(config: Config) -> int:
    values = context()
    if config.check:
        stale = differing(values)
        for page in stale:
            print(f"{page.relative_to(REPO)} differs from its template's render (make docs writes it)")
        return 1 if stale else 0
    for template in templates():
        write_atomic(page_of(template), render(template, values).encode())
        print(f"wrote {page_of(template).relative_to(REPO)} from {template.relative_to(REPO)}")
    return 0
