"""A version-ready hook for the worker-kill fault test (loaded only by the worker it starts).

The first run records its pid and sleeps, so the test can SIGKILL the pool process at a known
point in the middle of ``version_ready_task``; later runs record themselves and return at once.
The real hooks (lineage capture, built-in checks) run after it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def slow_first_run(*, version_id: int) -> None:
    folder = Path(os.environ["FAULT_MARKER_DIR"])
    first = not any(folder.iterdir())
    (folder / f"{version_id}-{os.getpid()}-{time.monotonic_ns()}").write_text(str(os.getpid()))
    if first:
        time.sleep(120)  # killed long before this ends
