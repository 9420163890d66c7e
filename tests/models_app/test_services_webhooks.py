"""Webhooks: real local receivers, signatures, retries with backoff, no loss, no leaks, SSRF guard."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from models_app import services, services_events
from models_app.choices import Visibility
from models_app.models import DeliveryAttempt, Event, WebhookDelivery


class Receiver:
    """A real HTTP server on 127.0.0.1 that records requests and answers scripted status codes."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.requests: list[dict] = []
        self.statuses = list(statuses or [])
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append({"headers": dict(self.headers), "body": body})
                code = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(settings):
    settings.MODELYARD_WEBHOOK_ALLOW_PRIVATE = True  # the receiver lives on loopback
    r = Receiver()
    yield r
    r.close()


def make_due() -> None:
    WebhookDelivery.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))


def test_a_delivery_is_signed_and_verifiable(owner, team, receiver, django_capture_on_commit_callbacks):
    _hook, secret = services_events.webhook_create(
        actor=owner, name="ci", url=receiver.url, events=["model.created", "version.created"]
    )
    services.registered_model_create(actor=owner, name="churn", team=team)
    assert services_events.deliveries_dispatch() == 1
    request = receiver.requests[0]
    headers, body = request["headers"], request["body"]
    expected = (
        "sha256="
        + hmac.new(
            secret.encode(), headers["X-Modelyard-Timestamp"].encode() + b"." + body, hashlib.sha256
        ).hexdigest()
    )
    assert hmac.compare_digest(headers["X-Modelyard-Signature"], expected)
    payload = json.loads(body)
    assert payload["type"] == "model.created" and payload["model"] == "churn"
    assert payload["id"] == headers["X-Modelyard-Delivery"]
    assert WebhookDelivery.objects.get().state == "delivered"


def test_500_three_times_then_200_is_delivered_once_after_retries(owner, team, settings):
    settings.MODELYARD_WEBHOOK_ALLOW_PRIVATE = True
    receiver = Receiver([500, 500, 500, 200])
    try:
        services_events.webhook_create(actor=owner, name="flaky", url=receiver.url, events=["model.created"])
        services.registered_model_create(actor=owner, name="churn", team=team)
        for _ in range(4):
            services_events.deliveries_dispatch()
            delivery = WebhookDelivery.objects.get()
            if delivery.state == "pending":
                assert delivery.next_attempt_at > timezone.now()  # backing off, not hammering
                make_due()
        delivery = WebhookDelivery.objects.get()
        assert delivery.state == "delivered" and delivery.attempts == 4
        assert list(DeliveryAttempt.objects.values_list("status_code", flat=True)) == [500, 500, 500, 200]
        assert len(receiver.requests) == 4
        assert len({r["headers"]["X-Modelyard-Delivery"] for r in receiver.requests}) == 1  # one id to dedupe
        services_events.deliveries_dispatch()
        assert len(receiver.requests) == 4  # delivered once: nothing more is sent
    finally:
        receiver.close()


def test_deliveries_give_up_after_24_hours(owner, team, settings):
    settings.MODELYARD_WEBHOOK_ALLOW_PRIVATE = True
    receiver = Receiver([500] * 10)
    try:
        services_events.webhook_create(actor=owner, name="down", url=receiver.url, events=["*"])
        services.registered_model_create(actor=owner, name="churn", team=team)
        WebhookDelivery.objects.update(created_at=timezone.now() - timedelta(hours=25))
        make_due()
        services_events.deliveries_dispatch()
        assert WebhookDelivery.objects.get().state == "failed"
    finally:
        receiver.close()


def test_private_model_events_do_not_reach_other_teams(owner, outsider, team, receiver):
    services_events.webhook_create(actor=outsider, name="spy", url=receiver.url, events=["*"])
    services.registered_model_create(actor=owner, name="fraud", team=team, visibility=Visibility.PRIVATE)
    services.registered_model_create(actor=owner, name="churn", team=team)  # internal: visible to all
    services_events.deliveries_dispatch()
    assert [json.loads(r["body"])["model"] for r in receiver.requests] == ["churn"]


