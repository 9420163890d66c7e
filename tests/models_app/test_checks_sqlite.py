"""The SQLite floor is a clear start-up error, not a failed INSERT … RETURNING later."""

from __future__ import annotations

from sqlite3 import dbapi2

import pytest
from django.db import connections

from models_app.checks import sqlite_is_recent_enough


@pytest.fixture
def sqlite_alias(settings):
    settings.DATABASES = {
        **settings.DATABASES,
        "old": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
    }
    connections.settings = connections.configure_settings(settings.DATABASES)
    yield "old"
    connections["old"].close()
    del connections["old"]
    del connections.settings


def test_an_sqlite_older_than_3_35_is_an_error(sqlite_alias, monkeypatch):
    assert sqlite_is_recent_enough() == []
    monkeypatch.setattr(dbapi2, "sqlite_version_info", (3, 31, 1))  # what the backend reads
    errors = sqlite_is_recent_enough()  # one per SQLite database (the test's own may be one)
    assert errors and all(e.id == "modelyard.E001" and "3.31.1 is too old" in e.msg for e in errors)
