"""The deployments API: permission matrix of every endpoint, bad payloads, external tools, proxy.

The proxy tests call a real serving runtime (a subprocess on 127.0.0.1) registered as the
endpoint of an ``external`` deployment, the way an outside deployment tool would report it.
"""

from __future__ import annotations

import json
import logging
from unittest import mock

import pytest

from deployments_app import services
from deployments_app.models import Deployment

MLFLOW_BODY = {"dataframe_split": {"columns": ["a", "b"], "data": [[0.5, 1.0]]}}
V2_BODY = {"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP64", "data": [0.5, 1.0]}]}


pytestmark = pytest.mark.usefixtures("no_deployment_worker")  # nothing is launched here


@pytest.fixture
def private_deployment(deployer, private_model, private_skops_version):
    return services.deployment_request(
        actor=deployer, name="fraud-api", model=private_model, version=1, target="external"
    )


@pytest.fixture
def running_external(deployer, private_deployment, external_runtime):
    """The private model's deployment, reported running at a real runtime (served as ``ext``)."""
    Deployment.objects.filter(pk=private_deployment.pk).update(name="ext")
    private_deployment.refresh_from_db()
    return services.deployment_event_report(
        actor=deployer, deployment=private_deployment, status="running", endpoint_url=external_runtime
    )


def body(response):
    return response.json() if response.get("Content-Type", "").startswith("application/json") else None


# --- Create -----------------------------------------------------------------------------------


def create_payload(**extra):
    payload = {"name": "churn-api", "model": "churn", "version": 1, "target": "local"}
    payload.update(extra)
    return payload


@pytest.mark.parametrize(
    ("persona", "scopes", "expected"),
    [
        (None, None, 401),
        ("viewer", None, 403),
        ("owner", None, 403),  # contributors publish versions; deployers deploy them
        ("outsider", None, 403),
        ("outsider_deployer", None, 403),  # a deployer of another team, on this team's model
        ("deployer", ["read"], 403),
        ("deployer", ["predict"], 403),
        ("deployer", ["write"], 202),
        ("admin_user", None, 202),
    ],
)
def test_create_permission_matrix(request, api, skops_version, persona, scopes, expected):
    user = request.getfixturevalue(persona) if persona else None
    response = api(user, scopes).post("/api/v1/deployments/", create_payload(), format="json")
    assert response.status_code == expected, response.content
    if expected == 202:
        data = response.json()
        assert data["status"] == "queued" and data["model"] == "churn" and data["version"] == 1
        assert data["predict_url"].endswith(f"/api/v1/deployments/{data['id']}/predict")


