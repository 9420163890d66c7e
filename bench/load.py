"""Mixed-workload load test of the production-style stack; run by hand (see bench/README.md).

Starts the web server (Granian, 2 workers x 4 threads) + one Celery worker on PostgreSQL and
Redis, seeds a catalog through the API, then drives an open-loop mix — 80% reads and searches, 15%
writes, 5% file uploads/downloads — at rising request rates, ``--step-seconds`` per rate, and
reports for each rate: requests, errors, p50/p95/p99 latency. It stops at the first rate that
misses p99 < 200 ms or has an error; the highest rate before it is the one the stack holds.
Resident memory of web and worker is printed before and after. Only 127.0.0.1 is contacted; time
and request counts are bounded.

    .venv/bin/python bench/load.py --rates 10,20,40,60,80,100 --step-seconds 60
    .venv/bin/python bench/load.py --rates 40 --step-seconds 600       # the 10-minute run
    .venv/bin/python bench/load.py --rates 30 --step-seconds 1800      # the 30-minute soak
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _stack import Stack

MODELS = [f"load-{i:02d}" for i in range(20)]


def _fresh_services(database_url: str, broker_url: str) -> None:
    """Empty the scratch database and broker: each run's artifacts live in its own temporary
    folder, so rows left by an earlier run would point at bytes that are gone."""
    import psycopg
    import redis

    base, name = database_url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [name])
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    redis.Redis.from_url(broker_url).flushdb()


def seed(stack: Stack) -> None:
    session = requests.Session()
    session.headers.update(stack.headers)
    r = session.post(f"{stack.url}/api/v1/teams/", json={"name": "load"})
    if r.status_code not in (201, 409):
        r.raise_for_status()
    for name in MODELS:
        r = session.post(
            f"{stack.url}/api/v1/models/", json={"name": name, "team": "load", "description": f"model {name}"}
        )
        if r.status_code == 409:
            continue
        r.raise_for_status()
        session.post(f"{stack.url}/api/v1/models/{name}/versions/", json={}).raise_for_status()
        session.put(
            f"{stack.url}/api/v1/models/{name}/versions/1/files/model.bin",
            data=os.urandom(64 * 1024),
            headers={"Content-Type": "application/octet-stream"},
        ).raise_for_status()
        session.post(f"{stack.url}/api/v1/models/{name}/versions/1/finalize").raise_for_status()
        session.put(f"{stack.url}/api/v1/models/{name}/aliases/champion", json={"version": 1})
        session.post(f"{stack.url}/api/v1/models/{name}/versions/", json={}).raise_for_status()  # v2 PENDING


def operation(rng: random.Random) -> tuple[str, str, str, dict]:
    """(kind, method, path, request kwargs) drawn from the 80/15/5 mix."""
    name = rng.choice(MODELS)
    roll = rng.random()
    if roll < 0.80:
        path = rng.choice(
            [
                "/api/v1/models/",
                f"/api/v1/models/?q={name[-2:]}",
                "/api/v1/models/?tag=load",
                f"/api/v1/models/{name}/",
                f"/api/v1/models/{name}/versions/",
                f"/api/v1/models/{name}/versions/1/",
                f"/api/v1/models/{name}/aliases/champion/files/",
                f"/api/v1/models/{name}/versions/1/checks",
                "/api/v1/lineage/exposure?package=numpy&specifier=<2",
            ]
        )
        return "read", "GET", path, {}
    if roll < 0.95:
        choice = rng.randrange(3)
        if choice == 0:
            return "write", "PATCH", f"/api/v1/models/{name}/", {"json": {"description": f"d{rng.random()}"}}
        if choice == 1:
            return "write", "PUT", f"/api/v1/models/{name}/tags/load", {"json": {"value": str(rng.random())}}
        return "write", "PATCH", f"/api/v1/models/{name}/versions/2/", {"json": {"description": "x"}}
    if rng.random() < 0.5:
        return "download", "GET", f"/api/v1/models/{name}/versions/1/files/model.bin", {}
    return (
        "upload",
        "PUT",
        f"/api/v1/models/{name}/versions/2/files/part-{rng.randrange(50)}.bin",
        {"data": os.urandom(16 * 1024), "headers": {"Content-Type": "application/octet-stream"}},
    )


def run_step(
    stack: Stack, rate: float, seconds: float, *, max_requests: int, sample_seconds: float = 0
) -> dict:
    """Send ``rate`` requests a second (open loop) for ``seconds``; latencies and errors.

    With ``sample_seconds``, every that many seconds print one line: requests so far, the p99 of
    that interval, errors so far and the resident memory of web and worker (a soak's time series:
    a plateau is warm-up, a steady climb is a leak).
    """
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    local = threading.local()
    done = threading.Event()

    def sample() -> None:
        seen = 0
        begin = time.perf_counter()
        print("| t (s) | requests | p99 of interval ms | errors | web MiB | worker MiB |")
        print("|---:|---:|---:|---:|---:|---:|")
        while not done.wait(sample_seconds):
            with lock:
                window = sorted(latencies[seen:])
                seen = len(latencies)
                failed = len(errors)
            p99 = window[min(len(window) - 1, int(0.99 * len(window)))] * 1000 if window else 0.0
            print(
                f"| {time.perf_counter() - begin:.0f} | {seen} | {p99:.0f} | {failed} | "
                f"{stack.rss('web') / 2**20:.0f} | {stack.rss('worker') / 2**20:.0f} |",
                flush=True,
            )

    if sample_seconds:
        threading.Thread(target=sample, daemon=True).start()

    def one(seed: int) -> None:
        if not hasattr(local, "session"):
            local.session = requests.Session()
            local.session.headers.update(stack.headers)
        kind, method, path, kwargs = operation(random.Random(seed))
        started = time.perf_counter()
        try:
            response = local.session.request(
                method, stack.url + path, timeout=30, allow_redirects=False, **kwargs
            )
            ok = response.status_code < 400
            detail = f"{kind} {method} {path} -> {response.status_code}"
        except requests.RequestException as exc:
            ok, detail = False, f"{kind} {method} {path} -> {type(exc).__name__}"
        elapsed = time.perf_counter() - started
        with lock:
            latencies.append(elapsed)
            if not ok:
                errors.append(detail)

    total = min(int(rate * seconds), max_requests)
    interval = 1.0 / rate
    with ThreadPoolExecutor(max_workers=64) as pool:
        begin = time.perf_counter()
        for i in range(total):
            delay = begin + i * interval - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(one, i * 7919 + int(rate))
    done.set()
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000 if ordered else 0.0

    return {
        "rate": rate,
        "requests": len(ordered),
        "errors": len(errors),
        "p50": pct(0.50),
        "p95": pct(0.95),
        "p99": pct(0.99),
        "mean": statistics.fmean(ordered) * 1000 if ordered else 0.0,
        "error_sample": errors[:5],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", default="10,20,40,60,80", help="requests/second, comma-separated")
    parser.add_argument("--step-seconds", type=float, default=60)
    parser.add_argument("--max-requests", type=int, default=100_000, help="per step, a safety bound")
    parser.add_argument(
        "--warmup-seconds", type=float, default=0, help="load at the first rate, untimed, before 'RSS before'"
    )
    parser.add_argument("--sample-seconds", type=float, default=0, help="print a time series (soak)")
    parser.add_argument("--workers", type=int, default=2, help="web server workers (4 threads each)")
    parser.add_argument(
        "--database-url",
        default="postgres://postgres@127.0.0.1:5432/modelyard_load",
        help="a scratch database: dropped and created again at the start",
    )
    parser.add_argument("--broker-url", default="redis://127.0.0.1:6379/9")
    args = parser.parse_args()
    for url in (args.database_url, args.broker_url):
        if urlsplit(url).hostname not in ("127.0.0.1", "localhost"):
            raise SystemExit(f"refusing a non-local service: {url}")
    _fresh_services(args.database_url, args.broker_url)
    with tempfile.TemporaryDirectory(prefix="modelyard-load-") as scratch:
        stack = Stack(
            Path(scratch),
            {
                "DATABASE_URL": args.database_url,
                "CELERY_BROKER_URL": args.broker_url,
                "DEBUG": "false",
                "SECRET_KEY": "bench-load-secret-key-" + "x" * 40,
                "LOG_LEVEL": "WARNING",
                "S3_BUCKET": "",
            },
            workers=args.workers,
        )
        try:
            stack.start(worker=True)  # inside the try: a failed start still stops what it started
            seed(stack)
            time.sleep(2)
            cold = {"web": stack.rss("web"), "worker": stack.rss("worker")}
            print(
                f"RSS before any load: web {cold['web'] / 2**20:.0f} MiB, "
                f"worker {cold['worker'] / 2**20:.0f} MiB"
            )
            if args.warmup_seconds:
                # Each server thread's first requests load modules, caches and connections: that
                # growth is not a leak, so the leak check starts from a warmed-up server.
                first = float(args.rates.split(",")[0])
                warm = run_step(stack, first, args.warmup_seconds, max_requests=args.max_requests)
                print(
                    f"warm-up: {warm['requests']} requests at {first:g} req/s, "
                    f"{warm['errors']} errors (not counted)"
                )
            before = {"web": stack.rss("web"), "worker": stack.rss("worker")}
            print(
                f"RSS before: web {before['web'] / 2**20:.0f} MiB, worker {before['worker'] / 2**20:.0f} MiB"
            )
            print("| rate (req/s) | requests | errors | p50 ms | p95 ms | p99 ms |")
            print("|---:|---:|---:|---:|---:|---:|")
            held = 0.0
            for rate in [float(r) for r in args.rates.split(",")]:
                result = run_step(
                    stack,
                    rate,
                    args.step_seconds,
                    max_requests=args.max_requests,
                    sample_seconds=args.sample_seconds,
                )
                print(
                    f"| {rate:g} | {result['requests']} | {result['errors']} | {result['p50']:.0f} | "
                    f"{result['p95']:.0f} | {result['p99']:.0f} |",
                    flush=True,
                )
                if result["errors"] or result["p99"] >= 200:
                    if result["error_sample"]:
                        print("errors, e.g.:", result["error_sample"])
                    break
                held = rate
            after = {"web": stack.rss("web"), "worker": stack.rss("worker")}
            print(f"RSS after: web {after['web'] / 2**20:.0f} MiB, worker {after['worker'] / 2**20:.0f} MiB")
            for name in before:
                print(f"  {name}: {100 * (after[name] - before[name]) / before[name]:+.1f}%")
            print(f"highest rate held (p99 < 200 ms, no errors): {held:g} req/s")
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
