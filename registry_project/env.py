"""Typed readers for configuration from environment variables.

Every setting that can hold a secret also reads ``<NAME>_FILE`` (Docker and Kubernetes
secrets mounted as files), so secrets never need to sit in the process environment.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigError(Exception):
    """A configuration variable holds a value that cannot be used."""


def env_str(name: str, default: str = "") -> str:
    """Return ``name`` from the environment, or from the file named by ``<name>_FILE``."""
    file_path = os.environ.get(f"{name}_FILE")
    if file_path:
        try:
            return Path(file_path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{name}_FILE={file_path!r} cannot be read: {exc.strerror}") from exc
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean (use true/false, 1/0, yes/no, on/off)")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    """The integer in ``name`` (``_`` separators allowed), else ``default``; below ``minimum``
    (when given) is a ``ConfigError``."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.replace("_", ""))
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r} is not an integer") from exc
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name}={value}: give a whole number of at least {minimum}")
    return value


DB_CONN_MAX_AGE_DEFAULT = 60


def db_conn_max_age() -> int:
    """Seconds a database connection is reused (``DB_CONN_MAX_AGE``): Django's ``CONN_MAX_AGE``
    in settings, and how long the web server keeps an idle thread holding one."""
    return env_int("DB_CONN_MAX_AGE", DB_CONN_MAX_AGE_DEFAULT)


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return list(default or [])
    return [item.strip() for item in raw.split(",") if item.strip()]


def persistent_secret(path: Path) -> str:
    """Return the secret stored at ``path``, generating it (mode 0600) on first use.

    Lets a fresh checkout run with a stable secret key without ever committing one.
    """
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(50)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race: use its value
        return path.read_text(encoding="utf-8").strip()
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(value)
    return value