def test_an_outsider_deployer_cannot_see_a_private_model_to_deploy(
    api, outsider_deployer, private_skops_version
):
    response = api(outsider_deployer).post(
        "/api/v1/deployments/", create_payload(model="fraud"), format="json"
    )
    assert response.status_code == 400 and "model" in response.json()["fields"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"name": 123}, "name"),
        ({"name": "UPPER"}, "name"),
        ({"version": "one"}, "version"),
        ({"alias": "champion"}, "version"),  # both version and alias
        ({"version": None}, "version"),
        ({"target": "mainframe"}, "target"),
        ({"replicas": 0}, "replicas"),
        ({"env": ["A=1"]}, "env"),
        ({"env": {"bad-name": "x"}}, "env"),
        ({"follow_alias": "maybe"}, "follow_alias"),
        ({"colour": "blue"}, "colour"),
        ({"model": "nope"}, "model"),
        ({"version": 7}, "version"),
    ],
)
def test_bad_create_payloads_are_400_naming_the_field(api, deployer, skops_version, payload, field):
    data = create_payload(**payload)
    if payload.get("version", 0) is None:
        del data["version"]
    response = api(deployer).post("/api/v1/deployments/", data, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["error"] == "invalid" and field in response.json()["fields"]
    assert not Deployment.objects.exists()


def test_malformed_json_is_400(api, deployer, skops_version):
    response = api(deployer).post("/api/v1/deployments/", "{not json", content_type="application/json")
    assert response.status_code == 400


def test_a_duplicate_name_is_409(api, deployer, skops_version):
    assert api(deployer).post("/api/v1/deployments/", create_payload(), format="json").status_code == 202
    response = api(deployer).post("/api/v1/deployments/", create_payload(), format="json")
    assert response.status_code == 409 and response.json()["fields"] == {"name": [mock.ANY]}


def test_a_malicious_pickle_is_refused_with_409(api, deployer, owner, internal_model):
    from tests.deployments_app.conftest import malicious_pickle_files, ready_version

    ready_version(owner, internal_model, malicious_pickle_files(), run_checks=True)
    response = api(deployer).post("/api/v1/deployments/", create_payload(), format="json")
    assert response.status_code == 409
    assert response.json()["error"] == "pickle_refused" and "security_scan" in response.json()["message"]


# --- Read -------------------------------------------------------------------------------------


def test_list_filters_and_hides_private_deployments(
    api, deployer, outsider, viewer, private_deployment, skops_version
):
    services.deployment_request(actor=deployer, name="churn-api", model=skops_version.model, version=1)
    assert api(None).get("/api/v1/deployments/").status_code == 401
    names = [d["name"] for d in api(outsider).get("/api/v1/deployments/").json()["results"]]
    assert names == ["churn-api"]
    names = [d["name"] for d in api(viewer).get("/api/v1/deployments/").json()["results"]]
    assert names == ["churn-api", "fraud-api"]
    assert [d["name"] for d in api(viewer).get("/api/v1/deployments/?target=external").json()["results"]] == [
        "fraud-api"
    ]
    assert api(viewer).get("/api/v1/deployments/?model=churn&status=queued").json()["count"] == 1
    assert api(viewer).get("/api/v1/deployments/?status=running").json()["count"] == 0
    assert api(viewer).get("/api/v1/deployments/?status=bogus").status_code == 400


@pytest.mark.parametrize("suffix", ["", "logs"])
@pytest.mark.parametrize(
    ("persona", "expected"), [(None, 401), ("outsider", 404), ("viewer", 200), ("deployer", 200)]
)
def test_detail_permission_matrix(request, api, private_deployment, persona, expected, suffix):
    user = request.getfixturevalue(persona) if persona else None
    response = api(user).get(f"/api/v1/deployments/{private_deployment.pk}/{suffix}")
    assert response.status_code == expected
    if expected == 200 and not suffix:
        data = response.json()
        assert data["events"][0]["status"] == "queued" and "logs" in data and data["env"] == {}


def test_env_values_are_never_shown(api, deployer, skops_version):
    response = api(deployer).post(
        "/api/v1/deployments/", create_payload(env={"TOKEN": "hunter2"}), format="json"
    )
    assert response.status_code == 202 and "hunter2" not in response.content.decode()
    detail = api(deployer).get(f"/api/v1/deployments/{response.json()['id']}/")
    assert detail.json()["env"] == {"TOKEN": "********"} and "hunter2" not in detail.content.decode()


# --- Lifecycle actions ------------------------------------------------------------------------

ACTIONS = [
    ("post", "stop", None, 202),
    ("post", "start", None, 409),  # allowed, but a queued deployment cannot be started
    ("post", "redeploy", {"version": 1}, 202),
    ("post", "events", {"status": "building", "message": "pulling"}, 200),
    ("delete", "", None, 204),
]


@pytest.mark.parametrize(("method", "path", "payload", "ok"), ACTIONS)
@pytest.mark.parametrize(
    ("persona", "scopes"),
    [(None, None), ("outsider", None), ("outsider_deployer", None), ("viewer", None), ("deployer", ["read"]),
     ("deployer", ["predict"]), ("deployer", None)],
)  # fmt: skip
def test_action_permission_matrix(
    request, api, private_deployment, method, path, payload, ok, persona, scopes
):
    user = request.getfixturevalue(persona) if persona else None
    url = f"/api/v1/deployments/{private_deployment.pk}/{path}"
    response = getattr(api(user, scopes), method)(url, payload, format="json")
    expected = {
        None: 401,
        "outsider": 404,
        "outsider_deployer": 404,
        "viewer": 403,
    }.get(persona, ok if scopes is None else 403)
    if path == "redeploy" and expected == ok:
        expected = 202
    assert response.status_code == expected, response.content


def test_start_after_stop_and_conflicts(api, deployer, private_deployment):
    client = api(deployer)
    url = f"/api/v1/deployments/{private_deployment.pk}"
    assert client.post(f"{url}/start").status_code == 409  # queued: not startable
    assert client.post(f"{url}/stop").json()["status"] == "stopping"
    assert client.post(f"{url}/events", {"status": "stopped"}, format="json").json()["status"] == "stopped"
    assert client.post(f"{url}/redeploy", {}, format="json").status_code == 409  # stopped: start it
    response = client.post(f"{url}/start")
    assert response.status_code == 202 and response.json()["status"] == "queued"
    assert response.json()["generation"] == 2


@pytest.mark.parametrize(
    "payload",
    [{"status": "exploded"}, {"status": "running", "endpoint_url": "ftp://x"}, {"message": "no status"},
     {"status": "running"}, {"status": 3}],
)  # fmt: skip
def test_bad_event_reports_are_400(api, deployer, private_deployment, payload):
    response = api(deployer).post(
        f"/api/v1/deployments/{private_deployment.pk}/events", payload, format="json"
    )
    assert response.status_code == 400, response.content
    assert response.json()["fields"]


def test_redeploy_payloads(api, deployer, private_deployment):
    url = f"/api/v1/deployments/{private_deployment.pk}/redeploy"
    assert api(deployer).post(url, {"version": 5}, format="json").status_code == 400
    assert api(deployer).post(url, {"version": 1, "alias": "x"}, format="json").status_code == 400
    assert api(deployer).post(url, {"alias": "missing"}, format="json").status_code == 400


# --- Inference proxy --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("persona", "scopes", "expected"),
    [
        (None, None, 401),
        ("outsider", ["predict"], 404),
        ("viewer", ["read"], 403),  # a read token cannot call inference
        ("viewer", ["write"], 403),
        ("viewer", ["predict"], 200),
        ("deployer", ["predict"], 200),
        ("admin_user", ["admin"], 200),
    ],
)
def test_predict_permission_matrix(request, api, running_external, persona, scopes, expected):
    user = request.getfixturevalue(persona) if persona else None
    response = api(user, scopes).post(
        f"/api/v1/deployments/{running_external.pk}/predict", MLFLOW_BODY, format="json"
    )
    assert response.status_code == expected, response.content
    if expected == 200:
        assert json.loads(response.content)["predictions"] == [0]
        assert response["X-Modelyard-Deployment"] == "ext"


