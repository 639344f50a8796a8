"""Settings for Agent Cockpit, driven by environment variables.

Without DATABASE_URL and REDIS_URL the cockpit runs embedded: SQLite, an in-process channel layer
and Celery inside the server process on an in-memory broker. With them it runs in production mode:
PostgreSQL, channels-redis and Celery over Redis in separate worker and beat processes.
A bad value stops the process at start with a message naming the variable.
"""

import importlib.util
import os
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {raw!r}")


def env_int(name: str, default: int, *, minimum: int = 0) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {value}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def database_from_url(name: str, url: str) -> dict:
    """Turn postgres://user:password@host:port/dbname?sslmode=require into a DATABASES entry."""
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql", "postgresql+psycopg"}:
        raise ImproperlyConfigured(
            f"{name} must be a postgres:// or postgresql:// URL, not {parts.scheme or url!r}"
        )
    dbname = parts.path.lstrip("/")
    if not dbname:
        raise ImproperlyConfigured(f"{name} must name a database, e.g. postgresql://host/cockpit")
    try:
        port = parts.port
    except ValueError:
        raise ImproperlyConfigured(f"{name} has a bad port: {url!r}") from None
    options: dict = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    # A database that is down must answer quickly (ingest turns this into 503 + Retry-After).
    options.setdefault("connect_timeout", str(env_int("DATABASE_CONNECT_TIMEOUT", 5, minimum=1)))
    # Under ASGI every request runs its sync code in a thread of its own, so Django's
    # persistent connections would be opened anew per request: a pool keeps them instead.
    # Waiting longer than `timeout` for a free connection raises, which ingest answers 503.
    options["pool"] = {
        "min_size": env_int("DATABASE_POOL_MIN", 2, minimum=0),
        "max_size": env_int("DATABASE_POOL_MAX", 10, minimum=1),
        "timeout": env_int("DATABASE_POOL_TIMEOUT", 10, minimum=1),
    }
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(dbname),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(port or ""),
        "OPTIONS": options,
    }


def redis_url(name: str) -> str:
    url = env_str(name)
    if url and urlsplit(url).scheme not in {"redis", "rediss", "unix"}:
        raise ImproperlyConfigured(f"{name} must be a redis:// URL, not {url!r}")
    return url


DEBUG = env_bool("COCKPIT_DEBUG", False)
SECRET_KEY = env_str("COCKPIT_SECRET_KEY") or (
    "embedded-insecure-key-set-COCKPIT_SECRET_KEY-in-production"
    if not env_str("DATABASE_URL")
    else ""
)
if not SECRET_KEY:
    raise ImproperlyConfigured("COCKPIT_SECRET_KEY must be set when DATABASE_URL is set")
ALLOWED_HOSTS = env_list("COCKPIT_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("COCKPIT_CSRF_TRUSTED_ORIGINS", [])

DATABASE_URL = env_str("DATABASE_URL")
REDIS_URL = redis_url("REDIS_URL")
EMBEDDED = not REDIS_URL

if DATABASE_URL:
    DATABASES = {"default": database_from_url("DATABASE_URL", DATABASE_URL)}
else:
    DATA_DIR = Path(env_str("COCKPIT_DATA_DIR", str(BASE_DIR / "var")))
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA_DIR / "cockpit.sqlite3",
            # WAL lets the dashboard read while ingest writes; the timeout rides out short locks.
            "OPTIONS": {
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }

# No "daphne" app: every server here is uvicorn (make run, the production command, the test
# live servers), and the daphne app would load Twisted into each web process (~25 MB).
INSTALLED_APPS = [
    "cockpit.apps.CockpitAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "channels",
    "cockpit",
    "traces",
    "approvals",
    "incidents",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files straight from the app server (there is no nginx in front by default).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "cockpit.urls"
ASGI_APPLICATION = "cockpit.asgi.application"
WSGI_APPLICATION = None

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
                "cockpit.roles.roles_context",
            ],
        },
    },
]

AUTHENTICATION_BACKENDS = ["cockpit.roles.RoleBackend"]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "fleet"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("COCKPIT_TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# htmx and its ws extension come from django-htmx's static files; plotly.min.js is served
# straight from the installed plotly package, so the front end always matches the Python side.
_PLOTLY_JS_DIR = Path(importlib.util.find_spec("plotly").origin).parent
STATICFILES_DIRS = [BASE_DIR / "static", ("plotly", _PLOTLY_JS_DIR / "package_data")]
# Production serves what collectstatic gathered; embedded mode serves from the source folders.
WHITENOISE_USE_FINDERS = EMBEDDED or DEBUG
if WHITENOISE_USE_FINDERS:
    # WhiteNoise also scans STATIC_ROOT and warns when it is missing; embedded mode has none.
    STATIC_ROOT.mkdir(exist_ok=True)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("COCKPIT_BEHIND_TLS_PROXY", False) else None
)

# --- Ingestion -------------------------------------------------------------------------------
# The OTLP receiver reads request.stream itself with this cap (after gzip decompression),
# so Django's own 2.5 MB DATA_UPLOAD_MAX_MEMORY_SIZE never cuts a valid batch.
COCKPIT_INGEST_MAX_BYTES = env_int("COCKPIT_INGEST_MAX_BYTES", 16 * 1024 * 1024, minimum=1024)
# Input/output content kept per span; longer content is cut and the cut is recorded.
COCKPIT_CONTENT_MAX_CHARS = env_int("COCKPIT_CONTENT_MAX_CHARS", 32 * 1024, minimum=256)
# Ingest requests allowed to work at once per process; more are answered 503 + Retry-After.
COCKPIT_INGEST_MAX_CONCURRENCY = env_int("COCKPIT_INGEST_MAX_CONCURRENCY", 8, minimum=1)
COCKPIT_RETRY_AFTER_SECONDS = env_int("COCKPIT_RETRY_AFTER_SECONDS", 5, minimum=1)

# --- Fleet --------------------------------------------------------------------------------
# Bearer token for GET /metrics (Prometheus). Empty: /metrics answers 401 to everyone.
COCKPIT_METRICS_TOKEN = env_str("COCKPIT_METRICS_TOKEN")
# Raw spans older than this are deleted by a beat task; runs and rollups keep the history.
COCKPIT_SPAN_RETENTION_DAYS = env_int("COCKPIT_SPAN_RETENTION_DAYS", 30, minimum=1)

# --- Channels --------------------------------------------------------------------------------
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [REDIS_URL],
                "prefix": env_str("COCKPIT_CHANNEL_PREFIX", "cockpit"),
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- Celery ----------------------------------------------------------------------------------
# Embedded mode runs a worker and beat inside the server process on kombu's in-memory
# transport (see cockpit/embedded.py); production points them at Redis.
CELERY_BROKER_URL = REDIS_URL or "memory://localhost/"
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TIMEZONE = TIME_ZONE
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# --- REST framework --------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "traces.auth.IngestKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["cockpit.roles.HasViewerRoleOrProjectKey"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": None,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Agent Cockpit API",
    "DESCRIPTION": "Agent-facing and read API of Agent Cockpit. OTLP/HTTP ingest is at /v1/traces.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI and ReDoc assets come from the sidecar package: the docs work offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "RunStatusEnum": "traces.models.Run.Status",
        "SpanStatusEnum": "traces.models.Span.Status",
        "ApprovalStatusEnum": "approvals.models.ApprovalRequest.Status",
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("COCKPIT_LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}
