"""Writes of lineage: the provenance document of a version, amendments, capture, advisories."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC
from functools import cache

from django.core.exceptions import ValidationError
from django.db import transaction
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from lineage_app.capture import environment_from_files, strip_credentials
from lineage_app.models import (
    Advisory,
    AdvisoryPackage,
    CodeRevision,
    CommitAncestor,
    Dataset,
    DatasetVersion,
    Environment,
    EnvironmentPackage,
    LineageAmendment,
    RunDataset,
    TrainingRun,
    VersionParent,
)
from models_app.models import ModelVersion
from models_app.services import _lock_pending_version, _require, audit_record
from registry_project import rawsql

MAX_ANCESTORS = 1000


# --- Shared rows ----------------------------------------------------------------------------


def environment_get_or_create(
    *, python: str = "", platform: str = "", accelerator: str = "", packages: list[tuple[str, str]]
) -> Environment:
    """The environment with exactly these facts, created once and shared (dedup by digest)."""
    return _environment_get_or_create(
        python=python, platform=platform, accelerator=accelerator, packages=packages
    )[0]


def _environment_get_or_create(
    *, python: str, platform: str, accelerator: str, packages: list[tuple[str, str]]
) -> tuple[Environment, list[tuple[str, str]]]:
    """``environment_get_or_create`` and its packages as stored: canonical names, by name."""
    normalized = sorted({canonicalize_name(name): version for name, version in packages}.items())
    digest = hashlib.sha256(
        json.dumps(
            {"python": python, "platform": platform, "accelerator": accelerator, "packages": normalized}
        ).encode()
    ).hexdigest()
    environment = _environment_lookup()(digest)
    if environment is not None:
        return environment, normalized
    with transaction.atomic():
        environment, created = Environment.objects.get_or_create(
            digest=digest, defaults={"python": python, "platform": platform, "accelerator": accelerator}
        )
        if created:
            EnvironmentPackage.objects.bulk_create(
                [EnvironmentPackage(environment=environment, name=n, version=v) for n, v in normalized]
            )
    return environment, normalized


class _EnvironmentLookup:
    """The environment with a digest, hand-written and prepared (every registration asks; the
    ORM compiled the query each time, see ``registry_project.rawsql``)."""

    def __init__(self) -> None:
        self.columns = rawsql.ModelColumns(Environment, "e")
        self.sql = f"SELECT {self.columns.sql} FROM {rawsql.table(Environment)} e WHERE e.digest = %s"  # noqa: S608

    def __call__(self, digest: str) -> Environment | None:
        rows = rawsql.fetch(self.sql, [digest], prepared=True)
        return self.columns.build(rows[0]) if rows else None


_environment_lookup = cache(_EnvironmentLookup)


def _code_get_or_create(code: dict) -> tuple[CodeRevision, list[str]]:
    ancestors = list(dict.fromkeys(code.get("ancestors") or []))[:MAX_ANCESTORS]
    revision = CodeRevision.objects.create(
        repo_url=strip_credentials(code.get("repo_url", "")),
        commit=code["commit"],
        branch=code.get("branch", ""),
        dirty=bool(code.get("dirty", False)),
        diff_digest=code.get("diff_digest", ""),
        entrypoint=code.get("entrypoint", ""),
        committed_at=code.get("committed_at"),
        ancestor_count=len(ancestors),
    )
    CommitAncestor.objects.bulk_create([CommitAncestor(revision=revision, sha=sha) for sha in ancestors])
    return revision, ancestors


def _dataset_version(entry: dict) -> DatasetVersion:
    dataset, _ = Dataset.objects.get_or_create(name=entry["name"], uri=entry.get("uri", ""))
    version, _ = DatasetVersion.objects.get_or_create(
        dataset=dataset,
        digest=entry["digest"],
        defaults={"size": entry.get("size"), "rows": entry.get("rows"), "schema": entry.get("schema")},
    )
    return version


# --- The document ---------------------------------------------------------------------------


@transaction.atomic
def lineage_set(*, actor, version: ModelVersion, document: dict) -> TrainingRun:
    """Replace the provenance of a PENDING version with ``document`` (validated by the caller).

    Frozen versions refuse (409): corrections go through ``lineage_amend``.
    """
    _require(actor, "models_app.change_modelversion", version)
    version = _lock_pending_version(version, frozen="its provenance is frozen; add an amendment")
    before = None
    if TrainingRun.objects.filter(version=version).exists():  # a new version has none: skip the cascade
        before = lineage_document(version=version)
        TrainingRun.objects.filter(version=version).delete()
    VersionParent.objects.filter(child=version).delete()
    written = _run_create(version, document)
    # The "after" state is built from the rows just written: the same shape lineage_document
    # reads back (a test compares the two), without reading them again.
    audit_record(actor=actor, action="lineage.set", obj=version, before=before, after=_document_of(**written))
    return written["run"]


def lineage_of_new_version(*, version: ModelVersion, document: dict) -> tuple[str, None, dict]:
    """Write ``document`` as the provenance of a version created in the caller's transaction
    (``model_version_register``'s ``provenance``, which has checked the permission): there is
    nothing to lock or replace. Returns the ``lineage.set`` audit entry ``lineage_set`` records."""
    return ("lineage.set", None, _document_of(**_run_create(version, document)))


def _run_create(version: ModelVersion, document: dict) -> dict:
    """Write the rows of ``document``; return them as ``_document_of``'s arguments."""
    run_doc = document.get("run") or {}
    environment = None
    packages: list[tuple[str, str]] = []
    if env := document.get("environment"):
        environment, packages = _environment_get_or_create(
            python=env.get("python", ""),
            platform=env.get("platform", ""),
            accelerator=env.get("accelerator", ""),
            packages=[(p["name"], p["version"]) for p in env.get("packages", [])],
        )
    code, ancestors = _code_get_or_create(document["code"]) if document.get("code") else (None, [])
    run = TrainingRun(
        version=version,
        external_id=run_doc.get("id", ""),
        pipeline=run_doc.get("pipeline", ""),
        step=run_doc.get("step", ""),
        user=run_doc.get("user", ""),
        status=run_doc.get("status", ""),
        started_at=run_doc.get("started_at"),
        ended_at=run_doc.get("ended_at"),
        params=run_doc.get("params") or {},
        metrics=run_doc.get("metrics") or {},
        tags=run_doc.get("tags") or {},
        extra=document.get("extra") or {},
        code=code,
        environment=environment,
    )
    rawsql.inserter(TrainingRun).insert([run])
    datasets: dict[int, RunDataset] = {}  # a dataset named twice is one row (get_or_create)
    for entry in document.get("datasets") or []:
        link, _ = RunDataset.objects.get_or_create(
            run=run, dataset_version=_dataset_version(entry), role=entry.get("role", "train")
        )
        datasets.setdefault(link.pk, link)
    parents = [
        VersionParent.objects.create(child=version, parent=parent["version_obj"], relation=parent["relation"])
        for parent in document.get("parents") or []
    ]
    return {
        "run": run,
        "parents": parents,
        "datasets": list(datasets.values()),
        "packages": packages,
        "ancestors": ancestors,
    }


def lineage_document(*, version: ModelVersion) -> dict:
    """The provenance of a version in the same shape as ``PUT …/lineage`` takes."""
    run = TrainingRun.objects.select_related("code", "environment").filter(version=version).first()
    parents = list(VersionParent.objects.filter(child=version).select_related("parent__model").order_by("id"))
    if run is None:
        return _document_of(run=None, parents=parents, datasets=[], packages=[], ancestors=[])
    return _document_of(
        run=run,
        parents=parents,
        datasets=list(run.datasets.select_related("dataset_version__dataset").order_by("id")),
        packages=[(p.name, p.version) for p in run.environment.packages.all()] if run.environment else [],
        ancestors=list(run.code.ancestors.values_list("sha", flat=True).order_by("id")) if run.code else [],
    )


def _iso(value) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def _document_of(
    *,
    run: TrainingRun | None,
    parents: list[VersionParent],
    datasets: list[RunDataset],
    packages: list[tuple[str, str]],
    ancestors: list[str],
) -> dict:
    links = [
        {"model": link.parent.model.name, "version": link.parent.version, "relation": link.relation}
        for link in parents
    ]
    if run is None:
        return {"datasets": [], "code": None, "environment": None, "run": None, "parents": links}
    code = run.code
    env = run.environment
    return {
        "datasets": [
            {
                "name": rd.dataset_version.dataset.name,
                "uri": rd.dataset_version.dataset.uri,
                "digest": rd.dataset_version.digest,
                "role": rd.role,
                "rows": rd.dataset_version.rows,
                "size": rd.dataset_version.size,
            }
            for rd in datasets
        ],
        "code": code
        and {
            "repo_url": code.repo_url,
            "commit": code.commit,
            "branch": code.branch,
            "dirty": code.dirty,
            "diff_digest": code.diff_digest,
            "entrypoint": code.entrypoint,
            "committed_at": _iso(code.committed_at),
            "ancestors": ancestors,
        },
        "environment": env
        and {
            "python": env.python,
            "platform": env.platform,
            "accelerator": env.accelerator,
            "packages": [{"name": name, "version": version} for name, version in packages],
        },
        "run": {
            "id": run.external_id,
            "pipeline": run.pipeline,
            "step": run.step,
            "user": run.user,
            "status": run.status,
            "started_at": _iso(run.started_at),
            "ended_at": _iso(run.ended_at),
            "params": run.params,
            "metrics": run.metrics,
            "tags": run.tags,
        },
        "parents": links,
        **({"extra": run.extra} if run.extra else {}),
    }


@transaction.atomic
def lineage_amend(*, actor, version: ModelVersion, reason: str, changes: dict) -> LineageAmendment:
    """Append a correction to a frozen version's provenance (the original stays as it was)."""
    _require(actor, "models_app.change_modelversion", version)
    if not reason.strip():
        raise ValidationError({"reason": "Say why the provenance is being corrected."})
    amendment = LineageAmendment.objects.create(version=version, reason=reason, changes=changes, actor=actor)
    audit_record(
        actor=actor, action="lineage.amended", obj=version, after={"reason": reason, "changes": changes}
    )
    return amendment


def lineage_capture_from_files(*, version_id: int) -> None:
    """Version-ready hook: fill the environment from MLflow model files when the client sent none.

    Idempotent; never overrides an environment that came with the lineage document.
    """
    from models_app import artifacts

    version = ModelVersion.objects.get(pk=version_id)
    run = TrainingRun.objects.filter(version=version).first()
    if run is not None and run.environment_id is not None:
        return
    wanted = ("MLmodel", "requirements.txt", "python_env.yaml", "conda.yaml")
    store = artifacts.get_store()
    texts = {}
    for item in version.files.select_related("blob").order_by("path"):
        if item.path.rsplit("/", 1)[-1] in wanted and item.blob.size <= 1024 * 1024:
            texts[item.path] = b"".join(store.iter_bytes(item.blob_id)).decode("utf-8", "replace")
    found = environment_from_files(texts)
    if not found:
        return
    with transaction.atomic():
        environment = environment_get_or_create(python=found["python"], packages=found["packages"])
        extra = {"mlmodel": found["mlmodel"]} if found["mlmodel"] else {}
        if run is None:
            run = TrainingRun.objects.create(version=version, environment=environment, extra=extra)
        else:
            run.environment = environment
            run.extra = {**run.extra, **extra}
            run.save(update_fields=["environment", "extra", "updated_at"])
        audit_record(
            actor=None,
            action="lineage.captured",
            obj=version,
            after={"python": found["python"], "packages": len(found["packages"]), "from": sorted(texts)},
        )


# --- Advisories -----------------------------------------------------------------------------


def _osv_packages(record: dict) -> list[AdvisoryPackage]:
    packages = []
    for affected in record.get("affected") or []:
        package = affected.get("package") or {}
        if str(package.get("ecosystem", "")).lower() != "pypi":
            continue
        ranges = []
        for rng in affected.get("ranges") or []:
            if rng.get("type") not in ("ECOSYSTEM", "SEMVER"):
                continue
            current: dict = {}
            for event in rng.get("events") or []:
                if "introduced" in event:
                    if current:
                        ranges.append(current)
                    current = {"introduced": str(event["introduced"])}
                elif "fixed" in event:
                    current["fixed"] = str(event["fixed"])
                    ranges.append(current)
                    current = {}
                elif "last_affected" in event:
                    current["last_affected"] = str(event["last_affected"])
                    ranges.append(current)
                    current = {}
            if current:
                ranges.append(current)
        packages.append(
            AdvisoryPackage(
                name=canonicalize_name(package["name"]),
                ranges=ranges,
                versions=[str(v) for v in affected.get("versions") or []],
            )
        )
    return packages


def version_is_affected(version: str, package: AdvisoryPackage) -> bool:
    """OSV semantics: listed explicitly, or inside one introduced→fixed/last_affected range."""
    if version in package.versions:
        return True
    try:
        v = Version(version)
    except InvalidVersion:
        return False
    for rng in package.ranges:
        introduced = rng.get("introduced", "0")
        try:
            if introduced not in ("0", "") and v < Version(introduced):
                continue
            if "fixed" in rng and v >= Version(rng["fixed"]):
                continue
            if "last_affected" in rng and v > Version(rng["last_affected"]):
                continue
        except InvalidVersion:
            continue
        return True
    return False


@transaction.atomic
def advisory_import(*, actor, records: list[dict]) -> list[Advisory]:
    """Store OSV records (validated by the caller) and fail the ``security`` check of affected versions."""
    if not (actor.is_superuser or actor.has_perm("models_app.add_check")):
        from django.core.exceptions import PermissionDenied

        raise PermissionDenied("Importing advisories needs a contributor role or admin rights.")
    imported = []
    for record in records:
        advisory, _ = Advisory.objects.update_or_create(
            osv_id=record["id"],
            defaults={
                "summary": record.get("summary") or record.get("details", "")[:500],
                "aliases": record.get("aliases") or [],
                "severity": json.dumps(record.get("severity"))[:100] if record.get("severity") else "",
                "published": record.get("published"),
                "modified": record.get("modified"),
                "raw": record,
            },
        )
        advisory.packages.all().delete()
        packages = _osv_packages(record)
        for package in packages:
            package.advisory = advisory
        AdvisoryPackage.objects.bulk_create(packages)
        audit_record(
            actor=actor,
            action="advisory.imported",
            obj=advisory,
            after={"id": advisory.osv_id, "packages": [p.name for p in packages]},
        )
        advisory_flag_affected(advisory=advisory)
        imported.append(advisory)
    return imported


def affected_version_ids(*, advisory: Advisory) -> dict[int, list[str]]:
    """``{model_version_id: ["tensorflow==2.11.0", …]}`` for every version the advisory affects.

    Per package: the distinct installed versions are few, so they are tested in Python; the
    version rows are then found through the (name, version) index.
    """
    found: dict[int, list[str]] = {}
    for package in advisory.packages.all():
        installed = (
            EnvironmentPackage.objects.filter(name=package.name).values_list("version", flat=True).distinct()
        )
        matching = [v for v in installed if version_is_affected(v, package)]
        if not matching:
            continue
        rows = TrainingRun.objects.filter(
            environment__packages__name=package.name, environment__packages__version__in=matching
        ).values_list("version_id", "environment__packages__version")
        for version_id, installed_version in rows:
            found.setdefault(version_id, []).append(f"{package.name}=={installed_version}")
    return found


def advisory_flag_affected(*, advisory: Advisory) -> int:
    """Report a failing ``security`` check on every affected version (blocks promotion)."""
    from models_app.services_governance import check_report

    affected = affected_version_ids(advisory=advisory)
    for version in ModelVersion.objects.filter(pk__in=affected):
        check_report(
            actor=None,
            version=version,
            name="security",
            status="failed",
            builtin=True,
            summary=f"{advisory.osv_id}: {', '.join(affected[version.pk])} is affected. {advisory.summary}"[
                :5000
            ],
            details_url=f"https://osv.dev/vulnerability/{advisory.osv_id}",
        )
    return len(affected)