def test_a_predict_token_cannot_read_or_deploy(api, viewer, deployer, running_external, skops_version):
    client = api(deployer, ["predict"])
    assert client.get("/api/v1/deployments/").status_code == 403
    assert client.post("/api/v1/deployments/", create_payload(), format="json").status_code == 403
    assert client.post(f"/api/v1/deployments/{running_external.pk}/stop").status_code == 403


def test_a_team_member_without_predict_role_is_refused_on_internal_models(
    api, outsider, deployer, skops_version
):
    """Outsiders see internal models' deployments, but only the model's team may call them."""
    d = services.deployment_request(
        actor=deployer, name="churn-ext", model=skops_version.model, version=1, target="external"
    )
    response = api(outsider, ["predict"]).post(
        f"/api/v1/deployments/{d.pk}/predict", MLFLOW_BODY, format="json"
    )
    assert response.status_code == 403


def test_both_protocols_through_predict_and_serve(api, viewer, running_external):
    client = api(viewer, ["predict"])
    url = f"/api/v1/deployments/{running_external.pk}/predict"
    response = client.post(url, V2_BODY, format="json")
    assert response.status_code == 200 and json.loads(response.content)["outputs"][0]["data"] == [0]
    response = client.post("/serve/ext/v2/models/ext/infer", V2_BODY, format="json")
    assert response.status_code == 200 and json.loads(response.content)["model_name"] == "ext"
    response = client.post("/serve/ext/invocations", MLFLOW_BODY, format="json")
    assert json.loads(response.content)["predictions"] == [0]
    assert client.get("/serve/ext/v2/health/ready").status_code == 200
    assert client.get("/serve/ext/ping").status_code == 200
    assert json.loads(client.get("/serve/ext/v2/models/ext").content)["name"] == "ext"
    assert client.get("/serve/ext/admin/").status_code == 404  # only the runtime's paths
    assert client.get("/serve/nope/ping").status_code == 404


