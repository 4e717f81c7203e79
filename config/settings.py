"""Settings of the loyalty platform, read from environment variables.

Defaults are for a developer's machine (SQLite file, no external service). Production never
falls back to something unsafe: with DEBUG off, a missing SECRET_KEY or ALLOWED_HOSTS stops the
start with a clear message. See the configuration table in README.md.
"""

from datetime import timedelta
from pathlib import Path

import environ
from celery.schedules import crontab
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"
VAR_DIR.mkdir(exist_ok=True)

env = environ.Env()
# An optional .env file (written by `make run` on first start) fills in what the environment
# does not set; real environment variables always win.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)

SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set SECRET_KEY in the environment (at least 50 random "
            "characters), or set DEBUG=1 for a development machine."
        )
    SECRET_KEY = "django-insecure-development-only-key-never-use-in-production-0123456789"  # noqa: S105  # nosec B105  # only with DEBUG on and no SECRET_KEY set

ALLOWED_HOSTS = env.list(
    "ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"] if DEBUG else []
)
if not DEBUG and not ALLOWED_HOSTS:
    raise ImproperlyConfigured(
        "ALLOWED_HOSTS is not set. With DEBUG off, list the host names the site answers to, "
        "for example ALLOWED_HOSTS=loyalty.example.com."
    )
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "axes",
    "rest_framework",
    "rest_framework_api_key",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "loyalty",
    "members",
    "rewards",
    "portal",
    "analytics",
    "demo",
    "config",
]

MIDDLEWARE = [
    # Security headers on every answer, the error answers of the next layer included.
    "django_permissions_policy.PermissionsPolicyMiddleware",
    "csp.middleware.CSPMiddleware",
    "loyalty.middleware.ErrorAnswerMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "loyalty.middleware.ApiAwareCommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Staff login lockout: last, around the views (see "Staff login lockout" below).
    "loyalty.admin_lockout.release_login_slots",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database -------------------------------------------------------------------------------------
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web server, the worker and beat share the file; IMMEDIATE transactions take
    # the write lock up front so that two writers queue instead of failing with "locked".
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
else:
    # Persistent connections: the POS hot path must not pay a connection per request.
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # Server-side parameter binding lets psycopg prepare the statements a connection runs
    # often (the POS hot path), which roughly halves PostgreSQL's CPU per purchase. Set
    # DB_SERVER_SIDE_BINDING=0 behind a pooler that cannot keep prepared statements.
    if env.bool("DB_SERVER_SIDE_BINDING", default=True):
        DATABASES["default"].setdefault("OPTIONS", {}).update(
            {"server_side_binding": True, "prepare_threshold": 5}
        )
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Cache, broker and Celery ---------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "TIMEOUT": 300,
        }
    }
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # Longer than the longest task (CELERY_TASK_TIME_LIMIT), or Redis would hand an
        # unacknowledged long task to a second worker while the first still runs it.
        "visibility_timeout": 4 * 3600,
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    # The embedded default: kombu's filesystem transport needs no server, so `make run` runs a
    # real worker and beat on one machine.
    CELERY_QUEUE_DIR = VAR_DIR / "celery" / "queue"
    CELERY_PROCESSED_DIR = VAR_DIR / "celery" / "processed"
    CELERY_QUEUE_DIR.mkdir(parents=True, exist_ok=True)
    CELERY_PROCESSED_DIR.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_QUEUE_DIR),
        "data_folder_out": str(CELERY_QUEUE_DIR),
        "processed_folder": str(CELERY_PROCESSED_DIR),
        "control_folder": str(VAR_DIR / "celery" / "control"),
        "store_processed": False,
    }

CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_BACKEND = None  # outcomes are recorded in JobRun rows, visible to staff
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = 55 * 60
CELERY_TASK_TIME_LIMIT = 60 * 60
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = env.str("TIME_ZONE", default="Europe/Paris")
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "scheduler-heartbeat": {
        "task": "loyalty.tasks.record_heartbeat",
        "schedule": timedelta(seconds=env.int("HEARTBEAT_SECONDS", default=300)),
    },
    "prune-idempotency-records": {
        "task": "loyalty.tasks.prune_idempotency_records",
        "schedule": timedelta(hours=1),
    },
    # Release, expire, requalify, notify: in this order, one task (members/jobs.py).
    "nightly-members": {
        "task": "members.tasks.run_nightly",
        "schedule": crontab(
            hour=env.int("NIGHTLY_HOUR", default=2), minute=env.int("NIGHTLY_MINUTE", default=30)
        ),
    },
}

