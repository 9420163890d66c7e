"""A small catalog for the discovery tests: models with tags, versions, run metrics and stages."""

from __future__ import annotations

import io

from lineage_app.services import lineage_set
from models_app import services, services_governance
from models_app.choices import Visibility


def version_with_run(
    owner, model, *, metrics: dict, rows: int = 1000, signature: dict | None = None, stage=None, approver=None
):
    """A READY version whose training run recorded ``metrics`` (and optionally an MLflow signature)."""
    version = services.model_version_create(actor=owner, model=model, description=f"Run with {metrics}")
    document = {
        "datasets": [
            {
                "name": "crm.customers",
                "uri": "s3://crm/customers",
                "digest": f"sha256:{rows}",
                "role": "train",
                "rows": rows,
            }
        ],
        "run": {"id": f"run-{model.name}-{version.version}", "metrics": metrics},
    }
    if signature:
        document["extra"] = {"mlmodel": {"flavors": ["python_function", "sklearn"], "signature": signature}}
    lineage_set(actor=owner, version=version, document=document)
    services.version_file_upload(
        actor=owner, version=version, path="model.pkl", stream=io.BytesIO(b"w"), size=1
    )
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


SIGNATURE = {
    "inputs": '[{"type": "double", "name": "tenure_months"}, {"type": "string", "name": "plan"}, '
    '{"type": "boolean", "name": "has_complaint", "required": false}]',
    "outputs": '[{"type": "double", "name": "churn_probability"}]',
}


def build_catalog(*, owner, team, other_owner, other_team, approver=None):
    """Four models: customer-churn (internal, two versions, one in production), fraud (private to
    ``team``), demand forecast (internal, other team) and secret-pricing (private to ``other_team``)."""
    churn = services.registered_model_create(
        actor=owner,
        name="customer-churn",
        team=team,
        description="Predicts which customers are likely to cancel their subscription next month.",
        tags={"task": "classification", "framework": "sklearn", "domain": "crm"},
    )
    version_with_run(owner, churn, metrics={"accuracy": 0.81, "auc": 0.86}, rows=50_000)
    version_with_run(owner, churn, metrics={"accuracy": 0.84, "auc": 0.89}, rows=80_000, signature=SIGNATURE)
    fraud = services.registered_model_create(
        actor=owner,
        name="fraud-detector",
        team=team,
        description="Flags card payments that look fraudulent.",
        visibility=Visibility.PRIVATE,
        tags={"task": "classification", "framework": "xgboost", "domain": "payments"},
    )
    version_with_run(owner, fraud, metrics={"auc": 0.97})
    demand = services.registered_model_create(
        actor=other_owner,
        name="demand-forecast",
        team=other_team,
        description="Forecasts weekly demand per store.",
        tags={"task": "regression", "framework": "lightgbm"},
    )
    version_with_run(other_owner, demand, metrics={"rmse": 12.5})
    secret = services.registered_model_create(
        actor=other_owner,
        name="secret-pricing",
        team=other_team,
        description="Sets prices for the secret customer churn programme.",
        visibility=Visibility.PRIVATE,
        tags={"task": "pricing", "framework": "pytorch"},
    )
    return {"churn": churn, "fraud": fraud, "demand": demand, "secret": secret}
