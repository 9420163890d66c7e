"""Modelyard client: push models with their lineage to a Modelyard registry, pull them back verified.

>>> import modelyard
>>> client = modelyard.Client(url="https://registry.example.com", token="myd_…")
>>> client.push("model/", model="churn", datasets=["train=data/train.parquet"], alias="candidate")
"""

__version__ = "0.1.0"

from modelyard.client import Client, PullResult, PushResult, Ref
from modelyard.errors import (
    APIError,
    ConfigurationError,
    DigestMismatch,
    ModelyardError,
    RegistryUnreachable,
)

__all__ = [
    "APIError",
    "Client",
    "ConfigurationError",
    "DigestMismatch",
    "ModelyardError",
    "PullResult",
    "PushResult",
    "Ref",
    "RegistryUnreachable",
    "__version__",
]
