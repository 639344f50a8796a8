"""Settings read the environment once, at start: bad values stop the process and say which.

Each case runs Django in a fresh interpreter, because settings are computed at import time.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]

SHOW_SETTINGS = """
import django
django.setup()
from django.conf import settings
from cockpit.celery import app
print(json.dumps({
    "embedded": settings.EMBEDDED,
    "engine": settings.DATABASES["default"]["ENGINE"],
    "database": str(settings.DATABASES["default"]["NAME"]),
    "channel_layer": settings.CHANNEL_LAYERS["default"]["BACKEND"],
    "broker": settings.CELERY_BROKER_URL,
    "celery_broker": app.conf.broker_url,
}))
"""


def run_django(tmp_path, **env) -> subprocess.CompletedProcess:
    clean = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("COCKPIT_", "DATABASE_", "REDIS_"))
    }
    clean.update(DJANGO_SETTINGS_MODULE="cockpit.settings", COCKPIT_DATA_DIR=str(tmp_path))
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-c", "import json\n" + SHOW_SETTINGS],
        cwd=BASE_DIR,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATABASE_URL", "mysql://x"),
        ("DATABASE_URL", "postgresql://db.example.com"),
        ("DATABASE_URL", "postgresql://db.example.com:notaport/cockpit"),
        ("REDIS_URL", "http://x"),
        ("COCKPIT_INGEST_MAX_BYTES", "abc"),
        ("COCKPIT_INGEST_MAX_BYTES", "12"),
        ("COCKPIT_DEBUG", "maybe"),
    ],
)
def test_a_bad_value_stops_the_start_and_names_the_variable(tmp_path, variable, value):
    result = run_django(tmp_path, COCKPIT_SECRET_KEY="x", **{variable: value})

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert variable in result.stderr.splitlines()[-1]


def test_production_mode_needs_a_secret_key(tmp_path):
    result = run_django(tmp_path, DATABASE_URL="postgresql://db.example.com/cockpit")

    assert result.returncode != 0
    assert "COCKPIT_SECRET_KEY" in result.stderr.splitlines()[-1]


def test_without_database_and_redis_urls_it_runs_embedded(tmp_path):
    result = run_django(tmp_path)

    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["embedded"] is True
    assert shown["engine"] == "django.db.backends.sqlite3"
    assert shown["database"] == str(tmp_path / "cockpit.sqlite3")
    assert shown["channel_layer"] == "channels.layers.InMemoryChannelLayer"
    assert shown["broker"] == shown["celery_broker"] == "memory://localhost/"


def test_with_database_and_redis_urls_it_uses_postgresql_and_redis(tmp_path):
    result = run_django(
        tmp_path,
        DATABASE_URL="postgresql://cockpit:pw@db.example.com:5433/cockpit",
        REDIS_URL="redis://cache.example.com:6379/2",
        COCKPIT_SECRET_KEY="x",
    )

    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["embedded"] is False
    assert shown["engine"] == "django.db.backends.postgresql"
    assert shown["database"] == "cockpit"
    assert shown["channel_layer"] == "channels_redis.core.RedisChannelLayer"
    assert shown["broker"] == shown["celery_broker"] == "redis://cache.example.com:6379/2"
