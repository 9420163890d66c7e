"""Artifact transfer benchmark: upload and download a large file through the Modelyard API.

    .venv/bin/python bench/artifacts.py --size-mib 1024 [--mlflow /path/to/venv/bin/mlflow]

Reports MB/s for: the folder store (PUT streamed / GET streamed), S3 through moto's server with the
direct path (presigned multipart parts up, presigned redirect down), beside `cp` and `cp`+fsync of
the same file on the same disk in the same run, and MLflow's artifact proxy when ``--mlflow`` is
given. Also the web server's peak RSS growth during transfers and the idle RSS of web + worker.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _stack import Stack, free_port, rss_of_tree

MiB = 1024 * 1024


class PeakRss:
    """Samples a process tree's RSS every 20 ms while active."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self.baseline = rss_of_tree(pid)

    def __enter__(self) -> PeakRss:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_of_tree(self.pid))
            time.sleep(0.02)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth_mib(self) -> float:
        return max(0, self.peak - self.baseline) / MiB


def make_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        left = size
        while left:
            chunk = os.urandom(min(8 * MiB, left))
            digest.update(chunk)
            out.write(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def drop_file(path: Path) -> None:
    path.unlink(missing_ok=True)


def cp_baselines(src: Path, work: Path) -> tuple[float, float]:
    dst = work / "cp.bin"
    t_cp = timed(lambda: subprocess.run(["cp", str(src), str(dst)], check=True))
    drop_file(dst)

    def cp_fsync() -> None:
        subprocess.run(["cp", str(src), str(dst)], check=True)
        fd = os.open(dst, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)

    t_fsync = timed(cp_fsync)
    drop_file(dst)
    return t_cp, t_fsync


def put_file(url: str, path: Path, headers: dict) -> None:
    """PUT a file with ``sendfile`` (zero-copy), so the client takes as little CPU as it can.

    On a 2-core machine the client shares the cores with the server under test; requests and
    http.client write 8 KiB at a time, which measures the client rather than the server.
    """
    parts = urlsplit(url)
    size = path.stat().st_size
    with socket.create_connection((parts.hostname, parts.port), timeout=900) as sock:
        head = [
            f"PUT {parts.path} HTTP/1.1",
            f"Host: {parts.hostname}:{parts.port}",
            f"Content-Length: {size}",
            "Content-Type: application/octet-stream",
            "Connection: close",
        ]
        head += [f"{k}: {v}" for k, v in headers.items()]
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        with open(path, "rb") as fh:
            sock.sendfile(fh)
        response = http.client.HTTPResponse(sock)
        response.begin()
        body = response.read()
    if response.status >= 300:
        raise RuntimeError(f"PUT {url}: {response.status} {body[:200]!r}")


def download(url: str, headers: dict, target: Path) -> None:
    with requests.get(url, headers=headers, stream=True, timeout=600) as response:
        response.raise_for_status()
        with open(target, "wb") as out:
            for chunk in response.iter_content(MiB):
                out.write(chunk)


def new_version(stack: Stack, name: str) -> str:
    requests.post(
        f"{stack.url}/api/v1/models/", json={"name": name, "team": "bench"}, headers=stack.headers, timeout=30
    ).raise_for_status()
    version = requests.post(
        f"{stack.url}/api/v1/models/{name}/versions/", json={}, headers=stack.headers, timeout=30
    )
    version.raise_for_status()
    return f"{stack.url}/api/v1/models/{name}/versions/{version.json()['version']}"


def bench_folder(src: Path, sha: str, size: int, work: Path) -> dict:
    stack = Stack(work / "folder-var").start(worker=True)
    try:
        time.sleep(3)
        idle = stack.rss("web") + stack.rss("worker")
        stack.manage("shell", "-c", _TEAM_SETUP)
        base = new_version(stack, "bench-folder")
        with PeakRss(stack.processes["web"].pid) as up_mem:
            t_up = timed(
                lambda: put_file(f"{base}/files/big.bin", src, {**stack.headers, "X-Content-SHA256": sha})
            )
        with PeakRss(stack.processes["web"].pid) as down_mem:
            t_down = timed(lambda: download(f"{base}/files/big.bin", stack.headers, work / "down.bin"))
        assert (
            hashlib.sha256((work / "down.bin").read_bytes()).hexdigest() == sha
            if size <= 2048 * MiB
            else True
        )
        drop_file(work / "down.bin")
        return {
            "up": t_up,
            "down": t_down,
            "up_mem": up_mem.growth_mib,
            "down_mem": down_mem.growth_mib,
            "idle_mib": idle / MiB,
        }
    finally:
        stack.stop()


_TEAM_SETUP = (
    "from django.contrib.auth.models import Group, User; from models_app.models import TeamMembership; "
    "t, _ = Group.objects.get_or_create(name='bench'); "
    "u = User.objects.get(username='admin'); "
    "TeamMembership.objects.get_or_create(team=t, user=u, role='contributor')"
)


def bench_s3(src: Path, sha: str, size: int, work: Path) -> dict:
    from moto.server import ThreadedMotoServer

    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{port}"
    import boto3

    boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    ).create_bucket(Bucket="bench")
    env = {
        "S3_BUCKET": "bench",
        "S3_ENDPOINT_URL": endpoint,
        "S3_REGION": "us-east-1",
        "S3_ACCESS_KEY_ID": "x",
        "S3_SECRET_ACCESS_KEY": "x",
        "S3_ADDRESSING_STYLE": "path",
    }
    stack = Stack(work / "s3-var", env).start()
    try:
        stack.manage("shell", "-c", _TEAM_SETUP)
        base = new_version(stack, "bench-s3")
        part_size = 64 * MiB

        def upload() -> None:
            begin = requests.post(
                f"{base}/files/big.bin/multipart",
                json={"size": size, "sha256": sha, "part_size": part_size},
                headers=stack.headers,
                timeout=60,
            )
            begin.raise_for_status()
            body = begin.json()

            def put_part(part: dict) -> None:
                with open(src, "rb") as fh:
                    fh.seek((part["part_number"] - 1) * body["part_size"])
                    data = fh.read(body["part_size"])
                requests.put(part["url"], data=data, timeout=600).raise_for_status()

            with ThreadPoolExecutor(4) as pool:
                list(pool.map(put_part, body["parts"]))
            requests.post(body["complete_url"], headers=stack.headers, timeout=600).raise_for_status()

        with PeakRss(stack.processes["web"].pid) as up_mem:
            t_up = timed(upload)
        with PeakRss(stack.processes["web"].pid) as down_mem:
            t_down = timed(lambda: download(f"{base}/files/big.bin", stack.headers, work / "down.bin"))
        drop_file(work / "down.bin")
        return {"up": t_up, "down": t_down, "up_mem": up_mem.growth_mib, "down_mem": down_mem.growth_mib}
    finally:
        stack.stop()
        moto.stop()


