"""Every endpoint of the native API x every persona, on a private model.

anonymous → 401; outsider → 404 (the model does not exist for them); viewer writing → 403;
owner → 2xx; a ``read`` token writing → 403; admin → 2xx.
``tests/registry_project/test_security_permission_matrix.py`` walks the whole URL conf, so that
a new endpoint cannot be added without a row here or there.
"""

from __future__ import annotations

import hashlib
import io
import json

import pytest

from models_app import artifacts, services
from models_app.models import ModelVersion, UploadSession

M = "/api/v1/models/fraud"
UPLOAD = "0b7c1a9e-5f7e-4c43-9d0c-6a4be0c2f001"
FILE_REF = {"files": [{"path": "copy.bin", "sha256": hashlib.sha256(b"data").hexdigest()}]}
# (method, path, body, kind): kind "read" or "write" on the private model; "create" registers
# a new model in the owner's team; "list" is the model list itself.
ENDPOINTS = [
    ("GET", "/api/v1/models/", None, "list"),
    ("POST", "/api/v1/models/", {"name": "new-model", "team": "risk"}, "create"),
    ("GET", f"{M}/", None, "read"),
    ("PATCH", f"{M}/", {"description": "changed"}, "write"),
    ("DELETE", f"{M}/", None, "write"),
    ("PUT", f"{M}/tags/owner", {"value": "ops"}, "write"),
    ("DELETE", f"{M}/tags/task", None, "write"),
    ("GET", f"{M}/versions/", None, "read"),
    ("POST", f"{M}/versions/", {"description": "v2"}, "write"),
    ("GET", f"{M}/versions/1/", None, "read"),
    ("PATCH", f"{M}/versions/1/", {"description": "changed"}, "write"),
    ("DELETE", f"{M}/versions/1/", None, "write"),
    ("PUT", f"{M}/versions/1/tags/owner", {"value": "ops"}, "write"),
    ("DELETE", f"{M}/versions/1/tags/stage", None, "write"),
    ("GET", f"{M}/aliases/", None, "read"),
    ("GET", f"{M}/aliases/candidate", None, "read"),
    ("PUT", f"{M}/aliases/candidate", {"version": 1}, "write"),
    ("DELETE", f"{M}/aliases/candidate", None, "write"),
    ("GET", f"{M}/versions/1/files/", None, "read"),
    ("POST", f"{M}/versions/1/files/", FILE_REF, "write"),
    ("GET", f"{M}/versions/1/files/m.bin", None, "read"),
    ("PUT", f"{M}/versions/1/files/new.bin", b"bytes", "write"),
    ("DELETE", f"{M}/versions/1/files/m.bin", None, "write"),
    ("POST", f"{M}/versions/1/files/big.bin/multipart", {"size": 10, "sha256": "a" * 64}, "write"),
    ("POST", f"{M}/versions/1/finalize", None, "write"),
    ("GET", f"{M}/versions/1/archive", None, "read"),
    ("GET", f"{M}/aliases/candidate/files/", None, "read"),
    ("GET", f"{M}/aliases/candidate/files/m.bin", None, "read"),
    ("GET", f"{M}/aliases/candidate/archive", None, "read"),
    ("GET", f"/api/v1/uploads/{UPLOAD}", None, "read"),
    ("PUT", f"/api/v1/uploads/{UPLOAD}/parts/1", b"data", "write"),
    ("POST", f"/api/v1/uploads/{UPLOAD}/complete", None, "write"),
    ("DELETE", f"/api/v1/uploads/{UPLOAD}", None, "write"),
    ("GET", f"{M}/versions/1/checks", None, "read"),
    ("POST", f"{M}/versions/1/checks", {"name": "integration", "status": "passed"}, "write"),
    ("GET", f"{M}/versions/1/promotions", None, "read"),
    ("POST", f"{M}/versions/2/promotions", {"target_stage": "staging"}, "write"),
    ("GET", f"{M}/policy", None, "read"),
    ("PATCH", f"{M}/policy", {"production_approvals": 2}, "write"),
    ("GET", f"{M}/alias-history/", None, "read"),
    ("GET", f"{M}/versions/1/lineage", None, "read"),
    ("PUT", f"{M}/versions/1/lineage", {"run": {"id": "r1"}}, "write"),
    (
        "POST",
        f"{M}/versions/2/lineage/amendments",
        {"reason": "typo", "changes": {"run": {"id": "r2"}}},
        "write",
    ),
    ("GET", f"{M}/versions/compare?a=1&b=2", None, "read"),
]

EXPECTED = {
    # persona: {kind: expected status}; 200 stands for any 2xx
    "anonymous": {"list": 401, "create": 401, "read": 401, "write": 401},
    "outsider": {"list": 200, "create": 403, "read": 404, "write": 404},
    "viewer": {"list": 200, "create": 403, "read": 200, "write": 403},
    "owner_read_token": {"list": 200, "create": 403, "read": 200, "write": 403},
    "owner": {"list": 200, "create": 200, "read": 200, "write": 200},
    # Approvers and deployers of the owning team read everything and write nothing here.
    "approver": {"list": 200, "create": 403, "read": 200, "write": 403},
    "deployer": {"list": 200, "create": 403, "read": 200, "write": 403},
    "admin": {"list": 200, "create": 200, "read": 200, "write": 200},
}


