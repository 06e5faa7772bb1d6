"""Settings for ad_budget_project, read from the environment only (see .env.example).

Secure by default: DEBUG is off unless DEBUG=1, and with DEBUG off the project refuses
to start without a real SECRET_KEY. `make run` turns DEBUG on for local development.
"""

from datetime import timedelta
from pathlib import Path

import django_stubs_ext
import environ
from babel import Locale, UnknownLocaleError
from babel.numbers import get_currency_name
from celery.schedules import crontab, schedule
from django.core.exceptions import ImproperlyConfigured

# Lets models subscript generic Django classes (Field[Set, Get]) at runtime for mypy.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"  # local runtime files: SQLite database, demo login; git-ignored

env = environ.Env()
if (BASE_DIR / ".env").is_file():
    env.read_env(BASE_DIR / ".env")

DEBUG: bool = env.bool("DEBUG", default=False)

DEVELOPMENT_SECRET_KEY = "django-insecure-development-only-do-not-use-in-production"
SECRET_KEY: str = env.str("SECRET_KEY", default="")
if not SECRET_KEY or SECRET_KEY == DEVELOPMENT_SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. With DEBUG off the project needs a real secret key: "
            "set SECRET_KEY to a long random value (`make run` writes one to .env), "
            "for example the output of "
            "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`, "
            "or set DEBUG=1 for local development."
        )
    SECRET_KEY = DEVELOPMENT_SECRET_KEY

ALLOWED_HOSTS: list[str] = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS: list[str] = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "ad_budget_project.apps.BudgetAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_beat",
    "ninja",  # serves its interactive docs' assets locally, no CDN
    "ads",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "ad_budget_project.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

WSGI_APPLICATION = "ad_budget_project.wsgi.application"

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    VAR_DIR.mkdir(exist_ok=True)
    # IMMEDIATE takes the write lock when a transaction starts, so two writers queue on
    # the timeout instead of failing with "database is locked" when a read turns into
    # a write. WAL lets readers (the admin) run while a spend is being written.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": env.float("SQLITE_TIMEOUT", default=20),  # seconds to wait for the lock
        "init_command": "PRAGMA journal_mode=WAL;",
    }
    # A file, not the in-memory default, so tests can spread work over OS processes.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test_db.sqlite3")}
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"

# --- Money (README "Currencies"). Each brand has its own currency; a new brand, and
# every brand that existed before currencies, gets DEFAULT_CURRENCY. Amounts are
# written the way MONEY_LOCALE writes them: en_US gives €1,234.50, de_DE 1.234,50 €.
DEFAULT_CURRENCY: str = env.str("DEFAULT_CURRENCY", default="EUR").strip().upper()
if len(DEFAULT_CURRENCY) != 3 or get_currency_name(DEFAULT_CURRENCY) == DEFAULT_CURRENCY:
    raise ImproperlyConfigured(
        f"DEFAULT_CURRENCY={DEFAULT_CURRENCY!r} is not an ISO 4217 currency code; "
        "give one such as EUR, USD or JPY"
    )
MONEY_LOCALE: str = env.str("MONEY_LOCALE", default="en_US")
try:
    Locale.parse(MONEY_LOCALE)
except (UnknownLocaleError, ValueError):
    raise ImproperlyConfigured(
        f"MONEY_LOCALE={MONEY_LOCALE!r} is not a locale Babel knows; give one such as "
        "en_US, en_GB, de_DE or ja_JP"
    ) from None
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"

