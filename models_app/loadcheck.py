"""The ``loadable`` check: load a model directory and predict once, in a separate process.

Run as ``python -m models_app.loadcheck DIR [--allow-pickle]``; prints one JSON line. The
registry starts it with CPU-time and memory limits (see ``services_governance``), so a model
that hangs, eats memory or crashes cannot take the worker down. No Django import here.

Formats: skops (scikit-learn; only types from the scientific stack are trusted), ONNX (when
onnxruntime is installed), MLflow ``MLmodel`` directories of the sklearn flavor, and
pickle/joblib files only with ``--allow-pickle`` (given after a passed ``security_scan``).
The input is the model's input example, or a row of zeros shaped from its signature.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


class NotLoadable(Exception):
    pass


def _trusted_skops(path: Path):
    import skops.io as sio

    from models_app.pickle_scan import is_safe

    untrusted = sio.get_untrusted_types(file=path)
    unsafe = [t for t in untrusted if not is_safe(t)]
    if unsafe:
        raise NotLoadable(f"skops file uses types outside the trusted scientific stack: {', '.join(unsafe)}")
    return sio.load(path, trusted=untrusted)


def _rescanned(path: Path) -> Path:
    """Scan ``path`` as a pickle right before unpickling it, whatever its name or first bytes.

    ``security_scan`` only looks at files that start or are named like pickles; a protocol-0
    pickle named ``model.bin`` in an MLmodel would slip past it, so the loader checks again.
    """
    from models_app.pickle_scan import scan_stream, summarize

    with open(path, "rb") as fh:
        passed, summary, _ = summarize(scan_stream(path.name, fh, force=True))
    if not passed:
        raise NotLoadable(f"refusing to unpickle {path.name}: {summary}")
    return path


def _load_mlmodel(root: Path, allow_pickle: bool):
    import yaml

    spec = yaml.safe_load((root / "MLmodel").read_text(encoding="utf-8")) or {}
    flavors = spec.get("flavors") or {}
    sklearn = flavors.get("sklearn")
    if not sklearn:
        raise NotLoadable(f"MLmodel flavors {sorted(flavors)} are not supported by the check (sklearn is)")
    model_file = root / sklearn.get("pickled_model", "model.pkl")
    fmt = sklearn.get("serialization_format", "cloudpickle")
    if model_file.suffix == ".skops" or fmt == "skops":
        return _trusted_skops(model_file), spec
    if not allow_pickle:
        raise NotLoadable("the model is a pickle and security_scan has not passed")
    import pickle

    with open(_rescanned(model_file), "rb") as fh:
        return pickle.load(fh), spec  # noqa: S301 - scanned statically first; sandboxed process


def load(root: Path, allow_pickle: bool) -> tuple[Any, str, dict]:
    """``(model, format, MLmodel spec or {})`` for the first supported model file found."""
    if (root / "MLmodel").exists():
        model, spec = _load_mlmodel(root, allow_pickle)
        return model, "mlflow-sklearn", spec
    files = sorted(p for p in root.rglob("*") if p.is_file())
    for path in files:
        if path.suffix == ".skops":
            return _trusted_skops(path), "skops", {}
    for path in files:
        if path.suffix == ".onnx":
            try:
                import onnxruntime
            except ImportError as exc:
                raise NotLoadable("onnxruntime is not installed on this worker") from exc
            return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]), "onnx", {}
    for path in files:
        if path.suffix in (".pkl", ".pickle", ".joblib"):
            if not allow_pickle:
                raise NotLoadable(f"{path.name} is a pickle and security_scan has not passed")
            import joblib

            return joblib.load(_rescanned(path)), "pickle", {}
    raise NotLoadable("no supported model file (skops, ONNX, MLmodel, pickle/joblib)")


def sample_input(root: Path, model: Any, spec: dict):
    """The input example if there is one, else one row of zeros shaped from the signature."""
    import numpy as np
    import pandas as pd

    for name in ("input_example.json", "serving_input_example.json"):
        path = root / name
        if path.exists():
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict) and "dataframe_split" in data:
                data = data["dataframe_split"]
            if isinstance(data, dict) and "columns" in data and "data" in data:
                return pd.DataFrame(data["data"], columns=data["columns"])
            if isinstance(data, dict) and ("inputs" in data or "instances" in data):
                return np.asarray(data.get("inputs", data.get("instances")))
            if isinstance(data, list) and data and isinstance(data[0], dict):
                return pd.DataFrame.from_records(data)
            return np.asarray(data)
    signature = (spec.get("signature") or {}).get("inputs")
    if signature:
        columns = json.loads(signature) if isinstance(signature, str) else signature
        names = [c.get("name", f"c{i}") for i, c in enumerate(columns)]
        return pd.DataFrame([[0] * len(names)], columns=names)
    width = getattr(model, "n_features_in_", None)
    if width:
        return np.zeros((1, int(width)))
    raise NotLoadable("no input example or signature to predict with")


def check(root: Path, allow_pickle: bool) -> dict:
    model, fmt, spec = load(root, allow_pickle)
    if fmt == "onnx":
        import numpy as np

        first = model.get_inputs()[0]
        shape = [d if isinstance(d, int) else 1 for d in first.shape]
        outputs = model.run(None, {first.name: np.zeros(shape, dtype=np.float32)})
        return {"ok": True, "format": fmt, "rows": int(np.asarray(outputs[0]).shape[0])}
    sample = sample_input(root, model, spec)
    predictions = model.predict(sample)
    return {"ok": True, "format": fmt, "rows": len(predictions)}


def main(argv: list[str]) -> int:
    root = Path(argv[0])
    try:
        result = check(root, allow_pickle="--allow-pickle" in argv)
    except NotLoadable as exc:
        result = {"ok": False, "error": str(exc)}
    except Exception as exc:  # the point of the check: any failure becomes a report
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:2000]}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