@pytest.fixture
def fraud(owner, team):
    from models_app.choices import Visibility

    model = services.registered_model_create(
        actor=owner, name="fraud", team=team, visibility=Visibility.PRIVATE, tags={"task": "classification"}
    )
    version = services.model_version_create(actor=owner, model=model, tags={"stage": "candidate"})
    services.model_alias_set(actor=owner, model=model, alias="candidate", version=version)
    from models_app.models import PromotionPolicy

    # A READY version 2 to promote; staging needs no check here, so the owner's row applies at once.
    ready = services.model_version_create(actor=owner, model=model)
    services.version_file_upload(actor=owner, version=ready, path="m.bin", stream=io.BytesIO(b"data"), size=4)
    services.model_version_finalize(actor=owner, version=ready)
    PromotionPolicy.objects.update_or_create(model=model, defaults={"required_checks": {}})
    services.version_file_upload(
        actor=owner, version=version, path="m.bin", stream=io.BytesIO(b"data"), size=4
    )
    session = services.upload_session_begin(
        actor=owner, version=version, path="parts.bin", size=4, sha256=hashlib.sha256(b"data").hexdigest()
    )
    UploadSession.objects.filter(pk=session.pk).update(id=UPLOAD)
    session = UploadSession.objects.get(pk=UPLOAD)
    artifacts.get_store().parts_begin(session.staging_key)
    services.upload_session_part_write(
        actor=owner, session=session, part_number=1, stream=io.BytesIO(b"data"), size=4
    )
    return model


def _client(persona, api, request):
    if persona == "anonymous":
        return api(None)
    if persona == "owner_read_token":
        return api(request.getfixturevalue("owner"), ["read"])
    user = request.getfixturevalue("admin_user" if persona == "admin" else persona)
    return api(user, ["read", "write"])


@pytest.mark.parametrize("persona", list(EXPECTED))
@pytest.mark.parametrize(
    ("method", "path", "body", "kind"), ENDPOINTS, ids=[f"{e[0]} {e[1]}" for e in ENDPOINTS]
)
def test_permission_matrix(persona, method, path, body, kind, api, request, fraud, viewer, outsider):
    client = _client(persona, api, request)
    before = ModelVersion.objects.count()
    if isinstance(body, bytes):
        response = client.generic(method, path, data=body, content_type="application/octet-stream")
    else:
        data = None if body is None else json.dumps(body)
        response = client.generic(method, path, data=data, content_type="application/json")
    expected = EXPECTED[persona][kind]
    if expected == 200:
        assert 200 <= response.status_code < 300, (response.status_code, response.content)
    else:
        assert response.status_code == expected, (response.status_code, response.content)
        assert response.json()["error"]  # the JSON error envelope, always
        if kind in ("write", "create"):
            assert ModelVersion.objects.count() == before  # a refused write changed nothing


def test_outsider_list_hides_private_models(api, fraud, outsider):
    body = api(outsider).get("/api/v1/models/").json()
    assert body["count"] == 0
    assert body["results"] == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/promotions/"),
        ("GET", "/api/v1/promotions/1/"),
        ("POST", "/api/v1/promotions/1/approve"),
        ("POST", "/api/v1/promotions/1/reject"),
        ("POST", "/api/v1/promotions/1/cancel"),
        ("GET", "/api/v1/audit/"),
        ("GET", "/api/v1/audit/1/"),
        ("GET", "/api/v1/teams/"),
        ("POST", "/api/v1/teams/"),
        ("GET", "/api/v1/teams/risk/"),
        ("PUT", "/api/v1/teams/risk/members/owner"),
        ("DELETE", "/api/v1/teams/risk/members/owner"),
        ("GET", "/api/v1/lineage/exposure?package=x&specifier=>0"),
        ("GET", "/api/v1/lineage/advisories"),
        ("POST", "/api/v1/lineage/advisories"),
        ("GET", "/api/v1/lineage/advisories/GHSA-x/affected"),
        ("GET", "/api/v1/lineage/commits/abcdef0"),
        ("GET", "/api/v1/lineage/graph?model=fraud&version=1"),
        ("GET", "/api/v1/webhooks/"),
        ("POST", "/api/v1/webhooks/"),
        ("GET", "/api/v1/webhooks/1/"),
        ("PATCH", "/api/v1/webhooks/1/"),
        ("DELETE", "/api/v1/webhooks/1/"),
        ("GET", "/api/v1/webhooks/1/deliveries/"),
        ("POST", "/api/v1/webhooks/1/ping"),
        ("POST", "/api/v1/webhooks/1/deliveries/0b7c1a9e-5f7e-4c43-9d0c-6a4be0c2f001/redeliver"),
    ],
)
def test_admin_and_approver_routes_refuse_anonymous_callers(api, method, path, db):
    response = api(None).generic(method, path, data="{}", content_type="application/json")
    assert response.status_code == 401


def test_promotions_of_a_private_model_are_404_to_outsiders(api, owner, outsider, approver2, fraud):
    from models_app import services_governance
    from models_app.models import ModelVersion

    version = ModelVersion.objects.get(model=fraud, version=2)
    services_governance.check_report(
        actor=None, version=version, name="loadable", status="passed", builtin=True
    )
    services_governance.check_report(
        actor=None, version=version, name="security_scan", status="passed", builtin=True
    )
    promotion = services_governance.promotion_request(actor=owner, version=version, target_stage="production")
    # approver2 holds the approver role in another team: a private model is invisible to them too.
    for user in (outsider, approver2):
        client = api(user)
        assert client.get(f"/api/v1/promotions/{promotion.pk}/").status_code == 404
        assert client.get("/api/v1/promotions/").json()["count"] == 0
    # Without the approver role the answer is 403 for any id (it says nothing about the model).
    assert (
        api(outsider).post(f"/api/v1/promotions/{promotion.pk}/approve", {}, format="json").status_code == 403
    )
    assert (
        api(approver2).post(f"/api/v1/promotions/{promotion.pk}/approve", {}, format="json").status_code
        == 404
    )