def test_bad_inference_payloads_are_4xx_not_5xx(api, viewer, running_external):
    client = api(viewer, ["predict"])
    url = f"/api/v1/deployments/{running_external.pk}/predict"
    for payload in (
        "{broken",
        json.dumps({"dataframe_split": {"columns": ["a"], "data": [["x", "y", "z"]]}}),
    ):
        response = client.post(url, payload, content_type="application/json")
        assert 400 <= response.status_code < 500, (payload, response.content)
    wrong_shape = {"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]}
    assert 400 <= client.post(url, wrong_shape, format="json").status_code < 500
    assert client.post(f"{url}?protocol=grpc", MLFLOW_BODY, format="json").status_code == 400


def _logged(caplog) -> list[tuple[str, str]]:
    """What the registry logged at WARNING or above (urllib3's retries left out)."""
    ours = ("django.request", "deployments_app.proxy")
    return [(r.name, r.levelname) for r in caplog.records if r.levelno >= logging.WARNING and r.name in ours]


def test_a_stopped_deployment_answers_503(api, deployer, viewer, running_external, caplog):
    services.deployment_stop(actor=deployer, deployment=running_external)
    caplog.clear()
    response = api(viewer, ["predict"]).post(
        f"/api/v1/deployments/{running_external.pk}/predict", MLFLOW_BODY, format="json"
    )
    assert response.status_code == 503 and "no endpoint" in response.json()["message"]
    # The deployment's state, not a registry failure: one WARNING, not django.request's ERROR.
    assert _logged(caplog) == [("deployments_app.proxy", "WARNING")]
    assert api(viewer, ["predict"]).get("/serve/ext/ping").status_code == 503
    assert _logged(caplog) == [("deployments_app.proxy", "WARNING")] * 2


def test_an_unreachable_endpoint_is_502(api, deployer, viewer, running_external, caplog):
    Deployment.objects.filter(pk=running_external.pk).update(endpoint_url="http://127.0.0.1:9")
    response = api(viewer, ["predict"]).post(
        f"/api/v1/deployments/{running_external.pk}/predict", MLFLOW_BODY, format="json"
    )
    assert response.status_code == 502 and response.json()["error"] == "error"
    assert _logged(caplog) == [("deployments_app.proxy", "WARNING")]


def test_the_proxy_does_not_forward_the_callers_credentials(api, viewer, running_external):
    from deployments_app import proxy

    assert "authorization" not in proxy.FORWARDED_HEADERS and "cookie" not in proxy.FORWARDED_HEADERS
    seen = {}
    real = proxy._pool.request

    def spy(method, url, **kwargs):
        seen.update(kwargs["headers"])
        return real(method, url, **kwargs)

    with mock.patch.object(proxy._pool, "request", side_effect=spy):
        api(viewer, ["predict"]).post(
            f"/api/v1/deployments/{running_external.pk}/predict", MLFLOW_BODY, format="json"
        )
    assert seen and not any(k.lower() in ("authorization", "cookie") for k in seen)


def test_a_user_with_a_session_may_predict(client, viewer, running_external):
    client.force_login(viewer)
    response = client.post(
        f"/api/v1/deployments/{running_external.pk}/predict",
        json.dumps(MLFLOW_BODY),
        content_type="application/json",
    )
    assert response.status_code == 200


def test_role_and_scope_rules():
    from models_app.roles import ROLE_PERMISSIONS, scopes_allow

    assert scopes_allow(["predict"], "predict") and scopes_allow(["admin"], "predict")
    assert not scopes_allow(["write"], "predict") and not scopes_allow(["predict"], "read")
    assert "deployments_app.add_deployment" in ROLE_PERMISSIONS["deployer"]
    assert "deployments_app.add_deployment" not in ROLE_PERMISSIONS["contributor"]
    assert all("deployments_app.predict_deployment" in perms for perms in ROLE_PERMISSIONS.values())


def test_tokens_can_be_created_with_the_predict_scope(api, client, viewer):
    client.force_login(viewer)
    response = client.post(
        "/api/v1/tokens/",
        json.dumps({"name": "consumer", "scopes": ["predict"]}),
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["scopes"] == ["predict"]
    # predict sits outside read < write < admin: a write token cannot mint one.
    response = api(viewer, ["write"]).post(
        "/api/v1/tokens/", {"name": "c", "scopes": ["predict"]}, format="json"
    )
    assert response.status_code == 403


def test_a_deployed_model_or_version_is_not_deleted_under_its_deployment(api, owner, private_deployment):
    """409 naming the deployment (never a 500 from the protected foreign key); nothing is deleted."""
    client = api(owner)
    for url in ("/api/v1/models/fraud/", "/api/v1/models/fraud/versions/1/"):
        response = client.delete(url)
        assert response.status_code == 409, response.content
        assert response.json()["error"] == "has_deployments" and "fraud-api" in response.json()["message"]
    assert client.get("/api/v1/models/fraud/versions/1/").status_code == 200
