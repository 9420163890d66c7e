"""Helpers for benchmarks: start a real Modelyard (Granian, optional Celery worker) in a scratch folder.

Nothing here is imported by the application; benchmarks run by hand (see bench/README.md).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from registry_project import webserver  # the server flags of runstack and the image

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_of_tree(pid: int) -> int:
    """Resident memory (bytes) of ``pid`` and all its descendants, from /proc."""
    total = 0
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    stack = [pid]
    while stack:
        current = stack.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
        stack.extend(children.get(current, []))
    return total


class Stack:
    """A Modelyard web server (and optionally a worker) with its own var folder and environment."""

    def __init__(self, var_dir: Path, extra_env: dict[str, str] | None = None, workers: int = 2) -> None:
        self.var_dir = var_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "MODELYARD_VAR_DIR": str(var_dir),
            "MODELYARD_ADMIN_PASSWORD": "bench-pass-1",
        }
        self.env.update(extra_env or {})
        self.workers = workers
        self.processes: dict[str, subprocess.Popen] = {}
        self.token = ""

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [PYTHON, "manage.py", *args], cwd=ROOT, env=self.env, check=True, capture_output=True, text=True
        )
        return result.stdout.strip()

    def start(self, worker: bool = False) -> Stack:
        self.manage("migrate", "--noinput")
        self.manage("ensure_admin")
        self.token = self.manage("create_token", "admin", "--scopes", "read,write", "--name", "bench")
        self.processes["web"] = subprocess.Popen(
            webserver.command(
                bind=f"127.0.0.1:{self.port}", workers=str(self.workers), threads="4", access_log=False
            ),
            cwd=ROOT,
            env=self.env,
        )
        if worker:
            self.processes["worker"] = subprocess.Popen(
                [
                    PYTHON,
                    "-m",
                    "celery",
                    "-A",
                    "registry_project",
                    "worker",
                    "--loglevel",
                    "WARNING",
                    "--concurrency",
                    "1",
                ],
                cwd=ROOT,
                env=self.env,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:  # not listening yet, or too busy booting to answer
                time.sleep(0.2)
        raise RuntimeError("web server did not start")

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def rss(self, name: str = "web") -> int:
        return rss_of_tree(self.processes[name].pid)

    def stop(self) -> None:
        for proc in self.processes.values():
            proc.terminate()
        for proc in self.processes.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
