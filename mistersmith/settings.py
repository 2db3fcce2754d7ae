"""Settings for the MisterSmith console, all from the environment (12-factor).

Without DATABASE_URL / NATS_URL the console uses embedded services under ``var/``
(see :mod:`mistersmith.embedded`). ``MISTERSMITH_ENV=production`` makes SECRET_KEY,
DATABASE_URL and NATS_URL mandatory and turns on https: redirect, HSTS, secure cookies
(docs/security.md lists the production variables).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from mistersmith import embedded
from mistersmith.private_files import read_or_create_private

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


def env_seconds(name: str, default: float, low: float, high: float) -> float:
    """A duration setting in seconds, refused with its name unless a number from ``low`` to ``high``."""
    text = os.environ.get(name, "")
    try:
        value = float(text) if text.strip() else float(default)
    except ValueError:
        value = float("nan")
    if not low <= value <= high:  # NaN fails too
        raise ImproperlyConfigured(f"{name} must be a number of seconds from {low:g} to {high:g}, not {text!r}.")
    return value


def database_session_options(options: str | None) -> str:
    """libpq's ``options`` for the console's sessions: JIT off, unless the given options set it."""
    if options and "jit" in options:
        return options
    return f"{options} -c jit=off" if options else "-c jit=off"


PRODUCTION = os.environ.get("MISTERSMITH_ENV", "development") == "production"
DEBUG = env_bool("DEBUG")


def _secret_key() -> str:
    if key := os.environ.get("SECRET_KEY"):
        return key
    if PRODUCTION:
        raise ImproperlyConfigured("SECRET_KEY must be set when MISTERSMITH_ENV=production.")
    return read_or_create_private(VAR_DIR / "secret_key", secrets.token_urlsafe(50))  # mode 0600 from creation


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
    "csp",
    "axes",
    "django_prometheus",
    "mistersmith.live",
    "mistersmith.operations",
    "mistersmith.console",
    "mistersmith.simulator",
    "supervision",
    "agents",
    "hive",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "mistersmith.web.unavailable.DatabaseUnavailableMiddleware",  # a 503 page while PostgreSQL is away
    "servestatic.middleware.ServeStaticMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "mistersmith.web.input_guard.RefuseNulQueryMiddleware",  # 400 for a NUL in the query, which PostgreSQL refuses
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # turns a locked-out login into the lockout answer
    # django-prometheus' After middleware with the method label bounded (unknown methods: "other").
    "mistersmith.operations.metrics.middleware.BoundedPrometheusAfterMiddleware",
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
    # How long a request waits for a connection; while PostgreSQL is down it then gets the 503 page.
    "timeout": float(os.environ.get("DB_POOL_TIMEOUT", 10)),
}

if database_url := os.environ.get("DATABASE_URL"):
    _default_db = dj_database_url.parse(database_url)
elif PRODUCTION:
    raise ImproperlyConfigured("DATABASE_URL must be set when MISTERSMITH_ENV=production.")
else:
    _default_db = embedded.postgres_settings(VAR_DIR)
# CONN_HEALTH_CHECKS makes the pool check a connection before handing it out: after PostgreSQL
# restarts, the pool drops the dead connections by itself instead of failing a request with each.
_default_db.update(CONN_MAX_AGE=0, CONN_HEALTH_CHECKS=True)
_default_db.setdefault("OPTIONS", {})["pool"] = DATABASE_POOL
# PostgreSQL's JIT compiles a query whose estimated cost passes jit_above_cost: the tree's and the
# attention panel's statements (index probes per row shown, a few ms of work) spent 40-70 ms of
# CPU compiling each time (docs/deploy.md, "Pages under load"). Off for the console's sessions
# unless DATABASE_URL's ``?options=`` says otherwise (``-c jit=on``).
_default_db["OPTIONS"]["options"] = database_session_options(_default_db["OPTIONS"].get("options"))
# django-prometheus' query counters and timings (django_db_*): its engine only adds a cursor
# factory, Django's psycopg pool works unchanged under it (docs/metrics.md).
if env_bool("METRICS_DB_INSTRUMENTATION", True) and _default_db["ENGINE"] == "django.db.backends.postgresql":
    _default_db["ENGINE"] = "django_prometheus.db.backends.postgresql"

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

# HTTP requests one worker process serves at a time; the next wait their turn on its event loop
# (mistersmith.web.concurrency; docs/deploy.md, "Pages under load"). At most the pool's size:
# a request beyond the pool would wait for a connection instead, up to DB_POOL_TIMEOUT.
# Page reads (GET, HEAD) only; a read waits HTTP_QUEUE_SECONDS at most, then is served anyway.
HTTP_CONCURRENCY = max(1, min(int(os.environ.get("HTTP_CONCURRENCY", 8)), DATABASE_POOL["max_size"]))
HTTP_QUEUE_SECONDS = env_seconds("HTTP_QUEUE_SECONDS", 10, 0.1, 600)

# --- NATS and the channel layer ----------------------------------------------------------------
# NATS_URL unset: the embedded server is started on first use (mistersmith.jetstream.client).
NATS_URL = os.environ.get("NATS_URL", "")
if PRODUCTION and not NATS_URL:
    raise ImproperlyConfigured("NATS_URL must be set when MISTERSMITH_ENV=production.")

# A bridge's first start projects what the streams retain before following them live
# (mistersmith/live/catchup.py). "0" starts a new bridge at the streams' present instead: the
# test suite does so, since its streams hold the history of every earlier run.
BRIDGE_CATCH_UP = os.environ.get("MISTERSMITH_BRIDGE_CATCH_UP", "1") != "0"

REDIS_URL = os.environ.get("REDIS_URL", "")
# A live socket's channel-layer group memberships expire after this many seconds unless refreshed;
# a running consumer refreshes its own every LIVE_GROUP_REFRESH_SECONDS (mistersmith.live.consumer), so
# only the members of sockets whose process died (SIGKILL, a lost host) drop out, and soon.
LIVE_GROUP_EXPIRY_SECONDS = int(env_seconds("LIVE_GROUP_EXPIRY_SECONDS", 300, 2, 86400))
LIVE_GROUP_REFRESH_SECONDS = env_seconds("LIVE_GROUP_REFRESH_SECONDS", LIVE_GROUP_EXPIRY_SECONDS / 5, 0.1, 86400)
if LIVE_GROUP_REFRESH_SECONDS >= LIVE_GROUP_EXPIRY_SECONDS:
    raise ImproperlyConfigured("LIVE_GROUP_REFRESH_SECONDS must be below LIVE_GROUP_EXPIRY_SECONDS.")
if REDIS_URL:
    import socket as _socket

    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "mistersmith.live.redis_layer.LiveRedisChannelLayer",
            "CONFIG": {
                # No socket_timeout: with one, redis-py sends each command under asyncio.wait_for,
                # which on Python 3.11 swallows a cancellation that lands as the send completes
                # (CPython gh-86296, fixed in 3.12). A closed socket's consumer cancels its pending
                # receive; swallowed, the receive went on polling an idle channel (BZPOPMIN, 5 s)
                # forever: the consumer never ended and a stop waited for it (issue 16). Reads need
                # no timeout either: channels-redis' blocking pop returns after 5 s by itself, and
                # redis-py 8's default 5 s read timeout lost that race (django/channels_redis#422).
                # A Redis that vanishes without a reset is found by TCP keepalive (about 25 s).
                # Its pool refuses (MaxConnectionsError) rather than waits past 100 connections: each
                # socket that connects or closes holds one, so 250 sockets closing at once failed
                # (bench/load_sockets.py). Connections are opened only when that many are busy.
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "socket_timeout": None,
                        "socket_connect_timeout": 5,
                        "socket_keepalive": True,
                        "socket_keepalive_options": {
                            option: value
                            for name, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3))
                            if (option := getattr(_socket, name, None)) is not None
                        },
                        "max_connections": int(os.environ.get("REDIS_MAX_CONNECTIONS", 2000)),
                    }
                ],
                "prefix": os.environ.get("CHANNEL_LAYER_PREFIX", "mistersmith"),
                "group_expiry": LIVE_GROUP_EXPIRY_SECONDS,
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

# --- Caches ---------------------------------------------------------------------------------------
# "charts": the dashboard's settled chart buckets (mistersmith/console/dashboard/history.py), per
# process; a few thousand small dicts (every window's buckets of both families).
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "charts": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "charts",
        "OPTIONS": {"MAX_ENTRIES": 5000},
    },
}

# --- Security: headers, cookies, TLS, CSP, login throttling (docs/security.md) ------------------
# Production sits behind a proxy that terminates TLS: plain http is redirected, cookies are
# secure-only and HSTS is sent (on https requests only). Development stays on plain http.
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", PRODUCTION)
SESSION_COOKIE_HTTPONLY = CSRF_COOKIE_HTTPONLY = True  # the pages read the form's token, never the cookie
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", PRODUCTION)
# Probes and the scraper reach a worker directly over plain http inside the cluster.
SECURE_REDIRECT_EXEMPT = [r"^(healthz|readyz|metrics)$"]
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", 31_536_000 if PRODUCTION else 0))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", PRODUCTION)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD")
if _proxy_header := os.environ.get("SECURE_PROXY_SSL_HEADER"):  # e.g. HTTP_X_FORWARDED_PROTO=https
    _name, _, _value = _proxy_header.partition("=")
    SECURE_PROXY_SSL_HEADER = (_name.strip(), _value.strip() or "https")
# Preloading puts the whole domain on the browsers' HTTPS-only list for good: the operator's
# choice (SECURE_HSTS_PRELOAD=1), so its deploy-check reminder is silenced until then.
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]

# Content-Security-Policy in every mode (django-csp), so the browser tests catch a violation:
# scripts, styles and images from this origin only, no inline code; connect-src 'self' covers the
# live pages' fetches and their WebSocket to the same host (ws:/wss:, CSP level 3).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

# Login throttling (django-axes): LOGIN_FAILURE_LIMIT failures for one username, from any
# addresses, lock that username out for LOGIN_COOLOFF_MINUTES (429 page), so rotating addresses
# buys no extra guesses; a successful login resets the count. The address is REMOTE_ADDR, or
# X-Forwarded-For only when the peer is in TRUSTED_PROXIES (mistersmith.web.login_throttle).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out pair before any password check
    "django.contrib.auth.backends.ModelBackend",
]
# Django's hashers; PBKDF2 (the default, first) gives the request's database connection back to
# the pool while it hashes (mistersmith.web.passwords: a login storm starved the pool).
PASSWORD_HASHERS = [
    "mistersmith.web.passwords.ConnectionReleasingPBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.BCryptSHA256PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
]
AXES_ENABLED = env_bool("LOGIN_THROTTLING", True)
AXES_FAILURE_LIMIT = int(os.environ.get("LOGIN_FAILURE_LIMIT", 5))
AXES_COOLOFF_TIME = float(os.environ.get("LOGIN_COOLOFF_MINUTES", 15)) / 60  # hours, as axes counts
AXES_LOCKOUT_PARAMETERS = ["username", ["username", "ip_address"]]
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES", "")  # addresses or networks; none by default
for _proxy in TRUSTED_PROXIES:  # a typo stops the start rather than leaving the proxy untrusted
    try:
        ipaddress.ip_network(_proxy, strict=False)
    except ValueError as error:
        raise ImproperlyConfigured(f"TRUSTED_PROXIES: {error}") from None
AXES_CLIENT_IP_CALLABLE = "mistersmith.web.login_throttle.client_address"
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "mistersmith.web.security.lockout_response"


def _forbidden_in_one_line(record: logging.LogRecord) -> bool:
    """A refused request is routine: Django logs a PermissionDenied 403 with its whole traceback,
    which buried the log under one traceback per forbidden click. Keep the "Forbidden (...): /path"
    line only; 500s keep their tracebacks."""
    if getattr(record, "status_code", None) == 403:
        record.exc_info = record.exc_text = None
    return True


LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "filters": {
        "forbidden_in_one_line": {"()": lambda: _forbidden_in_one_line},
        "over_capacity_once_a_minute": {"()": "mistersmith.live.log_filters.OncePerInterval", "seconds": 60},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "pgserver": {"level": "WARNING"},
        "axes.apps": {"level": "WARNING"},
        "django.request": {"filters": ["forbidden_in_one_line"]},
        # "1 of 33 channels over capacity in group live.events" at every frame while a dead member
        # stays in a group: once a minute per group, with how many were left out.
        "channels_redis": {"filters": ["over_capacity_once_a_minute"]},
    },
}

# --- The console's own settings ----------------------------------------------------------------
# Rows a changelist counts exactly before it shows an estimate ("more than N").
ADMIN_EXACT_COUNT_LIMIT = int(os.environ.get("ADMIN_EXACT_COUNT_LIMIT", 10_000))
# /metrics (docs/metrics.md): who may scrape (CIDR list; empty: nobody by address) or a bearer
# token; the window of the *_recent metrics; the scrape's budget for NATS and for a DB connection.
METRICS_ALLOWED_NETWORKS = env_list("METRICS_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128")
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")
# Live sockets one user may hold open in one server process (mistersmith.live.consumer closes the next with 4429).
LIVE_SOCKETS_PER_USER = int(os.environ.get("LIVE_SOCKETS_PER_USER", 20))
# How often an open live socket re-checks its session and user (mistersmith.live.socket_session): every
# message checks too; this bounds how long a silent socket outlives what no signal reports (a session
# row deleted in the database, an expiry).
LIVE_SESSION_CHECK_SECONDS = env_seconds("LIVE_SESSION_CHECK_SECONDS", 30, 0.05, 30)
# A stop (SIGTERM, Ctrl-C) closes the live sockets (1001), stops the bridge and exits within this
# many seconds, whatever still hangs (mistersmith/live/server.py, docs/deploy.md "Stopping").
STOP_TIMEOUT_SECONDS = env_seconds("MISTERSMITH_STOP_TIMEOUT", 10, 2, 300)
# The server pings every live socket this often and ends one whose pong is this late: a client that
# vanished without a close (a laptop lid, a dropped network) ends its consumer within their sum.
WS_PING_INTERVAL_SECONDS = env_seconds("WS_PING_INTERVAL", 20, 0.1, 3600)
WS_PING_TIMEOUT_SECONDS = env_seconds("WS_PING_TIMEOUT", 20, 0.1, 3600)
METRICS_WINDOW_SECONDS = int(os.environ.get("METRICS_WINDOW_SECONDS", 300))
METRICS_NATS_TIMEOUT = float(os.environ.get("METRICS_NATS_TIMEOUT", 1.0))
METRICS_DATABASE_TIMEOUT = float(os.environ.get("METRICS_DATABASE_TIMEOUT", 2.0))
# Retention in days per state type, for `manage.py prune` (0 keeps forever); see docs/state.md.
RETENTION_DAYS = {
    "failures": int(os.environ.get("MISTERSMITH_RETENTION_FAILURES_DAYS", 90)),
    "restarts": int(os.environ.get("MISTERSMITH_RETENTION_RESTARTS_DAYS", 90)),
    "events": int(os.environ.get("MISTERSMITH_RETENTION_EVENTS_DAYS", 30)),
    "sessions": int(os.environ.get("MISTERSMITH_RETENTION_SESSIONS_DAYS", 30)),
    "dead_letters": int(os.environ.get("MISTERSMITH_RETENTION_DEAD_LETTERS_DAYS", 30)),
}
# Where `manage.py export_state` writes snapshots and the admin's snapshot page lists them.
SNAPSHOT_DIR = Path(os.environ.get("SNAPSHOT_DIR", VAR_DIR / "snapshots")).resolve()
