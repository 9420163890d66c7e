"""Governance writes: policies, checks, promotions with approvals, stage changes.

Same rules as ``services.py``: the actor's permission is checked, one transaction, an audit
record for every change. Stage changes lock the model row, so concurrent approvals can never
leave two production versions.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from models_app.choices import CheckStatus, Demotion, PromotionState, Stage, VersionStatus
from models_app.models import (
    Check,
    CheckResult,
    ModelVersion,
    Promotion,
    PromotionApproval,
    PromotionPolicy,
    RegisteredModel,
)
from models_app.roles import APPROVE_PROMOTION
from models_app.services import _full_clean, _require, alias_move, audit_record, policy_get
from registry_project.errors import Conflict

SECURITY_SCAN = "security_scan"
STAGE_ORDER = {Stage.NONE: 0, Stage.STAGING: 1, Stage.PRODUCTION: 2}


# --- Policy ---------------------------------------------------------------------------------


_POLICY_FIELDS = (
    "required_checks",
    "production_approvals",
    "staging_approvals",
    "allow_self_approval",
    "single_production",
    "on_new_production",
    "protected_aliases",
)


def _policy_snapshot(policy: PromotionPolicy) -> dict:
    return {field: getattr(policy, field) for field in _POLICY_FIELDS}


@transaction.atomic
def policy_update(*, actor, model: RegisteredModel, **changes: Any) -> PromotionPolicy:
    """Change a model's promotion policy (owners and admins)."""
    _require(actor, "models_app.change_promotionpolicy", model)
    if unknown := set(changes) - set(_POLICY_FIELDS):
        raise ValidationError({key: "This field cannot be changed." for key in unknown})
    # Locked; the first change stores the row (until then the model followed the defaults).
    policy, _ = PromotionPolicy.objects.select_for_update().get_or_create(model=model)
    before = _policy_snapshot(policy)
    for field, value in changes.items():
        setattr(policy, field, value)
    checks = policy.required_checks
    if not isinstance(checks, dict) or any(
        stage not in Stage.values or not isinstance(names, list) or not all(isinstance(n, str) for n in names)
        for stage, names in checks.items()
    ):
        raise ValidationError({"required_checks": 'Use {"staging": ["check", …], "production": [...]}.'})
    if not isinstance(policy.protected_aliases, list) or not all(
        isinstance(a, str) for a in policy.protected_aliases
    ):
        raise ValidationError({"protected_aliases": "Give a list of alias names."})
    _full_clean(policy, exclude=["model"])
    policy.save()
    audit_record(
        actor=actor,
        action="policy.updated",
        obj=policy,
        before=before,
        after=_policy_snapshot(policy),
        model=model,
    )
    return policy


# --- Checks ---------------------------------------------------------------------------------


def _check_snapshot(check: Check) -> dict:
    return {"name": check.name, "status": check.status, "summary": check.summary}


@transaction.atomic
def check_report(
    *,
    actor,
    version: ModelVersion,
    name: str,
    status: str,
    summary: str = "",
    details_url: str = "",
    metrics: dict | None = None,
    builtin: bool = False,
) -> Check:
    """Create or update the named check of a version; every report is kept in its history.

    ``actor`` is None for built-in checks run by a worker.
    """
    if actor is not None:
        _require(actor, "models_app.add_check", version)
    if status not in CheckStatus.values:
        raise ValidationError({"status": f"Use one of: {', '.join(CheckStatus.values)}."})
    check = Check.objects.select_for_update().filter(version=version, name=name).first()
    before = _check_snapshot(check) if check else None
    if check is None:
        check = Check(version=version, name=name)
    if check.builtin and not builtin and not (actor and actor.is_superuser):
        raise PermissionDenied(f"'{name}' is a built-in check: only the registry reports it.")
    check.status, check.summary, check.details_url = status, summary, details_url
    check.metrics, check.builtin, check.reported_by = metrics or {}, builtin, actor
    _full_clean(check, exclude=["version"])
    check.save()
    CheckResult.objects.create(
        for_check=check,
        status=status,
        summary=summary,
        details_url=details_url,
        metrics=metrics or {},
        reported_by=actor,
    )
    audit_record(
        actor=actor,
        action="check.reported",
        obj=check,
        before=before,
        after=_check_snapshot(check),
        model=version.model,
    )
    return check


