"""The production web server: Granian (HTTP in Rust) serving ``registry_project.wsgi``.

One place for the server's flags, used by ``manage.py runstack`` (``make run``), the container's
``modelyard web`` and the benchmarks::

    python -m registry_project.webserver            # replaces itself with the server process

Granian parses HTTP and holds connections outside the GIL; the app runs on ``WEB_THREADS``
blocking threads in each of ``WEB_CONCURRENCY`` processes. It costs less CPU per request than
gunicorn's gthread workers did (``bench/README.md`` has both). Request bodies and streamed
responses pass through in chunks (a 1 GiB upload and a 512 MiB download stayed under 90 MiB
resident). Idle kept-alive connections
are never closed by the server, so a load balancer's idle timeout always ends them first.

A thread that has served requests holds a warm database connection (kept ``DB_CONN_MAX_AGE``
seconds), so an idle thread is kept as long (within Granian's 5-600 s). Granian's own default,
30 s, threw those connections away after any lull: the first request of each new thread then
paid a new PostgreSQL session and its catalog caches (~30-40 ms here, the first request on each
of the 8 threads after 35 s idle).
"""

from __future__ import annotations

import os
import shutil
import sys

from registry_project.env import DB_CONN_MAX_AGE_DEFAULT, ConfigError, db_conn_max_age


def bind_address(bind: str | None = None) -> str:
    """``bind``, else ``MODELYARD_BIND``, else the local default."""
    return bind or os.environ.get("MODELYARD_BIND", "127.0.0.1:8000")


def _split_bind(bind: str) -> tuple[str, str]:
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise SystemExit(f"MODELYARD_BIND must be host:port, not {bind!r}")
    return host.strip("[]"), port


def thread_idle_timeout() -> int:
    """Seconds an idle app thread is kept: ``DB_CONN_MAX_AGE`` (the life of the database
    connection it holds) within Granian's bounds of 5-600."""
    try:
        max_age = db_conn_max_age()
    except ConfigError:
        max_age = DB_CONN_MAX_AGE_DEFAULT  # the app's settings refuse the value with a clear error
    return min(600, max(5, max_age))


def command(
    *,
    bind: str | None = None,
    workers: str | None = None,
    threads: str | None = None,
    access_log: bool = True,
    extra: list[str] | None = None,
) -> list[str]:
    """The server's command line; arguments left out come from the environment (README's table).
    ``extra`` are more Granian flags (``granian --help``), e.g. ``--workers-max-rss 512``."""
    host, port = _split_bind(bind_address(bind))
    granian = shutil.which("granian", path=os.path.dirname(sys.executable)) or "granian"
    return [
        granian,
        "--interface",
        "wsgi",
        "--host",
        host,
        "--port",
        port,
        "--workers",
        str(workers or os.environ.get("WEB_CONCURRENCY", "2")),
        "--blocking-threads",
        str(threads or os.environ.get("WEB_THREADS", "4")),
        "--blocking-threads-idle-timeout",  # keep a thread as long as its database connection
        str(thread_idle_timeout()),
        "--respawn-failed-workers",  # a crashed worker is replaced, as gunicorn's arbiter did
        "--workers-kill-timeout",  # SIGTERM: in-flight requests get this long to finish
        os.environ.get("WEB_GRACEFUL_TIMEOUT", "20"),
        "--no-ws",
        "--log-level",
        os.environ.get("LOG_LEVEL", "INFO").lower(),
        "--access-log" if access_log else "--no-access-log",
        "--factory",  # each worker builds the app once: registry_project.wsgi.served_application
        *(extra or []),
        "registry_project.wsgi:served_application",
    ]


def main() -> None:
    argv = command(extra=sys.argv[1:])
    os.execvp(argv[0], argv)  # noqa: S606 - our own fixed command line


if __name__ == "__main__":
    main()
