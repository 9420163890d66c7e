"""Test settings: the real settings plus speed-ups. Services come from the environment.

``DATABASE_URL`` picks the database as in production (PostgreSQL in CI, SQLite by default).
Artifacts and the broker folder go to a temporary directory per test session.
"""

import os
import tempfile
from pathlib import Path

_tmp = Path(tempfile.mkdtemp(prefix="modelyard-test-"))
os.environ.setdefault("MODELYARD_VAR_DIR", str(_tmp))

from registry_project.settings import *  # noqa: E402,F403
from registry_project.settings import STORAGES  # noqa: E402

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405 - whitenoise expects it
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):  # noqa: F405
    # A file, not shared-cache memory, so threaded tests see real SQLite locking (WAL, IMMEDIATE).
    DATABASES["default"]["TEST"] = {"NAME": str(_tmp / "test.sqlite3")}  # noqa: F405
