"""Catalog and model pages with 10,000 models on PostgreSQL, rendered server-side.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/modelyard_bench ALLOWED_HOSTS=testserver \
      .venv/bin/python bench/catalog_pages.py

Seeds (with COPY) 10,000 models in 20 teams (a quarter private) with generated descriptions,
three tags each (task, framework, domain), 3 versions each with a training run and metrics
(30,000 versions), a few usage counters, then times pages through Django's test client as a
viewer of two teams: the catalog home, searches (exact, typo, with a facet), sort by most used,
and a model page. Prints p50/p95 and the number of SQL queries per page. Drops its data afterwards.
"""

from __future__ import annotations

import io
import json
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
from django.test.utils import CaptureQueriesContext

MODELS, TEAMS, VERSIONS = 10_000, 20, 3
REPEAT = int(os.environ.get("REPEAT", "15"))
_TEXT = (
    "customer churn fraud demand forecast price elasticity credit risk default loan approval image "
    "defect detection sentiment review support ticket routing sales lead scoring inventory stock "
    "energy load wind solar anomaly sensor maintenance failure claim insurance recommendation "
    "product ranking search query embedding translation summary invoice document classification"
)
WORDS = _TEXT.split()
TASKS = ["classification", "regression", "ranking", "forecasting", "clustering", "nlp"]
FRAMEWORKS = ["sklearn", "xgboost", "lightgbm", "pytorch", "tensorflow", "prophet"]
DOMAINS = ["crm", "payments", "supply", "marketing", "hr", "ops", "finance", "support"]


def _text(value) -> str:
    if value is None:
        return "\\N"
    return str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def copy(table: str, columns: list[str], rows) -> None:
    buffer = io.StringIO()
    for row in rows:
        buffer.write("\t".join(_text(v) for v in row) + "\n")
    buffer.seek(0)
    with connection.cursor() as cursor, cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as cp:
        cp.write(buffer.read())


