"""Modelyard settings: one module, configured by environment variables.

Every variable is listed in README.md ("Configuration"). Defaults give a registry that runs on
one machine with no services: SQLite, artifacts in a folder and a broker in a folder, all
under ``var/``. Setting DATABASE_URL, CELERY_BROKER_URL and S3_BUCKET moves it to
PostgreSQL, Redis and S3 without a code change.
"""

from __future__ import annotations

from pathlib import Path

import dj_database_url

from registry_project.env import (
    ConfigError,
    db_conn_max_age,
    env_bool,
    env_int,
    env_list,
    env_str,
    persistent_secret,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("MODELYARD_VAR_DIR", str(BASE_DIR / "var"))).resolve()

# --- Core -----------------------------------------------------------------------------------
DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY") or persistent_secret(VAR_DIR / "secret_key")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    # Full-text and trigram lookups of the catalog search (inert on SQLite).
    "django.contrib.postgres",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "models_app",
    "lineage_app",
    "deployments_app",
]

MIDDLEWARE = [
    "registry_project.observability.MetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "registry_project.observability.SecurityHeadersMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "registry_project.request_context.RequestContextMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "registry_project.urls"
WSGI_APPLICATION = "registry_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
try:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=db_conn_max_age())}
except ValueError as exc:  # dj-database-url names the scheme it did not understand
    raise ConfigError(f"DATABASE_URL is not usable: {exc}") from exc
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # The same backend, with a health check that needs no round trip (registry_project/postgresql).
    DATABASES["default"]["ENGINE"] = "registry_project.postgresql"
# Hot-path reads (registry_project.rawsql) bind on the server on PostgreSQL, and psycopg
# prepares a statement after its fifth use on a connection. Django's own cursors bind on the
# client and are never prepared, whatever the threshold.
DB_PREPARED_STATEMENTS = env_bool("DB_PREPARED_STATEMENTS", True)
if DATABASES["default"]["ENGINE"].endswith("postgresql") and DB_PREPARED_STATEMENTS:
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = 5
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Connections are kept per thread like PostgreSQL's: opening one (and its PRAGMAs) costs
    # about 1 ms, as much as the rest of a proxied prediction.
    DATABASES["default"]["OPTIONS"] = {
        # IMMEDIATE takes the write lock at BEGIN, so two writers queue instead of failing
        # with "database is locked" halfway through a transaction.
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Authentication -------------------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    # Grants the codenames of a user's team role on that team's models (see models_app.roles).
    "models_app.auth_backends.TeamRoleBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
# Brute-force protection of password sign-in (models_app.signin): failures per username + address.
MODELYARD_LOGIN_FAILURE_LIMIT = env_int("MODELYARD_LOGIN_FAILURE_LIMIT", 5)
MODELYARD_LOGIN_LOCKOUT_SECONDS = env_int("MODELYARD_LOGIN_LOCKOUT_SECONDS", 15 * 60)
# The cache holds those counters: per process by default, shared by all workers with CACHE_URL.
CACHE_URL = env_str("CACHE_URL")
if CACHE_URL.startswith(("redis://", "rediss://")):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}}
elif CACHE_URL:
    raise ConfigError(f"CACHE_URL={CACHE_URL!r}: use a redis:// URL (or leave it unset)")
LOGIN_REDIRECT_URL = "catalog"
LOGOUT_REDIRECT_URL = "login"

