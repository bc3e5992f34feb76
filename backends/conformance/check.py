"""`check_backend`: the conformance suite on a module that no registry lists, for the author of a backend under
development (as scikit-learn's `check_estimator` is for an estimator).

    from backends.conformance.check import check_backend
    results = check_backend("my_package.my_lenet", fast=True)   # {item id: "passed" | "failed" | ...}
    assert all(outcome in ("passed", "xfailed", "skipped") for outcome in results.values())

The module is registered for the suite's process alone (backends.CHECK_ENV), as an installed plug-in would be,
under `name`; nothing is installed. A backend declares the items it is known to fail, and why, in its module:
`EXPECTED_FAILURES = {"test_oracle": "float16 arithmetic"}` (the suite's test names): they run and are reported
"xfailed", and one that passes after all fails the run ("xpassed" turns strict).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from backends import CHECK_ENV
from backends.conformance import ENV


def check_backend(module: str, name: str = "checked", fast: bool = True, timeout: float = 3600) -> dict[str, str]:
    """Run every conformance item on `module` (registered as `name` for the run) and return each item's outcome by
    its id: "passed", "failed", "skipped" or "xfailed" (an expected failure the module declares). `fast` leaves the
    slow items out, as `lenet-repro conformance --fast` does."""
    with tempfile.TemporaryDirectory(prefix="check-backend-") as scratch:
        report = Path(scratch) / "items.xml"
        command = [sys.executable, "-m", "pytest", "--pyargs", "backends.conformance", "-p", "no:cacheprovider",
                   "-q", f"--junitxml={report}", *(["-m", "not slow"] if fast else [])]  # fmt: skip
        env = {**os.environ, CHECK_ENV: f"{name}={module}", ENV: name}
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
        if not report.exists():
            tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
            raise RuntimeError(f"the conformance suite did not run on {module}: " + " / ".join(tail))
        return outcomes(report)


def outcomes(report: Path) -> dict[str, str]:
    """Each test case's outcome from pytest's JUnit XML."""
    found = {}
    for case in ElementTree.parse(report).iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            outcome = "failed"
        elif (skipped := case.find("skipped")) is not None:
            outcome = "xfailed" if skipped.get("type") == "pytest.xfail" else "skipped"
        else:
            outcome = "passed"
        found[case.get("name", "?")] = outcome
    return found
