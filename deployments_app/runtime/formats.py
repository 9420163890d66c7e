"""Find the model in a directory and load it, with no configuration.

Detection order (the first that matches wins):

1. an MLflow model directory (`MLmodel`): the first flavor this runtime serves natively — `onnx`,
   `sklearn` saved with skops, `xgboost`, `lightgbm` (Booster), `sklearn` pickled — else
   `python_function` through `mlflow.pyfunc.load_model` when mlflow is importable;
2. `*.skops` — scikit-learn via skops, types checked with `skops.io.get_untrusted_types`;
3. `*.onnx` — onnxruntime;
4. `*.ubj` / `*.json` holding an XGBoost Booster;
5. `*.txt` holding a LightGBM model;
6. `*.pkl`, `*.pickle`, `*.joblib` — only with `allow_pickle`.

Anything that executes code when loaded (pickle, joblib, cloudpickled MLflow flavors, skops types
outside scikit-learn/NumPy/SciPy) raises `ModelRefusedError` unless `allow_pickle` is given: the
registry passes it when the version's `security_scan` check passed or an admin allowed it.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelLoadError, ModelRefusedError
from .requirements import requirements_for
from .served import ColumnSpec, FunctionModel, OnnxModel, ServedModel, SklearnModel, TensorSpec, v2_datatype

PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")
TRUSTED_MODULES = ("sklearn", "numpy", "scipy")
SKIP_DIRS = {".git", "__pycache__", ".ipynb_checkpoints"}


@dataclass
class Detected:
    """What `detect` found: enough for a backend to choose requirements before loading anything."""

    format: str  # skops | onnx | xgboost | lightgbm | pickle | mlflow-pyfunc
    path: Path  # the model file (or the MLflow model directory for mlflow-pyfunc)
    mlflow_dir: Path | None = None
    flavor: dict[str, Any] = field(default_factory=dict)
    signature: dict[str, Any] | None = None
    needs_pickle: bool = False

    @property
    def requirements(self) -> list[str]:
        return requirements_for(self.format)

    @property
    def model_requirements_file(self) -> Path | None:
        """The model's own `requirements.txt` (MLflow writes one next to `MLmodel`)."""
        if self.mlflow_dir and (self.mlflow_dir / "requirements.txt").is_file():
            return self.mlflow_dir / "requirements.txt"
        return None


def _files(root: Path) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        found.extend(Path(dirpath) / f for f in sorted(filenames) if not f.startswith("."))
    return found


def _head(path: Path, size: int = 4096) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(size)


def _is_xgboost(path: Path) -> bool:
    return b"learner" in _head(path)


def _is_lightgbm(path: Path) -> bool:
    head = _head(path, 512)
    return head.startswith(b"tree\n") and b"version=" in head


def _pick(candidates: list[Path], root: Path, what: str) -> Path | None:
    if not candidates:
        return None
    depth = min(len(p.relative_to(root).parts) for p in candidates)
    shallow = [p for p in candidates if len(p.relative_to(root).parts) == depth]
    if len(shallow) > 1:
        names = ", ".join(str(p.relative_to(root)) for p in shallow)
        raise ModelLoadError(f"more than one {what} file in {root}: {names}; keep one per deployment")
    return shallow[0]


def _read_mlmodel(path: Path) -> dict[str, Any]:
    try:
        import yaml
    except ImportError:  # pragma: no cover - PyYAML is a runtime requirement
        raise ModelLoadError("reading an MLmodel file needs PyYAML (pip install PyYAML)") from None
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("flavors"), dict):
        raise ModelLoadError(f"{path} has no 'flavors' section")
    return data


