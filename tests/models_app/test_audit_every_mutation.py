"""Every mutation type writes an audit record, in the same transaction as the change.

For each type the service runs once normally (a record with the action appears) and once inside
a transaction that is then rolled back (the change and its record disappear together: the
record is not written on the side).
"""

from __future__ import annotations

import io

import pytest
from django.db import transaction

from models_app import services, services_events, services_governance
from models_app.models import AuditEvent, ModelVersion
from tests.conftest import make_user


def _ready_version(owner, model) -> ModelVersion:
    version = services.model_version_create(actor=owner, model=model)
    services.version_file_upload(actor=owner, version=version, path="m.bin", stream=io.BytesIO(b"w"), size=1)
    return services.model_version_finalize(actor=owner, version=version)


def _model(c):
    services.registered_model_create(actor=c["owner"], name=f"m{AuditEvent.objects.count()}", team=c["team"])


def _version(c):
    services.model_version_create(actor=c["owner"], model=c["model"])


def _file(c):
    version = services.model_version_create(actor=c["owner"], model=c["model"])
    services.version_file_upload(
        actor=c["owner"], version=version, path="a.txt", stream=io.BytesIO(b"x"), size=1
    )


def _tag(c):
    services.model_tag_set(actor=c["owner"], model=c["model"], key="k", value="v")


def _alias(c):
    services.model_alias_set(actor=c["owner"], model=c["model"], alias="shadow", version=c["version"])


def _stage(c):
    services_governance.promotion_request(actor=c["owner"], version=c["version"], target_stage="staging")


def _promotion(c):
    services_governance.promotion_request(actor=c["owner"], version=c["version"], target_stage="production")


def _check(c):
    services_governance.check_report(actor=c["owner"], version=c["version"], name="ci", status="passed")


def _policy(c):
    services_governance.policy_update(actor=c["owner"], model=c["model"], production_approvals=2)


def _token(c):
    services.access_token_create(actor=c["owner"], user=c["owner"], name="ci", scopes=["read"])


def _team(c):
    services.team_create(actor=c["admin"], name="new-team")


def _membership(c):
    services.team_member_set(actor=c["admin"], team=c["team"], user=make_user("newbie"), role="viewer")


def _webhook(c):
    services_events.webhook_create(actor=c["owner"], name="h", url="http://127.0.0.1:9/x", events=["*"])


MUTATIONS = [
    ("model.created", _model),
    ("version.created", _version),
    ("file.uploaded", _file),
    ("model.tag_set", _tag),
    ("alias.set", _alias),
    ("version.stage_changed", _stage),
    ("promotion.requested", _promotion),
    ("check.reported", _check),
    ("policy.updated", _policy),
    ("token.created", _token),
    ("team.created", _team),
    ("membership.set", _membership),
    ("webhook.created", _webhook),
]


@pytest.fixture
def context(owner, team, admin_user, internal_model, settings):
    settings.MODELYARD_WEBHOOK_ALLOW_PRIVATE = True
    version = _ready_version(owner, internal_model)
    for name in ("loadable", "security_scan"):
        services_governance.check_report(
            actor=None, version=version, name=name, status="passed", builtin=True
        )
    return {"owner": owner, "team": team, "admin": admin_user, "model": internal_model, "version": version}


class Rollback(Exception):
    pass


@pytest.mark.parametrize(("action", "mutate"), MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_each_mutation_type_is_audited_in_its_transaction(action, mutate, context):
    before = AuditEvent.objects.filter(action=action).count()
    with pytest.raises(Rollback), transaction.atomic():
        mutate(context)
        assert AuditEvent.objects.filter(action=action).count() == before + 1
        raise Rollback
    assert AuditEvent.objects.filter(action=action).count() == before  # gone with the change

    mutate(context)
    record = AuditEvent.objects.filter(action=action).order_by("-id").first()
    assert record is not None and AuditEvent.objects.filter(action=action).count() == before + 1
    assert record.actor_username in ("owner", "admin")
    assert record.object_type and record.object_repr
