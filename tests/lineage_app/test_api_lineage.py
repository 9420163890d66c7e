"""Lineage through the API, and the three questions end to end."""

from __future__ import annotations

import io

import pytest

from lineage_app.models import Environment, TrainingRun
from models_app import services, services_governance
from models_app.choices import Visibility
from models_app.models import Check

TF_VULN = {
    "id": "GHSA-test-tf01",
    "summary": "Heap overflow in tensorflow",
    "aliases": ["CVE-2023-0001"],
    "modified": "2026-01-01T00:00:00Z",
    "affected": [
        {
            "package": {"ecosystem": "PyPI", "name": "TensorFlow"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.11.1"}]}],
            "versions": ["2.10.0", "2.11.0"],
        }
    ],
}


def lineage_doc(
    *, tf="2.11.0", dataset_digest="sha256:aaa", rows=1000, commit="a" * 40, ancestors=(), auc=0.90
):
    return {
        "datasets": [
            {
                "name": "transactions",
                "uri": "s3://bucket/tx.parquet",
                "digest": dataset_digest,
                "role": "train",
                "rows": rows,
            },
            {"name": "holdout", "uri": "s3://bucket/holdout.parquet", "digest": "sha256:hhh", "role": "test"},
        ],
        "code": {
            "repo_url": "https://bot:s3cret@git.example.com/risk/churn.git",
            "commit": commit,
            "branch": "main",
            "dirty": False,
            "entrypoint": "train.py",
            "committed_at": "2026-10-02T09:14:00Z",
            "ancestors": list(ancestors),
        },
        "environment": {
            "python": "3.11.7",
            "platform": "linux-x86_64",
            "packages": [{"name": "TensorFlow", "version": tf}, {"name": "numpy", "version": "1.26.4"}],
        },
        "run": {
            "id": "run-42",
            "pipeline": "churn-train",
            "started_at": "2026-10-02T10:00:00Z",
            "ended_at": "2026-10-02T11:10:00Z",
            "params": {"lr": 0.01},
            "metrics": {"auc": auc},
        },
    }


def make_version(owner, model, doc, *, stage=None, approver=None):
    """A version with lineage, finalized, optionally promoted."""
    from rest_framework.test import APIClient

    version = services.model_version_create(actor=owner, model=model)
    _t, raw = services.access_token_create(actor=owner, user=owner, name="t", scopes=["write"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    response = client.put(
        f"/api/v1/models/{model.name}/versions/{version.version}/lineage", doc, format="json"
    )
    assert response.status_code == 200, response.content
    services.version_file_upload(actor=owner, version=version, path="m.bin", stream=io.BytesIO(b"w"), size=1)
    services.model_version_finalize(actor=owner, version=version)
    if stage:
        for name in ("loadable", "security_scan"):
            services_governance.check_report(
                actor=None, version=version, name=name, status="passed", builtin=True
            )
        promotion = services_governance.promotion_request(actor=owner, version=version, target_stage=stage)
        if promotion.state == "pending":
            services_governance.promotion_approve(actor=approver, promotion=promotion)
    version.refresh_from_db()
    return version


def test_put_and_get_round_trip_with_credentials_stripped(api, owner, internal_model):
    version = services.model_version_create(actor=owner, model=internal_model)
    client = api(owner)
    response = client.put(
        "/api/v1/models/churn/versions/1/lineage", lineage_doc(ancestors=["b" * 40]), format="json"
    )
    assert response.status_code == 200, response.content
    doc = client.get("/api/v1/models/churn/versions/1/lineage").json()
    assert doc["code"]["repo_url"] == "https://git.example.com/risk/churn.git"
    assert doc["code"]["ancestors"] == ["b" * 40]
    assert {p["name"] for p in doc["environment"]["packages"]} == {"tensorflow", "numpy"}  # PEP 503 names
    assert doc["run"]["metrics"] == {"auc": 0.9} and doc["datasets"][0]["rows"] == 1000
    assert version.training_run.external_id == "run-42"


def test_audited_lineage_is_what_reads_back(api, owner, internal_model):
    """lineage.set audits the rows it wrote without reading them again: the same document
    as a read, for every part (datasets named twice, parents, ancestors, offset dates)."""
    from lineage_app.services import lineage_document
    from models_app.models import AuditEvent

    make_version(owner, internal_model, lineage_doc())
    services.model_version_create(actor=owner, model=internal_model)
    doc = lineage_doc(ancestors=["b" * 40, "c" * 40, "b" * 40])
    doc["datasets"].append(dict(doc["datasets"][0]))  # the same link twice is one row
    doc["run"].update(started_at="2026-10-02T12:00:00+02:00", tags={"team": "risk"})
    doc["parents"] = [{"model": "churn", "version": 1, "relation": "fine_tuned_from"}]
    client = api(owner)
    for tf in ("2.11.0", "2.12.0"):  # the second set has a "before"
        doc["environment"]["packages"][0]["version"] = tf
        response = client.put("/api/v1/models/churn/versions/2/lineage", doc, format="json")
        assert response.status_code == 200, response.content
    version = internal_model.versions.get(version=2)
    first, second = AuditEvent.objects.filter(action="lineage.set", object_id=str(version.pk)).order_by("id")
    stored = lineage_document(version=version)
    assert second.after == stored and second.before == first.after
    assert stored["run"]["started_at"] == "2026-10-02T10:00:00Z" and len(stored["datasets"]) == 2
    assert stored["code"]["ancestors"] == ["b" * 40, "c" * 40]
    assert stored["parents"] == [{"model": "churn", "version": 1, "relation": "fine_tuned_from"}]
    assert [p["version"] for p in stored["environment"]["packages"]] == ["1.26.4", "2.12.0"]


def test_environments_are_shared_by_digest(owner, internal_model):
    make_version(owner, internal_model, lineage_doc())
    make_version(owner, internal_model, lineage_doc(dataset_digest="sha256:bbb"))
    assert Environment.objects.count() == 1 and TrainingRun.objects.count() == 2


def test_frozen_lineage_is_amended_not_edited(api, owner, internal_model):
    make_version(owner, internal_model, lineage_doc())
    client = api(owner)
    response = client.put("/api/v1/models/churn/versions/1/lineage", lineage_doc(tf="2.12.0"), format="json")
    assert response.status_code == 409 and response.json()["error"] == "version_frozen"
    amended = client.post(
        "/api/v1/models/churn/versions/1/lineage/amendments",
        {"reason": "run id was mistyped", "changes": {"run": {"id": "run-43"}}},
        format="json",
    )
    assert amended.status_code == 201
    doc = client.get("/api/v1/models/churn/versions/1/lineage").json()
    assert doc["run"]["id"] == "run-42" and doc["amendments"][0]["changes"] == {"run": {"id": "run-43"}}


def test_question_1_production_trained_with_a_vulnerable_tensorflow(
    api, owner, approver, admin_user, internal_model
):
    prod = make_version(
        owner, internal_model, lineage_doc(tf="2.11.0"), stage="production", approver=approver
    )
    staging = make_version(owner, internal_model, lineage_doc(tf="2.11.1"), stage="staging")
    client = api(owner)
    by_spec = client.get(
        "/api/v1/lineage/exposure?package=tensorflow&specifier=<2.11.1&stage=production"
    ).json()
    assert [(v["model"], v["version"], v["installed"]) for v in by_spec["versions"]] == [
        ("churn", prod.version, "2.11.0")
    ]
    everything = client.get("/api/v1/lineage/exposure?package=TensorFlow&specifier=<2.11.1").json()
    assert staging.version not in [v["version"] for v in everything["versions"]]  # 2.11.1 is safe
    imported = api(admin_user).post("/api/v1/lineage/advisories", [TF_VULN], format="json")
    assert imported.status_code == 201, imported.content
    affected = client.get(f"/api/v1/lineage/advisories/{TF_VULN['id']}/affected").json()["versions"]
    assert [(v["version"], v["stage"]) for v in affected] == [(prod.version, "production")]
    # The affected version now carries a failing `security` check, which blocks promotion.
    check = Check.objects.get(version=prod, name="security")
    assert check.status == "failed" and TF_VULN["id"] in check.summary
    assert not Check.objects.filter(version=staging, name="security").exists()


def test_question_2_the_new_dataset_moved_the_metric(api, owner, internal_model):
    make_version(owner, internal_model, lineage_doc(dataset_digest="sha256:old", rows=1000, auc=0.86))
    make_version(owner, internal_model, lineage_doc(dataset_digest="sha256:new", rows=1500, auc=0.91))
    result = api(owner).get("/api/v1/models/churn/versions/compare?a=1&b=2").json()
    assert [d["name"] for d in result["datasets"]["changed"]] == ["transactions"]
    assert result["datasets"]["unchanged"] == ["holdout"]
    assert result["code"]["same"] and result["params"] == {} and result["packages"]["upgraded"] == []
    assert result["metrics"]["auc"]["delta"] == pytest.approx(0.05)
    assert any("transactions data changed" in line for line in result["summary"])


def test_question_3_was_the_fix_in(api, owner, internal_model):
    fix = "f" * 40
    before = make_version(owner, internal_model, lineage_doc(commit="1" * 40, ancestors=["0" * 40]))
    after = make_version(
        owner, internal_model, lineage_doc(commit="2" * 40, ancestors=[fix, "1" * 40, "0" * 40])
    )
    no_history = make_version(owner, internal_model, lineage_doc(commit="3" * 40, ancestors=[]))
    result = api(owner).get(f"/api/v1/lineage/commits/{fix[:10]}?model=churn").json()
    verdicts = {row["version"]: row["result"] for row in result["versions"]}
    assert verdicts == {
        before.version: "does_not_contain",
        after.version: "contains",
        no_history.version: "unknown",
    }
    assert api(owner).get("/api/v1/lineage/commits/xyz").status_code == 400


def test_graph_links_data_run_version_and_parents(api, owner, internal_model):
    make_version(owner, internal_model, lineage_doc())
    doc = lineage_doc()
    doc["parents"] = [{"model": "churn", "version": 1, "relation": "fine_tuned_from"}]
    make_version(owner, internal_model, doc)
    graph = api(owner).get("/api/v1/lineage/graph?model=churn&version=2&depth=1").json()
    kinds = {n["kind"] for n in graph["nodes"]}
    assert kinds == {"version", "run", "dataset", "code"}
    assert {"from": "version:churn:1", "to": "version:churn:2", "kind": "fine_tuned_from"} in graph["edges"]


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d["code"].update(commit="not-a-sha"), "code"),
        (lambda d: d["environment"]["packages"].append({"name": "bad name!", "version": "1"}), "environment"),
        (lambda d: d["datasets"][0].update(role="training-ish"), "datasets"),
        (lambda d: d["run"].update(metrics={"auc": "high"}), "run"),
        (lambda d: d["run"].update(ended_at="2020-01-01T00:00:00Z"), "run"),
        (lambda d: d.update(colour="red"), "colour"),
        (lambda d: d["code"].update(ancestors=["a" * 40] * 1001), "code"),
        (
            lambda d: d.update(parents=[{"model": "nope", "version": 1, "relation": "fine_tuned_from"}]),
            "parents",
        ),
    ],
)
def test_bad_lineage_documents_are_400_and_write_nothing(api, owner, internal_model, mutate, field):
    services.model_version_create(actor=owner, model=internal_model)
    doc = lineage_doc()
    mutate(doc)
    response = api(owner).put("/api/v1/models/churn/versions/1/lineage", doc, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["fields"]
    assert not TrainingRun.objects.exists()


def test_oversized_documents_are_refused(api, owner, internal_model, settings):
    settings.MODELYARD_MAX_JSON_BYTES = 10_000
    services.model_version_create(actor=owner, model=internal_model)
    doc = lineage_doc()
    doc["extra"] = {"blob": "x" * 20_000}
    response = api(owner).put("/api/v1/models/churn/versions/1/lineage", doc, format="json")
    assert response.status_code == 400 and "larger than" in response.json()["message"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("package=tensorflow&specifier=<<2", "specifier"),
        ("package=&specifier=<2", "package"),
        ("package=tensorflow&specifier=", "specifier"),
        ("package=tf&specifier=<2&stage=prod", "stage"),
    ],
)
def test_bad_exposure_queries_are_400(api, owner, query, field):
    response = api(owner).get(f"/api/v1/lineage/exposure?{query}")
    assert response.status_code == 400 and field in response.json()["fields"]


