"""Reads of lineage, scoped to what the user may see: the three questions, and the graph."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db.models import Q
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from deployments_app.selectors import deployments_of_versions
from lineage_app.choices import Containment
from lineage_app.models import CommitAncestor, EnvironmentPackage, TrainingRun, VersionParent
from lineage_app.services import lineage_document
from models_app.models import ModelVersion
from models_app.selectors import model_version_list


def parse_specifier(value: str) -> SpecifierSet:
    try:
        spec = SpecifierSet(value)
    except InvalidSpecifier as exc:
        raise ValidationError(
            {"specifier": f"'{value}' is not a PEP 440 version specifier (e.g. '<2.11.1')."}
        ) from exc
    if not str(spec):
        raise ValidationError({"specifier": "Give a version specifier such as '<2.11.1' or '==2.11.0'."})
    return spec


# --- 1. Exposure ----------------------------------------------------------------------------


def exposure(*, user, package: str, specifier: str, stage: str | None = None) -> list[dict]:
    """Versions whose environment holds ``package`` at a version matching ``specifier``.

    The matching is done on the handful of distinct installed versions of the package; the
    versions are then found through the (name, version) index — no loop over model versions.
    """
    name = canonicalize_name(package)
    spec = parse_specifier(specifier)
    installed = EnvironmentPackage.objects.filter(name=name).values_list("version", flat=True).distinct()
    matching = []
    for raw in installed:
        try:
            if spec.contains(Version(raw), prereleases=True):
                matching.append(raw)
        except InvalidVersion:
            continue
    if not matching:
        return []
    versions = model_version_list(user=user).filter(
        training_run__environment__packages__name=name,
        training_run__environment__packages__version__in=matching,
    )
    if stage:
        versions = versions.filter(stage=stage)
    rows = versions.values(
        "pk", "model__name", "version", "stage", "status", "training_run__environment__packages__version"
    ).order_by("model__name", "-version")
    rows = list(rows)
    version_ids = [r["pk"] for r in rows]
    aliases: dict[int, list[str]] = {}
    for version_id, alias in ModelVersion.aliases.rel.related_model.objects.filter(
        version_id__in=version_ids
    ).values_list("version_id", "alias"):
        aliases.setdefault(version_id, []).append(alias)
    deployments = deployments_of_versions(user=user, version_ids=version_ids)
    return [
        {
            "model": r["model__name"],
            "version": r["version"],
            "stage": r["stage"],
            "status": r["status"],
            "package": name,
            "installed": r["training_run__environment__packages__version"],
            "aliases": sorted(aliases.get(r["pk"], [])),
            "deployments": deployments.get(r["pk"], []),
            "deployed": any(d["live"] for d in deployments.get(r["pk"], [])),
        }
        for r in rows
    ]


# --- 2. Compare -----------------------------------------------------------------------------


def _num(value):
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def compare(*, a: ModelVersion, b: ModelVersion) -> dict:
    """What changed from ``a`` to ``b``: data, code, params, metrics (with deltas), packages."""
    da, db = lineage_document(version=a), lineage_document(version=b)
    ds_a = {d["name"]: d for d in da["datasets"]}
    ds_b = {d["name"]: d for d in db["datasets"]}
    datasets = {
        "added": [ds_b[n] for n in sorted(set(ds_b) - set(ds_a))],
        "removed": [ds_a[n] for n in sorted(set(ds_a) - set(ds_b))],
        "changed": [
            {
                "name": n,
                "a": ds_a[n]["digest"],
                "b": ds_b[n]["digest"],
                "rows_a": ds_a[n]["rows"],
                "rows_b": ds_b[n]["rows"],
            }
            for n in sorted(set(ds_a) & set(ds_b))
            if ds_a[n]["digest"] != ds_b[n]["digest"]
        ],
        "unchanged": sorted(n for n in set(ds_a) & set(ds_b) if ds_a[n]["digest"] == ds_b[n]["digest"]),
    }
    code_a, code_b = da["code"] or {}, db["code"] or {}
    descends = None
    if code_a.get("commit") and code_b.get("commit"):
        if code_a["commit"] == code_b["commit"]:
            descends = True
        elif code_b.get("ancestors"):
            descends = code_a["commit"] in code_b["ancestors"] or (
                None if len(code_b["ancestors"]) >= 1000 else False
            )
    code = {
        "a": code_a.get("commit"),
        "b": code_b.get("commit"),
        "same": code_a.get("commit") == code_b.get("commit"),
        "b_descends_from_a": descends,
        "dirty_a": code_a.get("dirty"),
        "dirty_b": code_b.get("dirty"),
    }
    run_a, run_b = da["run"] or {}, db["run"] or {}
    pa, pb = run_a.get("params") or {}, run_b.get("params") or {}
    params = {
        k: {"a": pa.get(k), "b": pb.get(k)} for k in sorted(set(pa) | set(pb)) if pa.get(k) != pb.get(k)
    }
    ma, mb = run_a.get("metrics") or {}, run_b.get("metrics") or {}
    metrics = {}
    for key in sorted(set(ma) | set(mb)):
        va, vb = _num(ma.get(key)), _num(mb.get(key))
        metrics[key] = {
            "a": ma.get(key),
            "b": mb.get(key),
            "delta": (vb - va) if va is not None and vb is not None else None,
        }
    pk_a = {p["name"]: p["version"] for p in (da["environment"] or {}).get("packages", [])}
    pk_b = {p["name"]: p["version"] for p in (db["environment"] or {}).get("packages", [])}
    packages = {"added": [], "removed": [], "upgraded": [], "downgraded": [], "changed": []}
    for name in sorted(set(pk_a) | set(pk_b)):
        va, vb = pk_a.get(name), pk_b.get(name)
        if va == vb:
            continue
        if va is None:
            packages["added"].append({"name": name, "b": vb})
        elif vb is None:
            packages["removed"].append({"name": name, "a": va})
        else:
            try:
                key = "upgraded" if Version(vb) > Version(va) else "downgraded"
            except InvalidVersion:
                key = "changed"
            packages[key].append({"name": name, "a": va, "b": vb})
    return {
        "a": {"model": a.model.name, "version": a.version},
        "b": {"model": b.model.name, "version": b.version},
        "datasets": datasets,
        "code": code,
        "params": params,
        "metrics": metrics,
        "packages": packages,
        "summary": _compare_summary(datasets, code, params, metrics, packages),
    }


def _compare_summary(datasets, code, params, metrics, packages) -> list[str]:
    """Plain sentences for people who do not read diffs."""
    lines = []
    for d in datasets["changed"]:
        lines.append(
            f"The {d['name']} data changed"
            + (f" ({d['rows_a']} → {d['rows_b']} rows)." if d["rows_a"] and d["rows_b"] else ".")
        )
    lines += [f"New data: {d['name']}." for d in datasets["added"]]
    lines += [f"Data no longer used: {d['name']}." for d in datasets["removed"]]
    if not code["same"] and code["b"]:
        lines.append(
            "The training code changed."
            + (" The newer code includes the older one." if code["b_descends_from_a"] else "")
        )
    if params:
        lines.append(
            "Settings changed: " + ", ".join(f"{k} {v['a']} → {v['b']}" for k, v in params.items()) + "."
        )
    for name, m in metrics.items():
        if m["delta"]:
            lines.append(
                f"{name} went from {m['a']} to {m['b']} ({'+' if m['delta'] > 0 else ''}{m['delta']:.4g})."
            )
    moved = (
        len(packages["upgraded"])
        + len(packages["downgraded"])
        + len(packages["added"])
        + len(packages["removed"])
    )
    if moved:
        lines.append(f"{moved} software package(s) changed.")
    if not lines:
        lines.append("Nothing recorded differs between the two versions.")
    return lines


# --- 3. Containment -------------------------------------------------------------------------


def containment(*, user, sha: str, model_name: str | None = None) -> dict:
    """For each version: does its training code contain commit ``sha``?

    ``contains`` when the commit is the training commit or among its recorded ancestors;
    ``does_not_contain`` when the recorded ancestry is complete (fewer than 1,000 commits back)
    and the commit is not in it; ``unknown`` otherwise, with commit vs training times as a hint.
    """
    sha = sha.strip().lower()
    if not (7 <= len(sha) <= 64) or any(c not in "0123456789abcdef" for c in sha):
        raise ValidationError({"sha": "Give a commit SHA: 7 to 64 hexadecimal characters."})
    versions = model_version_list(user=user).select_related("training_run__code")
    if model_name:
        versions = versions.filter(model__name__iexact=model_name)
    versions = versions.order_by("model__name", "version")
    revisions = {
        v.training_run.code_id for v in versions if hasattr(v, "training_run") and v.training_run.code_id
    }
    containing = set(
        CommitAncestor.objects.filter(revision_id__in=revisions, sha__startswith=sha).values_list(
            "revision_id", flat=True
        )
    )
    # When the fix commit was itself trained from, we know its time: a hint for unknowns.
    fix_time = (
        TrainingRun.objects.filter(code__commit__startswith=sha, code__committed_at__isnull=False)
        .values_list("code__committed_at", flat=True)
        .first()
    )
    rows = []
    for v in versions:
        run = getattr(v, "training_run", None)
        code = run.code if run else None
        hint = ""
        if code is None:
            verdict, hint = Containment.UNKNOWN, "no code revision recorded"
        elif code.commit.startswith(sha) or code.pk in containing:
            verdict = Containment.CONTAINS
        elif 0 < code.ancestor_count < 1000:
            verdict = Containment.DOES_NOT_CONTAIN
        else:
            verdict = Containment.UNKNOWN
            hint = (
                "ancestry not recorded"
                if code.ancestor_count == 0
                else "commit older than the 1,000 recorded ancestors"
            )
            trained = run.started_at or v.created_at
            if fix_time:
                hint += f"; the commit is from {fix_time.isoformat()}, training started {trained.isoformat()}"
                hint += " (after the commit)" if trained > fix_time else " (before the commit)"
        rows.append(
            {
                "model": v.model.name,
                "version": v.version,
                "stage": v.stage,
                "result": verdict,
                "training_commit": code.commit if code else None,
                "trained_at": (run.started_at if run else None) or v.created_at,
                "hint": hint,
            }
        )
    return {"commit": sha, "versions": rows}


# --- Graph ----------------------------------------------------------------------------------


def graph(*, user, version: ModelVersion, depth: int = 1) -> dict:
    """Nodes and edges around a version: datasets → run → version → deployments; parents/children."""
    visible = model_version_list(user=user)
    nodes: dict[str, dict] = {}
    edges: list[dict] = []

    def vid(v: ModelVersion) -> str:
        return f"version:{v.model.name}:{v.version}"

    def add_version(v: ModelVersion, level: int) -> None:
        key = vid(v)
        if key in nodes:
            return
        nodes[key] = {"id": key, "kind": "version", "label": f"{v.model.name} v{v.version}", "stage": v.stage}
        run = TrainingRun.objects.filter(version=v).select_related("code", "environment").first()
        if run:
            rid = f"run:{run.pk}"
            nodes[rid] = {
                "id": rid,
                "kind": "run",
                "label": run.external_id or run.pipeline or "training run",
            }
            edges.append({"from": rid, "to": key, "kind": "produced"})
            for rd in run.datasets.select_related("dataset_version__dataset"):
                did = f"dataset:{rd.dataset_version_id}"
                nodes[did] = {
                    "id": did,
                    "kind": "dataset",
                    "label": rd.dataset_version.dataset.name,
                    "digest": rd.dataset_version.digest,
                }
                edges.append({"from": did, "to": rid, "kind": rd.role})
            if run.code:
                cid = f"code:{run.code_id}"
                nodes[cid] = {"id": cid, "kind": "code", "label": run.code.commit[:12]}
                edges.append({"from": cid, "to": rid, "kind": "code"})
        for d in deployments_of_versions(user=user, version_ids=[v.pk]).get(v.pk, []):
            did = f"deployment:{d['id']}"
            nodes[did] = {"id": did, "kind": "deployment", "label": d["name"], "status": d["status"]}
            edges.append({"from": key, "to": did, "kind": "deployed"})
        if level >= depth:
            return
        for link in VersionParent.objects.filter(Q(child=v) | Q(parent=v)).select_related(
            "child__model", "parent__model"
        ):
            other = link.parent if link.child_id == v.pk else link.child
            if not visible.filter(pk=other.pk).exists():
                continue
            add_version(other, level + 1)
            edges.append({"from": vid(link.parent), "to": vid(link.child), "kind": link.relation})

    add_version(version, 0)
    return {"nodes": list(nodes.values()), "edges": edges}
