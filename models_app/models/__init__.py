from models_app.models.access import AccessToken, TeamMembership
from models_app.models.artifacts import Blob, UploadSession, VersionFile
from models_app.models.audit import AuditEvent
from models_app.models.catalog import ModelAlias, ModelTag, ModelVersion, RegisteredModel, VersionTag

__all__ = [
    "AccessToken",
    "AuditEvent",
    "Blob",
    "ModelAlias",
    "ModelTag",
    "ModelVersion",
    "RegisteredModel",
    "TeamMembership",
    "UploadSession",
    "VersionFile",
    "VersionTag",
]
