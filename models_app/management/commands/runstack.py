"""``manage.py runstack``: serve the web app (Granian, ``registry_project.webserver``) and a Celery
worker together.

What ``make run`` starts. Ctrl-C (SIGINT) or SIGTERM stops both; if either exits, the other
is stopped too, so a half-running registry never lingers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from django.core.management.base import BaseCommand

from registry_project import webserver


class Command(BaseCommand):
    help = "Run the web server and a Celery worker until interrupted."

    def add_arguments(self, parser):
        # Defaults (MODELYARD_BIND, WEB_CONCURRENCY) are the web server's: registry_project.webserver.
        parser.add_argument("--bind", help="host:port to serve on")
        parser.add_argument("--workers", help="web server worker processes")
        parser.add_argument("--no-worker", action="store_true", help="Serve the web app only.")

    def handle(self, *args, **options):
        python = sys.executable
        commands = {
            "web": webserver.command(bind=options["bind"], workers=options["workers"]),
        }
        if not options["no_worker"]:
            commands["worker"] = [
                python,
                "-m",
                "celery",
                "-A",
                "registry_project",
                "worker",
                "--loglevel",
                "INFO",
                "--concurrency",
                os.environ.get("CELERY_CONCURRENCY", "2"),
                "--queues",
                "celery,deployments",
                "-B" if os.environ.get("CELERY_EMBED_BEAT", "1") == "1" else "",
            ]
            commands["worker"] = [part for part in commands["worker"] if part]
        processes = {name: subprocess.Popen(cmd) for name, cmd in commands.items()}  # noqa: S603
        host = webserver.bind_address(options["bind"])
        self.stdout.write(self.style.SUCCESS(f"Modelyard is starting on http://{host}/  (Ctrl-C stops it)"))

        stopping = False

        def stop(*_args) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            while not stopping and all(p.poll() is None for p in processes.values()):
                time.sleep(0.3)
        finally:
            for proc in processes.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 20
            for proc in processes.values():
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
        failed = [name for name, p in processes.items() if p.returncode not in (0, -signal.SIGTERM, None)]
        if failed and not stopping:
            self.stderr.write(f"Stopped because {', '.join(failed)} exited.")
            sys.exit(1)
