"""The permission matrix of the MLflow-compatible API (issue 10), every route of it.

One row per route of ``models_app/mlflow/urls.py`` under ``/api/2.0/mlflow/`` and
``/api/2.0/mlflow-artifacts/``, plus ``/health`` and ``/version``; the mirrors
``/ajax-api/2.0/mlflow/`` and ``/api/3.0/mlflow/`` have rows proving they answer the same and
:func:`test_mirror_prefixes_serve_the_same_views` proving every route there is the same view.
:func:`covered_routes` gives the central coverage test
(``tests/registry_project/test_security_permission_matrix.py``) the routes decided here.

Personas and helpers are those of the central matrix (bearer tokens, one per persona, each
run in a rolled-back savepoint). Statuses are MLflow's: 401 ``UNAUTHENTICATED``, 403
``PERMISSION_DENIED`` (read-only token, or a role that may not write), 404
``RESOURCE_DOES_NOT_EXIST`` for what the caller cannot see (the private model ``fraud`` and the
team's runs to the outsider), 2xx when allowed; every error carries MLflow's envelope.
"""

from __future__ import annotations

import base64
import io
import json

import pytest
from django.test import Client
from django.urls import resolve

from lineage_app import services_mlflow
from models_app.mlflow import errors
from tests.registry_project import conftest as registry_conftest
from tests.registry_project import test_security_permission_matrix as central
from tests.registry_project.conftest import SECRET_MARK
from tests.registry_project.test_security_permission_matrix import (
    TOKEN_PERSONAS,
    _check,
    _each_persona,
    _token_client,
)
from tests.registry_project.test_security_permission_matrix import P as PERSONAS
from tests.registry_project.test_security_permission_matrix import S as OK

# The central fixtures: the seeded catalog and the matrix additions (a promotion, a token, …).
catalog = registry_conftest.catalog
matrix_catalog = central.matrix_catalog

P = PERSONAS  # anonymous, outsider, viewer, owner, owner_read, approver, deployer, admin, admin_write,
# then the inference-only (predict) tokens of deployer, viewer and outsider
assert len(TOKEN_PERSONAS) == len(P) == 12
API = "/api/2.0/mlflow/"
ART = "/api/2.0/mlflow-artifacts/"

# Shorthands for the rows (in the order of P).
READ_PRIVATE = [401, 404, OK, OK, OK, OK, OK, OK, OK]  # fraud / the team's runs: its team and admins
READ_ANY = [401, OK, OK, OK, OK, OK, OK, OK, OK]  # any signed-in user (results are scoped)
WRITE_PRIVATE = [401, 404, 403, OK, 403, 403, 403, OK, OK]  # contributors of the team and admins
WRITE_INTERNAL = [401, 403, 403, OK, 403, 403, 403, OK, OK]  # churn: outsiders see it, cannot change it
# Creating: any contributor (the outsider in its own team), never a read token or a non-contributor.
CREATE = [401, OK, 403, OK, 403, 403, 403, OK, OK]
CREATE_IN_RISK = [401, 403, 403, OK, 403, 403, 403, OK, OK]  # naming team risk (modelyard.team)
OPEN = [OK] * 9  # (the predict tokens' cells are added below, for every row)

_RISK = [{"key": "modelyard.team", "value": "risk"}]