# Production hardening; `manage.py check --deploy` is clean with DEBUG off.
SECURE_SSL_REDIRECT: bool = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SESSION_COOKIE_SECURE: bool = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE: bool = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS: int = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS: bool = not DEBUG
SECURE_HSTS_PRELOAD: bool = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
if env.bool("SECURE_PROXY_SSL", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Budget alerts are e-mailed through Django's backend: printed to the console unless
# EMAIL_URL names a server, e.g. smtp+tls://user:password@smtp.example.com:587
vars().update(env.email_url("EMAIL_URL", default="consolemail://"))
DEFAULT_FROM_EMAIL: str = env.str("DEFAULT_FROM_EMAIL", default="ad-budget-guard@localhost")
EMAIL_TIMEOUT: int = env.int(
    "EMAIL_TIMEOUT", default=10
)  # seconds; a stuck server must not hang a spend

# --- Celery (SPEC 8). Every task is idempotent, so it is acknowledged only after it ran
# (a worker lost mid-task gets it redelivered), one message at a time per process.
CELERY_BROKER_URL: str = env.str("CELERY_BROKER_URL", default="redis://localhost:6379/0")
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_TIMEOUT = 5
# Redis hands a message that was taken but never acknowledged (its worker machine
# died) to another worker after this many seconds, so it bounds how late a spend
# queued on a crashed worker is recorded. Longer than the hard time limit and the
# longest retry countdown (60 s); a task that outlives it may run twice, which
# idempotent tasks make harmless.
VISIBILITY_TIMEOUT: int = env.int("CELERY_VISIBILITY_TIMEOUT", default=300)
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
    "visibility_timeout": VISIBILITY_TIMEOUT,
    # Workers look for such messages every interval × throttle seconds (30 s).
    "unacked_restore_interval": env.int("CELERY_UNACKED_RESTORE_INTERVAL", default=10),
    "unacked_restore_throttle": 3,
    "socket_timeout": 5,
    "socket_connect_timeout": 5,
}
if CELERY_BROKER_URL.startswith("filesystem://"):
    # One-machine fallback for `make run` without Redis (see ads/management/commands/broker_url.py).
    if CELERY_BROKER_URL == "filesystem://":  # kombu warns on each connection without a host
        CELERY_BROKER_URL = "filesystem://localhost/"
    BROKER_DIR = VAR_DIR / "broker"
    for folder in ("queue", "processed", "control"):
        (BROKER_DIR / folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
# A queued spend still not recorded this many seconds after it was sent is sent again
# (ads.requeue_spends; later sends wait twice as long each time, at most 16 times as
# long). Past the visibility timeout, so Redis's own redelivery of a crashed worker's
# messages comes first.
SPEND_REQUEUE_AFTER: int = env.int("SPEND_REQUEUE_AFTER", default=VISIBILITY_TIMEOUT + 60)
# --- Webhooks and Slack (README "Webhooks"). Deliveries go out in event order per
# endpoint, each request bounded by WEBHOOK_TIMEOUT seconds; a failed one is tried again
# 30 s later, then twice as long each time up to an hour apart, until it is delivered or
# the endpoint has failed for WEBHOOK_DISABLE_AFTER seconds in a row: it is then switched
# off and its brands' contacts are mailed.
WEBHOOK_TIMEOUT: float = env.float("WEBHOOK_TIMEOUT", default=5)
WEBHOOK_DISABLE_AFTER: int = env.int("WEBHOOK_DISABLE_AFTER", default=24 * 60 * 60)
if WEBHOOK_DISABLE_AFTER < 24 * 60 * 60:
    raise ImproperlyConfigured(
        f"WEBHOOK_DISABLE_AFTER={WEBHOOK_DISABLE_AFTER} is under a day: failed deliveries are "
        "tried again for at least 24 hours (86400 s) before their endpoint is switched off"
    )
if not 0 < WEBHOOK_TIMEOUT <= 30:
    raise ImproperlyConfigured(
        f"WEBHOOK_TIMEOUT={WEBHOOK_TIMEOUT} must be more than 0 and at most 30 seconds"
    )
# The retry schedule: the first retry this many seconds after a failure, doubling up to
# WEBHOOK_LONGEST_RETRY apart; and how long a dead worker's hold on an endpoint lasts
# before another worker takes it over. Production keeps the defaults; the fault suite
# shortens them so a scenario of minutes shows hours of behaviour.
WEBHOOK_FIRST_RETRY: int = env.int("WEBHOOK_FIRST_RETRY", default=30)
WEBHOOK_LONGEST_RETRY: int = env.int("WEBHOOK_LONGEST_RETRY", default=60 * 60)
WEBHOOK_LEASE: int = env.int("WEBHOOK_LEASE", default=90)
if not 0 < WEBHOOK_FIRST_RETRY <= WEBHOOK_LONGEST_RETRY:
    raise ImproperlyConfigured(
        f"WEBHOOK_FIRST_RETRY={WEBHOOK_FIRST_RETRY} must be more than 0 and at most "
        f"WEBHOOK_LONGEST_RETRY={WEBHOOK_LONGEST_RETRY}"
    )
if WEBHOOK_LEASE < WEBHOOK_TIMEOUT + 10:
    raise ImproperlyConfigured(
        f"WEBHOOK_LEASE={WEBHOOK_LEASE} must be at least WEBHOOK_TIMEOUT + 10 seconds: a live "
        "sender renews it every 5 seconds, between deliveries"
    )
# Plain http:// endpoint URLs, and URLs whose host resolves to a loopback, private,
# link-local or otherwise non-public address: refused unless allowed here (for tests and
# a receiver on the inside network; they let whoever manages endpoints reach it).
WEBHOOK_ALLOW_HTTP: bool = env.bool("WEBHOOK_ALLOW_HTTP", default=False)
WEBHOOK_ALLOW_PRIVATE: bool = env.bool("WEBHOOK_ALLOW_PRIVATE", default=False)
# Where people open the admin: the links in Slack messages and endpoint mails.
SITE_URL: str = env.str("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")

CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = 120
CELERY_TASK_TIME_LIMIT = 150
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True  # no result backend: tasks report through the database
CELERY_RESULT_EXPIRES = None  # nothing to expire; also keeps Beat from adding a cleanup task
CELERY_TIMEZONE = "UTC"  # Beat runs in UTC; brands' local days are our own code's business
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULER = "ads.beat:DefaultsOnceScheduler"


def _beat_entry(task: str, when: crontab | schedule, *, expires: int) -> dict[str, object]:
    """A periodic task's default: `task` on `when` (a crontab, or an interval), expiring
    `expires` seconds after it is due."""
    return {"task": task, "schedule": when, "options": {"expire_seconds": expires}}


# The periodic tasks' defaults. Beat stores them in django-celery-beat's tables the
# first time it starts; from then on they are changed in the admin (Periodic tasks).
# Each expires before its next run is due, so a backlog never runs twice in a row
# (`expire_seconds` is how django-celery-beat spells Celery's `expires`).
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    # Catches anything a spend or an admin save did not (e.g. a budget lowered in SQL).
    "enforce-budget-limits": _beat_entry(
        "ads.enforce_budget_limits", crontab(minute="*/5"), expires=4 * 60
    ),
    # Windows open and close on the quarter hour.
    "enforce-dayparting": _beat_entry(
        "ads.enforce_dayparting", crontab(minute="0,15,30,45"), expires=14 * 60
    ),
    # Every quarter hour, as local midnights fall on quarter hours in every zone; each
    # run acts only on brands whose local day (month) has changed.
    "reset-daily-budgets": _beat_entry(
        "ads.reset_daily_budgets", crontab(minute="0,15,30,45"), expires=14 * 60
    ),
    "reset-monthly-budgets": _beat_entry(
        "ads.reset_monthly_budgets", crontab(minute="0,15,30,45"), expires=14 * 60
    ),
    # Queued spends lost on the way to a worker are sent again (the outbox, PendingSpend).
    "requeue-spends": _beat_entry("ads.requeue_spends", crontab(), expires=50),
    # Webhook deliveries whose hand-over at commit was lost (or whose retry is due) are
    # sent: every endpoint with a due delivery and no worker on it gets a task.
    "dispatch-webhooks": _beat_entry(
        "ads.dispatch_webhooks", schedule(timedelta(seconds=10)), expires=8
    ),
    # Daily safety net: recompute every counter from the ledger, repair and log drift.
    "reconcile-spend-counters": _beat_entry(
        "ads.reconcile_spend_counters", crontab(minute="30", hour="3"), expires=60 * 60
    ),
}

# One line per event, on one handler (the filters are in ad_budget_project/logs.py).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    },
    "filters": {
        "no_traceback_for_4xx": {"()": "ad_budget_project.logs.NoTracebackForClientErrors"},
        "one_line_per_request": {"()": "ad_budget_project.logs.OneLinePerRequest"},
        "routine_task_lines": {
            "()": "ad_budget_project.logs.RoutineTaskLines",
            "every_task": env.bool("LOG_EVERY_TASK", default=False),
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["no_traceback_for_4xx", "one_line_per_request", "routine_task_lines"],
        },
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # Django's defaults give these loggers handlers of their own (a second copy of
        # every django.request line with DEBUG on; runserver's own access-log format):
        # everything goes through the root's one handler instead.
        "django": {"handlers": [], "level": "INFO"},
        "django.server": {"handlers": [], "level": "INFO", "propagate": True},
    },
}
