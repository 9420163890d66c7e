"""Model search pages and get model from rendered copies (``models_app.mlflow.rendered``): the same JSON as
rendering every model, each change visible on the very next page, nothing kept from inside a
transaction or from a rendering that straddled a change. PostgreSQL only (the revisions'
triggers); the copies are off elsewhere, which the last test checks."""

from __future__ import annotations

import json

import orjson
import pytest
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.test import Client

from lineage_app.models import TrainingRun
from models_app import services
from models_app.mlflow import reads, rendered, search
from models_app.models import ModelAlias, ModelTag, ModelVersion, RegisteredModel, VersionTag
from registry_project.rawsql import fetch

pytestmark = pytest.mark.django_db(transaction=True)
SEARCH = "/api/2.0/mlflow/registered-models/search"
GET = "/api/2.0/mlflow/registered-models/get"


@pytest.fixture
def copies(postgres, settings):
    """Copies on, starting empty, for PostgreSQL."""
    settings.MODELYARD_MLFLOW_RENDER_CACHE_MB = 8
    rendered.reset()
    yield
    rendered.reset()


@pytest.fixture
def catalog(owner, team):
    """Three models with versions in several stages, tags, aliases and a run."""
    for name in ("alpha", "beta", "gamma"):
        model = services.registered_model_create(actor=owner, name=name, team=team, tags={"task": name})
        for number, stage in enumerate(("staging", "production", "none"), start=1):
            version = services.model_version_create(actor=owner, model=model, tags={"n": str(number)})
            ModelVersion.objects.filter(pk=version.pk).update(stage=stage, status="ready")
        ModelAlias.objects.create(model=model, alias="champion", version=version)
        TrainingRun.objects.create(version=version, external_id=f"{name:0<32}")


@pytest.fixture
def page(owner):
    _t, raw = services.access_token_create(actor=owner, user=owner, name="t", scopes=["read", "write"])

    def _page(path=SEARCH, **params) -> dict:
        if path == SEARCH:
            params = {"max_results": 2, **params}
        response = Client().get(path, params, HTTP_AUTHORIZATION=f"Bearer {raw}")
        assert response.status_code == 200, response.content
        return json.loads(response.content)

    return _page


def walk(page) -> list[dict]:
    """Every page of a model search, then each model again through get model."""
    found, token = [], None
    while True:
        body = page(**({"page_token": token} if token else {}))
        found += body.get("registered_models", [])
        token = body.get("next_page_token")
        if not token:
            return found + [page(path=GET, name=model["name"])["registered_model"] for model in found]


def test_pages_are_what_rendering_every_model_gives(copies, catalog, page, settings):
    first = walk(page)
    assert len(rendered.models()) == 3  # kept
    assert walk(page) == first  # served from the copies
    settings.MODELYARD_MLFLOW_RENDER_CACHE_MB = 0
    rendered.reset()
    assert rendered.models() is None
    assert walk(page) == first
    assert [m["name"] for m in first] == ["alpha", "beta", "gamma"] * 2
    assert first[0]["aliases"] == [{"alias": "champion", "version": "3"}]
    assert {v["current_stage"] for v in first[0]["latest_versions"]} == {"Staging", "Production", "None"}


def alpha():
    return RegisteredModel.objects.get(name="alpha")


def version(number: int):
    return ModelVersion.objects.get(model__name="alpha", version=number)


CHANGES = {
    "description": lambda owner: RegisteredModel.objects.filter(name="alpha").update(description="new"),
    "model tag": lambda owner: ModelTag.objects.create(model=alpha(), key="k", value="v"),
    "version tag": lambda owner: VersionTag.objects.filter(version=version(1)).update(value="x"),
    "alias moved": lambda owner: ModelAlias.objects.filter(model=alpha()).update(version=version(1)),
    "stage": lambda owner: ModelVersion.objects.filter(pk=version(1).pk).update(stage="archived"),
    "new version": lambda owner: ModelVersion.objects.create(model=alpha(), version=4, stage="staging"),
    "version deleted": lambda owner: version(2).delete(),
    "run id": lambda owner: TrainingRun.objects.filter(version=version(3)).update(external_id="f" * 32),
    "creator renamed": lambda owner: User.objects.filter(pk=owner.pk).update(username="renamed"),
    "through a service": lambda owner: services.model_tag_set(
        actor=owner, model=alpha(), key="task", value="changed"
    ),
}


@pytest.mark.parametrize("change", CHANGES)
def test_a_change_is_on_the_next_page(copies, catalog, page, owner, settings, change):
    walk(page)  # every model rendered and kept
    CHANGES[change](owner)
    served = walk(page)
    settings.MODELYARD_MLFLOW_RENDER_CACHE_MB = 0
    rendered.reset()
    assert served == walk(page)