# A running job renews a lease on its JobRun every quarter of this; a run whose lease has
# expired is shown as abandoned (its worker died) and the next run carries on (loyalty/jobs.py).
JOB_LEASE_SECONDS = max(1, env.int("JOB_LEASE_SECONDS", default=120))

# The memory PostgreSQL may give each sort or hash of the KPI reads
# (analytics.kpis.postgres.grouped_read_settings), local to their transaction: aggregates of a
# few million rows spill to disk with the server's default of 4 MB.
KPI_WORK_MEM = env.str("KPI_WORK_MEM", default="64MB")
# How many connections the grouped reads of a full KPI recompute use at once on PostgreSQL
# (analytics.kpis.postgres.run_reads): each runs mostly in one server process, so that a second
# connection keeps a second core busy. 1 runs them one after the other.
KPI_READ_CONNECTIONS = env.int("KPI_READ_CONNECTIONS", default=2)

# Authentication -------------------------------------------------------------------------------
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "admin:login"

# Member portal: attempts allowed per window (seconds), counted in the cache (Redis in
# production, shared by every web worker). See docs/portal.md.
PORTAL_THROTTLES = {
    "login-account": (env.int("PORTAL_LOGIN_PER_ACCOUNT", default=5), 15 * 60),
    "login-address": (env.int("PORTAL_LOGIN_PER_ADDRESS", default=20), 15 * 60),
    "email-account": (env.int("PORTAL_EMAILS_PER_ACCOUNT", default=3), 60 * 60),
    "email-address": (env.int("PORTAL_EMAILS_PER_ADDRESS", default=10), 60 * 60),
}
PORTAL_VERIFY_EMAIL_DAYS = env.int("PORTAL_VERIFY_EMAIL_DAYS", default=3)
# The request header holding the client's address when a proxy is in front (e.g.
# HTTP_X_FORWARDED_FOR: its last address, the one our proxy added, is used). Empty: REMOTE_ADDR.
CLIENT_IP_HEADER = env.str("CLIENT_IP_HEADER", default="")

# Staff login lockout (django-axes) ------------------------------------------------------------
# Failed sign-ins at /admin/login/ are recorded (admin → Axes) and lock the account and,
# separately, the client address after ADMIN_LOGIN_FAILURE_LIMIT failures, until
# ADMIN_LOGIN_COOLOFF_MINUTES have passed since the last attempt. Parallel guesses cannot go
# past the limit (loyalty/admin_lockout.py). Member logins on the portal have their own
# throttle (PORTAL_THROTTLES). See docs/operations.md, "Staff login lockout".
ADMIN_LOGIN_FAILURE_LIMIT = env.int("ADMIN_LOGIN_FAILURE_LIMIT", default=5)
ADMIN_LOGIN_COOLOFF_MINUTES = env.int("ADMIN_LOGIN_COOLOFF_MINUTES", default=15)
if ADMIN_LOGIN_FAILURE_LIMIT < 1 or ADMIN_LOGIN_COOLOFF_MINUTES < 1:
    raise ImproperlyConfigured(
        "ADMIN_LOGIN_FAILURE_LIMIT and ADMIN_LOGIN_COOLOFF_MINUTES must be at least 1."
    )