def test_unknown_packages_simply_match_nothing(api, owner, internal_model):
    make_version(owner, internal_model, lineage_doc())
    assert api(owner).get("/api/v1/lineage/exposure?package=no-such-pkg&specifier=>0").json()["count"] == 0


@pytest.mark.parametrize(
    "record",
    [
        {"id": "X"},
        {"id": "GHSA-1", "affected": "nope"},
        {"id": "GHSA-1", "affected": [{"package": {}}]},
        {
            "id": "GHSA-1",
            "affected": [
                {
                    "package": {"ecosystem": "PyPI", "name": "x"},
                    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0", "fixed": "1"}]}],
                }
            ],
        },
        "not json object",
    ],
)
def test_malformed_osv_is_400_and_writes_nothing(api, admin_user, record):
    from lineage_app.models import Advisory

    response = api(admin_user).post("/api/v1/lineage/advisories", record, format="json")
    assert response.status_code == 400, response.content
    assert not Advisory.objects.exists()


def test_private_lineage_never_reaches_outsiders(api, owner, outsider, team):
    secret = services.registered_model_create(
        actor=owner, name="fraud", team=team, visibility=Visibility.PRIVATE
    )
    make_version(owner, secret, lineage_doc())
    client = api(outsider)
    assert client.get("/api/v1/lineage/exposure?package=tensorflow&specifier=>0").json()["count"] == 0
    assert client.get(f"/api/v1/lineage/commits/{'a' * 40}?model=fraud").json()["versions"] == []
    assert client.get("/api/v1/models/fraud/versions/1/lineage").status_code == 404
    assert client.get("/api/v1/lineage/graph?model=fraud&version=1").status_code == 404


