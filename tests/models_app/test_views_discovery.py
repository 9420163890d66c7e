"""The discovery UI: search with typos, facets that never leak, cards, charts, snippets, webhooks."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django.template.loader import render_to_string
from django.test import Client

from models_app import search, selectors, services
from models_app.filtersets import RegisteredModelFilterSet
from models_app.models import AuditEvent, ModelUsage, Webhook, WebhookDelivery
from models_app.signature import signature_fields
from tests.models_app.catalog_data import SIGNATURE, build_catalog


@pytest.fixture
def catalog(owner, team, outsider, other_team):
    return build_catalog(owner=owner, team=team, other_owner=outsider, other_team=other_team)


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def names(qs) -> list[str]:
    return [m.name for m in qs]


def found(user, **params) -> list[str]:
    filterset = RegisteredModelFilterSet(params, queryset=selectors.registered_model_list(user=user))
    assert filterset.is_valid(), filterset.errors
    return names(filterset.qs)


# --- Search ---------------------------------------------------------------------------------


def test_word_similarity_forgives_typos_but_not_other_words():
    assert search.word_similarity("custmer churn", "Predicts customer churn.") > 0.7
    assert search.word_similarity("churn", "customer-churn") == 1.0
    assert search.word_similarity("custmer", "customer") == pytest.approx(6 / 11)
    assert search.word_similarity("number 1", "model number 0") == 0.5
    assert search.word_similarity("fraud", "weekly demand per store") < 0.3
    assert search.word_similarity("", "x") == search.word_similarity("x", None) == 0.0


def test_typo_search_finds_customer_churn_on_this_database(viewer, catalog):
    """Whatever the suite runs on (SQLite locally, PostgreSQL in CI)."""
    filterset = RegisteredModelFilterSet(
        {"q": "custmer churn"}, queryset=selectors.registered_model_list(user=viewer)
    )
    assert filterset.is_valid()
    assert names(filterset.qs)[0] == "customer-churn"
    assert filterset.fuzzy is True
    assert "secret-pricing" not in names(filterset.qs)  # private to another team


def test_exact_words_rank_and_are_not_fuzzy(viewer, catalog):
    filterset = RegisteredModelFilterSet(
        {"q": "customers"}, queryset=selectors.registered_model_list(user=viewer)
    )
    assert filterset.is_valid()
    assert names(filterset.qs) == ["customer-churn"] and filterset.fuzzy is False
    assert found(viewer, q="payments") == ["fraud-detector"]  # description word
    assert found(viewer, q="lightgbm") == ["demand-forecast"]  # tag value


def test_fallback_selector_path_runs_here_too(viewer, catalog):
    """The SQLite path's SQL (the word_similarity function) also runs on PostgreSQL (pg_trgm's)."""
    visible = selectors.registered_model_list(user=viewer)
    assert names(search._fuzzy_fallback(visible, "custmer churn"))[:1] == ["customer-churn"]
    assert names(search._exact_fallback(visible, "subscription")) == ["customer-churn"]
    assert names(search._fuzzy_fallback(visible, "zzzz qqqq")) == []


def test_postgresql_path_uses_full_text_and_trigrams(postgres, viewer, catalog):
    visible = selectors.registered_model_list(user=viewer)
    ranked = search._exact_postgresql(visible, "customers cancel").order_by("-search_rank")
    assert names(ranked) == ["customer-churn"]  # stemming: customers → customer
    assert names(search._fuzzy_postgresql(visible, "custmer churn"))[:1] == ["customer-churn"]
    assert names(search._fuzzy_postgresql(visible, "demand forcast")) == ["demand-forecast"]
    # No name or tag is close: descriptions are searched fuzzily too.
    assert names(search._fuzzy_postgresql(visible, "cancel subscripton")) == ["customer-churn"]


def test_postgresql_typo_search_sees_only_visible_close_names(postgres, viewer, outsider, catalog):
    # The close names and tags are gathered without visibility (one index each), then narrowed
    # to what the caller may see: another team's private model is no match, not even a hint.
    assert names(search._fuzzy_postgresql(selectors.registered_model_list(user=viewer), "fraud detectr")) == [
        "fraud-detector"
    ]
    assert (
        names(search._fuzzy_postgresql(selectors.registered_model_list(user=outsider), "fraud detectr")) == []
    )
    assert found(outsider, q="fraud detectr") == []
    assert found(outsider, q="secret pricng") == ["secret-pricing"]


def test_search_indexes_exist_on_postgresql(postgres):
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE indexname LIKE 'registeredmodel_%'")
        indexes = {row[0] for row in cursor.fetchall()}
    assert {
        "registeredmodel_search_gin",
        "registeredmodel_name_trgm",
        "registeredmodel_descr_trgm",
    } <= indexes


def test_api_search_ranks_and_hides_private_models(api, viewer, outsider, catalog):
    response = api(viewer).get("/api/v1/models/?q=custmer churn")
    assert response.status_code == 200
    assert response.json()["results"][0]["name"] == "customer-churn"
    body = api(outsider).get("/api/v1/models/?q=fraud").json()
    assert body["count"] == 0
    assert api(outsider).get("/api/v1/models/?sort=sideways").status_code == 400


def test_facet_filters_and_sorts(viewer, catalog, owner):
    assert found(viewer, task="classification", sort="name") == ["customer-churn", "fraud-detector"]
    assert found(viewer, framework="lightgbm") == ["demand-forecast"]
    assert found(viewer, team="risk", sort="name") == ["customer-churn", "fraud-detector"]
    assert found(viewer, stage="production") == []
    services.usage_record(model=catalog["demand"], kind="download", count=3)
    services.usage_record(model=catalog["fraud"], kind="prediction")
    assert found(viewer, sort="used")[:2] == ["demand-forecast", "fraud-detector"]


# --- Facets never leak ----------------------------------------------------------------------


def test_facets_count_only_visible_models(viewer, outsider, catalog):
    facets = selectors.catalog_facets(queryset=selectors.registered_model_list(user=outsider))
    assert dict(facets["task"]) == {"classification": 1, "regression": 1, "pricing": 1}
    assert dict(facets["framework"]) == {"sklearn": 1, "lightgbm": 1, "pytorch": 1}  # no xgboost (fraud)
    assert dict(facets["team"]) == {"risk": 1, "marketing": 2}
    assert "domain=payments" not in dict(facets["tag"])
    mine = selectors.catalog_facets(queryset=selectors.registered_model_list(user=viewer))
    assert dict(mine["task"]) == {"classification": 2, "regression": 1}
    assert {row[0]: row[1] for row in mine["stage"]} == {"none": 3}
    assert (
        selectors.catalog_facets(queryset=selectors.registered_model_list(user=AnonymousUser()))["team"] == []
    )


def test_catalog_page_hides_private_models_everywhere(outsider, catalog):
    client = signed_in(outsider)
    for url in ("/", "/?q=fraud", "/?q=frod", "/?task=classification", "/?framework=xgboost", "/?sort=used"):
        page = client.get(url).content.decode()
        assert "fraud-detector" not in page and "payments" not in page, url
        assert '>xgboost <span class="count"' not in page, url  # no facet entry, not even a count
    page = client.get("/?framework=xgboost").content.decode()
    assert "0 models" in page
    assert client.get("/models/fraud-detector/").status_code == 404
    assert client.get("/models/fraud-detector/card/").status_code == 404
    assert client.get("/models/fraud-detector/compare/").status_code == 404


def test_catalog_page_shows_cards_with_stage_team_and_headline(viewer, catalog):
    page = signed_in(viewer).get("/?q=custmer+churn").content.decode()
    assert "No exact matches" in page and "customer-churn" in page
    assert "likely to cancel their subscription" in page  # plain-language summary
    assert "accuracy <strong>0.84</strong>" in page and "(v2)" in page  # headline of the latest version
    assert "Team <strong>risk</strong>" in page and "Experimental" in page
    assert 'data-facet="task"' in page


def test_catalog_page_query_count_does_not_grow_with_models(
    viewer, catalog, owner, team, django_assert_max_num_queries
):
    for i in range(30):
        services.registered_model_create(actor=owner, name=f"extra-{i}", team=team, tags={"task": "ranking"})
    client = signed_in(viewer)
    client.get("/")  # warm the session
    with django_assert_max_num_queries(15):  # constant: the facets name their teams in one query
        assert client.get("/").status_code == 200
    with django_assert_max_num_queries(17):
        assert client.get("/?q=custmer+churn&task=classification").status_code == 200


# --- Model page -----------------------------------------------------------------------------


def test_model_page_chart_snippets_and_no_try_it_without_a_deployment(
    viewer, catalog, django_assert_max_num_queries
):
    client = signed_in(viewer)
    client.get("/")
    with django_assert_max_num_queries(30):
        page = client.get("/models/customer-churn/").content.decode()
    assert 'class="metric-chart"' in page and 'role="img"' in page
    assert "accuracy rose from 0.81 on version 1 to 0.84 on version 2" in page
    assert "modelyard pull customer-churn/2" in page
    assert "mlflow.pyfunc.load_model(&quot;models:/customer-churn/2&quot;)" in page
    assert "/api/v1/models/customer-churn/versions/2/archive" in page
    assert "Try it" not in page and "Write the card" not in page  # viewer: no edit button


def test_model_page_prefers_an_alias_in_snippets(owner, catalog):
    version = catalog["churn"].versions.get(version=2)
    services.model_alias_set(actor=owner, model=catalog["churn"], alias="candidate", version=version)
    page = signed_in(owner).get("/models/customer-churn/").content.decode()
    assert "modelyard pull customer-churn@candidate" in page and "models:/customer-churn@candidate" in page


def test_try_it_include_builds_the_form_from_the_signature(rf, owner):
    fields = signature_fields(SIGNATURE)
    assert [(f["name"], f["input_type"], f["required"]) for f in fields] == [
        ("tenure_months", "number", True),
        ("plan", "text", True),
        ("has_complaint", "checkbox", False),
    ]
    assert signature_fields({"inputs": '[{"type": "tensor", "tensor-spec": {}}]'}) is None
    assert signature_fields(None) is None
    request = rf.get("/")
    request.user = owner
    html = render_to_string(
        "models_app/_try_it.html", {"predict_url": "/deploy/7/predict", "signature_fields": fields}, request
    )
    assert 'data-predict-url="/deploy/7/predict"' in html and "csrfmiddlewaretoken" in html
    assert 'name="tenure_months" type="number" data-type="double"' in html
    raw = render_to_string(
        "models_app/_try_it.html", {"predict_url": "/p", "signature_fields": None}, request
    )
    assert 'data-type="records"' in raw


def test_card_is_rendered_sanitized(owner, catalog, api):
    evil = (
        '# Card\n\n<script>alert("x")</script>\n\n[click](javascript:alert(1)) <img src=x onerror=alert(1)>'
    )
    response = api(owner).patch("/api/v1/models/customer-churn/", {"card": evil}, format="json")
    assert response.status_code == 200 and response.json()["card"] == evil
    page = signed_in(owner).get("/models/customer-churn/").content.decode()
    body = page.split('id="card"')[1].split("</section>")[0]
    assert "<h1>Card</h1>" in body
    assert "<script" not in body and "onerror=" not in body.replace("onerror=alert(1)&gt;", "")
    assert "&lt;script&gt;" in body and 'href="javascript' not in body


def test_card_api_permissions_and_validation(api, owner, viewer, outsider, catalog):
    url = "/api/v1/models/customer-churn/"
    assert api(viewer).patch(url, {"card": "x"}, format="json").status_code == 403
    assert (
        api(outsider).patch("/api/v1/models/fraud-detector/", {"card": "x"}, format="json").status_code == 404
    )
    bad = api(owner).patch(url, {"card": "x" * 100_001}, format="json")
    assert bad.status_code == 400 and "card" in bad.json()["fields"]
    assert api(owner).patch(url, {"card": 12}, format="json").status_code in (200, 400)
    ok = api(owner).patch(url, {"card": "## Hello"}, format="json")
    assert ok.status_code == 200 and api(viewer).get(url).json()["card"] == "## Hello"
    event = AuditEvent.objects.filter(action="model.updated").latest("id")
    assert event.after["card"]["length"] == len("## Hello")


def test_owner_edits_the_card_from_a_prefilled_draft(owner, viewer, catalog):
    client = signed_in(owner)
    page = client.get("/models/customer-churn/").content.decode()
    assert "Write the card" in page
    form = client.get("/models/customer-churn/card/").content.decode()
    assert "## Intended use" in form and "## Limitations" in form
    assert "crm.customers" in form and "80,000 rows" in form and "| accuracy | 0.84 |" in form
    response = client.post("/models/customer-churn/card/", {"card": "# Churn\n\nUse it **carefully**."})
    assert response.status_code == 302
    page = client.get("/models/customer-churn/").content.decode()
    assert "<strong>carefully</strong>" in page and "Edit the card" in page
    assert signed_in(viewer).get("/models/customer-churn/card/").status_code == 403
    assert signed_in(viewer).post("/models/customer-churn/card/", {"card": "hacked"}).status_code == 403


def test_card_form_is_csrf_protected(owner, catalog):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    assert client.post("/models/customer-churn/card/", {"card": "x"}).status_code == 403


# --- Usage ----------------------------------------------------------------------------------


def test_downloads_are_counted(api, viewer, catalog):
    client = api(viewer)
    files = "/api/v1/models/customer-churn/versions/2/files/model.pkl"
    assert client.get(files).status_code in (200, 302)  # 302: S3 redirect, also a download
    assert client.get(files, HTTP_RANGE="bytes=0-0").status_code in (206, 302)  # a resumed part: not counted
    assert client.head(files).status_code in (200, 302)
    response = client.get("/api/v1/models/customer-churn/versions/2/archive")
    b"".join(response.streaming_content)
    usage = ModelUsage.objects.get(model=catalog["churn"], kind="download")
    assert usage.count == 2  # the GET and the archive; HEAD is not a download


def test_usage_record_validates_kind(catalog):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        services.usage_record(model=catalog["churn"], kind="view")
    services.usage_record(model=catalog["churn"].pk, kind="prediction", count=5)
    services.usage_record(model=catalog["churn"], kind="prediction")
    assert ModelUsage.objects.get(kind="prediction").count == 6


# --- Webhooks -------------------------------------------------------------------------------


@pytest.fixture
def allow_private(settings):
    settings.MODELYARD_WEBHOOK_ALLOW_PRIVATE = True


def test_webhooks_page_creates_pings_redelivers_and_deletes(owner, outsider, allow_private):
    client = signed_in(owner)
    page = client.post(
        "/webhooks/",
        {"name": "ops", "url": "http://127.0.0.1:9/hook", "events": "version.ready, promotion.applied"},
    ).content.decode()
    hook = Webhook.objects.get()
    assert "shown only once" in page and sorted(hook.events) == ["promotion.applied", "version.ready"]
    assert client.post(f"/webhooks/{hook.pk}/ping/").status_code == 302
    delivery = WebhookDelivery.objects.get(webhook=hook)
    assert "webhook.ping" in client.get("/webhooks/").content.decode()
    assert client.post(f"/webhooks/{hook.pk}/deliveries/{delivery.delivery_id}/redeliver/").status_code == 302
    assert AuditEvent.objects.filter(action="webhook.redelivered").exists()
    other = signed_in(outsider)
    assert "ops" not in other.get("/webhooks/").content.decode()
    assert other.post(f"/webhooks/{hook.pk}/delete/").status_code == 404
    assert client.post(f"/webhooks/{hook.pk}/delete/").status_code == 302
    assert not Webhook.objects.exists()


def test_webhooks_page_refuses_bad_input_and_viewers(owner, viewer):
    page = signed_in(owner).post("/webhooks/", {"name": "x", "url": "http://127.0.0.1/h", "events": "*"})
    assert page.status_code == 200 and "loopback" in page.content.decode()
    page = signed_in(owner).post("/webhooks/", {"name": "x", "url": "not a url", "events": "*"})
    assert page.status_code == 200 and "Enter a valid URL" in page.content.decode()
    assert not Webhook.objects.exists()
    assert "Add a webhook" not in signed_in(viewer).get("/webhooks/").content.decode()
    assert (
        signed_in(viewer)
        .post("/webhooks/", {"name": "x", "url": "https://8.8.8.8/", "events": "*"})
        .status_code
        == 403
    )


def test_compare_page_says_better_or_worse(viewer, catalog):
    page = signed_in(viewer).get("/models/customer-churn/compare/?a=1&b=2").content.decode()
    assert "How the results moved" in page and 'class="verdict-better">better' in page
    from models_app.templatetags.catalog import metric_verdict

    assert metric_verdict(-0.5, "rmse") == "better" and metric_verdict(0.5, "val_loss") == "worse"
    assert metric_verdict(0.01, "auc") == "better" and metric_verdict(0, "auc") == ""


def test_metrics_recorded_as_version_tags_count_too(owner, team, viewer):
    """Clients without lineage (and the demo catalog) record ``metric.<name>`` version tags."""
    model = services.registered_model_create(actor=owner, name="tagged", team=team)
    for value in ("0.7", "0.75"):
        version = services.model_version_create(actor=owner, model=model)
        services.version_tag_set(actor=owner, version=version, key="metric.f1", value=value)
        services.version_tag_set(actor=owner, version=version, key="metric.note", value="n/a")
    model = selectors.registered_model_list(user=viewer).get(name="tagged")
    assert selectors.headline_metrics(models=[model])[model.pk]["metrics"] == {"f1": 0.75}
    series = selectors.metric_series(model=model, versions=list(model.versions.all()))
    assert series == [{"name": "f1", "points": [(1, 0.7), (2, 0.75)]}]