# axes' backend comes first: it refuses a locked-out sign-in before any password is checked.
AUTHENTICATION_BACKENDS = [
    "loyalty.admin_lockout.AdminLoginBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_HANDLER = "loyalty.admin_lockout.AdminLoginHandler"
# Only the admin login; AdminLoginHandler also ignores sign-ins and sign-outs elsewhere.
AXES_ONLY_ADMIN_SITE = True
AXES_FAILURE_LIMIT = ADMIN_LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(minutes=ADMIN_LOGIN_COOLOFF_MINUTES)
# Each entry alone: the account (whatever the address), and the address (whatever the account).
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
# A successful sign-in forgets that account's failures; other accounts' failures from the same
# address stay (AdminLoginHandler.reset_user_attempts).
AXES_RESET_ON_SUCCESS = True
# The address by the project's rule (CLIENT_IP_HEADER), as for the portal's throttle.
AXES_CLIENT_IP_CALLABLE = "loyalty.admin_lockout.client_ip"
AXES_LOCKOUT_CALLABLE = "loyalty.admin_lockout.lockout_response"
AXES_HTTP_RESPONSE_CODE = 429
# Every failure is also kept in admin → Axes → Access failures (locked out or not).
AXES_ENABLE_ACCESS_FAILURE_LOG = True
AXES_VERBOSE = False  # no start-up banner in every process's log

# Internationalisation -------------------------------------------------------------------------
LANGUAGE_CODE = env.str("LANGUAGE_CODE", default="fr")
LANGUAGES = [("fr", _("French")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env.str("TIME_ZONE", default="Europe/Paris")
USE_I18N = True
USE_TZ = True

# Static files ---------------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "staticfiles")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns when it is missing
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = "media/"
MEDIA_ROOT = env.path("MEDIA_ROOT", default=VAR_DIR / "media")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# Email ----------------------------------------------------------------------------------------
vars().update(env.email_url("EMAIL_URL", default="consolemail://"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Loyalty <no-reply@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# The public address of the app, for links in emails to members.
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")

# REST API -------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "loyalty.openapi.document_request_rules",
    ],
    "TITLE": "Loyalty platform POS API",
    "DESCRIPTION": "Enrol members, post purchases and returns, look members up, validate "
    "vouchers. See docs/api.md for the integrator's guide.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    # Swagger UI served from our own static files: no CDN, works offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # One enum for the member's language wherever a member shape appears.
    "ENUM_NAME_OVERRIDES": {
        "PreferredLanguageEnum": "config.settings.LANGUAGES",
        "RewardKindEnum": "rewards.models.Reward.Kind",
        "VoucherStatusEnum": "rewards.models.Redemption.Status",
        "MemberStatusEnum": "members.models.Member.Status",
        "LedgerKindEnum": "members.models.PointsEntry.Kind",
    },
}

# Security -------------------------------------------------------------------------------------
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_HTTPONLY = True
if not DEBUG:
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    # Load balancers and container health checks speak plain HTTP to /healthz.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
    if env.bool("BEHIND_TLS_PROXY", default=False):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Security headers: Content-Security-Policy, Permissions-Policy, language cookie ----------------
# Every page loads scripts, styles, images and fonts from this site only, and none inline: no
# <script> without src, no on* handler, no style attribute or <style> block (templates link the
# files under static/; charts are drawn by static/staff/dashboard.js, QR codes are inline SVG
# with presentation attributes). A violation fails the browser tests (tests/browser.py).
# data: images are the icons that the stylesheets of the admin and Swagger UI embed.
# See docs/operations.md, "Security headers".
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}
# Browser features no page of the site uses (the portal shows QR codes; it never scans one).
PERMISSIONS_POLICY = {
    feature: []
    for feature in (
        "accelerometer",
        "autoplay",
        "browsing-topics",
        "camera",
        "display-capture",
        "encrypted-media",
        "geolocation",
        "gyroscope",
        "hid",
        "idle-detection",
        "local-fonts",
        "magnetometer",
        "microphone",
        "midi",
        "payment",
        "screen-wake-lock",
        "serial",
        "usb",
        "xr-spatial-tracking",
    )
}
# The language cookie goes with same-site requests only, over HTTPS in production, and no
# script reads it (the switch is a form posted to the server).
LANGUAGE_COOKIE_SAMESITE = "Lax"
LANGUAGE_COOKIE_HTTPONLY = True
LANGUAGE_COOKIE_SECURE = not DEBUG

# Logging --------------------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}

# POS API limits -------------------------------------------------------------------------------
POS_API_RATE_PER_MINUTE = env.int("POS_API_RATE_PER_MINUTE", default=30000)
POS_API_MAX_BODY_BYTES = env.int("POS_API_MAX_BODY_BYTES", default=64 * 1024)
IDEMPOTENCY_KEEP_HOURS = env.int("IDEMPOTENCY_KEEP_HOURS", default=48)