def _detect_mlflow(mlmodel: Path) -> Detected:
    root = mlmodel.parent
    data = _read_mlmodel(mlmodel)
    flavors = data["flavors"]
    signature = data.get("signature") if isinstance(data.get("signature"), dict) else None

    def make(fmt: str, rel: Any, flavor: dict, needs_pickle: bool = False) -> Detected:
        path = root / str(rel)
        if not path.exists():
            raise ModelLoadError(f"MLmodel names {rel!r} for the {fmt} flavor but {path} does not exist")
        return Detected(fmt, path, root, flavor, signature, needs_pickle)

    onnx = flavors.get("onnx")
    if isinstance(onnx, dict) and onnx.get("data"):
        return make("onnx", onnx["data"], onnx)
    sk = flavors.get("sklearn")
    sk_file = str(sk.get("pickled_model", "")) if isinstance(sk, dict) else ""
    if sk_file.endswith(".skops") or (isinstance(sk, dict) and sk.get("serialization_format") == "skops"):
        return make("skops", sk_file, sk)
    xg = flavors.get("xgboost")
    if isinstance(xg, dict) and xg.get("data"):
        return make("xgboost", xg["data"], xg)
    lg = flavors.get("lightgbm")
    if isinstance(lg, dict) and lg.get("data") and str(lg.get("model_class", "")).endswith("Booster"):
        return make("lightgbm", lg["data"], lg)
    if sk_file:
        return make("pickle", sk_file, sk, needs_pickle=True)
    if "python_function" in flavors:
        return Detected("mlflow-pyfunc", root, root, flavors["python_function"] or {}, signature, True)
    raise ModelLoadError(f"{mlmodel}: no flavor this runtime can serve (found: {', '.join(flavors)})")


def detect(model_dir: str | os.PathLike) -> Detected:
    """Find the model under `model_dir` (a directory, or a single model file)."""
    root = Path(model_dir)
    if not root.exists():
        raise ModelLoadError(f"model path {root} does not exist")
    if root.is_file():
        files, root = [root], root.parent
    else:
        files = _files(root)
    mlmodels = [p for p in files if p.name == "MLmodel"]
    if mlmodels:
        return _detect_mlflow(_pick(mlmodels, root, "MLmodel"))
    by_suffix = lambda *sfx: [p for p in files if p.suffix.lower() in sfx]  # noqa: E731
    if found := _pick(by_suffix(".skops"), root, ".skops"):
        return Detected("skops", found)
    if found := _pick(by_suffix(".onnx"), root, ".onnx"):
        return Detected("onnx", found)
    if found := _pick([p for p in by_suffix(".ubj", ".json") if _is_xgboost(p)], root, "XGBoost"):
        return Detected("xgboost", found)
    if found := _pick([p for p in by_suffix(".txt") if _is_lightgbm(p)], root, "LightGBM"):
        return Detected("lightgbm", found)
    if found := _pick(by_suffix(*PICKLE_SUFFIXES), root, "pickle"):
        return Detected("pickle", found, needs_pickle=True)
    listing = ", ".join(str(p.relative_to(root)) for p in files[:20]) or "nothing"
    raise ModelLoadError(
        f"no model found in {root} (looked for MLmodel, *.skops, *.onnx, XGBoost *.ubj/*.json, "
        f"LightGBM *.txt, and pickles); it holds: {listing}"
    )


# -- signatures ---------------------------------------------------------------------------------------


def signature_columns(signature: dict[str, Any] | None) -> tuple[list[ColumnSpec] | None, int | None]:
    """MLmodel `signature.inputs` → named columns, or the feature count of a 2-D tensor spec."""
    if not signature or not signature.get("inputs"):
        return None, None
    raw = signature["inputs"]
    try:
        specs = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError:
        return None, None
    if not isinstance(specs, list) or not specs:
        return None, None
    if all(isinstance(s, dict) and s.get("name") and s.get("type") != "tensor" for s in specs):
        return [ColumnSpec(str(s["name"]), s.get("type"), bool(s.get("required", True))) for s in specs], None
    if len(specs) == 1 and isinstance(specs[0], dict) and specs[0].get("type") == "tensor":
        shape = (specs[0].get("tensor-spec") or {}).get("shape") or []
        if len(shape) == 2 and isinstance(shape[1], int) and shape[1] > 0:
            return None, shape[1]
    return None, None


