"""The `lenet-repro` command line: every job a subcommand, each with --help, bad arguments as one line and exit 2,
imports that do not depend on the working directory, and plug-in backends through the entry point group."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import backends
from experiments import cli, commands

pytestmark = pytest.mark.integration  # its tests start processes or train to the end

LENET_REPRO = Path(sys.executable).parent / "lenet-repro"  # the console script `pip install -e .` made
REFERENCE_MODULE = backends.info(backends.REFERENCE).module


def lenet_repro(*argv: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120):
    return subprocess.run([str(LENET_REPRO), *argv], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})  # fmt: skip


def test_the_console_script_is_installed():
    assert LENET_REPRO.exists(), f"{LENET_REPRO} is missing: `make venv` installs the project with `pip install -e .`"


def test_help_lists_every_subcommand_from_any_directory(tmp_path):
    result = lenet_repro("--help", cwd=tmp_path)  # not the repository: imports come from the installed package
    assert result.returncode == 0, result.stderr
    for command in cli.COMMANDS:
        assert f"    {command}" in result.stdout, f"`lenet-repro --help` does not list {command}"


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--help"])
    assert exit_.value.code == 0
    assert f"usage: lenet-repro {command}" in capsys.readouterr().out


def _unknown_backend() -> str:
    return f"unknown backend 'nosuch'; valid: {', '.join(sorted(cli.run_backends()))}"


BAD_COMMAND_LINES = [
    ([], "the following arguments are required: COMMAND (see `lenet-repro --help`)"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["run", "--backend", "nosuch"], _unknown_backend()),
    (["run", "--backend", "torch", "--recipes", "lenet"], "unknown recipe 'lenet'; valid: d2l, seed-mxnet"),
    (["run", "--backend", "torch", "--datasets", "cifar"], "unknown dataset 'cifar'; valid: fashion-mnist, mnist"),
    (["run", "--backend", "torch", "--mode", "fast"], "unknown mode 'fast'; valid: native, shared"),
    (["run", "--backend", "torch", "--epochs", "0"], "expected a positive integer, got '0'"),
    (["run", "--backend", "torch", "--colour"], "unrecognized arguments: --colour (see `lenet-repro run --help`)"),
    (["run", "--backend", "torch", "--workers", "0"], "argument --workers: expected a positive integer, got '0'"),
    (["run", "--backend", "torch", "--workers", "two"], "argument --workers: expected a positive integer"),
    (["run", "--backend", "torch", "--threads", "-1"], "argument --threads: expected a positive integer"),
    (["run", "--backend", "torch", "--ray-address", "nohost"], "RAY_ADDRESS 'nohost' is not host:port"),
    (["run-one", "--backend", "torch", "--recipe", "d2l"], "the following arguments are required: --dataset"),
    (["compare", "--mode", "fast"], "unknown mode 'fast'; valid: native, shared"),
    (["layers", "lenet"], "unknown recipe 'lenet'"),
    (["layers", "--backend", "nosuch"], "unknown table source 'nosuch'; valid: "),
    (["conformance", "--backend", "nosuch"], "unknown backend 'nosuch'"),
    (["data", "frobnicate"], "argument action: invalid choice: 'frobnicate'"),
    (["data", "verify", "cifar"], "unknown dataset 'cifar'"),
    (["oracle", "--recipes", "lenet"], "unknown recipe 'lenet'"),
    (["oracle", "--steps", "0"], "expected a positive integer, got '0'"),
    (["bench", "--reps", "0"], "expected a positive integer, got '0'"),
    (["profile", "--recipes", "lenet"], "unknown recipe 'lenet'"),
    (["profile", "--backends", "nosuch"], "unknown backend 'nosuch'"),
    (["bench-grid", "--backend", "numpy"], "unknown backend 'numpy'"),
    (["bench-grid", "--runs", "0"], "expected a positive integer, got '0'"),
    (["bench", "--backends", "--malloc-default", "nosuch"], "unknown backend 'nosuch'"),
    (["notebook", "pdf"], "argument action: invalid choice: 'pdf'"),
    (["init-study", "--arms", "numpy-pcg64,nosuch"], "unknown arm 'nosuch'"),
    (["init-study", "--dataset", "cifar"], "unknown dataset 'cifar'"),
]


def _results_in(argv: list[str], tmp_path: Path) -> list[str]:
    """A --results folder in tmp_path for the commands that write results."""
    return ["--results", str(tmp_path)] if argv[:1] in (["run"], ["run-one"], ["oracle"]) else []


@pytest.mark.parametrize(("argv", "message"), BAD_COMMAND_LINES)
def test_bad_command_lines_get_one_line_and_exit_2(argv, message, tmp_path, monkeypatch, capsys):
    """In this process, through the console script's own entry function."""
    monkeypatch.setattr(sys, "argv", ["lenet-repro", *argv, *_results_in(argv, tmp_path)])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        cli.entry()
    err = capsys.readouterr().err
    assert exit_.value.code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err


