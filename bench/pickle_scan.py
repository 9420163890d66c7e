"""How long security_scan's static pickle walk takes on typical model files.

Run by hand: ``.venv/bin/python bench/pickle_scan.py``; results go in bench/README.md.
"""

from __future__ import annotations

import io
import pickle
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import joblib
import numpy as np
from sklearn.ensemble import RandomForestClassifier

from models_app.pickle_scan import scan_stream


def timed(label: str, data: bytes, path: str) -> None:
    started = time.perf_counter()
    results = scan_stream(path, io.BytesIO(data))
    seconds = time.perf_counter() - started
    ok = all(not r.error and not r.unsafe for r in results)
    print(f"{label:45s} {len(data) / 1e6:8.1f} MB  {seconds * 1000:8.1f} ms  {'pass' if ok else 'FAIL'}")


def main() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((5000, 20))
    forest = RandomForestClassifier(n_estimators=100, random_state=0).fit(x, x[:, 0] > 0.5)
    weights = {"w": rng.random((64, 1024, 1024 // 8))}  # 64 MiB of float64
    for label, obj in (("random forest, 100 trees", forest), ("64 MiB float64 array dict", weights)):
        timed(f"{label}: pickle protocol 5", pickle.dumps(obj, protocol=5), "m.pkl")
        for compress in (0, 3):
            buffer = io.BytesIO()
            joblib.dump(obj, buffer, compress=compress)
            timed(f"{label}: joblib compress={compress}", buffer.getvalue(), "m.joblib")


if __name__ == "__main__":
    main()