def test_nothing_is_kept_or_used_inside_a_transaction(copies, catalog, owner):
    where = search.registered_model_where(search.parse(""))
    with transaction.atomic():
        assert rendered.models() is None
        ModelTag.objects.create(model=alpha(), key="uncommitted", value="v")
        models, _more, _last = reads.model_search(
            user=owner, where=where, order=["m.name ASC"], offset=0, limit=10
        )
        assert any(tag["key"] == "uncommitted" for tag in models[0]["tags"])  # its own change
        transaction.set_rollback(True)
    assert rendered.models() is not None and len(rendered.models()) == 0
    models, _more, _last = reads.model_search(
        user=owner, where=where, order=["m.name ASC"], offset=0, limit=10
    )
    assert all(tag["key"] != "uncommitted" for tag in orjson.loads(orjson.dumps(models[0]))["tags"])


def test_a_rendering_that_straddles_a_change_is_not_kept(copies, catalog):
    """The model row and its latest versions are two statements; a change committed between
    them is not in the row's revision, so that rendering is served but not kept."""
    statements = reads._statements()
    rows = fetch(statements.models + "m.name = %s", ["alpha"])
    VersionTag.objects.filter(version=version(3)).update(value="between")  # commits: a new revision
    found, settled = reads._render_models(rows)
    assert found[rows[0][0]]["latest_versions"]  # rendered
    assert settled == {}  # but not to be kept under the row's (older) revision
    rows = fetch(statements.models + "m.name = %s", ["alpha"])
    assert reads._render_models(rows)[1] == {rows[0][0]: rows[0][-1]}


def test_copies_stay_within_their_budget():
    copies = rendered.RenderedModels(max_bytes=100)
    copies.put(1, 10, b"x" * 60)
    copies.put(2, 20, b"y" * 30)
    assert copies.get(1, 10) == b"x" * 60 and copies.get(1, 11) is None  # only its revision
    copies.put(3, 30, b"z" * 30)  # 120 bytes: the oldest goes
    assert copies.get(1, 10) is None and copies.get(2, 20) and copies.get(3, 30)
    copies.put(2, 21, b"w" * 10)  # a new revision replaces the old copy
    assert copies.get(2, 20) is None and copies.get(2, 21) == b"w" * 10 and len(copies) == 2
    copies.put(4, 40, b"too big" * 100)
    assert copies.get(4, 40) is None
    copies.put(5, None, b"no revision")  # a model without a revision row is never kept
    assert copies.get(5, None) is None


def test_no_copies_without_the_triggers(settings):
    if connection.vendor == "postgresql":
        pytest.skip("the SQLite rule")
    settings.MODELYARD_MLFLOW_RENDER_CACHE_MB = 8
    rendered.reset()
    assert rendered.models() is None


def test_no_copies_while_a_revision_trigger_is_disabled(copies, catalog, page, caplog):
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE models_app_versiontag DISABLE TRIGGER versiontag_revision")
    try:
        rendered.reset()
        assert rendered.models() is None
        assert "revision triggers" in caplog.text
        assert [m["name"] for m in walk(page)] == ["alpha", "beta", "gamma"] * 2  # rendered as before
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE models_app_versiontag ENABLE TRIGGER versiontag_revision")
    rendered.reset()
    assert rendered.models() is not None


def test_copies_made_while_writers_commit_are_never_stale(copies, catalog, owner):
    """Readers render and keep copies while another thread commits changes to the same models;
    once the writer stops, what the copies give equals a fresh rendering of every model."""
    import threading

    from django.db import connections

    where = search.registered_model_where(search.parse(""))
    stop = threading.Event()
    errors: list[BaseException] = []

    def read() -> list:
        models, _more, _last = reads.model_search(
            user=owner, where=where, order=["m.name ASC"], offset=0, limit=10
        )
        return orjson.loads(orjson.dumps(models))

    def writer() -> None:
        try:
            for i in range(60):
                with transaction.atomic():
                    ModelTag.objects.update_or_create(model=alpha(), key="n", defaults={"value": str(i)})
                    VersionTag.objects.filter(version__model__name="beta").update(value=str(i))
                    ModelVersion.objects.filter(model__name="gamma", version=1).update(description=str(i))
        except BaseException as exc:
            errors.append(exc)
        finally:
            stop.set()
            connections.close_all()

    def reader() -> None:
        try:
            while not stop.is_set():
                read()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=writer), *(threading.Thread(target=reader) for _ in range(2))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    served = read()
    assert {t["key"]: t["value"] for t in served[0]["tags"]}["n"] == "59"
    rendered.reset()
    assert len(rendered.models()) == 0
    assert read() == served  # all rendered afresh now
