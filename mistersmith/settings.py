"""Settings for the MisterSmith console, all from the environment (12-factor).

Without DATABASE_URL / NATS_URL the console uses embedded services under ``var/``
(see :mod:`mistersmith.embedded`). ``MISTERSMITH_ENV=production`` makes SECRET_KEY,
DATABASE_URL and NATS_URL mandatory and turns on the secure cookie settings.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from mistersmith import embedded

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("MISTERSMITH_VAR_DIR", BASE_DIR / "var")).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


PRODUCTION = os.environ.get("MISTERSMITH_ENV", "development") == "production"
DEBUG = env_bool("DEBUG")


def _secret_key() -> str:
    if key := os.environ.get("SECRET_KEY"):
        return key
    if PRODUCTION:
        raise ImproperlyConfigured("SECRET_KEY must be set when MISTERSMITH_ENV=production.")
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "channels",
    "django_prometheus",
    "mistersmith",
    "supervision",
    "agents",
    "hive",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "servestatic.middleware.ServeStaticMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "mistersmith.urls"
ASGI_APPLICATION = "mistersmith.asgi.application"
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
            ],
        },
    },
]

# --- Databases ---------------------------------------------------------------------------------
# The runtime's pool sizes (CONTRACTS.md §6), through Django's psycopg pool.
DATABASE_POOL = {
    "min_size": int(os.environ.get("DB_POOL_MIN", 5)),
    "max_size": int(os.environ.get("DB_POOL_MAX", 30)),
    "max_lifetime": 3600,
    "max_idle": 300,
    "timeout": 10,
}

if database_url := os.environ.get("DATABASE_URL"):
    _default_db = dj_database_url.parse(database_url)
elif PRODUCTION:
    raise ImproperlyConfigured("DATABASE_URL must be set when MISTERSMITH_ENV=production.")
else:
    _default_db = embedded.postgres_settings(VAR_DIR)
_default_db.update(CONN_MAX_AGE=0, CONN_HEALTH_CHECKS=False)
_default_db.setdefault("OPTIONS", {})["pool"] = DATABASE_POOL

HIVE_DIR = Path(os.environ.get("HIVE_MIND_DIR", VAR_DIR / "hive" / ".hive-mind"))
HIVE_DB_PATH = Path(os.environ.get("HIVE_DB_PATH", HIVE_DIR / "hive.db"))
HIVE_MEMORY_DB_PATH = Path(os.environ.get("HIVE_MEMORY_DB_PATH", HIVE_DIR / "memory.db"))

DATABASES = {
    "default": _default_db,
    # Hive Mind SQLite files written by claude-flow; never migrated (see hive.routers).
    "hive": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": HIVE_DB_PATH,
        "OPTIONS": {"timeout": 10},
        "TEST": {"NAME": os.environ.get("HIVE_TEST_DB_PATH") or None, "MIGRATE": False},
    },
    "hive_memory": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": HIVE_MEMORY_DB_PATH,
        "OPTIONS": {"timeout": 10},
        "TEST": {"NAME": os.environ.get("HIVE_MEMORY_TEST_DB_PATH") or None, "MIGRATE": False},
    },
}
DATABASE_ROUTERS = ["hive.routers.HiveRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- NATS and the channel layer ----------------------------------------------------------------
# NATS_URL unset: the embedded server is started on first use (mistersmith.nats).
NATS_URL = os.environ.get("NATS_URL", "")
if PRODUCTION and not NATS_URL:
    raise ImproperlyConfigured("NATS_URL must be set when MISTERSMITH_ENV=production.")

REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [REDIS_URL],
                "prefix": os.environ.get("CHANNEL_LAYER_PREFIX", "mistersmith"),
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- Auth, i18n, static ------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "admin:login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").exists() else []
# Serve static files straight from the apps in a single-process install; no collectstatic step.
SERVESTATIC_USE_FINDERS = True
SERVESTATIC_AUTOREFRESH = DEBUG

SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = PRODUCTION
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"pgserver": {"level": "WARNING"}},
}

# --- The console's own settings ----------------------------------------------------------------
# Rows a changelist counts exactly before it shows an estimate ("more than N").
ADMIN_EXACT_COUNT_LIMIT = int(os.environ.get("ADMIN_EXACT_COUNT_LIMIT", 10_000))