def check_failures(*, version: ModelVersion, stage: str, policy: PromotionPolicy) -> list[str]:
    """Human-readable reasons why ``version`` may not enter ``stage`` under ``policy`` now."""
    reasons = []
    results = {c.name: c for c in version.checks.all()}
    for name in policy.checks_for(stage):
        check = results.get(name)
        if check is None:
            reasons.append(f"check '{name}' has not run")
        elif check.status != CheckStatus.PASSED:
            reasons.append(
                f"check '{name}' is {check.status}" + (f": {check.summary}" if check.summary else "")
            )
    # Failing checks outside the policy still block production: a red light is a red light.
    if stage == Stage.PRODUCTION:
        for name, check in results.items():
            if check.status == CheckStatus.FAILED and name not in policy.checks_for(stage):
                reasons.append(f"check '{name}' failed" + (f": {check.summary}" if check.summary else ""))
    return reasons


# --- Promotions -----------------------------------------------------------------------------


def _promotion_snapshot(p: Promotion) -> dict:
    return {"version": p.version.version, "target_stage": p.target_stage, "state": p.state}


def _blocking_reasons(promotion: Promotion, policy: PromotionPolicy) -> list[str]:
    version = ModelVersion.objects.get(pk=promotion.version_id)
    reasons = []
    if version.status != VersionStatus.READY:
        reasons.append(f"version {version.version} is {version.status}, not READY")
    if version.stage == Stage.ARCHIVED and promotion.target_stage != Stage.ARCHIVED:
        reasons.append(f"version {version.version} has been archived")
    if version.stage != promotion.from_stage:
        reasons.append(f"version {version.version} moved to {version.stage} since the request")
    failures = check_failures(version=version, stage=promotion.target_stage, policy=policy)
    if promotion.override_reason:  # an admin accepted a failed security scan, on the record
        failures = [f for f in failures if f"'{SECURITY_SCAN}'" not in f]
    return reasons + failures


@transaction.atomic
def promotion_request(
    *,
    actor,
    version: ModelVersion,
    target_stage: str,
    comment: str = "",
    alias: str = "",
    override_reason: str = "",
) -> Promotion:
    """Ask to move ``version`` to ``target_stage``; applied at once when the policy needs no approval.

    Raises ``Conflict`` naming the failing checks when the version may not enter the stage.
    """
    _require(actor, "models_app.add_promotion", version)
    if target_stage not in Stage.values:
        raise ValidationError({"target_stage": f"Use one of: {', '.join(Stage.values)}."})
    if override_reason and not actor.is_superuser:
        raise PermissionDenied("Only an administrator can override a failed security scan.")
    # Lock the model row before the version, the order approvals use too: stage moves of one
    # model are serialized, and a request and an approval can never deadlock on each other.
    RegisteredModel.objects.select_for_update().get(pk=version.model_id)
    version = ModelVersion.objects.select_for_update().select_related("model").get(pk=version.pk)
    if version.stage == target_stage:
        raise Conflict(f"Version {version.version} is already in {target_stage}.", field="target_stage")
    policy = policy_get(model=version.model)
    if alias:
        from models_app.validators import validate_alias

        validate_alias(alias)
    promotion = Promotion(
        version=version,
        from_stage=version.stage,
        target_stage=target_stage,
        comment=comment,
        alias=alias,
        requested_by=actor,
        override_reason=override_reason,
    )
    reasons = _blocking_reasons(promotion, policy)
    if reasons:
        raise Conflict(
            f"Version {version.version} cannot move to {target_stage}: " + "; ".join(reasons) + ".",
            field="target_stage",
            code="checks_failing",
        )
    promotion.save()
    audit_record(
        actor=actor,
        action="promotion.requested",
        obj=promotion,
        after=_promotion_snapshot(promotion),
        model=version.model,
    )
    if override_reason:
        audit_record(
            actor=actor,
            action="promotion.security_override",
            obj=promotion,
            after={"reason": override_reason},
            model=version.model,
        )
    if policy.approvals_needed(target_stage) == 0:
        _apply(promotion, actor=actor, policy=policy)
    return promotion


