"""Modelyard's standalone serving runtime.

A small HTTP server that loads one model from a directory and serves it with the Open Inference
Protocol v2 (KServe, Triton, MLServer) and MLflow's scoring protocol, plus Prometheus metrics.

This package imports nothing from Django or the rest of Modelyard, and only the Python standard
library and NumPy at import time: the libraries for a model format (scikit-learn + skops,
onnxruntime, xgboost, lightgbm, mlflow) are imported when a model of that format is loaded. It can be
copied alone into a container image; `requirements.py` says what each format needs.

    python -m deployments_app.runtime --model-dir DIR --name NAME --port 0 --port-file FILE
"""

__version__ = "1.0"