def bench_mlflow(mlflow: str, src: Path, size: int, work: Path) -> dict:
    port = free_port()
    proc = subprocess.Popen(
        [
            mlflow,
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--serve-artifacts",
            "--backend-store-uri",
            f"sqlite:///{work}/mlflow.db",
            "--artifacts-destination",
            str(work / "mlflow-art"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/api/2.0/mlflow-artifacts/artifacts/bench/big.bin"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/health", timeout=1).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.5)
        time.sleep(2)
        idle = rss_of_tree(proc.pid)
        t_up = timed(lambda: put_file(url, src, {}))
        t_down = timed(lambda: download(url, {}, work / "down.bin"))
        drop_file(work / "down.bin")
        return {"up": t_up, "down": t_down, "idle_mib": idle / MiB}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--mlflow", help="path to an `mlflow` executable (its own venv) to measure the peer")
    parser.add_argument(
        "--dir", default=None, help="scratch folder on the disk to measure (default: a temp dir)"
    )
    args = parser.parse_args()
    size = args.size_mib * MiB
    work = Path(tempfile.mkdtemp(prefix="modelyard-bench-", dir=args.dir))
    try:
        src = work / "src.bin"
        print(f"Writing a {args.size_mib} MiB test file in {work} …", flush=True)
        sha = make_file(src, size)
        t_cp, t_fsync = cp_baselines(src, work)
        rate = lambda seconds: size / MiB / seconds  # noqa: E731
        rows = [("cp", rate(t_cp), ""), ("cp + fsync", rate(t_fsync), "")]
        folder = bench_folder(src, sha, size, work)
        rows += [
            ("Modelyard folder upload (PUT)", rate(folder["up"]), f"web RSS +{folder['up_mem']:.0f} MiB"),
            (
                "Modelyard folder download (GET)",
                rate(folder["down"]),
                f"web RSS +{folder['down_mem']:.0f} MiB",
            ),
        ]
        s3 = bench_s3(src, sha, size, work)
        rows += [
            (
                "Modelyard S3 upload (presigned parts, moto)",
                rate(s3["up"]),
                f"web RSS +{s3['up_mem']:.0f} MiB",
            ),
            (
                "Modelyard S3 download (302 to presigned)",
                rate(s3["down"]),
                f"web RSS +{s3['down_mem']:.0f} MiB",
            ),
        ]
        peer = bench_mlflow(args.mlflow, src, size, work) if args.mlflow else None
        if peer:
            rows += [
                ("MLflow proxy upload", rate(peer["up"]), ""),
                ("MLflow proxy download", rate(peer["down"]), ""),
            ]
        print(f"\n{'transfer of ' + str(args.size_mib) + ' MiB':46} {'MB/s':>8}  notes")
        for name, mbps, note in rows:
            print(f"{name:46} {mbps * MiB / 1e6:8.0f}  {note}")
        print(
            f"\nidle RSS, Modelyard web (2 Granian workers) + 1 Celery worker: {folder['idle_mib']:.0f} MiB"
        )
        if peer:
            print(f"idle RSS, mlflow server: {peer['idle_mib']:.0f} MiB")
            for label, ours, theirs in (
                ("upload", folder["up"], peer["up"]),
                ("download", folder["down"], peer["down"]),
            ):
                print(f"folder {label}: {theirs / ours:.1f}x MLflow's proxy")
        for label, seconds in (("upload", folder["up"]), ("download", folder["down"])):
            print(f"folder {label}: {100 * t_fsync / seconds:.0f}% of cp+fsync")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
