"""Page tokens in MLflow's format: ``base64(json.dumps({"offset": N}))``.

MLflow calls the token opaque; using its own format keeps tokens from an MLflow server and
from Modelyard interchangeable in scripts that log them. Listings in name order also carry the
last ``[name, id]`` seen (``"after"``), so the next page starts there instead of skipping
``offset`` rows: every page of a 10,000-model walk costs the same.
"""

from __future__ import annotations

import base64
import binascii
import json

from models_app.mlflow.errors import invalid


def encode(offset: int, after: tuple[str, int] | None = None) -> str:
    data: dict = {"offset": offset}
    if after is not None:
        data["after"] = list(after)
    return base64.b64encode(json.dumps(data).encode()).decode()


def decode(token: str | None) -> int:
    """The offset a token stands for (0 for none); a malformed token is a 400."""
    return decode_page(token)[0]


def decode_page(token: str | None) -> tuple[int, tuple[str, int] | None]:
    """``(offset, after)`` of a token (``(0, None)`` for none); a malformed token is a 400."""
    if not token:
        return 0, None
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
    after = data.get("after")
    if after is None:
        return offset, None
    if (
        not isinstance(after, list)
        or len(after) != 2
        or not isinstance(after[0], str)
        or not isinstance(after[1], int)
        or isinstance(after[1], bool)
    ):
        raise invalid(f"Invalid page token, decoded value={raw!r}")
    return offset, (after[0], after[1])
