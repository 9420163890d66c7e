"""Page tokens in MLflow's format: ``base64(json.dumps({"offset": N}))``.

MLflow calls the token opaque; using its own format keeps tokens from an MLflow server and
from Modelyard interchangeable in scripts that log them.
"""

from __future__ import annotations

import base64
import binascii
import json

from models_app.mlflow.errors import invalid


def encode(offset: int) -> str:
    return base64.b64encode(json.dumps({"offset": offset}).encode()).decode()


def decode(token: str | None) -> int:
    """The offset a token stands for (0 for none); a malformed token is a 400."""
    if not token:
        return 0
    try:
        raw = base64.b64decode(token.encode(), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError) as exc:
        raise invalid(f"Invalid page token, could not base64-decode {token!r}.") from exc
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid(f"Invalid page token, decoded value={raw!r}") from exc
    offset = data.get("offset") if isinstance(data, dict) else None
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise invalid(f"Invalid page token, decoded value={raw!r}")
    return offset
