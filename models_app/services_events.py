"""Events and webhooks: emit into the outbox with the change; deliver, retry and log after it."""

from __future__ import annotations

import json
import secrets as pysecrets
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from models_app import webhooks
from models_app.choices import DeliveryState
from models_app.models import DeliveryAttempt, Event, RegisteredModel, Webhook, WebhookDelivery

EVENT_TYPES = (
    "model.created",
    "model.updated",
    "model.deleted",
    "version.created",
    "version.ready",
    "version.deleted",
    "version.stage_changed",
    "alias.set",
    "alias.deleted",
    "promotion.requested",
    "promotion.approved",
    "promotion.rejected",
    "promotion.cancelled",
    "promotion.applied",
    "check.completed",
    "webhook.ping",
    "deployment.requested",
    "deployment.status_changed",
    "deployment.stop_requested",
    "deployment.start_requested",
    "deployment.redeploy_requested",
    "deployment.deleted",
)
# Audit actions that are also events, and the event type they become.
AUDIT_EVENTS = {
    "model.created": "model.created",
    "model.updated": "model.updated",
    "model.deleted": "model.deleted",
    "version.created": "version.created",
    "version.finalized": "version.ready",
    "version.deleted": "version.deleted",
    "version.stage_changed": "version.stage_changed",
    "alias.set": "alias.set",
    "alias.deleted": "alias.deleted",
    "promotion.requested": "promotion.requested",
    "promotion.approved": "promotion.approved",
    "promotion.rejected": "promotion.rejected",
    "promotion.cancelled": "promotion.cancelled",
    "promotion.applied": "promotion.applied",
    "check.reported": "check.completed",
    "deployment.requested": "deployment.requested",
    "deployment.status_changed": "deployment.status_changed",
    "deployment.stop_requested": "deployment.stop_requested",
    "deployment.start_requested": "deployment.start_requested",
    "deployment.redeploy_requested": "deployment.redeploy_requested",
    "deployment.deleted": "deployment.deleted",
}
GIVE_UP_AFTER = timedelta(hours=24)


def _can_see(user, model: RegisteredModel | None) -> bool:
    if model is None:
        return user.is_superuser
    return user.is_active and user.has_perm("models_app.view_registeredmodel", model)


def event_emit(*, type: str, model: RegisteredModel | None, payload: dict) -> Event | None:
    """Write an event and its deliveries in the current transaction; dispatch after commit.

    The outbox rows are the truth: when the broker is down the nudge after commit is only logged
    (``robust=True``) and the periodic dispatcher sends the deliveries once it is back.

    Each webhook gets only events of models its owner may read, so a private model's events never
    reach another team. Nothing is written when no webhook wants the event. The audit calls this
    only when its insert found an active webhook (``services._webhook_active_sql``).
    """
    hooks = [
        hook
        for hook in Webhook.objects.filter(active=True).select_related("owner")
        if hook.wants(type) and _can_see(hook.owner, model)
    ]
    if not hooks:
        return None
    event = Event.objects.create(
        type=type, model_name=model.name if model else "", registered_model=model, payload=payload
    )
    now = timezone.now()
    WebhookDelivery.objects.bulk_create(
        [WebhookDelivery(webhook=hook, event=event, next_attempt_at=now) for hook in hooks]
    )
    from models_app.tasks import webhook_deliveries_dispatch_task

    transaction.on_commit(webhook_deliveries_dispatch_task.delay, robust=True)
    return event


# --- Webhook management ---------------------------------------------------------------------


def _clean_events(events: list[str]) -> list[str]:
    if not events:
        raise ValidationError({"events": "Subscribe to at least one event type (or '*')."})
    unknown = [e for e in events if e != "*" and e not in EVENT_TYPES]
    if unknown:
        raise ValidationError({"events": f"Unknown event type(s): {', '.join(unknown)}."})
    return sorted(set(events))


@transaction.atomic
def webhook_create(*, actor, name: str, url: str, events: list[str], secret: str = "", active: bool = True):
    """Register a webhook; returns ``(webhook, secret)`` — the secret is generated when not given."""
    from models_app.services import _require, audit_record

    _require(actor, "models_app.add_webhook")
    webhooks.resolve_public(url)
    secret = secret or pysecrets.token_urlsafe(32)
    hook = Webhook.objects.create(
        name=name,
        url=url,
        events=_clean_events(events),
        secret_encrypted=webhooks.encrypt_secret(secret),
        active=active,
        owner=actor,
    )
    audit_record(
        actor=actor,
        action="webhook.created",
        obj=hook,
        after={"name": name, "url": url, "events": hook.events},
    )
    return hook, secret


def _own(actor, hook: Webhook) -> None:
    if hook.owner_id != actor.pk and not actor.is_superuser:
        raise PermissionDenied("This webhook belongs to someone else.")


@transaction.atomic
def webhook_update(*, actor, hook: Webhook, **changes) -> Webhook:
    from models_app.services import audit_record

    _own(actor, hook)
    before = {"name": hook.name, "url": hook.url, "events": hook.events, "active": hook.active}
    if "url" in changes:
        webhooks.resolve_public(changes["url"])
    if "events" in changes:
        changes["events"] = _clean_events(changes["events"])
    if "secret" in changes:
        hook.secret_encrypted = webhooks.encrypt_secret(changes.pop("secret"))
    for field, value in changes.items():
        setattr(hook, field, value)
    hook.save()
    after = {"name": hook.name, "url": hook.url, "events": hook.events, "active": hook.active}
    audit_record(actor=actor, action="webhook.updated", obj=hook, before=before, after=after)
    return hook