def test_no_event_is_lost_when_nothing_is_running(owner, team, receiver):
    """The outbox row is written with the change; delivery can come much later."""
    services_events.webhook_create(actor=owner, name="later", url=receiver.url, events=["model.created"])
    services.registered_model_create(actor=owner, name="churn", team=team)
    assert Event.objects.filter(type="model.created").count() == 1
    assert receiver.requests == []
    services_events.deliveries_dispatch()
    assert len(receiver.requests) == 1


def test_only_an_active_webhook_makes_audited_changes_events(owner, team, receiver, store):
    """The audit insert itself says whether a webhook is active (no probe of its own): with none,
    or only a paused one, nothing goes to the outbox; once one is active, the next change does,
    both events of a change audited twice in one insert (registered READY) included."""
    hook, _secret = services_events.webhook_create(actor=owner, name="h", url=receiver.url, events=["*"])
    services_events.webhook_update(actor=owner, hook=hook, active=False)
    with CaptureQueriesContext(connection) as ctx:
        model = services.registered_model_create(actor=owner, name="churn", team=team)
        held = services.model_version_create(actor=owner, model=model)
        services.version_file_upload(actor=owner, version=held, path="m.bin", stream=io.BytesIO(b"w"), size=1)
        services.model_version_finalize(actor=owner, version=held)
    assert not Event.objects.exists()
    asked = [q["sql"] for q in ctx.captured_queries if "models_app_webhook" in (q["sql"] or "")]
    assert asked and all(sql.startswith('INSERT INTO "models_app_auditevent"') for sql in asked)
    services_events.webhook_update(actor=owner, hook=hook, active=True)
    files = [{"path": "m.bin", "sha256": hashlib.sha256(b"w").hexdigest()}]
    version = services.model_version_register(actor=owner, model=model, files=files)
    assert list(Event.objects.order_by("pk").values_list("type", "payload__version")) == [
        ("version.created", version.version),
        ("version.ready", version.version),
    ]
    assert WebhookDelivery.objects.filter(webhook=hook).count() == 2


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/",
        "http://192.168.1.1/",
        "http://localhost:8000/",
        "http://[::1]/",
        "ftp://example.com/",
    ],
)
def test_webhooks_to_private_addresses_are_refused_by_default(api, owner, url):
    response = api(owner).post("/api/v1/webhooks/", {"name": "x", "url": url, "events": ["*"]}, format="json")
    assert response.status_code == 400 and "url" in response.json()["fields"]


def test_webhook_api_shows_the_secret_once_and_redelivers(api, owner, team, receiver, outsider):
    client = api(owner)
    created = client.post(
        "/api/v1/webhooks/", {"name": "ci", "url": receiver.url, "events": ["webhook.ping"]}, format="json"
    )
    assert created.status_code == 201 and len(created.json()["secret"]) >= 32
    hook_id = created.json()["id"]
    assert "secret" not in client.get(f"/api/v1/webhooks/{hook_id}/").json()
    assert client.post(f"/api/v1/webhooks/{hook_id}/ping").status_code == 202
    services_events.deliveries_dispatch()
    deliveries = client.get(f"/api/v1/webhooks/{hook_id}/deliveries/").json()
    assert deliveries[0]["state"] == "delivered" and deliveries[0]["attempt_log"][0]["status_code"] == 200
    redo = client.post(f"/api/v1/webhooks/{hook_id}/deliveries/{deliveries[0]['delivery_id']}/redeliver")
    assert redo.status_code == 202
    services_events.deliveries_dispatch()
    assert len(receiver.requests) == 2
    assert api(outsider).get(f"/api/v1/webhooks/{hook_id}/").status_code == 404
    assert (
        client.patch(f"/api/v1/webhooks/{hook_id}/", {"events": ["nope"]}, format="json").status_code == 400
    )
    assert client.delete(f"/api/v1/webhooks/{hook_id}/").status_code == 204


def test_viewers_cannot_create_webhooks(api, viewer, settings):
    settings.MODELYARD_WEBHOOK_ALLOW_PRIVATE = True
    response = api(viewer).post(
        "/api/v1/webhooks/", {"name": "x", "url": "http://127.0.0.1:9/", "events": ["*"]}, format="json"
    )
    assert response.status_code == 403