# --- Internationalization -------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# --- Static files and artifact storage --------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "static")))
STATICFILES_DIRS = [BASE_DIR / "static"]
ARTIFACT_STORAGE_PATH = Path(env_str("ARTIFACT_STORAGE_PATH", str(VAR_DIR / "artifacts"))).resolve()
S3_BUCKET = env_str("S3_BUCKET")

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
    "artifacts": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(ARTIFACT_STORAGE_PATH), "file_permissions_mode": 0o640},
    },
}
if S3_BUCKET:
    STORAGES["artifacts"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": S3_BUCKET,
            "location": env_str("S3_PREFIX", "").strip("/"),
            "endpoint_url": env_str("S3_ENDPOINT_URL") or None,
            "region_name": env_str("S3_REGION") or None,
            # Unset keys let boto3 find credentials itself (instance profile, IRSA, ~/.aws).
            "access_key": env_str("S3_ACCESS_KEY_ID") or None,
            "secret_key": env_str("S3_SECRET_ACCESS_KEY") or None,
            "default_acl": None,
            "file_overwrite": True,  # blobs are content-addressed: same key, same bytes
            "querystring_expire": env_int("S3_PRESIGN_SECONDS", 900),
            "addressing_style": env_str("S3_ADDRESSING_STYLE") or None,
        },
    }

# --- Celery ---------------------------------------------------------------------------------
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "control_folder": str(_broker_dir / "control"),
        "processed_folder": str(_broker_dir / "processed"),
        "store_processed": False,
        # kombu polls the folder once a second by default: the wait of every task hand-off.
        "polling_interval": env_int("CELERY_FILESYSTEM_POLL_MS", 100) / 1000,
    }
    for _sub in ("queue", "control", "processed"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 2 * 60 * 60}  # > CELERY_TASK_TIME_LIMIT
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND") or None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = 45 * 60
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    # Retries and anything missed while the broker was down: the outbox rows are the truth.
    "webhook-deliveries": {"task": "models_app.tasks.webhook_deliveries_dispatch_task", "schedule": 30.0},
    # Version-ready hooks whose queueing after finalize was lost (``ready_hooks_done_at``).
    "version-ready-hooks-sweep": {
        "task": "models_app.tasks.version_ready_hooks_sweep_task",
        "schedule": 600.0,
    },
    # Desired vs observed state of deployments: dead instances restarted, stale builds resumed.
    "deployments-reconcile": {
        "task": "deployments_app.tasks.deployments_reconcile_task",
        "schedule": float(env_int("MODELYARD_DEPLOY_RECONCILE_SECONDS", 15)),
    },
}
# Builds and launches run on their own queue, so a long image build never delays webhooks.
# Reconcile stays on the default queue: it must run even while every deployments slot builds.
CELERY_TASK_ROUTES = {
    "deployments_app.tasks.deployments_reconcile_task": {"queue": "celery"},
    "deployments_app.tasks.*": {"queue": "deployments"},
}

# --- REST API -------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "models_app.api.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "models_app.api.permissions.TokenScopePermission",
        "models_app.api.permissions.CodenamePermission",
    ],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "registry_project.api.Pagination",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["registry_project.api.LimitedJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "registry_project.schema.AutoSchema",
    "EXCEPTION_HANDLER": "registry_project.api.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "ORDERING_PARAM": "ordering",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Modelyard API",
    "DESCRIPTION": "Native REST API of the Modelyard model registry. Authenticate with "
    "`Authorization: Bearer <personal access token>`.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "ENUM_NAME_OVERRIDES": {
        "VersionStatusEnum": "models_app.choices.VersionStatus",
        "CheckStatusEnum": "models_app.choices.CheckStatus",
        "StageEnum": "models_app.choices.Stage",
        "DeploymentStatusEnum": "deployments_app.choices.DeploymentStatus",
        "ReportedDeploymentStatusEnum": ["building", "starting", "running", "failed", "stopping", "stopped"],
    },
}