# (method, path template, body, expected by persona). GET parameters are in the query string;
# a ``bytes`` body is sent raw (artifact uploads), anything else as JSON.
MLFLOW_ROUTES = [
    # --- Registered models ---
    ("POST", API + "registered-models/create", {"name": "newm", "tags": _RISK}, CREATE_IN_RISK),
    (
        "POST",
        API + "registered-models/create",
        {"name": "newm2"},
        [401, OK, 403, OK, 403, 403, 403, 400, 400],
    ),
    # Names are unique across the catalog (as in the native API, 409 there): creating a taken name
    # says it is taken, even to the outsider: the one thing a private model's name reveals.
    (
        "POST",
        API + "registered-models/create",
        {"name": "fraud"},
        [401, 400, 403, 400, 403, 400, 400, 400, 400],
    ),
    ("GET", API + "registered-models/get?name=fraud", None, READ_PRIVATE),
    ("GET", API + "registered-models/get?name=churn", None, READ_ANY),
    ("POST", API + "registered-models/rename", {"name": "fraud", "new_name": "fraud2"}, WRITE_PRIVATE),
    ("PATCH", API + "registered-models/update", {"name": "fraud", "description": "d"}, WRITE_PRIVATE),
    ("PATCH", API + "registered-models/update", {"name": "churn", "description": "d"}, WRITE_INTERNAL),
    # fraud has deployments (the central catalog's): allowed callers get the refusal, not a 500.
    (
        "DELETE",
        API + "registered-models/delete",
        {"name": "fraud"},
        [401, 404, 403, 400, 403, 403, 403, 400, 400],
    ),
    ("GET", API + "registered-models/search", None, READ_ANY),
    ("POST", API + "registered-models/get-latest-versions", {"name": "fraud"}, READ_PRIVATE),
    ("POST", API + "registered-models/set-tag", {"name": "fraud", "key": "k", "value": "v"}, WRITE_PRIVATE),
    ("POST", API + "registered-models/set-tag", {"name": "churn", "key": "k", "value": "v"}, WRITE_INTERNAL),
    ("DELETE", API + "registered-models/delete-tag", {"name": "fraud", "key": "task"}, WRITE_PRIVATE),
    ("GET", API + "registered-models/alias?name=fraud&alias=candidate", None, READ_PRIVATE),
    (
        "POST",
        API + "registered-models/alias",
        {"name": "fraud", "alias": "pick", "version": "2"},
        WRITE_PRIVATE,
    ),
    ("DELETE", API + "registered-models/alias", {"name": "fraud", "alias": "candidate"}, WRITE_PRIVATE),
    # --- Model versions ---
    ("POST", API + "model-versions/create", {"name": "fraud", "source": "models:/fraud/2"}, WRITE_PRIVATE),
    # From the team's logged model into the internal churn: the outsider sees churn but not the
    # logged model (404), the team's non-contributors see both and may not register (403).
    (
        "POST",
        API + "model-versions/create",
        {"name": "churn", "source": "models:/{lm}", "model_id": "{lm}"},
        WRITE_PRIVATE,
    ),
    ("GET", API + "model-versions/get?name=fraud&version=2", None, READ_PRIVATE),
    (
        "PATCH",
        API + "model-versions/update",
        {"name": "fraud", "version": "2", "description": "d"},
        WRITE_PRIVATE,
    ),
    ("DELETE", API + "model-versions/delete", {"name": "fraud", "version": "1"}, WRITE_PRIVATE),
    ("GET", API + "model-versions/search", None, READ_ANY),
    (
        "POST",
        API + "model-versions/transition-stage",
        {"name": "fraud", "version": "2", "stage": "Archived"},
        WRITE_PRIVATE,
    ),
    ("GET", API + "model-versions/get-download-uri?name=fraud&version=2", None, READ_PRIVATE),
    (
        "POST",
        API + "model-versions/set-tag",
        {"name": "fraud", "version": "2", "key": "k", "value": "v"},
        WRITE_PRIVATE,
    ),
    (
        "DELETE",
        API + "model-versions/delete-tag",
        {"name": "fraud", "version": "1", "key": "stage"},
        WRITE_PRIVATE,
    ),
    # --- Experiments (the seeded one belongs to team risk) ---
    ("GET", API + "experiments/get?experiment_id={exp}", None, READ_PRIVATE),
    ("GET", API + "experiments/get-by-name?experiment_name=risk-exp", None, READ_PRIVATE),
    ("POST", API + "experiments/create", {"name": "exp-new"}, CREATE),
    ("POST", API + "experiments/search", {}, READ_ANY),
    # --- Runs ---
    ("POST", API + "runs/create", {"experiment_id": "{exp}"}, WRITE_PRIVATE),
    ("GET", API + "runs/get?run_id={run}", None, READ_PRIVATE),
    ("POST", API + "runs/update", {"run_id": "{run}", "status": "FINISHED"}, WRITE_PRIVATE),
    (
        "POST",
        API + "runs/log-batch",
        {"run_id": "{run}", "metrics": [{"key": "m", "value": 1, "timestamp": 1, "step": 0}]},
        WRITE_PRIVATE,
    ),
    ("POST", API + "runs/log-parameter", {"run_id": "{run}", "key": "p2", "value": "1"}, WRITE_PRIVATE),
    (
        "POST",
        API + "runs/log-metric",
        {"run_id": "{run}", "key": "m", "value": 1, "timestamp": 1},
        WRITE_PRIVATE,
    ),
    ("POST", API + "runs/set-tag", {"run_id": "{run}", "key": "t", "value": "v"}, WRITE_PRIVATE),
    ("POST", API + "runs/outputs", {"run_id": "{run}", "models": [{"model_id": "{lm}"}]}, WRITE_PRIVATE),
    ("GET", API + "metrics/get-history?run_id={run}&metric_key=auc", None, READ_PRIVATE),
    # --- Logged models ---
    ("POST", API + "logged-models", {"experiment_id": "{exp}", "name": "lm2"}, WRITE_PRIVATE),
    ("POST", API + "logged-models/search", {}, READ_ANY),
    ("GET", API + "logged-models/{lm}", None, READ_PRIVATE),
    ("PATCH", API + "logged-models/{lm}", {"status": "LOGGED_MODEL_READY"}, WRITE_PRIVATE),
    # Refused to everyone who may see it: its files may back model versions.
    ("DELETE", API + "logged-models/{lm}", {}, [401, 404, 403, 400, 403, 400, 400, 400, 400]),
    ("PATCH", API + "logged-models/{lm}/tags", {"tags": [{"key": "a", "value": "b"}]}, WRITE_PRIVATE),
    ("DELETE", API + "logged-models/{lm}/tags/t", {}, WRITE_PRIVATE),
    ("POST", API + "logged-models/{lm}/params", {"params": [{"key": "p9", "value": "1"}]}, WRITE_PRIVATE),
    ("GET", API + "server-info", None, READ_ANY),
    # --- The other mount prefixes answer exactly the same ---
    ("GET", "/ajax-api/2.0/mlflow/registered-models/get?name=fraud", None, READ_PRIVATE),
    ("POST", "/ajax-api/2.0/mlflow/registered-models/set-tag", {"name": "fraud", "key": "k"}, WRITE_PRIVATE),
    ("GET", "/api/3.0/mlflow/registered-models/get?name=fraud", None, READ_PRIVATE),
    ("GET", "/api/3.0/mlflow/logged-models/{lm}", None, READ_PRIVATE),
    ("PATCH", "/api/3.0/mlflow/logged-models/{lm}/tags", {"tags": [{"key": "a"}]}, WRITE_PRIVATE),
    # --- Artifact proxy ---
    ("GET", ART + "artifacts?path={run_root}", None, READ_ANY),  # listing is scoped (leak test)
    ("GET", ART + "artifacts?path=_registry/fraud/2", None, READ_PRIVATE),
    ("GET", ART + "artifacts/{run_root}/a.txt", None, READ_PRIVATE),
    ("GET", ART + "artifacts/_registry/fraud/2/m.bin", None, READ_PRIVATE),
    ("PUT", ART + "artifacts/{run_root}/b.txt", b"new file", WRITE_PRIVATE),
    # Refused to every signed-in writer (501 NOT_IMPLEMENTED) before any lookup: reveals nothing.
    ("DELETE", ART + "artifacts/{run_root}/a.txt", None, [401, 501, 403, 501, 403, 501, 501, 501, 501]),
    ("POST", ART + "mpu/create/{run_root}/c.bin", {}, [401, 501, 403, 501, 403, 501, 501, 501, 501]),
    ("GET", ART + "presigned/{run_root}/a.txt", None, [401, 501, 501, 501, 501, 501, 501, 501, 501]),
    # --- Probes the mlflow client calls: open, no catalog data in them ---
    ("GET", "/health", None, OPEN),
    ("GET", "/version", None, OPEN),
]


