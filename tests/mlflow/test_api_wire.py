"""Wire-level behaviour the client depends on: error codes and statuses, auth, empty bodies."""

from __future__ import annotations

import base64
import json

import pytest
from django.test import Client, override_settings

from models_app import services
from models_app.choices import Visibility
from models_app.models import RegisteredModel

BASE = "/api/2.0/mlflow"


@pytest.fixture
def call(db):
    """``call(user, method, path, data)`` → (status, JSON body) with a token of ``user``."""

    def _call(user, method, path, data=None, scopes=None, headers=None):
        client = Client()
        extra = dict(headers or {})
        if user is not None:
            _t, raw = services.access_token_create(
                actor=user, user=user, name="t", scopes=scopes or ["read", "write"]
            )
            extra.setdefault("HTTP_AUTHORIZATION", f"Bearer {raw}")
        if method == "GET":
            response = client.get(path, data or {}, **extra)
        else:
            response = getattr(client, method.lower())(
                path, json.dumps(data or {}), content_type="application/json", **extra
            )
        body = response.content.decode()
        return response.status_code, (
            json.loads(body) if body and response["Content-Type"].startswith("application/json") else body
        )

    return _call


def test_errors_follow_mlflow_codes(call, owner, internal_model):
    assert call(owner, "GET", f"{BASE}/registered-models/get", {"name": "nope"}) == (
        404,
        {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Registered Model with name=nope not found"},
    )
    status, body = call(owner, "GET", f"{BASE}/registered-models/get")
    assert (status, body["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    assert "Missing value for required parameter 'name'" in body["message"]
    status, body = call(owner, "POST", f"{BASE}/registered-models/create", {"name": "churn"})
    assert (status, body["error_code"]) == (400, "RESOURCE_ALREADY_EXISTS")
    status, body = call(owner, "GET", f"{BASE}/model-versions/get", {"name": "churn", "version": "abc"})
    assert (status, body["message"]) == (400, "Parameter 'version' must be an integer, got 'abc'.")
    status, body = call(owner, "GET", f"{BASE}/model-versions/get", {"name": "churn", "version": "99"})
    assert (status, body["message"]) == (404, "Model Version (name=churn, version=99) not found")
    for alias, message in (
        ("latest", "'latest' alias name (case insensitive) is reserved."),
        ("v1", "Version alias name 'v1' is reserved."),
    ):
        status, body = call(
            owner,
            "POST",
            f"{BASE}/registered-models/alias",
            {"name": "churn", "alias": alias, "version": "1"},
        )
        assert (status, body["message"]) == (400, message)
    status, body = call(owner, "GET", f"{BASE}/registered-models/alias", {"name": "churn", "alias": "nope"})
    assert (status, body["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    assert call(owner, "DELETE", f"{BASE}/registered-models/alias", {"name": "churn", "alias": "nope"}) == (
        200,
        {},
    )
    assert call(
        owner, "DELETE", f"{BASE}/registered-models/delete-tag", {"name": "churn", "key": "nope"}
    ) == (200, {})
    status, body = call(owner, "GET", f"{BASE}/registered-models/search", {"page_token": "bm90LWpzb24="})
    assert (status, body["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    assert "Invalid page token" in body["message"]
    status, body = call(owner, "GET", f"{BASE}/registered-models/search", {"max_results": "1001"})
    assert status == 400
    status, body = call(owner, "GET", f"{BASE}/model-versions/search", {"max_results": "0"})
    assert status == 400
    status, body = call(owner, "GET", f"{BASE}/model-versions/search", {"filter": "version_number > 'x'"})
    assert (status, body["message"]) == (400, "Invalid value for numeric attribute 'version_number': 'x'")
    status, body = call(
        owner, "POST", f"{BASE}/model-versions/create", {"name": "churn", "source": "s3://bucket/x"}
    )
    assert (status, body["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    status, body = call(owner, "POST", f"{BASE}/registered-models/create", {"name": "bad/name"})
    assert (status, body["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    status, body = call(owner, "POST", f"{BASE}/runs/log-batch", {"run_id": "0" * 32, "metrics": "nope"})
    assert status == 404


def test_empty_results_are_empty_objects_and_wrong_methods_are_json(call, owner):
    assert call(owner, "GET", f"{BASE}/registered-models/search") == (200, {})
    assert call(owner, "GET", f"{BASE}/model-versions/search") == (200, {})
    status, body = call(owner, "POST", f"{BASE}/model-versions/search")
    assert (status, body["error_code"]) == (404, "ENDPOINT_NOT_FOUND")
    status, body = call(owner, "POST", f"{BASE}/registered-models/create", None, headers={})
    assert status == 400


def test_malformed_json_is_bad_request(db, owner):
    _t, raw = services.access_token_create(actor=owner, user=owner, name="t", scopes=["read", "write"])
    response = Client().post(
        f"{BASE}/registered-models/create",
        "{not json",
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    )
    assert response.status_code == 400
    assert response.json()["error_code"] == "BAD_REQUEST"


def test_anonymous_is_refused_unless_reads_are_allowed(call, owner, internal_model, private_model):
    status, body = call(None, "GET", f"{BASE}/registered-models/get", {"name": "churn"})
    assert (status, body["error_code"]) == (401, "UNAUTHENTICATED")
    with override_settings(MODELYARD_MLFLOW_ANONYMOUS_READ=True):
        status, body = call(None, "GET", f"{BASE}/registered-models/get", {"name": "churn"})
        assert status == 200
        assert body["registered_model"]["name"] == "churn"
        status, body = call(None, "GET", f"{BASE}/registered-models/get", {"name": "fraud"})
        assert status == 404  # private
        status, body = call(None, "POST", f"{BASE}/registered-models/create", {"name": "anon"})
        assert (status, body["error_code"]) == (401, "UNAUTHENTICATED")


def test_basic_auth_takes_a_personal_access_token_as_password(call, owner, viewer, internal_model):
    _t, raw = services.access_token_create(actor=owner, user=owner, name="t", scopes=["read"])
    good = base64.b64encode(f"owner:{raw}".encode()).decode()
    status, _ = call(
        None,
        "GET",
        f"{BASE}/registered-models/get",
        {"name": "churn"},
        headers={"HTTP_AUTHORIZATION": f"Basic {good}"},
    )
    assert status == 200
    wrong_user = base64.b64encode(f"viewer:{raw}".encode()).decode()
    status, body = call(
        None,
        "GET",
        f"{BASE}/registered-models/get",
        {"name": "churn"},
        headers={"HTTP_AUTHORIZATION": f"Basic {wrong_user}"},
    )
    assert (status, body["error_code"]) == (401, "UNAUTHENTICATED")
    password = base64.b64encode(b"owner:pw-owner").decode()
    status, _ = call(
        None,
        "GET",
        f"{BASE}/registered-models/get",
        {"name": "churn"},
        headers={"HTTP_AUTHORIZATION": f"Basic {password}"},
    )
    assert status == 401  # account passwords are not accepted: only tokens
    status, body = call(
        owner,
        "POST",
        f"{BASE}/registered-models/set-tag",
        {"name": "churn", "key": "k", "value": "v"},
        scopes=["read"],
    )
    assert (status, body["error_code"]) == (403, "PERMISSION_DENIED")


def test_model_created_through_mlflow_goes_to_the_named_or_only_team(call, owner, team, other_team):
    status, body = call(owner, "POST", f"{BASE}/registered-models/create", {"name": "a"})
    assert status == 200
    from models_app.models import RegisteredModel, TeamMembership

    assert RegisteredModel.objects.get(name="a").team == team
    TeamMembership.objects.create(team=other_team, user=owner, role="contributor")
    status, body = call(owner, "POST", f"{BASE}/registered-models/create", {"name": "b"})
    assert (status, body["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    assert "modelyard.team" in body["message"]
    status, body = call(
        owner,
        "POST",
        f"{BASE}/registered-models/create",
        {
            "name": "b",
            "tags": [
                {"key": "modelyard.team", "value": "marketing"},
                {"key": "modelyard.visibility", "value": "private"},
            ],
        },
    )
    assert status == 200
    created = RegisteredModel.objects.get(name="b")
    assert (created.team, created.visibility) == (other_team, Visibility.PRIVATE)
    assert "tags" not in body["registered_model"]


def test_version_json_has_string_version_and_ready_status(call, owner, internal_model):
    from models_app.models import Blob, VersionFile

    version = services.model_version_create(actor=owner, model=internal_model)
    VersionFile.objects.create(
        version=version, path="MLmodel", blob=Blob.objects.create(sha256="b" * 64, size=1)
    )
    status, body = call(owner, "GET", f"{BASE}/model-versions/get", {"name": "churn", "version": "1"})
    assert body["model_version"]["version"] == "1"
    assert body["model_version"]["status"] == "PENDING_REGISTRATION"
    from models_app.models import ModelVersion

    ModelVersion.objects.filter(pk=version.pk).update(status="READY")
    status, body = call(owner, "GET", f"{BASE}/model-versions/get", {"name": "churn", "version": "1"})
    assert body["model_version"]["status"] == "READY"
    assert body["model_version"]["current_stage"] == "None"
    status, body = call(
        owner, "GET", f"{BASE}/model-versions/get-download-uri", {"name": "churn", "version": "1"}
    )
    assert body == {"artifact_uri": "mlflow-artifacts:/_registry/churn/1"}
    status, body = call(owner, "GET", "/api/2.0/mlflow-artifacts/artifacts", {"path": "_registry/churn/1"})
    assert body == {"files": [{"path": "MLmodel", "is_dir": False, "file_size": 1}]}
    status, body = call(
        owner, "GET", "/api/2.0/mlflow-artifacts/artifacts", {"path": "_registry/churn/1/MLmodel"}
    )
    assert (status, body) == (200, {})
    status, body = call(owner, "GET", "/api/2.0/mlflow-artifacts/artifacts/0/nope.txt")
    assert (status, body["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    status, body = call(owner, "GET", "/api/2.0/mlflow-artifacts/artifacts", {"path": "../etc"})
    assert status == 400
    status, body = call(
        owner, "POST", "/api/2.0/mlflow-artifacts/mpu/create/0/x", {"path": "f", "num_parts": 2}
    )
    assert (status, body["error_code"]) == (501, "NOT_IMPLEMENTED")


def test_health_version_and_server_info(call, owner):
    assert call(None, "GET", "/health") == (200, "OK")
    status, _ = call(None, "GET", "/version")
    assert status == 200
    status, body = call(owner, "GET", "/api/3.0/mlflow/server-info")
    assert (status, body["multipart_uploads_enabled"]) == (200, False)


def test_model_pages_resume_after_the_last_name_seen(call, owner, team):
    """Name-ordered pages carry the last (name, id) seen: deleting a model already listed does
    not make the next page skip one (an offset would), and a forged cursor is a 400."""
    for name in ("a-1", "a-2", "a-3", "a-4", "a-5"):
        services.registered_model_create(actor=owner, name=name, team=team)
    path = f"{BASE}/registered-models/search"
    status, first = call(owner, "GET", path, {"max_results": "2"})
    assert status == 200
    assert [m["name"] for m in first["registered_models"]] == ["a-1", "a-2"]
    token = json.loads(base64.b64decode(first["next_page_token"]))
    assert token["offset"] == 2 and token["after"][0] == "a-2"
    services.registered_model_delete(actor=owner, model=RegisteredModel.objects.get(name="a-1"))
    status, second = call(owner, "GET", path, {"max_results": "2", "page_token": first["next_page_token"]})
    assert [m["name"] for m in second["registered_models"]] == ["a-3", "a-4"]
    status, last = call(owner, "GET", path, {"max_results": "2", "page_token": second["next_page_token"]})
    assert [m["name"] for m in last["registered_models"]] == ["a-5"]
    assert "next_page_token" not in last
    # Another order pages by offset, as MLflow's own tokens do.
    status, by_time = call(owner, "GET", path, {"max_results": "2", "order_by": ["timestamp DESC"]})
    assert "after" not in json.loads(base64.b64decode(by_time["next_page_token"]))
    forged = base64.b64encode(json.dumps({"offset": 0, "after": ["a", "x"]}).encode()).decode()
    status, body = call(owner, "GET", path, {"page_token": forged})
    assert (status, body["error_code"]) == (400, "INVALID_PARAMETER_VALUE")


def test_model_and_version_json_carry_tags_aliases_and_latest_per_stage(call, owner, internal_model):
    """The whole RegisteredModel/ModelVersion objects, field by field, against the ORM's rows."""
    from models_app.models import ModelVersion

    ms = lambda value: int(value.timestamp() * 1000)  # noqa: E731
    internal_model.description = "Predicts churn."
    internal_model.save()
    versions = [services.model_version_create(actor=owner, model=internal_model) for _ in range(3)]
    ModelVersion.objects.filter(pk__in=[v.pk for v in versions]).update(status="READY")
    ModelVersion.objects.filter(pk=versions[0].pk).update(stage="staging")
    services.model_tag_set(actor=owner, model=internal_model, key="zeta", value="last")
    services.model_tag_set(actor=owner, model=internal_model, key="alpha", value="first")
    services.version_tag_set(actor=owner, version=versions[2], key="k", value="v")
    services.model_alias_set(actor=owner, model=internal_model, alias="prod", version=versions[0])
    services.model_alias_set(actor=owner, model=internal_model, alias="canary", version=versions[2])
    services.model_alias_set(actor=owner, model=internal_model, alias="best", version=versions[2])
    internal_model.refresh_from_db()
    rows = {v.version: v for v in ModelVersion.objects.filter(model=internal_model)}

    def version_json(number, stage, **extra):
        row = rows[number]
        return {
            "name": "churn",
            "version": str(number),
            "creation_timestamp": ms(row.created_at),
            "last_updated_timestamp": ms(row.updated_at),
            "current_stage": stage,
            "description": "",
            "source": row.source,
            "run_id": "",
            "status": "READY",
            "run_link": "",
            "user_id": owner.username,
            **extra,
        }

    status, body = call(owner, "GET", f"{BASE}/registered-models/get", {"name": "CHURN"})
    assert status == 200
    assert body["registered_model"] == {
        "name": "churn",
        "creation_timestamp": ms(internal_model.created_at),
        "last_updated_timestamp": ms(internal_model.updated_at),
        "description": "Predicts churn.",
        "user_id": owner.username,
        "latest_versions": [
            version_json(3, "None", tags=[{"key": "k", "value": "v"}], aliases=["best", "canary"]),
            version_json(1, "Staging", aliases=["prod"]),
        ],
        "tags": [  # by key; "task" comes from the fixture
            {"key": "alpha", "value": "first"},
            {"key": "task", "value": "classification"},
            {"key": "zeta", "value": "last"},
        ],
        "aliases": [
            {"alias": "best", "version": "3"},
            {"alias": "canary", "version": "3"},
            {"alias": "prod", "version": "1"},
        ],
    }
    status, body = call(owner, "GET", f"{BASE}/registered-models/alias", {"name": "churn", "alias": "best"})
    assert body["model_version"] == version_json(
        3, "None", tags=[{"key": "k", "value": "v"}], aliases=["best", "canary"]
    )
    status, body = call(owner, "GET", f"{BASE}/model-versions/get", {"name": "churn", "version": "2"})
    assert body["model_version"] == version_json(2, "None")


def test_search_pages_carry_each_rows_own_tags_and_aliases(
    call, owner, team, internal_model, private_model, monkeypatch
):
    """Searches and gets are different statements (a page's latest versions are one grouped
    query over all its models): every model and version on a page equals its get, field by
    field, whoever sits next to it on the page (no tags, aliases or latest versions leak
    between rows, none are dropped). On SQLite the ids go in chunks (its limit on parameters):
    two per chunk here, so a page takes several."""
    from models_app.models import ModelVersion
    from registry_project import rawsql

    monkeypatch.setattr(rawsql, "_SQLITE_CHUNK", 2)

    plain = services.registered_model_create(actor=owner, name="plain", team=team)
    for model, count in ((internal_model, 3), (private_model, 2), (plain, 1)):
        versions = [services.model_version_create(actor=owner, model=model) for _ in range(count)]
        ModelVersion.objects.filter(pk__in=[v.pk for v in versions]).update(status="READY")
        services.version_tag_set(actor=owner, version=versions[0], key=f"{model.name}-k", value="1")
        services.version_tag_set(actor=owner, version=versions[-1], key="b", value=model.name)
        services.version_tag_set(actor=owner, version=versions[-1], key="a", value=model.name)
        services.model_alias_set(actor=owner, model=model, alias="newest", version=versions[-1])
        if count > 1:
            ModelVersion.objects.filter(pk=versions[0].pk).update(stage="production")
            services.model_alias_set(actor=owner, model=model, alias="old", version=versions[0])
    services.model_tag_set(actor=owner, model=private_model, key="pii", value="yes")
    services.model_tag_set(actor=owner, model=private_model, key="owner", value="risk")

    models_path, versions_path = f"{BASE}/registered-models/search", f"{BASE}/model-versions/search"
    status, body = call(owner, "GET", models_path, {"max_results": "2"})
    assert status == 200
    status, rest = call(owner, "GET", models_path, {"page_token": body["next_page_token"]})
    listed = body["registered_models"] + rest["registered_models"]
    assert [m["name"] for m in listed] == ["churn", "fraud", "plain"]
    status, whole = call(owner, "GET", models_path, {"max_results": "3"})
    assert whole["registered_models"] == listed  # one page, two id chunks on SQLite
    for found in listed:
        status, got = call(owner, "GET", f"{BASE}/registered-models/get", {"name": found["name"]})
        assert found == got["registered_model"]
    assert listed[1]["tags"] == [{"key": "owner", "value": "risk"}, {"key": "pii", "value": "yes"}]

    status, body = call(owner, "GET", versions_path, {"max_results": "4"})
    status, rest = call(owner, "GET", versions_path, {"page_token": body["next_page_token"]})
    listed = body["model_versions"] + rest["model_versions"]
    assert len(listed) == 6
    for found in listed:
        status, got = call(
            owner, "GET", f"{BASE}/model-versions/get", {"name": found["name"], "version": found["version"]}
        )
        assert found == got["model_version"]
    assert sum("tags" in v for v in listed) == 5 and sum("aliases" in v for v in listed) == 5


def test_lookups_are_prepared_and_searches_are_not(postgres, call, owner, internal_model):
    """Gets reuse a prepared plan; a search is planned for its values every time (a generic plan
    made a common-tag search walk every row: 5 ms became 400 ms)."""
    from django.db import connection
    from django.test import override_settings

    services.model_version_create(actor=owner, model=internal_model)
    _t, raw = services.access_token_create(actor=owner, user=owner, name="t", scopes=["read"])
    client = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
    with override_settings(DB_PREPARED_STATEMENTS=True):
        for _ in range(7):  # psycopg prepares at the fifth use on a connection
            assert (
                client.get(f"{BASE}/model-versions/get", {"name": "churn", "version": "1"}).status_code == 200
            )
            found = client.get(f"{BASE}/model-versions/search", {"filter": "tags.flavor = 'sklearn'"})
            assert found.status_code == 200
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        statements = [row[0] for row in cursor.fetchall()]
    assert any("v.version = $" in s for s in statements), statements  # the get
    assert not any("EXISTS (SELECT 1 FROM" in s for s in statements), statements  # the tag search


def test_a_name_prefix_search_is_an_index_range_scan(postgres, owner, internal_model):
    """``name LIKE 'churn%'`` as the search compiles it reads the name pattern index
    (migration 0010), not every model: the planner is told to avoid a seq scan, since on a
    table this small it would rightly prefer one."""
    from django.db import connection

    from models_app.mlflow import search
    from models_app.selectors import visible_models_sql

    where = search.registered_model_where(search.parse("name LIKE 'chu%'"))
    visible, params = visible_models_sql(owner, "m")
    sql = f"SELECT m.id FROM models_app_registeredmodel m WHERE {visible} AND {where.sql}"
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + sql, [*params, *where.params])
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "registeredmodel_name_pattern" in plan, plan


@pytest.mark.parametrize("mlmodel", [b"flavors: [unclosed\n", b"- just\n- a list\n", b"flavors: 3\n"])
def test_an_mlmodel_that_does_not_parse_still_registers(call, owner, internal_model, mlmodel):
    """Environment capture is best effort: a broken MLmodel gives no facts, not a 500."""
    _status, body = call(owner, "POST", f"{BASE}/logged-models", {"experiment_id": "0", "name": "m"})
    info = body["model"]["info"]
    root = info["artifact_uri"].split("mlflow-artifacts:", 1)[1].lstrip("/")
    _t, raw = services.access_token_create(actor=owner, user=owner, name="t", scopes=["read", "write"])
    for name, content in (("MLmodel", mlmodel), ("requirements.txt", b"numpy==1.26.4\n")):
        put = Client().put(
            f"/api/2.0/mlflow-artifacts/artifacts/{root}/{name}",
            content,
            content_type="application/octet-stream",
            HTTP_AUTHORIZATION=f"Bearer {raw}",
        )
        assert put.status_code == 200, put.content
    status, body = call(
        owner,
        "POST",
        f"{BASE}/model-versions/create",
        {"name": "churn", "source": f"models:/{info['model_id']}", "model_id": info["model_id"]},
    )
    assert status == 200 and body["model_version"]["status"] == "READY", body
    environment = internal_model.versions.get(version=1).training_run.environment
    assert [(p.name, p.version) for p in environment.packages.all()] == [("numpy", "1.26.4")]
