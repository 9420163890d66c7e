"""The HTTP server: stdlib `ThreadingHTTPServer`, HTTP/1.1 keep-alive, TCP_NODELAY, one write per response.

A thread per connection keeps a slow prediction from blocking other clients without an executor
hop on the hot path. Responses are written with a single `send`, and Nagle is off on every accepted
socket, so a keep-alive client never waits on a delayed ACK (the ~40 ms stall of servers that write
headers and body separately with Nagle on).
"""

from __future__ import annotations

import json
import logging
import re
import socket
import sys
import time
import traceback
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from . import __version__
from .errors import InputError
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .metrics import Metrics
from .protocols import mlflow_error, mlflow_parse, mlflow_response, v2_parse, v2_response
from .served import ServedModel

log = logging.getLogger("modelyard.runtime")

JSON = "application/json"
V2_MODEL = re.compile(
    r"^/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?(?P<rest>/ready|/infer)?/?$"
)
REASONS = {s.value: s.phrase for s in HTTPStatus}


class _Date:
    """The Date header, formatted once a second."""

    second = -1
    value = ""

    @classmethod
    def now(cls) -> str:
        t = int(time.time())
        if t != cls.second:
            cls.value, cls.second = formatdate(t, usegmt=True), t
        return cls.value


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


class RuntimeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = f"modelyard-runtime/{__version__}"
    timeout = 120  # idle keep-alive connections are closed after this many seconds
    server: RuntimeServer

    # -- plumbing -----------------------------------------------------------------------------------
    def log_message(self, format: str, *args: Any) -> None:
        if self.server.access_log:
            log.info("%s %s", self.address_string(), format % args)

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        if self.server.access_log:
            super().log_request(code, size)

    def _send(self, code: int, body: bytes, content_type: str = JSON) -> None:
        head = (
            f"HTTP/1.1 {code} {REASONS.get(code, '')}\r\n"
            f"Server: {self.server_version}\r\n"
            f"Date: {_Date.now()}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n"
        )
        if self.close_connection:
            head += "Connection: close\r\n"
        self.wfile.write(head.encode("latin-1") + b"\r\n" + body)
        self.log_request(code, len(body))

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # Malformed request lines/headers (BaseHTTPRequestHandler's own errors) answered as JSON.
        self.close_connection = True
        self._send(code, _dumps({"error": message or REASONS.get(code, "error")}))

    def _body(self) -> bytes | None:
        """The request body, or None after answering 411/413 (and closing the connection)."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._chunked()
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            n = int(length)
            if n < 0:
                raise ValueError
        except ValueError:
            self.send_error(400, "invalid Content-Length")
            return None
        if n > self.server.max_body_bytes:
            self.send_error(413, f"request body over {self.server.max_body_bytes} bytes")
            return None
        return self.rfile.read(n)

    def _chunked(self) -> bytes | None:
        parts, total = [], 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self.send_error(400, "invalid chunked encoding")
                return None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            total += size
            if total > self.server.max_body_bytes:
                self.send_error(413, f"request body over {self.server.max_body_bytes} bytes")
                return None
            parts.append(self.rfile.read(size))
            self.rfile.readline(8)

    # -- dispatch -----------------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_HEAD(self) -> None:
        self.close_connection = True
        self._send(405, _dumps({"error": "method not allowed"}))

    do_PUT = do_DELETE = do_PATCH = do_HEAD

    def _dispatch(self, method: str) -> None:
        started = time.perf_counter()
        path = self.path.split("?", 1)[0]
        protocol, endpoint, code = "other", "other", 500
        try:
            # Read the whole body first, whatever the route, so the keep-alive stream stays in step.
            body = self._body() if method == "POST" else b""
            if body is None:  # already answered 400/413, connection closing
                code = 413
                return
            protocol, endpoint, code, payload, ctype = self._route(method, path, body)
            self._send(code, payload, ctype)
        finally:
            self.server.metrics.observe(protocol, endpoint, code, time.perf_counter() - started)

    def _route(self, method: str, path: str, body: bytes) -> tuple[str, str, int, bytes, str]:
        server = self.server
        model = server.model
        if path.startswith("/v2"):
            if path in ("/v2/health/live", "/v2/health/ready"):
                endpoint = path.rsplit("/", 1)[1]
                if method != "GET":
                    return "v2", endpoint, 405, _dumps({"error": "use GET"}), JSON
                ok = endpoint == "live" or server.metrics.ready
                return "v2", endpoint, 200 if ok else 503, _dumps({} if ok else {"error": "not ready"}), JSON
            if path in ("/v2", "/v2/"):
                meta = {"name": "modelyard-runtime", "version": __version__, "extensions": []}
                return "v2", "server_metadata", 200, _dumps(meta), JSON
            m = V2_MODEL.match(path)
            if not m:
                return "v2", "other", 404, _dumps({"error": f"no such endpoint: {path}"}), JSON
            rest = m["rest"] or ""
            endpoint = {"": "metadata", "/ready": "model_ready", "/infer": "infer"}[rest]
            if m["name"] != model.name:
                return (
                    "v2",
                    endpoint,
                    404,
                    _dumps({"error": f"model '{m['name']}' not found (serving '{model.name}')"}),
                    JSON,
                )
            if m["version"] is not None and m["version"] != model.version:
                msg = f"model '{model.name}' version '{m['version']}' not found (serving '{model.version}')"
                return "v2", endpoint, 404, _dumps({"error": msg}), JSON
            if endpoint == "infer":
                if method != "POST":
                    return "v2", endpoint, 405, _dumps({"error": "use POST"}), JSON
                code, payload = self._v2_infer(body)
                return "v2", endpoint, code, _dumps(payload), JSON
            if method != "GET":
                return "v2", endpoint, 405, _dumps({"error": "use GET"}), JSON
            if endpoint == "model_ready":
                return "v2", endpoint, 200, b"{}", JSON
            return "v2", endpoint, 200, _dumps(self.server.metadata()), JSON
        if path == "/invocations":
            if method != "POST":
                return "mlflow", "invocations", 405, _dumps(mlflow_error("use POST")), JSON
            code, payload = self._mlflow_invoke(body)
            return "mlflow", "invocations", code, _dumps(payload), JSON
        if path in ("/ping", "/health"):
            return "mlflow", path[1:], 200, b"\n", "application/json"
        if path == "/version":
            return "mlflow", "version", 200, __version__.encode(), "text/plain; charset=utf-8"
        if path == "/metrics":
            return "metrics", "metrics", 200, server.metrics.render().encode(), METRICS_CONTENT_TYPE
        return "other", "other", 404, _dumps({"error": f"no such endpoint: {path}"}), JSON

    # -- prediction ---------------------------------------------------------------------------------
    def _predict(self, fn: Any, *args: Any) -> tuple[int, Any, str | None]:
        try:
            return 200, fn(*args), None
        except InputError as exc:
            return exc.status, None, exc.message
        except (ValueError, KeyError) as exc:
            # scikit-learn and friends validate input with ValueError (NaN, wrong dtype, unknown category)
            return 400, None, f"the model rejected the input: {exc}"
        except Exception as exc:
            print(f"prediction failed for model {self.server.model.name}:", file=sys.stderr)
            traceback.print_exc(file=sys.stderr)
            return 500, None, f"prediction failed: {type(exc).__name__}: {exc}"

    def _mlflow_invoke(self, body: bytes) -> tuple[int, dict]:
        ctype = self.headers.get("Content-Type", "")
        code, result, error = self._predict(
            lambda: self.server.model.predict_table(mlflow_parse(body, ctype))
        )
        if error is not None:
            return code, mlflow_error(error)
        return 200, mlflow_response(result)

    def _v2_infer(self, body: bytes) -> tuple[int, dict]:
        model = self.server.model
        request_id: list[str | None] = [None]

        def run() -> list:
            rid, tensors, requested = v2_parse(body)
            request_id[0] = rid
            return model.infer(tensors, requested)

        code, results, error = self._predict(run)
        if error is not None:
            payload = {"error": error}
            if request_id[0] is not None:
                payload["id"] = request_id[0]
            return code, payload
        return 200, v2_response(model.name, model.version, request_id[0], results)


class RuntimeServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(
        self,
        address: tuple[str, int],
        model: ServedModel,
        *,
        metrics: Metrics | None = None,
        access_log: bool = False,
        max_body_bytes: int = 64 * 1024 * 1024,
    ):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.model = model
        self.metrics = metrics or Metrics()
        self.access_log = access_log
        self.max_body_bytes = max_body_bytes
        super().__init__(address, RuntimeHandler)

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, addr = super().get_request()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, addr

    def metadata(self) -> dict[str, Any]:
        m = self.model
        return {
            "name": m.name,
            "versions": [m.version],
            "platform": m.platform,
            "inputs": [t.as_dict() for t in m.inputs],
            "outputs": [t.as_dict() for t in m.outputs],
            "parameters": {"format": m.format, "content_type": "np"},
        }