def _with_predict_tokens(expected: list) -> list:
    """The three predict-only tokens: refused (403) wherever a token is needed, open where all is."""
    cell = OK if expected[0] == OK else 403
    return [*expected, cell, cell, cell]


MLFLOW_ROUTES = [(m, path, body, _with_predict_tokens(e)) for m, path, body, e in MLFLOW_ROUTES]

# Stand-ins for the placeholders when only the route matters (the central coverage test).
ROUTE_IDS = {"exp": "1", "run": "0" * 32, "lm": "m-" + "0" * 32, "run_root": "1/" + "0" * 32 + "/artifacts"}
MIRRORS = {"api/2.0/mlflow/": ("ajax-api/2.0/mlflow/", "api/3.0/mlflow/")}


def _route_of(path: str) -> str:
    return resolve(path.split("?")[0]).route.replace("^", "")


def covered_routes() -> set[str]:
    """URL-conf routes decided here, the mirror prefixes included (same pattern list)."""
    routes = {_route_of(t.format(**ROUTE_IDS)) for _m, t, _b, _e in MLFLOW_ROUTES}
    for base, mirrors in MIRRORS.items():
        for route in [r for r in routes if r.startswith(base)]:
            routes |= {mirror + route[len(base) :] for mirror in mirrors}
    return routes