@pytest.mark.slow
@pytest.mark.parametrize(("argv", "message"), BAD_COMMAND_LINES)
def test_the_installed_command_gives_the_same_one_line_errors(argv, message, tmp_path):
    """The same command lines through the installed `lenet-repro`: nothing else (a warning from a framework
    imported on the way) may reach stderr."""
    result = lenet_repro(*argv, *_results_in(argv, tmp_path), cwd=tmp_path)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_python_dash_m_experiments_is_the_same_command(tmp_path):
    result = subprocess.run([sys.executable, "-m", "experiments", "run", "--backend", "nosuch"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 2 and result.stderr.strip() == f"error: {_unknown_backend()}"


def test_backends_lists_the_registry(tmp_path):
    result = lenet_repro("backends", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    listed = [line.split()[0] for line in result.stdout.splitlines()[1:]]
    assert listed == backends.run_names()


# ---------------------------------------------------------------------------------------------------------
# A plug-in: a package made outside the repository registers an existing backend module under a new name.


@pytest.fixture(scope="module")
def plugin(tmp_path_factory) -> dict[str, str]:
    """`pip install` a tiny package whose entry point in lenet_repro.backends names the reference backend's module
    under a new name, `mycopy`, into a folder of its own (so the project's environment is left as it was); the
    environment to see it."""
    root = tmp_path_factory.mktemp("plugin")
    source = root / "mycopy-plugin"
    source.mkdir()
    (source / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "mycopy-plugin"
        version = "0.1"

        [project.entry-points."{backends.ENTRY_POINT_GROUP}"]
        mycopy = "{REFERENCE_MODULE}"

        [tool.setuptools]
        py-modules = []
        """))
    target = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(source)], check=True, capture_output=True,
                   timeout=300)  # fmt: skip
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(target), os.environ.get("PYTHONPATH")]))}


@pytest.mark.slow
def test_a_plugin_backend_runs_through_the_harness_and_the_report(plugin, tmp_path):
    listed = lenet_repro("backends", cwd=tmp_path, env=plugin)
    assert "mycopy" in listed.stdout and "plug-in (lenet_repro.backends)" in listed.stdout, listed
    results = tmp_path / "R"
    run = lenet_repro("run", "--backend", "mycopy", "--recipes", "d2l", "--datasets", "mnist", "--epochs", "1",
                      "--limit", "256", "--results", str(results), cwd=tmp_path, env=plugin)  # fmt: skip
    assert run.returncode == 0, run.stderr
    (path,) = results.glob("**/mycopy-seed0.json")
    record = json.loads(path.read_text())
    assert record["backend"] == "mycopy" and record["status"] == "complete"
    compare = lenet_repro("compare", "--results", str(results), cwd=tmp_path, env=plugin)
    assert compare.returncode == 0, compare.stderr
    assert "| recipe | dataset | mycopy test acc |" in (results / "report.md").read_text()
    # without the plug-in installed, its records still make a report (the name stands for its label)
    assert lenet_repro("compare", "--results", str(results), cwd=tmp_path).returncode == 0


def test_a_plugin_named_like_a_builtin_backend_is_refused_in_one_line(tmp_path):
    dist = tmp_path / "clash-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: clash\nVersion: 0.1\n")
    taken = backends.names()[0]
    (dist / "entry_points.txt").write_text(f"[{backends.ENTRY_POINT_GROUP}]\n{taken} = {REFERENCE_MODULE}\n")
    result = lenet_repro("backends", cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: entry point {taken} = {REFERENCE_MODULE} ({backends.ENTRY_POINT_GROUP}) takes the name of a backend "
        f"already registered ({backends.info(taken).module}); rename it"
    ]


def test_a_plugin_whose_module_is_missing_is_one_line(tmp_path):
    dist = tmp_path / "gone-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: gone\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[{backends.ENTRY_POINT_GROUP}]\ngone = no_such_package.lenet\n")
    result = lenet_repro("layers", "d2l", "--backend", "gone", cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: backend 'gone' is registered as no_such_package.lenet, which cannot be imported")


@pytest.mark.slow
@pytest.mark.parametrize("threads", ["1", "2"])
def test_the_training_studies_take_threads_and_record_them(threads, tmp_path):
    """`--threads` reaches the framework before it is imported, as `run --threads` does, and each run records it."""
    from tests.test_seed_scripts import require_real

    require_real("mnist")
    env = {"OMP_NUM_THREADS": "2" if threads == "1" else "1"}  # the flag wins over the environment
    for argv, name in ((["init-study", "--arms", "numpy-pcg64,torch"], "init-seed-torch-mnist-limit64.json"),
                       (["order-study", "--recipe", "seed-torch"], "order-seed-torch-mnist-limit64.json")):  # fmt: skip
        done = lenet_repro(*argv, "--seeds", "1", "--limit", "64", "--threads", threads, "--out", str(tmp_path),
                           cwd=tmp_path, env=env, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr
        runs = json.loads((tmp_path / name).read_text())["runs"]
        assert len(runs) == 2 and {run["threads"] for run in runs} == {int(threads)}


def test_every_command_module_declares_the_protocol_and_an_option_per_config_field():
    """The data command, the notebook, the handout and every study: NAME, HELP, a frozen Config, add_arguments and
    run(config); each Config field has an option (or positional) of its name, and no option lacks a field."""
    import argparse
    import dataclasses

    for module in commands.job_modules():
        parser = argparse.ArgumentParser()
        module.add_arguments(parser)
        options = {action.dest for action in parser._actions} - {"help"}
        assert dataclasses.is_dataclass(module.Config) and module.Config.__dataclass_params__.frozen, module.NAME
        assert options == {f.name for f in dataclasses.fields(module.Config)}, module.NAME
        assert list(inspect.signature(module.run).parameters) == ["config"], module.NAME


def test_the_declared_commands_are_the_command_lines():
    """experiments/commands.py lists what the README names; the parser is what runs: they agree."""
    import argparse

    parser = cli.build_parser()
    choices = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    own, studies = commands.names()
    assert list(choices) == [*own, *studies]


NEW_STUDY = '''
"""A study written for the test: one module, nothing else changed."""
import argparse
from dataclasses import dataclass

NAME = "hello-study"
HELP = "say hello"


@dataclass(frozen=True)
class Config:
    times: int = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--times", type=int, default=Config.times)


def run(config: Config) -> int:
    print("hello " * config.times + f"({type(config).__name__})")
    return 0
'''


def test_a_new_study_is_one_module(tmp_path, monkeypatch, capsys):
    """A module dropped into experiments/studies becomes a command with its own options and help."""
    import experiments.studies
    from experiments import cli

    (tmp_path / "hello_study.py").write_text(NEW_STUDY)
    monkeypatch.setattr(experiments.studies, "__path__", [*experiments.studies.__path__, str(tmp_path)])
    assert "hello-study" in cli.build_parser().format_help()
    assert cli.main(["hello-study", "--times", "2"]) == 0
    assert capsys.readouterr().out.strip() == "hello hello (Config)"
    sys.modules.pop("experiments.studies.hello_study", None)


def test_profile_names_each_frameworks_biggest_operations(tmp_path):
    """`lenet-repro profile` on the real data, in PyTorch's environment and MXNet's: a row each, with the step's time
    and its five biggest operations, a convolution among them (two steps beside other tests' processes rank the
    biggest few by chance: which comes first is docs/speed.md's to say, measured on an idle machine)."""
    out = tmp_path / "profile.md"
    result = lenet_repro("profile", "--recipes", "d2l", "--backends", "torch,mxnet", "--steps", "2", "--out", str(out),
                         cwd=tmp_path, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = [line for line in out.read_text().splitlines() if line.startswith("| `d2l`")]
    assert [row.split(" | ")[1] for row in rows] == ["PyTorch", "MXNet"], rows
    for row in rows:
        cells = row.split(" | ")
        assert float(cells[2]) > 0 and cells[3].count("%") == 5, row
        assert any("onv" in op for op in cells[3].split("<br>")), f"no convolution among the biggest: {row}"
        assert 0 < int(cells[4].rstrip("% |")) < 300, row  # overhead left out (< 100%), or overlapping operations
