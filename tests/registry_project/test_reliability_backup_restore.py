"""The backup and restore drill, run for real: ``docker/backup-restore-drill.sh`` on PostgreSQL
and the artifact folder (pg_dump, copy, wipe, pg_restore, copy back; every blob's SHA-256 and
every version's metadata compared with ``verify_artifacts`` and a dump of the versions).

It runs on a throwaway database of its own (the drill drops the schema it restores into), seeded
by ``manage.py migrate`` and ``seed_demo`` in subprocesses, as an operator would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.db import connection

from tests.conftest import need_service

ROOT = Path(__file__).resolve().parents[2]


def _run(args, env, timeout=300):
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def drill_env(postgres, tmp_path):
    need_service(
        all(shutil.which(tool) for tool in ("pg_dump", "pg_restore", "psql")), "PostgreSQL client tools"
    )
    import psycopg

    db = connection.settings_dict
    server = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
    name = f"modelyard_rel_drill_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "registry_project.settings",
        "DATABASE_URL": f"{server}/{name}",
        "MODELYARD_VAR_DIR": str(tmp_path / "var"),
        "MODELYARD_ADMIN_PASSWORD": "drill-admin-password",
        "ARTIFACT_STORAGE_PATH": str(tmp_path / "var" / "artifacts"),
        "CELERY_BROKER_URL": "memory://",  # seeding enqueues follow-ups; nobody consumes them here
        "S3_BUCKET": "",
        "PYTHON": sys.executable,
    }
    try:
        yield env
    finally:
        with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_backup_wipe_restore_verify_on_postgresql_and_the_artifact_folder(drill_env, tmp_path):
    for step in (["migrate", "--noinput"], ["ensure_admin"], ["seed_demo"]):
        result = _run([sys.executable, "manage.py", *step], drill_env)
        assert result.returncode == 0, result.stdout + result.stderr
    artifacts = Path(drill_env["ARTIFACT_STORAGE_PATH"])
    blobs = sorted(p.relative_to(artifacts) for p in artifacts.rglob("*") if p.is_file())
    assert blobs, "seed_demo stored no files: nothing to verify"

    result = _run(["bash", "docker/backup-restore-drill.sh"], drill_env, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "drill passed" in result.stdout
    assert "0 problem(s)" in result.stdout
    after = sorted(p.relative_to(artifacts) for p in artifacts.rglob("*") if p.is_file())
    assert after == blobs

    # The verification is real: one blob lost after a restore is found.
    victim = next(p for p in artifacts.rglob("*") if p.is_file() and "blobs" in p.parts)
    victim.unlink()
    result = _run([sys.executable, "manage.py", "verify_artifacts"], drill_env)
    assert result.returncode != 0
