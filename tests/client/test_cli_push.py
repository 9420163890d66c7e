"""``modelyard push`` as a subprocess: a directory, its datasets and its provenance, checked server-side."""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import subprocess
import sys
from datetime import datetime
from importlib import metadata
from pathlib import Path

import pytest

from lineage_app.services import lineage_document
from models_app.models import ModelAlias, ModelVersion
from tests.client.conftest import s3_client, write_tree
from tests.conftest import need_service


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path) -> Path:
    """A git checkout with three commits, a remote URL holding credentials and an uncommitted change."""
    need_service(shutil.which("git") is not None, "git")
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "alice@example.com")
    git(root, "config", "user.name", "Alice")
    git(root, "remote", "add", "origin", "https://alice:s3cret-token@git.example.com/risk/churn.git")
    for i in range(3):
        (root / "train.py").write_text(f"print('epoch {i}')\n")
        git(root, "add", "train.py")
        git(root, "commit", "-q", "-m", f"step {i}")
    (root / "train.py").write_text("print('a fix not committed yet')\n")
    return root


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_push_directory_records_every_lineage_field(registry, folder_store, repo, tmp_path, moto_endpoint):
    # A parent to fine-tune from, pushed through the Python API.
    base = write_tree(tmp_path / "base", {"weights.bin": b"base weights"})
    with registry.client() as client:
        assert client.push(base, model="base-churn", capture_lineage=False).version == 1

    model_files = {
        "model.bin": bytes(range(256)) * 400,
        "config/params.json": b'{"depth": 3}',
        "README.md": b"hi",
    }
    model_dir = write_tree(tmp_path / "model", model_files)
    data_files = {"part-0.csv": b"a,b\n1,2\n", "nested/part-1.csv": b"a,b\n3,4\n"}
    train_dir = write_tree(tmp_path / "data" / "train", data_files)
    validation = write_tree(tmp_path / "data", {"validation.csv": b"a,b\n5,6\n"}) / "validation.csv"
    (tmp_path / "params.json").write_text(json.dumps({"lr": 0.01, "depth": 3}))
    (tmp_path / "metrics.json").write_text(json.dumps({"auc": 0.91, "loss": 0.2}))

    # A test set in a versioned bucket: the client asks the store for its version id.
    s3 = s3_client(moto_endpoint)
    s3.create_bucket(Bucket="datasets")
    s3.put_bucket_versioning(Bucket="datasets", VersioningConfiguration={"Status": "Enabled"})
    version_id = s3.put_object(Bucket="datasets", Key="churn/test.parquet", Body=b"PAR1")["VersionId"]

    env = registry.env(
        GITHUB_ACTIONS="true",
        GITHUB_RUN_ID="4242",
        GITHUB_RUN_ATTEMPT="2",
        GITHUB_WORKFLOW="train-churn",
        GITHUB_JOB="fit",
        GITHUB_ACTOR="alice",
        GITHUB_SERVER_URL="https://github.example.com",
        GITHUB_REPOSITORY="risk/churn",
        CUDA_VISIBLE_DEVICES="0,1",
        AWS_ENDPOINT_URL=moto_endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )
    result = registry.cli(
        "push", model_dir, "--model", "churn",
        "--dataset", f"train={train_dir}",
        "--dataset", f"validation={validation}",
        "--dataset", "test=s3://datasets/churn/test.parquet",
        "--params", tmp_path / "params.json",
        "--metrics", tmp_path / "metrics.json",
        "--parent", "base-churn:1",
        "--alias", "candidate",
        "--description", "First churn model",
        "--entrypoint", "train.py",
        "--json",
        cwd=repo, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["version"] == 1
    assert out["url"] == f"{registry.url}/models/churn/versions/1/"

    version = ModelVersion.objects.get(model__name="churn", version=1)
    assert version.status == "READY"
    assert version.description == "First churn model"
    assert ModelAlias.objects.get(model__name="churn", alias="candidate").version == version
    assert {f.path: f.blob_id for f in version.files.all()} == {p: sha256(d) for p, d in model_files.items()}

    doc = lineage_document(version=version)
    head = git(repo, "rev-parse", "HEAD")
    assert doc["code"] == {
        "repo_url": "https://git.example.com/risk/churn.git",  # credentials stripped
        "commit": head,
        "branch": "main",
        "dirty": True,
        "diff_digest": "sha256:"
        + hashlib.sha256(
            subprocess.run(["git", "-C", str(repo), "diff", "HEAD", "--binary"], capture_output=True).stdout
        ).hexdigest(),
        "entrypoint": "train.py",
        "committed_at": doc["code"]["committed_at"],
        "ancestors": [sha for sha in git(repo, "rev-list", "HEAD").split() if sha != head],
    }
    assert len(doc["code"]["ancestors"]) == 2
    committed = datetime.fromisoformat(git(repo, "show", "-s", "--format=%cI", "HEAD"))
    assert datetime.fromisoformat(doc["code"]["committed_at"].replace("Z", "+00:00")) == committed

    env_doc = doc["environment"]
    assert env_doc["python"] == platform.python_version()
    assert env_doc["platform"] == f"{sys.platform}-{platform.machine().lower()}"
    if shutil.which("nvidia-smi") is None:
        assert env_doc["accelerator"] == "cuda: CUDA_VISIBLE_DEVICES=0,1"
    packages = {p["name"]: p["version"] for p in env_doc["packages"]}
    for name in ("pytest", "httpx", "django", "modelyard"):
        assert packages[name] == metadata.version(name), name
    assert len(packages) > 30

    manifest = hashlib.sha256(
        "".join(f"{p}\0{sha256(d)}\0{len(d)}\n" for p, d in sorted(data_files.items())).encode()
    ).hexdigest()
    assert doc["datasets"] == [
        {
            "name": "train",
            "uri": train_dir.resolve().as_uri(),
            "digest": f"sha256:{manifest}",
            "role": "train",
            "rows": None,
            "size": sum(len(d) for d in data_files.values()),
        },
        {
            "name": "validation.csv",
            "uri": validation.resolve().as_uri(),
            "digest": "sha256:" + sha256(b"a,b\n5,6\n"),
            "role": "validation",
            "rows": None,
            "size": 8,
        },
        {
            "name": "test.parquet",
            "uri": "s3://datasets/churn/test.parquet",
            "digest": f"version_id:{version_id}",
            "role": "test",
            "rows": None,
            "size": None,
        },
    ]
    run = doc["run"]
    assert (run["id"], run["pipeline"], run["step"], run["user"]) == ("4242", "train-churn", "fit", "alice")
    assert run["tags"] == {
        "ci": "github-actions",
        "run_attempt": "2",
        "run_url": "https://github.example.com/risk/churn/actions/runs/4242",
    }
    assert run["params"] == {"lr": 0.01, "depth": 3}
    assert run["metrics"] == {"auc": 0.91, "loss": 0.2}
    assert doc["parents"] == [{"model": "base-churn", "version": 1, "relation": "fine_tuned_from"}]
    assert doc["extra"]["client"]["name"] == "modelyard"


def test_push_outside_git_and_human_output(registry, folder_store, tmp_path):
    model = write_tree(tmp_path / "m", {"model.onnx": b"onnx bytes"})
    result = registry.cli("push", model / "model.onnx", "--model", "plain", "--quiet")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"plain version 1: {registry.url}/models/plain/versions/1/"
    version = ModelVersion.objects.get(model__name="plain", version=1)
    assert [f.path for f in version.files.all()] == ["model.onnx"]
    doc = lineage_document(version=version)
    assert doc["code"] is None  # not in a repository: no code part rather than a failure
    assert doc["environment"]["python"] == platform.python_version()


def test_bad_inputs_are_one_line_errors(registry, folder_store, tmp_path):
    model = write_tree(tmp_path / "m", {"model.bin": b"x"})
    (tmp_path / "metrics.json").write_text('{"auc": "high"}')
    cases = [
        (["--metrics", tmp_path / "metrics.json"], "--metrics: 'auc' is not a number"),
        (["--dataset", "training=x"], "the role must be one of"),
        (["--dataset", f"train={tmp_path / 'nope'}"], "does not exist"),
        (["--parent", "ghost:3"], "--parent ghost:3: no such version"),
    ]
    for extra, expected in cases:
        result = registry.cli("push", model, "--model", "churn", *extra)
        assert result.returncode != 0
        assert expected in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert "Traceback" not in result.stderr
    assert not ModelVersion.objects.filter(model__name="churn").exists()
