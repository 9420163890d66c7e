"""Provenance captured on the training machine: code, environment, data and pipeline.

Everything here reads local facts only (git, the running interpreter, files, environment
variables). Nothing is required: a missing git, a path outside a repository or an unreachable
object store leaves that part out instead of failing the push.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from modelyard.errors import ModelyardError

MAX_ANCESTORS = 1000
CHUNK = 1024 * 1024
ROLES = ("train", "validation", "test", "evaluation")
# PEP 508 project names, as the registry accepts them.
_PACKAGE_NAME = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$", re.IGNORECASE)


# --- Hashing ----------------------------------------------------------------------------------


def sha256_of(path: Path) -> Any:
    """A running ``hashlib.sha256`` object over the bytes of ``path`` so far (to continue it)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest


def sha256_file(path: Path, progress: Any | None = None) -> str:
    """The SHA-256 of a file, read in 1 MiB chunks (``progress(n)`` is called per chunk)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            if progress is not None:
                progress(len(chunk))
    return digest.hexdigest()


def iter_files(root: Path) -> Iterator[tuple[str, Path]]:
    """``(relative POSIX path, absolute path)`` of every regular file under ``root``, sorted."""
    if root.is_file():
        yield root.name, root
        return
    found = []
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        for name in names:
            full = Path(folder) / name
            if full.is_file():
                found.append((full.relative_to(root).as_posix(), full))
    yield from sorted(found)


def manifest_digest(entries: Iterable[tuple[str, str, int]]) -> str:
    """SHA-256 over sorted ``path\\0sha256\\0size\\n`` lines: the registry's manifest digest."""
    digest = hashlib.sha256()
    for path, sha, size in sorted(entries):
        digest.update(f"{path}\0{sha}\0{size}\n".encode())
    return digest.hexdigest()


# --- Code ---------------------------------------------------------------------------------------


