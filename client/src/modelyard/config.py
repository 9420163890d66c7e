"""Where the client finds the registry: arguments, then ``MODELYARD_URL``/``MODELYARD_TOKEN``, then the file.

The file is ``$XDG_CONFIG_HOME/modelyard/config.toml`` (``~/.config/modelyard/config.toml``;
``%APPDATA%\\modelyard\\config.toml`` on Windows), or ``MODELYARD_CONFIG`` when set. It holds the
token, so it is written with 0600 permissions in a 0700 folder.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.9/3.10
    import tomli as tomllib


def _base(env: str, posix_default: str, windows_env: str) -> Path:
    if os.environ.get(env):
        return Path(os.environ[env])
    if os.name == "nt" and os.environ.get(windows_env):
        return Path(os.environ[windows_env])
    return Path.home() / posix_default


def config_path() -> Path:
    if os.environ.get("MODELYARD_CONFIG"):
        return Path(os.environ["MODELYARD_CONFIG"])
    return _base("XDG_CONFIG_HOME", ".config", "APPDATA") / "modelyard" / "config.toml"


def state_dir() -> Path:
    """Where resume state of interrupted uploads is kept (small JSON files)."""
    if os.environ.get("MODELYARD_STATE_DIR"):
        return Path(os.environ["MODELYARD_STATE_DIR"])
    return _base("XDG_CACHE_HOME", ".cache", "LOCALAPPDATA") / "modelyard"


def load_file() -> dict[str, str]:
    path = config_path()
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        from modelyard.errors import ModelyardError

        raise ModelyardError(f"Cannot read the configuration file {path}: {exc}") from exc
    return {key: str(value) for key, value in data.items() if key in ("url", "token")}


def resolve(url: str | None = None, token: str | None = None) -> tuple[str | None, str | None]:
    """The registry URL and token: explicit values, then environment variables, then the file."""
    stored: dict[str, str] = {}
    if not url or not token:
        stored = load_file()
    url = url or os.environ.get("MODELYARD_URL") or stored.get("url")
    token = token or os.environ.get("MODELYARD_TOKEN") or stored.get("token")
    return url, token


def save(url: str, token: str) -> Path:
    """Write the URL and token to the configuration file, readable by its owner only."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # JSON string escapes are valid TOML basic strings.
    text = f"url = {json.dumps(url)}\ntoken = {json.dumps(token)}\n"
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path
