"""An MLflow-compatible REST API: the stock ``mlflow`` client works against Modelyard unchanged.

Registry RPCs map onto the catalog (``models_app.services`` / ``selectors``), tracking RPCs onto
``lineage_app``'s MLflow objects, and the ``mlflow-artifacts`` proxy onto the content-addressed
artifact store. See ``docs/mlflow.md``.
"""
