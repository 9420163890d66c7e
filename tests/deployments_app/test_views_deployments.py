"""Deployment pages: list and detail, buttons only for those allowed, CSRF-protected actions."""

from __future__ import annotations

import pytest
from django.test import Client

from deployments_app import services
from deployments_app.models import Deployment

pytestmark = pytest.mark.usefixtures("no_deployment_worker")  # nothing is launched here


@pytest.fixture
def deployment(deployer, skops_version):
    return services.deployment_request(
        actor=deployer, name="churn-api", model=skops_version.model, version=1, env={"TOKEN": "hunter2"}
    )


def test_pages_need_a_login(client, deployment):
    assert client.get("/deployments/").status_code == 302
    assert client.get(f"/deployments/{deployment.pk}/").status_code == 302


def test_list_and_detail_show_status_endpoint_and_events(client, viewer, deployment):
    client.force_login(viewer)
    page = client.get("/deployments/?target=local").content.decode()
    assert "churn-api" in page and "queued" in page and 'href="/deployments/"' in page  # nav link
    detail = client.get(f"/deployments/{deployment.pk}/").content.decode()
    assert "requested churn v1 on local" in detail and "TOKEN=" in detail and "hunter2" not in detail
    assert f"/api/v1/deployments/{deployment.pk}/logs" in detail and "js/deployments.js" in detail
    assert "<script>" not in detail  # the CSP allows only our static script


def test_buttons_only_for_deployers(client, viewer, deployer, deployment):
    client.force_login(viewer)
    assert (
        f"/deployments/{deployment.pk}/stop/"
        not in client.get(f"/deployments/{deployment.pk}/").content.decode()
    )
    client.force_login(deployer)
    page = client.get(f"/deployments/{deployment.pk}/").content.decode()
    assert f"/deployments/{deployment.pk}/stop/" in page and f"/deployments/{deployment.pk}/redeploy/" in page


def test_a_viewer_posting_an_action_is_refused_by_the_service(client, viewer, deployment):
    client.force_login(viewer)
    response = client.post(f"/deployments/{deployment.pk}/stop/", follow=True)
    assert "permission" in response.content.decode()
    assert Deployment.objects.get(pk=deployment.pk).desired_state == "running"


def test_an_outsider_gets_404_on_a_private_models_deployment(
    client, outsider, deployer, private_skops_version
):
    d = services.deployment_request(
        actor=deployer, name="fraud-api", model=private_skops_version.model, version=1
    )
    client.force_login(outsider)
    assert client.get(f"/deployments/{d.pk}/").status_code == 404
    assert client.post(f"/deployments/{d.pk}/stop/").status_code == 404


def test_actions_need_the_csrf_token(deployer, deployment):
    client = Client(enforce_csrf_checks=True)
    client.force_login(deployer)
    assert client.post(f"/deployments/{deployment.pk}/stop/").status_code == 403
    page = client.get(f"/deployments/{deployment.pk}/")
    token = page.cookies["csrftoken"].value
    response = client.post(f"/deployments/{deployment.pk}/stop/", {"csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert Deployment.objects.get(pk=deployment.pk).status == "stopping"


def test_redeploy_form_goes_through_the_service(client, deployer, deployment):
    client.force_login(deployer)
    response = client.post(f"/deployments/{deployment.pk}/redeploy/", {"version": "9"}, follow=True)
    assert "no version 9" in response.content.decode()
    client.post(f"/deployments/{deployment.pk}/redeploy/", {"version": "1"})
    assert Deployment.objects.get(pk=deployment.pk).generation == 2


def test_the_logs_endpoint_feeds_the_page(api, viewer, deployment):
    from deployments_app.models import DeploymentLogLine

    first = DeploymentLogLine.objects.create(deployment=deployment, line="step 1")
    DeploymentLogLine.objects.create(deployment=deployment, line="step 2")
    data = api(viewer).get(f"/api/v1/deployments/{deployment.pk}/logs?after={first.pk}").json()
    assert [line["line"] for line in data["lines"]] == ["step 2"] and data["status"] == "queued"
    assert api(viewer).get(f"/api/v1/deployments/{deployment.pk}/logs?after=x").status_code == 400


def test_admin_lists_and_stops_through_the_service(client, admin_user, deployment):
    client.force_login(admin_user)
    assert "churn-api" in client.get("/admin/deployments_app/deployment/").content.decode()
    client.post(
        "/admin/deployments_app/deployment/",
        {"action": "stop", "_selected_action": [deployment.pk]},
    )
    assert Deployment.objects.get(pk=deployment.pk).status == "stopping"
    page = client.get(f"/admin/deployments_app/deployment/{deployment.pk}/change/").content.decode()
    assert "hunter2" not in page


def test_model_page_lists_deployments_and_offers_try_it_to_those_who_may_predict(
    client, viewer, outsider, deployment
):
    model_page = f"/models/{deployment.model.name}/"
    predict = f"/api/v1/deployments/{deployment.pk}/predict"
    client.force_login(viewer)
    page = client.get(model_page).content.decode()
    assert f'href="/deployments/{deployment.pk}/"' in page and "churn-api" in page
    assert predict not in page  # queued: nothing to try yet

    Deployment.objects.filter(pk=deployment.pk).update(status="running", endpoint_url="http://127.0.0.1:9")
    page = client.get(model_page).content.decode()
    assert f'data-predict-url="{predict}"' in page and 'id="try-it"' in page

    # An outsider sees the internal model and its deployments, but may not predict: no form.
    client.force_login(outsider)
    page = client.get(model_page).content.decode()
    assert "churn-api" in page and predict not in page
