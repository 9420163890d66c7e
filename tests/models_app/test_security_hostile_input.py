"""Hostile input, each with a test (what other files already cover is named, not repeated).

Covered elsewhere: path traversal (test_api_version_files), malformed JSON
(test_api_registered_models), private/loopback/metadata/disguised webhook addresses
(test_services_webhooks), most malicious pickles (test_pickle_scan), the CSP header
(tests/registry_project/test_observability).
"""

from __future__ import annotations

import io
import json
import logging
import pickle
import zipfile

import pytest
from django.test import Client

from models_app import services, services_governance
from models_app.models import Blob, VersionFile
from models_app.pickle_scan import scan_stream, summarize

# --- Odd Unicode in file paths and names -----------------------------------------------------

ODD_PATHS = [
    "cafe\u0301.bin",  # NFD: "café" spelled with a combining accent
    "a\x07b.bin",  # control character (BEL)
    "a\x1bb.bin",  # ESC: terminal escape sequences
    "a\x7fb.bin",  # DEL
]


@pytest.fixture
def version(owner, internal_model):
    return services.model_version_create(actor=owner, model=internal_model)


@pytest.mark.parametrize("path", ODD_PATHS)
def test_odd_unicode_in_file_paths_is_a_400_naming_path(api, owner, version, path):
    from urllib.parse import quote

    response = api(owner).put(
        f"/api/v1/models/churn/versions/1/files/{quote(path)}",
        data=b"x",
        content_type="application/octet-stream",
    )
    assert response.status_code == 400, response.content
    assert "path" in response.json()["fields"]
    assert not VersionFile.objects.exists() and not Blob.objects.exists()


@pytest.mark.parametrize(
    "path",
    [
        "evil\u202egpj.exe",  # RTL override: shows as "evil" + "exe.jpg" reversed
        "model\u200b.bin",  # zero-width space
        "\u2066isolate\u2069.bin",  # bidi isolates
        "\ufeffbom.bin",  # BOM / zero-width no-break space
    ],
)
def test_invisible_and_bidi_characters_in_file_paths_are_refused(api, owner, version, path):
    """Names that display differently from what they are (Trojan-Source style) are refused."""
    from urllib.parse import quote

    response = api(owner).put(
        f"/api/v1/models/churn/versions/1/files/{quote(path)}",
        data=b"x",
        content_type="application/octet-stream",
    )
    assert response.status_code == 400, response.content
    assert "path" in response.json()["fields"]


def test_a_lone_surrogate_in_a_json_path_is_a_400(api, owner, version):
    body = '{"files": [{"path": "a\\ud800.bin", "sha256": "' + "a" * 64 + '"}]}'
    response = api(owner).generic(
        "POST", "/api/v1/models/churn/versions/1/files/", data=body, content_type="application/json"
    )
    assert response.status_code == 400, response.content


@pytest.mark.parametrize(
    "name", ["caf\u00e9", "evil\u202eexe", "zero\u200bwidth", "a\x00b", "..", "a/b", "<script>"]
)
def test_odd_model_names_are_a_400_naming_name(api, owner, team, name):
    response = api(owner).post("/api/v1/models/", {"name": name, "team": "risk"}, format="json")
    assert response.status_code == 400, response.content
    assert "name" in response.json()["fields"]


# --- Oversized and deeply nested JSON, huge headers ------------------------------------------


def test_a_10_mb_json_body_is_refused_before_parsing(api, owner, team, monkeypatch):
    import rest_framework.parsers

    parsed = []
    monkeypatch.setattr(rest_framework.parsers.json, "load", lambda *a, **k: parsed.append(1))
    body = json.dumps({"name": "big", "description": "x" * 10 * 1024 * 1024})
    response = api(owner).generic("POST", "/api/v1/models/", data=body, content_type="application/json")
    assert response.status_code == 413, response.status_code
    assert response.json()["error"] == "too_large" and "larger than" in response.json()["message"]
    assert parsed == []  # never handed to the JSON parser


@pytest.mark.parametrize("depth", [100_000, 3_000])
def test_deeply_nested_json_is_a_400_not_a_recursion_error(api, owner, team, depth):
    body = '{"name": "deep", "tags": ' + "[" * depth + "]" * depth + "}"
    response = api(owner).generic("POST", "/api/v1/models/", data=body, content_type="application/json")
    assert response.status_code == 400, response.status_code
    assert response.json()["error"]


