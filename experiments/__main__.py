"""`python -m experiments ...`: the same command line as `lenet-repro ...`."""

from experiments.cli import entry

entry()
