"""Serving benchmark: the Modelyard runtime beside in-process predict and `mlflow models serve`.

    python3.11 -m venv /tmp/mlflow-serve-venv
    /tmp/mlflow-serve-venv/bin/pip install 'mlflow>=3.17,<3.18' scikit-learn skops
    .venv/bin/python bench/serving.py --mlflow /tmp/mlflow-serve-venv/bin/mlflow [--seconds 15]
    .venv/bin/python bench/serving.py --registry --targets local,docker   # + deploy through the registry

One 20-feature LogisticRegression (trained here) for every row. Phases:

1. in-process `model.predict`, one NumPy row and one one-row DataFrame (the floor);
2. the runtime (`python -m deployments_app.runtime`, skops file) direct: launch → first prediction,
   then single-row latency p50/p99 and throughput at concurrency 1 and 8 (`--seconds` each), for the
   MLflow protocol and Open Inference Protocol v2; server CPU per request (from /proc) and RSS;
3. `mlflow models serve --env-manager local` on the same model (saved with `mlflow.sklearn` in its
   own venv), same payload, same client, same run;
4. with `--registry`: a real Modelyard (Granian + a Celery worker on the filesystem broker), the
   model registered through the API, `POST /api/v1/deployments/` → first successful prediction
   through `/api/v1/deployments/{id}/predict` for each target (`docker` twice: cold, then warm with
   the requirements layer cached), then latency through the registry proxy.

The client is a keep-alive raw-socket HTTP/1.1 client in separate processes (one connection per
process, so the client's own GIL is not what is measured); loops are bounded by time and count.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _stack import free_port, rss_of_tree

N_FEATURES = 20
CLK_TCK = os.sysconf("SC_CLK_TCK")
MAX_REQUESTS = 2_000_000


# -- a small keep-alive HTTP client ----------------------------------------------------------------------


class Client:
    """One keep-alive HTTP/1.1 connection; `request` sends prebuilt bytes, returns (status, body)."""

    def __init__(self, host: str, port: int, timeout: float = 30):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def request(self, raw: bytes) -> tuple[int, bytes]:
        self.sock.sendall(raw)
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buf += chunk
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length, chunked = None, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
            elif name.strip().lower() == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if chunked:
            self.buf = rest
            return status, self._chunked()
        if length is None:
            raise ConnectionError("response without Content-Length")
        while len(rest) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection mid-body")
            rest += chunk
        body, self.buf = rest[:length], rest[length:]
        return status, body

    def _read_line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection mid-body")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _chunked(self) -> bytes:
        parts = []
        while True:
            size = int(self._read_line().split(b";")[0], 16)
            if size == 0:
                while self._read_line():
                    pass
                return b"".join(parts)
            while len(self.buf) < size + 2:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("server closed the connection mid-body")
                self.buf += chunk
            parts.append(self.buf[:size])
            self.buf = self.buf[size + 2 :]

    def close(self) -> None:
        self.sock.close()


def build_request(
    host: str, port: int, path: str, body: bytes, headers: dict[str, str] | None = None
) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _worker(args: tuple) -> tuple[list[int], int, int]:
    host, port, raw, start_at, seconds, max_requests, warmup = args
    client = Client(host, port)
    errors = 0
    for _ in range(warmup):
        client.request(raw)
    while time.time() < start_at:
        time.sleep(0.0005)
    latencies: list[int] = []
    deadline = time.perf_counter() + seconds
    perf, append = time.perf_counter_ns, latencies.append
    while len(latencies) < max_requests:
        t0 = perf()
        status, _ = client.request(raw)
        append(perf() - t0)
        if status != 200:
            errors += 1
        if t0 > deadline * 1e9:
            break
    client.close()
    return latencies, errors, warmup


def cpu_seconds_of_tree(pid: int) -> float:
    """User + system CPU of `pid` and its descendants (live ones) from /proc, in seconds."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except OSError:
            pass
        stack.extend(children.get(current, []))
    return total / CLK_TCK


