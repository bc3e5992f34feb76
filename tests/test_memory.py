"""common/memory.py: freed memory kept for the next step (glibc's malloc), measured by the kernel's page faults."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.integration  # its tests start processes or train to the end

ALLOCATE = textwrap.dedent("""
    import resource, sys
    import numpy as np
    from common.memory import keep_freed_memory
    kept = keep_freed_memory() if sys.argv[1] == "keep" else None
    np.ones(64 << 18, np.float32)  # 64 MiB, allocated, touched and freed once
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        np.ones(64 << 18, np.float32)  # as a training step's activations, again and again
    print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def _page_faults(mode: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", ALLOCATE, mode], capture_output=True, text=True, check=True)
    kept, faults = out.stdout.split()
    return kept, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_freed_memory_is_reused_without_page_faults():
    """64 MiB blocks allocated five times: without it, each is mmap'd again and faulted in anew (at least once per
    2 MiB huge page, per 4 KiB page without them: 2720 faults here); with it, the pages freed are reused and the
    kernel sees no fault."""
    _, default = _page_faults("default")
    kept, faults = _page_faults("keep")
    assert kept == "True"
    assert default >= 5 * 32, f"glibc's default served 64 MiB blocks with only {default} page faults"
    assert faults <= 16, f"{faults} page faults for blocks malloc should have kept ({default} without)"


def test_the_backends_that_allocate_anew_keep_freed_memory():
    """PyTorch and the NumPy reference allocate each operation's output anew: their backends turn it on and record
    it with every run; the frameworks with allocators of their own leave malloc alone."""
    import backends

    built_in = [name for name in backends.names() if not backends.info(name).plugin]  # a plug-in decides its own
    kept = {name for name in built_in if backends.load_backend(name).kernels().get("malloc_keeps_freed")}
    assert kept == {"torch", "numpy"}
