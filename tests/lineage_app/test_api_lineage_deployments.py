"""Question 1 reaches deployments: vulnerable versions that are deployed are named and highlighted."""

from __future__ import annotations

import pytest
from django.test import Client

from deployments_app import services as deployments
from models_app import services_governance
from models_app.choices import TeamRole
from tests.conftest import make_user
from tests.lineage_app.test_api_lineage import TF_VULN, lineage_doc, make_version

pytestmark = pytest.mark.usefixtures("no_deployment_worker")  # nothing is launched here


def scanned(version):
    """The test versions hold one opaque file, which deployments treat as a possible pickle."""
    services_governance.check_report(
        actor=None, version=version, name="security_scan", status="passed", builtin=True
    )
    return version


def test_exposure_and_advisories_name_the_deployments_of_affected_versions(
    api, owner, team, admin_user, internal_model
):
    vulnerable = scanned(make_version(owner, internal_model, lineage_doc(tf="2.11.0")))
    safe = scanned(make_version(owner, internal_model, lineage_doc(tf="2.11.1")))
    deployer = make_user("deployer", team=team, role=TeamRole.DEPLOYER)
    live = deployments.deployment_request(
        actor=deployer, name="churn-live", model=internal_model, version=vulnerable.version
    )
    deployments.deployment_request(
        actor=deployer, name="churn-safe", model=internal_model, version=safe.version
    )

    found = api(owner).get("/api/v1/lineage/exposure?package=tensorflow&specifier=<2.11.1").json()["versions"]
    assert [(v["version"], v["deployed"]) for v in found] == [(vulnerable.version, True)]
    assert [(d["name"], d["status"], d["target"]) for d in found[0]["deployments"]] == [
        ("churn-live", "queued", "local")
    ]

    assert api(admin_user).post("/api/v1/lineage/advisories", [TF_VULN], format="json").status_code == 201
    affected = api(owner).get(f"/api/v1/lineage/advisories/{TF_VULN['id']}/affected").json()["versions"]
    assert [[d["name"] for d in v["deployments"]] for v in affected] == [["churn-live"]]

    browser = Client()
    browser.force_login(owner)
    page = browser.get("/lineage/advisories/").content.decode()
    assert f'href="/deployments/{live.pk}/"' in page and 'class="highlight"' in page
    page = browser.get("/lineage/exposure/?package=tensorflow&specifier=%3C2.11.1").content.decode()
    assert "churn-live" in page and "churn-safe" not in page

    graph = api(owner).get(f"/api/v1/lineage/graph?model=churn&version={vulnerable.version}").json()
    assert {
        "from": f"version:churn:{vulnerable.version}",
        "to": f"deployment:{live.pk}",
        "kind": "deployed",
    } in (graph["edges"])


def test_a_stopped_deployment_is_listed_but_not_highlighted(api, owner, team, internal_model):
    vulnerable = scanned(make_version(owner, internal_model, lineage_doc(tf="2.11.0")))
    deployer = make_user("deployer", team=team, role=TeamRole.DEPLOYER)
    d = deployments.deployment_request(actor=deployer, name="churn-old", model=internal_model, version=1)
    deployments.deployment_stop(actor=deployer, deployment=d)
    from deployments_app.models import Deployment

    Deployment.objects.filter(pk=d.pk).update(status="stopped")
    found = api(owner).get("/api/v1/lineage/exposure?package=tensorflow&specifier=<2.11.1").json()["versions"]
    assert found[0]["version"] == vulnerable.version
    assert found[0]["deployed"] is False and found[0]["deployments"][0]["status"] == "stopped"
