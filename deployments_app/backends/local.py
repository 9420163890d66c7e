"""The ``local`` target: the serving runtime as a process on 127.0.0.1, in the registry's env.

The embedded default that ``make run`` uses. The process gets its own session (it outlives the
worker child that started it) and writes its bound port to a file, so no port is ever guessed.
Its pid is the instance id; its output goes to ``runtime.log`` in the generation's folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings

from deployments_app.backends import DeployError, Instance, LaunchSpec, LogFn

# Variables of the registry's own environment the runtime may see; secrets (DATABASE_URL,
# SECRET_KEY, S3 keys …) stay out.
_PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "VIRTUAL_ENV", "PYTHONPATH", "TMPDIR")


def _proc_state(pid: int) -> str | None:
    """The kernel's one-letter state of ``pid`` (``Z`` for a zombie), or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return stat.rsplit(")", 1)[-1].split()[0]


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


class LocalBackend:
    """Runs ``python -m deployments_app.runtime`` with the registry's interpreter."""

    name = "local"

    def build(self, spec: LaunchSpec, log: LogFn) -> str:
        log(f"local target: serving {spec.model_dir} with {sys.executable} (no image to build)")
        return ""

    def _pid_file(self, spec: LaunchSpec) -> Path:
        return spec.work_dir / "runtime.pid"

    def start(self, spec: LaunchSpec, image: str, log: LogFn) -> Instance:
        pid_file = self._pid_file(spec)
        if pid_file.exists():  # a redelivered task: replace what the first attempt started
            with contextlib.suppress(ValueError):
                self.stop(pid_file.read_text().strip())
        port_file = spec.work_dir / "runtime.port"
        port_file.unlink(missing_ok=True)
        command = [
            sys.executable,
            "-m",
            "deployments_app.runtime",
            "--model-dir",
            str(spec.model_dir),
            "--name",
            spec.name,
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--port-file",
            str(port_file),
            "--model-version",
            str(spec.version),
        ]
        if spec.allow_pickle:
            command.append("--allow-pickle")
        env = {key: os.environ[key] for key in _PASSED_ENV if key in os.environ}
        env.update(spec.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        log("starting: " + " ".join(command[2:]))
        with open(spec.work_dir / "runtime.log", "ab") as out:
            proc = subprocess.Popen(  # noqa: S603 - our own module, arguments built here
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=settings.BASE_DIR,
                env=env,
                start_new_session=True,  # outlives the worker child; killed by process group
            )
        pid_file.write_text(str(proc.pid))
        deadline = time.monotonic() + settings.MODELYARD_DEPLOY_READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = "\n".join(self._tail(spec.work_dir / "runtime.log", 20))
                raise DeployError(f"the runtime exited with code {proc.returncode}:\n{tail}")
            text = port_file.read_text().strip() if port_file.exists() else ""
            if text.isdigit():
                return Instance(instance_id=str(proc.pid), endpoint_url=f"http://127.0.0.1:{int(text)}")
            time.sleep(0.05)
        self.stop(str(proc.pid))
        raise DeployError("the runtime did not bind a port in time")

    def is_alive(self, instance_id: str) -> bool:
        if not instance_id.isdigit():
            return False
        pid = int(instance_id)
        _reap(pid)
        state = _proc_state(pid)
        if state is None or state in ("Z", "X"):
            return False
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
        return b"deployments_app.runtime" in cmdline  # not a recycled pid

    def stop(self, instance_id: str) -> None:
        if not self.is_alive(instance_id):
            return
        pid = int(instance_id)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.is_alive(instance_id):
            time.sleep(0.05)
        if self.is_alive(instance_id):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            _reap(pid)

    @staticmethod
    def _tail(path: Path, lines: int) -> list[str]:
        try:
            with open(path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - 64 * 1024))
                return fh.read().decode("utf-8", "replace").splitlines()[-lines:]
        except FileNotFoundError:
            return []

    def logs(self, instance_id: str, tail: int = 50) -> list[str]:
        if not instance_id.isdigit():
            return []
        root = settings.MODELYARD_DEPLOY_DIR
        for pid_file in root.glob("*/g*/runtime.pid"):
            with contextlib.suppress(OSError):
                if pid_file.read_text().strip() == instance_id:
                    return self._tail(pid_file.parent / "runtime.log", tail)
        return []

    def cleanup(self, deployment_id: int, generations: int = 0) -> None:
        shutil.rmtree(settings.MODELYARD_DEPLOY_DIR / str(deployment_id), ignore_errors=True)


def ensure_stopped(pid: int) -> None:
    """Kill ``pid``'s process group (tests and cleanup of leftovers)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    _reap(pid)


__all__ = ["DeployError", "LocalBackend"]