@pytest.mark.parametrize(
    "url",
    [
        "http://100.64.0.1/",  # carrier-grade NAT: not private, not public either
        "http://[::ffff:127.0.0.1]/",  # IPv4-mapped loopback
        "http://[2002:7f00:1::]/",  # 6to4 wrapping 127.0.0.1
        "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 wrapping 169.254.169.254
        "http://[fd00::1]/",  # unique local
        "http://0.0.0.0/",
        "http://2130706433/",  # 127.0.0.1 as one decimal number: resolved, then refused
    ],
)
def test_disguised_internal_addresses_are_refused(url, settings):
    from django.core.exceptions import ValidationError

    from models_app.webhooks import resolve_public

    settings.MODELYARD_WEBHOOK_ALLOW_PRIVATE = False
    with pytest.raises(ValidationError):
        resolve_public(url)


def test_public_addresses_pass_the_guard(settings):
    from models_app.webhooks import resolve_public

    settings.MODELYARD_WEBHOOK_ALLOW_PRIVATE = False
    assert resolve_public("https://8.8.8.8/hook") == ("https", 443, "8.8.8.8", "8.8.8.8")
    assert resolve_public("http://[2606:4700::1111]:8080/")[3] == "2606:4700::1111"


class HoldingReceiver(Receiver):
    """Records each request, then holds the answer until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived, self.release = threading.Event(), threading.Event()
        handler = self.server.RequestHandlerClass
        original = handler.do_POST
        receiver = self

        def do_post(handler_self) -> None:
            receiver.arrived.set()
            receiver.release.wait(10)
            original(handler_self)

        handler.do_POST = do_post


@pytest.mark.django_db(transaction=True)
def test_a_delivery_in_flight_is_not_sent_again_by_another_dispatcher(owner, team, settings):
    from django.db import connection

    settings.MODELYARD_WEBHOOK_ALLOW_PRIVATE = True
    receiver = HoldingReceiver()
    try:
        services_events.webhook_create(actor=owner, name="slow", url=receiver.url, events=["model.created"])
        services.registered_model_create(actor=owner, name="churn", team=team)

        def dispatch() -> None:
            try:
                services_events.deliveries_dispatch()
            finally:
                connection.close()

        worker = threading.Thread(target=dispatch)
        worker.start()
        assert receiver.arrived.wait(10)
        claimed = WebhookDelivery.objects.get()
        # The claim outlasts the slowest attempt a worker may make (three timeouts).
        timeout = settings.MODELYARD_WEBHOOK_TIMEOUT_SECONDS
        assert claimed.next_attempt_at > timezone.now() + timedelta(seconds=3 * timeout)
        assert services_events.deliveries_dispatch() == 0  # a second worker finds nothing due
        receiver.release.set()
        worker.join(10)
        delivery = WebhookDelivery.objects.get()
        assert delivery.state == "delivered" and delivery.attempts == 1
        assert DeliveryAttempt.objects.count() == 1
    finally:
        receiver.release.set()
        receiver.close()


def test_a_redelivery_restarts_the_retry_window_and_is_audited(owner, team, settings):
    from models_app.models import AuditEvent

    settings.MODELYARD_WEBHOOK_ALLOW_PRIVATE = True
    receiver = Receiver([500, 500, 200])
    try:
        services_events.webhook_create(actor=owner, name="late", url=receiver.url, events=["model.created"])
        services.registered_model_create(actor=owner, name="churn", team=team)
        WebhookDelivery.objects.update(created_at=timezone.now() - timedelta(hours=25))
        services_events.deliveries_dispatch()
        delivery = WebhookDelivery.objects.get()
        assert delivery.state == "failed"
        services_events.delivery_redeliver(actor=owner, delivery=delivery)
        services_events.deliveries_dispatch()
        assert WebhookDelivery.objects.get().state == "pending"  # retried, not given up at once
        make_due()
        services_events.deliveries_dispatch()
        assert WebhookDelivery.objects.get().state == "delivered"
        assert AuditEvent.objects.filter(action="webhook.redelivered").count() == 1
    finally:
        receiver.close()
