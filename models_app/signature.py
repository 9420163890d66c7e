"""The input form of a model, from its MLflow signature (captured from ``MLmodel`` by lineage)."""

from __future__ import annotations

import json

# MLflow column types → how a person types them in a form, and how the page encodes them.
_INPUT_TYPES = {
    "double": ("number", "any"),
    "float": ("number", "any"),
    "long": ("number", "1"),
    "integer": ("number", "1"),
    "boolean": ("checkbox", ""),
    "string": ("text", ""),
    "datetime": ("datetime-local", ""),
}


def _parse(spec) -> list | None:
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except ValueError:
            return None
    return spec if isinstance(spec, list) else None


def signature_fields(signature: dict | None) -> list[dict] | None:
    """Form fields for a column-based signature: ``[{"name", "type", "input_type", "step", "required"}]``.

    ``None`` when there is no signature or it is tensor-based (those take raw JSON instead).
    """
    if not isinstance(signature, dict):
        return None
    columns = _parse(signature.get("inputs"))
    if not columns:
        return None
    fields = []
    for i, column in enumerate(columns):
        if not isinstance(column, dict) or column.get("type") not in _INPUT_TYPES:
            return None  # tensors, arrays, objects: not a simple form
        input_type, step = _INPUT_TYPES[column["type"]]
        fields.append(
            {
                "name": str(column.get("name") or f"column_{i}"),
                "type": column["type"],
                "input_type": input_type,
                "step": step,
                "required": column.get("required", True) is not False,
            }
        )
    return fields


def version_signature(*, version) -> dict | None:
    """The MLflow signature recorded for ``version`` (``None`` when it has none)."""
    from lineage_app.models import TrainingRun

    extra = TrainingRun.objects.filter(version=version).values_list("extra", flat=True).first()
    mlmodel = (extra or {}).get("mlmodel") if isinstance(extra, dict) else None
    return (mlmodel or {}).get("signature") if isinstance(mlmodel, dict) else None
