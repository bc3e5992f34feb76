"""`lenet-repro data provision|verify|summary [DATASET ...]` (and `python -m experiments.datasets ...`): fetch
what is missing (common/sources.py), check every file's sha256, or summarise the classes (common/data.py)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from common.data import (
    DATA_DIR_ENV,
    DATASETS,
    FILE_NAMES,
    REPO_ROOT,
    check_dataset,
    data_dir,
    describe,
    summary,
    verify,
)
from common.errors import UserError, run_cli
from common.sources import provision


def _for_each(datasets: Iterable[str], action: Callable[[str], None]) -> None:
    """Run `action` on every dataset; report each failure on its own line and raise the last one."""
    errors = []
    for dataset in datasets:
        try:
            action(dataset)
        except UserError as error:
            errors.append(error)
    for error in errors[:-1]:
        print(f"error: {error}", file=sys.stderr)
    if errors:
        raise errors[-1]


NAME = "data"
HELP = "provision, verify or summarise MNIST and Fashion-MNIST"


@dataclass(frozen=True)
class Config:
    action: str  # provision, verify or summary
    datasets: tuple[str, ...] = ()  # empty: every dataset
    data_dir: str | None = None  # None: $LENET_DATA_DIR, else the repository's data/


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`lenet-repro data [--data-dir DIR] provision|verify|summary [DATASET ...]`."""
    parser.add_argument("--data-dir", help=f"data folder (default: ${DATA_DIR_ENV}, else {REPO_ROOT}/data)")
    parser.add_argument("action", choices=("provision", "verify", "summary"),
                        help="provision: fetch what is missing and verify; verify: check every file's sha256; "
                        "summary: classes and counts")  # fmt: skip
    parser.add_argument("datasets", nargs="*",
                        metavar="DATASET", help=f"{', '.join(DATASETS)} (default: all)")


def run(config: Config) -> int:
    """Provision, verify or summarise the datasets the config names (default: all)."""
    datasets = [check_dataset(name) for name in config.datasets] or list(DATASETS)
    root = data_dir(config.data_dir)

    def provision_and_verify(dataset: str) -> None:
        provision(dataset, root)
        print(describe(verify(dataset, root)))

    def verify_only(dataset: str) -> None:
        verify(dataset, root)
        print(f"ok: {dataset}: {len(FILE_NAMES)} files in {root / dataset} (gzip, IDX header, sha256)")

    actions = {"provision": provision_and_verify, "verify": verify_only,
               "summary": lambda dataset: print(summary(dataset, root))}
    _for_each(datasets, actions[config.action])
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m experiments.datasets ...`, the same as `lenet-repro data ...`."""
    parser = argparse.ArgumentParser(prog="python -m experiments.datasets",
                                     description="Provision, verify, or summarise MNIST and Fashion-MNIST.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run(Config(args.action, tuple(args.datasets), args.data_dir))


if __name__ == "__main__":
    run_cli(main)