@pytest.fixture
def mlflow_catalog(matrix_catalog):
    """The seeded catalog plus tracking objects of team ``risk``: an experiment, a run with a
    metric and an artifact, and a logged model with a tag and an ``MLmodel`` file."""
    owner = matrix_catalog.users["owner"]
    exp = services_mlflow.experiment_create(
        actor=owner, name="risk-exp", tags={"modelyard.team": "risk", "note": SECRET_MARK}
    )
    run = services_mlflow.run_create(actor=owner, experiment=exp, name="r-1", start_time=None, tags={})
    services_mlflow.run_log(
        actor=owner,
        run=run,
        params={"p": "1"},
        metrics=[{"key": "auc", "value": 0.9, "timestamp": 1, "step": 0, "model_id": ""}],
    )
    services_mlflow.artifact_put(
        actor=owner, path=f"{run.artifact_root}/a.txt", stream=io.BytesIO(SECRET_MARK.encode()), size=14
    )
    logged = services_mlflow.logged_model_create(
        actor=owner, experiment=exp, name="lm", source_run=run, tags={"t": "1"}
    )
    services_mlflow.artifact_put(
        actor=owner, path=f"{logged.artifact_root}/MLmodel", stream=io.BytesIO(b"flavors: {}\n"), size=12
    )
    matrix_catalog.mlflow = {
        "exp": str(exp.pk),
        "run": run.run_id,
        "lm": logged.model_id,
        "run_root": run.artifact_root,
    }
    return matrix_catalog


def _send(client, method: str, template: str, body, ids: dict):
    path = template.format(**ids)
    if isinstance(body, bytes):
        return client.generic(method, path, data=body, content_type="application/octet-stream")
    data = json.dumps(body) if body is not None else ""
    for key, value in ids.items():
        data = data.replace("{" + key + "}", value)
    return client.generic(method, path, data=data or "", content_type="application/json")


def _assert_envelope(response, what: str) -> None:
    """An MLflow error: ``{"error_code", "message"}`` whose code maps to the status."""
    body = response.json()
    assert set(body) == {"error_code", "message"}, (what, body)
    assert errors.HTTP_STATUS[body["error_code"]] == response.status_code, (what, body)
    expected = {
        401: errors.UNAUTHENTICATED,
        403: errors.PERMISSION_DENIED,
        501: errors.NOT_IMPLEMENTED,
    }.get(response.status_code)
    if response.status_code == 404:
        assert body["error_code"] == errors.RESOURCE_DOES_NOT_EXIST, (what, body)
    elif expected:
        assert body["error_code"] == expected, (what, body)


def _row_id(row) -> str:
    method, template, body, _e = row
    suffix = ""
    if isinstance(body, dict) and "name" in body and "?" not in template:
        suffix = f"[{body['name']}]"
    return f"{method} {template.split('?')[0].replace('{', '').replace('}', '')}{suffix}"