def test_lineage_pages(owner, internal_model):
    from django.test import Client

    make_version(owner, internal_model, lineage_doc(dataset_digest="sha256:old", auc=0.86))
    make_version(
        owner, internal_model, lineage_doc(dataset_digest="sha256:new", auc=0.91, ancestors=["a" * 40])
    )
    client = Client()
    client.force_login(owner)
    page = client.get("/models/churn/versions/2/").content.decode()
    assert (
        "<svg" in page
        and "transactions" in page
        and "<script" not in page.split("<svg", 1)[1].split("</svg>")[0]
    )
    page = client.get("/models/churn/compare/?a=1&b=2").content.decode()
    assert "The transactions data changed" in page and "+0.05" in page
    page = client.get("/lineage/exposure/?package=tensorflow&specifier=%3C2.11.1").content.decode()
    assert "churn v1" in page and "churn v2" in page
    assert "not a PEP 440" in client.get("/lineage/exposure/?package=tf&specifier=%3C%3C").content.decode()
    page = client.get("/lineage/commits/?sha=" + "a" * 40 + "&model=churn").content.decode()
    assert "includes the commit" in page


def test_advisories_page_highlights_affected_production(owner, approver, admin_user, internal_model, api):
    from django.test import Client

    make_version(owner, internal_model, lineage_doc(tf="2.11.0"), stage="production", approver=approver)
    api(admin_user).post("/api/v1/lineage/advisories", TF_VULN, format="json")
    client = Client()
    client.force_login(owner)
    page = client.get("/lineage/advisories/").content.decode()
    assert TF_VULN["id"] in page and 'class="highlight"' in page and "tensorflow==2.11.0" in page
