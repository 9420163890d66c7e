"""`python -m deployments_app.runtime`: load the model, bind, announce the port, serve until SIGTERM."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from . import __version__
from .errors import EXIT_BIND_FAILED, EXIT_OK, ModelLoadError
from .metrics import Metrics


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m deployments_app.runtime",
        description="Serve one model with the Open Inference Protocol v2 and MLflow's scoring protocol.",
    )
    p.add_argument("--model-dir", required=True, help="directory (or single file) holding the model")
    p.add_argument("--name", required=True, help="model name used in /v2/models/{name}")
    p.add_argument("--model-version", default="1", help="version reported in v2 metadata (default: 1)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port to bind; 0 picks a free one (default: 8080)")
    p.add_argument("--port-file", help="write the bound port here (atomically) once the model is loaded")
    p.add_argument(
        "--allow-pickle",
        action="store_true",
        help="allow formats that run code when loaded (pickle, joblib, cloudpickled MLflow flavors, "
        "skops types outside scikit-learn/NumPy/SciPy); the registry passes it only when the "
        "version's security_scan check passed or an admin allowed it",
    )
    p.add_argument("--access-log", action="store_true", help="log every request to stderr")
    p.add_argument("--max-body-mib", type=int, default=64, help="largest request body accepted (default: 64)")
    p.add_argument("--version", action="version", version=f"modelyard-runtime {__version__}")
    return p.parse_args(argv)


def _write_port_file(path: str, port: int) -> None:
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(f"{port}\n")
    os.replace(tmp, target)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("modelyard.runtime")
    started = time.perf_counter()

    from .formats import load

    try:
        model = load(
            args.model_dir, name=args.name, version=args.model_version, allow_pickle=args.allow_pickle
        )
    except ModelLoadError as exc:
        kind = "refused" if exc.exit_code == 3 else "load_failed"
        print(f"modelyard-runtime: {kind}: {exc}", file=sys.stderr)
        print(json.dumps({"event": kind, "error": str(exc), "exit_code": exc.exit_code}), flush=True)
        return exc.exit_code
    load_seconds = time.perf_counter() - started

    from .server import RuntimeServer

    metrics = Metrics()
    metrics.load_seconds = load_seconds
    metrics.model_labels = {
        "name": model.name,
        "version": model.version,
        "format": model.format,
        "platform": model.platform,
    }
    try:
        server = RuntimeServer(
            (args.host, args.port),
            model,
            metrics=metrics,
            access_log=args.access_log,
            max_body_bytes=args.max_body_mib * 1024 * 1024,
        )
    except OSError as exc:
        print(f"modelyard-runtime: cannot bind {args.host}:{args.port}: {exc}", file=sys.stderr)
        print(
            json.dumps({"event": "bind_failed", "error": str(exc), "exit_code": EXIT_BIND_FAILED}), flush=True
        )
        return EXIT_BIND_FAILED
    host, port = server.server_address[:2]
    metrics.ready = True
    if args.port_file:
        _write_port_file(args.port_file, port)

    def stop(signum: int, frame: object) -> None:
        log.info("signal %s: shutting down", signum)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    url_host = f"[{host}]" if ":" in host else host
    ready = {
        "event": "ready",
        "url": f"http://{url_host}:{port}",
        "port": port,
        "model": model.name,
        "version": model.version,
        "format": model.format,
        "source": model.source,
        "load_seconds": round(load_seconds, 3),
    }
    print(json.dumps(ready), flush=True)
    log.info(
        "serving %s (%s from %s) on http://%s:%s", model.name, model.format, model.source, url_host, port
    )
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()
    return EXIT_OK
