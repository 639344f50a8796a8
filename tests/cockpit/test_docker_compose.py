"""docker-compose.yml: the production stack is well formed (no Docker engine needed)."""

import os
import subprocess
from pathlib import Path

import pytest
import yaml

BASE_DIR = Path(__file__).resolve().parents[2]
COMPOSE_FILE = BASE_DIR / "docker-compose.yml"
APP_SERVICES = ("web", "worker", "beat")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def compose_config(**env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("COCKPIT_", "POSTGRES_"))}
    return subprocess.run(
        ["docker-compose", "-f", str(COMPOSE_FILE), "config", "-q"],
        cwd=BASE_DIR,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_docker_compose_accepts_the_file_and_insists_on_a_secret_key():
    assert compose_config(COCKPIT_SECRET_KEY="x").returncode == 0

    missing = compose_config()
    assert missing.returncode != 0
    assert "COCKPIT_SECRET_KEY" in missing.stderr


def test_every_service_has_a_healthcheck(compose):
    services = compose["services"]

    assert set(services) == {"postgres", "redis", *APP_SERVICES}
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert "redis-cli" in services["redis"]["healthcheck"]["test"]
    assert "/healthz" in " ".join(services["web"]["healthcheck"]["test"])
    for name, service in services.items():
        assert service["healthcheck"]["test"], name


def test_app_services_wait_for_healthy_dependencies_and_share_the_production_env(compose):
    services = compose["services"]

    for name in APP_SERVICES:
        service = services[name]
        depends = service["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy", name
        assert depends["redis"]["condition"] == "service_healthy", name
        env = service["environment"]
        for variable in (
            "DATABASE_URL",
            "REDIS_URL",
            "COCKPIT_SECRET_KEY",
            "COCKPIT_ALLOWED_HOSTS",
        ):
            assert env[variable], (name, variable)
        assert env["DATABASE_URL"].startswith("postgresql://")
        assert "@postgres:5432/" in env["DATABASE_URL"]
        assert env["REDIS_URL"].startswith("redis://redis:6379/")
    # Worker and beat start once web has migrated the database.
    for name in ("worker", "beat"):
        assert services[name]["depends_on"]["web"]["condition"] == "service_healthy"


def test_web_migrates_then_serves_the_asgi_app_and_worker_and_beat_run_celery(compose):
    services = compose["services"]
    web = " ".join(services["web"]["command"])

    assert web.index("migrate") < web.index("uvicorn cockpit.asgi:application")
    assert "--workers 2" in web
    assert services["worker"]["command"][:4] == ["celery", "-A", "cockpit", "worker"]
    assert services["beat"]["command"][:4] == ["celery", "-A", "cockpit", "beat"]
    assert "collectstatic" in (BASE_DIR / "Dockerfile").read_text()
