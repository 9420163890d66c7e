"""Searches of the stock client: name, LIKE/ILIKE, tag filters, ordering and page tokens."""

from __future__ import annotations

import pytest

from models_app import services
from models_app.choices import Visibility
from models_app.models import Blob, VersionFile

pytest.importorskip("mlflow")


def _seed(owner, team, outsider, other_team):
    """Six models of ``risk`` with three versions each, plus a private one of another team."""
    blob = Blob.objects.create(sha256="a" * 64, size=1)
    for i in range(6):
        model = services.registered_model_create(
            actor=owner,
            name=f"churn-{i}" if i < 4 else f"Fraud-{i}",
            team=team,
            tags={"task": "classification" if i % 2 == 0 else "regression", "idx": str(i)},
        )
        for n in range(3):
            version = services.model_version_create(
                actor=owner, model=model, tags={"n": str(n), "uniq": f"{i}-{n}"}
            )
            VersionFile.objects.create(version=version, path="MLmodel", blob=blob)
    hidden = services.registered_model_create(
        actor=outsider, name="churn-secret", team=other_team, visibility=Visibility.PRIVATE
    )
    services.model_version_create(actor=outsider, model=hidden)


def _all_pages(call, **kwargs):
    names, token, pages = [], None, 0
    while True:
        page = call(page_token=token, **kwargs)
        pages += 1
        names += list(page)
        token = page.token
        if not token:
            return names, pages


def test_search_registered_models(mlflow_as, client, owner, team, outsider, other_team):
    _seed(owner, team, outsider, other_team)
    mlflow_as(owner)
    assert [m.name for m in client.search_registered_models("name LIKE 'churn%'")] == [
        "churn-0",
        "churn-1",
        "churn-2",
        "churn-3",
    ]
    assert client.search_registered_models("name LIKE 'CHURN%'") == []  # LIKE is case-sensitive
    assert len(client.search_registered_models("name ILIKE 'CHURN%'")) == 4
    assert [m.name for m in client.search_registered_models("name = 'Fraud-4'")] == ["Fraud-4"]
    assert [m.name for m in client.search_registered_models("tags.task = 'regression'")] == [
        "Fraud-5",
        "churn-1",
        "churn-3",
    ]
    assert [
        m.name for m in client.search_registered_models("tags.task != 'regression' AND name LIKE 'churn%'")
    ] == [
        "churn-0",
        "churn-2",
    ]
    found = client.search_registered_models("tags.`idx` = '2'")
    assert [m.name for m in found] == ["churn-2"]
    assert found[0].latest_versions[0].version == "3"
    assert [m.name for m in client.search_registered_models(order_by=["name DESC"], max_results=2)] == [
        "churn-3",
        "churn-2",
    ]
    models, pages = _all_pages(client.search_registered_models, max_results=4)
    assert pages == 2
    assert sorted(m.name for m in models) == sorted(
        ["churn-0", "churn-1", "churn-2", "churn-3", "Fraud-4", "Fraud-5"]
    )  # churn-secret is private to another team


def test_search_model_versions(mlflow_as, client, owner, team, outsider, other_team):
    _seed(owner, team, outsider, other_team)
    mlflow_as(owner)
    versions = client.search_model_versions("name = 'churn-1'")
    assert sorted(v.version for v in versions) == ["1", "2", "3"]
    assert [
        v.version
        for v in client.search_model_versions(
            "name = 'churn-1' AND version_number >= 2", order_by=["version_number ASC"]
        )
    ] == ["2", "3"]
    assert [(v.name, v.version) for v in client.search_model_versions("tags.uniq = '3-1'")] == [
        ("churn-3", "2")
    ]
    assert len(client.search_model_versions("tags.n = '0'")) == 6
    assert len(client.search_model_versions("name IN ('churn-0', 'Fraud-5')")) == 6
    assert len(client.search_model_versions("name ILIKE 'fraud%'")) == 6
    assert client.search_model_versions("name = 'churn-secret'") == []
    everything, pages = _all_pages(client.search_model_versions, max_results=5)
    assert pages == 4
    assert len({(v.name, v.version) for v in everything}) == 18


@pytest.mark.parametrize(
    ("filter_string", "fragment"),
    [
        ("foo = 'x'", "Invalid attribute key 'foo'"),
        ("name = 'a' OR name = 'b'", "OR"),
        ("name IS NULL", "IS NULL"),
        ("name = ", "quote strings"),
    ],
)
def test_bad_filters_are_invalid_parameter_errors(mlflow_as, client, owner, filter_string, fragment):
    from mlflow.exceptions import MlflowException

    mlflow_as(owner)
    with pytest.raises(MlflowException) as exc:
        client.search_registered_models(filter_string)
    assert exc.value.error_code == "INVALID_PARAMETER_VALUE"
    assert fragment in exc.value.message
