#!/usr/bin/env bash
# Backup and restore drill: dump the database and copy the artifacts, wipe both, restore, verify.
#   DATABASE_URL=postgres://… ARTIFACT_STORAGE_PATH=/srv/modelyard/artifacts docker/backup-restore-drill.sh
# Works with PostgreSQL (pg_dump/pg_restore) or the default SQLite file, and the folder store
# (for S3, replace the copy steps with `aws s3 sync` of the bucket).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
backup=$(mktemp -d)
var=${MODELYARD_VAR_DIR:-$PWD/var}
artifacts=${ARTIFACT_STORAGE_PATH:-$var/artifacts}

echo "1. verify before backup"; $PY manage.py verify_artifacts
echo "2. snapshot of metadata"; $PY manage.py dumpdata models_app.modelversion --indent 0 | sha256sum > "$backup/versions.sha"

echo "3. back up"
if [[ "${DATABASE_URL:-}" == postgres* ]]; then
  pg_dump --format=custom --file="$backup/db.dump" "$DATABASE_URL"
else
  sqlite3 "$var/db.sqlite3" ".backup '$backup/db.sqlite3'"
fi
cp -a "$artifacts" "$backup/artifacts"

echo "4. wipe"
if [[ "${DATABASE_URL:-}" == postgres* ]]; then
  psql "$DATABASE_URL" -q -c "DROP SCHEMA public CASCADE; CREATE SCHEMA public;"
else
  rm -f "$var/db.sqlite3" "$var/db.sqlite3-wal" "$var/db.sqlite3-shm"
fi
rm -rf "$artifacts"

echo "5. restore"
if [[ "${DATABASE_URL:-}" == postgres* ]]; then
  pg_restore --no-owner --dbname "$DATABASE_URL" "$backup/db.dump"
else
  cp "$backup/db.sqlite3" "$var/db.sqlite3"
fi
cp -a "$backup/artifacts" "$artifacts"

echo "6. verify after restore"
$PY manage.py verify_artifacts
$PY manage.py dumpdata models_app.modelversion --indent 0 | sha256sum | diff - "$backup/versions.sha"
rm -rf "$backup"
echo "drill passed: every file's SHA-256 and every version's metadata match"
