"""``manage.py seed_demo``: a demo catalog of real scikit-learn models (idempotent).

Each model is trained on a dataset bundled with scikit-learn, saved with skops (a safe,
non-pickle format) and uploaded through the same services as the API, with an input example,
its requirements and its metrics, then finalized. Models that already exist are left alone.
"""

from __future__ import annotations

import io
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from models_app import services
from models_app.choices import TeamRole, Visibility
from models_app.models import RegisteredModel, TeamMembership


@dataclass
class DemoModel:
    name: str
    team: str
    dataset: str
    task: str
    description: str
    estimators: list[tuple[str, str]]  # (description, estimator factory name)
    visibility: str = Visibility.INTERNAL
    tags: dict[str, str] = field(default_factory=dict)


DEMO = [
    DemoModel(
        name="breast-cancer-screening",
        team="health-analytics",
        dataset="breast_cancer",
        task="classification",
        description=(
            "Flags breast tissue samples that look malignant from 30 measurements of cell nuclei, so that "
            "specialists review the riskiest samples first. Trained on the Wisconsin diagnostic dataset."
        ),
        estimators=[
            ("Baseline: scaled logistic regression.", "logistic"),
            ("Random forest with 200 trees.", "forest"),
            ("Gradient boosting.", "boosting"),
        ],
        tags={"domain": "healthcare", "owner-contact": "health-analytics@example.com"},
    ),
    DemoModel(
        name="iris-species",
        team="health-analytics",
        dataset="iris",
        task="classification",
        description="Tells the three iris species apart from petal and sepal sizes. A small teaching model.",
        estimators=[("Decision tree.", "tree"), ("Support vector machine.", "svc")],
        tags={"domain": "botany"},
    ),
    DemoModel(
        name="diabetes-progression",
        team="health-analytics",
        dataset="diabetes",
        task="regression",
        description=(
            "Estimates how far diabetes will progress within a year from ten baseline measurements "
            "(age, BMI, blood pressure, six blood serum values)."
        ),
        estimators=[("Ridge regression.", "ridge"), ("Gradient boosting regressor.", "boosting_regressor")],
        tags={"domain": "healthcare"},
    ),
    DemoModel(
        name="wine-cultivar",
        team="research",
        dataset="wine",
        task="classification",
        description="Identifies which of three cultivars a wine comes from, using its chemical analysis.",
        estimators=[("k-nearest neighbours on scaled features.", "knn")],
        visibility=Visibility.PRIVATE,
        tags={"domain": "food"},
    ),
    DemoModel(
        name="handwritten-digits",
        team="research",
        dataset="digits",
        task="classification",
        description="Reads handwritten digits (0-9) from 8x8 pixel images.",
        estimators=[("Logistic regression on pixel intensities.", "logistic")],
        tags={"domain": "vision"},
    ),
]


def _estimator(kind: str):
    from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeClassifier

    return {
        "logistic": lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
        "forest": lambda: RandomForestClassifier(n_estimators=200, random_state=0),
        "boosting": lambda: GradientBoostingClassifier(random_state=0),
        "tree": lambda: DecisionTreeClassifier(max_depth=4, random_state=0),
        "svc": lambda: make_pipeline(StandardScaler(), SVC(random_state=0)),
        "ridge": lambda: Ridge(alpha=1.0),
        "boosting_regressor": lambda: GradientBoostingRegressor(random_state=0),
        "knn": lambda: make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=5)),
    }[kind]()


def train(spec: DemoModel, kind: str) -> tuple[dict[str, bytes], dict[str, float], dict[str, str]]:
    """Train one estimator; return its files, metrics and framework tags."""
    import sklearn
    import skops
    import skops.io as sio
    from sklearn import datasets, metrics
    from sklearn.model_selection import train_test_split

    data = getattr(datasets, f"load_{spec.dataset}")(as_frame=True)
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=0.25, random_state=42
    )
    model = _estimator(kind).fit(x_train, y_train)
    predicted = model.predict(x_test)
    if spec.task == "classification":
        scores = {
            "accuracy": round(float(metrics.accuracy_score(y_test, predicted)), 4),
            "f1_macro": round(float(metrics.f1_score(y_test, predicted, average="macro")), 4),
        }
    else:
        scores = {
            "r2": round(float(metrics.r2_score(y_test, predicted)), 4),
            "rmse": round(float(metrics.root_mean_squared_error(y_test, predicted)), 2),
        }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.skops"
        sio.dump(model, path)
        model_bytes = path.read_bytes()
    example = x_test.head(3)
    files = {
        "model.skops": model_bytes,
        "input_example.json": json.dumps(
            {"columns": list(example.columns), "data": example.to_numpy().tolist()}, indent=2
        ).encode(),
        "requirements.txt": f"scikit-learn=={sklearn.__version__}\nskops=={skops.__version__}\n".encode(),
        "metrics.json": json.dumps(scores, indent=2).encode(),
    }
    return files, scores, {"framework": "scikit-learn", "format": "skops", "estimator": type(model).__name__}


class Command(BaseCommand):
    help = (
        "Seed a demo catalog of scikit-learn models trained on scikit-learn's bundled datasets (idempotent)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--user", default=None, help="Administrator who registers the models (default: first)."
        )

    def handle(self, *args, **options):
        User = get_user_model()
        users = User.objects.filter(is_superuser=True).order_by("pk")
        actor = users.filter(username=options["user"]).first() if options["user"] else users.first()
        if actor is None:
            raise CommandError("No administrator found: run `manage.py ensure_admin` first.")
        created = 0
        for spec in DEMO:
            if RegisteredModel.objects.filter(name__iexact=spec.name).exists():
                continue
            self._seed(spec, actor)
            created += 1
        self.stdout.write(f"Demo catalog: {created} model(s) created, {len(DEMO) - created} already present.")

    @transaction.atomic
    def _seed(self, spec: DemoModel, actor) -> None:
        team, _ = Group.objects.get_or_create(name=spec.team)
        TeamMembership.objects.get_or_create(team=team, user=actor, defaults={"role": TeamRole.CONTRIBUTOR})
        model = services.registered_model_create(
            actor=actor,
            name=spec.name,
            team=team,
            description=spec.description,
            visibility=spec.visibility,
            tags={"task": spec.task, "dataset": f"sklearn.datasets.load_{spec.dataset}", **spec.tags},
        )
        best: tuple[float, object] | None = None
        for description, kind in spec.estimators:
            files, scores, framework = train(spec, kind)
            version = services.model_version_create(
                actor=actor,
                model=model,
                description=description,
                source=f"seed_demo:{spec.dataset}/{kind}",
                tags={**framework, **{f"metric.{k}": str(v) for k, v in scores.items()}},
            )
            for path, content in files.items():
                services.version_file_upload(
                    actor=actor, version=version, path=path, stream=io.BytesIO(content), size=len(content)
                )
            services.model_version_finalize(actor=actor, version=version)
            headline = scores.get("accuracy", scores.get("r2", 0.0))
            if best is None or headline > best[0]:
                best = (headline, version)
        assert best is not None
        services.model_alias_set(actor=actor, model=model, alias="champion", version=best[1])
        self.stdout.write(f"  {spec.name}: {len(spec.estimators)} version(s), champion v{best[1].version}")