@pytest.mark.parametrize(
    ("method", "template", "body", "expected"), MLFLOW_ROUTES, ids=[_row_id(r) for r in MLFLOW_ROUTES]
)
def test_mlflow_matrix(mlflow_catalog, method, template, body, expected):
    ids = mlflow_catalog.mlflow

    def run(persona):
        response = _send(_token_client(mlflow_catalog, persona), method, template, body, ids)
        what = f"{method} {template} as {persona}"
        _check(response, expected[P.index(persona)], what)
        if response.status_code >= 400:
            _assert_envelope(response, what)

    _each_persona(P, run)


def test_every_route_has_an_mlflow_row():
    """Each route of the MLflow URL conf (all mounts) has a row here: a new route fails."""
    from tests.registry_project.test_security_permission_matrix import _all_routes

    mlflow_routes = {
        r
        for r in _all_routes()
        if r.startswith(("api/2.0/mlflow", "ajax-api/2.0/mlflow/", "api/3.0/mlflow/"))
        or r in ("health", "version")
    }
    assert len(mlflow_routes) >= 3 * 39 + 3 + 2
    assert not sorted(mlflow_routes - covered_routes())
    assert all(len(row[3]) == len(P) for row in MLFLOW_ROUTES)


def test_mirror_prefixes_serve_the_same_views():
    """``/ajax-api/2.0/mlflow/`` and ``/api/3.0/mlflow/`` resolve each route to the same view."""
    for route in [r for r in covered_routes() if r.startswith("api/2.0/mlflow/")]:
        path = "/" + route.replace("<str:model_id>", "m-1").replace("<path:key>", "k")
        view = resolve(path).func
        for mirror in MIRRORS["api/2.0/mlflow/"]:
            assert resolve("/" + mirror + path[len("/api/2.0/mlflow/") :]).func is view, (mirror, route)


# --- Basic auth (MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD) ----------------------------


