"""Django settings for HostPanel, read from the environment.

Environment variables (all optional):

- ``HOSTPANEL_SECRET_KEY``: else a random key kept in ``var/secret_key`` (0600)
- ``HOSTPANEL_DEBUG``: 1/true to enable debug pages (default off)
- ``HOSTPANEL_ALLOWED_HOSTS``: comma-separated (default ``127.0.0.1,localhost``)
- ``DATABASE_URL``: ``sqlite:///var/db.sqlite3`` (default) or ``postgres://user:pw@host:5432/name``
- ``REDIS_URL``: Celery broker and Channels layer (default: 127.0.0.1:6379 with the password in
  ``var/redis_password``, which `make install`/`make run` create, mode 0600)
- ``HOSTPANEL_VAR_DIR``: where runtime files live (default ``<repo>/var``)
- ``HOSTPANEL_ROOT`` / ``HOSTPANEL_INSTANCE``: this host's engine root and instance
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import timedelta
from pathlib import Path

from engine.paths import default_instance, default_root
from hostpanel.config import (
    env_bool,
    env_list,
    load_secret_key,
    parse_database_url,
    private_dir,
    private_sqlite_file,
    redis_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("HOSTPANEL_VAR_DIR") or BASE_DIR / "var")
private_dir(VAR_DIR)  # it holds secrets: 0700

SECRET_KEY = load_secret_key(VAR_DIR)
DEBUG = env_bool("HOSTPANEL_DEBUG", default=False)
ALLOWED_HOSTS = env_list("HOSTPANEL_ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env_list("HOSTPANEL_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",  # makes `manage.py runserver` serve ASGI (WebSockets) like production
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "axes",  # login lockout (see "Login lockout" below)
    "hostpanel.tenants",
    "hostpanel.audit",
    "hostpanel.secrets",
    "hostpanel.deployments",
    "hostpanel.hosts",
    "hostpanel.images",
    "hostpanel.volumes",
    "hostpanel.networks",  # tenant networks: apps find each other by name across hosts (issue 14)
    "hostpanel.usage",
    "hostpanel.logstream",
    "hostpanel.terminal",
    "hostpanel.registry",
    "hostpanel.builds",
    "hostpanel.domains",  # custom domains of apps, TLS mode (issue 12, domains)
    "hostpanel.edge",  # the edge proxy: routing table, the agents' DNS answers, Caddy's config
    "hostpanel.api",
    "hostpanel.dashboard",
    "hostpanel.dockerapi",  # the tenants' Docker Engine API (issue 13, door)
    "hostpanel.stacks",  # compose files deployed as stacks of apps (issue 14, stacks)
    "hostpanel.agent",  # the host agent: its tasks and `manage.py hostagent` (no models; issue 15)
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "hostpanel.dashboard.csp.ContentSecurityPolicyMiddleware",  # CSP on every response
    "axes.middleware.AxesMiddleware",  # answers a locked-out login with 429 (last, as axes asks)
]

ROOT_URLCONF = "hostpanel.urls"
LOGIN_URL = "dashboard:login"
LOGIN_REDIRECT_URL = "dashboard:home"
LOGOUT_REDIRECT_URL = "dashboard:login"
X_FRAME_OPTIONS = "DENY"
ASGI_APPLICATION = "hostpanel.asgi.application"

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

# A host agent (HOSTPANEL_AGENT_STATE_DIR set, no DATABASE_URL; issue 15) has no database: it talks
# to the panel only through Redis and the internal API (hostpanel/agent/remote.py); a query is an
# error there. `manage.py hostagent` refuses to start otherwise.
AGENT_WITHOUT_DATABASE = bool(os.environ.get("HOSTPANEL_AGENT_STATE_DIR")) and not os.environ.get(
    "DATABASE_URL"
)
DATABASES = {
    "default": {"ENGINE": "django.db.backends.dummy"}
    if AGENT_WITHOUT_DATABASE
    else parse_database_url(os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}", BASE_DIR)
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The panel's processes share one SQLite file on a single machine:
    # wait for locks instead of failing, take the write lock up front (no
    # deadlock on upgrade), and give tests a *file* database so a panel
    # subprocess (daphne, watchhosts) sees what the test wrote (one file per test process).
    # WAL: readers (the panel's gunicorn workers, daphne, watchhosts) never wait for the writer,
    # nor it for them; synchronous=NORMAL is WAL's safe setting (a power cut may lose the last
    # commits, never corrupt the file).
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    if DATABASES["default"]["NAME"] != ":memory:":
        private_sqlite_file(Path(DATABASES["default"]["NAME"]))  # 0600, never world-readable
    DATABASES["default"]["TEST"] = {
        "NAME": str(Path(tempfile.gettempdir()) / f"hostpanel-test-{os.getpid()}.sqlite3")
    }
# Keep a worker thread's database connection between requests (opening one costs more than
# many of the API's queries); checked before reuse, so a restarted PostgreSQL costs one error-free retry.
DATABASES["default"]["CONN_MAX_AGE"] = int(os.environ.get("HOSTPANEL_DB_CONN_MAX_AGE", "60"))
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "static"

# Redis requires a password: REDIS_URL carries it, else the one `make run` keeps in var/redis_password.
REDIS_URL = redis_url(VAR_DIR)

CHANNEL_LAYERS = {
    "default": {
        # channels-redis, blocking for a message less long than redis-py 8's read timeout (see the class)
        "BACKEND": "hostpanel.logstream.layer.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL]},
    },
    # live-log line batches: Redis pub/sub, so a batch is one PUBLISH whatever the number of
    # viewers, and each panel process fans it out to its own viewers (hostpanel/logstream/layer.py);
    # a host's log following uses its Redis with the host's own prefix (layer.host_layer)
    "logs": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL]},
    },
}

CELERY_BROKER_URL = REDIS_URL
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
# Results only for the few request/response tasks (container logs); reconcile ignores its result.
CELERY_RESULT_BACKEND = REDIS_URL
CELERY_RESULT_EXPIRES = 300
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "hostpanel.api.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "hostpanel.api.pagination.Pagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "hostpanel.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "hostpanel.api.schema.PanelAutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "HostPanel API",
    "DESCRIPTION": "Multi-tenant container hosting: tenants, apps, releases, containers, secrets, hosts.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",  # assets served from drf-spectacular-sidecar: no CDN at runtime
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "HostStateEnum": "hostpanel.hosts.models.Host.State",
        "AppStateEnum": "hostpanel.deployments.models.App.State",
        "ReplicaStateEnum": "hostpanel.deployments.models.Replica.State",
        "DomainProofMethodEnum": "hostpanel.domains.models.Domain.Method",  # issue 12, domains
    },
}

# Secrets: comma-separated Fernet keys (first encrypts, all decrypt), else var/secret_keys (0600).
HOSTPANEL_SECRET_KEYS = os.environ.get("HOSTPANEL_SECRET_KEYS", "")
# A host whose heartbeat is older than this is marked down and its replicas move.
HOSTPANEL_HOST_GRACE_SECONDS = float(os.environ.get("HOSTPANEL_HOST_GRACE_SECONDS", "30"))
# Crash restarts wait base * 2**restarts seconds, at most max.
HOSTPANEL_RESTART_BACKOFF_BASE = float(os.environ.get("HOSTPANEL_RESTART_BACKOFF_BASE", "1"))
HOSTPANEL_RESTART_BACKOFF_MAX = float(os.environ.get("HOSTPANEL_RESTART_BACKOFF_MAX", "300"))
# A container that ran at least this long before it crashed starts the back-off over.
HOSTPANEL_RESTART_BACKOFF_RESET = float(os.environ.get("HOSTPANEL_RESTART_BACKOFF_RESET", "60"))
# Health probes run in a pool of this many threads per host agent, off the reconcile (a tenant
# holds at most half of them); each probe is bounded by its timeout (<= interval <= 300 s).
HOSTPANEL_PROBE_WORKERS = int(os.environ.get("HOSTPANEL_PROBE_WORKERS", "8"))
# How long a gunicorn worker reuses an API token it authenticated (0: ask the database on every
# request). A revoked or expired token, a disabled user or a changed role takes effect on the API
# within this bound (the dashboard, sockets, registry and Docker API check every time).
HOSTPANEL_TOKEN_CACHE_SECONDS = float(os.environ.get("HOSTPANEL_TOKEN_CACHE_SECONDS", "2"))
# How long a process reuses a tenant list it built while nothing it shows changed (every committed
# write to the tables it reads, by any process, ends that at once: hostpanel/api/answer_cache.py,
# kept_lists.py); the bound only covers a process that died between a commit and telling the
# others. 0: off.
HOSTPANEL_API_CACHE_SECONDS = float(os.environ.get("HOSTPANEL_API_CACHE_SECONDS", "30"))
# Reverse proxies whose X-Forwarded-For the audit log believes (comma-separated addresses).
HOSTPANEL_TRUSTED_PROXIES = env_list("HOSTPANEL_TRUSTED_PROXIES", [])
# Host ports the panel publishes containers' ports on ("low-high").
# Every app with an HTTP port answers at <app>-<tenant>.<HOSTPANEL_APPS_DOMAIN> through the edge proxy.
HOSTPANEL_APPS_DOMAIN = os.environ.get("HOSTPANEL_APPS_DOMAIN", "localhost")
HOSTPANEL_PORT_RANGE = os.environ.get("HOSTPANEL_PORT_RANGE", "30000-32767")
# Rolling deploys (issue 12, roll): a replica taken out of the edge's rotation keeps running this
# long (more than the edge's 1 s refresh) before it is stopped; a new replica that is not ready
# within the deadline (plus one health-check interval) fails the roll, and the old release stays.
HOSTPANEL_ROLL_DRAIN_SECONDS = float(os.environ.get("HOSTPANEL_ROLL_DRAIN_SECONDS", "10"))
HOSTPANEL_ROLL_DEADLINE_SECONDS = float(os.environ.get("HOSTPANEL_ROLL_DEADLINE_SECONDS", "120"))
# ---- the tenants' Docker Engine API (hostpanel/dockerapi; README "Docker API") ----------------
# `manage.py dockerapi` (started by `make run`) serves it with TLS on this address; every client
# shows a certificate the panel issued (its CA lives in HOSTPANEL_DOCKER_API_DIR, mode 0600).
HOSTPANEL_DOCKER_API_PORT = int(os.environ.get("HOSTPANEL_DOCKER_API_PORT", "2376"))
HOSTPANEL_DOCKER_API_BIND = os.environ.get("HOSTPANEL_DOCKER_API_BIND", "127.0.0.1")
# The name clients use to reach it (in the `docker context create` command and the server
# certificate); default: the bind address, or this machine's name when binding every address.
HOSTPANEL_DOCKER_API_HOST = os.environ.get("HOSTPANEL_DOCKER_API_HOST", "")
HOSTPANEL_DOCKER_API_DIR = Path(os.environ.get("HOSTPANEL_DOCKER_API_DIR") or VAR_DIR / "dockerapi")
HOSTPANEL_DOCKER_API_CERT_DAYS = int(os.environ.get("HOSTPANEL_DOCKER_API_CERT_DAYS", "365"))
# Also accept a panel API token (`Authorization: Token <secret>` through HttpHeaders in the
# client's ~/.docker/config.json) from clients without a certificate ("1" to allow).
HOSTPANEL_DOCKER_API_TOKENS = os.environ.get("HOSTPANEL_DOCKER_API_TOKENS", "") in ("1", "true", "yes")
# How long start/stop/restart wait for the host agent to report the container's new state.
HOSTPANEL_DOCKER_API_WAIT_SECONDS = float(os.environ.get("HOSTPANEL_DOCKER_API_WAIT_SECONDS", "60"))
# The size cap of a volume `docker volume create` makes without `-o size=` (it counts in the quota).
HOSTPANEL_DOCKER_API_VOLUME_BYTES = int(os.environ.get("HOSTPANEL_DOCKER_API_VOLUME_BYTES", str(1024**3)))
# ---- the edge proxy (hostpanel/edge; README "Apps on the web") -------------------------------------
# Caddy on each host listens on these (unprivileged for development; 80 and 443 in production).
HOSTPANEL_PROXY_HTTP_PORT = int(os.environ.get("HOSTPANEL_PROXY_HTTP_PORT", "8080"))
HOSTPANEL_PROXY_HTTPS_PORT = int(os.environ.get("HOSTPANEL_PROXY_HTTPS_PORT", "8443"))
HOSTPANEL_PROXY_BIND = os.environ.get("HOSTPANEL_PROXY_BIND", "")  # "" = every address
# Certificates: "internal" (Caddy's own CA; dev and tests) or "acme" (Let's Encrypt).
HOSTPANEL_TLS = os.environ.get("HOSTPANEL_TLS", "internal")
HOSTPANEL_ACME_EMAIL = os.environ.get("HOSTPANEL_ACME_EMAIL", "")
# Caddy's admin API (a unix socket in a 0700 directory; "" = no Caddy on this host) and its data
# (certificates, the internal CA: <data>/pki/authorities/local/root.crt).
HOSTPANEL_CADDY_ADMIN = os.environ.get("HOSTPANEL_CADDY_ADMIN", str(VAR_DIR / "run" / "caddy" / "admin.sock"))
HOSTPANEL_CADDY_DATA = Path(os.environ.get("HOSTPANEL_CADDY_DATA") or VAR_DIR / "caddy")
# The panel as Caddy reaches it: the on-demand TLS "ask" endpoint and /.well-known/hostpanel/.
HOSTPANEL_EDGE_PANEL_URL = os.environ.get("HOSTPANEL_EDGE_PANEL_URL", "http://127.0.0.1:8000")
# The agent's DNS server for Caddy (127.0.0.1 only); 0 = a free port, kept across restarts.
HOSTPANEL_EDGE_DNS_PORT = int(os.environ.get("HOSTPANEL_EDGE_DNS_PORT", "0"))

# ---- Custom domains and TLS (issue 12, domains part; hostpanel/domains/) ----
# HOSTPANEL_TLS (above): "acme" needs a public HOSTPANEL_APPS_DOMAIN and the proxy on ports 80/443;
# `manage.py check` (run by `make run`'s migrate) refuses a mode this host cannot do and says why.
# DNS servers the ownership checks ask ("host:port", comma-separated; empty: /etc/resolv.conf).
HOSTPANEL_DOMAINS_NAMESERVERS = env_list("HOSTPANEL_DOMAINS_NAMESERVERS", [])
# Public addresses of the proxy beyond the hosts' own (a load balancer or NAT in front).
HOSTPANEL_EDGE_ADDRESSES = env_list("HOSTPANEL_EDGE_ADDRESSES", [])
# An unverified claim stops blocking the name for other tenants after this many hours.
HOSTPANEL_DOMAINS_CLAIM_HOURS = float(os.environ.get("HOSTPANEL_DOMAINS_CLAIM_HOURS", "72"))
# The most custom domains one tenant may hold.
HOSTPANEL_DOMAINS_PER_TENANT = int(os.environ.get("HOSTPANEL_DOMAINS_PER_TENANT", "100"))

# Tenant networks (hostpanel/networks): every network gets a /HOSTPANEL_NETWORK_PREFIX of this pool and a
# VNI of this range, unique across all tenants; each host a network spans gives addresses from its own
# /HOSTPANEL_NETWORK_HOST_PREFIX slice (so a /24 sliced into /27s spans at most 8 hosts).
HOSTPANEL_NETWORK_POOL = os.environ.get("HOSTPANEL_NETWORK_POOL", "10.128.0.0/12")
HOSTPANEL_NETWORK_PREFIX = int(os.environ.get("HOSTPANEL_NETWORK_PREFIX", "24"))
HOSTPANEL_NETWORK_HOST_PREFIX = int(os.environ.get("HOSTPANEL_NETWORK_HOST_PREFIX", "27"))
HOSTPANEL_NETWORK_VNI_RANGE = os.environ.get("HOSTPANEL_NETWORK_VNI_RANGE", "100000-999999")
# The most networks one tenant may hold (its default network included).
HOSTPANEL_NETWORKS_PER_TENANT = int(os.environ.get("HOSTPANEL_NETWORKS_PER_TENANT", "10"))

# Quota of a new tenant until an admin changes it.
HOSTPANEL_DEFAULT_QUOTA = {
    "cpu_millis": 4000,
    "memory_bytes": 4 * 1024**3,
    "pids": 4096,
    "disk_bytes": 10 * 1024**3,
    "containers": 20,
    "volumes": 10,
}

# Limits of each RUN step of a build (the tenant's quota caps them too; the tenant's cgroup
# carries its quota before any step runs).
HOSTPANEL_BUILD_LIMITS = {
    "memory_bytes": int(os.environ.get("HOSTPANEL_BUILD_MEMORY_BYTES", str(1024**3))),
    "cpu_millis": int(os.environ.get("HOSTPANEL_BUILD_CPU_MILLIS", "1000")),
    "pids": int(os.environ.get("HOSTPANEL_BUILD_PIDS", "1024")),
}

# The engine instance on this machine (the panel host is usually also a container host).
HOSTPANEL_ENGINE_ROOT = default_root()
HOSTPANEL_ENGINE_INSTANCE = default_instance()

# The registry at /v2/ (hostpanel/registry): where its blobs and uploads live, the URL host agents
# pull from, how long bearer tokens, agent tokens and idle uploads last, and GC's grace period.
HOSTPANEL_REGISTRY_ROOT = Path(os.environ.get("HOSTPANEL_REGISTRY_ROOT") or VAR_DIR / "registry")
HOSTPANEL_REGISTRY_URL = os.environ.get("HOSTPANEL_REGISTRY_URL", "http://127.0.0.1:8000")
HOSTPANEL_REGISTRY_TOKEN_TTL = int(os.environ.get("HOSTPANEL_REGISTRY_TOKEN_TTL", "300"))
HOSTPANEL_REGISTRY_AGENT_TOKEN_TTL = int(os.environ.get("HOSTPANEL_REGISTRY_AGENT_TOKEN_TTL", "3600"))
HOSTPANEL_REGISTRY_UPLOAD_TTL = int(os.environ.get("HOSTPANEL_REGISTRY_UPLOAD_TTL", str(24 * 3600)))
HOSTPANEL_REGISTRY_GC_GRACE = int(os.environ.get("HOSTPANEL_REGISTRY_GC_GRACE", str(60 * 60)))
# Directories on the hosts under which builds may read a context by path (comma-separated; none: uploads).
# Each tenant reads only its own subdirectory <root>/<tenant slug>/.
HOSTPANEL_BUILD_CONTEXT_ROOTS = env_list("HOSTPANEL_BUILD_CONTEXT_ROOTS", [])
# Size bounds on what a build reads: the Dockerfile, .dockerignore, and the whole context (an upload,
# unpacked, and the files COPY/ADD read).
HOSTPANEL_BUILD_MAX_DOCKERFILE_BYTES = int(
    os.environ.get("HOSTPANEL_BUILD_MAX_DOCKERFILE_BYTES", str(1024**2))
)
HOSTPANEL_BUILD_MAX_DOCKERIGNORE_BYTES = int(
    os.environ.get("HOSTPANEL_BUILD_MAX_DOCKERIGNORE_BYTES", str(1024**2))
)
HOSTPANEL_BUILD_MAX_CONTEXT_BYTES = int(os.environ.get("HOSTPANEL_BUILD_MAX_CONTEXT_BYTES", str(1024**3)))
# Builds (agent part of issue 11): each host agent runs HOSTPANEL_BUILD_SLOTS builds at once in its
# own build worker (queue build.<host>); one tenant holds at most HOSTPANEL_BUILD_TENANT_SLOTS of
# them (default: half, rounded up), its other builds wait queued.
HOSTPANEL_BUILD_SLOTS = int(os.environ.get("HOSTPANEL_BUILD_SLOTS", "2"))
HOSTPANEL_BUILD_TENANT_SLOTS = int(os.environ.get("HOSTPANEL_BUILD_TENANT_SLOTS", "0")) or None
# A browser terminal with no traffic for this long is closed (its processes killed).
HOSTPANEL_EXEC_IDLE_SECONDS = float(os.environ.get("HOSTPANEL_EXEC_IDLE_SECONDS", "1800"))

# ---- Login lockout (django-axes): /login/, /api-auth/login/, /admin/, /v2/ basic auth ----
# After HOSTPANEL_LOGIN_FAILURE_LIMIT failed passwords for one username, or from one address,
# further tries get 429 (without checking the password) until HOSTPANEL_LOGIN_COOLOFF_SECONDS
# after the last counted failure; tries while locked do not extend the lock. Admins see and
# clear locks in the Django admin (Axes > Access attempts), or `manage.py axes_reset`.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses locked-out logins before hashing
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = int(os.environ.get("HOSTPANEL_LOGIN_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = timedelta(seconds=float(os.environ.get("HOSTPANEL_LOGIN_COOLOFF_SECONDS", "900")))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = False  # a success clears only its own username: hostpanel/tenants/logins.py
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_CLIENT_IP_CALLABLE = "hostpanel.tenants.access.source_address"
AXES_LOCKOUT_CALLABLE = "hostpanel.tenants.logins.lockout_response"
AXES_VERBOSE = False
# Open terminals and log streams re-check their user's access this often (and at once on a
# membership, token or user change), so removal, demotion or revocation ends them in seconds.
HOSTPANEL_ACCESS_RECHECK_SECONDS = float(os.environ.get("HOSTPANEL_ACCESS_RECHECK_SECONDS", "2"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("HOSTPANEL_LOG_LEVEL", "INFO")},
}

# ---- stacks (issue 14) ----
# The size of each named volume a stack makes (compose files give no size); counted in the quota.
HOSTPANEL_STACK_VOLUME_BYTES = int(os.environ.get("HOSTPANEL_STACK_VOLUME_BYTES", str(256 * 1024**2)))

# ---- enrollment and per-host credentials (issue 15) ----
# `manage.py host add NAME` prints a join command for this URL (what hosts reach the panel at,
# over HTTPS); its token works once and for this many seconds.
HOSTPANEL_PUBLIC_URL = os.environ.get("HOSTPANEL_PUBLIC_URL", "https://127.0.0.1")
HOSTPANEL_JOIN_TOKEN_SECONDS = float(os.environ.get("HOSTPANEL_JOIN_TOKEN_SECONDS", "3600"))
# host:port of the panel's Redis as the hosts reach it (default: REDIS_URL's).
HOSTPANEL_AGENT_REDIS_ADDRESS = os.environ.get("HOSTPANEL_AGENT_REDIS_ADDRESS", "")
# In an enrolled host's agent (set by `manage.py hostagent --state-dir` from the credentials the
# panel gave at registration): its workers consume and write results as the host's own Redis
# ACL user, with their own unacked keys, and without remote control (no shared pidbox).
HOSTPANEL_AGENT_REDIS_URL = os.environ.get("HOSTPANEL_AGENT_REDIS_URL", "")
if HOSTPANEL_AGENT_REDIS_URL:
    CELERY_BROKER_READ_URL = HOSTPANEL_AGENT_REDIS_URL
    CELERY_RESULT_BACKEND = HOSTPANEL_AGENT_REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS = json.loads(os.environ.get("HOSTPANEL_AGENT_TRANSPORT_OPTIONS", "{}"))
    CELERY_WORKER_ENABLE_REMOTE_CONTROL = False
