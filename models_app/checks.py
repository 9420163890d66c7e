"""System checks (``manage.py check``, and before ``migrate`` and the server start)."""

from __future__ import annotations

from django.core import checks
from django.db import connections

MIN_SQLITE = (3, 35)  # INSERT/UPDATE … RETURNING (version numbers, first aliases)


def sqlite_is_recent_enough(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    found = []
    for connection in connections.all(initialized_only=False):
        if connection.vendor != "sqlite":
            continue
        have = connection.Database.sqlite_version_info
        if have < MIN_SQLITE:
            found.append(
                checks.Error(
                    f"SQLite {'.'.join(map(str, have))} is too old: Modelyard needs "
                    f"{'.'.join(map(str, MIN_SQLITE))} or newer (for RETURNING).",
                    hint="Use a Python built with a newer sqlite3 (python.org, pyenv, Debian 12), "
                    "or set DATABASE_URL to PostgreSQL.",
                    id="modelyard.E001",
                )
            )
    return found
