"""Liveness and readiness probes, open without authentication."""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.core.files.storage import storages
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

logger = logging.getLogger(__name__)


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up and serving requests."""
    return JsonResponse({"status": "ok"})


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _check_storage() -> None:
    # exists() of a key that need not be there still needs the bucket or folder to answer.
    storages["artifacts"].exists("readyz-probe")
    if not settings.S3_BUCKET:
        settings.ARTIFACT_STORAGE_PATH.mkdir(parents=True, exist_ok=True)
        if not settings.ARTIFACT_STORAGE_PATH.is_dir():
            raise OSError("artifact folder is missing")


def _check_broker() -> None:
    from registry_project.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


CHECKS = {"database": _check_database, "storage": _check_storage, "broker": _check_broker}


@never_cache
@require_safe
def readyz(request: HttpRequest) -> JsonResponse:
    """Database, artifact storage and broker all answer: ready for traffic (503 otherwise)."""
    results: dict[str, dict] = {}
    for name, check in CHECKS.items():
        started = time.perf_counter()
        try:
            check()
        except Exception as exc:  # a probe reports failures, it must not raise
            logger.warning("readiness check %s failed: %s", name, exc)
            results[name] = {"ok": False, "error": type(exc).__name__}
        else:
            results[name] = {"ok": True}
        results[name]["ms"] = round((time.perf_counter() - started) * 1000, 1)
    ready = all(r["ok"] for r in results.values())
    return JsonResponse(
        {"status": "ready" if ready else "unavailable", "checks": results}, status=200 if ready else 503
    )
