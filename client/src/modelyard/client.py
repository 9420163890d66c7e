"""``modelyard.Client``: the registry's API from Python, and the transfers behind push and pull."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union
from urllib.parse import quote

import httpx

from modelyard import __version__, config, lineage
from modelyard._http import RateLimiter, env_size, error_from_response, json_or_none, with_retries
from modelyard._progress import Advance, Progress
from modelyard.errors import APIError, ConfigurationError, DigestMismatch, ModelyardError, RegistryUnreachable

PathLike = Union[str, "os.PathLike[str]"]
CHUNK = 1024 * 1024
PARTIAL_SUFFIX = ".modelyard-part"
_FAILED_STATES = {"failed", "error", "errored", "crashed", "stopped", "deleted", "cancelled"}
_PENDING_STATES = {"", "pending", "queued", "requested", "building", "starting", "deploying", "creating"}


@dataclass
class Ref:
    """``NAME``, ``NAME:VERSION`` or ``NAME@ALIAS``."""

    model: str
    version: int | None = None
    alias: str | None = None

    @classmethod
    def parse(cls, text: str) -> Ref:
        if "@" in text:
            model, alias = text.split("@", 1)
            if not model or not alias:
                raise ModelyardError(f"{text!r}: write NAME@ALIAS")
            return cls(model, alias=alias)
        if ":" in text:
            model, raw = text.rsplit(":", 1)
            number = raw[1:] if raw.lower().startswith("v") else raw
            if not model or not number.isdigit():
                raise ModelyardError(f"{text!r}: write NAME:VERSION with a version number, e.g. churn:3")
            return cls(model, version=int(number))
        if not text:
            raise ModelyardError("Name a model.")
        return cls(text)

    def __str__(self) -> str:
        if self.alias:
            return f"{self.model}@{self.alias}"
        return f"{self.model}:{self.version}" if self.version else self.model


@dataclass
class PushResult:
    model: str
    version: int
    url: str
    files: int
    uploaded: list[str] = field(default_factory=list)
    attached: list[str] = field(default_factory=list)
    bytes_sent: int = 0
    resumed: bool = False
    alias: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


@dataclass
class PullResult:
    model: str
    version: int
    directory: str
    files: int
    downloaded: list[str] = field(default_factory=list)
    already_present: list[str] = field(default_factory=list)
    bytes_received: int = 0

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


class _ResumeState:
    """Small JSON files under the state folder, one per key; losing them only costs a re-send."""

    def __init__(self) -> None:
        self.folder = config.state_dir() / "resume"

    def _path(self, *key: object) -> Path:
        digest = hashlib.sha256(json.dumps([str(k) for k in key]).encode()).hexdigest()[:32]
        return self.folder / f"{digest}.json"

    def get(self, *key: object) -> dict[str, Any] | None:
        try:
            return json.loads(self._path(*key).read_text())
        except (OSError, ValueError):
            return None

    def put(self, value: dict[str, Any], *key: object) -> None:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self._path(*key)
        tmp = path.with_name(path.name + f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(value))
        os.replace(tmp, path)

    def drop(self, *key: object) -> None:
        self._path(*key).unlink(missing_ok=True)


class _FileReader:
    """Streams ``length`` bytes of a file from ``offset`` in chunks, reporting progress."""

    def __init__(self, path: Path, offset: int, length: int, advance: Advance, limiter: RateLimiter) -> None:
        self.path, self.offset, self.length = path, offset, length
        self.advance, self.limiter = advance, limiter
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            left = self.length
            while left > 0:
                chunk = handle.read(min(CHUNK, left))
                if not chunk:
                    raise ModelyardError(f"{self.path} changed while it was being uploaded")
                left -= len(chunk)
                self.limiter.consume(len(chunk))
                self.sent += len(chunk)
                self.advance(len(chunk))
                yield chunk


class Client:
    """A session with one registry.

    ``Client(url=..., token=...)``; either falls back to ``MODELYARD_URL`` / ``MODELYARD_TOKEN``
    and then to the file written by ``modelyard login``.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        jobs: int | None = None,
        quiet: bool = True,
        timeout: float = 300.0,
    ) -> None:
        url, token = config.resolve(url, token)
        if not url:
            raise ConfigurationError("No registry URL: set MODELYARD_URL or run `modelyard login`.")
        if not url.startswith(("http://", "https://")):
            raise ConfigurationError(f"The registry URL must start with http:// or https:// (got {url!r}).")
        self.url = url.rstrip("/")
        self.token = token
        self.quiet = quiet
        self.jobs = jobs or int(os.environ.get("MODELYARD_JOBS") or 4)
        self.multipart_threshold = env_size("MODELYARD_MULTIPART_THRESHOLD", 64 * 1024**2)
        self.part_size: int | None = env_size("MODELYARD_PART_SIZE", 0) or None
        self.limiter = RateLimiter()
        headers = {"User-Agent": f"modelyard-client/{__version__}", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        limits = httpx.Limits(max_connections=self.jobs * 2 + 4, max_keepalive_connections=self.jobs * 2)
        tmo = httpx.Timeout(timeout, connect=15.0)
        self._http = httpx.Client(base_url=self.url + "/api/v1/", headers=headers, timeout=tmo, limits=limits)
        # Presigned object-store URLs get no registry credentials.
        self._bare = httpx.Client(timeout=tmo, limits=limits, headers={"User-Agent": headers["User-Agent"]})
        self._resume = _ResumeState()

    def close(self) -> None:
        self._http.close()
        self._bare.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- Plumbing -----------------------------------------------------------------------------

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            raise RegistryUnreachable(f"Cannot reach the registry at {self.url}: {_one_line(exc)}") from exc
        except httpx.TimeoutException as exc:
            raise RegistryUnreachable(f"The registry at {self.url} did not answer in time") from exc
        if response.status_code >= 400:
            raise error_from_response(response)
        return response

    def request(self, method: str, path: str, *, retry: bool = True, **kwargs: Any) -> Any:
        """One API call (``path`` relative to ``/api/v1/``); the JSON answer, errors raised as APIError."""
        safe = retry and method in ("GET", "HEAD", "PUT", "DELETE")

        def send() -> httpx.Response:
            return self._send(method, path, **kwargs)

        response = with_retries(send, what=f"{method} {path}") if safe else send()
        return json_or_none(response)

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def _paged(self, path: str, limit: int | None = None, **params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        page = 1
        while True:
            body = self.get(path, page=page, page_size=min(limit or 1000, 1000), **params)
            if isinstance(body, list):
                return body[:limit] if limit else body
            items += body.get("results", [])
            if not body.get("next") or (limit and len(items) >= limit):
                return items[:limit] if limit else items
            page += 1

    @staticmethod
    def _m(name: str) -> str:
        return quote(name, safe="")

    def web_url(self, model: str, version: int | None = None) -> str:
        if version is None:
            return f"{self.url}/models/{self._m(model)}/"
        return f"{self.url}/models/{self._m(model)}/versions/{version}/"

    # --- Reads ----------------------------------------------------------------------------------

    def whoami(self) -> list[dict[str, Any]]:
        """Checks the token works (lists its user's tokens; 401 when it is bad)."""
        return self._paged("tokens/", limit=1)

    def models(self, *, query: str | None = None, team: str | None = None, limit: int | None = None):
        return self._paged("models/", limit=limit, q=query, team=team, ordering="name")

    def model(self, name: str) -> dict[str, Any]:
        return self.get(f"models/{self._m(name)}/")

    def versions(self, name: str, *, status: str | None = None, limit: int | None = None):
        return self._paged(f"models/{self._m(name)}/versions/", limit=limit, status=status)

    def version(self, name: str, version: int) -> dict[str, Any]:
        return self.get(f"models/{self._m(name)}/versions/{int(version)}/")

    def resolve(self, ref: str | Ref) -> tuple[str, int]:
        """``(model name, version number)``: an alias resolved now, no version = newest READY one."""
        ref = Ref.parse(ref) if isinstance(ref, str) else ref
        if ref.version:
            return ref.model, ref.version
        if ref.alias:
            body = self.get(f"models/{self._m(ref.model)}/aliases/{quote(ref.alias, safe='')}")
            return ref.model, int(body["version"])
        ready = self.versions(ref.model, status="READY", limit=1)
        if not ready:
            raise ModelyardError(f"Model {ref.model!r} has no READY version yet.")
        return ref.model, int(ready[0]["version"])

    def files(self, name: str, version: int) -> list[dict[str, Any]]:
        return self.get(f"models/{self._m(name)}/versions/{int(version)}/files/")

    def lineage(self, ref: str | Ref) -> dict[str, Any]:
        name, number = self.resolve(ref)
        return self.get(f"models/{self._m(name)}/versions/{number}/lineage")

    def exposure(self, package: str, specifier: str, *, stage: str | None = None) -> dict[str, Any]:
        return self.get("lineage/exposure", package=package, specifier=specifier, stage=stage)

    def compare(self, a: str | Ref, b: str | Ref) -> dict[str, Any]:
        model_a, number_a = self.resolve(a)
        model_b, number_b = self.resolve(b)
        return self.get(
            f"models/{self._m(model_a)}/versions/compare", a=number_a, b=number_b, model_b=model_b
        )

    # --- Governance -----------------------------------------------------------------------------

    def promote(
        self,
        ref: str | Ref,
        *,
        to: str,
        comment: str = "",
        alias: str | None = None,
        override_reason: str | None = None,
    ) -> dict[str, Any]:
        name, number = self.resolve(ref)
        body: dict[str, Any] = {"target_stage": to}
        if comment:
            body["comment"] = comment
        if alias:
            body["alias"] = alias
        if override_reason:
            body["override_reason"] = override_reason
        return self.request("POST", f"models/{self._m(name)}/versions/{number}/promotions", json=body)

    def approve(self, promotion_id: int, *, comment: str = "") -> dict[str, Any]:
        body = {"comment": comment} if comment else {}
        return self.request("POST", f"promotions/{int(promotion_id)}/approve", json=body)

    def set_alias(self, name: str, alias: str, version: int) -> dict[str, Any]:
        return self.request(
            "PUT", f"models/{self._m(name)}/aliases/{quote(alias, safe='')}", json={"version": int(version)}
        )

    # --- Deployments ----------------------------------------------------------------------------

    def deploy(
        self,
        ref: str | Ref,
        *,
        target: str,
        name: str | None = None,
        wait: bool = True,
        timeout: float = 600.0,
    ) -> dict[str, Any]:
        """``POST /deployments/``; with ``wait``, poll until it has an endpoint or has failed."""
        ref = Ref.parse(ref) if isinstance(ref, str) else ref
        body: dict[str, Any] = {"model": ref.model, "target": target}
        if ref.alias:
            body["alias"] = ref.alias
        else:
            body["version"] = self.resolve(ref)[1]
        body["name"] = name or f"{ref.model}-{ref.alias or 'v' + str(body['version'])}".lower()[:63]
        deployment = self.request("POST", "deployments/", json=body)
        if not wait:
            return deployment
        return self.wait_for_deployment(deployment["id"], timeout=timeout)

    def deployment(self, deployment_id: int | str) -> dict[str, Any]:
        return self.get(f"deployments/{quote(str(deployment_id), safe='')}/")

    def deployments(self, *, name: str | None = None) -> list[dict[str, Any]]:
        return self._paged("deployments/", name=name)

    def wait_for_deployment(self, deployment_id: int | str, *, timeout: float = 600.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        delay = 0.5
        while True:
            current = self.deployment(deployment_id)
            status = str(current.get("status", "")).lower()
            if status in _FAILED_STATES:
                message = current.get("status_message") or current.get("message") or status
                raise ModelyardError(f"Deployment {deployment_id} {status}: {_one_line(message)}")
            if current.get("endpoint_url") and status not in _PENDING_STATES:
                return current
            if time.monotonic() > deadline:
                raise ModelyardError(
                    f"Deployment {deployment_id} is still {status or 'pending'} after {int(timeout)} s."
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 5.0)

    def _deployment_id(self, deployment: int | str) -> str:
        text = str(deployment)
        if text.isdigit():
            return text
        found = [d for d in self.deployments(name=text) if d.get("name") == text] or self.deployments(
            name=text
        )
        if not found:
            raise ModelyardError(f"No deployment named {text!r}.")
        return str(found[0]["id"])

    def predict(self, deployment: int | str, payload: Any) -> dict[str, Any]:
        """Score ``payload`` (MLflow scoring JSON: ``dataframe_split``, ``inputs``…) on a deployment."""
        return self.request("POST", f"deployments/{self._deployment_id(deployment)}/predict", json=payload)

    # --- Push -----------------------------------------------------------------------------------

    def _ensure_model(self, name: str, team: str | None) -> dict[str, Any]:
        try:
            return self.model(name)
        except APIError as exc:
            if exc.status != 404:
                raise
        body: dict[str, Any] = {"name": name}
        if team:
            body["team"] = team
        try:
            return self.request("POST", "models/", json=body)
        except APIError as exc:
            if exc.status == 409:  # created concurrently
                return self.model(name)
            if exc.status == 400 and "team" in exc.fields and not team:
                raise ModelyardError(f"{exc.message} Give it with --team TEAM (team=… in Python).") from exc
            raise

    def push(
        self,
        path: PathLike,
        *,
        model: str,
        team: str | None = None,
        datasets: Sequence[str] = (),
        params: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
        parents: Sequence[str] = (),
        parent_relation: str = "fine_tuned_from",
        alias: str | None = None,
        description: str = "",
        entrypoint: str | None = None,
        code_dir: PathLike | None = None,
        capture_lineage: bool = True,
    ) -> PushResult:
        """Create a version of ``model`` from a file or directory, with its lineage, and finalize it.

        Resumable: run the same push again after an interruption and it continues the same
        PENDING version, sending only what the registry does not have yet.
        """
        root = Path(path)
        if not root.exists():
            raise ModelyardError(f"{root} does not exist")
        entries = list(lineage.iter_files(root))
        if not entries:
            raise ModelyardError(f"{root} holds no files")
        parent_links = []
        for text in parents:
            parent = Ref.parse(text)
            if not parent.version and not parent.alias:
                raise ModelyardError(f"--parent {text!r}: write MODEL:VERSION")
            try:
                parent_name, parent_version = self.resolve(parent)
                parent_name = self.version(parent_name, parent_version)["model"]
            except APIError as exc:
                if exc.status != 404:
                    raise
                raise ModelyardError(f"--parent {text}: no such version that you can see") from exc
            parent_links.append(
                {"model": parent_name, "version": parent_version, "relation": parent_relation}
            )
        document = None
        if capture_lineage:
            document = lineage.build_document(
                code_dir=Path(code_dir) if code_dir else Path.cwd(),
                entrypoint=entrypoint,
                datasets=datasets,
                params=params,
                metrics=metrics,
                parents=parent_links,
            )
        local = self._hash_files(entries)
        digest = lineage.manifest_digest((rel, sha, size) for rel, _, sha, size in local)

        model_body = self._ensure_model(model, team)
        name = model_body["name"]
        push_key = ("push", self.url, name.lower(), root.resolve(), digest)
        state = self._resume.get(*push_key)
        version_number, resumed = None, False
        if state:
            try:
                if self.version(name, state["version"])["status"] == "PENDING":
                    version_number, resumed = int(state["version"]), True
            except APIError as exc:
                if exc.status != 404:
                    raise
        if version_number is None:
            created = self.request(
                "POST",
                f"models/{self._m(name)}/versions/",
                json={"description": description} if description else {},
            )
            version_number = int(created["version"])
            self._resume.put({"version": version_number}, *push_key)
        result = PushResult(
            name, version_number, self.web_url(name, version_number), len(local), resumed=resumed
        )

        base = f"models/{self._m(name)}/versions/{version_number}"
        present = {f["path"]: f["sha256"] for f in self.files(name, version_number)}
        wanted = [(rel, full, sha, size) for rel, full, sha, size in local if present.get(rel) != sha]
        missing = self._attach(base, wanted, result)
        with Progress(self.quiet) as progress:
            small = [m for m in missing if m[3] < self.multipart_threshold]
            large = [m for m in missing if m[3] >= self.multipart_threshold]
            with ThreadPoolExecutor(max_workers=self.jobs) as pool:
                sent = list(pool.map(lambda m: self._upload_small(base, m, progress), small))
            for item in large:
                sent.append(self._upload_multipart(base, item, progress))
        result.bytes_sent = sum(sent)
        result.uploaded = [m[0] for m in missing]
        if document is not None:
            self.request("PUT", f"{base}/lineage", json=document)
        self.request("POST", f"{base}/finalize")
        self._resume.drop(*push_key)  # READY: a rerun makes a new version
        if alias:
            self.set_alias(name, alias, version_number)
            result.alias = alias
        return result

    def _hash_files(self, entries: list[tuple[str, Path]]) -> list[tuple[str, Path, str, int]]:
        total = sum(full.stat().st_size for _, full in entries)
        with Progress(self.quiet) as progress:
            advance = progress.task("hashing", total)

            def one(entry: tuple[str, Path]) -> tuple[str, Path, str, int]:
                rel, full = entry
                return rel, full, lineage.sha256_file(full, advance), full.stat().st_size

            with ThreadPoolExecutor(max_workers=min(self.jobs, 4)) as pool:
                return list(pool.map(one, entries))

    def _attach(
        self, base: str, wanted: list[tuple[str, Path, str, int]], result: PushResult
    ) -> list[tuple[str, Path, str, int]]:
        """Attach what the registry already holds by SHA-256; returns the files still to send."""
        missing: list[tuple[str, Path, str, int]] = []
        for start in range(0, len(wanted), 1000):
            batch = wanted[start : start + 1000]
            body = self.request(
                "POST",
                f"{base}/files/",
                json={"files": [{"path": rel, "sha256": sha} for rel, _, sha, _ in batch]},
            )
            gone = {(m["path"], m["sha256"]) for m in body["missing"]}
            result.attached += [a["path"] for a in body["attached"]]
            missing += [item for item in batch if (item[0], item[2]) in gone]
        return missing

    def _upload_small(self, base: str, item: tuple[str, Path, str, int], progress: Progress) -> int:
        rel, full, sha, size = item
        advance = progress.task(f"upload {rel}", size)
        readers: list[_FileReader] = []

        def send() -> httpx.Response:
            reader = _FileReader(full, 0, size, advance, self.limiter)
            readers.append(reader)
            return self._send(
                "PUT",
                f"{base}/files/{quote(rel)}",
                content=iter(reader),
                headers={
                    "Content-Length": str(size),
                    "Content-Type": "application/octet-stream",
                    "X-Content-SHA256": sha,
                },
            )

        with_retries(send, what=f"upload of {rel}")
        return sum(r.sent for r in readers)

    def _session(self, base: str, rel: str, sha: str, size: int) -> dict[str, Any]:
        key = ("upload", self.url, base, rel, sha)
        state = self._resume.get(*key)
        if state:
            try:
                session = self.get(f"uploads/{state['upload_id']}")
                if session.get("state") == "open":
                    return session
            except APIError as exc:
                if exc.status not in (404, 409):
                    raise
        body: dict[str, Any] = {"size": size, "sha256": sha}
        if self.part_size:
            body["part_size"] = self.part_size
        session = self.request("POST", f"{base}/files/{quote(rel)}/multipart", json=body)
        self._resume.put({"upload_id": session["upload_id"]}, *key)
        return session

    def _upload_multipart(self, base: str, item: tuple[str, Path, str, int], progress: Progress) -> int:
        """Upload one file in parts, in parallel, resuming a session an earlier run left open."""
        rel, full, sha, size = item
        session = self._session(base, rel, sha, size)
        part_size = int(session["part_size"])
        to_s3 = session["target"] == "s3"
        advance = progress.task(f"upload {rel}", size)
        advance(sum(int(p.get("size", 0)) for p in session.get("uploaded_parts", [])))
        sent = [0]
        lock = threading.Lock()

        def put_part(part: dict[str, Any]) -> None:
            number = int(part["part_number"])
            offset = (number - 1) * part_size
            length = min(part_size, size - offset)
            url = part["url"]

            def send() -> httpx.Response:
                reader = _FileReader(full, offset, length, advance, self.limiter)
                headers = {"Content-Length": str(length), "Content-Type": "application/octet-stream"}
                try:
                    if to_s3:
                        response = self._bare.put(url, content=iter(reader), headers=headers)
                        if response.status_code >= 400:
                            raise error_from_response(response)
                    else:
                        response = self._send("PUT", url, content=iter(reader), headers=headers)
                finally:
                    with lock:
                        sent[0] += reader.sent
                return response

            with_retries(send, what=f"part {number} of {rel}")

        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            list(pool.map(put_part, session["parts"]))
        self.request("POST", session["complete_url"])
        self._resume.drop("upload", self.url, base, rel, sha)
        return sent[0]

    # --- Pull -----------------------------------------------------------------------------------

    def pull(self, ref: str | Ref, directory: PathLike) -> PullResult:
        """Download every file of a version into ``directory``, verifying each SHA-256.

        Files already there with the right digest are kept; partial downloads resume (Range).
        """
        name, number = self.resolve(ref)
        dest = Path(directory)
        dest.mkdir(parents=True, exist_ok=True)
        listing = self.files(name, number)
        result = PullResult(name, number, str(dest), len(listing))
        base = f"models/{self._m(name)}/versions/{number}/files"
        errors: list[str] = []
        lock = threading.Lock()
        with Progress(self.quiet) as progress:

            def one(item: dict[str, Any]) -> None:
                try:
                    received = self._download(base, item, dest, progress)
                except DigestMismatch as exc:
                    with lock:
                        errors.append(str(exc))
                    return
                with lock:
                    if received is None:
                        result.already_present.append(item["path"])
                    else:
                        result.downloaded.append(item["path"])
                        result.bytes_received += received

            with ThreadPoolExecutor(max_workers=self.jobs) as pool:
                list(pool.map(one, listing))
        if errors:
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            raise DigestMismatch(errors[0] + more)
        return result

    @staticmethod
    def _target(dest: Path, rel: str) -> Path:
        target = (dest / rel).resolve()
        if dest.resolve() not in target.parents:
            raise ModelyardError(f"Refusing to write {rel!r} outside {dest}")
        return target

    def _download(self, base: str, item: dict[str, Any], dest: Path, progress: Progress) -> int | None:
        rel, sha, size = item["path"], item["sha256"], int(item["size"])
        target = self._target(dest, rel)
        if target.is_file() and target.stat().st_size == size and lineage.sha256_file(target) == sha:
            return None
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + PARTIAL_SUFFIX)
        if partial.exists() and partial.stat().st_size > size:
            partial.unlink()
        advance = progress.task(f"download {rel}", size)
        received = [0]
        hashed: dict[str, Any] = {}  # the digest of the partial file, computed while it is written

        def fetch() -> None:
            offset = partial.stat().st_size if partial.exists() else 0
            if offset >= size:
                partial.touch()  # an empty file, or every byte already there
                return
            # identity: the bytes as stored, read raw (httpx's re-chunking decoder costs ~2x here)
            headers = {"Accept-Encoding": "identity"}
            if offset:
                headers.update({"Range": f"bytes={offset}-", "If-Range": f'"{sha}"'})
            url = f"{base}/{quote(rel)}"
            try:
                with self._http.stream("GET", url, headers=headers) as response:
                    if response.status_code in (301, 302, 303, 307, 308):
                        location = response.headers["Location"]
                        with self._bare.stream("GET", location, headers=headers) as redirected:
                            self._write_body(redirected, partial, offset, sha, advance, received, hashed)
                    else:
                        self._write_body(response, partial, offset, sha, advance, received, hashed)
            except httpx.ConnectError as exc:
                raise RegistryUnreachable(
                    f"Cannot reach the registry at {self.url}: {_one_line(exc)}"
                ) from exc

        with_retries(fetch, what=f"download of {rel}")
        got = hashed["digest"].hexdigest() if "digest" in hashed else lineage.sha256_file(partial)
        if got != sha:
            partial.unlink(missing_ok=True)
            raise DigestMismatch(
                f"{rel}: the downloaded bytes have SHA-256 {got}, the registry announced {sha}; "
                "the stored file is corrupt or was altered in transit (nothing was kept)"
            )
        os.replace(partial, target)
        return received[0]

    def _write_body(
        self,
        response: httpx.Response,
        partial: Path,
        offset: int,
        sha: str,
        advance: Advance,
        received: list[int],
        hashed: dict[str, Any],
    ) -> None:
        if response.status_code >= 400:
            response.read()
            if response.status_code == 416:
                return
            raise error_from_response(response)
        etag = response.headers.get("ETag", "").strip('"')
        announced = response.headers.get("X-Content-SHA256") or (etag if len(etag) == 64 else "")
        if announced and announced != sha:
            raise DigestMismatch(f"{partial.name}: the registry sent content {announced}, expected {sha}")
        if response.headers.get("Content-Encoding", "identity").lower() != "identity":
            raise ModelyardError(
                f"{partial.name}: the server sent an encoded body despite Accept-Encoding: identity"
            )
        mode = "ab" if response.status_code == 206 and offset else "wb"
        if mode == "wb" and offset:
            advance(-offset)
        hashed.pop("digest", None)
        digest = lineage.sha256_of(partial) if mode == "ab" else hashlib.sha256()
        with open(partial, mode) as handle:
            for chunk in response.iter_raw():
                handle.write(chunk)
                digest.update(chunk)
                self.limiter.consume(len(chunk))
                received[0] += len(chunk)
                advance(len(chunk))
        hashed["digest"] = digest


def _one_line(value: object) -> str:
    return " ".join(str(value).split()) or type(value).__name__


def iter_refs(values: Iterable[str]) -> list[Ref]:
    return [Ref.parse(v) for v in values]
