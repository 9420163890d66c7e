"""Django's PostgreSQL backend with a health check that costs no round trip when nothing is wrong.

``CONN_HEALTH_CHECKS`` makes Django check a reused connection before the first query of each
request, with ``SELECT 1``: one more round trip on every request (a get had two). A server that
ends a session (restart, failover, ``pg_terminate_backend``, an idle timeout) sends its FATAL
message and closes the socket, so the socket turns readable; an idle healthy connection has
nothing to read. Only a readable socket is checked with ``SELECT 1``, which reads what is there
(a notice, or the end of the session) and says whether the connection still works.
"""

from __future__ import annotations

import select

from django.db.backends.postgresql.base import DatabaseWrapper as _PostgreSQLWrapper

__all__ = ["DatabaseWrapper"]


class DatabaseWrapper(_PostgreSQLWrapper):
    def is_usable(self) -> bool:
        connection = self.connection
        if connection is None or connection.closed or connection.broken:
            return False
        try:
            readable, _, _ = select.select([connection.fileno()], [], [], 0)
        except (OSError, ValueError):  # the descriptor is gone
            return False
        return super().is_usable() if readable else True
