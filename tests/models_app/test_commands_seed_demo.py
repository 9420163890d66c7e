"""seed_demo trains real models, stores them through the services and is idempotent."""

from __future__ import annotations

import skops.io as sio
from django.core.management import call_command

from models_app import artifacts
from models_app.models import AuditEvent, ModelVersion, RegisteredModel


def test_seed_demo_builds_a_usable_catalog_once(admin_user, capsys, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks():
        call_command("seed_demo")
    assert RegisteredModel.objects.count() == 5
    assert ModelVersion.objects.filter(status="READY").count() == ModelVersion.objects.count() == 9
    model = RegisteredModel.objects.get(name="breast-cancer-screening")
    champion = model.aliases.get(alias="champion").version
    accuracies = {v.version: float(v.tags.get(key="metric.accuracy").value) for v in model.versions.all()}
    assert accuracies[champion.version] == max(accuracies.values())
    # The stored model loads (skops, no pickle) and predicts.
    item = champion.files.get(path="model.skops")
    raw = b"".join(artifacts.get_store().iter_bytes(item.blob_id))
    estimator = sio.loads(raw, trusted=sio.get_untrusted_types(data=raw))
    assert len(estimator.predict([[0.0] * 30])) == 1
    call_command("seed_demo")
    assert RegisteredModel.objects.count() == 5  # idempotent
    assert AuditEvent.objects.filter(action="version.finalized").count() == 9
    assert "0 model(s) created, 5 already present" in capsys.readouterr().out