# -- loaders ------------------------------------------------------------------------------------------


def _refuse(what: str) -> ModelRefusedError:
    return ModelRefusedError(
        f"refusing to load {what}: unpickling runs arbitrary code. It is served only when the version's "
        "security_scan check passed or an admin allowed it (the registry then starts the runtime with "
        "--allow-pickle); or save the model with skops or ONNX instead."
    )


def _load_skops(path: Path, allow_pickle: bool) -> Any:
    try:
        import skops.io as sio
    except ImportError:
        raise ModelLoadError("serving a .skops model needs scikit-learn and skops installed") from None
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:
        raise ModelLoadError(f"{path.name} is not a readable skops file: {exc}") from None
    outside = [t for t in untrusted if t.split(".", 1)[0] not in TRUSTED_MODULES]
    if outside and not allow_pickle:
        raise ModelRefusedError(
            f"refusing to load {path.name}: it holds types outside scikit-learn, NumPy and SciPy "
            f"({', '.join(outside[:10])}); loading them runs their code. Allowed only with --allow-pickle "
            "(security_scan passed or an admin allowed it)."
        )
    try:
        return sio.load(path, trusted=untrusted)
    except Exception as exc:
        raise ModelLoadError(f"cannot load {path.name} with skops: {type(exc).__name__}: {exc}") from None


def _load_pickle(path: Path) -> Any:
    """joblib.load reads both joblib dumps and plain pickles (people save either under any suffix)."""
    try:
        try:
            import joblib
        except ImportError:
            import pickle

            with open(path, "rb") as fh:
                return pickle.load(fh)  # noqa: S301 — only with --allow-pickle (scanned or admin-allowed)
        return joblib.load(path)  # only with --allow-pickle (scanned or admin-allowed)
    except Exception as exc:
        raise ModelLoadError(f"cannot unpickle {path.name}: {type(exc).__name__}: {exc}") from None


def _onnx_session(path: Path) -> Any:
    try:
        import onnxruntime as ort
    except ImportError:
        raise ModelLoadError("serving an ONNX model needs onnxruntime installed") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(os.environ.get("MODELYARD_RUNTIME_ONNX_THREADS", "1"))
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelLoadError(f"onnxruntime cannot load {path.name}: {exc}") from None


def _load_xgboost(path: Path, flavor: dict, common: dict) -> ServedModel:
    try:
        import xgboost as xgb
    except ImportError:
        raise ModelLoadError(
            "serving an XGBoost model needs xgboost installed (pip install xgboost-cpu)"
        ) from None
    model_class = str(flavor.get("model_class", ""))
    try:
        if model_class.startswith("xgboost.sklearn.") and hasattr(xgb, model_class.rsplit(".", 1)[1]):
            est = getattr(xgb, model_class.rsplit(".", 1)[1])()
            est.load_model(str(path))
            return SklearnModel.build(est, **common)
        booster = xgb.Booster()
        booster.load_model(str(path))
    except xgb.core.XGBoostError as exc:
        raise ModelLoadError(f"xgboost cannot load {path.name}: {exc}") from None
    names = booster.feature_names
    columns = common.pop("columns", None) or ([ColumnSpec(n) for n in names] if names else None)
    model = FunctionModel(platform="xgboost", columns=columns, n_features=booster.num_features(), **common)
    model.fn = lambda x: booster.inplace_predict(x)
    model.inputs = [TensorSpec("input-0", "FP32", [-1, model.n_features])]
    model.outputs = [TensorSpec("predict", "FP32", [-1])]
    return model