# --- Modelyard domain settings --------------------------------------------------------------
MODELYARD_TOKEN_DEFAULT_DAYS = env_int("MODELYARD_TOKEN_DEFAULT_DAYS", 90)
MODELYARD_TOKEN_MAX_DAYS = env_int("MODELYARD_TOKEN_MAX_DAYS", 366)
MODELYARD_MAX_FILE_SIZE = env_int("MODELYARD_MAX_FILE_SIZE", 50 * 1024**3)
MODELYARD_MAX_FILES_PER_VERSION = env_int("MODELYARD_MAX_FILES_PER_VERSION", 10_000)
MODELYARD_METRICS_TOKEN = env_str("MODELYARD_METRICS_TOKEN")
MODELYARD_MAX_JSON_BYTES = env_int("MODELYARD_MAX_JSON_BYTES", 2 * 1024 * 1024)
MODELYARD_UPLOAD_PART_SIZE = env_int("MODELYARD_UPLOAD_PART_SIZE", 64 * 1024**2)
MODELYARD_UPLOAD_SESSION_HOURS = env_int("MODELYARD_UPLOAD_SESSION_HOURS", 24)
MODELYARD_GC_GRACE_HOURS = env_int("MODELYARD_GC_GRACE_HOURS", 24)
MODELYARD_S3_DOWNLOAD_REDIRECT = env_bool("MODELYARD_S3_DOWNLOAD_REDIRECT", True)
# Defaults of a new model's promotion policy (owners change them per model).
MODELYARD_POLICY_DEFAULTS = {
    "required_checks": {"staging": ["loadable"], "production": ["loadable", "security_scan"]},
    "protected_aliases": ["champion"],
}
# Called with version_id=… by a worker after a version becomes READY (each must be idempotent).
MODELYARD_VERSION_READY_HOOKS: list[str] = [
    "lineage_app.services.lineage_capture_from_files",
    "models_app.services_governance.builtin_checks_run",
]
# A READY version whose hooks have not run this long after finalize gets them queued again
# (their queueing was lost), if it was finalized within the last ..._SWEEP_DAYS.
MODELYARD_READY_HOOKS_GRACE_MINUTES = env_int("MODELYARD_READY_HOOKS_GRACE_MINUTES", 60, minimum=1)
MODELYARD_READY_HOOKS_SWEEP_DAYS = env_int("MODELYARD_READY_HOOKS_SWEEP_DAYS", 7, minimum=1)
# Webhooks: receivers on loopback/private networks are refused unless allowed (SSRF guard).
MODELYARD_WEBHOOK_ALLOW_PRIVATE = env_bool("MODELYARD_WEBHOOK_ALLOW_PRIVATE", False)
MODELYARD_WEBHOOK_TIMEOUT_SECONDS = env_int("MODELYARD_WEBHOOK_TIMEOUT_SECONDS", 10)
# Key for secrets the registry must read back (webhook signing secrets); defaults to SECRET_KEY.
MODELYARD_ENCRYPTION_KEY = env_str("MODELYARD_ENCRYPTION_KEY")
# Limits of the sandboxed process that loads a model for the `loadable` check.
MODELYARD_CHECK_MEMORY_MB = env_int("MODELYARD_CHECK_MEMORY_MB", 4096)
MODELYARD_CHECK_TIMEOUT_SECONDS = env_int("MODELYARD_CHECK_TIMEOUT_SECONDS", 120)