def test_deeply_nested_check_metrics_are_stored_or_refused_never_500(api, owner, version):
    services.version_file_upload(actor=owner, version=version, path="m.bin", stream=io.BytesIO(b"w"), size=1)
    depth = 900  # parses, but is deeper than json.dumps can write back
    metrics = '{"x": ' * depth + "{}" + "}" * depth
    body = '{"name": "deep", "status": "passed", "metrics": ' + metrics + "}"
    response = api(owner).generic(
        "POST", "/api/v1/models/churn/versions/1/checks", data=body, content_type="application/json"
    )
    assert response.status_code in (201, 400), response.status_code


def test_huge_headers_are_answered_not_crashed(api, owner, internal_model):
    client = api(owner)
    response = client.get("/api/v1/models/", HTTP_X_PADDING="a" * 1_000_000)
    assert response.status_code == 200
    response = Client().get("/api/v1/models/", HTTP_AUTHORIZATION="Bearer " + "x" * 1_000_000)
    assert response.status_code == 401
    assert response.json()["error"] in ("not_authenticated", "authentication_failed")


def test_huge_headers_on_a_real_http_server_are_refused_cleanly(live_server):
    """Over a socket, a 100 kB header line is refused by the HTTP server (4xx), never a 5xx."""
    import socket
    from urllib.parse import urlparse

    url = urlparse(live_server.url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(
            f"GET /healthz HTTP/1.1\r\nHost: {url.hostname}\r\nX-Big: {'a' * 100_000}\r\n\r\n".encode()
        )
        head = sock.recv(64)
    assert head.startswith((b"HTTP/1.1 4", b"HTTP/1.0 4")), head


# --- Archives offered as models --------------------------------------------------------------


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buf.getvalue()


def test_a_zip_bomb_is_refused_unread_by_security_scan():
    bomb = _zip({"archive/data.pkl": b"\x80\x02" + b"N" * (80 * 1024 * 1024) + b"."})
    assert len(bomb) < 200_000  # 80 MiB of pickle opcodes squeezed into ~80 kB
    passed, summary, _metrics = summarize(scan_stream("model.pt", io.BytesIO(bomb)))
    assert not passed
    assert "zip bomb" in summary


def test_a_pickle_that_floods_the_scanners_stack_is_refused_quickly():
    import time

    flood = _zip({"archive/data.pkl": b"\x80\x02" + b"N" * 20_000_000 + b"."})
    started = time.monotonic()
    passed, summary, _metrics = summarize(scan_stream("model.pt", io.BytesIO(flood)))
    assert not passed and "stack" in summary
    assert time.monotonic() - started < 30


def test_tar_archives_are_only_produced_never_unpacked():
    """Nothing in the registry unpacks tar files: archives are streamed out (artifacts.stream_tar).
    Fails if a module starts calling tarfile's extraction."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for folder in ("models_app", "lineage_app", "registry_project", "deployments_app"):
        for source in (root / folder).rglob("*.py"):
            text = source.read_text()
            assert "extractall" not in text and ".extract(" not in text, source


# --- Malicious pickles not covered by test_pickle_scan -------------------------------------------


class CopyregExploit:
    """REDUCE through copyreg: ``copyreg._reconstructor(os.system-ish)`` style gadgets."""

    def __reduce__(self):
        import copyreg
        import os

        return (copyreg._reconstructor, (object, object, None), None, None, None), os


def test_reduce_via_copyreg_is_named():
    import copyreg

    data = pickle.dumps((copyreg._reconstructor, (object, object, None)), protocol=2)
    # A pickle calling copyreg._reconstructor on a class of the attacker's choosing.
    payload = b"\x80\x02ccopyreg\n_reconstructor\ncos\nsystem\ncbuiltins\nobject\nN\x87R."
    passed, summary, _ = summarize(scan_stream("m.pkl", io.BytesIO(payload)))
    assert not passed
    assert "copyreg._reconstructor" in summary or "os.system" in summary
    assert data  # a real pickle of the gadget builds


def test_getattr_chains_through_builtins_are_named():
    # builtins.getattr(builtins.__import__("os"), "system")("id"), written by hand.
    payload = (
        b"\x80\x02cbuiltins\ngetattr\n"
        b"cbuiltins\n__import__\nX\x02\x00\x00\x00os\x85R"
        b"X\x06\x00\x00\x00system\x86R"
        b"X\x02\x00\x00\x00id\x85R."
    )
    passed, summary, _ = summarize(scan_stream("m.pkl", io.BytesIO(payload)))
    assert not passed
    assert "builtins.getattr" in summary and "builtins.__import__" in summary


# --- <script> in every free-text field shown in the UI ---------------------------------------

XSS = "<script>alert('x')</script>"


def test_script_in_every_free_text_field_is_inert(owner, approver, team):
    from lineage_app import services as lineage

    model = services.registered_model_create(
        actor=owner, name="xss", team=team, description=XSS, tags={"note": XSS, "k": XSS}
    )
    v1 = services.model_version_create(actor=owner, model=model, description=XSS, tags={"t": XSS})
    lineage.lineage_set(
        actor=owner,
        version=v1,
        document={
            "code": {"repo_url": "https://git.example.com/x.git", "commit": "c" * 40, "branch": XSS},
            "environment": {"python": "3.11", "packages": [{"name": "numpy", "version": "1.26.4"}]},
            "datasets": [{"name": XSS, "uri": XSS, "digest": "sha256:x", "role": "train"}],
            "run": {"id": XSS, "pipeline": XSS, "params": {XSS: XSS}, "metrics": {"auc": 0.9}},
        },
    )
    services.version_file_upload(actor=owner, version=v1, path="m.bin", stream=io.BytesIO(b"w"), size=1)
    services.model_version_finalize(actor=owner, version=v1)
    services.model_alias_set(actor=owner, model=model, alias="candidate", version=v1)
    services_governance.check_report(
        actor=owner, version=v1, name="integration", status="passed", summary=XSS
    )
    for name in ("loadable", "security_scan"):
        services_governance.check_report(actor=None, version=v1, name=name, status="passed", builtin=True)
    promotion = services_governance.promotion_request(
        actor=owner, version=v1, target_stage="production", comment=XSS
    )
    services_governance.promotion_reject(actor=approver, promotion=promotion, comment=XSS)
    services.access_token_create(actor=owner, user=owner, name=XSS, scopes=["read"])
    pages = [
        "/",
        "/?q=" + XSS,
        "/models/xss/",
        "/models/xss/versions/1/",
        "/models/xss/compare/",
        "/promotions/",
        "/tokens/",
        "/teams/",
        "/lineage/commits/?sha=" + "c" * 40,
        "/lineage/exposure/?package=numpy&specifier=" + XSS,
    ]
    client = Client()
    client.force_login(owner)
    for page in pages:
        response = client.get(page)
        assert response.status_code == 200, (page, response.status_code)
        html = response.content.decode()
        assert "<script>alert" not in html, page
        assert "script-src 'self'" in response["Content-Security-Policy"], page
    detail = client.get("/models/xss/versions/1/").content.decode()
    assert "&lt;script&gt;" in detail  # shown, as text


def test_a_javascript_details_url_is_refused(api, owner, version):
    services.version_file_upload(actor=owner, version=version, path="m.bin", stream=io.BytesIO(b"w"), size=1)
    response = api(owner).post(
        "/api/v1/models/churn/versions/1/checks",
        {"name": "x", "status": "passed", "details_url": "javascript:alert(1)"},
        format="json",
    )
    assert response.status_code == 400 and "details_url" in response.json()["fields"]


# --- Webhook receivers: DNS names that resolve inside ----------------------------------------


def test_a_dns_name_resolving_to_a_private_address_is_refused(api, owner, monkeypatch, settings):
    """``localhost`` is covered with real DNS in test_services_webhooks; for a public-looking name
    the resolver is patched (DNS for made-up names cannot be controlled here)."""
    import socket

    settings.MODELYARD_WEBHOOK_ALLOW_PRIVATE = False
    real = socket.getaddrinfo

    def fake(host, port, *args, **kwargs):
        if host == "hooks.attacker.example":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    response = api(owner).post(
        "/api/v1/webhooks/",
        {"name": "x", "url": "https://hooks.attacker.example/h", "events": ["*"]},
        format="json",
    )
    assert response.status_code == 400 and "url" in response.json()["fields"]


def test_dns_rebinding_after_creation_is_refused_at_delivery(owner, monkeypatch, settings):
    """Public when the webhook is saved, 169.254.169.254 when the delivery is sent: refused then."""
    import socket

    from models_app import services_events, webhooks

    settings.MODELYARD_WEBHOOK_ALLOW_PRIVATE = False
    answers = {"hooks.rebind.example": "93.184.216.34"}
    real = socket.getaddrinfo

    def fake(host, port, *args, **kwargs):
        if host in answers:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    hook, _secret = services_events.webhook_create(
        actor=owner, name="r", url="http://hooks.rebind.example/h", events=["*"]
    )
    answers["hooks.rebind.example"] = "169.254.169.254"
    result = webhooks.post(hook.url, b"{}", {}, timeout=2)
    assert not result.ok and result.status_code is None
    assert "private" in result.error or "link-local" in result.error or "loopback" in result.error


# --- Secrets in logs --------------------------------------------------------------------------


def test_tokens_never_appear_in_logs(api, owner, internal_model, caplog):
    """Every record logged during good and bad authenticated requests, formatted by both of our
    formatters (plain and JSON), holds no token, nor a slice of one."""
    from registry_project.observability import JsonFormatter

    _token, raw = services.access_token_create(actor=owner, user=owner, name="t", scopes=["read"])
    revoked, raw_revoked = services.access_token_create(actor=owner, user=owner, name="r", scopes=["read"])
    services.access_token_revoke(actor=owner, token=revoked)
    caplog.set_level(logging.DEBUG)
    client = Client()
    auth = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
    assert client.get("/api/v1/models/", **auth).status_code == 200
    assert client.post("/api/v1/models/", "{}", content_type="application/json", **auth).status_code == 403
    assert client.get("/api/v1/models/nope/", **auth).status_code == 404
    assert client.get("/api/v1/models/", HTTP_AUTHORIZATION=f"Bearer {raw_revoked}").status_code == 401
    assert client.get("/api/v1/models/", HTTP_AUTHORIZATION=f"Bearer {raw}x").status_code == 401
    assert client.get("/api/v1/models/", HTTP_AUTHORIZATION=f"Token {raw}").status_code == 401
    assert client.get("/metrics", **auth).status_code in (200, 401, 403)
    assert caplog.records  # there was something to look at
    plain = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    text = "\n".join(f(record) for record in caplog.records for f in (plain.format, JsonFormatter().format))
    for secret in (raw, raw_revoked):
        assert secret not in text
        assert secret[8:40] not in text  # nor a slice of it


# --- Brute-force sign-in ----------------------------------------------------------------------


def _login(client: Client, username: str, password: str, path: str = "/login/"):
    return client.post(path, {"username": username, "password": password})


def test_sign_in_is_locked_after_repeated_failures(owner, settings):
    settings.MODELYARD_LOGIN_FAILURE_LIMIT = 3
    from django.core.cache import cache

    cache.clear()
    client = Client()
    for _ in range(3):
        assert _login(client, "owner", "wrong").status_code == 200  # the form again, with an error
    locked = _login(client, "owner", "pw-owner")  # even the right password, while locked
    assert locked.status_code == 429
    assert b"Too many failed sign-ins" in locked.content
    assert "_auth_user_id" not in client.session
    # Another address is not locked out by this one's failures.
    elsewhere = Client(REMOTE_ADDR="10.9.8.7")
    assert _login(elsewhere, "owner", "pw-owner").status_code == 302
    # API tokens are untouched by the lockout.
    _t, raw = services.access_token_create(actor=owner, user=owner, name="t", scopes=["read"])
    assert Client().get("/api/v1/models/", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 200
    cache.clear()


def test_a_success_resets_the_count(owner, settings):
    settings.MODELYARD_LOGIN_FAILURE_LIMIT = 3
    from django.core.cache import cache

    cache.clear()
    client = Client()
    for _ in range(2):
        _login(client, "owner", "wrong")
    assert _login(client, "owner", "pw-owner").status_code == 302
    client.logout()
    for _ in range(2):
        _login(client, "owner", "wrong")
    assert _login(client, "owner", "pw-owner").status_code == 302
    cache.clear()


def test_admin_sign_in_is_locked_too(admin_user, settings):
    settings.MODELYARD_LOGIN_FAILURE_LIMIT = 2
    from django.core.cache import cache

    cache.clear()
    client = Client()
    for _ in range(2):
        _login(client, "admin", "wrong", "/admin/login/")
    response = _login(client, "admin", "pw-admin", "/admin/login/")
    assert b"Too many failed sign-ins" in response.content
    assert "_auth_user_id" not in client.session
    cache.clear()
