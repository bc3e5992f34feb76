"""`python -m experiments ...`: the reproduction's command line."""

from common.errors import run_cli
from experiments.cli import main

run_cli(main)
