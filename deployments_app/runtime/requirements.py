"""What the runtime needs installed, per model format (for building serving images).

An image is: a base image + `BASE` + `requirements_for(format)` + the model's own requirements (an
MLflow model's `requirements.txt`) + the model files + this package. `requirements.txt` next to this
file lists `BASE`, so `pip install -r deployments_app/runtime/requirements.txt` gives a runtime that
serves nothing but can at least start and report what is missing.
"""

from __future__ import annotations

from pathlib import Path

BASE = ["numpy>=1.26,<3", "PyYAML>=6,<7"]

SKLEARN = ["scikit-learn>=1.5,<1.10", "scipy>=1.11", "pandas>=2.1,<3"]

FORMAT_REQUIREMENTS: dict[str, list[str]] = {
    "skops": [*SKLEARN, "skops>=0.11,<0.17"],
    "pickle": [*SKLEARN, "joblib>=1.3"],
    "onnx": ["onnxruntime>=1.20,<1.32"],
    "xgboost": ["xgboost-cpu>=2.1,<3.5"],
    "lightgbm": ["lightgbm>=4.5,<4.8"],
    # The model's own requirements.txt brings mlflow and its libraries; pandas is needed either way.
    "mlflow-pyfunc": ["pandas>=2.1,<3"],
}

REQUIREMENTS_FILE = Path(__file__).with_name("requirements.txt")


def requirements_for(fmt: str) -> list[str]:
    """BASE plus what loading and serving `fmt` needs (see formats.detect for the names)."""
    if fmt not in FORMAT_REQUIREMENTS:
        raise KeyError(f"unknown model format {fmt!r}; known: {', '.join(sorted(FORMAT_REQUIREMENTS))}")
    return [*BASE, *FORMAT_REQUIREMENTS[fmt]]
