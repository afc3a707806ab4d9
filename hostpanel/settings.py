"""Django settings for HostPanel, read from the environment.

Environment variables (all optional):

- ``HOSTPANEL_SECRET_KEY``: else a random key kept in ``var/secret_key`` (0600)
- ``HOSTPANEL_DEBUG``: 1/true to enable debug pages (default off)
- ``HOSTPANEL_ALLOWED_HOSTS``: comma-separated (default ``127.0.0.1,localhost``)
- ``DATABASE_URL``: ``sqlite:///var/db.sqlite3`` (default) or ``postgres://user:pw@host:5432/name``
- ``REDIS_URL``: Celery broker and Channels layer (default ``redis://127.0.0.1:6379/0``)
- ``HOSTPANEL_VAR_DIR``: where runtime files live (default ``<repo>/var``)
- ``HOSTPANEL_ROOT`` / ``HOSTPANEL_INSTANCE``: this host's engine root and instance
"""

from __future__ import annotations

import os
from pathlib import Path

from engine.paths import default_instance, default_root
from hostpanel.config import env_bool, env_list, load_secret_key, parse_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("HOSTPANEL_VAR_DIR") or BASE_DIR / "var")
VAR_DIR.mkdir(parents=True, exist_ok=True)

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
    "channels",
    "hostpanel.tenants",
    "hostpanel.deployments",
    "hostpanel.hosts",
    "hostpanel.images",
    "hostpanel.api",
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

ROOT_URLCONF = "hostpanel.urls"
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

DATABASES = {
    "default": parse_database_url(
        os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}", BASE_DIR
    )
}
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

REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL]},
    }
}

CELERY_BROKER_URL = REDIS_URL
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
}

# The engine instance on this machine (the panel host is usually also a container host).
HOSTPANEL_ENGINE_ROOT = default_root()
HOSTPANEL_ENGINE_INSTANCE = default_instance()

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("HOSTPANEL_LOG_LEVEL", "INFO")},
}