def next_id(table: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT coalesce(max(id), 0) + 1 FROM {table}")  # noqa: S608 - fixed names
        return cursor.fetchone()[0]


def seed() -> User:
    from models_app.choices import TeamRole
    from models_app.models import TeamMembership

    random.seed(7)
    teams = [Group.objects.get_or_create(name=f"bench-team-{t}")[0] for t in range(TEAMS)]
    viewer, _ = User.objects.get_or_create(username="bench-viewer")
    for team in teams[:2]:
        TeamMembership.objects.get_or_create(team=team, user=viewer, defaults={"role": TeamRole.VIEWER})
    base_model, base_version = next_id("models_app_registeredmodel"), next_id("models_app_modelversion")
    now = "2026-12-01 00:00:00+00"
    models = []
    for i in range(MODELS):
        words = random.sample(WORDS, 3)
        name = f"bench-{'-'.join(words[:2])}-{i}"
        description = f"Predicts {' '.join(words)} for the {random.choice(DOMAINS)} team. " + " ".join(
            random.choices(WORDS, k=25)
        )
        visibility = "private" if i % 4 == 0 else "internal"
        if i == MODELS // 2:  # the one a business user looks for (with a typo)
            name, description = "bench-customer-churn", "Predicts which customers will cancel next month."
            visibility = "internal"
        models.append((base_model + i, name, description, teams[i % TEAMS].pk, visibility))
    copy(
        "models_app_registeredmodel",
        ["id", "name", "description", "card", "team_id", "visibility", "created_at", "updated_at",
         "last_version_number"],
        ((m, n, d, f"# {n}\n\n{d}", t, v, now, f"2026-11-{1 + m % 28:02d} 00:00:00+00", VERSIONS)
         for m, n, d, t, v in models),
    )  # fmt: skip
    copy(
        "models_app_modeltag",
        ["model_id", "key", "value"],
        (
            row
            for m, *_ in models
            for row in (
                (m, "task", random.choice(TASKS)),
                (m, "framework", random.choice(FRAMEWORKS)),
                (m, "domain", random.choice(DOMAINS)),
            )
        ),
    )
    stages = ["none", "staging", "production"]
    copy(
        "models_app_modelversion",
        ["id", "model_id", "version", "status", "stage", "status_message", "description", "source",
         "created_at", "updated_at", "manifest_digest"],
        ((base_version + k * VERSIONS + v, m, v + 1, "READY", stages[v] if k % 3 else "none", "", "", "",
          now, now, "") for k, (m, *_r) in enumerate(models) for v in range(VERSIONS)),
    )  # fmt: skip
    copy(
        "lineage_app_trainingrun",
        ["version_id", "external_id", "pipeline", "step", '"user"', "status", "params", "metrics", "tags",
         "extra", "updated_at"],
        ((base_version + i, f"run-{i}", "bench", "", "", "", "{}",
          json.dumps({"accuracy": round(random.uniform(0.6, 0.95), 3),
                      "auc": round(random.uniform(0.6, 0.99), 3)}),
          "{}", "{}", now) for i in range(MODELS * VERSIONS)),
    )  # fmt: skip
    copy(
        "models_app_modelusage",
        ["model_id", "kind", "day", "count"],
        ((m, "download", "2026-11-30", random.randint(1, 500)) for m, *_ in models[::5]),
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return viewer


def cleanup() -> None:
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM lineage_app_trainingrun WHERE pipeline = 'bench'")
        ids = "(SELECT id FROM models_app_registeredmodel WHERE name LIKE 'bench-%%')"
        tables = (
            "models_app_modelversion",
            "models_app_modeltag",
            "models_app_modelusage",
            "models_app_promotionpolicy",
        )
        for table in tables:
            cursor.execute(f"DELETE FROM {table} WHERE model_id IN {ids}")  # noqa: S608 - fixed names
        cursor.execute(f"DELETE FROM models_app_event WHERE registered_model_id IN {ids}")  # noqa: S608
        cursor.execute("DELETE FROM models_app_auditevent WHERE model_name LIKE 'bench-%%'")
        cursor.execute("DELETE FROM models_app_registeredmodel WHERE name LIKE 'bench-%%'")


def timed(client: Client, url: str) -> tuple[float, float, int, int]:
    if "--explain" in sys.argv:
        with CaptureQueriesContext(connection) as queries:
            client.get(url)
        for q in queries.captured_queries:
            print(f"  {q['time']}s  {q['sql'][:160]}")
    client.get(url)  # warm caches
    times = []
    for _ in range(REPEAT):
        start = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1], len(queries), len(response.content)


def main() -> None:
    if connection.vendor != "postgresql":
        sys.exit("Run against PostgreSQL: set DATABASE_URL.")
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("collectstatic", interactive=False, verbosity=0)  # pages link the hashed CSS
    reuse = "--reuse" in sys.argv  # keep the seeded data between runs (profiling)
    from models_app.models import RegisteredModel

    if reuse and RegisteredModel.objects.filter(name__startswith="bench-").exists():
        viewer = User.objects.get(username="bench-viewer")
    else:
        cleanup()
        start = time.perf_counter()
        viewer = seed()
        print(
            f"seeded {MODELS:,} models, {MODELS * VERSIONS:,} versions in {time.perf_counter() - start:.1f} s"
        )
    client = Client()
    client.force_login(viewer)
    model_name = (
        RegisteredModel.objects.filter(
            name__startswith="bench-", visibility="internal", versions__stage="production"
        )
        .values_list("name", flat=True)
        .first()
    )
    pages = [
        ("catalog home (sorted by last update)", "/"),
        ("search 'customer churn' (full text, ranked)", "/?q=customer+churn"),
        ("search 'custmer churn' (typo: trigram fallback)", "/?q=custmer+churn"),
        ("search + facet task=classification", "/?q=fraud&task=classification"),
        ("facet framework=pytorch, most used", "/?framework=pytorch&sort=used"),
        ("catalog page 50", "/?page=50"),
        ("model page", f"/models/{model_name}/"),
    ]
    print("| page | p50 | p95 | queries | HTML |")
    print("|---|---:|---:|---:|---:|")
    try:
        for label, url in pages:
            p50, p95, queries, size = timed(client, url)
            print(f"| {label} | {p50:.1f} ms | {p95:.1f} ms | {queries} | {size // 1024} KiB |")
    finally:
        if not reuse:
            cleanup()


if __name__ == "__main__":
    main()