def _locked_pending(promotion: Promotion) -> Promotion:
    locked = Promotion.objects.select_for_update().select_related("version__model").get(pk=promotion.pk)
    if locked.state != PromotionState.PENDING:
        raise Conflict(f"This request is already {locked.state}.", code="promotion_closed")
    return locked


@transaction.atomic
def promotion_approve(*, actor, promotion: Promotion, comment: str = "") -> Promotion:
    """Approve a pending request; with enough approvals it is applied, re-checking the policy now."""
    _require(actor, APPROVE_PROMOTION, promotion)
    model = RegisteredModel.objects.select_for_update().get(
        pk=promotion.version.model_id
    )  # serializes stage moves
    promotion = _locked_pending(promotion)
    policy = policy_get(model=model)
    if promotion.requested_by_id == actor.pk and not policy.allow_self_approval:
        raise PermissionDenied("Four eyes: you cannot approve your own request.")
    if promotion.approvals.filter(approver=actor).exists():
        raise Conflict("You have already approved this request.", code="already_approved")
    reasons = _blocking_reasons(promotion, policy)
    if reasons:
        raise Conflict("The request has gone stale: " + "; ".join(reasons) + ".", code="promotion_stale")
    PromotionApproval.objects.create(promotion=promotion, approver=actor, comment=comment)
    audit_record(
        actor=actor, action="promotion.approved", obj=promotion, after={"comment": comment}, model=model
    )
    if promotion.approvals.count() >= policy.approvals_needed(promotion.target_stage):
        promotion.decision_comment = comment
        _apply(promotion, actor=actor, policy=policy)
    return promotion


@transaction.atomic
def promotion_reject(*, actor, promotion: Promotion, comment: str) -> Promotion:
    """Reject a pending request; a comment saying why is required."""
    _require(actor, APPROVE_PROMOTION, promotion)
    if not comment.strip():
        raise ValidationError({"comment": "Say why the request is rejected."})
    promotion = _locked_pending(promotion)
    promotion.state, promotion.decided_by, promotion.decided_at = (
        PromotionState.REJECTED,
        actor,
        timezone.now(),
    )
    promotion.decision_comment = comment
    promotion.save()
    audit_record(
        actor=actor,
        action="promotion.rejected",
        obj=promotion,
        after={"comment": comment},
        model=promotion.version.model,
    )
    return promotion


@transaction.atomic
def promotion_cancel(*, actor, promotion: Promotion) -> Promotion:
    """The requester (or an admin) withdraws a pending request."""
    if promotion.requested_by_id != actor.pk and not actor.is_superuser:
        raise PermissionDenied("Only the requester can cancel this request.")
    promotion = _locked_pending(promotion)
    promotion.state, promotion.decided_by, promotion.decided_at = (
        PromotionState.CANCELLED,
        actor,
        timezone.now(),
    )
    promotion.save()
    audit_record(actor=actor, action="promotion.cancelled", obj=promotion, model=promotion.version.model)
    return promotion


def _apply(promotion: Promotion, *, actor, policy: PromotionPolicy) -> None:
    """Move the version to the target stage, demoting the incumbent, and mark the request applied."""
    version = promotion.version
    model = RegisteredModel.objects.select_for_update().get(pk=version.model_id)
    if promotion.target_stage == Stage.PRODUCTION and policy.single_production:
        demote_to = Stage.ARCHIVED if policy.on_new_production == Demotion.ARCHIVE else Stage.NONE
        for incumbent in (
            model.versions.select_for_update().filter(stage=Stage.PRODUCTION).exclude(pk=version.pk)
        ):
            stage_set(
                version=incumbent,
                stage=demote_to,
                actor=actor,
                reason=f"replaced by version {version.version}",
            )
    stage_set(version=version, stage=promotion.target_stage, actor=actor, reason=promotion.comment)
    if promotion.alias:
        alias_move(
            model=model,
            alias=promotion.alias,
            version=version,
            actor=actor,
            reason=f"promotion #{promotion.pk}",
            promotion=promotion,
        )
    promotion.state, promotion.decided_at = PromotionState.APPLIED, timezone.now()
    promotion.decided_by = actor
    promotion.save()
    audit_record(
        actor=actor,
        action="promotion.applied",
        obj=promotion,
        after=_promotion_snapshot(promotion),
        model=model,
    )


