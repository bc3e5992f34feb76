"""Start-up lines a framework's C++ core writes straight to file descriptor 2, left out where they only restate a
choice this project made on purpose (MXNet's engine, TensorFlow's oneDNN pin): in a notebook each shows as an error
box. Everything else the framework prints is written back as it came."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def stderr_without(*fragments: str) -> Iterator[None]:
    """Capture file descriptor 2 for the block, then write back every line that contains none of `fragments`."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            printed = capture.read().decode(errors="replace")
            rest = "".join(line for line in printed.splitlines(True) if not any(f in line for f in fragments))
            if rest:
                sys.stderr.write(rest)