# --- Deployments ----------------------------------------------------------------------------
# Target used when a request names none; "local" runs the runtime in the registry's own env.
MODELYARD_DEPLOY_DEFAULT_TARGET = env_str("MODELYARD_DEPLOY_DEFAULT_TARGET", "local")
MODELYARD_DEPLOY_TARGETS = env_list("MODELYARD_DEPLOY_TARGETS", ["local", "docker", "kubernetes", "external"])
MODELYARD_DEPLOY_DIR = Path(env_str("MODELYARD_DEPLOY_DIR", str(VAR_DIR / "deployments"))).resolve()
MODELYARD_DEPLOY_RECONCILE_SECONDS = env_int("MODELYARD_DEPLOY_RECONCILE_SECONDS", 15)
# A build or start not finished within the lease is taken over by reconcile (worker killed).
MODELYARD_DEPLOY_LEASE_SECONDS = env_int("MODELYARD_DEPLOY_LEASE_SECONDS", 120)
MODELYARD_DEPLOY_READY_TIMEOUT_SECONDS = env_int("MODELYARD_DEPLOY_READY_TIMEOUT_SECONDS", 120)
# Restarts of a dead instance before reconcile marks the deployment failed.
MODELYARD_DEPLOY_MAX_RESTARTS = env_int("MODELYARD_DEPLOY_MAX_RESTARTS", 3)
# Seconds the old instance keeps serving after a rolling redeploy switched the proxy away.
MODELYARD_DEPLOY_DRAIN_SECONDS = env_int("MODELYARD_DEPLOY_DRAIN_SECONDS", 2)
MODELYARD_DEPLOY_PROXY_TIMEOUT_SECONDS = env_int("MODELYARD_DEPLOY_PROXY_TIMEOUT_SECONDS", 60)
MODELYARD_DEPLOY_MAX_REQUEST_BYTES = env_int("MODELYARD_DEPLOY_MAX_REQUEST_BYTES", 64 * 1024**2)
# docker target: Docker SDK against DOCKER_HOST (Docker Engine or Podman's compatible socket).
DOCKER_HOST = env_str("DOCKER_HOST", "unix:///var/run/docker.sock")
MODELYARD_DEPLOY_BASE_IMAGE = env_str("MODELYARD_DEPLOY_BASE_IMAGE", "python:3.11-slim")
MODELYARD_DEPLOY_PUBLISH_ADDRESS = env_str("MODELYARD_DEPLOY_PUBLISH_ADDRESS", "127.0.0.1")
MODELYARD_BUILD_PIP_INDEX_URL = env_str("MODELYARD_BUILD_PIP_INDEX_URL")
MODELYARD_BUILD_CA_BUNDLE = env_str("MODELYARD_BUILD_CA_BUNDLE")
MODELYARD_BUILD_NETWORK = env_str("MODELYARD_BUILD_NETWORK", "host")
# kubernetes target: where images are pushed, the namespace, and Deployment+Service or KServe.
MODELYARD_K8S_KUBECONFIG = env_str("MODELYARD_K8S_KUBECONFIG")
MODELYARD_K8S_NAMESPACE = env_str("MODELYARD_K8S_NAMESPACE", "modelyard")
MODELYARD_K8S_FLAVOR = env_str("MODELYARD_K8S_FLAVOR", "deployment")  # or "kserve"
MODELYARD_K8S_IMAGE_REGISTRY = env_str("MODELYARD_K8S_IMAGE_REGISTRY")
if MODELYARD_K8S_FLAVOR not in ("deployment", "kserve"):
    raise ConfigError(f"MODELYARD_K8S_FLAVOR={MODELYARD_K8S_FLAVOR!r}: use deployment or kserve")
# Called with (alias, model_id) after an alias moved and the change committed.
MODELYARD_ALIAS_MOVED_HOOKS: list[str] = ["deployments_app.services.deployments_follow_alias"]

# MLflow-compatible API (docs/mlflow.md): let anonymous callers read (never write) through it.
MODELYARD_MLFLOW_ANONYMOUS_READ = env_bool("MODELYARD_MLFLOW_ANONYMOUS_READ", False)
# Per web process: rendered models kept for model searches, each for its exact revision
# (PostgreSQL only; models_app.mlflow.rendered). 0 renders every model on every page.
MODELYARD_MLFLOW_RENDER_CACHE_MB = env_int("MODELYARD_MLFLOW_RENDER_CACHE_MB", 32)

# --- Security -------------------------------------------------------------------------------
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", SESSION_COOKIE_SECURE)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if env_bool("USE_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- Logging --------------------------------------------------------------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
LOG_FORMAT = env_str("LOG_FORMAT", "plain")  # "json" for one JSON object a line
if LOG_FORMAT not in ("plain", "json"):
    raise ConfigError(f"LOG_FORMAT={LOG_FORMAT!r}: use plain or json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request": {"()": "registry_project.observability.RequestContextFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {"()": "registry_project.observability.JsonFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["request"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
