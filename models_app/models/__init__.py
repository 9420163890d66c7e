from models_app.models.access import AccessToken, TeamMembership
from models_app.models.artifacts import Blob, UploadSession, VersionFile
from models_app.models.audit import AuditEvent
from models_app.models.catalog import (
    ModelAlias,
    ModelRevision,
    ModelTag,
    ModelUsage,
    ModelVersion,
    RegisteredModel,
    VersionTag,
)
from models_app.models.events import DeliveryAttempt, Event, Webhook, WebhookDelivery
from models_app.models.governance import (
    AliasHistory,
    Check,
    CheckResult,
    Promotion,
    PromotionApproval,
    PromotionPolicy,
)

__all__ = [
    "AccessToken",
    "AliasHistory",
    "AuditEvent",
    "Blob",
    "Check",
    "CheckResult",
    "DeliveryAttempt",
    "Event",
    "ModelAlias",
    "ModelRevision",
    "ModelTag",
    "ModelUsage",
    "ModelVersion",
    "Promotion",
    "PromotionApproval",
    "PromotionPolicy",
    "RegisteredModel",
    "TeamMembership",
    "UploadSession",
    "VersionFile",
    "VersionTag",
    "Webhook",
    "WebhookDelivery",
]
