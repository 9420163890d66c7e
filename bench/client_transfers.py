"""The `modelyard` client against a real registry: push, dedup push, pull, and lineage capture cost.

Starts the web server (Granian, SQLite, folder store) in a scratch folder, then with ``modelyard.Client``:
1. pushes one file of random bytes (hashed, then uploaded in parallel parts through the API),
2. pushes the same file again (attached by SHA-256: no file bytes sent),
3. pulls it back (downloaded and SHA-256-verified),
4. times the automatic lineage capture (git, environment with every installed distribution).

    .venv/bin/python bench/client_transfers.py --size-mib 512 --jobs 4
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import modelyard
from _stack import ROOT, Stack
from modelyard import lineage


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--part-mib", type=int, default=64)
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="modelyard-bench-client-"))
    os.environ["MODELYARD_STATE_DIR"] = str(scratch / "state")
    stack = Stack(scratch / "var")
    try:
        stack.start()
        stack.manage("create_user", "bench", "--team", "bench", "--role", "contributor")
        token = stack.manage("create_token", "bench", "--scopes", "read,write", "--name", "bench")
        source = scratch / "model.bin"
        with open(source, "wb") as handle:
            for _ in range(args.size_mib):
                handle.write(os.urandom(1024 * 1024))
        size = source.stat().st_size
        rows = []
        with modelyard.Client(url=stack.url, token=token, jobs=args.jobs) as client:
            client.part_size = args.part_mib * 1024 * 1024
            client.multipart_threshold = 64 * 1024 * 1024
            start = time.perf_counter()
            first = client.push(source, model="bench", capture_lineage=False)
            elapsed = time.perf_counter() - start
            rows.append(
                ("push (hash + parallel parts + finalize)", elapsed, size / elapsed / 1e6, first.bytes_sent)
            )

            start = time.perf_counter()
            second = client.push(source, model="bench", capture_lineage=False)
            elapsed = time.perf_counter() - start
            rows.append(
                ("push again (hash, attach by SHA-256)", elapsed, size / elapsed / 1e6, second.bytes_sent)
            )

            start = time.perf_counter()
            pulled = client.pull("bench:1", scratch / "out")
            elapsed = time.perf_counter() - start
            rows.append(
                ("pull (download + verify SHA-256)", elapsed, size / elapsed / 1e6, pulled.bytes_received)
            )

        if shutil.which("curl"):  # the same transfers by curl, for scale (one stream, no client hashing)
            url = f"{stack.url}/api/v1/models/bench/versions/1/files/model.bin"
            auth = f"Authorization: Bearer {token}"
            start = time.perf_counter()
            subprocess.run(["curl", "-sf", "-o", os.devnull, "-H", auth, url], check=True)
            elapsed = time.perf_counter() - start
            rows.append(("curl GET (baseline, no verification)", elapsed, size / elapsed / 1e6, size))

        start = time.perf_counter()
        document = lineage.build_document(code_dir=ROOT, entrypoint=None, datasets=[])
        capture = time.perf_counter() - start

        print(
            f"{args.size_mib} MiB, {args.jobs} jobs, {args.part_mib} MiB parts, "
            f"Python {sys.version.split()[0]}"
        )
        print("| step | seconds | MB/s | bytes sent/received |")
        print("|---|---:|---:|---:|")
        for name, seconds, rate, sent in rows:
            print(f"| {name} | {seconds:.2f} | {rate:,.0f} | {sent:,} |")
        packages = len(document["environment"]["packages"])
        ancestors = len(document.get("code", {}).get("ancestors", []))
        print(f"lineage capture: {capture:.2f} s ({packages} packages, {ancestors} ancestor commits)")
    finally:
        stack.stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