def _git(repo: Path, *args: str) -> bytes | None:
    if shutil.which("git") is None:
        return None
    try:
        result = subprocess.run(  # noqa: S603 - fixed argv, no shell
            ["git", "-C", str(repo), *args],  # noqa: S607
            capture_output=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout if result.returncode == 0 else None


def _text(value: bytes | None) -> str:
    return value.decode("utf-8", "replace").strip() if value else ""


def strip_credentials(url: str) -> str:
    """``https://user:secret@host/x.git`` → ``https://host/x.git``; scp-like ``git@host:x`` is kept."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    if parts.scheme == "ssh":  # ssh://git@host/x: the user name is no secret, a password would be
        user = parts.netloc.rsplit("@", 1)[0].split(":", 1)[0]
        host = f"{user}@{host}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def capture_code(directory: Path, entrypoint: str | None = None) -> dict[str, Any] | None:
    """The git revision ``directory`` is in, or None outside a repository (or with no commit)."""
    top = _text(_git(directory, "rev-parse", "--show-toplevel"))
    commit = _text(_git(directory, "rev-parse", "--verify", "HEAD"))
    if not top or not commit:
        return None
    repo = Path(top)
    remotes = _text(_git(repo, "remote")).split()
    remote = "origin" if "origin" in remotes else (remotes[0] if remotes else "")
    repo_url = strip_credentials(_text(_git(repo, "remote", "get-url", remote))) if remote else ""
    branch = _text(_git(repo, "rev-parse", "--abbrev-ref", "HEAD"))
    if branch in ("", "HEAD"):  # detached, as in most CI checkouts
        branch = os.environ.get("GITHUB_HEAD_REF") or os.environ.get("GITHUB_REF_NAME") or ""
        branch = branch or os.environ.get("CI_COMMIT_REF_NAME", "")
    status = _git(repo, "status", "--porcelain")
    dirty = bool(_text(status))
    diff_digest = ""
    if dirty:
        diff = _git(repo, "diff", "HEAD", "--binary") or b""
        diff_digest = "sha256:" + hashlib.sha256(diff).hexdigest()
    listed = _text(_git(repo, "rev-list", f"--max-count={MAX_ANCESTORS + 1}", commit)).split()
    ancestors = [sha for sha in listed if sha != commit][:MAX_ANCESTORS]
    committed_at = _text(_git(repo, "show", "-s", "--format=%cI", commit)) or None
    return {
        "repo_url": repo_url,
        "commit": commit,
        "branch": branch,
        "dirty": dirty,
        "diff_digest": diff_digest,
        "entrypoint": entrypoint if entrypoint is not None else _default_entrypoint(repo),
        "committed_at": committed_at,
        "ancestors": ancestors,
    }


def _default_entrypoint(repo: Path) -> str:
    """The running script relative to the repository (when the Python API is called from it)."""
    if os.environ.get("MODELYARD_ENTRYPOINT"):
        return os.environ["MODELYARD_ENTRYPOINT"]
    main = sys.argv[0] if sys.argv else ""
    if not main or main == "-c" or Path(main).name in ("modelyard", "__main__.py"):
        return ""
    try:
        return Path(main).resolve().relative_to(repo.resolve()).as_posix()
    except ValueError:
        return Path(main).name


# --- Environment ------------------------------------------------------------------------------


def _accelerator() -> str:
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],  # noqa: S607
                capture_output=True,
                timeout=20,
                check=False,
                text=True,
            )
        except (OSError, subprocess.TimeoutExpired):
            out = None
        if out is not None and out.returncode == 0 and out.stdout.strip():
            names = [line.strip() for line in out.stdout.splitlines() if line.strip()]
            return f"cuda: {len(names)} x {names[0]}"[:200]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    if visible and visible != "-1":
        return f"cuda: CUDA_VISIBLE_DEVICES={visible}"[:200]
    return ""


def installed_packages() -> list[dict[str, str]]:
    """``[{"name", "version"}]`` of the distributions the running interpreter can import."""
    from importlib import metadata

    seen: dict[str, dict[str, str]] = {}
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").strip()
        version = (dist.version or "").strip()
        if not name or not version or not _PACKAGE_NAME.match(name) or len(version) > 100:
            continue
        seen.setdefault(re.sub(r"[-_.]+", "-", name).lower(), {"name": name, "version": version})
    return sorted(seen.values(), key=lambda p: p["name"].lower())[:5000]


def capture_environment() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": f"{sys.platform}-{platform.machine().lower()}",
        "accelerator": _accelerator(),
        "packages": installed_packages(),
    }


# --- Data ---------------------------------------------------------------------------------------


def _uri_version(uri: str) -> str:
    """The store's version id or ETag of ``uri`` when it can be asked cheaply, else ``unversioned``."""
    if uri.startswith("s3://"):
        try:
            import boto3  # optional: pip install 'modelyard[s3]'
            from botocore.config import Config
        except ImportError:
            return "unversioned"
        bucket, _, key = uri[5:].partition("/")
        try:
            session = boto3.session.Session()
            if session.get_credentials() is None:
                return "unversioned"
            client = session.client("s3", config=Config(connect_timeout=5, read_timeout=10, retries={}))
            head = client.head_object(Bucket=bucket, Key=key)
        except Exception:  # any store problem: the URI is still recorded
            return "unversioned"
        if head.get("VersionId") and head["VersionId"] != "null":
            return f"version_id:{head['VersionId']}"
        if head.get("ETag"):
            return f"etag:{head['ETag'].strip(chr(34))}"
    return "unversioned"


def dataset_entry(spec: str) -> dict[str, Any]:
    """``ROLE=PATH_OR_URI`` → a lineage dataset: a local path is hashed, a URI recorded as is."""
    role, sep, target = spec.partition("=")
    role = role.strip().lower()
    if not sep or not target:
        raise ModelyardError(f"--dataset {spec!r}: write ROLE=PATH_OR_URI, e.g. train=data/train.csv")
    if role not in ROLES:
        raise ModelyardError(f"--dataset {spec!r}: the role must be one of {', '.join(ROLES)}")
    if "://" in target and not target.startswith("file://"):
        name = target.rstrip("/").rsplit("/", 1)[-1] or target
        return {"name": name[:255], "uri": target, "digest": _uri_version(target), "role": role}
    path = Path(target[7:] if target.startswith("file://") else target).expanduser()
    if not path.exists():
        raise ModelyardError(f"--dataset {spec!r}: {path} does not exist")
    entry: dict[str, Any] = {"name": path.resolve().name[:255], "uri": path.resolve().as_uri(), "role": role}
    if path.is_file():
        entry["digest"] = "sha256:" + sha256_file(path)
        entry["size"] = path.stat().st_size
    else:
        lines = [(rel, sha256_file(full), full.stat().st_size) for rel, full in iter_files(path)]
        entry["digest"] = "sha256:" + manifest_digest(lines)
        entry["size"] = sum(size for _, _, size in lines)
        entry["schema"] = {
            "kind": "directory",
            "files": len(lines),
            "manifest": "sha256 of path\\0sha\\0size",
        }
    return entry


# --- Pipeline -----------------------------------------------------------------------------------


def capture_pipeline(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Run id, pipeline and step from GitHub Actions, GitLab CI, Airflow, Kubeflow or Argo."""
    env = os.environ if environ is None else environ
    run: dict[str, Any] = {"tags": {}}
    if env.get("GITHUB_ACTIONS") == "true" and env.get("GITHUB_RUN_ID"):
        run.update(
            id=env["GITHUB_RUN_ID"], pipeline=env.get("GITHUB_WORKFLOW", ""), step=env.get("GITHUB_JOB", "")
        )
        run["user"] = env.get("GITHUB_ACTOR", "")
        run["tags"] = {"ci": "github-actions", "run_attempt": env.get("GITHUB_RUN_ATTEMPT", "")}
        if env.get("GITHUB_SERVER_URL") and env.get("GITHUB_REPOSITORY"):
            base = f"{env['GITHUB_SERVER_URL']}/{env['GITHUB_REPOSITORY']}"
            run["tags"]["run_url"] = f"{base}/actions/runs/{env['GITHUB_RUN_ID']}"
    elif env.get("GITLAB_CI") == "true" and env.get("CI_PIPELINE_ID"):
        run.update(
            id=env["CI_PIPELINE_ID"], pipeline=env.get("CI_PROJECT_PATH", ""), step=env.get("CI_JOB_NAME", "")
        )
        run["user"] = env.get("GITLAB_USER_LOGIN", "")
        run["tags"] = {
            "ci": "gitlab-ci",
            "job_id": env.get("CI_JOB_ID", ""),
            "run_url": env.get("CI_PIPELINE_URL", ""),
        }
    elif env.get("AIRFLOW_CTX_DAG_RUN_ID"):
        run.update(
            id=env["AIRFLOW_CTX_DAG_RUN_ID"],
            pipeline=env.get("AIRFLOW_CTX_DAG_ID", ""),
            step=env.get("AIRFLOW_CTX_TASK_ID", ""),
        )
        run["tags"] = {"ci": "airflow", "try_number": env.get("AIRFLOW_CTX_TRY_NUMBER", "")}
    elif env.get("KFP_RUN_ID"):
        run.update(
            id=env["KFP_RUN_ID"], pipeline=env.get("KFP_PIPELINE_NAME", ""), step=env.get("KFP_POD_NAME", "")
        )
        run["tags"] = {"ci": "kubeflow"}
    elif env.get("ARGO_WORKFLOW_NAME") or env.get("ARGO_NODE_ID"):
        run.update(
            id=env.get("ARGO_WORKFLOW_NAME") or env["ARGO_NODE_ID"],
            pipeline=env.get("ARGO_WORKFLOW_NAME", ""),
            step=env.get("ARGO_POD_NAME", ""),
        )
        run["tags"] = {"ci": "argo", "node_id": env.get("ARGO_NODE_ID", "")}
    if env.get("MODELYARD_RUN_ID"):
        run["id"] = env["MODELYARD_RUN_ID"]
    if not run.get("user"):
        try:
            run["user"] = getpass.getuser()
        except Exception:  # no login name (some containers)
            run["user"] = ""
    run["tags"] = {k: str(v)[:5000] for k, v in run["tags"].items() if v}
    for key in ("id", "pipeline", "step", "user"):
        if key in run:
            run[key] = str(run[key])[:255]
    return run


def read_json_object(path: str | None, what: str) -> dict[str, Any]:
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except OSError as exc:
        raise ModelyardError(f"--{what} {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise ModelyardError(f"--{what} {path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ModelyardError(f"--{what} {path}: expected a JSON object of name → value")
    return data


def build_document(
    *,
    code_dir: Path | None,
    entrypoint: str | None,
    datasets: Iterable[str],
    params: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    parents: Iterable[dict[str, Any]] = (),
    environment: bool = True,
) -> dict[str, Any]:
    """The whole lineage document for ``PUT …/versions/{v}/lineage``."""
    for key, value in (metrics or {}).items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ModelyardError(f"--metrics: {key!r} is not a number ({value!r})")
    run = capture_pipeline()
    run["params"] = params or {}
    run["metrics"] = metrics or {}
    document: dict[str, Any] = {
        "datasets": [dataset_entry(spec) for spec in datasets],
        "run": run,
        "parents": list(parents),
    }
    if code_dir is not None:
        code = capture_code(code_dir, entrypoint)
        if code is not None:
            document["code"] = code
    if environment:
        document["environment"] = capture_environment()
    from modelyard import __version__

    document["extra"] = {"client": {"name": "modelyard", "version": __version__}}
    return document