def _basic(username: str, raw: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{raw}".encode()).decode()


def test_basic_auth_reads_and_writes(mlflow_catalog):
    from models_app import services

    tokens = {}
    for persona in ("outsider", "viewer", "owner", "owner_read"):
        key, scopes = TOKEN_PERSONAS[persona]
        user = mlflow_catalog.users[key]
        tokens[persona] = (
            user.username,
            services.access_token_create(actor=user, user=user, name=f"b-{persona}", scopes=scopes)[1],
        )
    read = API + "registered-models/get?name=fraud"
    write = API + "registered-models/set-tag"
    body = json.dumps({"name": "fraud", "key": "basic", "value": "1"})
    expected = {"outsider": (404, 404), "viewer": (200, 403), "owner": (200, 200), "owner_read": (200, 403)}
    for persona, (username, raw) in tokens.items():
        client = Client(HTTP_AUTHORIZATION=_basic(username, raw))
        got = (
            client.get(read).status_code,
            client.post(write, body, content_type="application/json").status_code,
        )
        assert got == expected[persona], (persona, got)
    assert mlflow_catalog.fraud.tags.filter(key="basic").count() == 1  # the owner's write happened
    # Someone else's username with a valid token, a bad token, a malformed header: 401.
    owner_raw = tokens["owner"][1]
    for header in (_basic("viewer", owner_raw), _basic("owner", "nope"), "Basic !!!", "Token abc"):
        response = Client(HTTP_AUTHORIZATION=header).get(read)
        assert response.status_code == 401, header
        _assert_envelope(response, header)


# --- Zero leaks: the private model through every MLflow read ---------------------------------

LEAK_PROBES = [
    ("GET", API + "registered-models/get?name={m}", None),
    ("GET", API + "registered-models/search", None),
    ("GET", API + "registered-models/search?filter=name%3D%27{m}%27", None),
    ("GET", API + "registered-models/search?filter=name%20LIKE%20%27%25{m}%25%27", None),
    ("GET", API + "registered-models/search?filter=tags.secret%20%3D%20%27" + SECRET_MARK + "%27", None),
    ("GET", API + "model-versions/search", None),
    ("GET", API + "model-versions/search?filter=name%3D%27{m}%27", None),
    ("POST", API + "registered-models/get-latest-versions", {"name": "{m}"}),
    ("GET", API + "registered-models/get-latest-versions?name={m}", None),
    ("GET", API + "registered-models/alias?name={m}&alias=candidate", None),
    ("GET", API + "model-versions/get?name={m}&version=1", None),
    ("GET", API + "model-versions/get?name={m}&version=2", None),
    ("GET", API + "model-versions/get-download-uri?name={m}&version=2", None),
    ("GET", ART + "artifacts?path=_registry/{m}/2", None),
    ("GET", ART + "artifacts?path=_registry/{m}/1", None),
    ("GET", ART + "artifacts?path=_registry", None),
    ("GET", ART + "artifacts", None),
    ("GET", ART + "artifacts/_registry/{m}/2/m.bin", None),
    ("GET", ART + "artifacts/_registry/{m}/1/m.bin", None),
    ("GET", "/ajax-api/2.0/mlflow/registered-models/get?name={m}", None),
    ("GET", "/api/3.0/mlflow/registered-models/search", None),
    ("POST", API + "experiments/search", {}),
    ("POST", API + "logged-models/search", {}),
]


def _probe(client, method, template, body, name):
    path = template.replace("{m}", name)
    data = json.dumps(body).replace("{m}", name) if body is not None else ""
    return client.generic(method, path, data=data, content_type="application/json")


def test_outsiders_never_see_the_private_model_anywhere(mlflow_catalog):
    """Each read answers the outsider about ``fraud`` exactly as about a model that does not exist."""
    outsider = _token_client(mlflow_catalog, "outsider")
    for method, template, body in LEAK_PROBES:
        got = _probe(outsider, method, template, body, "fraud")
        absent = _probe(outsider, method, template, body, "nosuchmodel")
        where = f"{method} {template}"
        assert got.status_code == absent.status_code, (where, got.status_code, absent.status_code)
        assert got.status_code in (200, 404), (where, got.status_code, got.content[:200])
        content = got.content.decode()
        if got.status_code == 404:
            _assert_envelope(got, where)
        assert content.replace("fraud", "nosuchmodel") == absent.content.decode(), where
        assert SECRET_MARK not in content, where
        if "fraud" in content:  # only where the caller's own input is echoed back in an error
            assert got.status_code == 404, where
    names = [m["name"] for m in outsider.get(API + "registered-models/search").json()["registered_models"]]
    assert names == ["churn"]
    versions = outsider.get(API + "model-versions/search").json()["model_versions"]
    assert {v["name"] for v in versions} == {"churn"}
    # The team's run and its files: not found for the outsider.
    ids = mlflow_catalog.mlflow
    assert outsider.get(f"{ART}artifacts?path={ids['run_root']}").json() == {}
    assert outsider.get(f"{ART}artifacts/{ids['run_root']}/a.txt").status_code == 404
    assert outsider.get(API + f"runs/get?run_id={ids['run']}").status_code == 404
    for probe in (API + "experiments/search", API + "logged-models/search"):
        body = outsider.post(probe, "{}", content_type="application/json").content.decode()
        assert "risk-exp" not in body and ids["lm"] not in body and SECRET_MARK not in body, probe


def test_the_team_sees_what_outsiders_do_not(mlflow_catalog):
    """The same probes as the viewer find the private model: the leak test can fail."""
    viewer = _token_client(mlflow_catalog, "viewer")
    names = {m["name"] for m in viewer.get(API + "registered-models/search").json()["registered_models"]}
    assert names == {"churn", "fraud"}
    assert viewer.get(API + "registered-models/get?name=fraud").status_code == 200
    assert viewer.get(f"{ART}artifacts/_registry/fraud/2/m.bin").status_code == 200
    ids = mlflow_catalog.mlflow
    listing = viewer.get(f"{ART}artifacts?path={ids['run_root']}").json()
    assert listing["files"][0]["path"] == "a.txt"
    assert SECRET_MARK.encode() in b"".join(
        viewer.get(f"{ART}artifacts/{ids['run_root']}/a.txt").streaming_content
    )
    assert (
        "risk-exp"
        in viewer.post(API + "experiments/search", "{}", content_type="application/json").content.decode()
    )
