"""The client's capture helpers on their own: CI variables, credentials, datasets, metrics."""

from __future__ import annotations

import pytest
from modelyard import lineage
from modelyard.errors import ModelyardError


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://alice:tok3n@git.example.com/r/x.git", "https://git.example.com/r/x.git"),
        ("https://oauth2:glpat-xyz@gitlab.com/r/x.git", "https://gitlab.com/r/x.git"),
        ("ssh://git:secret@host.example.com/r/x.git", "ssh://git@host.example.com/r/x.git"),
        ("git@github.com:r/x.git", "git@github.com:r/x.git"),
        ("https://github.com/r/x.git", "https://github.com/r/x.git"),
    ],
)
def test_it_strips_credentials_from_remote_urls(url, expected):
    assert lineage.strip_credentials(url) == expected


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"GITLAB_CI": "true", "CI_PIPELINE_ID": "77", "CI_PROJECT_PATH": "risk/churn", "CI_JOB_NAME": "train",  # noqa: E501
             "CI_JOB_ID": "991", "GITLAB_USER_LOGIN": "bob"},
            {"id": "77", "pipeline": "risk/churn", "step": "train", "user": "bob", "ci": "gitlab-ci"},
        ),
        (
            {"AIRFLOW_CTX_DAG_RUN_ID": "scheduled__2026-10-02", "AIRFLOW_CTX_DAG_ID": "churn",
             "AIRFLOW_CTX_TASK_ID": "fit"},
            {"id": "scheduled__2026-10-02", "pipeline": "churn", "step": "fit", "ci": "airflow"},
        ),
        (
            {"KFP_RUN_ID": "9f1c", "KFP_PIPELINE_NAME": "churn-pipe", "KFP_POD_NAME": "churn-fit-123"},
            {"id": "9f1c", "pipeline": "churn-pipe", "step": "churn-fit-123", "ci": "kubeflow"},
        ),
        (
            {"ARGO_WORKFLOW_NAME": "churn-x7k2", "ARGO_NODE_ID": "churn-x7k2-1", "ARGO_POD_NAME": "churn-x7k2-fit"},  # noqa: E501
            {"id": "churn-x7k2", "pipeline": "churn-x7k2", "step": "churn-x7k2-fit", "ci": "argo"},
        ),
    ],
)  # fmt: skip
def test_it_reads_run_ids_from_orchestrators(env, expected):
    run = lineage.capture_pipeline(env)
    ci = expected.pop("ci")
    assert {k: run[k] for k in expected} == expected
    assert run["tags"]["ci"] == ci


def test_a_uri_without_store_credentials_is_recorded_unversioned(monkeypatch):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    entry = lineage.dataset_entry("evaluation=s3://bucket/eval/2026-10.parquet")
    assert entry == {
        "name": "2026-10.parquet",
        "uri": "s3://bucket/eval/2026-10.parquet",
        "digest": "unversioned",
        "role": "evaluation",
    }
    assert lineage.dataset_entry("train=https://data.example.com/tx.csv")["digest"] == "unversioned"


def test_metrics_must_be_numbers(tmp_path):
    with pytest.raises(ModelyardError, match="'auc' is not a number"):
        lineage.build_document(code_dir=None, entrypoint=None, datasets=[], metrics={"auc": "high"})
    (tmp_path / "m.json").write_text("[1, 2]")
    with pytest.raises(ModelyardError, match="expected a JSON object"):
        lineage.read_json_object(str(tmp_path / "m.json"), "metrics")