def load(host: str, port: int, raw: bytes, concurrency: int, seconds: float, server_pid: int | None) -> dict:
    """Run `concurrency` client processes for `seconds`; latency percentiles, throughput, server CPU."""
    start_at = time.time() + 1.0 + 0.05 * concurrency
    args = [(host, port, raw, start_at, seconds, MAX_REQUESTS, 20)] * concurrency
    cpu0 = cpu_seconds_of_tree(server_pid) if server_pid else 0.0
    with mp.get_context("fork").Pool(concurrency) as pool:
        results = pool.map(_worker, args)
    cpu1 = cpu_seconds_of_tree(server_pid) if server_pid else 0.0
    latencies = sorted(x for r in results for x in r[0])
    errors = sum(r[1] for r in results)
    total = len(latencies) + sum(r[2] for r in results)
    n = len(latencies)
    return {
        "concurrency": concurrency,
        "requests": n,
        "errors": errors,
        "p50_ms": latencies[n // 2] / 1e6,
        "p99_ms": latencies[min(n - 1, int(n * 0.99))] / 1e6,
        "rps": n / seconds,
        "cpu_ms_per_request": (cpu1 - cpu0) * 1000 / total if server_pid else None,
    }


# -- the model ------------------------------------------------------------------------------------------


def train(workdir: Path):
    import numpy as np
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(42)
    X = rng.normal(size=(2000, N_FEATURES))
    y = (X @ rng.normal(size=N_FEATURES) > 0).astype(int)
    model = LogisticRegression(max_iter=1000).fit(X, y)
    (workdir / "skops").mkdir()
    sio.dump(model, workdir / "skops" / "model.skops")
    return model, X


def in_process(model, X) -> dict:
    import pandas as pd

    row = X[:1]
    frame = pd.DataFrame(row, columns=[f"x{i}" for i in range(N_FEATURES)])
    model_df = type(model)(max_iter=1000).fit(pd.DataFrame(X, columns=frame.columns), model.predict(X))

    def timed(fn, n=3000):
        for _ in range(200):
            fn()
        samples = []
        for _ in range(n):
            t0 = time.perf_counter_ns()
            fn()
            samples.append(time.perf_counter_ns() - t0)
        return statistics.median(samples) / 1e6

    return {
        "numpy_row_ms": timed(lambda: model.predict(row)),
        "dataframe_row_ms": timed(lambda: model_df.predict(frame)),
    }


def wait_first_prediction(
    port: int, raw: bytes, proc: subprocess.Popen, started: float, timeout: float = 120
) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            client = Client("127.0.0.1", port, timeout=5)
            try:
                status, _ = client.request(raw)
            finally:
                client.close()
            if status == 200:
                return time.perf_counter() - started
        except OSError:
            pass
        time.sleep(0.01)
    raise RuntimeError("no successful prediction before the timeout")


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group (mlflow execs uvicorn in a child), SIGKILL after 20 s."""
    import signal

    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            proc.poll()
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            continue
        break
    proc.wait(5)


def bench_server(
    label: str, cmd: list[str], port: int, payloads: dict[str, tuple[str, bytes]], args, env=None
):
    """Launch `args.launches` times (timing each to the first prediction), load-test the last one."""
    rows = []
    log_path = Path(tempfile.gettempdir()) / f"bench-serving-{label.replace(' ', '-')}.log"
    first_path, first_body = next(iter(payloads.values()))
    first = build_request("127.0.0.1", port, first_path, first_body)
    walls, cpus = [], []
    for attempt in range(args.launches):
        log_file = open(log_path, "wb")  # noqa: SIM115 - closed below
        started = time.perf_counter()
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        try:
            walls.append(wait_first_prediction(port, first, proc, started))
            cpus.append(cpu_seconds_of_tree(proc.pid))  # CPU spent to get there: less load-dependent
            if attempt < args.launches - 1:
                continue
            rss_idle = rss_of_tree(proc.pid)
            for proto, (path, body) in payloads.items():
                raw = build_request("127.0.0.1", port, path, body)
                for c in (1, 8):
                    result = load("127.0.0.1", port, raw, c, args.seconds, proc.pid)
                    result.update(server=label, protocol=proto)
                    rows.append(result)
                    print(json.dumps(result), flush=True)
            rss_after = rss_of_tree(proc.pid)
        except RuntimeError:
            print(
                f"{label} failed; its output ({log_path}):\n" + log_path.read_text(errors="replace")[-3000:]
            )
            raise
        finally:
            stop(proc)
            log_file.close()
    summary = {
        "server": label,
        "launch_to_first_prediction_s": statistics.median(walls),
        "launch_min_s": min(walls),
        "launch_cpu_s": statistics.median(cpus),
        "launches": walls,
        "rss_idle_mib": rss_idle / 2**20,
        "rss_after_mib": rss_after / 2**20,
    }
    return summary, rows


def mlflow_model_dir(mlflow_bin: str, workdir: Path) -> Path:
    python = str(Path(mlflow_bin).with_name("python"))
    target = workdir / "mlflow-model"
    script = (
        "import sys, skops.io as sio, mlflow.sklearn\n"
        "p = sys.argv[1]\n"
        "m = sio.load(p, trusted=sio.get_untrusted_types(file=p))\n"
        "mlflow.sklearn.save_model(m, sys.argv[2])\n"
    )
    subprocess.run([python, "-c", script, str(workdir / "skops" / "model.skops"), str(target)], check=True)
    return target


# -- through the registry -------------------------------------------------------------------------------


def deploy_once(
    args, stack, api: str, number: int, name: str, target: str, row_body: bytes, proxy: bool
) -> dict:
    """POST a deployment, poll the proxy until a prediction succeeds; optionally load-test the proxy."""
    import requests

    h = stack.headers
    body = {"name": name, "model": "bench-lr", "version": number, "target": target}
    t0 = time.perf_counter()
    r = requests.post(f"{api}/deployments/", json=body, headers=h, timeout=60)
    if r.status_code != 202:
        raise RuntimeError(f"POST /deployments/ → {r.status_code}: {r.text[:300]}")
    dep = r.json()
    predict = f"{api}/deployments/{dep['id']}/predict"
    deadline = time.monotonic() + args.deploy_timeout
    status = "queued"
    try:
        while time.monotonic() < deadline:
            p = requests.post(
                predict, data=row_body, headers={**h, "Content-Type": "application/json"}, timeout=30
            )
            if p.status_code == 200:
                break
            detail = requests.get(f"{api}/deployments/{dep['id']}/", headers=h, timeout=30).json()
            status = detail.get("status")
            if status == "failed":
                raise RuntimeError(f"deployment {target} failed: {json.dumps(detail)[:800]}")
            time.sleep(0.05)
        else:
            raise RuntimeError(f"deployment {target} not serving after {args.deploy_timeout}s ({status})")
        row = {"target": target, "post_to_first_prediction_s": time.perf_counter() - t0}
        if proxy:
            path = f"/api/v1/deployments/{dep['id']}/predict"
            raw = build_request(
                "127.0.0.1", stack.port, path, row_body, {"Authorization": f"Bearer {stack.token}"}
            )
            for c in (1, 8):
                row[f"proxy_c{c}"] = load(
                    "127.0.0.1", stack.port, raw, c, args.seconds, stack.processes["web"].pid
                )
        return row
    finally:
        requests.delete(f"{api}/deployments/{dep['id']}/", headers=h, timeout=60)


def registry_phase(args, workdir: Path, row_body: bytes) -> list[dict]:
    """Deploy the same model through a real Modelyard and time it; needs the deployments API."""
    import requests
    from _stack import Stack

    var = workdir / "registry-var"
    env = {"CELERY_BROKER_URL": "filesystem://", "DATABASE_URL": f"sqlite:///{var}/bench.sqlite3"}
    if args.docker_host:
        env["DOCKER_HOST"] = args.docker_host
    if args.base_image:
        env["MODELYARD_DEPLOY_BASE_IMAGE"] = args.base_image
    if args.ca_bundle:
        env["MODELYARD_BUILD_CA_BUNDLE"] = args.ca_bundle  # pip inside the image build trusts it
    var.mkdir()
    stack = Stack(var, env)
    results = []
    try:
        stack.start()
        # Deployment tasks go to the "deployments" queue (CELERY_TASK_ROUTES).
        worker = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "registry_project",
            "worker",
            "-Q",
            "deployments,celery",
        ]
        worker += ["--concurrency", "2", "--loglevel", "WARNING"]
        stack.processes["worker"] = subprocess.Popen(worker, cwd=ROOT, env=stack.env)
        stack.manage("create_user", "bench-deployer", "--team", "bench", "--role", "deployer")
        stack.token = stack.manage(
            "create_token", "admin", "--scopes", "read,write,predict", "--name", "predict"
        )
        h = stack.headers
        api = f"{stack.url}/api/v1"
        r = requests.post(f"{api}/models/", json={"name": "bench-lr", "team": "bench"}, headers=h, timeout=30)
        r.raise_for_status()
        r = requests.post(f"{api}/models/bench-lr/versions/", json={}, headers=h, timeout=30)
        r.raise_for_status()
        number = r.json()["version"]
        data = (workdir / "skops" / "model.skops").read_bytes()
        url = f"{api}/models/bench-lr/versions/{number}/files/model.skops"
        requests.put(url, data=data, headers=h, timeout=60).raise_for_status()
        requests.post(
            f"{api}/models/bench-lr/versions/{number}/finalize", headers=h, timeout=60
        ).raise_for_status()
        runs = []
        for target in args.targets.split(","):
            runs += [(target, "cold"), (target, "warm")] if target == "docker" else [(target, "")]
        measured_proxy = False
        for i, (target, note) in enumerate(runs):
            try:
                row = deploy_once(
                    args, stack, api, number, f"bench-{target}-{i}", target, row_body, not measured_proxy
                )
            except (RuntimeError, OSError, ValueError) as exc:
                row = {"target": target, "note": note, "error": str(exc)}
            row["note"] = note
            measured_proxy = measured_proxy or "proxy_c1" in row
            results.append(row)
            print(json.dumps(row), flush=True)
    finally:
        stack.stop()
    return results


# -- main -----------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=15.0, help="duration of each load phase")
    parser.add_argument("--launches", type=int, default=3, help="launches timed per server (median kept)")
    parser.add_argument("--mlflow", help="path to the mlflow CLI of a venv with mlflow 3.17 (skip if absent)")
    parser.add_argument("--registry", action="store_true", help="also deploy through a real Modelyard")
    parser.add_argument("--targets", default="local", help="registry targets, comma-separated: local,docker")
    parser.add_argument(
        "--docker-host", default=os.environ.get("DOCKER_HOST", ""), help="for the docker target"
    )
    parser.add_argument("--base-image", help="MODELYARD_DEPLOY_BASE_IMAGE for the docker target")
    parser.add_argument(
        "--ca-bundle",
        default=os.environ.get("MODELYARD_BUILD_CA_BUNDLE")
        or next((p for p in ("/etc/ssl/certs/ca-certificates.crt",) if os.path.exists(p)), ""),
        help="CA bundle for pip inside docker builds (MODELYARD_BUILD_CA_BUNDLE)",
    )
    parser.add_argument("--deploy-timeout", type=float, default=900.0)
    parser.add_argument("--json", help="write all results to this file")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="modelyard-bench-serving-"))
    report: dict = {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(), "seconds": args.seconds}
    try:
        model, X = train(workdir)
        report["in_process"] = in_process(model, X)
        print(json.dumps(report["in_process"]), flush=True)
        row = X[:1].tolist()
        cols = [f"x{i}" for i in range(N_FEATURES)]
        split = json.dumps({"dataframe_split": {"columns": cols, "data": row}}).encode()
        v2 = json.dumps(
            {"inputs": [{"name": "input-0", "shape": [1, N_FEATURES], "datatype": "FP64", "data": row[0]}]}
        ).encode()

        port = free_port()
        cmd = [sys.executable, "-m", "deployments_app.runtime", "--model-dir", str(workdir / "skops")]
        cmd += ["--name", "lr", "--host", "127.0.0.1", "--port", str(port)]
        payloads = {
            "mlflow dataframe_split": ("/invocations", split),
            "v2 infer": ("/v2/models/lr/infer", v2),
        }
        summary, rows = bench_server("modelyard runtime", cmd, port, payloads, args)
        report["servers"] = [summary]
        report["load"] = rows
        print(json.dumps(summary), flush=True)

        if args.mlflow:
            mdir = mlflow_model_dir(args.mlflow, workdir)
            port = free_port()
            cmd = [args.mlflow, "models", "serve", "-m", str(mdir), "--env-manager", "local"]
            cmd += ["-h", "127.0.0.1", "-p", str(port)]
            env = {**os.environ, "MLFLOW_TRACKING_URI": f"file://{workdir}/mlruns"}
            env["PATH"] = f"{Path(args.mlflow).parent}:{env.get('PATH', '')}"  # it execs its venv's uvicorn
            summary, rows = bench_server(
                "mlflow models serve",
                cmd,
                port,
                {"mlflow dataframe_split": ("/invocations", split)},
                args,
                env,
            )
            report["servers"].append(summary)
            report["load"] += rows
            print(json.dumps(summary), flush=True)

        if args.registry:
            report["registry"] = registry_phase(args, workdir, split)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    print_tables(report)


def print_tables(report: dict) -> None:
    ip = report["in_process"]
    print(
        f"\nin-process predict: NumPy row {ip['numpy_row_ms']:.3f} ms, "
        f"one-row DataFrame {ip['dataframe_row_ms']:.3f} ms"
    )
    print("\n| server | protocol | concurrency | p50 ms | p99 ms | req/s | server CPU ms/req | errors |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in report["load"]:
        cpu = f"{r['cpu_ms_per_request']:.2f}" if r["cpu_ms_per_request"] is not None else "-"
        print(
            f"| {r['server']} | {r['protocol']} | {r['concurrency']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
            f"| {r['rps']:,.0f} | {cpu} | {r['errors']} |"
        )
    print("\n| server | launch → first prediction s (median, min) | CPU s | RSS idle MiB | after load |")
    print("|---|---:|---:|---:|---:|")
    for s in report["servers"]:
        print(
            f"| {s['server']} | {s['launch_to_first_prediction_s']:.2f}, {s['launch_min_s']:.2f} "
            f"| {s['launch_cpu_s']:.2f} | {s['rss_idle_mib']:.0f} "
            f"| {s['rss_after_mib']:.0f} |"
        )
    for r in report.get("registry", []):
        if "error" in r:
            print(f"\nregistry {r['target']} {r['note']}: FAILED {r['error'][:500]}")
            continue
        line = f"\nregistry {r['target']} {r['note']}: POST → first prediction "
        line += f"{r['post_to_first_prediction_s']:.2f} s"
        for c in (1, 8):
            if f"proxy_c{c}" in r:
                p = r[f"proxy_c{c}"]
                line += (
                    f"; proxy c{c} p50 {p['p50_ms']:.2f} ms p99 {p['p99_ms']:.2f} ms {p['rps']:,.0f} req/s"
                )
        print(line)


if __name__ == "__main__":
    main()
