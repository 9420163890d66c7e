"""The real ``mlflow`` client against a live Modelyard server (pytest-django ``live_server``).

The client only ever talks to the live server on 127.0.0.1; telemetry is off and retries are
disabled so that a wrong answer fails at once instead of being retried for minutes.
"""

from __future__ import annotations

import pytest

from models_app import services

mlflow = pytest.importorskip("mlflow")


@pytest.fixture
def mlflow_as(live_server, monkeypatch, transactional_db):
    """``mlflow_as(user, scopes)`` points the mlflow client at the live server as ``user``."""
    from django.db import connections

    # Server threads close their connection after each request, so the test database can be
    # dropped at the end of the session (persistent connections would outlive the threads).
    monkeypatch.setitem(connections.databases["default"], "CONN_MAX_AGE", 0)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("DO_NOT_TRACK", "true")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", live_server.url)
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    mlflow.set_tracking_uri(live_server.url)
    mlflow.set_registry_uri(live_server.url)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)

    def _as(user, scopes=None) -> str:
        _token, raw = services.access_token_create(
            actor=user, user=user, name="mlflow", scopes=scopes or ["read", "write"]
        )
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", raw)
        return raw

    yield _as
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri("")
    mlflow.set_registry_uri("")


@pytest.fixture
def client():
    from mlflow import MlflowClient

    return MlflowClient()


@pytest.fixture
def sk_model():
    """A tiny scikit-learn classifier and its training data."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    y = (x[:, 0] > 0).astype(int)
    return LogisticRegression(C=1.0).fit(x, y), x, y
