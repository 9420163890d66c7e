"""Progress bars on stderr for transfers that last more than a moment (silent with ``quiet``)."""

from __future__ import annotations

import sys
import threading
from typing import Any, Callable

Advance = Callable[[int], None]


def _noop(n: int) -> None:
    return None


class Progress:
    """``with Progress(quiet) as p: advance = p.task("upload x", total)`` then ``advance(n)``.

    The bars appear only on a terminal, and only once the work has lasted ``delay`` seconds.
    """

    def __init__(self, quiet: bool = False, delay: float = 0.7) -> None:
        self.enabled = not quiet and sys.stderr.isatty()
        self._bars: Any | None = None
        self._timer: threading.Timer | None = None
        self._delay = delay
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )
            from rich.progress import Progress as RichProgress

            self._bars = RichProgress(
                TextColumn("{task.description}", justify="left"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )

    def __enter__(self) -> Progress:
        if self._bars is not None:
            self._timer = threading.Timer(self._delay, self._bars.start)
            self._timer.daemon = True
            self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._bars is not None and self._bars.live.is_started:
            self._bars.stop()

    def task(self, description: str, total: int | None) -> Advance:
        if self._bars is None:
            return _noop
        bars = self._bars
        task_id = bars.add_task(description[-48:], total=total)

        def advance(n: int) -> None:
            bars.update(task_id, advance=n)

        return advance