@transaction.atomic
def webhook_delete(*, actor, hook: Webhook) -> None:
    from models_app.services import audit_record

    _own(actor, hook)
    audit_record(actor=actor, action="webhook.deleted", obj=hook, before={"name": hook.name, "url": hook.url})
    hook.delete()


@transaction.atomic
def webhook_ping(*, actor, hook: Webhook) -> WebhookDelivery:
    """Queue a ``webhook.ping`` event to this webhook only."""
    from models_app.services import audit_record

    _own(actor, hook)
    audit_record(actor=actor, action="webhook.pinged", obj=hook)
    event = Event.objects.create(type="webhook.ping", payload={"webhook": hook.name})
    delivery = WebhookDelivery.objects.create(webhook=hook, event=event, next_attempt_at=timezone.now())
    from models_app.tasks import webhook_deliveries_dispatch_task

    transaction.on_commit(webhook_deliveries_dispatch_task.delay, robust=True)
    return delivery


@transaction.atomic
def delivery_redeliver(*, actor, delivery: WebhookDelivery) -> WebhookDelivery:
    """Send a delivery again: a new 24-hour retry window, same delivery id for de-duplication."""
    from models_app.services import audit_record

    _own(actor, delivery.webhook)
    now = timezone.now()
    # The give-up clock counts from created_at: a redelivery restarts it.
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        state=DeliveryState.PENDING, next_attempt_at=now, delivered_at=None, created_at=now
    )
    audit_record(
        actor=actor,
        action="webhook.redelivered",
        obj=delivery.webhook,
        after={"delivery": str(delivery.delivery_id)},
    )
    from models_app.tasks import webhook_deliveries_dispatch_task

    transaction.on_commit(webhook_deliveries_dispatch_task.delay, robust=True)
    delivery.refresh_from_db()
    return delivery


# --- Delivery -------------------------------------------------------------------------------


def _backoff(attempts: int) -> timedelta:
    """10 s, 20 s, 40 s … capped at one hour between attempts."""
    return timedelta(seconds=min(10 * 2 ** max(0, attempts - 1), 3600))


def _lease() -> timedelta:
    """How long a claimed delivery is left alone: longer than one attempt can take."""
    return timedelta(seconds=3 * settings.MODELYARD_WEBHOOK_TIMEOUT_SECONDS + 30)


def deliveries_dispatch(*, limit: int = 100) -> int:
    """Send every due delivery once; returns how many were attempted.

    Each delivery is claimed just before it is sent, with a compare-and-set that moves its
    ``next_attempt_at`` a lease ahead: two workers never send the same attempt, however long a
    batch takes, and a worker that dies mid-send leaves it to be retried when the lease ends.
    """
    due = list(
        WebhookDelivery.objects.filter(state=DeliveryState.PENDING, next_attempt_at__lte=timezone.now())
        .order_by("next_attempt_at")
        .values_list("pk", "next_attempt_at")[:limit]
    )
    sent = 0
    for pk, due_at in due:
        claimed = WebhookDelivery.objects.filter(
            pk=pk, state=DeliveryState.PENDING, next_attempt_at=due_at
        ).update(next_attempt_at=timezone.now() + _lease())
        if claimed:
            delivery_attempt(delivery_id=pk)
            sent += 1
    return sent


def delivery_attempt(*, delivery_id: int) -> None:
    """POST one delivery, log the attempt and schedule the next one or finish."""
    delivery = WebhookDelivery.objects.select_related("webhook", "event").get(pk=delivery_id)
    if delivery.state != DeliveryState.PENDING:
        return
    event, hook = delivery.event, delivery.webhook
    body = json.dumps(
        {
            "id": str(delivery.delivery_id),
            "type": event.type,
            "created_at": event.created_at.isoformat(),
            "model": event.model_name or None,
            "data": event.payload,
        },
        separators=(",", ":"),
        default=str,
    ).encode()
    timestamp = str(int(time_now()))
    try:
        signature = webhooks.sign(webhooks.decrypt_secret(hook.secret_encrypted), timestamp, body)
    except ValueError as exc:
        result = webhooks.PostResult(None, 0, str(exc))
    else:
        result = webhooks.post(
            hook.url,
            body,
            {
                "Content-Type": "application/json",
                "User-Agent": "Modelyard-Webhooks/1",
                "X-Modelyard-Event": event.type,
                "X-Modelyard-Delivery": str(delivery.delivery_id),
                "X-Modelyard-Timestamp": timestamp,
                "X-Modelyard-Signature": signature,
            },
            timeout=settings.MODELYARD_WEBHOOK_TIMEOUT_SECONDS,
        )
    DeliveryAttempt.objects.create(
        delivery=delivery, status_code=result.status_code, duration_ms=result.duration_ms, error=result.error
    )
    attempts = delivery.attempts + 1
    now = timezone.now()
    if result.ok:
        changes = {"state": DeliveryState.DELIVERED, "delivered_at": now}
    elif now - delivery.created_at >= GIVE_UP_AFTER:
        changes = {"state": DeliveryState.FAILED}
    else:
        changes = {"next_attempt_at": now + _backoff(attempts)}
    WebhookDelivery.objects.filter(pk=delivery.pk, state=DeliveryState.PENDING).update(
        attempts=attempts, last_status_code=result.status_code, **changes
    )


def time_now() -> float:
    import time

    return time.time()
