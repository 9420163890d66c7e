#!/bin/sh
# Container entry point: `web`, `worker`, `beat`, `migrate`, or any manage.py command.
set -eu
cd /opt/modelyard
role="${1:-web}"
[ $# -gt 0 ] && shift
case "$role" in
  web)
    if [ "${MODELYARD_MIGRATE_ON_START:-false}" = "true" ]; then python manage.py migrate --noinput; fi
    # Granian; its flags live in registry_project/webserver.py (extra arguments are passed on).
    MODELYARD_BIND="${MODELYARD_BIND:-0.0.0.0:8000}" exec python -m registry_project.webserver "$@" ;;
  worker)
    exec celery -A registry_project worker --loglevel "${LOG_LEVEL:-INFO}" \
      --concurrency "${CELERY_CONCURRENCY:-2}" --queues "${CELERY_QUEUES:-celery,deployments}" "$@" ;;
  beat)
    exec celery -A registry_project beat --loglevel "${LOG_LEVEL:-INFO}" "$@" ;;
  migrate)
    exec python manage.py migrate --noinput "$@" ;;
  *)
    exec python manage.py "$role" "$@" ;;
esac