def _load_lightgbm(path: Path, common: dict) -> ServedModel:
    try:
        import lightgbm as lgb
    except ImportError:
        raise ModelLoadError("serving a LightGBM model needs lightgbm installed") from None
    try:
        booster = lgb.Booster(model_file=str(path))
    except lgb.basic.LightGBMError as exc:
        raise ModelLoadError(f"lightgbm cannot load {path.name}: {exc}") from None
    names = booster.feature_name()
    default = [f"Column_{i}" for i in range(len(names))]
    columns = common.pop("columns", None) or ([ColumnSpec(n) for n in names] if names != default else None)
    model = FunctionModel(platform="lightgbm", columns=columns, n_features=booster.num_feature(), **common)
    model.fn = lambda x: booster.predict(x)
    model.inputs = [TensorSpec("input-0", "FP64", [-1, model.n_features])]
    model.outputs = [TensorSpec("predict", "FP64", [-1])]
    return model


def _load_pyfunc(detected: Detected, common: dict) -> ServedModel:
    try:
        import mlflow.pyfunc
    except ImportError:
        raise ModelLoadError(
            "this MLflow model has only the python_function flavor, which needs mlflow installed (the "
            "docker target builds an image with the model's own requirements, mlflow included)"
        ) from None
    try:
        pyfunc = mlflow.pyfunc.load_model(str(detected.path))
    except Exception as exc:
        raise ModelLoadError(f"mlflow cannot load the model: {type(exc).__name__}: {exc}") from None
    columns = common.pop("columns", None)
    model = FunctionModel(platform="mlflow", columns=columns, needs_frame=columns is not None, **common)
    model.numeric = not (
        columns and any(c.type not in (None, "double", "float", "long", "integer") for c in columns)
    )
    model.fn = pyfunc.predict
    width = len(columns) if columns else (common.get("n_features") or -1)
    model.inputs = [TensorSpec("input-0", "FP64" if model.numeric else "BYTES", [-1, width])]
    model.outputs = [TensorSpec("predict", "FP64", [-1])]
    return model


def load(
    model_dir: str | os.PathLike, *, name: str, version: str = "1", allow_pickle: bool = False
) -> ServedModel:
    """Detect and load the model under `model_dir`; raise ModelLoadError / ModelRefusedError."""
    detected = detect(model_dir)
    if detected.needs_pickle and not allow_pickle:
        raise _refuse(f"{detected.path.name} ({detected.format})")
    columns, n_features = signature_columns(detected.signature)
    common: dict[str, Any] = {
        "name": name,
        "version": version,
        "format": detected.format,
        "source": str(detected.path),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # version-mismatch warnings from unpickling go to the log below
        if detected.format == "onnx":
            model = OnnxModel.build(_onnx_session(detected.path), columns=columns, **common)
        elif detected.format == "xgboost":
            model = _load_xgboost(detected.path, detected.flavor, {**common, "columns": columns})
        elif detected.format == "lightgbm":
            model = _load_lightgbm(detected.path, {**common, "columns": columns})
        elif detected.format == "mlflow-pyfunc":
            model = _load_pyfunc(detected, {**common, "columns": columns, "n_features": n_features})
        else:
            if detected.format == "skops":
                estimator = _load_skops(detected.path, allow_pickle)
            else:
                estimator = _load_pickle(detected.path)
            if not callable(getattr(estimator, "predict", None)):
                raise ModelLoadError(
                    f"{detected.path.name} holds a {type(estimator).__name__}, which has no predict()"
                )
            model = SklearnModel.build(estimator, columns=columns, **common)
    if model.n_features is None and n_features is not None:
        model.n_features = n_features
    if model.outputs and detected.signature and detected.signature.get("outputs"):
        try:
            outs = json.loads(detected.signature["outputs"])
            if len(outs) == 1 and outs[0].get("type") in (
                "double",
                "float",
                "long",
                "integer",
                "boolean",
                "string",
            ):
                numpy_type = {"double": "f8", "float": "f4", "long": "i8", "integer": "i4", "boolean": "?"}
                dt = np.dtype(numpy_type.get(outs[0]["type"], "O"))
                model.outputs[0].datatype = v2_datatype(dt)
        except (TypeError, ValueError, AttributeError, KeyError):
            pass
    return model
