"""Exposure query at scale: 100,000 versions whose environments hold 200 packages each.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/modelyard_bench .venv/bin/python bench/lineage_exposure.py

Seeds (with COPY) 1,000 models x 100 versions, each with a training run whose environment is one
of 5,000 distinct environments of 200 packages (1,000,000 package rows; tensorflow spread over 20
releases), then times `lineage_app.selectors.exposure` and the HTTP endpoint for a specifier that
matches ~10% of versions and for one that matches a single release. Drops its data afterwards.
"""

from __future__ import annotations

import io
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "registry_project.settings")

import django

django.setup()

from django.contrib.auth.models import Group, User
from django.db import connection
from django.test import Client

from lineage_app.selectors import exposure

MODELS, VERSIONS, ENVS, PACKAGES = 1000, 100, 5000, 200
TF = [f"2.{minor}.{patch}" for minor in range(5, 15) for patch in (0, 1)]


def copy(table: str, columns: list[str], rows) -> None:
    buffer = io.StringIO()
    for row in rows:
        buffer.write("\t".join("\\N" if v is None else str(v) for v in row) + "\n")
    buffer.seek(0)
    with connection.cursor() as cursor, cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as cp:
        cp.write(buffer.read())


def seed() -> User:
    random.seed(1)
    admin, _ = User.objects.get_or_create(
        username="bench-admin", defaults={"is_superuser": True, "is_staff": True}
    )
    team, _ = Group.objects.get_or_create(name="bench-team")
    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(max(id), 0) FROM models_app_registeredmodel")
        base_model = cursor.fetchone()[0] + 1
        cursor.execute("SELECT coalesce(max(id), 0) FROM lineage_app_environment")
        base_env = cursor.fetchone()[0] + 1
        cursor.execute("SELECT coalesce(max(id), 0) FROM models_app_modelversion")
        base_version = cursor.fetchone()[0] + 1
    now = "2026-11-26 00:00:00+00"
    copy(
        "models_app_registeredmodel",
        [
            "id",
            "name",
            "description",
            "team_id",
            "visibility",
            "created_at",
            "updated_at",
            "last_version_number",
        ],
        (
            (base_model + i, f"bench-model-{i}", "", team.pk, "internal", now, now, VERSIONS)
            for i in range(MODELS)
        ),
    )
    copy(
        "lineage_app_environment",
        ["id", "digest", "python", "platform", "accelerator", "created_at"],
        ((base_env + e, f"bench{e:059d}", "3.11.7", "linux-x86_64", "", now) for e in range(ENVS)),
    )
    names = ["tensorflow"] + [f"pkg-{n}" for n in range(PACKAGES - 1)]
    copy(
        "lineage_app_environmentpackage",
        ["environment_id", "name", "version"],
        (
            (
                base_env + e,
                name,
                random.choice(TF) if name == "tensorflow" else f"1.{random.randint(0, 30)}.0",
            )
            for e in range(ENVS)
            for name in names
        ),
    )
    stages = ["none"] * 6 + ["staging"] * 3 + ["production"]
    copy(
        "models_app_modelversion",
        [
            "id",
            "model_id",
            "version",
            "status",
            "stage",
            "status_message",
            "description",
            "source",
            "created_at",
            "updated_at",
            "manifest_digest",
        ],
        (
            (
                base_version + m * VERSIONS + v,
                base_model + m,
                v + 1,
                "READY",
                random.choice(stages),
                "",
                "",
                "",
                now,
                now,
                "",
            )
            for m in range(MODELS)
            for v in range(VERSIONS)
        ),
    )
    copy(
        "lineage_app_trainingrun",
        [
            "version_id",
            "external_id",
            "pipeline",
            "step",
            '"user"',
            "status",
            "params",
            "metrics",
            "tags",
            "extra",
            "environment_id",
            "updated_at",
        ],
        (
            (
                base_version + i,
                f"run-{i}",
                "bench",
                "",
                "",
                "",
                "{}",
                "{}",
                "{}",
                "{}",
                base_env + random.randrange(ENVS),
                now,
            )
            for i in range(MODELS * VERSIONS)
        ),
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return admin


def timed(fn, repeat: int = 7) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), result


def cleanup() -> None:
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM lineage_app_trainingrun WHERE pipeline = 'bench'")
        cursor.execute(
            "DELETE FROM models_app_modelversion WHERE model_id IN "
            "(SELECT id FROM models_app_registeredmodel WHERE name LIKE 'bench-model-%%')"
        )
        cursor.execute("DELETE FROM models_app_registeredmodel WHERE name LIKE 'bench-model-%%'")
        cursor.execute(
            "DELETE FROM lineage_app_environmentpackage WHERE environment_id IN "
            "(SELECT id FROM lineage_app_environment WHERE digest LIKE 'bench%%')"
        )
        cursor.execute("DELETE FROM lineage_app_environment WHERE digest LIKE 'bench%%'")


def main() -> None:
    if connection.vendor != "postgresql":
        sys.exit("Run against PostgreSQL: set DATABASE_URL.")
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    cleanup()
    start = time.perf_counter()
    admin = seed()
    print(
        f"seeded {MODELS * VERSIONS:,} versions, {ENVS:,} environments x {PACKAGES} packages "
        f"in {time.perf_counter() - start:.1f} s"
    )
    client = Client()
    client.force_login(admin)
    for spec, stage in (("<2.6.0", None), ("<2.6.0", "production"), ("==2.11.0", None)):
        ms, rows = timed(
            lambda spec=spec, stage=stage: exposure(
                user=admin, package="tensorflow", specifier=spec, stage=stage
            )
        )
        url = f"/api/v1/lineage/exposure?package=tensorflow&specifier={spec.replace('<', '%3C')}"
        url += f"&stage={stage}" if stage else ""
        http_ms, response = timed(lambda url=url: client.get(url), repeat=5)
        assert response.status_code == 200
        print(
            f"specifier {spec:9} stage {stage or 'any':10}: {len(rows):6,} versions; "
            f"selector p50 {ms:6.1f} ms, HTTP (in-process) p50 {http_ms:6.1f} ms"
        )
    cleanup()


if __name__ == "__main__":
    main()
