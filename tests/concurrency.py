"""Helpers for tests that race two database transactions (PostgreSQL only)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

from django.db import connection, transaction


@contextlib.contextmanager
def held_transaction(work: Callable[[], object]) -> Iterator[threading.Event]:
    """Run ``work()`` in a transaction on another thread and keep that transaction open (its
    locks held) until the block ends or the yielded event is set; ``work``'s errors fail."""
    done, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with transaction.atomic():
                work()
                done.set()
                release.wait(10)
        except BaseException as exc:
            errors.append(exc)
            done.set()
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert done.wait(10) and errors == [], errors
        yield release
    finally:
        release.set()
        thread.join()
    assert errors == [], errors
