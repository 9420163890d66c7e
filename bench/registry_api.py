"""MLflow-REST registry workload against Modelyard and against ``mlflow server``, same PostgreSQL.

Run by hand (figures go to bench/README.md)::

    python3.11 -m venv /tmp/mlflow-venv
    /tmp/mlflow-venv/bin/pip install 'mlflow>=3.17,<3.18' psycopg2-binary
    .venv/bin/python bench/registry_api.py --mlflow /tmp/mlflow-venv/bin/mlflow

Both servers get the same catalog, seeded straight into their tables with SQL (``generate_series``):
1,000 models x 10 versions, two tags per model, two per version (one unique, one shared by all),
alias ``champion`` on each model's newest version. Then every operation runs at concurrency 1 and 8,
with connection reuse (as the mlflow client does) and with a new connection per request, and the
table prints p50/p95/p99 latency, requests/s and Modelyard's throughput ratio at concurrency 8. The
searches then run again on 10,000 x 10 (100k versions).

Modelyard runs as in production: Granian (2 workers x 4 threads, ``runstack``'s default),
DEBUG off, PostgreSQL, a contributor's token (so visibility filtering is on). MLflow runs
``mlflow server`` with its default 4 uvicorn workers. Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _stack import Stack, free_port, rss_of_tree

PG = "postgresql://postgres@127.0.0.1:5432"
API = "/api/2.0/mlflow"
PROMPT = " AND tag.`mlflow.prompt.is_prompt` != 'true'"  # what the client appends to RM searches


def recreate_db(name: str) -> str:
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{PG}/{name}"


def name_of(i: int) -> str:
    return f"bench-{i:05d}"


# --- Seeding ------------------------------------------------------------------------------------


def settle(conn: psycopg.Connection) -> None:
    """Leave a seeded catalog as one that has lived: visibility map and hint bits set, nothing
    for autovacuum to catch up on while the first rows are timed (ANALYZE alone left that to
    them: get model at 100k, the first row timed, had the worst p99 of every run)."""
    conn.execute("VACUUM (ANALYZE)")


def seed_modelyard(dsn: str, models: int, versions: int, team_id: int, user_id: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        # Versions created by an earlier round have files, lineage and audit-linked rows too.
        conn.execute("TRUNCATE models_app_registeredmodel CASCADE")
        conn.execute(
            """INSERT INTO models_app_registeredmodel
               (name, description, card, team_id, visibility, created_by_id, created_at, updated_at,
                last_version_number)
               SELECT 'bench-' || lpad(i::text, 5, '0'), '', '', %s, 'internal', %s, now(),
                      now() - make_interval(secs => i), %s
               FROM generate_series(0, %s - 1) i""",
            (team_id, user_id, versions, models),
        )
        conn.execute(
            """INSERT INTO models_app_modelversion
               (model_id, version, status, status_message, stage, description, source, manifest_digest,
                finalized_at, ready_hooks_done_at, created_by_id, created_at, updated_at)
               SELECT m.id, v, 'READY', '', 'none', '', 'models:/seed', '', now(), now(), %s, now(),
                      now() - make_interval(secs => m.id * 10 + v)
               FROM models_app_registeredmodel m, generate_series(1, %s) v""",
            (user_id, versions),
        )
        conn.execute(
            """INSERT INTO models_app_modeltag (model_id, key, value)
               SELECT id, 'owner', 'bench' FROM models_app_registeredmodel
               UNION ALL SELECT id, 'idx', name FROM models_app_registeredmodel"""
        )
        conn.execute(
            """INSERT INTO models_app_versiontag (version_id, key, value)
               SELECT v.id, 'uniq', m.name || '-' || v.version
               FROM models_app_modelversion v JOIN models_app_registeredmodel m ON m.id = v.model_id
               UNION ALL SELECT id, 'flavor', 'sklearn' FROM models_app_modelversion"""
        )
        conn.execute(
            """INSERT INTO models_app_modelalias (model_id, alias, version_id, updated_at)
               SELECT model_id, 'champion', id, now() FROM models_app_modelversion WHERE version = %s""",
            (versions,),
        )
        settle(conn)


def seed_mlflow(dsn: str, models: int, versions: int) -> None:
    now = int(time.time() * 1000)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in ("registered_model_aliases", "model_version_tags", "registered_model_tags"):
            conn.execute(f"DELETE FROM {table} WHERE name LIKE 'bench-%%'")  # noqa: S608 - fixed names
        conn.execute("DELETE FROM model_versions WHERE name LIKE 'bench-%%'")
        conn.execute("DELETE FROM registered_models WHERE name LIKE 'bench-%%'")
        conn.execute(
            """INSERT INTO registered_models (name, creation_time, last_updated_time)
               SELECT 'bench-' || lpad(i::text, 5, '0'), %s, %s - i FROM generate_series(0, %s - 1) i""",
            (now, now, models),
        )
        conn.execute(
            """INSERT INTO model_versions (name, version, creation_time, last_updated_time, description,
                 current_stage, source, run_id, status, run_link, storage_location)
               SELECT r.name, v, %s, r.last_updated_time - v, '', 'None', 'models:/seed', '', 'READY', '',
                      'models:/seed'
               FROM registered_models r, generate_series(1, %s) v WHERE r.name LIKE 'bench-%%'""",
            (now, versions),
        )
        conn.execute(
            """INSERT INTO registered_model_tags (key, value, name)
               SELECT 'owner', 'bench', name FROM registered_models WHERE name LIKE 'bench-%%'
               UNION ALL SELECT 'idx', name, name FROM registered_models WHERE name LIKE 'bench-%%'"""
        )
        conn.execute(
            """INSERT INTO model_version_tags (key, value, name, version)
               SELECT 'uniq', name || '-' || version, name, version FROM model_versions
               WHERE name LIKE 'bench-%%'
               UNION ALL SELECT 'flavor', 'sklearn', name, version FROM model_versions
               WHERE name LIKE 'bench-%%'"""
        )
        conn.execute(
            """INSERT INTO registered_model_aliases (alias, version, name)
               SELECT 'champion', %s, name FROM registered_models WHERE name LIKE 'bench-%%'""",
            (versions,),
        )
        settle(conn)


# --- Servers --------------------------------------------------------------------------------------


class Target:
    def __init__(self, label: str, url: str, headers: dict[str, str], pid: int) -> None:
        self.label, self.url, self.headers, self.pid = label, url, headers, pid
        parsed = urllib.parse.urlsplit(url)
        self.host, self.port = parsed.hostname, parsed.port

    def call(self, method: str, path: str, body: dict | bytes | None = None) -> dict:
        """One set-up request, retried while a just-started server is not answering yet."""
        for attempt in range(10):
            try:
                return self._call(method, path, body)
            except (ConnectionError, http.client.HTTPException):
                if attempt == 9:
                    raise
                time.sleep(3)
        raise AssertionError("unreachable")

    def _call(self, method: str, path: str, body: dict | bytes | None = None) -> dict:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        conn.request(method, path, body=data, headers={**self.headers, "Content-Type": "application/json"})
        response = conn.getresponse()
        raw = response.read()
        conn.close()
        if response.status != 200:
            raise RuntimeError(f"{self.label} {method} {path}: {response.status} {raw[:300]!r}")
        return json.loads(raw) if raw.strip() else {}


def start_modelyard(var_dir: Path, started: list) -> tuple[Stack, Target, str, int, int]:
    dsn = recreate_db("modelyard_mlflow_bench")
    stack = Stack(
        var_dir,
        {
            "DATABASE_URL": dsn.replace("postgresql://", "postgres://"),
            "DEBUG": "0",
            "LOG_LEVEL": "WARNING",
            "DB_CONN_MAX_AGE": "600",
        },
    )
    started.append(stack)  # stopped by the caller even if starting fails half-way
    stack.start()
    script = (
        "from django.contrib.auth.models import Group, User\n"
        "from models_app.models import TeamMembership\n"
        "from models_app import services\n"
        "team, _ = Group.objects.get_or_create(name='bench')\n"
        "user, _ = User.objects.get_or_create(username='bench')\n"
        "TeamMembership.objects.get_or_create(team=team, user=user, defaults={'role': 'contributor'})\n"
        "_t, raw = services.access_token_create(actor=user, user=user, name='b', scopes=['read', 'write'])\n"
        "print(team.pk, user.pk, raw)\n"
    )
    team_id, user_id, token = stack.manage("shell", "-c", script).split()[-3:]
    target = Target("modelyard", stack.url, {"Authorization": f"Bearer {token}"}, stack.processes["web"].pid)
    return stack, target, dsn, int(team_id), int(user_id)


def server_versions(mlflow_bin: str) -> str:
    """The versions that decide MLflow's figures: uvicorn before 0.55 left Nagle's algorithm on
    for the accepted sockets of ``--workers N`` (uvicorn issue 3149), a ~40 ms stall per request
    on a kept-alive connection that 0.55 removed."""
    python = Path(mlflow_bin).with_name("python")
    script = (
        "import importlib.metadata as m; "
        "print(*(f'{p} {m.version(p)}' for p in ('mlflow', 'uvicorn')), sep=', ')"
    )
    return subprocess.run([python, "-c", script], capture_output=True, text=True, check=True).stdout.strip()


def start_mlflow(mlflow_bin: str, var_dir: Path) -> tuple[subprocess.Popen, Target, str]:
    dsn = recreate_db("mlflow_bench")
    port = free_port()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    proc = subprocess.Popen(
        [
            mlflow_bin,
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            dsn.replace("postgresql://", "postgresql+psycopg2://"),
            "--artifacts-destination",
            str(var_dir / "mlflow-artifacts"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(var_dir / "mlflow.log", "w"),  # noqa: SIM115
    )
    target = Target("mlflow", f"http://127.0.0.1:{port}", {}, proc.pid)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return proc, target, dsn
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("mlflow server did not start; see mlflow.log")


def logged_model(target: Target) -> str:
    """One logged model with an MLmodel file, the source of every created version."""
    info = target.call("POST", f"{API}/logged-models", {"experiment_id": "0", "name": "m"})["model"]["info"]
    root = info["artifact_uri"].split("mlflow-artifacts:", 1)[1].lstrip("/")
    for name, content in (("MLmodel", b"flavors: {}\n"), ("model.bin", os.urandom(1024))):
        target.call("PUT", f"/api/2.0/mlflow-artifacts/artifacts/{root}/{name}", content)
    target.call(
        "PATCH",
        f"{API}/logged-models/{info['model_id']}",
        {"model_id": info["model_id"], "status": "LOGGED_MODEL_READY"},
    )
    return info["model_id"]


# --- Measuring ------------------------------------------------------------------------------------


def measure(target: Target, units: list, concurrency: int, reuse: bool) -> dict:
    """Run ``units`` (callables taking ``send``) on ``concurrency`` threads; time every request."""
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    queue = list(reversed(units))
    headers = {**target.headers, "Content-Type": "application/json"}

    def worker() -> None:
        conn = None

        def send(method: str, path: str, body: dict | None = None) -> dict:
            nonlocal conn
            if conn is None or not reuse:
                conn = http.client.HTTPConnection(target.host, target.port, timeout=120)
            data = json.dumps(body).encode() if body is not None else None
            started = time.perf_counter()
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read()
            elapsed = time.perf_counter() - started
            if not reuse:
                conn.close()
            with lock:
                latencies.append(elapsed)
                if response.status != 200:
                    failures.append(f"{response.status} {raw[:120]!r}")
            return json.loads(raw) if raw.strip() and response.status == 200 else {}

        while True:
            with lock:
                if not queue:
                    break
                unit = queue.pop()
            unit(send)
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return {
        "n": len(latencies),
        "p50": pct(0.50),
        "p95": pct(0.95),
        "p99": pct(0.99),
        "rps": len(latencies) / wall,
        "errors": len(failures),
        "first_error": failures[0] if failures else "",
    }


def q(params: dict) -> str:
    return urllib.parse.urlencode(params, doseq=True)


def operations(models: int, versions: int, model_id: str, reads_only: bool) -> dict:
    rnd = random.Random(7)

    def pick() -> str:
        return name_of(rnd.randrange(models))

    ops = {
        "get model": lambda s: s("GET", f"{API}/registered-models/get?{q({'name': pick()})}"),
        "get version": lambda s: s(
            "GET", f"{API}/model-versions/get?{q({'name': pick(), 'version': rnd.randint(1, versions)})}"
        ),
        "get by alias": lambda s: s(
            "GET", f"{API}/registered-models/alias?{q({'name': pick(), 'alias': 'champion'})}"
        ),
        "search models name LIKE": lambda s: s(
            "GET",
            f"{API}/registered-models/search?"
            + q({"filter": f"name LIKE '{pick()[:-1]}%'" + PROMPT, "max_results": 100}),
        ),
        "search versions by name": lambda s: s(
            "GET", f"{API}/model-versions/search?{q({'filter': f'name = {pick()!r}', 'max_results': 10000})}"
        ),
        "search versions unique tag": lambda s: s(
            "GET",
            f"{API}/model-versions/search?"
            + q({"filter": f"tags.uniq = '{pick()}-{rnd.randint(1, versions)}'", "max_results": 10000}),
        ),
        "search versions broad tag": lambda s: s(
            "GET",
            f"{API}/model-versions/search?" + q({"filter": "tags.flavor = 'sklearn'", "max_results": 100}),
        ),
    }

    def walk(send) -> None:
        token = None
        while True:
            params = {"max_results": 100, "filter": PROMPT.removeprefix(" AND ")}
            if token:
                params["page_token"] = token
            body = send("GET", f"{API}/registered-models/search?{q(params)}")
            token = body.get("next_page_token")
            if not token:
                return

    ops["walk all model pages"] = walk
    if not reads_only:
        ops["set alias"] = lambda s: s(
            "POST",
            f"{API}/registered-models/alias",
            {"name": pick(), "alias": "bench", "version": str(rnd.randint(1, versions))},
        )
        ops["create version"] = lambda s: s(
            "POST",
            f"{API}/model-versions/create",
            {"name": pick(), "source": f"models:/{model_id}", "model_id": model_id},
        )
    return ops


def warm_up(targets: list, models: int, versions: int, model_ids: dict, reads_only: bool) -> None:
    """Untimed: every operation a few times per server thread, so no row pays for connections,
    imports and first uses. The writes too: a cold create version at c=8 (each thread's first
    broker publish, its statements' first preparation) had a p95 of 170-220 ms against 75-110
    warm, and up to a quarter less throughput, in a row of 100 requests. The walk runs once per
    thread as well (it ran twice): two walks could reach one web worker only, and the other then
    rendered every model of the timed walk for the first time (Modelyard keeps rendered models
    per process, so a cold worker is slower than the steady state a catalog walked daily sees)."""
    for target in targets:
        for op, unit in operations(models, versions, model_ids[target.label], reads_only).items():
            measure(target, [unit] * (8 if op == "walk all model pages" else 16), 8, True)


def run_suite(
    targets: list,
    models: int,
    versions: int,
    model_ids: dict,
    requests: int,
    reads_only: bool,
    modes: list[bool],
) -> list[dict]:
    """Each operation runs on both servers back to back, and the first server alternates from one
    operation to the next: this machine's speed drifts by up to 2x within an hour, so a ratio
    of two rows minutes apart measured the drift as much as the servers."""
    rows = []
    names = list(operations(models, versions, "", reads_only))
    for reuse in modes:
        for concurrency in (1, 8):
            ops = {t.label: operations(models, versions, model_ids[t.label], reads_only) for t in targets}
            for index, op in enumerate(names):
                for target in targets if index % 2 == 0 else targets[::-1]:
                    unit = ops[target.label][op]
                    count = max(2, requests // (models // 100 if op == "walk all model pages" else 1))
                    if op == "walk all model pages":
                        count = max(concurrency, 2)
                    result = measure(target, [unit] * count, concurrency, reuse)
                    rows.append(
                        {"server": target.label, "op": op, "c": concurrency, "reuse": reuse, **result}
                    )
                    print(
                        f"{target.label:9} {op:28} c={concurrency} {'reuse' if reuse else 'new  '} "
                        f"n={result['n']:4} p50={result['p50']:7.1f} p95={result['p95']:7.1f} "
                        f"p99={result['p99']:7.1f} ms {result['rps']:7.1f} req/s"
                        + (
                            f"  ERRORS {result['errors']}: {result['first_error']}"
                            if result["errors"]
                            else ""
                        ),
                        flush=True,
                    )
    return rows


def table(rows: list[dict], title: str) -> str:
    out = [
        f"\n### {title}\n",
        "| op | conn | c | Modelyard p50/p95/p99 ms | req/s | MLflow p50/p95/p99 ms | req/s | ratio |",
        "|---|---|---:|---|---:|---|---:|---:|",
    ]
    index = {(r["server"], r["op"], r["c"], r["reuse"]): r for r in rows}

    def lat(r: dict) -> str:
        return f"{r['p50']:.1f} / {r['p95']:.1f} / {r['p99']:.1f}"

    for r in rows:
        if r["server"] != "modelyard":
            continue
        m = index.get(("mlflow", r["op"], r["c"], r["reuse"]))
        theirs = f"{lat(m)} | {m['rps']:.0f} | {r['rps'] / m['rps']:.1f}x" if m else "- | - | -"
        conn = "reuse" if r["reuse"] else "new"
        out.append(f"| {r['op']} | {conn} | {r['c']} | {lat(r)} | {r['rps']:.0f} | {theirs} |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mlflow", help="path of the mlflow executable (omit to measure Modelyard alone)")
    parser.add_argument("--requests", type=int, default=200, help="requests per operation and setting")
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--big-models", type=int, default=10_000)
    parser.add_argument("--versions", type=int, default=10)
    parser.add_argument("--skip-small", action="store_true", help="only the searches at --big-models")
    args = parser.parse_args()
    var_dir = Path(tempfile.mkdtemp(prefix="bench-registry-"))
    started: list = []
    mlflow_proc = None
    try:
        _stack, modelyard, my_dsn, team_id, user_id = start_modelyard(var_dir / "modelyard", started)
        targets, dsns = [modelyard], {"modelyard": my_dsn}
        if args.mlflow:
            print(f"MLflow side: {server_versions(args.mlflow)}", flush=True)
            mlflow_proc, mlflow, ml_dsn = start_mlflow(args.mlflow, var_dir)
            targets.append(mlflow)
            dsns["mlflow"] = ml_dsn
        time.sleep(3)
        for t in targets:
            print(f"{t.label}: idle RSS {rss_of_tree(t.pid) / 2**20:.0f} MiB", flush=True)
        model_ids = {t.label: logged_model(t) for t in targets}
        seed_modelyard(my_dsn, args.models, args.versions, team_id, user_id)
        if args.mlflow:
            seed_mlflow(dsns["mlflow"], args.models, args.versions)
        rows = []
        if not args.skip_small:
            warm_up(targets, args.models, args.versions, model_ids, reads_only=False)
            modes = [True, False]
            rows = run_suite(targets, args.models, args.versions, model_ids, args.requests, False, modes)
            print(table(rows, f"{args.models:,} models x {args.versions} versions"))
        t0 = time.perf_counter()
        seed_modelyard(my_dsn, args.big_models, args.versions, team_id, user_id)
        if args.mlflow:
            seed_mlflow(dsns["mlflow"], args.big_models, args.versions)
        print(
            f"seeded {args.big_models * args.versions:,} versions per server "
            f"in {time.perf_counter() - t0:.0f} s"
        )
        warm_up(targets, args.big_models, args.versions, model_ids, reads_only=True)
        rows_big = run_suite(targets, args.big_models, args.versions, model_ids, args.requests, True, [True])
        print(table(rows_big, f"{args.big_models:,} models x {args.versions} versions (reads and searches)"))
        (var_dir / "results.json").write_text(json.dumps({"small": rows, "big": rows_big}, indent=1))
        print(f"\nraw results: {var_dir / 'results.json'}")
    finally:
        for stack in started:
            stack.stop()
        if mlflow_proc is not None:
            mlflow_proc.terminate()
            try:
                mlflow_proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                mlflow_proc.kill()
        shutil.rmtree(var_dir / "modelyard", ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