def stage_set(*, version: ModelVersion, stage: str, actor, reason: str = "") -> ModelVersion:
    """Record a stage change (callers hold the model row lock and have checked the policy)."""
    before = version.stage
    ModelVersion.objects.filter(pk=version.pk).update(stage=stage, updated_at=timezone.now())
    version.stage = stage
    audit_record(
        actor=actor,
        action="version.stage_changed",
        obj=version,
        before={"stage": before},
        after={"stage": stage, "reason": reason},
    )
    return version


# --- Built-in checks ------------------------------------------------------------------------


def builtin_checks_run(*, version_id: int) -> None:
    """Run ``security_scan`` then ``loadable`` on a READY version (a version-ready hook).

    Idempotent: a redelivered task reports the same results again.
    """
    import tempfile
    from pathlib import Path

    from models_app import artifacts, pickle_scan

    version = ModelVersion.objects.select_related("model").get(pk=version_id)
    for name in (SECURITY_SCAN, "loadable"):
        check_report(actor=None, version=version, name=name, status=CheckStatus.RUNNING, builtin=True)
    files = list(version.files.select_related("blob").order_by("path"))
    store = artifacts.get_store()
    with tempfile.TemporaryDirectory(prefix="modelyard-check-") as tmp:
        root = Path(tmp)
        results = []
        for item in files:
            target = root / item.path  # paths were validated on upload: relative, no '..'
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as out:
                for chunk in store.iter_bytes(item.blob_id):
                    out.write(chunk)
            with open(target, "rb") as fh:
                results += pickle_scan.scan_stream(item.path, fh)
        passed, summary, metrics = pickle_scan.summarize(results)
        check_report(
            actor=None,
            version=version,
            name=SECURITY_SCAN,
            builtin=True,
            status=CheckStatus.PASSED if passed else CheckStatus.FAILED,
            summary=summary,
            metrics=metrics,
        )
        outcome = _load_in_sandbox(root, allow_pickle=passed)
    check_report(
        actor=None,
        version=version,
        name="loadable",
        builtin=True,
        status=CheckStatus.PASSED if outcome.get("ok") else CheckStatus.FAILED,
        summary=(
            f"Loaded as {outcome['format']} and predicted {outcome['rows']} row(s)."
            if outcome.get("ok")
            else outcome.get("error", "failed")
        ),
        metrics={k: v for k, v in outcome.items() if k in ("format", "rows", "seconds")},
    )


def _load_in_sandbox(root, *, allow_pickle: bool) -> dict:
    """Run ``models_app.loadcheck`` in a child process with CPU-time and memory limits."""
    import json
    import resource
    import subprocess
    import sys
    import time

    from django.conf import settings

    limit_bytes = settings.MODELYARD_CHECK_MEMORY_MB * 1024 * 1024
    cpu_seconds = settings.MODELYARD_CHECK_TIMEOUT_SECONDS

    def limits() -> None:  # runs in the child before exec
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))

    command = [sys.executable, "-m", "models_app.loadcheck", str(root)] + (
        ["--allow-pickle"] if allow_pickle else []
    )
    started = time.monotonic()
    try:
        proc = subprocess.run(  # noqa: S603 - our own module, fixed arguments
            command,
            capture_output=True,
            text=True,
            timeout=cpu_seconds * 2,
            preexec_fn=limits,
            cwd=settings.BASE_DIR,
            env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"},
        )
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"loading took longer than {cpu_seconds * 2} s"}
    seconds = round(time.monotonic() - started, 2)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        reason = "killed: memory or CPU limit" if proc.returncode < 0 else f"exit code {proc.returncode}"
        return {
            "ok": False,
            "error": f"the loader crashed ({reason}): {proc.stderr[-500:]}",
            "seconds": seconds,
        }
    return {**json.loads(lines[-1]), "seconds": seconds}
