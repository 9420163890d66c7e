"""Prometheus metrics in the text exposition format, kept by hand (one lock, a few dict updates).

modelyard_runtime_requests_total{protocol,endpoint,code}
modelyard_runtime_request_errors_total{protocol,endpoint,kind="client"|"server"}
modelyard_runtime_request_duration_seconds{protocol,endpoint}   (histogram)
modelyard_runtime_model_info{name,version,format,platform} 1
modelyard_runtime_model_load_seconds, modelyard_runtime_ready,
process_resident_memory_bytes, process_cpu_seconds_total, process_start_time_seconds
"""

from __future__ import annotations

import bisect
import os
import threading
import time

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items()) + "}"


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):  # not Linux
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = {}
        self.errors: dict[tuple[str, str, str], int] = {}
        self.histograms: dict[tuple[str, str], list] = {}  # key -> [bucket counts..., sum, count]
        self.start_time = time.time()
        self.model_labels: dict[str, str] | None = None
        self.load_seconds = 0.0
        self.ready = False

    def observe(self, protocol: str, endpoint: str, code: int, seconds: float) -> None:
        index = bisect.bisect_left(BUCKETS, seconds)
        with self._lock:
            key = (protocol, endpoint, code)
            self.requests[key] = self.requests.get(key, 0) + 1
            if code >= 400:
                ekey = (protocol, endpoint, "server" if code >= 500 else "client")
                self.errors[ekey] = self.errors.get(ekey, 0) + 1
            hist = self.histograms.get((protocol, endpoint))
            if hist is None:
                hist = self.histograms[(protocol, endpoint)] = [0] * (len(BUCKETS) + 1) + [0.0, 0]
            hist[index] += 1
            hist[-2] += seconds
            hist[-1] += 1

    def render(self) -> str:
        with self._lock:
            requests = sorted(self.requests.items())
            errors = sorted(self.errors.items())
            histograms = sorted((k, list(v)) for k, v in self.histograms.items())
        out = [
            "# HELP modelyard_runtime_requests_total HTTP requests by protocol, endpoint and status.",
            "# TYPE modelyard_runtime_requests_total counter",
        ]
        for (protocol, endpoint, code), n in requests:
            labels = _labels(protocol=protocol, endpoint=endpoint, code=str(code))
            out.append(f"modelyard_runtime_requests_total{labels} {n}")
        out += [
            "# HELP modelyard_runtime_request_errors_total Requests answered 4xx (client) or 5xx (server).",
            "# TYPE modelyard_runtime_request_errors_total counter",
        ]
        for (protocol, endpoint, kind), n in errors:
            labels = _labels(protocol=protocol, endpoint=endpoint, kind=kind)
            out.append(f"modelyard_runtime_request_errors_total{labels} {n}")
        out += [
            "# HELP modelyard_runtime_request_duration_seconds Time from request line to response written.",
            "# TYPE modelyard_runtime_request_duration_seconds histogram",
        ]
        for (protocol, endpoint), hist in histograms:
            cumulative = 0
            for bound, n in zip((*BUCKETS, "+Inf"), hist[: len(BUCKETS) + 1], strict=True):
                cumulative += n
                labels = _labels(protocol=protocol, endpoint=endpoint, le=str(bound))
                out.append(f"modelyard_runtime_request_duration_seconds_bucket{labels} {cumulative}")
            labels = _labels(protocol=protocol, endpoint=endpoint)
            out.append(f"modelyard_runtime_request_duration_seconds_sum{labels} {hist[-2]:.6f}")
            out.append(f"modelyard_runtime_request_duration_seconds_count{labels} {hist[-1]}")
        if self.model_labels:
            out += [
                "# HELP modelyard_runtime_model_info The model this runtime serves.",
                "# TYPE modelyard_runtime_model_info gauge",
                f"modelyard_runtime_model_info{_labels(**self.model_labels)} 1",
            ]
        cpu = os.times()
        out += [
            "# HELP modelyard_runtime_model_load_seconds Time taken to load the model at start.",
            "# TYPE modelyard_runtime_model_load_seconds gauge",
            f"modelyard_runtime_model_load_seconds {self.load_seconds:.6f}",
            "# HELP modelyard_runtime_ready 1 when the model is loaded and requests are served.",
            "# TYPE modelyard_runtime_ready gauge",
            f"modelyard_runtime_ready {int(self.ready)}",
            "# HELP process_resident_memory_bytes Resident memory size in bytes.",
            "# TYPE process_resident_memory_bytes gauge",
            f"process_resident_memory_bytes {_rss_bytes()}",
            "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.",
            "# TYPE process_cpu_seconds_total counter",
            f"process_cpu_seconds_total {cpu.user + cpu.system:.6f}",
            "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.",
            "# TYPE process_start_time_seconds gauge",
            f"process_start_time_seconds {self.start_time:.3f}",
        ]
        return "\n".join(out) + "\n"
